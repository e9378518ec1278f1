"""The web UI's pieces without a browser: how its calls reach the route table through a few greedy
resources, sessions and the session authorizer, the answers' content types, the page, GraphQL's
limits. The browser walks are in tests/ui."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest

from functions import authorizer
from shared import db, http, keys, projects, routes, sessions
from shared.artifacts import responses
from shared.message import Empty
from shared.routes import ROUTES, Role
from shared.ui import graphql as ui_graphql
from shared.ui import pages
from tests.unit.test_authorizer import API, allows

# ---- routes ------------------------------------------------------------------------------------------

def test_every_ui_call_reaches_a_resource_of_its_own_function():
    resources = routes.ui_resources()
    for route in routes.ui_api_routes():
        concrete = route.resource.replace("{project}", "p")
        concrete = re.sub(r"\{\w+\+?\}", "x", concrete)
        found, _ = routes.match(route.method, concrete)
        assert found == route, route
        resource = routes.api_resource(route, concrete)
        assert resources[resource] == route.function, (route, resource)


def test_the_ui_twins_are_the_api_routes_under_ajax_api_with_the_session():
    twins = {(r.method, r.path): r for r in routes.ui_api_routes()}
    for route in routes.api_routes():
        if route.path.startswith("/api/"):
            twin = twins[(route.method, "/ajax-api/" + route.path[len("/api/"):])]
            assert (twin.handler, twin.role, twin.function, twin.auth) == (
                route.handler, route.role, route.function, routes.SESSION)


def test_the_ui_needs_few_resources():
    """API Gateway allows 300 resources per API; mirroring every route under /ajax-api would not fit."""
    paths = set()
    for resource in [*routes.ui_resources(), routes.UI_CATCH_ALL, routes.STATIC_FILES,
                     *(r.resource for r in ROUTES if r.auth != routes.TOKEN)]:
        segments = resource.strip("/").split("/")
        paths.update("/".join(segments[:i]) for i in range(3, len(segments) + 1))
    assert len(paths) <= 60, len(paths)  # 53 today; tests/infra count the whole API against the quota
    assert len(routes.ui_api_routes()) > 80


def test_unknown_ui_paths_fall_to_the_ui_catch_all():
    route = routes.Route("GET", "/ajax-api/9.0/x", "tracking", "m:f", Role.READ, routes.SESSION)
    assert routes.api_resource(route, "/projects/p/ajax-api/9.0/x") == routes.UI_CATCH_ALL


def _ui_event(resource: str, path: str, method: str = "GET", role: str = "read", headers: dict | None = None) -> dict:
    params = routes.resource_regex(resource).match(path).groupdict()
    return {"resource": resource, "path": path, "httpMethod": method, "pathParameters": params,
            "headers": {"Host": "h", **(headers or {})}, "body": None,
            "requestContext": {"stage": "v1", "path": "/v1" + path,
                               "authorizer": {"project": "p", "role": role, "token_id": "t", "session": "true"}}}


def test_the_dispatcher_serves_a_greedy_ui_resource_through_the_route_table():
    resource = "/projects/{project}/ajax-api/2.0/mlflow/users/{proxy+}"
    assert routes.ui_resources()[resource] == "tracking"
    answer = http.make_dispatcher("tracking")(_ui_event(resource, "/projects/p/ajax-api/2.0/mlflow/users/current"))
    assert (answer["statusCode"], json.loads(answer["body"])) == (200, {})
    unknown = http.make_dispatcher("tracking")(_ui_event(resource, "/projects/p/ajax-api/2.0/mlflow/users/nobody"))
    assert json.loads(unknown["body"])["error_code"] == "ENDPOINT_NOT_FOUND"
    elsewhere = http.make_dispatcher("registry")(_ui_event(resource, "/projects/p/ajax-api/2.0/mlflow/users/current"))
    assert elsewhere["statusCode"] == 404  # a function serves only its own resources


def test_a_session_write_needs_the_role_and_the_uis_own_origin():
    resource = "/projects/{project}/ajax-api/2.0/mlflow/experiments/{proxy+}"
    path = "/projects/p/ajax-api/2.0/mlflow/experiments/create"
    dispatch = http.make_dispatcher("tracking")
    read = json.loads(dispatch(_ui_event(resource, path, "POST"))["body"])
    assert read["error_code"] == "PERMISSION_DENIED" and read["message"].startswith("Signed in with a read token")
    cross = json.loads(dispatch(_ui_event(resource, path, "POST", "write", {"Origin": "https://evil.example"}))["body"])
    assert cross["error_code"] == "PERMISSION_DENIED" and "Cross-site" in cross["message"]


def test_the_base_url_is_what_the_client_called():
    event = {"path": "/projects/p/x", "headers": {"Host": "api.example", "X-Forwarded-Proto": "https"},
             "requestContext": {"stage": "v1", "path": "/v1/projects/p/x"}}
    assert http.to_request(event).base_url == "https://api.example/v1"
    event["requestContext"]["path"] = "/mlreg/projects/p/x"  # a custom domain's base path
    assert http.to_request(event).base_url == "https://api.example/mlreg"


# ---- sessions and the authorizer ----------------------------------------------------------------------

def test_session_cookies_are_read_from_the_cookie_header():
    assert sessions.session_ids("a=1; mlreg_session=abc; b=2; mlreg_session=def") == ["abc", "def"]
    assert sessions.session_ids("mlreg_session=; x") == [] and sessions.session_ids(None) == []
    cookie = sessions.set_cookie("abc", 60, secure=True)
    assert cookie == "mlreg_session=abc; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
    assert "Path" not in cookie  # the browser scopes it to the project's folder


def _cookie_event(project: str, cookie: str | None) -> dict:
    headers = {"Cookie": cookie} if cookie else {}
    return {"type": "REQUEST", "methodArn": f"{API}/prod/GET/projects/{project}/graphql",
            "resource": "/projects/{project}/graphql", "path": f"/projects/{project}/graphql", "httpMethod": "GET",
            "headers": headers, "pathParameters": {"project": project}, "requestContext": {"stage": "prod"}}


def test_the_authorizer_accepts_a_session_of_the_paths_project_only(aws):
    projects.create_project("alpha")
    projects.create_project("beta")
    token = projects.create_token("alpha", Role.READ, name="browser")
    session_id, lifetime = sessions.start("alpha", projects.authenticate("alpha", token))
    assert 12 * 3600 - 5 <= lifetime <= 12 * 3600
    cookie = f"other=1; mlreg_session={session_id}"
    result = authorizer.handler(_cookie_event("alpha", cookie))
    assert result["context"] == {"project": "alpha", "role": "read", "token_id": projects.token_id_of(token),
                                 "session": "true"}
    assert allows(result, f"{API}/prod/POST/projects/alpha/ajax-api/2.0/mlflow/runs/search")
    assert not allows(result, f"{API}/prod/GET/projects/beta/graphql")
    for project, header in (("beta", cookie), ("alpha", None), ("alpha", "mlreg_session=forged")):
        with pytest.raises(authorizer.Unauthorized):
            authorizer.handler(_cookie_event(project, header))
    stored = db.query_all(keys.project("alpha"), sessions.SESSION_PREFIX)
    assert len(stored) == 1 and session_id not in json.dumps(stored)  # only its hash is kept


def test_sessions_end_with_their_token_and_at_their_expiry(aws):
    projects.create_project("alpha")
    token = projects.create_token("alpha", Role.WRITE, name="browser", expires_at_ms=int(time.time() * 1000) + 60_000)
    session_id, lifetime = sessions.start("alpha", projects.authenticate("alpha", token))
    assert 55 <= lifetime <= 60  # never longer than its token
    cookie = f"mlreg_session={session_id}"
    assert sessions.authenticate("alpha", cookie)
    projects.revoke_token("alpha", projects.token_id_of(token))
    assert sessions.authenticate("alpha", cookie) is None
    stale = projects.create_token("alpha", Role.READ)
    session_id, _ = sessions.start("alpha", projects.authenticate("alpha", stale))
    db.update(keys.project("alpha"), keys.session_sk(sessions._hash(session_id)), "SET expires_at = :t",
              values={":t": int(time.time()) - 1})
    assert sessions.authenticate("alpha", f"mlreg_session={session_id}") is None


# ---- what the UI's answers look like -------------------------------------------------------------------

@pytest.mark.parametrize("path,expected", [
    ("a/report.html", "text/plain"), ("x.htm", "text/plain"),
    ("x.js", "text/plain"), ("x.xml", "text/plain"),
    ("model/MLmodel", "text/plain"), ("plot.svg", "image/svg+xml"), ("plot.PNG", "image/png"),
    ("m.json", "application/json"), ("weights.bin", "application/octet-stream"), ("noext", "application/octet-stream"),
])
def test_artifacts_go_out_as_types_browsers_never_run(path, expected):
    answer = http.to_response(responses.file_response(b"<script>x</script>", path))
    headers = answer["headers"]
    assert headers["Content-Type"] == expected and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Disposition"].startswith("attachment;") and "sandbox" in headers["Content-Security-Policy"]
    assert base64.b64decode(answer["body"]) == b"<script>x</script>"


def _page_request(path: str, headers: dict | None = None) -> http.Request:
    return http.Request(project="p", role=Role.READ, token_id="", method="GET", path_params={"project": "p"},
                        query={}, headers=headers or {}, body=b"", base_url="http://h", path=path)


def test_the_page_needs_its_trailing_slash_and_reloads_links_from_other_sites(aws):
    moved = pages.app_page(_page_request("/projects/p"), Empty())
    assert (moved.status, moved.headers["Location"]) == (302, "p/")
    assert "Sign in to project" in pages.app_page(_page_request("/projects/p/"), Empty()).body
    reload = pages.app_page(_page_request("/projects/p/", {"sec-fetch-site": "cross-site"}), Empty())
    assert f"<script>{pages.RELOAD}</script>" in reload.body and "Sign in" not in reload.body


def test_graphql_serves_queries_only_and_not_too_deep():
    from graphql import parse

    assert ui_graphql._refusal(parse("query { a { b } }")) == []
    assert "Only queries" in ui_graphql._refusal(parse("mutation { a }"))[0].message
    deep = "query { " + "a { " * 11 + "b" + " }" * 11 + " }"
    assert "deeper" in ui_graphql._refusal(parse(deep))[0].message
    wide = "query { " + " ".join(f"a{i}: b" for i in range(1001)) + " }"
    assert "more than" in ui_graphql._refusal(parse(wide))[0].message
