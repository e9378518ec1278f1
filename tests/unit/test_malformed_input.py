"""Malformed requests of every class issue 13 found, sent to every route of the route table through
the dispatcher with the real handlers on emulated AWS: never a 5xx, always MLflow's error JSON.

Each route's body (or query string) starts as a plausible request built from the route's declared
message (its JSON schema), pointing at real items; then one value anywhere in it (a field, a list
item, a nested field, the list itself) is replaced by a hostile one: wrong JSON types, 38+ digit
integers, NaN and infinities, lone surrogates, strings over the field's limit, deep nesting. Whole
bodies that are not JSON objects, and path parameters, get their own cases. Hypothesis picks the
mutations; the classes of the issue are also sent deterministically to every route."""

from __future__ import annotations

import base64
import json
import os

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import http
from shared.errors import HTTP_STATUS
from shared.routes import ROUTES

PROJECT = "fuzz"
ROUTE_IDS = [f"{r.method} {r.path}" for r in ROUTES]
DEEP = 100_000


def _deep(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _clear_client_caches() -> None:
    from shared import db
    from shared.artifacts import store
    from shared.registry import packages

    for cached in (db.client, store.client, packages.client):
        cached.cache_clear()


@pytest.fixture(scope="module")
def world():
    """An emulated account (as `mlreg serve` runs it) with one of everything a route can point at."""
    from moto import mock_aws

    from mlreg.objects import patch_moto_s3
    from shared import table as table_def

    key = os.environ.setdefault("MLREG_PAGE_TOKEN_KEY", "fuzz-key")  # webhook secrets are encrypted with it
    with mock_aws():
        undo_s3_patch = patch_moto_s3()
        _clear_client_caches()
        boto3.client("dynamodb").create_table(**table_def.create_table_kwargs(os.environ["MLREG_TABLE"]))
        boto3.client("s3").create_bucket(Bucket=os.environ["MLREG_BUCKET"])
        yield _seed()
        _clear_client_caches()
        undo_s3_patch()
    if key == "fuzz-key":
        del os.environ["MLREG_PAGE_TOKEN_KEY"]


def _seed() -> dict:
    from shared.tracking import experiments

    experiments.insert(PROJECT, "Default", {}, experiment_id="0")
    exp = call("POST", "/experiments/create", {"name": "fuzz"})["experiment_id"]
    run = call("POST", "/runs/create", {"experiment_id": exp, "start_time": 1})["run"]["info"]["run_id"]
    call("POST", "/runs/log-metric", {"run_id": run, "key": "m", "value": 1.5, "timestamp": 1, "step": 0})
    boto3.client("s3").put_object(Bucket=os.environ["MLREG_BUCKET"], Body=b"x",
                                  Key=f"projects/{PROJECT}/artifacts/{exp}/{run}/artifacts/model/MLmodel")
    call("POST", "/registered-models/create", {"name": "fuzz-model"})
    call("POST", "/model-versions/create", {"name": "fuzz-model", "source": f"runs:/{run}/model", "run_id": run})
    model = call("POST", "/logged-models", {"experiment_id": exp, "name": "fuzzy"})["model"]["info"]["model_id"]
    hook = call("POST", "/webhooks", {"name": "fuzz", "url": "https://hooks.example.com/hook",
                                      "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}]})["webhook"]
    return {"experiment_id": exp, "run_id": run, "model_id": model, "webhook_id": hook["webhook_id"],
            "artifact_path": f"{exp}/{run}/artifacts/model/MLmodel"}


def event(route, body: bytes | None = None, query: dict[str, list[str]] | None = None,
          path: dict[str, str] | None = None) -> dict:
    return {
        "resource": route.resource, "httpMethod": route.method, "path": route.path,
        "pathParameters": {"project": PROJECT, **(path or {})}, "headers": {"Host": "localhost"},
        "multiValueQueryStringParameters": query or None,
        "body": base64.b64encode(body).decode() if body else None, "isBase64Encoded": bool(body),
        "requestContext": {"stage": "local", "authorizer": {"project": PROJECT, "role": "admin", "token_id": "fuzz"}},
    }


def dispatch(route, **kwargs) -> dict:
    return http.make_dispatcher(route.function)(event(route, **kwargs))


def call(method: str, path: str, body: dict) -> dict:
    """A well-formed request that must succeed (to seed the world)."""
    route = next(r for r in ROUTES if r.method == method and r.path.endswith(path))
    response = dispatch(route, body=json.dumps(body).encode())
    assert response["statusCode"] == 200, response["body"]
    return json.loads(response["body"])


def assert_mlflow_answer(response: dict, what: str) -> None:
    """No 5xx; an error is MLflow's JSON shape with a known code and that code's status (the web UI's
    pages for people, sign-in and a version's package, answer their errors as pages)."""
    status = response["statusCode"]
    assert status < 500, f"{what}: {status} {response.get('body', '')[:300]}"
    if status >= 400 and not response["headers"].get("Content-Type", "").startswith("text/html"):
        error = json.loads(response["body"])
        assert set(error) == {"error_code", "message"}, (what, error)
        assert HTTP_STATUS[error["error_code"]] == status and isinstance(error["message"], str), (what, error)


# ---- plausible requests, from each route's declared message -------------------------------------------

SAMPLE_STRINGS = {"name": "fuzz-model", "new_name": "fuzz-renamed", "version": "1", "key": "k", "tag_key": "k",
                  "metric_key": "m", "value": "v", "source": "runs:/{run_id}/model", "url": "https://hooks.example.com/hook",
                  "alias": "champion", "stage": "Staging", "path": "f.txt", "upload_id": "no-such-upload",
                  "experiment_name": "fuzz", "model_json": json.dumps({"artifact_path": "m", "flavors": {},
                                                                       "run_id": "r", "utc_time_created": "t"})}


def message_of(route):
    return http._resolve(route.message)


def sample(schema: dict, defs: dict, name: str, world: dict):
    """A plausible value for a field: a real id for ids, a known-good string for known names."""
    if "$ref" in schema:
        return sample_object(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, world)
    if name in world:
        return world[name]
    if name in ("experiment_ids", "run_ids"):
        return [world[name[:-1]]]
    if name == "events":
        return [{"entity": "MODEL_VERSION", "action": "CREATED"}]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type") or ("number" if "oneOf" in schema else "string")
    if kind == "array":
        return [sample(schema.get("items", {}), defs, name, world)]
    if kind == "string":
        return SAMPLE_STRINGS.get(name, "x").replace("{run_id}", world["run_id"])
    return {"integer": 1, "number": 1.5, "boolean": True, "object": {}}[kind]


def sample_object(schema: dict, defs: dict, world: dict) -> dict:
    return {name: sample(field, defs, name, world) for name, field in schema.get("properties", {}).items()}


def plausible(route, world: dict) -> tuple[dict, dict]:
    """(fields, path parameters) of a request that names real items."""
    schema = message_of(route).json_schema()
    fields = sample_object(schema, schema.get("$defs", {}), world)
    path = {p: fields.pop(p) for p in list(fields) if "{" + p in route.path}
    return fields, path


def locations(value, at=()):
    """Every place in a JSON value a hostile value can go: each field, list item and container."""
    yield at
    if isinstance(value, dict):
        for k, v in value.items():
            yield from locations(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from locations(v, (*at, i))


def replaced(value, at: tuple, new):
    if not at:
        return new
    head, rest = at[0], at[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = replaced(value[head], rest, new)
    return copy


def send_fields(route, fields, path: dict) -> dict:
    """GET routes take fields in the query string (as MLflow's client sends them), others a JSON body;
    a body that is not an object goes as JSON whatever the method."""
    if route.method == "GET" and isinstance(fields, dict):
        query = {k: [v if isinstance(v, str) else json.dumps(v) for v in (vs if isinstance(vs, list) else [vs])]
                 for k, vs in fields.items()}
        return dispatch(route, query=query, path=path)
    return dispatch(route, body=json.dumps(fields).encode(), path=path)


# ---- hostile values ---------------------------------------------------------------------------------------

SURROGATES = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.sampled_from([10 ** 38, -(10 ** 38), 2 ** 63, -(2 ** 63) - 1, 10 ** 400, 12345678901234567890123456789012345678]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), SURROGATES, st.sampled_from(["", " ", "#", "/", "../x", "%41", "a#b", "\x00", "x" * 70_000]),
    st.lists(st.integers() | st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    st.just(_deep(500)),
)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_a_hostile_value_anywhere_gets_an_mlflow_answer(world, route, data):
    fields, path = plausible(route, world)
    if path and data.draw(st.booleans(), label="mutate a path parameter"):
        name = data.draw(st.sampled_from(sorted(path)), label="path parameter")
        path[name] = data.draw(st.text(max_size=10) | st.sampled_from(["#", "a#b", "x" * 3000, "../../x"]))
        assert_mlflow_answer(send_fields(route, fields, path), f"path {name}={path[name][:40]!r}")
        return
    at = data.draw(st.sampled_from(list(locations(fields))), label="where")
    new = data.draw(HOSTILE, label="hostile value")
    mutated = replaced(fields, at, new)
    if route.method == "GET" and data.draw(st.booleans(), label="GET with a JSON body"):
        response = dispatch(route, body=json.dumps(mutated).encode(), path=path)
    else:
        response = send_fields(route, mutated, path)
    assert_mlflow_answer(response, f"{at} = {str(new)[:60]}")


# ---- the classes, to every route, deterministically ---------------------------------------------

RAW_BODIES = {
    "nested 100,000 deep": b"[" * DEEP + b"]" * DEEP,
    "object nested 100,000 deep": b'{"a": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "not JSON": b"not json",
    "a list": b"[1, 2]",
    "a lone surrogate": b'"\\ud800"',
    "a string holding JSON twice-encoded, with a surrogate": json.dumps(json.dumps({"name": "\ud800"})).encode(),
    "an integer of 5,000 digits": b'{"x": ' + b"9" * 5000 + b"}",
    "bare NaN": b'{"max_results": NaN, "timestamp": NaN, "step": NaN, "version": NaN}',
    "invalid UTF-8": b'{"name": "\xff\xfe"}',
    "null": b"null",
}


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_bodies_that_are_not_json_objects_get_an_mlflow_answer(world, route):
    fields, path = plausible(route, world)
    for what, body in RAW_BODIES.items():
        assert_mlflow_answer(dispatch(route, body=body, path=path), what)


def _every_field(fields: dict, new) -> list[tuple[str, dict]]:
    return [(f"{at}={str(new)[:30]}", replaced(fields, at, new)) for at in locations(fields) if at]


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_each_class_in_each_field_gets_an_mlflow_answer(world, route):
    """Wrong types inside lists and objects, 38+ digit integers, NaN, lone surrogates, and each
    string field one character over its declared limit, placed in every field of the request."""
    fields, path = plausible(route, world)
    schema = message_of(route).json_schema()
    for new in ("x", 12345678901234567890123456789012345678, float("nan"), float("inf"), "\ud800", [], {}, ["x"],
                {"key": 1}, True, None):
        for what, mutated in _every_field(fields, new):
            assert_mlflow_answer(send_fields(route, mutated, path), what)
    for name, field in schema.get("properties", {}).items():
        if name in fields and "maxLength" in field:
            too_long = {**fields, name: "é" * (field["maxLength"] + 1)}
            assert_mlflow_answer(send_fields(route, too_long, path), f"{name} over {field['maxLength']}")
