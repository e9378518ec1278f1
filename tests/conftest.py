"""Fixtures shared by the suite: the emulated AWS account for unit tests, and a running
`mlreg serve` for end-to-end tests with the real MLflow client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.ports import free_port

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("MLREG_TABLE", "mlreg-test")
os.environ.setdefault("MLREG_BUCKET", "mlreg-test")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
# Stream calls under moto need this (see ../shared/design/toolchain-notes.md).
os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")


@pytest.fixture
def aws():
    """An empty emulated account with the table and bucket created from the shared definitions."""
    import boto3
    from moto import mock_aws

    from shared import db
    from shared import table as table_def

    with mock_aws():
        db.client.cache_clear()
        boto3.client("dynamodb").create_table(**table_def.create_table_kwargs(os.environ["MLREG_TABLE"]))
        boto3.client("s3").create_bucket(Bucket=os.environ["MLREG_BUCKET"])
        yield
        db.client.cache_clear()


@dataclass
class Service:
    host: str
    port: int
    data_dir: Path
    token: str
    process: subprocess.Popen

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def uri(self, project: str = "default") -> str:
        return f"{self.base_url}/projects/{project}"


def start_service(data_dir: Path, port: int | None = None, extra: list[str] | None = None) -> Service:
    port = port or free_port()
    log = open(data_dir.parent / f"serve-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlreg.cli", "serve", "--port", str(port), "--data-dir",
                             str(data_dir), *(extra or [])], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlreg serve exited: {(data_dir.parent / f'serve-{port}.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            time.sleep(0.1)
            continue
        if (data_dir / "endpoint.json").exists():  # published just after the port opens: tests read it
            break
        time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("mlreg serve did not start within 60 s")
    token = (data_dir / "admin-token").read_text().strip()
    return Service("127.0.0.1", port, data_dir, token, proc)


def stop_service(service: Service) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        service.process.kill()


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    """One `mlreg serve` per test worker, on a free port, with its own data directory."""
    svc = start_service(tmp_path_factory.mktemp("mlreg") / "data")
    yield svc
    stop_service(svc)


@pytest.fixture
def tracking(service, monkeypatch):
    """The MLflow client pointed at the local service, as a user would with the two exports."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", service.uri())
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", service.token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    mlflow.set_tracking_uri(service.uri())
    yield mlflow.MlflowClient(service.uri())
    if mlflow.active_run():
        mlflow.end_run()
