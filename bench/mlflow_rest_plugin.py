"""pytest plugin for bench/mlflow_rest_tests.py: runs MLflow's own REST test modules against a running
`mlreg serve`, each test in a fresh project with its own admin token.

Loaded with `-p bench.mlflow_rest_plugin`; MLREG_COMPAT_SERVICE (the service's base URL) and
MLREG_COMPAT_DATA_DIR (its data directory, where `mlreg serve` publishes its table) say where the service
is. Without them (the runner's --reference) MLflow's own server fixtures stay, and only the selection
and the result file apply.

How the server fixtures are replaced: before pytest reads a kept module's fixtures, the module's own
server fixtures (`mlflow_client`, `client`, `artifacts_server`, `mlflow_server`, `store_type`) are
swapped for the ones below. MLflow's tests send some requests with plain `requests` (no token), as a
browser-less curl would against an open `mlflow server`: a session hook adds the test's token to
requests for the service, as a user's MLFLOW_TRACKING_TOKEN does for the client."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from bench.mlflow_rest_tests import skip_reason

SERVICE = os.environ.get("MLREG_COMPAT_SERVICE")
RESULTS = os.environ.get("MLREG_COMPAT_RESULTS")
_state = SimpleNamespace(token=None)


# ---- selection and results ---------------------------------------------------------------------------

def pytest_collection_modifyitems(config, items):
    kept, dropped = [], []
    for item in items:
        (dropped if skip_reason(item.nodeid) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


def pytest_runtest_logreport(report):
    """One line per test (its call, or the setup that failed or skipped it), plus failed teardowns."""
    if not RESULTS or not (report.when == "call" or report.failed or (report.when == "setup" and report.skipped)):
        return
    outcome = "passed" if report.passed else ("skipped" if report.skipped else "failed")
    with open(RESULTS, "a") as out:
        out.write(json.dumps({"test": report.nodeid, "when": report.when, "outcome": outcome,
                              "message": "" if report.passed else _first_line(report)}) + "\n")


def _first_line(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0][:300] if crash.message else ""
    return str(report.longrepr).splitlines()[-1][:300] if report.longrepr else ""


# ---- one fresh project and token per test --------------------------------------------------------------

def _new_project() -> tuple[str, str]:
    from mlreg import admin
    from shared import projects
    from shared.routes import Role

    if not getattr(_new_project, "connected", False):
        admin.connect(SimpleNamespace(table=None, data_dir=Path(os.environ["MLREG_COMPAT_DATA_DIR"]),
                                      dynamodb_endpoint=None, region=None))
        _new_project.connected = True
    project = f"t-{uuid.uuid4().hex[:12]}"
    projects.create_project(project, "MLflow REST test")
    return f"{SERVICE}/projects/{project}", projects.create_token(project, Role.ADMIN, name="mlflow-rest-tests")


class _Project:
    """Points the MLflow client (env, tracking and registry URIs) at a fresh project; undone on exit."""

    def __enter__(self) -> str:
        import mlflow

        self.uri, token = _new_project()
        self.previous = (os.environ.get("MLFLOW_TRACKING_TOKEN"), _state.token)
        os.environ["MLFLOW_TRACKING_TOKEN"] = _state.token = token
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        return self.uri

    def __exit__(self, *exc) -> None:
        import mlflow

        old_env, _state.token = self.previous
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        else:
            os.environ["MLFLOW_TRACKING_TOKEN"] = old_env
        if mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


@pytest.fixture(params=["sqlalchemy"], ids=["mlreg"])
def store_type(request):
    """MLflow's tests branch on the store; mlreg answers as the SQL store (the reference run uses it)."""
    return request.param


@pytest.fixture
def mlflow_client():
    """test_rest_tracking.py's server fixture."""
    from mlflow import MlflowClient

    with _Project() as uri:
        yield MlflowClient(uri)


client = mlflow_client  # test_model_registry.py's and test_client_webhooks.py's name for it


@pytest.fixture(scope="module")
def artifacts_server():
    """test_mlflow_artifacts.py's: tests that read the server's own disk are not kept."""
    with _Project() as uri:
        yield SimpleNamespace(backend_store_uri=uri, url=uri, artifacts_destination=None, process=None,
                              default_artifact_root=f"{uri}/api/2.0/mlflow-artifacts/artifacts")


@pytest.fixture(scope="module")
def mlflow_server(app_client):
    """tests/webhooks/test_e2e.py's (after its receiver app is up, as there)."""
    with _Project() as uri:
        yield uri


def wait_until_ready(health_endpoint: str, max_attempts: int = 120) -> None:
    """tests/webhooks/test_e2e.py's, with more patience: its receiver app takes more than its 10 s to
    start on a loaded 2-core machine (both runs, mlreg and reference, get the same)."""
    import time

    for _ in range(max_attempts):
        try:
            if requests.get(health_endpoint, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"Failed to start server at {health_endpoint}")


OVERRIDES = {"store_type": store_type, "mlflow_client": mlflow_client, "client": client,
             "artifacts_server": artifacts_server, "mlflow_server": mlflow_server}


def pytest_collectstart(collector):
    if not isinstance(collector, pytest.Module):
        return
    try:
        module = collector.obj  # imported now, before pytest reads its fixtures
    except Exception:
        return  # pytest reports the import error itself
    replaced = {**(OVERRIDES if SERVICE else {}), "wait_until_ready": wait_until_ready}
    for name, replacement in replaced.items():
        if name in vars(module):
            setattr(module, name, replacement)


# ---- the token on MLflow's raw `requests` calls ---------------------------------------------------------

_original_request = requests.Session.request


def _with_token(self, method, url, *args, **kwargs):
    if SERVICE and _state.token and str(url).startswith(SERVICE):
        headers = dict(kwargs.get("headers") or {})
        if not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {_state.token}"
        kwargs["headers"] = headers
    return _original_request(self, method, url, *args, **kwargs)


if SERVICE:
    requests.Session.request = _with_token
