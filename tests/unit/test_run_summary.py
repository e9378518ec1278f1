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


def _index_entries(rid: str) -> dict[str, dict]:
    return {i["sk"]: i for i in db.query_all(keys.run("bench", rid), consistent=True) if i["sk"][:2] in ("T#", "P#", "M#")}


def test_a_write_is_one_transaction_of_the_summary_and_its_items(api):
    api, recorder = api
    _, rid = _run(api)
    with recorder.measure() as m:
        api.call("POST", f"{A}/runs/log-batch", {"run_id": rid, "params": [{"key": "lr", "value": "0.1"}],
                                                "tags": [{"key": "t", "value": "x"}],
                                                "metrics": [{"key": "m", "value": 2, "timestamp": 1, "step": 0}]})
    assert m.by_operation() == {"GetItem": 1, "TransactWriteItems": 1}
    entries = _index_entries(rid)
    assert entries["T#t"]["value"] == "x" and entries["P#lr"]["value"] == "0.1" and entries["M#m"]["step"] == 0


def test_a_write_that_lost_a_race_is_worked_out_again_against_the_winner(api):
    """The stale summary a write read fails its transaction's condition; the write is redone against
    the summary that won, so the index entries and the summary agree whatever order writers land in."""
    from shared.tracking import runs
    from shared.tracking.summary import Change, metric_entry

    api, _ = api
    _, rid = _run(api)
    stale = runs.load_meta("bench", rid)
    api.call("POST", f"{A}/runs/log-batch", {"run_id": rid, "tags": [{"key": "t", "value": "first"}],
                                            "metrics": [{"key": "m", "value": 9, "timestamp": 1, "step": 5}]})
    runs.write("bench", stale, Change(tags={"t": "second"}, metrics={"m": metric_entry(1.0, 1, 2)}))
    meta, entries = runs.load_meta("bench", rid), _index_entries(rid)
    assert meta["tags"]["t"] == entries["T#t"]["value"] == "second"
    assert meta["metrics"]["m"][2] == entries["M#m"]["step"] == 5  # step 2 does not move the latest back
    assert meta["rev"] == stale["rev"] + 2


def test_a_param_another_writer_logged_first_is_refused_after_the_lost_race(api):
    from shared.errors import MlflowError
    from shared.tracking import runs
    from shared.tracking.summary import Change

    api, _ = api
    _, rid = _run(api)
    stale = runs.load_meta("bench", rid)
    api.call("POST", f"{A}/runs/log-parameter", {"run_id": rid, "key": "lr", "value": "0.1"})
    with pytest.raises(MlflowError, match="Changing param values is not allowed"):
        runs.write("bench", stale, Change(params={"lr": "0.2"}, tags={"t": "lost"}))
    meta = runs.load_meta("bench", rid)
    assert meta["params"] == {"lr": "0.1"} and "t" not in meta["tags"] and "T#t" not in _index_entries(rid)


def test_a_batch_beyond_one_transaction_writes_its_items_then_the_summary(api):
    api, recorder = api
    exp, rid = _run(api)
    with recorder.measure() as m:
        api.call("POST", f"{A}/runs/log-batch", {"run_id": rid, "metrics": [
            {"key": f"k{i}", "value": i, "timestamp": 1, "step": 0} for i in range(150)]})
    assert "UpdateItem" in m.by_operation()
    assert len([sk for sk in _index_entries(rid) if sk.startswith("M#")]) == 150
    found = api.call("POST", f"{A}/runs/search", {"experiment_ids": [exp], "filter": "metrics.k149 > 148"})["runs"]
    assert [r["info"]["run_id"] for r in found] == [rid]


def test_a_write_that_lost_to_an_overflowing_writer_goes_on_in_steps(api):
    from shared.tracking import runs
    from shared.tracking.summary import Change

    api, _ = api
    exp, rid = _run(api)
    stale = runs.load_meta("bench", rid)
    for batch in range(2):  # 480 KB of params: the summary overflows
        api.call("POST", f"{A}/runs/log-batch", {"run_id": rid, "params": [
            {"key": f"p{batch}-{i}", "value": "v" * 6000} for i in range(40)]})
    runs.write("bench", stale, Change(tags={"team": "x"}))
    assert runs.load_meta("bench", rid)["overflow"]
    run = api.call("GET", f"{A}/runs/get", query={"run_id": rid})["run"]
    assert {t["key"]: t["value"] for t in run["data"]["tags"]}["team"] == "x" and len(run["data"]["params"]) == 80
    found = api.call("POST", f"{A}/runs/search", {"experiment_ids": [exp], "filter": "tags.team = 'x'"})["runs"]
    assert [r["info"]["run_id"] for r in found] == [rid]
