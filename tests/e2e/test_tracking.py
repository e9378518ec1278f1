"""Experiment tracking end to end: the real MLflow client against `mlreg serve`."""

from __future__ import annotations

import math
import threading
import time
import uuid

import mlflow
import pytest
import requests
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException, RestException

MLFLOW_MAJOR = int(mlflow.__version__.split(".")[0])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api(service, method: str, route: str, token: str | None = "admin", headers: dict | None = None,
        **kwargs) -> requests.Response:
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {service.token if token == 'admin' else token}"
    return requests.request(method, f"{service.uri()}/api/2.0/mlflow/{route}", headers=headers, timeout=30, **kwargs)


def error_code(excinfo) -> str:
    return excinfo.value.error_code


# ---- the fluent API, as a training script uses it ----------------------------------------------

def test_fluent_training_script(tracking):
    name = unique("fluent")
    experiment = mlflow.set_experiment(name)
    run_ids = []
    for lr in (0.1, 0.01, 0.001):
        with mlflow.start_run(run_name=f"lr-{lr}") as run:
            mlflow.log_params({"lr": lr, "optimizer": "sgd"})
            for step in range(10):
                mlflow.log_metrics({"loss": lr * (10 - step), "acc": step / 10}, step=step)
            mlflow.set_tags({"team": "vision", "lr_bucket": "high" if lr >= 0.01 else "low"})
            run_ids.append(run.info.run_id)

    run = tracking.get_run(run_ids[0])
    assert run.data.params == {"lr": "0.1", "optimizer": "sgd"}
    assert run.data.metrics == {"loss": pytest.approx(0.1), "acc": pytest.approx(0.9)}
    assert run.data.tags["team"] == "vision" and run.data.tags["mlflow.runName"] == "lr-0.1"
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    assert run.info.experiment_id == experiment.experiment_id

    history = tracking.get_metric_history(run_ids[0], "loss")
    assert [m.step for m in history] == list(range(10))
    assert [m.value for m in history] == pytest.approx([0.1 * (10 - s) for s in range(10)])

    df = mlflow.search_runs(filter_string="params.optimizer = 'sgd' and metrics.loss < 0.05",
                            order_by=["metrics.loss ASC"])
    assert list(df["run_id"]) == [run_ids[2], run_ids[1]]
    high = mlflow.search_runs(filter_string="tags.lr_bucket = 'high'", order_by=["params.lr DESC"])
    assert list(high["run_id"]) == [run_ids[0], run_ids[1]]


def test_search_runs_pages_and_orders(tracking):
    exp_a = tracking.create_experiment(unique("pages-a"))
    exp_b = tracking.create_experiment(unique("pages-b"))
    expected = []
    for i in range(23):
        exp = exp_a if i % 2 else exp_b
        run = tracking.create_run(exp, run_name=f"run-{i:02d}", start_time=1_000 + i)
        tracking.log_batch(run.info.run_id, metrics=[Metric("score", float(i % 7), 0, 0)],
                           params=[Param("i", str(i))], tags=[RunTag("parity", "odd" if i % 2 else "even")])
        expected.append((i % 7, -(1_000 + i), run.info.run_id))
    # MLflow's order: the ordering key, then start_time DESC, then run_id.
    expected.sort()
    want = [run_id for *_, run_id in expected]

    got, token, pages = [], None, 0
    while True:
        page = tracking.search_runs([exp_a, exp_b], order_by=["metrics.score ASC"], max_results=5, page_token=token)
        got += [r.info.run_id for r in page]
        pages += 1
        token = page.token
        if not token:
            break
    assert got == want and pages == 5

    odd = tracking.search_runs([exp_a, exp_b], "tags.parity = 'odd' AND metrics.score >= 3", order_by=["attributes.run_name DESC"])
    assert [r.info.run_name for r in odd] == sorted(
        (f"run-{i:02d}" for i in range(23) if i % 2 and i % 7 >= 3), reverse=True)
    by_id = tracking.search_runs([exp_a], f"attributes.run_id IN ('{want[0]}', '{want[1]}')")
    assert {r.info.run_id for r in by_id} == {want[0], want[1]} & {r.info.run_id for r in tracking.search_runs([exp_a])}
    like = tracking.search_runs([exp_a, exp_b], "attributes.run_name LIKE 'run-1%'")
    assert sorted(r.info.run_name for r in like) == [f"run-{i}" for i in range(10, 20)]
    default_order = tracking.search_runs([exp_b])
    assert [r.info.start_time for r in default_order] == sorted((r.info.start_time for r in default_order), reverse=True)


def test_search_runs_bad_filter_is_invalid_parameter(tracking):
    exp = tracking.create_experiment(unique("badfilter"))
    for bad in ("metrics.acc >", "params.x = 'unterminated", "foo.bar = 1", "metrics.acc = 'x' OR params.a = 'b'"):
        with pytest.raises(MlflowException) as exc:
            tracking.search_runs([exp], bad)
        assert error_code(exc) == "INVALID_PARAMETER_VALUE", bad
    with pytest.raises(MlflowException) as exc:
        tracking.search_runs([exp], page_token="forged.token")
    assert error_code(exc) == "INVALID_PARAMETER_VALUE"


# ---- experiments -----------------------------------------------------------------------------------

def test_experiment_lifecycle(tracking):
    name = unique("exp")
    exp_id = tracking.create_experiment(name, tags={"owner": "ana"})
    exp = tracking.get_experiment(exp_id)
    assert (exp.name, exp.lifecycle_stage, exp.tags) == (name, "active", {"owner": "ana"})
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    assert tracking.get_experiment_by_name(name).experiment_id == exp_id

    with pytest.raises(MlflowException) as exc:
        tracking.create_experiment(name)
    assert error_code(exc) == "RESOURCE_ALREADY_EXISTS"

    tracking.set_experiment_tag(exp_id, "stage", "dev")
    tracking.delete_experiment_tag(exp_id, "owner") if hasattr(tracking, "delete_experiment_tag") else None
    renamed = unique("renamed")
    tracking.rename_experiment(exp_id, renamed)
    assert tracking.get_experiment_by_name(renamed).experiment_id == exp_id
    assert tracking.get_experiment_by_name(name) is None

    tracking.delete_experiment(exp_id)
    assert tracking.get_experiment(exp_id).lifecycle_stage == "deleted"
    with pytest.raises(MlflowException) as exc:  # a deleted experiment keeps its name
        tracking.create_experiment(renamed)
    assert error_code(exc) == "RESOURCE_ALREADY_EXISTS"
    deleted = tracking.search_experiments(view_type=ViewType.DELETED_ONLY, filter_string=f"name = '{renamed}'")
    assert [e.experiment_id for e in deleted] == [exp_id]
    tracking.restore_experiment(exp_id)
    assert tracking.get_experiment(exp_id).lifecycle_stage == "active"


def test_experiment_tag_delete_and_missing(tracking, service):
    exp_id = tracking.create_experiment(unique("tags"), tags={"a": "1", "b": "2"})
    resp = api(service, "POST", "experiments/delete-experiment-tag", json={"experiment_id": exp_id, "key": "a"})
    assert resp.status_code == 200
    assert tracking.get_experiment(exp_id).tags == {"b": "2"}
    with pytest.raises(MlflowException) as exc:
        tracking.get_experiment("987654321")
    assert error_code(exc) == "RESOURCE_DOES_NOT_EXIST"


def test_search_experiments_filters_order_pages(tracking, service):
    prefix = unique("srch")
    ids = [tracking.create_experiment(f"{prefix}-{i}", tags={"k": "even" if i % 2 == 0 else "odd"}) for i in range(7)]
    found = tracking.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [e.experiment_id for e in found] == ids[::-1]
    evens = tracking.search_experiments(filter_string=f"name ILIKE '{prefix.upper()}%' AND tags.k = 'even'")
    assert sorted(e.experiment_id for e in evens) == sorted(ids[0::2])
    page1 = tracking.search_experiments(filter_string=f"name LIKE '{prefix}%'", max_results=3, order_by=["name"])
    page2 = tracking.search_experiments(filter_string=f"name LIKE '{prefix}%'", max_results=3, order_by=["name"],
                                        page_token=page1.token)
    assert [e.experiment_id for e in page1 + page2] == ids[:6] and page2.token
    # The GET form of search, as the MLflow UI sends it.
    resp = api(service, "GET", "experiments/search", params={"max_results": 2, "filter": f"name LIKE '{prefix}%'"})
    assert resp.status_code == 200 and len(resp.json()["experiments"]) == 2 and resp.json()["next_page_token"]


# ---- runs ---------------------------------------------------------------------------------------

def test_run_lifecycle_update_and_rename(tracking):
    exp = tracking.create_experiment(unique("runs"))
    run = tracking.create_run(exp, run_name="first", tags={"k": "v"})
    assert run.info.run_name == "first" and run.data.tags["mlflow.runName"] == "first"
    tracking.update_run(run.info.run_id, status="KILLED", name="second")
    got = tracking.get_run(run.info.run_id)
    assert got.info.status == "KILLED" and got.info.run_name == "second"
    assert got.data.tags["mlflow.runName"] == "second"  # kept in step on rename
    tracking.set_terminated(run.info.run_id, "FINISHED", end_time=got.info.start_time + 5)
    assert tracking.get_run(run.info.run_id).info.end_time == got.info.start_time + 5

    tracking.delete_run(run.info.run_id)
    assert tracking.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    assert tracking.search_runs([exp]) == []
    assert len(tracking.search_runs([exp], run_view_type=ViewType.DELETED_ONLY)) == 1
    with pytest.raises(MlflowException) as exc:  # writes to a deleted run are refused
        tracking.log_param(run.info.run_id, "p", "1")
    assert error_code(exc) == "INVALID_PARAMETER_VALUE"
    tracking.restore_run(run.info.run_id)
    assert tracking.get_run(run.info.run_id).info.lifecycle_stage == "active"

    with pytest.raises(MlflowException) as exc:
        tracking.get_run(uuid.uuid4().hex)
    assert error_code(exc) == "RESOURCE_DOES_NOT_EXIST"


def test_params_tags_and_limits(tracking, service):
    run = tracking.create_run(tracking.create_experiment(unique("limits")))
    rid = run.info.run_id
    tracking.log_param(rid, "p", "1")
    tracking.log_param(rid, "p", "1")  # same value again: a no-op
    with pytest.raises(MlflowException) as exc:
        tracking.log_param(rid, "p", "2")
    assert error_code(exc) == "INVALID_PARAMETER_VALUE" and "Changing param values is not allowed" in str(exc.value)
    with pytest.raises(MlflowException) as exc:  # the same through a batch: names the logged value
        tracking.log_batch(rid, params=[Param("q", "ok"), Param("p", "3")])
    assert "value='1'" in str(exc.value) and "'3'" in str(exc.value)

    tracking.set_tag(rid, "t", "x" * 9000)
    assert tracking.get_run(rid).data.tags["t"] == "x" * 8000  # truncated, as MLflow does
    tracking.delete_tag(rid, "t")
    assert "t" not in tracking.get_run(rid).data.tags
    with pytest.raises(MlflowException) as exc:
        tracking.delete_tag(rid, "never-set")
    assert error_code(exc) == "RESOURCE_DOES_NOT_EXIST"

    for bad_key in ("../escape", "a" * 251, "bad\nkey"):
        with pytest.raises(MlflowException) as exc:
            tracking.log_metric(rid, bad_key, 1.0)
        assert error_code(exc) == "INVALID_PARAMETER_VALUE", bad_key
    # The client splits big batches itself; the server enforces the limit for other callers.
    resp = api(service, "POST", "runs/log-batch",
               json={"run_id": rid, "metrics": [{"key": f"m{i}", "value": 1, "timestamp": 1, "step": 0} for i in range(1001)]})
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "at most 1000 metrics" in resp.json()["message"]


def test_metrics_special_values_and_latest_rule(tracking):
    run = tracking.create_run(tracking.create_experiment(unique("nan")))
    rid = run.info.run_id
    tracking.log_batch(rid, metrics=[Metric("x", float("nan"), 10, 0), Metric("x", 5.0, 11, 0),
                                     Metric("y", float("inf"), 1, 0), Metric("z", -float("inf"), 1, 0),
                                     Metric("w", 1.0, 100, 5), Metric("w", 2.0, 1, 3)])
    metrics = tracking.get_run(rid).data.metrics
    assert metrics["x"] == 5.0  # same step, later timestamp wins
    assert metrics["y"] == math.inf and metrics["z"] == -math.inf
    assert metrics["w"] == 1.0  # the greatest step wins, whatever the order of logging
    history = tracking.get_metric_history(rid, "x")
    assert math.isnan(history[0].value) and history[1].value == 5.0


def test_log_batch_retry_does_not_duplicate_history(tracking, service):
    rid = tracking.create_run(tracking.create_experiment(unique("retry"))).info.run_id
    body = {"run_id": rid, "metrics": [{"key": "m", "value": float(i), "timestamp": 1000 + i, "step": i} for i in range(50)],
            "params": [{"key": "p", "value": "v"}], "tags": [{"key": "t", "value": "v"}]}
    for _ in range(3):  # the client's retry of a request whose answer was lost
        assert api(service, "POST", "runs/log-batch", json=body).status_code == 200
    history = tracking.get_metric_history(rid, "m")
    assert [m.step for m in history] == list(range(50))


def test_concurrent_writers_lose_nothing(tracking):
    rid = tracking.create_run(tracking.create_experiment(unique("conc"))).info.run_id
    errors = []

    def writer(worker: int):
        try:
            client = mlflow.MlflowClient()
            for step in range(25):
                client.log_metric(rid, "shared", float(worker * 100 + step), timestamp=1_000 + step, step=step)
                client.log_metric(rid, f"own-{worker}", float(step), step=step)
            client.log_param(rid, f"param-{worker}", str(worker))
            client.set_tag(rid, f"tag-{worker}", "x")
        except Exception as exc:  # collected: assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    run = tracking.get_run(rid)
    assert len(tracking.get_metric_history(rid, "shared")) == 8 * 25
    assert all(len(tracking.get_metric_history(rid, f"own-{w}")) == 25 for w in range(8))
    assert run.data.metrics["shared"] == 724.0  # step 24, same timestamp: the greatest value wins
    assert {f"param-{w}" for w in range(8)} <= set(run.data.params)
    assert {f"tag-{w}" for w in range(8)} <= set(run.data.tags)


def test_metric_history_pages_and_bulk_interval(tracking, service):
    exp = tracking.create_experiment(unique("hist"))
    rids = [tracking.create_run(exp).info.run_id for _ in range(2)]
    for rid in rids:
        for start in range(0, 300, 100):
            tracking.log_batch(rid, metrics=[Metric("loss", 1.0 / (s + 1), 1_000 + s, s) for s in range(start, start + 100)])
    pages, token, seen = 0, None, []
    while True:
        resp = api(service, "GET", "metrics/get-history",
                   params={"run_id": rids[0], "metric_key": "loss", "max_results": 120, **({"page_token": token} if token else {})})
        assert resp.status_code == 200, resp.text
        seen += [m["step"] for m in resp.json()["metrics"]]
        pages += 1
        token = resp.json().get("next_page_token")
        if not token:
            break
    assert seen == list(range(300)) and pages == 3

    resp = api(service, "GET", "metrics/get-history-bulk-interval",
               params={"run_ids": rids, "metric_key": "loss", "max_results": 10, "start_step": 0, "end_step": 299})
    assert resp.status_code == 200, resp.text
    metrics = resp.json()["metrics"]
    for rid in rids:
        steps = [m["step"] for m in metrics if m["run_id"] == rid]
        assert steps[0] == 0 and steps[-1] == 299 and len(steps) <= 11


def test_log_inputs_datasets(tracking):
    from mlflow.entities import Dataset, DatasetInput, InputTag

    rid = tracking.create_run(tracking.create_experiment(unique("inputs"))).info.run_id
    ds = Dataset(name="train", digest="abc123", source_type="local", source='{"uri": "/tmp/x"}')
    tracking.log_inputs(rid, [DatasetInput(ds, tags=[InputTag("mlflow.data.context", "training")])])
    tracking.log_inputs(rid, [DatasetInput(ds, tags=[InputTag("mlflow.data.context", "training")])])  # retry
    inputs = tracking.get_run(rid).inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name == "train" and inputs[0].tags[0].value == "training"
    exp = tracking.get_run(rid).info.experiment_id
    assert [r.info.run_id for r in tracking.search_runs([exp], "datasets.name = 'train'")] == [rid]


# ---- the HTTP surface -------------------------------------------------------------------------------

def test_unknown_route_and_auth_errors(service):
    resp = api(service, "GET", "no-such-route")
    assert resp.status_code == 404 and resp.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    resp = requests.get(f"{service.uri()}/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"}, timeout=10)
    assert resp.status_code == 401 and resp.json()["error_code"] == "UNAUTHENTICATED"
    resp = api(service, "GET", "experiments/get", token="mlreg_not-a-real-token", params={"experiment_id": "0"})
    assert resp.status_code == 401
    resp = api(service, "POST", "experiments/create", data="{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_server_info_advertises_presigned_transfers(service):
    resp = requests.get(f"{service.uri()}/api/3.0/mlflow/server-info",
                        headers={"Authorization": f"Bearer {service.token}"}, timeout=10)
    assert resp.status_code == 200
    assert resp.json()["multipart_uploads_enabled"] is True and resp.json()["multipart_downloads_enabled"] is True


def test_create_run_with_more_tags_than_a_transaction_holds(tracking):
    exp = tracking.create_experiment(unique("manytags"))
    tags = {f"t{i:03d}": str(i) for i in range(150)}
    run = tracking.create_run(exp, tags=tags)
    assert {k: v for k, v in tracking.get_run(run.info.run_id).data.tags.items() if k.startswith("t")} == tags
