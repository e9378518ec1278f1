"""The route table and the dispatcher built from it."""

from __future__ import annotations

import base64
import inspect
import json

import pytest

from shared import http, routes
from shared.message import Message
from shared.routes import ROUTES, Role


def test_every_route_resolves_to_a_handler_and_its_message():
    for route in ROUTES:
        assert callable(http._resolve(route.handler)), route
        assert issubclass(http._resolve(route.message), Message), route


def test_every_route_declares_its_request_message():
    """A route without a message would reach its handler unchecked."""
    assert [f"{r.method} {r.path}" for r in ROUTES if not r.message] == []


def test_each_handler_takes_the_message_its_route_declares():
    """`handler(req, msg)`: the annotation names the table's message, so the two cannot drift apart."""
    for route in ROUTES:
        handler, message = http._resolve(route.handler), http._resolve(route.message)
        parameters = inspect.signature(handler).parameters
        assert list(parameters)[:2] == ["req", "msg"], route.handler
        assert parameters["msg"].annotation.rsplit(".", 1)[-1] == message.__name__, route.handler


def test_routes_are_unique_and_functions_exist():
    pairs = [(r.method, r.resource) for r in ROUTES]
    assert len(pairs) == len(set(pairs))
    import importlib

    for function in routes.functions():
        assert callable(importlib.import_module(f"functions.{function}").handler)


@pytest.mark.parametrize("method,path,expected", [
    ("POST", "/projects/p/api/2.0/mlflow/runs/create", "/api/2.0/mlflow/runs/create"),
    ("GET", "/projects/p/api/2.0/mlflow/runs/get", "/api/2.0/mlflow/runs/get"),
    ("GET", "/projects/p/api/2.0/mlflow/runs/nope", None),
    ("DELETE", "/projects/p/api/2.0/mlflow/runs/create", None),
    ("GET", "/elsewhere", None),
])
def test_match_finds_routes_as_api_gateway_would(method, path, expected):
    route, params = routes.match(method, path)
    assert (route.path if route else None) == expected
    if route:
        assert params == {"project": "p"}


def _event(route, role: str, body: dict | None = None, query: dict | None = None) -> dict:
    return {
        "resource": route.resource, "httpMethod": route.method, "path": "/x",
        "pathParameters": {"project": "p"}, "headers": {"Host": "h"},
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "body": base64.b64encode(json.dumps(body).encode()).decode() if body is not None else None,
        "isBase64Encoded": body is not None,
        "requestContext": {"stage": "local", "authorizer": {"project": "p", "role": role, "token_id": "t"}},
    }


def test_dispatcher_enforces_the_routes_role():
    dispatch = http.make_dispatcher("tracking")
    write_route = next(r for r in ROUTES if r.function == "tracking" and r.role == Role.WRITE)
    resp = dispatch(_event(write_route, "read", {}), None)
    assert resp["statusCode"] == 403 and json.loads(resp["body"])["error_code"] == "PERMISSION_DENIED"


def test_dispatcher_refuses_routes_of_other_functions():
    dispatch = http.make_dispatcher("tracking")
    resp = dispatch({"resource": "/projects/{project}/nope", "httpMethod": "GET"}, None)
    assert resp["statusCode"] == 404 and json.loads(resp["body"])["error_code"] == "ENDPOINT_NOT_FOUND"


def test_non_finite_numbers_use_protobuf_json_names():
    assert json.loads(http.dumps({"v": [float("nan"), float("inf"), -float("inf"), 1.5]})) == {
        "v": ["NaN", "Infinity", "-Infinity", 1.5]}


def test_iam_tree_requests_reach_the_same_handlers_with_write_role():
    dispatch = http.make_dispatcher("tracking")
    admin_route = next(r for r in ROUTES if r.function == "tracking" and r.role == Role.ADMIN)
    write_route = next(r for r in ROUTES if r.path.endswith("/experiments/create"))
    for route, status in ((admin_route, 403), (write_route, 400)):
        event = _event(route, "read", {})
        event["resource"] = routes.IAM_PREFIX + route.resource
        event["requestContext"] = {"stage": "v1", "identity": {"userArn": "arn:aws:iam::1:role/trainer"}}
        resp = dispatch(event, None)
        assert resp["statusCode"] == status, resp["body"]  # 400: the handler ran (name missing)


def test_errors_are_counted_as_emf_metrics(monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    dispatch = http.make_dispatcher("tracking")
    dispatch({"resource": "/projects/{project}/nope", "httpMethod": "GET"}, None)
    emf = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert emf["ClientErrors"] == [1.0] and emf["function"] == "tracking"


def test_cors_origin_is_sent_when_configured(monkeypatch):
    dispatch = http.make_dispatcher("tracking")
    event = {"resource": "/projects/{project}/nope", "httpMethod": "GET"}
    assert "Access-Control-Allow-Origin" not in dispatch(event, None)["headers"]
    monkeypatch.setenv("MLREG_CORS_ORIGIN", "https://ui.example.com")
    assert dispatch(event, None)["headers"]["Access-Control-Allow-Origin"] == "https://ui.example.com"


@pytest.mark.parametrize("flush_fails", [False, True])
def test_the_local_gateway_answers_only_after_what_the_handler_wrote_is_durable(flush_fails):
    """`before_answer` (the emulator's ObjectFiles.flush) runs once per request, before the answer
    goes out; if it fails, the answer is an internal error, never the handler's success."""
    import threading
    import urllib.error
    import urllib.request

    from mlreg.gateway import Gateway

    calls = []

    def before_answer():
        calls.append(1)
        if flush_fails:
            raise OSError("disk gone")

    gateway = Gateway("127.0.0.1", 0, before_answer=before_answer)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as answered:
            urllib.request.urlopen(f"http://127.0.0.1:{gateway.server_address[1]}/no/such/route", timeout=10)
        assert json.loads(answered.value.read())["error_code"] == ("INTERNAL_ERROR" if flush_fails else
                                                                    "ENDPOINT_NOT_FOUND")
        assert calls == [1]
    finally:
        gateway.shutdown()
        gateway.server_close()
