"""Compression of the collection stream on the bed: a run of CSV files comes back byte for byte
the same with zstd, gzip and none, verified, the codec recorded, and fewer bytes on the wire
than in the files when compressed."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from globtim_hpc.cli.collect import main as collect_main
from globtim_hpc.layout import local_run_dir
from globtim_hpc.quoting import join
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.results.decoding import decodable
from globtim_hpc.workflows.collect import CollectOptions

from . import test_collect
from .test_collect import Bed
from .test_collect_onepass import manifest_checks

pytestmark = pytest.mark.integration

bed = test_collect.bed

# Runs on falcon with the system python3: GlobTim-like CSV output (rows of floats).
CSV_FILES = r"""
import os, random, sys
out = os.path.join(sys.argv[1], "output", "0000")
rng = random.Random(7)
for degree in range(4, 16):
    with open(os.path.join(out, "critical_points_deg_%d.csv" % degree), "w") as f:
        f.write("x1,x2,x3,z,gradnorm\n")
        for _ in range(2000):
            f.write(",".join("%.17g" % rng.uniform(-1, 1) for _ in range(5)) + "\n")
"""


def csv_run(bed: Bed) -> RunRecord:
    run = bed.make_run([("EXITED", 0)], small_count=0)
    bed.testbed.as_user("falcon", join(["python3", "-c", CSV_FILES, run.remote_dir]))
    return run


def remote_digests(bed: Bed, run: RunRecord) -> dict[str, str]:
    listing = bed.testbed.as_user(
        "falcon", join(["sh", "-c", 'cd -- "$1" && sha256sum output/0000/*.csv', "x", run.remote_dir])
    ).stdout
    return {line.split("  ", 1)[1]: line.split()[0] for line in listing.splitlines()}


def has_zstd_on_falcon(bed: Bed) -> bool:
    found = bed.testbed.as_user("falcon", "command -v zstd", check=False)
    return found.returncode == 0


@pytest.mark.parametrize("codec", ["zstd", "gzip", "none"])
def test_csv_run_comes_back_identical_and_verified_in_each_codec(bed: Bed, codec: str) -> None:
    if codec == "zstd":  # tests/testbed/packages.sh and the test extra install both ends
        assert "zstd" in decodable() and has_zstd_on_falcon(bed), "zstd is missing on one side"
    run = csv_run(bed)
    result = bed.collect(
        run, options=CollectOptions(results_root=bed.results, compression=codec)
    )
    target = local_run_dir(bed.results, run.problem, run.run_id)
    manifest_checks(target)
    digests = remote_digests(bed, run)
    assert len(digests) == 12
    for rel, digest in digests.items():
        assert hashlib.sha256((target / rel).read_bytes()).hexdigest() == digest
    assert result.compression == codec and result.files_fetched == result.file_count
    assert result.content_bytes_received == result.byte_count > 1 << 20
    assert result.stream_bytes_received > result.content_bytes_received
    if codec == "none":
        assert result.wire_bytes_received == result.stream_bytes_received
    else:
        # Floats in decimal: about 2.2x with gzip -1 or zstd -1.
        assert result.wire_bytes_received * 1.8 < result.content_bytes_received
    assert not [n for n in result.notes if "not installed" in n]


def test_auto_compresses_a_csv_run_over_ssh_and_says_so_in_json(
    bed: Bed, capsys: pytest.CaptureFixture[str]
) -> None:
    run = csv_run(bed)
    code = collect_main(["--cluster", str(bed.testbed.profile), "--run-id", run.run_id,
                         "--local-dir", str(bed.results), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (payload,) = json.loads(captured.out)["collections"]
    expected = "zstd" if "zstd" in decodable() and has_zstd_on_falcon(bed) else "gzip"
    assert payload["compression"] == expected
    assert payload["wire_bytes_received"] * 1.8 < payload["content_bytes_received"]
    manifest_checks(payload["local_dir"])


def test_flag_overrides_the_profile_and_the_progress_names_the_codec(
    bed: Bed, capsys: pytest.CaptureFixture[str]
) -> None:
    run = csv_run(bed)
    code = collect_main(["--cluster", str(bed.testbed.profile), "--run-id", run.run_id,
                         "--local-dir", str(bed.results), "--compression", "none"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "stream: uncompressed" in captured.err and "on the wire" not in captured.out
    shutil.rmtree(local_run_dir(bed.results, run.problem, run.run_id))
    code = collect_main(["--cluster", str(bed.testbed.profile), "--run-id", run.run_id,
                         "--local-dir", str(bed.results), "--compression", "gzip"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "stream: gzip" in captured.err
    assert "on the wire with gzip" in captured.out + captured.err
