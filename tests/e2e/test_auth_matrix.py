"""Isolation suite: every route of the route table (so new routes are covered automatically) against a
running `mlreg serve`, with tokens of two projects and three roles made by the `mlreg` CLI.

Per route: no token, a malformed token, a revoked and an expired token -> 401; the other project's
admin token -> 403; each role below the route's -> 403 PERMISSION_DENIED; each role at or above it ->
neither 401 nor 403 (the handler may answer 400/404 to the minimal request). Then cross-project data
checks: what project A holds is invisible to project B's admin token."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import requests

from shared.routes import Role, api_routes

A, B = "auth-a", "auth-b"
UNAUTHENTICATED = (401, "UNAUTHENTICATED")
DENIED = (403, "PERMISSION_DENIED")

pytestmark = pytest.mark.xdist_group("auth_matrix")  # one worker makes the projects and tokens (the CLI, 9 times)


def mlreg(service, *args: str) -> str:
    """Run the real CLI against the service's data directory; returns its stdout."""
    result = subprocess.run([sys.executable, "-m", "mlreg.cli", *args, "--data-dir", str(service.data_dir)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def tokens(service):
    mlreg(service, "project", "create", A, "--description", "auth matrix")
    mlreg(service, "project", "create", B)
    made = {(A, role): mlreg(service, "token", "create", "--project", A, "--role", role.name.lower(), "--name", role.name)
            for role in Role}
    made[(B, Role.ADMIN)] = mlreg(service, "token", "create", "--project", B, "--role", "admin")
    made["expired"] = mlreg(service, "token", "create", "--project", A, "--role", "admin", "--expires-in", "1s")
    expired_after = time.time() + 1.2
    made["revoked"] = mlreg(service, "token", "create", "--project", A, "--role", "admin")
    mlreg(service, "token", "revoke", "--project", A, tid(made["revoked"]))
    time.sleep(max(0.0, expired_after - time.time()))  # let the 1 s token expire
    return made


def tid(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()[:12]


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


def concrete_path(path: str) -> str:
    """A real request path for a route: greedy parameters get a nested path, others one segment."""
    path = re.sub(r"\{\w+\+\}", "auth-matrix/probe.txt", path)
    return re.sub(r"\{\w+\}", "probe", path)


def call(http, service, route, project: str, token: str | None) -> tuple[int, str | None]:
    url = f"{service.uri(project)}{concrete_path(route.path)}"
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    body = None if route.method == "GET" else b"{}"
    response = http.request(route.method, url, headers=headers, data=body, allow_redirects=False, timeout=30)
    try:
        code = response.json().get("error_code")
    except ValueError:
        code = None
    return response.status_code, code


ROUTES = api_routes()  # the token's routes; the web UI's take its session (tests/ui)


@pytest.mark.client_free  # raw HTTP and the mlreg CLI: runs once; test_mlflow_client_sees_roles runs on both lines
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_route_matrix(service, tokens, http, route):
    cells = {
        "no token": (None, UNAUTHENTICATED),
        "empty token": ("", UNAUTHENTICATED),
        "unknown token": (f"mlreg_{A}_{uuid.uuid4().hex}", UNAUTHENTICATED),
        "expired token": (tokens["expired"], UNAUTHENTICATED),
        "revoked token": (tokens["revoked"], UNAUTHENTICATED),
        "other project's admin": (tokens[(B, Role.ADMIN)], DENIED),
    }
    for role in Role:
        cells[f"role {role.name.lower()}"] = (tokens[(A, role)], DENIED if role < route.role else None)
    failures = []
    for cell, (token, expected) in cells.items():
        got = call(http, service, route, A, token)
        if expected is None and (got[0] in (401, 403) or got[1] == "ENDPOINT_NOT_FOUND"):
            failures.append(f"{cell}: expected to reach the handler, got {got}")
        elif expected is not None and got != expected:
            failures.append(f"{cell}: expected {expected}, got {got}")
    assert not failures, "\n".join(failures)


@pytest.mark.client_free
def test_the_matrix_covers_every_route_and_role():
    """Every role is required by some route, and the matrix is parametrised by the live table."""
    assert {r.role for r in ROUTES} == set(Role)
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)


# ---- cross-project data ---------------------------------------------------------------------------

def api(http, service, project: str, token: str, method: str, route: str, body: dict | None = None):
    url = f"{service.uri(project)}/api/2.0/mlflow/{route}"
    if method == "GET":
        response = http.get(url, params=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    else:
        response = http.post(url, json=body or {}, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return response.status_code, response.text


@pytest.fixture(scope="module")
def secret(service, tokens, http):
    """An experiment and a run in project A, named and valued so any leak is recognisable."""
    marker = f"secret-{uuid.uuid4().hex}"
    token = tokens[(A, Role.WRITE)]
    status, text = api(http, service, A, token, "POST", "experiments/create", {"name": marker})
    assert status == 200, text
    experiment_id = json.loads(text)["experiment_id"]
    status, text = api(http, service, A, token, "POST", "runs/create",
                       {"experiment_id": experiment_id, "run_name": marker, "start_time": 1})
    assert status == 200, text
    run_id = json.loads(text)["run"]["info"]["run_id"]
    status, text = api(http, service, A, token, "POST", "runs/log-parameter", {"run_id": run_id, "key": "p",
                                                                               "value": marker})
    assert status == 200, text
    return {"marker": marker, "experiment_id": experiment_id, "run_id": run_id}


@pytest.mark.client_free
def test_project_a_data_is_invisible_from_b(service, tokens, http, secret):
    b_admin = tokens[(B, Role.ADMIN)]
    reads = [
        ("GET", "experiments/get", {"experiment_id": secret["experiment_id"]}),
        ("GET", "experiments/get-by-name", {"experiment_name": secret["marker"]}),
        ("POST", "experiments/search", {"view_type": "ALL", "max_results": 1000}),
        ("GET", "runs/get", {"run_id": secret["run_id"]}),
        ("POST", "runs/search", {"experiment_ids": [secret["experiment_id"], "0"], "run_view_type": "ALL"}),
        ("GET", "metrics/get-history", {"run_id": secret["run_id"], "metric_key": "m"}),
    ]
    for method, route, body in reads:
        status, text = api(http, service, B, b_admin, method, route, body)
        if secret["marker"] not in json.dumps(body):  # an error message may echo what was asked for
            assert secret["marker"] not in text, f"{route} in {B} leaked {A}'s data: {text}"
        assert status in (200, 400, 404), (route, status, text)
        if status == 200:
            assert secret["run_id"] not in text, (route, text)
    assert api(http, service, B, b_admin, "GET", "runs/get", {"run_id": secret["run_id"]})[0] == 404
    assert api(http, service, B, b_admin, "GET", "experiments/get-by-name", {"experiment_name": secret["marker"]})[0] == 404


@pytest.mark.client_free
def test_writes_from_b_cannot_touch_a(service, tokens, http, secret):
    b_admin = tokens[(B, Role.ADMIN)]
    writes = [
        ("runs/log-parameter", {"run_id": secret["run_id"], "key": "q", "value": "from-b"}),
        ("runs/set-tag", {"run_id": secret["run_id"], "key": "t", "value": "from-b"}),
        ("runs/log-metric", {"run_id": secret["run_id"], "key": "m", "value": 1.0, "timestamp": 1, "step": 0}),
        ("runs/delete", {"run_id": secret["run_id"]}),
    ]
    for route, body in writes:
        status, text = api(http, service, B, b_admin, "POST", route, body)
        assert status in (400, 404), (route, status, text)
        # ... and on A's own path, B's token gets 403 before any handler runs.
        assert api(http, service, A, b_admin, "POST", route, body)[0] == 403
    status, text = api(http, service, A, tokens[(A, Role.READ)], "GET", "runs/get", {"run_id": secret["run_id"]})
    run = json.loads(text)["run"]
    assert run["info"]["lifecycle_stage"] == "active"
    assert [p["key"] for p in run["data"].get("params", [])] == ["p"]
    assert "tags" not in run["data"] or all(t["key"] != "t" for t in run["data"]["tags"])
    assert not run["data"].get("metrics")


@pytest.mark.client_free
def test_a_foreign_token_learns_nothing_about_what_exists(service, tokens, http, secret):
    """A's token on B's path: the same answer whether or not the entity exists anywhere."""
    a_admin = tokens[(A, Role.ADMIN)]
    existing = api(http, service, B, a_admin, "GET", "experiments/get", {"experiment_id": secret["experiment_id"]})
    missing = api(http, service, B, a_admin, "GET", "experiments/get", {"experiment_id": "987654321"})
    assert existing == missing and existing[0] == 403
    nowhere = api(http, service, "no-such-project", a_admin, "GET", "experiments/get", {"experiment_id": "1"})
    assert nowhere == existing


def test_mlflow_client_sees_roles(service, tokens, monkeypatch):
    """The unmodified MLflow client: a read token can search but not write; errors keep their codes."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", tokens[(A, Role.READ)])
    client = MlflowClient(service.uri(A))
    assert any(e.experiment_id == "0" for e in client.search_experiments())
    with pytest.raises(MlflowException) as denied:
        client.create_experiment(f"read-only-{uuid.uuid4().hex}")
    assert denied.value.error_code == "PERMISSION_DENIED"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", tokens["revoked"])
    with pytest.raises(MlflowException) as unauthenticated:
        MlflowClient(service.uri(A)).search_experiments()
    assert unauthenticated.value.error_code == "UNAUTHENTICATED"


@pytest.mark.client_free
def test_cli_lists_tokens_without_secrets(service, tokens):
    listed = mlreg(service, "token", "list", "--project", A)
    assert "ADMIN" in listed and "LAST USED" in listed
    for token in (tokens[(A, r)] for r in Role):
        assert token not in listed
        assert tid(token) in listed
    by_id = {t["token_id"]: t for t in json.loads(mlreg(service, "token", "list", "--project", A, "--json"))}
    assert by_id[tid(tokens["revoked"])]["revoked"] and by_id[tid(tokens[(A, Role.READ)])]["last_used_at"]
    assert A in mlreg(service, "project", "list")


@pytest.mark.client_free
def test_cli_with_an_explicit_table_and_endpoint(service, tokens):
    """The deployed-environment path (`--table`, here with the service's own endpoint as DynamoDB)."""
    from mlreg.signatures import KEY_FILE, KEY_ID

    info = json.loads((service.data_dir / "endpoint.json").read_text())
    keys = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": (service.data_dir / KEY_FILE).read_text()}
    result = subprocess.run([sys.executable, "-m", "mlreg.cli", "token", "list", "--project", B, "--json",
                             "--table", info["table"], "--dynamodb-endpoint", info["dynamodb_endpoint"],
                             "--region", info["region"]], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **keys})
    assert result.returncode == 0, result.stderr
    assert [t["role"] for t in json.loads(result.stdout)] == ["admin"]
