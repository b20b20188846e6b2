"""What keeps several checkouts apart on the one shared test bed.

Each checkout (a CI clone, a developer's worktree) gets its own remote root and its own copy of
the Julia stand-in on the bed, both derived from the checkout's path: a change to
tests/stand_in in one checkout is never seen by the tests of another. ``configs/testbed.yaml``
reads the two environment variables below and falls back to the bed's shared defaults.

``python -m tests.integration.bedenv`` installs this checkout's stand-in (as root) and prints
the ``export`` lines for a shell.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
REMOTE_ROOT_ENV = "GLOBTIM_TESTBED_REMOTE_ROOT"
TCSH_REMOTE_ROOT_ENV = "GLOBTIM_TESTBED_TCSH_REMOTE_ROOT"  # configs/testbed-tcsh.yaml
STAND_IN_ENV = "GLOBTIM_TESTBED_STAND_IN"
TESTS_LOCK = Path("/run/lock/globtim-testbed-tests.lock")


def testbed_dir() -> Path:
    return Path(os.environ.get("GLOBTIM_TESTBED_DIR", "/var/tmp/globtim-testbed"))


def checkout_id(repo: Path = REPO) -> str:
    return hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:8]


def remote_root() -> str:
    return os.environ.get(REMOTE_ROOT_ENV) or f"/projects/globtim/hpc-{checkout_id()}"


def tcsh_remote_root() -> str:
    """The remote root of the bed's tcsh user (globtimtc) for this checkout."""
    return os.environ.get(TCSH_REMOTE_ROOT_ENV) or f"/projects/globtimtc/hpc-{checkout_id()}"


def stand_in_dir() -> str:
    """The stand-in folder as the bed's hosts see it (under /projects)."""
    return os.environ.get(STAND_IN_ENV) or f"/projects/tools/stand_in-{checkout_id()}"


def export_environment() -> None:
    os.environ.setdefault(REMOTE_ROOT_ENV, remote_root())
    os.environ.setdefault(TCSH_REMOTE_ROOT_ENV, tcsh_remote_root())
    os.environ.setdefault(STAND_IN_ENV, stand_in_dir())


def _backing(host_path: str) -> Path:
    """Where the root namespace reaches a /projects path of the bed's hosts."""
    relative = Path(host_path).relative_to("/projects")
    return testbed_dir() / "projects" / relative


def install_stand_in(*, force: bool = False) -> Path:
    """Copy tests/stand_in to this checkout's folder on the bed (atomically replaced)."""
    target = _backing(stand_in_dir())
    if target.is_dir() and not force:
        return target
    source = REPO / "tests" / "stand_in"
    fresh = target.with_name(f".{target.name}.new-{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(
        source, fresh, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), symlinks=True
    )
    for folder, _, names in os.walk(fresh):
        os.chmod(folder, 0o755)
        for name in names:
            path = Path(folder) / name
            if not path.is_symlink():
                os.chmod(path, stat.S_IMODE(0o755))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def install_default_env() -> Path:
    """Give this checkout's depot a default environment with what the driver loads.

    A run submitted without a deployment has no JULIA_PROJECT, so Julia (and the stand-in)
    loads packages from the depot's default environment, environments/v<major.minor>: the
    one a user who ran ``Pkg.add`` and ``Pkg.develop(path=...)`` by hand has
    (tests/runenv_support.py), owned by the bed's user like the rest of the remote root.
    """
    from tests.runenv_support import make_default_env

    root = _backing(remote_root())
    owner = root.parent.stat()
    depot = root / "depot"
    depot.mkdir(parents=True, exist_ok=True)
    env_dir = make_default_env(depot)
    os.chown(root, owner.st_uid, owner.st_gid)
    for folder, dirs, names in os.walk(depot):
        for name in [*dirs, *names, "."]:
            os.chown(os.path.join(folder, name), owner.st_uid, owner.st_gid)
    return env_dir


@contextmanager
def setup_lock() -> Iterator[None]:
    """Held while a test process checks, brings up or refreshes the bed: parallel workers do
    it one at a time."""
    TESTS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with TESTS_LOCK.with_name("globtim-testbed-setup.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def first_in_test_run(what: str) -> bool:
    """Under setup_lock: whether this is the first of a test run's parallel workers to do
    ``what`` (always True without workers); the others use what it did."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run_id is None:
        return True
    done = TESTS_LOCK.with_name(f"globtim-testbed-{checkout_id()}-{what}.done")
    if done.is_file() and done.read_text() == run_id:
        return False
    done.write_text(run_id)
    return True


@contextmanager
def bed_lock(*, exclusive: bool) -> Iterator[None]:
    """Shared for ordinary integration tests, exclusive for those that disturb the bed."""
    TESTS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with TESTS_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


if __name__ == "__main__":
    install_stand_in(force=True)
    print(f"export {REMOTE_ROOT_ENV}={remote_root()}")
    print(f"export {TCSH_REMOTE_ROOT_ENV}={tcsh_remote_root()}")
    print(f"export {STAND_IN_ENV}={stand_in_dir()}")
