"""Which deployment a run uses while a verification job has not ended (workflows.verification)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from globtim_hpc.registry.store import Store
from globtim_hpc.workflows.submit.prepare import after_job_ids
from globtim_hpc.workflows.verification import is_pending, pending_job_ids, usable_deployment

CLUSTER = "falcon"


def _record(store: Store, deploy_id: str, *, verified: bool, pending: bool = False,
            keep_created_at: bool = False) -> None:  # fmt: skip
    verification: dict[str, Any] = {"job_id": f"9{len(deploy_id)}", "pending": pending}
    store.record_deployment(
        deploy_id=deploy_id, cluster=CLUSTER, git_sha=None, dirty=False, remote_dir=f"/c/{deploy_id}",
        verified=verified, info={"verification": verification}, keep_created_at=keep_created_at,
    )  # fmt: skip


def test_a_pending_deployment_is_used_and_a_failed_one_is_not(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        _record(store, "old", verified=True)
        _record(store, "new", verified=False, pending=True)
        chosen = usable_deployment(store, CLUSTER)
        assert chosen is not None and chosen["deploy_id"] == "new" and is_pending(chosen)
        assert pending_job_ids(chosen) == ["93"]
        _record(store, "new", verified=False, keep_created_at=True)  # its job failed
        chosen = usable_deployment(store, CLUSTER)
        assert chosen is not None and chosen["deploy_id"] == "old"
        assert not is_pending(chosen) and pending_job_ids(chosen) == []


def test_settling_keeps_a_deployment_behind_later_ones(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        _record(store, "first", verified=False, pending=True)
        _record(store, "second", verified=True)
        _record(store, "first", verified=True, keep_created_at=True)
        chosen = usable_deployment(store, CLUSTER)
        assert chosen is not None and chosen["deploy_id"] == "second"


def test_a_verified_record_is_never_pending_and_the_submission_waits_on_both_kinds() -> None:
    assert not is_pending({"verified": True, "info": {"verification": {"pending": True}}})
    assert not is_pending(None)
    submission = {"after": [{"run_id": "r", "job_ids": ["1", "2"]},
                            {"deployment": "d", "job_ids": ["3"]}]}  # fmt: skip
    assert after_job_ids(submission) == ("1", "2", "3")
