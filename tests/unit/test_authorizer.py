"""The token authorizer with hand-made API Gateway REQUEST events, the project and token store, and
the local gateway's mapping of the authorizer's answers to 401/403."""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json

import pytest

from functions import authorizer
from mlreg import admin
from shared import projects
from shared.errors import MlflowError
from shared.routes import Role

API = "arn:aws:execute-api:eu-west-1:123456789012:abc123"


def event(project: str, token: str | None, method: str = "GET", path: str = "/api/2.0/mlflow/experiments/get",
          scheme: str = "Bearer") -> dict:
    """The REQUEST authorizer event API Gateway sends for /projects/<project><path>."""
    headers = {"Host": "abc123.execute-api.eu-west-1.amazonaws.com"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    return {
        "type": "REQUEST",
        "methodArn": f"{API}/prod/{method}/projects/{project}{path}",
        "resource": "/projects/{project}" + path, "path": f"/projects/{project}{path}", "httpMethod": method,
        "headers": headers, "queryStringParameters": None, "pathParameters": {"project": project},
        "requestContext": {"stage": "prod", "httpMethod": method},
    }


def allows(result: dict, arn: str) -> bool:
    """API Gateway's evaluation: an explicit Deny wins, else some Allow must match."""
    matching = [s for s in result["policyDocument"]["Statement"] if fnmatch.fnmatchcase(arn, s["Resource"])]
    return any(s["Effect"] == "Allow" for s in matching) and not any(s["Effect"] == "Deny" for s in matching)


@pytest.fixture
def two_projects(aws):
    projects.create_project("alpha")
    projects.create_project("beta")
    return {role: projects.create_token("alpha", role, name=role.name) for role in Role}


def test_valid_token_gets_an_allow_for_its_project_only(two_projects):
    token = two_projects[Role.WRITE]
    result = authorizer.handler(event("alpha", token))
    assert result["context"] == {"project": "alpha", "role": "write", "token_id": projects.token_id_of(token)}
    assert result["principalId"] == projects.token_id_of(token)
    assert allows(result, f"{API}/prod/POST/projects/alpha/api/2.0/mlflow/runs/log-batch")
    assert allows(result, f"{API}/prod/DELETE/projects/alpha/api/2.0/mlflow-artifacts/artifacts/a/b")
    # A cached Allow can never serve another project, a project with a longer id, or another stage.
    assert not allows(result, f"{API}/prod/GET/projects/beta/api/2.0/mlflow/experiments/get")
    assert not allows(result, f"{API}/prod/GET/projects/alphabet/api/2.0/mlflow/experiments/get")
    assert not allows(result, f"{API}/test/GET/projects/alpha/api/2.0/mlflow/experiments/get")


@pytest.mark.parametrize("role", list(Role))
def test_context_carries_each_role(two_projects, role):
    assert authorizer.handler(event("alpha", two_projects[role]))["context"]["role"] == role.name.lower()


@pytest.mark.parametrize("headers", [None, {}, {"Authorization": ""}, {"Authorization": "Bearer "},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}, {"authorization": "Token abc"}])
def test_missing_or_malformed_header_is_unauthorized(two_projects, headers):
    ev = event("alpha", None)
    ev["headers"] = headers
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorizer.handler(ev)


def test_header_name_and_scheme_are_case_insensitive(two_projects):
    ev = event("alpha", None)
    ev["headers"]["authorization"] = "bearer " + two_projects[Role.READ]
    assert authorizer.handler(ev)["context"]["role"] == "read"


@pytest.mark.parametrize("token", ["mlreg_alpha_not-a-real-secret", "mlreg_not-a-token", "garbage", "mlreg_alpha_"])
def test_unknown_tokens_are_unauthorized(two_projects, token):
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorizer.handler(event("alpha", token))


def test_token_of_another_project_is_denied_without_a_hint(two_projects):
    token = two_projects[Role.ADMIN]
    for path in ("/api/2.0/mlflow/experiments/get", "/api/2.0/mlflow/runs/create"):
        result = authorizer.handler(event("beta", token, path=path))
        assert "context" not in result
        assert [s["Effect"] for s in result["policyDocument"]["Statement"]] == ["Deny"]
        assert not allows(result, f"{API}/prod/GET/projects/beta{path}")
    # A forged token that names another project gets the same answer: nothing is read there.
    forged = authorizer.handler(event("beta", "mlreg_alpha_forged"))
    assert forged["policyDocument"] == authorizer.handler(event("beta", token))["policyDocument"]


def test_token_of_a_missing_project_path(two_projects):
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorizer.handler(event("gamma", "mlreg_gamma_whatever"))
    assert "Deny" in json.dumps(authorizer.handler(event("gamma", two_projects[Role.READ])))


@pytest.mark.parametrize("project", ["*", "alpha*", "ALPHA", "a/b", ""])
def test_project_ids_that_could_widen_a_policy_are_refused(two_projects, project):
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorizer.handler(event(project, two_projects[Role.ADMIN]))


def test_expired_token_is_unauthorized(two_projects, monkeypatch):
    token = projects.create_token("alpha", Role.READ, expires_at_ms=projects.now_ms() + 60_000)
    assert authorizer.handler(event("alpha", token))["context"]["role"] == "read"
    monkeypatch.setattr(projects, "now_ms", lambda: 2**62)
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorizer.handler(event("alpha", token))


def test_revoked_token_is_unauthorized_and_revocation_is_idempotent(two_projects):
    token = two_projects[Role.WRITE]
    projects.revoke_token("alpha", projects.token_id_of(token))
    first = {t["token_id"]: t for t in projects.list_tokens("alpha")}[projects.token_id_of(token)]
    projects.revoke_token("alpha", projects.token_id_of(token))
    again = {t["token_id"]: t for t in projects.list_tokens("alpha")}[projects.token_id_of(token)]
    assert first["revoked"] and again["revoked_at"] == first["revoked_at"]
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorizer.handler(event("alpha", token))
    # Still a token of alpha: on beta's path the answer stays 403, never a hint about beta.
    assert authorizer.handler(event("beta", token))["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_last_used_is_written_at_most_once_a_minute(two_projects, monkeypatch):
    token = two_projects[Role.READ]
    writes = []
    real_update = projects.db.update
    monkeypatch.setattr(projects.db, "update", lambda *a, **k: writes.append(a) or real_update(*a, **k))
    clock = [1_800_000_000_000]
    monkeypatch.setattr(projects, "now_ms", lambda: clock[0])

    def last_used():
        return {t["token_id"]: t for t in projects.list_tokens("alpha")}[projects.token_id_of(token)].get("last_used_at")

    authorizer.handler(event("alpha", token))
    assert last_used() == clock[0] and len(writes) == 1
    clock[0] += 59_000
    authorizer.handler(event("alpha", token))
    assert len(writes) == 1  # fresh stamp: no write at all
    clock[0] += 2_000
    authorizer.handler(event("alpha", token))
    assert last_used() == clock[0] and len(writes) == 2


def test_a_concurrent_stamp_does_not_fail_the_request(two_projects, monkeypatch):
    token = two_projects[Role.READ]
    stale = projects.authenticate("alpha", token)
    projects.note_use(stale)  # another invocation stamps first
    projects.note_use(stale)  # this one's conditional write fails quietly
    assert projects.authenticate("alpha", token)["last_used_at"]


# ---- projects and tokens -------------------------------------------------------------------------

def test_token_format_names_its_project(two_projects):
    token = two_projects[Role.READ]
    assert token.startswith("mlreg_alpha_") and len(token) > 50
    assert projects.project_named_by(token) == "alpha"
    assert projects.project_named_by("mlreg_my-proj_a_b-c") == "my-proj"
    assert projects.project_named_by("mlreg_Bad_x") is None
    assert projects.project_named_by("other_alpha_x") is None


def test_only_the_hash_is_stored(two_projects):
    from shared import db

    token = two_projects[Role.ADMIN]
    items = db.client().scan(TableName=db.table_name())["Items"]
    assert token not in json.dumps(items)
    listed = json.dumps(projects.list_tokens("alpha"))
    assert projects.hash_token(token) not in listed and token not in listed
    assert {t["name"] for t in projects.list_tokens("alpha")} == {"READ", "WRITE", "ADMIN"}


def test_project_lifecycle(aws):
    projects.create_project("alpha", "first")
    projects.create_project("beta")
    with pytest.raises(MlflowError, match="already exists"):
        projects.create_project("alpha")
    assert [p["project"] for p in projects.list_projects()] == ["alpha", "beta"]
    token = projects.create_token("beta", Role.ADMIN)
    assert projects.delete_project("beta") == 1
    assert [p["project"] for p in projects.list_projects()] == ["alpha"]
    assert [p["state"] for p in projects.list_projects(include_deleted=True)] == ["active", "deleted"]
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorizer.handler(event("beta", token))
    with pytest.raises(MlflowError, match="does not exist"):
        projects.create_token("beta", Role.READ)
    with pytest.raises(MlflowError, match="already exists"):
        projects.create_project("beta")  # a new project must never inherit the old one's data
    with pytest.raises(MlflowError, match="does not exist"):
        projects.delete_project("beta")
    with pytest.raises(MlflowError, match="Invalid project id"):
        projects.create_project("Not_Valid")


def test_delete_refuses_a_project_with_data_unless_forced(aws):
    from shared.tracking import experiments

    projects.create_project("alpha")
    experiments.insert("alpha", "training", {})
    with pytest.raises(MlflowError, match="still holds experiments"):
        projects.delete_project("alpha")
    assert projects.delete_project("alpha", force=True) == 0


def test_durations():
    assert admin.parse_duration_ms("90s") == 90_000
    assert admin.parse_duration_ms("30d") == 30 * 86_400_000
    for bad in ("30", "1y", "-1d", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            admin.parse_duration_ms(bad)


# ---- the local gateway keeps API Gateway's contract ----------------------------------------------

def call(project: str, token: str | None, method: str = "GET", path: str = "/api/2.0/mlflow/experiments/search",
         body: dict | None = None) -> tuple[int, dict]:
    from mlreg import gateway

    headers = {"Host": "localhost"} | ({"Authorization": f"Bearer {token}"} if token else {})
    response = gateway.handle(method, f"/projects/{project}{path}", headers, json.dumps(body).encode() if body else b"")
    return response["statusCode"], json.loads(response["body"])


def test_gateway_maps_authorizer_answers_to_mlflow_errors(two_projects):
    assert call("alpha", None) == (401, {"error_code": "UNAUTHENTICATED",
                                         "message": "Missing or invalid token for this project (MLFLOW_TRACKING_TOKEN)"})
    assert call("beta", two_projects[Role.ADMIN]) == (403, {"error_code": "PERMISSION_DENIED",
                                                            "message": "This token may not access this project"})
    status, body = call("alpha", two_projects[Role.READ], "POST", "/api/2.0/mlflow/experiments/create", {"name": "x"})
    assert (status, body["error_code"]) == (403, "PERMISSION_DENIED")
    status, body = call("alpha", two_projects[Role.WRITE], "POST", "/api/2.0/mlflow/experiments/create", {"name": "x"})
    assert status == 200 and body["experiment_id"]
    assert call("alpha", two_projects[Role.READ])[0] == 200


def test_gateway_keeps_authorizer_answers_as_api_gateway_caches_them(two_projects, monkeypatch):
    """One authorizer run per token and project while the answer is kept; a refusal is not kept; a
    write of a token or session (the emulator counts them) or the TTL ends every kept answer."""
    from mlreg import gateway

    runs, writes, now = [], [0], [1000.0]
    real = gateway._handler("authorizer")
    monkeypatch.setattr(gateway, "_handler", lambda name: (lambda e, c: runs.append(e["path"]) or real(e, c))
                        if name == "authorizer" else importlib.import_module(f"functions.{name}").handler)
    monkeypatch.setattr(gateway.time, "monotonic", lambda: now[0])
    cache = gateway.AuthorizerCache(60, lambda: writes[0])
    token, other = two_projects[Role.READ], two_projects[Role.ADMIN]

    def status(project: str, token: str) -> int:
        headers = {"Host": "localhost", "Authorization": f"Bearer {token}"}
        return gateway.handle("GET", f"/projects/{project}/api/2.0/mlflow/experiments/search", headers, b"",
                              cache=cache)["statusCode"]

    assert [status("alpha", token) for _ in range(3)] == [200, 200, 200] and len(runs) == 1
    assert [status("beta", token) for _ in range(2)] == [403, 403] and len(runs) == 2  # a Deny, kept for beta
    assert status("alpha", token) == 200 and len(runs) == 2  # ... and not answering alpha
    assert [status("alpha", "mlreg_alpha_unknown") for _ in range(2)] == [401, 401] and len(runs) == 4
    projects.revoke_token("alpha", projects.token_id_of(token))
    assert status("alpha", token) == 200  # kept: nothing told the cache
    writes[0] += 1  # what the emulator counts when the revocation is written
    assert status("alpha", token) == 401
    assert status("alpha", other) == 200 and len(runs) == 6
    now[0] += 61
    assert status("alpha", other) == 200 and len(runs) == 7  # the TTL ran out
    assert gateway.AuthorizerCache(0).seconds == 0 and len({status("alpha", other) for _ in range(2)}) == 1


def test_the_emulator_counts_writes_of_tokens_sessions_and_projects():
    from mlreg.emulator import _is_credential
    from shared import keys

    def key(sort_key: str) -> dict:
        return {"pk": {"S": "P#alpha"}, "sk": {"S": sort_key}}

    assert all(_is_credential(key(k)) for k in (keys.token_sk("ab"), keys.session_sk("cd"), keys.PROJECT_SK))
    assert not any(_is_credential(key(k)) for k in ("R#1", "#COUNTER#runs", "M#churn"))


# ---- docs/auth.md lists the role of every route --------------------------------------------------

def test_auth_doc_role_table_matches_the_route_table():
    text = admin.AUTH_DOC.read_text()
    block = text.split(admin.ROLE_TABLE_BEGIN, 1)[1].split(admin.ROLE_TABLE_END, 1)[0].strip()
    assert block == admin.role_table(), "docs/auth.md is out of date: run `python -m mlreg.admin`"
