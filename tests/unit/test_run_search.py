"""search_runs over the order indexes gives exactly the in-memory (MLflow) order, page by page."""

from __future__ import annotations

import math
import random

import pytest

from bench.request_budget import Api, emulated_aws
from shared.filters import run_filter_clauses
from shared.projects import create_project
from shared.tracking import run_search, runs

A = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def populated():
    with emulated_aws():
        yield _populate()


def _populate() -> list[str]:
    create_project("bench")
    api = Api("bench")
    rng = random.Random(7)
    exps = [api.call("POST", f"{A}/experiments/create", {"name": f"e{i}"})["experiment_id"] for i in range(2)]
    for i in range(40):
        exp = exps[i % 2]
        run = api.call("POST", f"{A}/runs/create", {"experiment_id": exp, "start_time": rng.choice([5, 6, 7, 8])})
        rid = run["run"]["info"]["run_id"]
        metrics = []
        if rng.random() < 0.8:
            value = rng.choice([0.1, 0.5, 0.5, 0.9, -2.0, float("nan"), float("inf"), 0.0])
            metrics.append({"key": "m", "value": "NaN" if math.isnan(value) else value, "timestamp": 1, "step": 0})
        params = [{"key": "p", "value": rng.choice(["a", "b", "b", "ab", ""])}] if rng.random() < 0.7 else []
        tags = [{"key": "t", "value": rng.choice(["x", "y", "xy"])}] if rng.random() < 0.6 else []
        api.call("POST", f"{A}/runs/log-batch", {"run_id": rid, "metrics": metrics, "params": params, "tags": tags})
        if rng.random() < 0.1:
            api.call("POST", f"{A}/runs/delete", {"run_id": rid})
    return exps


ORDERS = [[], ["metrics.m ASC"], ["metrics.m DESC"], ["params.p"], ["params.p DESC"], ["tags.t DESC"],
          ["attributes.start_time ASC"], ["start_time DESC"]]


@pytest.mark.parametrize("order_by", ORDERS)
@pytest.mark.parametrize("filter_text", ["", "params.p = 'b'", "tags.t = 'x'", "metrics.m = 0.5", "metrics.m > 0.1",
                                         "metrics.m <= 0.5 AND params.p != 'a'", "params.p LIKE 'a%'",
                                         "attributes.start_time >= 6 AND attributes.start_time < 8"])
def test_indexed_pages_equal_in_memory_order(populated, order_by, filter_text):
    order = run_search.indexed_order(order_by)
    assert order is not None
    view, clauses = ("active",), run_filter_clauses(filter_text)
    expected, _ = run_search.search_in_memory("bench", populated, view, clauses, order_by, 10_000, 0)
    got, cursor, pages = [], None, 0
    while True:
        page, cursor = run_search.search("bench", populated, order, view, clauses, 11, cursor)
        got += page
        pages += 1
        if cursor is None:
            break
    assert [r["info"]["run_id"] for r in got] == [r["info"]["run_id"] for r in expected]
    assert pages >= len(expected) // 11


def test_other_orderings_fall_back_to_memory():
    assert run_search.indexed_order(["attributes.run_name"]) is None
    assert run_search.indexed_order(["metrics.a", "params.b"]) is None
