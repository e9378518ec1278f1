"""Every bench command runs and prints its table (tiny sizes: the figures themselves are in
docs/performance.md; bench.request_budget is exercised by test_request_budget.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench(*argv: str, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def rows(table: str) -> dict[str, list[str]]:
    return {cells[1].strip(): [c.strip() for c in cells[2:-1]]
            for cells in (line.split("|") for line in table.splitlines() if line.startswith("| "))}


def test_emulator_cost_compares_moto_with_the_patched_moto():
    found = rows(bench("bench.emulator_cost", "--sizes", "200", "--repeat", "1"))
    plain, patched = (float(x.replace(",", "")) for x in found["TransactWriteItems (5 puts)"][0].split(" / "))
    assert plain > 0 and patched > 0


def test_restart_times_a_data_directory_of_the_given_size():
    table = [line.split("|")[1:-1] for line in bench("bench.restart", "--items", "300", "--log-items", "100",
                                                      "--repeat", "1").splitlines() if line.startswith("| 300 ")]
    assert [cells[1].strip() for cells in table] == ["0", "100"]  # all in the snapshot; a tail in the log
    assert all(float(cells[3].strip().removesuffix(" s")) > 0 for cells in table)


def test_emulator_locks_compares_one_lock_with_the_reader_writer_lock():
    found = rows(bench("bench.emulator_locks", "--readers", "2", "--writers", "1", "--seconds", "0.5"))
    for lock in ("one lock (every request alone)", "reader/writer lock"):
        assert float(found[lock][0].replace(",", "")) > 0 and float(found[lock][1].replace(",", "")) > 0


def test_warm_cpu_times_every_scenario():
    found = rows(bench("bench.warm_cpu", "--runs", "10", "--repeat", "1", "--versions", "2"))
    assert float(found["registered-models/alias (get-by-alias)"][0]) > 0
    assert "runs/search 10 runs: order by metric, page of 100" in found


def test_cold_start_measures_every_function():
    found = rows(bench("bench.cold_start", "--repeat", "1", "--no-package"))
    assert {f"functions/{n}.py" for n in ("artifacts", "authorizer", "registry", "tracking")} <= found.keys()


def test_uploads_times_transfers():
    found = rows(bench("bench.uploads", "--sizes-mb", "1", "--repeat", "1", "--only", "mlreg", "--settle", "0"))
    assert float(found["log_artifact 1 MB"][0]) > 0 and float(found["download_artifacts 1 MB"][0]) > 0


@pytest.mark.skipif(sys.platform != "linux", reason="starts two servers")
def test_e2e_runs_the_workload_against_both_servers():
    found = rows(bench("bench.e2e", "--sizes", "5", "--history", "200", "--artifact-mb", "0", "--latency-runs", "1",
                       "--repeat", "1", "--threads", "2"))
    mlreg_ms, reference_ms, ratio = (float(x.replace(",", "")) for x in found["get_model_version_by_alias"][:3])
    assert mlreg_ms > 0 and reference_ms > 0 and ratio == pytest.approx(mlreg_ms / reference_ms, abs=0.01)
    assert "search_runs 5 runs: filter + order by metric, 100" in found
