"""The run summary (shared/tracking/summary.py): get-run reads one item; a run too big for one item
is read from its per-field items, by get-run and by search alike."""

from __future__ import annotations

import pytest

from bench.request_budget import Api, Recorder, emulated_aws
from shared import db, keys
from shared.projects import create_project

A = "/api/2.0/mlflow"


@pytest.fixture()
def api():
    recorder = Recorder(latency=0)
    with emulated_aws(recorder):
        create_project("bench")
        yield Api("bench"), recorder


def _run(api: Api) -> tuple[str, str]:
    exp = api.call("POST", f"{A}/experiments/create", {"name": "summary"})["experiment_id"]
    return exp, api.call("POST", f"{A}/runs/create", {"experiment_id": exp, "start_time": 5})["run"]["info"]["run_id"]


def test_get_run_reads_the_summary_alone(api):
    api, recorder = api
    _, rid = _run(api)
    api.call("POST", f"{A}/runs/log-batch", {"run_id": rid, "params": [{"key": "lr", "value": "0.1"}],
                                            "tags": [{"key": "t", "value": "x"}],
                                            "metrics": [{"key": "m", "value": v, "timestamp": 1, "step": v}
                                                        for v in (3, 1, 2)]})
    with recorder.measure() as m:
        run = api.call("GET", f"{A}/runs/get", query={"run_id": rid})["run"]
    assert m.by_operation() == {"GetItem": 1}
    assert run["data"]["params"] == [{"key": "lr", "value": "0.1"}]
    assert {t["key"]: t["value"] for t in run["data"]["tags"]}["t"] == "x"
    assert run["data"]["metrics"] == [{"key": "m", "value": 3.0, "timestamp": 1, "step": 3}]


def test_a_run_past_the_summary_size_overflows_to_its_items(api):
    api, _ = api
    exp, rid = _run(api)
    big = "v" * 6000
    for batch in range(2):  # 480 KB of params: more than a summary holds
        api.call("POST", f"{A}/runs/log-batch", {"run_id": rid, "params": [
            {"key": f"p{batch}-{i}", "value": big} for i in range(40)]})
    meta = db.get(keys.run("bench", rid), keys.RUN_SK)
    assert meta["overflow"] and "params" not in meta
    api.call("POST", f"{A}/runs/log-metric", {"run_id": rid, "key": "acc", "value": 0.9, "timestamp": 1})
    api.call("POST", f"{A}/runs/set-tag", {"run_id": rid, "key": "team", "value": "x"})
    api.call("POST", f"{A}/runs/log-parameter", {"run_id": rid, "key": "p0-0", "value": big})  # same value: no-op
    run = api.call("GET", f"{A}/runs/get", query={"run_id": rid})["run"]
    assert len(run["data"]["params"]) == 80 and run["data"]["metrics"][0]["value"] == 0.9
    assert {t["key"]: t["value"] for t in run["data"]["tags"]}["team"] == "x"
    for query in ({"filter": "params.`p1-3` LIKE 'v%'"}, {"filter": "tags.team = 'x'"},
                  {"filter": "metrics.acc > 0.5", "order_by": ["metrics.acc DESC"]}, {"order_by": ["params.`p0-1`"]}):
        found = api.call("POST", f"{A}/runs/search", {"experiment_ids": [exp], **query})["runs"]
        assert [r["info"]["run_id"] for r in found] == [rid], query
        assert len(found[0]["data"]["params"]) == 80
