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


def test_warm_cpu_times_every_scenario():
    found = rows(bench("bench.warm_cpu", "--runs", "10", "--repeat", "1", "--versions", "2"))
    assert float(found["registered-models/alias (get-by-alias)"][0]) > 0
    assert "runs/search 10 runs: order by metric, page of 100" in found


def test_cold_start_serves_a_first_request_of_every_function():
    found = rows(bench("bench.cold_start", "--repeat", "1", "--no-package"))
    for name in ("authorizer", "tracking", "registry", "artifacts"):
        (row,) = [cells for label, cells in found.items() if label.startswith(f"{name}: ")]
        init, invoke, first = (float(x.split()[0].strip("*")) for x in row[:3])
        assert init > 0 and invoke > 0 and first == pytest.approx(init + invoke, abs=1.5)
        assert float(found[name][0]) > 0, "import time of the AWS SDK"


@pytest.mark.skipif(sys.platform != "linux", reason="starts two servers")
def test_e2e_runs_the_workload_against_both_servers():
    found = rows(bench("bench.e2e", "--sizes", "5", "--history", "200", "--artifact-mb", "0", "--latency-runs", "1",
                       "--repeat", "1", "--threads", "2"))
    mlreg_ms, reference_ms, ratio = (float(x.replace(",", "")) for x in found["get_model_version_by_alias"][:3])
    assert mlreg_ms > 0 and reference_ms > 0 and ratio == pytest.approx(mlreg_ms / reference_ms, abs=0.01)
    assert "search_runs 5 runs: filter + order by metric, 100" in found
