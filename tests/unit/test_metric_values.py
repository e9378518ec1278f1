"""Metric values round-trip every IEEE double exactly wherever they are stored, indexed and ordered:
the codec itself, then through the handlers on emulated DynamoDB (latest value, history, search
order), and values written in the old shape (DynamoDB numbers) still read back."""

from __future__ import annotations

import base64
import json
import math
import struct
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from shared import db, doubles, http, keys
from shared.routes import ROUTES

P = "values"
EXTREMES = [math.nan, math.inf, -math.inf, 1e308, -1e308, 1.7976931348623157e308, 1e-320, 5e-324, -5e-324,
            2.2250738585072014e-308, -0.0, 0.0, 0.1, 1e-131, 1e126, 123456789.12345678]


def bits(x: float) -> bytes:
    return struct.pack(">d", x)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or bits(a) == bits(b)


@given(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True))
def test_the_codec_round_trips_every_double(x):
    assert same(doubles.decode(doubles.encode(x)), x)


def test_the_codec_reads_the_old_shape():
    """Before: finite values as DynamoDB numbers (read back as int or float), the others by name."""
    for old, value in ((Decimal("0.1"), 0.1), (3, 3.0), (2.5, 2.5), ("NaN", math.nan), ("-Infinity", -math.inf)):
        assert same(doubles.decode(old), value)


def call(method: str, path: str, body: dict | None = None, query: dict | None = None) -> dict:
    route = next(r for r in ROUTES if r.method == method and r.path.endswith(path))
    event = {"resource": route.resource, "httpMethod": method, "path": path, "pathParameters": {"project": P},
             "headers": {}, "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
             "body": base64.b64encode(json.dumps(body).encode()).decode() if body else None, "isBase64Encoded": True,
             "requestContext": {"authorizer": {"project": P, "role": "write", "token_id": "t"}}}
    response = http.make_dispatcher(route.function)(event)
    assert response["statusCode"] == 200, response["body"]
    return json.loads(response["body"], parse_constant=float)


def served(value) -> float:
    """Protobuf JSON spells non-finite values as strings."""
    return float(value)


def run_in(experiment_id: str) -> str:
    return call("POST", "/runs/create", {"experiment_id": experiment_id, "start_time": 1})["run"]["info"]["run_id"]


def test_extreme_values_round_trip_through_latest_history_and_search(aws):
    from shared.tracking import experiments

    experiments.insert(P, "Default", {}, experiment_id="0")
    exp = call("POST", "/experiments/create", {"name": "extremes"})["experiment_id"]
    run = run_in(exp)
    metrics = [{"key": f"m{i}", "value": doubles.encode(x), "timestamp": i, "step": i} for i, x in enumerate(EXTREMES)]
    call("POST", "/runs/log-batch", {"run_id": run, "metrics": metrics})
    for i, x in enumerate(EXTREMES):
        call("POST", "/runs/log-metric", {"run_id": run, "key": "all", "value": doubles.encode(x), "timestamp": i,
                                         "step": i})

    latest = {m["key"]: served(m["value"]) for m in call("GET", "/runs/get", query={"run_id": run})["run"]["data"]["metrics"]}
    assert all(same(latest[f"m{i}"], x) for i, x in enumerate(EXTREMES)), latest
    history = call("GET", "/metrics/get-history", query={"run_id": run, "metric_key": "all"})["metrics"]
    assert [m["step"] for m in history] == list(range(len(EXTREMES)))
    assert all(same(served(m["value"]), x) for m, x in zip(history, EXTREMES))

    # Ordered by the metric (the order indexes): NaN after every number, as MLflow orders it.
    finite_runs = {}
    for x in EXTREMES:
        rid = run_in(exp)
        call("POST", "/runs/log-metric", {"run_id": rid, "key": "v", "value": doubles.encode(x), "timestamp": 1})
        finite_runs[rid] = x
    found = call("POST", "/runs/search", {"experiment_ids": [exp], "order_by": ["metrics.v ASC"]})["runs"]
    values = [served(next(m["value"] for m in r["data"]["metrics"] if m["key"] == "v")) for r in found
              if r["info"]["run_id"] in finite_runs]
    numbers = [v for v in values if not math.isnan(v)]
    assert numbers == sorted(numbers) and math.isnan(values[-1]) and len(values) == len(EXTREMES)


def test_items_in_the_old_shape_still_read(aws):
    """Latest-metric and history items written before the codec: numbers as DynamoDB numbers."""
    from shared.tracking import experiments

    experiments.insert(P, "Default", {}, experiment_id="0")
    run = run_in("0")
    call("POST", "/runs/log-batch", {"run_id": run, "metrics": [{"key": "old", "value": 0.25, "timestamp": 5},
                                                                {"key": "bad", "value": "NaN", "timestamp": 5}]})
    for key, old in (("old", Decimal("0.25")), ("bad", "NaN")):
        latest = db.get(keys.run(P, run), f"M#{key}")
        db.put({**latest, "value": old})
        point = db.query_all(keys.metric_history(P, run, key))[0]
        db.put({**point, "value": old})
    got = {m["key"]: served(m["value"]) for m in call("GET", "/runs/get", query={"run_id": run})["run"]["data"]["metrics"]}
    assert got["old"] == 0.25 and math.isnan(got["bad"])
    history = call("GET", "/metrics/get-history", query={"run_id": run, "metric_key": "old"})["metrics"]
    assert [m["value"] for m in history] == [0.25]
