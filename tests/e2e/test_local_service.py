"""`mlreg serve` itself: first start, persistence across restarts, clear startup errors."""

from __future__ import annotations

import socket
import subprocess
import sys

import mlflow
import pytest

from tests.conftest import free_port, start_service, stop_service


def test_data_survives_restart(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    svc = start_service(data_dir)
    try:
        client = mlflow.MlflowClient(svc.uri())
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", svc.token)
        exp = client.create_experiment("persisted")
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "m", 1.5, step=3)
    finally:
        stop_service(svc)
    assert (data_dir / "table.json").exists()  # a clean stop folds the write-ahead log into the snapshot

    again = start_service(data_dir)
    try:
        assert again.token == svc.token  # the same admin token keeps working
        client = mlflow.MlflowClient(again.uri())
        assert client.get_experiment_by_name("persisted").experiment_id == exp
        assert client.get_run(run.info.run_id).data.metrics == {"m": 1.5}
        assert [m.step for m in client.get_metric_history(run.info.run_id, "m")] == [3]
    finally:
        stop_service(again)


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlreg.cli", "serve", *args], capture_output=True, text=True, timeout=60)


def test_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = _serve("--port", str(busy.getsockname()[1]), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_unusable_data_dir_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = _serve("--port", str(free_port()), "--data-dir", str(blocker / "sub"))
    assert result.returncode == 2 and "cannot use data directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_real_endpoints_instead_of_the_emulator(tmp_path, monkeypatch):
    """`--dynamodb-endpoint/--s3-endpoint` (DynamoDB Local, AWS): a moto server plays the real service."""
    from moto.server import ThreadedMotoServer

    aws = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    aws.start()
    host, port = aws.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        svc = start_service(tmp_path / "data", extra=["--dynamodb-endpoint", endpoint, "--s3-endpoint", endpoint,
                                                      "--table", "external", "--bucket", "external-bucket"])
        try:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", svc.token)
            client = mlflow.MlflowClient(svc.uri())
            exp = client.create_experiment("external")
            import boto3

            ddb = boto3.client("dynamodb", endpoint_url=endpoint)
            item = ddb.get_item(TableName="external", Key={"pk": {"S": f"P#default#E#{exp}"}, "sk": {"S": "#E"}})
            assert item["Item"]["name"]["S"] == "external"
        finally:
            stop_service(svc)
    finally:
        aws.stop()
