"""The UI's routes over HTTP, without a browser: static files, the page and sign-in, which caller
each kind of route takes, the session's role and same-origin rule, GraphQL, and the answers for
features mlreg lacks."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path

import pytest
import requests

from mlreg import ui_bundle
from shared import routes
from shared.routes import Role
from shared.ui import graphql as ui_graphql
from tests.ui.conftest import mlreg


def signed_in(seeded, token: str) -> requests.Session:
    http = requests.Session()
    answer = http.post(seeded.base + "signin", data={"token": token}, allow_redirects=False)
    assert answer.status_code == 303, answer.text
    return http


def test_static_files_need_nothing_and_everything_else_does(seeded):
    index = (ui_bundle.bundle_dir() / "index.html").read_text()
    assets = re.findall(r'(?:src|href)="\.?/?(static-files/[^"]+)"', index)
    assert len(assets) >= 4
    for asset in assets:
        answer = requests.get(seeded.base + asset)
        assert answer.status_code == 200 and answer.headers["X-Content-Type-Options"] == "nosniff", asset
    js = requests.get(seeded.base + next(a for a in assets if a.endswith(".js")))
    assert js.headers["Content-Type"] == "text/javascript" and "immutable" in js.headers["Cache-Control"]
    for escape in ("../../../admin-token", "%2e%2e/%2e%2e/%2e%2e/admin-token", "static/../../data/admin-token"):
        raw = http.client.HTTPConnection(seeded.service.host, seeded.service.port)  # no client-side ../ folding
        raw.request("GET", "/projects/default/static-files/" + escape)
        assert raw.getresponse().status == 404, escape
    assert requests.get(seeded.base + "static-files/nope.js").status_code == 404
    for method, path in (("POST", "graphql"), ("GET", "package?name=x&version=1"), ("GET", "ajax-api/2.0/mlflow/experiments/search"),
                         ("GET", "ajax-api/2.0/mlflow/users/current")):
        answer = requests.request(method, seeded.base + path, headers={"Authorization": f"Bearer {seeded.write_token}"})
        assert (answer.status_code, answer.json()["error_code"]) == (401, "UNAUTHENTICATED"), path


def test_the_page_redirects_to_its_folder_and_signs_in_without_a_session(seeded):
    bare = requests.get(seeded.service.uri(), allow_redirects=False)
    assert (bare.status_code, bare.headers["Location"]) == (302, "default/")
    page = requests.get(seeded.base)
    assert page.status_code == 200 and "Sign in to project <code>default</code>" in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert 'id="root"' not in page.text  # not MLflow's page
    http = signed_in(seeded, seeded.read_token)
    app = http.get(seeded.base)
    assert 'id="root"' in app.text and "mlflow.workflowType_v1" in app.text


def test_sign_in_sets_a_strict_http_only_cookie_and_keeps_the_link(seeded):
    answer = requests.post(seeded.base + "signin", data={"token": seeded.read_token, "next": "#/experiments/1"},
                           allow_redirects=False)
    assert (answer.status_code, answer.headers["Location"]) == (303, "./#/experiments/1")
    cookie = answer.headers["Set-Cookie"]
    assert re.fullmatch(r"mlreg_session=[\w-]{43}; Max-Age=4320\d; HttpOnly; SameSite=Strict", cookie), cookie
    assert seeded.read_token not in cookie
    odd = requests.post(seeded.base + "signin", data={"token": seeded.read_token, "next": "https://evil.example"},
                        allow_redirects=False)
    assert odd.headers["Location"] == "./"  # only the UI's own #/ routes


@pytest.mark.parametrize("token,status,message", [
    ("", 401, "not a live token of project default"),
    ("mlreg_default_nope", 401, "not a live token of project default"),
    ("mlreg_vision_abc", 401, "belongs to project vision"),
])
def test_sign_in_refusals_say_why(seeded, token, status, message):
    answer = requests.post(seeded.base + "signin", data={"token": token})
    assert answer.status_code == status and message in answer.text
    assert "Set-Cookie" not in answer.headers


def test_sign_in_from_another_site_is_refused(seeded):
    answer = requests.post(seeded.base + "signin", data={"token": seeded.write_token},
                           headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert answer.status_code == 403 and "Set-Cookie" not in answer.headers


def test_sessions_open_the_ui_routes_and_tokens_the_api_routes_only(seeded):
    http = signed_in(seeded, seeded.read_token)
    assert http.get(seeded.base + "ajax-api/2.0/mlflow/experiments/search").status_code == 200
    api = http.get(seeded.base + "api/2.0/mlflow/experiments/search")
    assert (api.status_code, api.json()["error_code"]) == (401, "UNAUTHENTICATED")
    bearer = {"Authorization": f"Bearer {seeded.read_token}"}
    assert requests.get(seeded.base + "api/2.0/mlflow/experiments/search", headers=bearer).status_code == 200


def ui_route_samples():
    """One concrete request per UI route: the session routes and every API route's /ajax-api twin."""
    for route in [r for r in routes.ROUTES if r.auth in (routes.SESSION, routes.TOKEN_OR_SESSION)] + [
            r for r in routes.ui_api_routes() if r not in routes.ROUTES]:
        path = re.sub(r"\{\w+\+?\}", "x", route.path).lstrip("/")
        yield pytest.param(route, path, id=f"{route.method} {route.path}")


@pytest.mark.parametrize("route,path", list(ui_route_samples()))
def test_a_read_session_reaches_every_read_route_and_no_write_route(seeded, read_session, route, path):
    answer = read_session.request(route.method, seeded.base + path, json={},
                                  headers={"Origin": seeded.service.base_url})
    if route.role > Role.READ:
        assert (answer.status_code, answer.json()["error_code"]) == (403, "PERMISSION_DENIED"), answer.text
        assert "Signed in with a read token" in answer.json()["message"]
    else:
        assert answer.status_code not in (401, 403), answer.text


def test_the_files_the_ui_previews_open_with_a_token_as_mlflows_server_serves_them(seeded):
    """`get-artifact` (and its kin) answer the MLflow client's token as well as a session; with
    neither it is 401, and a token of the project opens nothing it may not read."""
    samples = [r for r in routes.ROUTES if r.auth == routes.TOKEN_OR_SESSION]
    assert {r.path for r in samples} >= {"/get-artifact", "/model-versions/get-artifact"}
    url = seeded.base + "get-artifact"
    bare = requests.get(url, params={"run_id": "0" * 32, "path": "../x"})
    assert (bare.status_code, bare.json()["error_code"]) == (401, "UNAUTHENTICATED")
    bearer = {"Authorization": f"Bearer {seeded.read_token}"}
    refused = requests.get(url, params={"run_id": "0" * 32, "path": "../x"}, headers=bearer)
    assert (refused.status_code, refused.json()) == (400, {"error_code": "INVALID_PARAMETER_VALUE",
                                                           "message": "Invalid path"})


@pytest.fixture(scope="module")
def read_session(seeded):
    return signed_in(seeded, seeded.read_token)


def test_writes_with_a_session_come_from_the_uis_own_origin(seeded):
    http = signed_in(seeded, seeded.write_token)
    body = {"name": "from-the-ui", "tags": []}
    url = seeded.base + "ajax-api/2.0/mlflow/registered-models/create"
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        refused = http.post(url, json=body, headers=headers)
        assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED"), headers
    same = http.post(url, json=body, headers={"Origin": seeded.service.base_url, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200 and same.json()["registered_model"]["name"] == "from-the-ui"


def test_signing_out_and_revoking_the_token_end_sessions(seeded):
    http = signed_in(seeded, seeded.read_token)
    search = seeded.base + "ajax-api/2.0/mlflow/experiments/search"
    assert http.get(search).status_code == 200
    out = http.get(seeded.base + "signout")
    assert out.status_code == 200 and "Max-Age=0" in out.headers["Set-Cookie"]
    assert requests.get(search, cookies={"mlreg_session": _cookie_of(out.request)}).status_code == 401

    token = mlreg(seeded.service, "token", "create", "--project", "default", "--role", "read", "--name", "to-revoke")
    http = signed_in(seeded, token)
    assert http.get(search).status_code == 200
    listed = json.loads(mlreg(seeded.service, "token", "list", "--project", "default", "--json"))
    token_id = next(t["token_id"] for t in listed if t["name"] == "to-revoke")
    mlreg(seeded.service, "token", "revoke", "--project", "default", token_id)
    assert http.get(search).status_code == 401


def _cookie_of(request) -> str:
    return request.headers["Cookie"].split("mlreg_session=", 1)[1].split(";")[0]


# ---- GraphQL --------------------------------------------------------------------------------------

def bundle_operations() -> dict[str, str]:
    """Every GraphQL operation in the pinned bundle's scripts (their `query Name(...)` documents)."""
    found = {}
    for script in (ui_bundle.bundle_dir() / "static" / "js").glob("*.js"):
        text = script.read_text(errors="replace")
        for m in re.finditer(r"`(\s*(?:query|mutation) (\w+)\([^`]*)`", text):
            found[m[2]] = m[1].replace("\\n", "\n")
    return found


def test_every_graphql_operation_of_the_bundle_is_answered(seeded, read_session):
    from graphql import parse, validate

    operations = bundle_operations()
    assert set(operations) == {"GetRun", "MlflowGetExperimentQuery", "SearchRuns", "GetMetricHistoryBulkInterval"}
    for name, query in operations.items():
        assert validate(ui_graphql.schema(), parse(query)) == [], name
    client = seeded.client()
    experiment = client.get_experiment_by_name("quickstart").experiment_id
    run = client.search_runs([experiment], "attributes.run_name = 'lr-0.5'")[0].info.run_id
    variables = {
        "GetRun": {"data": {"runId": run}},
        "MlflowGetExperimentQuery": {"input": {"experimentId": experiment}},
        "SearchRuns": {"data": {"experimentIds": [experiment], "maxResults": 10}},
        "GetMetricHistoryBulkInterval": {"data": {"runIds": [run], "metricKey": "mse", "maxResults": 5}},
    }
    answers = {name: read_session.post(seeded.base + "graphql", json={
        "operationName": name, "query": query, "variables": variables[name]}).json()
        for name, query in operations.items()}
    assert all("errors" not in a for a in answers.values()), answers
    got = answers["GetRun"]["data"]["mlflowGetRun"]["run"]
    assert got["info"]["status"] == "FINISHED" and got["experiment"]["name"] == "quickstart"
    assert {p["key"]: p["value"] for p in got["data"]["params"]}["lr"] == "0.5"
    assert [v["name"] for v in got["modelVersions"]] == ["quickstart-linear"]  # the best run
    assert isinstance(got["info"]["startTime"], str)  # int64 as a string, as MLflow's LongString
    assert len(answers["SearchRuns"]["data"]["mlflowSearchRuns"]["runs"]) == 3
    points = answers["GetMetricHistoryBulkInterval"]["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"]
    assert 0 < len(points) < 30 and {p["runId"] for p in points} == {run}  # sampled: 30 steps logged
    missing = read_session.post(seeded.base + "graphql", json={
        "query": operations["GetRun"], "variables": {"data": {"runId": "f" * 32}}}).json()
    assert missing["data"]["mlflowGetRun"]["apiError"]["code"] == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize("query,message", [
    ("mutation { mlflowGetRun(input: {}) { run { info { runId } } } }", "Only queries"),
    ("query { " + "a { " * 11 + "b" + " }" * 11 + " }", "deeper"),
    ("query { nope }", "Cannot query field 'nope'"),
    ("query {", "Syntax Error"),
])
def test_graphql_refuses_what_the_ui_never_sends(seeded, read_session, query, message):
    answer = read_session.post(seeded.base + "graphql", json={"query": query})
    assert answer.status_code == 200 and message in answer.json()["errors"][0]["message"]


def test_absent_features_answer_as_mlflows_server_does_with_them_off(seeded, read_session):
    def get(path):
        answer = read_session.get(seeded.base + path)
        assert answer.status_code == 200, path
        return answer.json()

    assert get("ajax-api/2.0/mlflow/users/current") == {}
    assert get("ajax-api/3.0/mlflow/ui-telemetry")["disable_ui_telemetry"] is True
    assert get("ajax-api/3.0/mlflow/assistant/config")["providers"] == {}
    assert get("ajax-api/2.0/mlflow/gateway-proxy?gateway_path=api/2.0/endpoints/") == {"endpoints": []}
    unknown = read_session.get(seeded.base + "ajax-api/3.0/mlflow/nothing-here")
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, "ENDPOINT_NOT_FOUND")


def test_every_ui_defaults_key_is_still_the_bundles(seeded):
    """The page's defaults name localStorage keys of the pinned bundle: a new bundle that renames
    one must fail here, not silently open the GenAI view again."""
    from shared.ui.pages import UI_DEFAULTS

    scripts = "".join(p.read_text(errors="replace") for p in (ui_bundle.bundle_dir() / "static" / "js").glob("*.js"))
    for key in UI_DEFAULTS:
        name, version = key.rsplit("_v", 1)
        assert f'key:"{name}",version:{version}' in scripts, key


def test_the_package_page_of_a_missing_version_says_so(seeded, read_session):
    answer = read_session.get(seeded.base + "package", params={"name": "quickstart-linear", "version": "99"})
    assert answer.status_code == 404 and "not found" in answer.text and answer.headers["Content-Type"].startswith(
        "text/html")


def test_the_bundle_is_the_pinned_one():
    assert Path(ui_bundle.bundle_dir(), "index.html").is_file()
    pinned = re.search(r'mlflow3 = \["mlflow==([\d.]+)"\]', (Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pinned[1] == ui_bundle.MLFLOW_VERSION
