"""An unchanged listing is not sent again: the cluster compares it with the digest the folder's
record keeps and answers "same"; the record's choice of files then holds, as long as the
inputs (task states, notes, attempts) are the same too."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from globtim_hpc.layout import new_run_id
from globtim_hpc.registry.store import Store
from globtim_hpc.results.recollect import load_record
from globtim_hpc.results.survey import parse_survey, survey_argv
from globtim_hpc.scheduler.direct import DirectScheduler
from globtim_hpc.transport.base import CommandResult
from globtim_hpc.transport.local import LocalTransport
from globtim_hpc.workflows.collect import CollectOptions, collect_run

from .test_summary import fabricate, registered


def survey_of(run: Path, kept: str = "") -> bytes:
    return subprocess.run(survey_argv(str(run), kept), capture_output=True, check=True).stdout


def test_the_listing_digest_is_of_finds_bytes_and_same_is_answered_for_it(tmp_path: Path) -> None:
    run = fabricate(tmp_path, new_run_id("p"), {"0000": ("EXITED", 0)})
    (run / "output" / "0000" / "odd 'name'\nwith newline").write_text("x")
    os.symlink("/etc/passwd", run / "output" / "link")
    full = parse_survey(survey_of(run))
    listing = subprocess.run(
        ["sh", "-c", "cd \"$1\" && find . -mindepth 1 ! -type d -printf '%y %s %T@ %C@ %P\\0'",
         "x", str(run)], capture_output=True, check=True).stdout
    assert full.listing_sha256 == hashlib.sha256(listing).hexdigest() and not full.same
    answer = survey_of(run, full.listing_sha256)
    assert len(answer) < len(listing)  # the listing itself did not come
    same = parse_survey(answer, kept_listing_sha256=full.listing_sha256)
    assert same.same and same.files == () and same.listing_sha256 == full.listing_sha256
    assert same.snapshot_tgz[:2] == b"\x1f\x8b"  # the status files still come
    (run / "output" / "0000" / "new.csv").write_text("1\n")
    changed = parse_survey(survey_of(run, full.listing_sha256), kept_listing_sha256=full.listing_sha256)
    assert not changed.same and "output/0000/new.csv" in {f.path for f in changed.files}
    with pytest.raises(ValueError, match="not a sha256"):
        survey_argv(str(run), "$(rm -rf ~)")


class Surveys(LocalTransport):
    """Keeps what each survey command was given and how it was answered."""

    def __init__(self) -> None:
        super().__init__()
        self.surveys: list[tuple[str, bool]] = []

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        result = super().run(argv, **kwargs)
        if len(argv) > 5 and argv[3] == "globtim-survey":  # survey_argv's name for $0
            kept = argv[5]
            self.surveys.append((kept, parse_survey(result.stdout, kept_listing_sha256=kept).same))
        return result


def collector(tmp_path: Path, states: dict[str, tuple[str, int | None]]) -> tuple[Any, Path, Surveys]:
    remote_root = tmp_path / "remote"
    run_id = new_run_id("4d_benchmark")
    run_dir = fabricate(remote_root, run_id, states)
    transport = Surveys()
    store = Store.open()
    run = registered(store, run_id, run_dir, list(states))

    def collect(plots: bool = True) -> Any:
        options = CollectOptions(results_root=tmp_path / "results", fsync=False, plots=plots)
        return collect_run(run, store=store, scheduler=DirectScheduler(transport),
                           remote_root=str(remote_root), options=options, ask_scheduler=False)

    return collect, run_dir, transport


def test_an_unchanged_run_is_known_without_its_listing(tmp_path: Path) -> None:
    collect, _, transport = collector(tmp_path, {"0000": ("EXITED", 0), "0001": ("EXITED", 1)})
    first = collect()
    target = Path(first.local_dir)
    record = load_record(target)
    assert record.listing_sha256 and transport.surveys == [("", False)]
    again = collect()
    assert transport.surveys[-1] == (record.listing_sha256, True)
    assert again.files_fetched == 0 and any("unchanged since" in n for n in again.notes)
    assert (again.manifest_sha256, again.file_count, again.byte_count) == (
        first.manifest_sha256, first.file_count, first.byte_count)


def test_a_local_change_under_the_same_listing_is_fetched_again(tmp_path: Path) -> None:
    collect, run_dir, transport = collector(tmp_path, {"0000": ("EXITED", 0)})
    target = Path(collect().local_dir)
    victim = target / "output" / "0000" / "results.json"
    victim.unlink()
    victim.write_text("tampered")
    again = collect()
    assert transport.surveys[-1][1] is True and again.files_fetched == 1
    assert victim.read_bytes() == (run_dir / "output" / "0000" / "results.json").read_bytes()
    assert load_record(target).listing_sha256 == transport.surveys[-1][0]


def test_other_inputs_under_the_same_listing_choose_again_from_a_full_listing(tmp_path: Path) -> None:
    collect, _, transport = collector(tmp_path, {"0000": ("EXITED", 0)})
    first = collect()
    again = collect(plots=False)  # the descriptions are made from other inputs
    assert [same for _, same in transport.surveys] == [False, True, False]
    assert again.manifest_sha256 == first.manifest_sha256


def test_a_new_file_on_the_cluster_comes_with_a_full_listing(tmp_path: Path) -> None:
    collect, run_dir, transport = collector(tmp_path, {"0000": ("EXITED", 0)})
    first = collect()
    (run_dir / "output" / "0000" / "late.csv").write_text("x,z\n")
    again = collect()
    assert transport.surveys[-1][1] is False and again.files_fetched == 1
    assert again.file_count == first.file_count + 1
    assert (Path(again.local_dir) / "output" / "0000" / "late.csv").read_text() == "x,z\n"


def test_no_room_for_the_listing_on_the_cluster_sends_it_in_full(tmp_path: Path) -> None:
    run = fabricate(tmp_path, new_run_id("p"), {"0000": ("EXITED", 0)})
    digest = parse_survey(survey_of(run)).listing_sha256
    answer = subprocess.run(survey_argv(str(run), digest), capture_output=True, check=True,
                            env={**os.environ, "TMPDIR": str(tmp_path / "no-such-folder")}).stdout
    full = parse_survey(answer, kept_listing_sha256=digest)
    assert not full.same and full.listing_sha256 == digest and full.files


def test_a_record_naming_an_unsafe_path_is_not_taken_as_the_choice(tmp_path: Path) -> None:
    import json

    from globtim_hpc.results.recollect import RECORD_NAME

    collect, _, transport = collector(tmp_path, {"0000": ("EXITED", 0)})
    target = Path(collect().local_dir)
    record = json.loads((target / RECORD_NAME).read_text())
    record["files"]["../../outside.txt"] = next(iter(record["files"].values()))
    (target / RECORD_NAME).write_text(json.dumps(record))
    again = collect()
    assert transport.surveys[-1] == ("", False)  # no digest sent: the record is not trusted
    assert not (tmp_path / "outside.txt").exists() and again.local_dir == str(target)
