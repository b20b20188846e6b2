"""The Python API against the bed: the documented example runs as written, on one connection."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from globtim_hpc import Cluster
from globtim_hpc.errors import AuthenticationError, WaitTimeoutError
from globtim_hpc.models import JobState
from globtim_hpc.prompts import answers
from tests.integration.conftest import REPO, Testbed
from tests.integration.transport_fixtures import TcpWatcher

pytestmark = pytest.mark.integration
MACK = "10.77.1.2"


def documented_example() -> str:
    text = (REPO / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (example,) = [block for block in blocks if 'Cluster("testbed")' in block]
    return str(example)


def test_the_documented_example_runs_on_one_connection(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "4d_benchmark.yaml", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    scope: dict[str, object] = {}
    with TcpWatcher(MACK, 22) as watcher:
        exec(compile(documented_example(), "docs/python-api.md", "exec"), scope)
    assert len(watcher.local_ports) == 1, watcher.local_ports
    folder = scope["folder"]
    assert isinstance(folder, Path) and folder.is_relative_to(tmp_path / "results")
    assert (folder / "metadata.json").is_file() and "4d_benchmark" in str(scope["summary"])
    status = scope["status"]
    assert status.all_settled and set(status.counts()) == {"COMPLETED"}  # type: ignore[attr-defined]
    active = scope["active"]
    assert isinstance(active, list)  # the run finished, so it may or may not still be listed


def test_a_prompt_callback_answers_the_one_time_code(testbed: Testbed, tmp_path: Path) -> None:
    password = (testbed.dir / "client" / "mfa_password").read_text().strip()
    profile = tmp_path / "mfa.yaml"
    profile.write_text(_with_proxy_jump((REPO / "configs" / "testbed.yaml").read_text(), "mack:2222"))
    asked: list[str] = []

    def notebook_prompt(hop: str, text: str, echo: bool) -> str:
        asked.append(hop)
        return password

    with Cluster(profile, prompt=notebook_prompt) as cluster:
        assert cluster.transport.run(["hostname"]).check("hostname").stdout_text.strip() == "falcon"
        assert cluster.transport.run(["true"]).ok  # the same chain: no second code
    assert len(asked) == 1 and "mack" in asked[0]
    with Cluster(profile, prompt=answers()) as cluster, pytest.raises(AuthenticationError) as err:
        cluster.transport.run(["true"])
    assert "mack" in err.value.message


def _with_proxy_jump(profile_text: str, jump: str) -> str:
    return profile_text.replace("ssh:\n", f"ssh:\n  proxy_jump: {jump}\n", 1)


def test_wait_gives_up_at_its_timeout_and_the_run_goes_on(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    with Cluster("testbed") as cluster:
        config = tmp_path / "slow.yaml"
        config.write_text("parameters:\n  degree: 4\nresources:\n  time_min: 5\n  cpus: 1\n")
        plan = cluster.plan("4d_benchmark", config)
        run = cluster.submit(plan)
        with pytest.raises(WaitTimeoutError):
            run.wait(timeout_s=0.5, interval_s=5)
        assert run.status(poll=False).tasks[0].status.state is not JobState.UNKNOWN
        run.wait(timeout_s=600, interval_s=1)
        again = cluster.run(job_id=run.job_id)
        assert again.run_id == run.run_id and again.status(poll=False).all_settled
