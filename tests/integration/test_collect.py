"""Collection against the three-host test bed: laptop -> mack -> falcon, real sshd and SLURM.

Run folders are fabricated on falcon directly (as the bed's user, through OpenSSH) and
registered in the test's own registry with a job id SLURM has never seen, so the collector's
scheduler poll exercises the "SLURM forgot this job, the status files decide" path.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from globtim_hpc.cli.collect import main as collect_main
from globtim_hpc.errors import GlobtimHpcError, IntegrityError, UsageError
from globtim_hpc.layout import RemoteLayout, local_run_dir, new_run_id
from globtim_hpc.models import JobState
from globtim_hpc.quoting import join
from globtim_hpc.registry.lookup import find_run
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.registry.store import Store
from globtim_hpc.results.manifest import ManifestEntry
from globtim_hpc.results.placement import NoSpaceError
from globtim_hpc.results.safe_tar import ExtractAborted, ExtractingSink
from globtim_hpc.results.survey import parse_survey
from globtim_hpc.scheduler.factory import make_scheduler
from globtim_hpc.settings.profile import ClusterProfile, load_profile
from globtim_hpc.transport.base import CommandResult, Transport
from globtim_hpc.transport.factory import open_transport
from globtim_hpc.transport.recording import RecordingTransport
from globtim_hpc.workflows.collect import (
    CollectOptions,
    CollectResult,
    SilentObserver,
    collect_run,
)

from .conftest import Testbed
from .hooks import AfterCommand
from .monitor_support import BedRun, poll_until_settled, submit_run, unique_base

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIG_BYTES = int(os.environ.get("GLOBTIM_TEST_COLLECT_BIG_BYTES", str(200 * 1024 * 1024)))
SMALL_COUNT = int(os.environ.get("GLOBTIM_TEST_COLLECT_SMALL_COUNT", "1000"))

# Runs on falcon with the system python3: writes one fabricated run folder.
FABRICATE = r"""
import json, os, sys
spec = json.loads(sys.argv[1])
run = spec["run_dir"]
def put(rel, data):
    path = os.path.join(run, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
tasks = spec["tasks"]
put("submission.json", json.dumps({"schema": "globtim-hpc/submission/1", "run_id": spec["run_id"],
    "deploy_id": "deploy-abc", "git_sha": "0123456789abcdef0123456789abcdef01234567",
    "code_dirty": True, "user": "globtim", "created_at": "2026-11-29T10:00:00+00:00",
    "tasks": [{"index": i, "task_id": t["task_id"], "params": {"function": "Sphere", "degree": 4 + 2 * i}}
              for i, t in enumerate(tasks)]}))
put("job.sbatch", "#!/bin/bash\n#SBATCH --array=0-%d\n" % (len(tasks) - 1))
for i, t in enumerate(tasks):
    tid = t["task_id"]
    put("params/%s.json" % tid, json.dumps({"function": "Sphere", "degree": 4 + 2 * i}))
    ended = t["state"] != "RUNNING"
    put("status/%s.json" % tid, json.dumps({"schema": "globtim-hpc/status/1", "run_id": spec["run_id"],
        "task_id": tid, "task_index": i, "job_id": "%s_%d" % (spec["job_id"], i),
        "array_job_id": spec["job_id"], "host": "falcon", "started_at": "2026-11-29T10:00:00Z",
        "ended_at": "2026-11-29T10:01:40Z" if ended else None, "exit_code": t["exit_code"],
        "signal": None, "state": t["state"], "julia_version": "1.11.2"}))
    put("logs/slurm-%s_%d.out" % (spec["job_id"], i), "".join("task %s line %d\n" % (tid, k) for k in range(40)))
    put("output/%s/results.json" % tid, json.dumps({"schema_version": 1, "status": "COMPLETED",
        "l2_error": 0.00123 * (i + 1), "n_critical_points": 7 + i, "n_minima": 2, "best_value": -1.25}))
    put("output/%s/critical_points_deg_4.csv" % tid, "x1,x2,z\n0.1,0.2,-1.25\n")
for k in range(spec["small_count"]):
    put("output/0000/a_small/f%05d.txt" % k, ("small file %d\n" % k) * (1 + k % 7))
for name in spec["odd_names"]:
    put("output/0000/" + name, name)
if spec["big_bytes"]:
    path = os.path.join(run, "output/0000/z_big.bin")
    with open(path, "wb") as f:
        left = spec["big_bytes"]
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            f.write(chunk)
            left -= len(chunk)
"""

ODD_NAMES = ["with space 'quote' \"dq\".txt", "new\nline.txt", "back\\slash", "ünï.json", "-dash"]


@dataclass
class Bed:
    testbed: Testbed
    profile: ClusterProfile
    store: Store
    results: Path
    made: list[str]

    def transport(self) -> Transport:
        assert self.profile.ssh is not None
        return open_transport("ssh", self.profile.ssh)

    def make_run(self, tasks: list[tuple[str, int | None]], *, small_count: int = 20,
                 big_bytes: int = 0, job_id: str | None = None) -> RunRecord:
        run_id = new_run_id("collect_test")
        run_dir = RemoteLayout(self.profile.remote_root).run_dir(run_id)
        job_id = job_id or str(50_000_000 + secrets.randbelow(10_000_000))
        task_specs = [{"task_id": f"{i:04d}", "state": s, "exit_code": c} for i, (s, c) in enumerate(tasks)]
        spec = {"run_id": run_id, "run_dir": run_dir, "job_id": job_id, "tasks": task_specs,
                "small_count": small_count, "big_bytes": big_bytes, "odd_names": ODD_NAMES}
        self.made.append(run_dir)
        self.testbed.as_user("falcon", join(["python3", "-c", FABRICATE, json.dumps(spec)]), timeout_s=300)
        self.store.add_run(run_id=run_id, problem="collect_test", cluster=self.profile.name,
                           scheduler="slurm", remote_dir=run_dir,
                           task_ids=[f"{i:04d}" for i in range(len(tasks))], config_hash="cfg",
                           deploy_id="deploy-abc", git_sha=None, plan={}, submission=None)
        self.store.record_job(run_id, self.profile.name, job_id)
        run = self.store.get_run(run_id)
        assert run is not None
        return run

    def collect(self, run: RunRecord, transport: Transport | None = None, *, poll: bool = True,
                **kwargs: Any) -> CollectResult:
        """Collect ``run``; ``poll=False`` decides task states from the status files alone."""
        own = transport is None
        transport = transport or self.transport()
        try:
            scheduler = make_scheduler(self.profile, transport)
            options = kwargs.pop("options", CollectOptions(results_root=self.results))
            return collect_run(run, scheduler=scheduler, store=self.store,
                               remote_root=self.profile.remote_root, options=options,
                               ask_scheduler=poll, **kwargs)
        finally:
            if own:
                transport.close()

    def change_remote_byte(self, run: RunRecord, rel: str) -> None:
        path = f"{run.remote_dir}/{rel}"
        self.testbed.as_user("falcon", join(["sh", "-c", 'printf Q | dd of="$1" bs=1 seek=3 conv=notrunc 2>/dev/null', "x", path]))


@pytest.fixture
def bed(testbed: Testbed, tmp_path: Path) -> Iterator[Bed]:
    profile = load_profile(str(testbed.profile))
    with Store.open() as store:
        env = Bed(testbed, profile, store, tmp_path / "results", [])
        try:
            yield env
        finally:
            if env.made:
                testbed.as_user("falcon", join(["rm", "-rf", "--", *env.made]), check=False)


def metadata_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((REPO / "schemas" / "metadata.schema.json").read_text()))


def visible_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_large_run_is_collected_verified_organised_and_recollected_for_free(bed: Bed) -> None:
    run = bed.make_run([("EXITED", 0), ("EXITED", 0), ("EXITED", 3)],
                       small_count=SMALL_COUNT, big_bytes=BIG_BYTES)
    result = bed.collect(run)
    target = local_run_dir(bed.results, run.problem, run.run_id)
    assert result.local_dir == str(target) and result.complete
    assert result.file_count >= SMALL_COUNT + 1 + 3 * 5
    assert result.content_bytes_received == result.byte_count >= BIG_BYTES
    assert (target / "output" / "0000" / "z_big.bin").stat().st_size == BIG_BYTES
    assert (target / "output" / "0000" / "new\nline.txt").read_text() == "new\nline.txt"
    check = subprocess.run(["sha256sum", "--strict", "--quiet", "-c", "MANIFEST.sha256"],
                           cwd=target, capture_output=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr

    metadata = json.loads((target / "metadata.json").read_text())
    metadata_validator().validate(metadata)
    assert metadata["gitcommit"] == "0123456789abcdef0123456789abcdef01234567-dirty"
    assert metadata["tasks"][2]["state"] == "FAILED"
    assert metadata["tasks"][1]["params"] == {"function": "Sphere", "degree": 6}
    assert metadata["tasks"][0]["timing"]["elapsed_s"] == 100.0
    summary = (target / "summary.md").read_text()
    assert "| 0001 | degree=6 | COMPLETED | 0 | 1:40 |" in summary
    assert '**Parameters of every task:** function="Sphere"' in summary
    assert "### Task 0002: FAILED (exit code 3)" in summary
    assert "task 0002 line 39" in summary and "task 0002 line 19" not in summary  # last 20 lines

    (collection,) = bed.store.collections(run.run_id)
    assert collection["manifest_sha256"] == result.manifest_sha256 == metadata["manifest_sha256"]
    assert collection["local_dir"] == str(target) and collection["complete"] == 1
    assert os.listdir(target.parent) == [target.name]

    again = bed.collect(run)
    assert (again.content_bytes_received, again.stream_bytes_received, again.files_fetched) == (0, 0, 0)
    assert again.files_reused == result.file_count


def test_recollecting_a_settled_run_asks_the_scheduler_nothing(bed: Bed) -> None:
    """Once the registry holds every task's final state, a collection runs no squeue/sacct:
    an unchanged re-collect is one listing command (metadata only), nothing else."""
    run = bed.make_run([("EXITED", 0), ("EXITED", 0)], small_count=3)
    first = bed.collect(run)
    assert first.complete
    with bed.transport() as inner:
        recording = RecordingTransport(inner)
        again = bed.collect(run, recording)
    assert again.complete and again.files_fetched == 0
    programs = [call.what[0] for call in recording.commands]
    assert not {"squeue", "sacct", "scontrol"} & set(programs), recording.commands
    assert len(recording.commands) == 1, [call.what[:4] for call in recording.commands]


def test_a_job_id_slurm_reuses_keeps_both_runs_tracked_and_collected(bed: Bed) -> None:
    """SLURM's ids restart at 1 after a controller rebuild: an old run's job id comes back for a
    new run. Both stay tracked; a poll credits the live job to the run it names only."""
    with bed.transport() as transport:
        scheduler = make_scheduler(bed.profile, transport)
        base = unique_base(transport)
        bed.made.append(base)
        new = submit_run(transport, scheduler, bed.store, base, "reused", "echo new run")
        old = bed.make_run([("EXITED", 0), ("EXITED", 4)], job_id=new.job_id)
        assert {r.run_id for r in bed.store.runs_for_job(bed.profile.name, new.job_id)} == {
            old.run_id, new.run_id}
        with pytest.raises(UsageError, match="belongs to 2 runs"):
            find_run(bed.store, bed.profile.name, job_id=new.job_id)
        records = [bed.store.get_run(old.run_id), bed.store.get_run(new.run_id)]
        views = poll_until_settled(bed.store, transport, scheduler, [
            BedRun("old", old.run_id, old.remote_dir, new.job_id, ("0000", "0001")), new],
            deadline_s=180)  # fmt: skip
        assert all(record is not None for record in records)
        old_states = [t.status.state for t in views["old"].tasks]
        assert old_states == [JobState.COMPLETED, JobState.FAILED], "decided from its own files"
        assert all("squeue" not in t.status.sources for t in views["old"].tasks)
        assert [t.status.state for t in views["reused"].tasks] == [JobState.COMPLETED]
        for run_id in (old.run_id, new.run_id):
            record = bed.store.get_run(run_id)
            assert record is not None
            assert bed.collect(record, transport).complete


def test_file_grown_after_the_listing_is_detected_and_nothing_is_placed(bed: Bed) -> None:
    run = bed.make_run([("EXITED", 0)])
    victim = "output/0000/results.json"

    def tamper(answer: CommandResult) -> None:
        assert victim in {f.path for f in parse_survey(answer.stdout).files}
        bed.testbed.as_user("falcon", join(["sh", "-c", 'printf Q >> "$1"', "x", f"{run.remote_dir}/{victim}"]))

    with bed.transport() as transport, pytest.raises(
        IntegrityError, match=f"'{victim}' changed on the cluster"
    ) as caught:
        bed.collect(run, AfterCommand(transport, "globtim-survey", tamper))
    assert caught.value.exit_code != 0
    target = local_run_dir(bed.results, run.problem, run.run_id)
    assert not target.exists() and visible_entries(target.parent) == []
    assert bed.store.collections(run.run_id) == []
    # the next collection lists the new size and completes
    assert bed.collect(run).complete and target.is_dir()


@pytest.mark.disruptive
def test_transfer_killed_midway_resumes_and_never_shows_a_partial_folder(bed: Bed) -> None:
    run = bed.make_run([("EXITED", 0)], small_count=200, big_bytes=64 * 1024 * 1024)
    target = local_run_dir(bed.results, run.problem, run.run_id)
    kill_after_bytes = 16 * 1024 * 1024

    class KillMidway(SilentObserver):
        received = 0
        killed = False

        def transferred(self, byte_count: int) -> None:
            assert not target.exists(), "a partial folder is visible under the target name"
            self.received += byte_count
            if self.received > kill_after_bytes and not self.killed:
                self.killed = True
                bed.testbed.script("sshd.sh", "mack", "kill-sessions", timeout_s=600)

    observer = KillMidway()
    with pytest.raises(GlobtimHpcError):
        bed.collect(run, observer=observer)
    assert observer.killed
    assert not target.exists() and visible_entries(target.parent) == []
    hidden = [p.name for p in target.parent.iterdir()]
    assert len(hidden) == 1 and hidden[0].startswith(f".{target.name}.partial-")

    resumed = bed.collect(run)
    assert resumed.complete and target.is_dir()
    assert any("resumed" in note for note in resumed.notes)
    assert resumed.files_reused >= 200  # the small files came before the big one
    assert resumed.content_bytes_received < resumed.byte_count
    assert os.listdir(target.parent) == [target.name]
    check = subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=target,
                           capture_output=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr


def test_partly_finished_run_then_complete_then_clean_remote(bed: Bed, capsys: pytest.CaptureFixture[str]) -> None:
    run = bed.make_run([("EXITED", 0), ("RUNNING", None)])
    # SLURM never ran this job id, so its poll would (rightly) call the RUNNING task lost;
    # the status files alone say it is still running.
    first = bed.collect(run, poll=False)
    target = Path(first.local_dir or "")
    assert not first.complete
    assert first.unfinished_tasks[0]["task_id"] == "0001"
    assert not (target / "output" / "0001").exists()

    status = {"schema": "globtim-hpc/status/1", "run_id": run.run_id, "task_id": "0001",
              "task_index": 1, "job_id": "x", "array_job_id": "x", "host": "falcon",
              "started_at": "2026-11-29T10:00:00Z", "ended_at": "2026-11-29T10:00:30Z",
              "exit_code": 0, "signal": None, "state": "EXITED", "julia_version": "1.11.2"}
    status_path = f"{run.remote_dir}/status/0001.json"
    with bed.transport() as transport:
        transport.put_bytes(json.dumps(status).encode(), status_path)

    code = collect_main(["--cluster", str(bed.testbed.profile), "--run-id", run.run_id,
                         "--local-dir", str(bed.results), "--clean-remote", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (payload,) = json.loads(captured.out)["collections"]
    assert payload["complete"] and payload["remote_removed"]
    assert payload["files_fetched"] == 4  # 0001's status, log, results.json, csv: nothing else
    assert payload["content_bytes_received"] < 4096
    assert (target / "output" / "0001" / "results.json").is_file()
    gone = bed.testbed.as_user("falcon", join(["test", "-e", run.remote_dir]), check=False)
    assert gone.returncode == 1

    code = collect_main(["--cluster", str(bed.testbed.profile), "--run-id", run.run_id,
                         "--local-dir", str(bed.results)])
    assert code != 0 and "does not exist on falcon" in capsys.readouterr().err


def test_nearly_full_local_filesystem(bed: Bed, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        too_big = bed.make_run([("EXITED", 0)], big_bytes=12 * 1024 * 1024)
        code = collect_main(["--cluster", str(bed.testbed.profile), "--run-id", too_big.run_id,
                             "--local-dir", str(small)])
        err = capsys.readouterr().err
        assert code == 1 and "not enough free space" in err and "the registry is unchanged" in err
        assert list(small.rglob("*")) == []
        assert bed.store.collections(too_big.run_id) == []

        # fits at the check, then the disk fills up while the data arrives
        fits = bed.make_run([("EXITED", 0)], big_bytes=3 * 1024 * 1024)

        class FillDisk(SilentObserver):
            def transfer_started(self, byte_count: int, file_count: int) -> None:
                filler = small / "filler"
                with open(filler, "wb") as handle, contextlib.suppress(OSError):
                    handle.write(b"\0" * (6 * 1024 * 1024))

        with pytest.raises(NoSpaceError, match="not enough free space"):
            bed.collect(fits, observer=FillDisk(), options=CollectOptions(results_root=small))
        assert sorted(str(p.relative_to(small)) for p in small.rglob("*")) == ["collect_test", "filler"]
        assert bed.store.collections(fits.run_id) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_crafted_archive_from_falcon_writes_nothing_outside(bed: Bed, tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("out")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        evil = tarfile.TarInfo("out/evil.txt")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    remote = f"{bed.profile.remote_root}/runs/crafted-{secrets.token_hex(4)}.tar"
    bed.made.append(remote)
    expected = {"out/evil.txt": ManifestEntry("out/evil.txt", 4, "0" * 64)}
    with bed.transport() as transport:
        transport.put_bytes(buffer.getvalue(), remote)
        sink = ExtractingSink(dest, expected).start()
        with contextlib.suppress(ExtractAborted):
            transport.stream(["cat", remote], stdout_sink=sink)  # type: ignore[arg-type]
        with pytest.raises(IntegrityError, match="symbolic link"):
            sink.finish()
    assert list(outside.iterdir()) == [] and list(dest.iterdir()) == []
