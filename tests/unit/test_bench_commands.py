"""Every bench command runs and prints its table (tiny sizes: the figures themselves are in
docs/performance.md; bench.request_budget is exercised by test_request_budget.py)."""

from __future__ import annotations

import json
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


def test_cold_start_serves_a_first_request_of_every_function():
    found = rows(bench("bench.cold_start", "--repeat", "1", "--no-package"))
    for name in ("authorizer", "tracking", "registry", "artifacts"):
        (row,) = [cells for label, cells in found.items() if label.startswith(f"{name}: ")]
        init, invoke, first = (float(x.split()[0].strip("*")) for x in row[:3])
        assert init > 0 and invoke > 0 and first == pytest.approx(init + invoke, abs=1.5)
        assert float(found[name][0]) > 0, "import time of the AWS SDK"


def test_uploads_times_transfers():
    found = rows(bench("bench.uploads", "--sizes-mb", "1", "--repeat", "1", "--only", "mlreg", "--settle", "0"))
    assert float(found["log_artifact 1 MB"][0]) > 0 and float(found["download_artifacts 1 MB"][0]) > 0


@pytest.mark.skipif(sys.platform != "linux", reason="starts two servers")
def test_e2e_runs_the_workload_against_both_servers(tmp_path):
    found = rows(bench("bench.e2e", "--sizes", "5", "--history", "200", "--artifact-mb", "0", "--latency-runs", "1",
                       "--repeat", "1", "--threads", "2", "--samples", str(tmp_path / "samples.jsonl")))
    mlreg_ms, reference_ms, ratio = (float(x.replace(",", "")) for x in found["get_model_version_by_alias"][:3])
    assert mlreg_ms > 0 and reference_ms > 0 and ratio == pytest.approx(mlreg_ms / reference_ms, abs=0.01)
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    by_alias = {s["server"]: s["ms"] for s in samples if s["step"] == "get_model_version_by_alias"}
    assert by_alias.keys() == {"mlreg", "mlflow server"} and {s["round"] for s in samples} == {0}
    assert by_alias["mlreg"] == pytest.approx(mlreg_ms, abs=0.05)  # one sample: the median is it
    assert "search_runs 5 runs: filter tags.team = 'x', page of 100" in found
    assert float(found["2 threads logging runs (create_run + log_batch), 5 runs: runs/s"][0]) > 0


FAKE_REST_TESTS = '''
import pytest
import requests


@pytest.fixture(params=["file", "sqlalchemy"])
def store_type(request):
    return request.param


@pytest.fixture
def mlflow_client(store_type):
    raise RuntimeError("MLflow's own server fixture ran")


def test_a_client_and_raw_requests_reach_the_project(mlflow_client):
    experiment_id = mlflow_client.create_experiment("x")
    got = requests.get(f"{mlflow_client.tracking_uri}/api/2.0/mlflow/experiments/get",
                       params={"experiment_id": experiment_id})
    assert got.json()["experiment"]["name"] == "x"


def test_each_test_has_a_fresh_project(mlflow_client):
    assert mlflow_client.get_experiment_by_name("x") is None


def test_graphql_is_left_out(mlflow_client):
    raise AssertionError("a left-out test ran")
'''


def test_mlflow_rest_tests_run_mlflows_modules_with_the_server_fixture_replaced(tmp_path):
    """A stand-in for MLflow's checkout: its five module paths, one with MLflow's fixture names."""
    from bench.mlflow_rest_tests import MODULES

    for module in MODULES:
        path = tmp_path / module
        path.parent.mkdir(parents=True, exist_ok=True)
        for package in (path.parent, path.parent.parent):
            (package / "__init__.py").touch()
        path.write_text(FAKE_REST_TESTS if module.endswith("test_rest_tracking.py") else "")
    out = bench("bench.mlflow_rest_tests", str(tmp_path), "--results", str(tmp_path / "results.jsonl"))
    assert "mlreg: 2 passed, 0 failed, 0 skipped of 2 kept tests" in out, out
