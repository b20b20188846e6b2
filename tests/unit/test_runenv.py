"""The run environment's Project.toml: what the driver loads, Globtim from the deployed tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from globtim_hpc.errors import ConfigError
from globtim_hpc.julia import runenv
from globtim_hpc.julia.compat import parse_project_toml_minimal, read_project

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "globtim_project"


def test_it_holds_the_driver_packages_with_globtim_from_the_tree() -> None:
    text = runenv.project_toml(read_project(FIXTURE))
    data = parse_project_toml_minimal(text)
    assert set(data["deps"]) == set(runenv.driver_package_names())
    assert data["deps"]["Globtim"] == "00da9514-6261-47e9-8848-33640cb1e528"
    assert '[sources]\nGlobtim = {path = "../.."}\n' in text
    assert data["compat"]["julia"] == "1.12" and data["compat"]["Globtim"] == "1.2"
    assert data["compat"]["HomotopyContinuation"] == "2"


def test_a_users_project_adds_its_packages(tmp_path: Path) -> None:
    (tmp_path / "Project.toml").write_text(
        '[deps]\nOptim = "429524aa-4258-5aef-a3af-852621145aeb"\n'
        'CSV = "00000000-0000-0000-0000-000000000000"\n[compat]\nOptim = "1"\n'
    )
    extra = runenv.read_extra_project(tmp_path)
    data = parse_project_toml_minimal(runenv.project_toml(read_project(FIXTURE), extra))
    assert data["deps"]["Optim"] == "429524aa-4258-5aef-a3af-852621145aeb"
    assert data["deps"]["CSV"] == "336ed68f-0bac-5ca0-87d4-7b16caf5d00b"  # the driver's wins
    assert data["compat"]["Optim"] == "1"


def test_an_unsupported_globtim_is_refused(tmp_path: Path) -> None:
    text = (FIXTURE / "Project.toml").read_text().replace('version = "1.2.1"', 'version = "1.1.2"')
    (tmp_path / "Project.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"Globtim 1\.1\.2 is not a version"):
        runenv.check_globtim_project(read_project(tmp_path))
    (tmp_path / "Project.toml").write_text(text.replace('name = "Globtim"', 'name = "Other"'))
    with pytest.raises(ConfigError, match="not Globtim"):
        runenv.check_globtim_project(read_project(tmp_path))
    runenv.check_globtim_project(read_project(FIXTURE))


def test_precision_is_no_longer_offered() -> None:
    """Globtim 1.2.1 fits in Float64 whatever precision says: identical results, other labels."""
    from globtim_hpc.jobs.problems import load_problem

    for name in ("4d_benchmark", "deuflhard_2d", "lotka_volterra_4d"):
        assert "precision" not in {spec.name for spec in load_problem(name).parameters}
