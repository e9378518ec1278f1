"""A data directory written before run summaries and history chunks (issue 15) loads, is upgraded
once, and serves the same runs, searches and histories through the MLflow client."""

from __future__ import annotations

import base64
import json

import mlflow
from mlflow.entities import Metric, Param, RunTag

from mlreg import migrations
from shared import db, doubles, keys
from tests.conftest import start_service, stop_service

STEP = "2026-12-run-summaries"
SUMMARY_FIELDS = ("params", "tags", "metrics", "datasets", "model_inputs", "outputs", "rev", "overflow")


def _metric_point_sk(timestamp: int, step: int, value: float) -> str:
    """The per-point history key the older mlreg wrote."""
    return f"{keys.encode_int(timestamp)}#{keys.encode_int(step)}#{keys.encode_float(value)}"


def _as_older_mlreg(items: list[dict]) -> list[dict]:
    """Today's items in the layout the mlreg before issue 15 wrote: meta items without summaries and
    in gsi2 by start time, every run item in the runs collection (gsi1), one history item per point."""
    from shared.tracking import history

    experiment_of = {i["pk"]: i["experiment_id"] for i in items if "#R#" in i["pk"] and i["sk"] == keys.RUN_SK}
    out = []
    for item in items:
        pk, sk = item["pk"], item["sk"]
        if pk == migrations.MARKER_PK:
            out.append({**item, "applied": [s for s in item["applied"] if s != STEP]})
        elif "#H#" in pk:
            key = pk.split("#H#", 1)[1]
            out += [{"pk": pk, "sk": _metric_point_sk(ts, step, value), "key": key, "value": doubles.encode(value),
                     "timestamp": ts, "step": step} for ts, step, value in history.points([item])]
        elif pk in experiment_of:
            project, run_id = pk[2:].split("#R#")
            old = {k: v for k, v in item.items() if k not in SUMMARY_FIELDS}
            old.update(g1pk=keys.runs_collection(project, experiment_of[pk]), g1sk=f"{run_id}#{sk}")
            if sk == keys.RUN_SK:
                old.update(g2pk=f"P#{project}#E#{item['experiment_id']}#START",
                           g2sk=f"{keys.encode_int(item['start_time'] or 0)}#{run_id}")
            out.append(old)
        else:
            out.append(item)
    return out


def _snapshot_items(data_dir) -> list[dict]:
    return [db.from_item(migrations._bytes_of_base64(i)) for i in json.loads((data_dir / "table.json").read_text())["items"]]


def _rewrite_snapshot(data_dir, change) -> None:
    path = data_dir / "table.json"
    saved = json.loads(path.read_text())
    saved["items"] = [db.to_item(i) for i in change(_snapshot_items(data_dir))]
    path.write_text(json.dumps(saved, default=lambda b: base64.b64encode(b).decode()))


def _state(client, experiment_id: str, run_ids: list[str]) -> dict:
    """What a client sees: runs, searches (filters, orders, pages) and histories."""
    def ids(**query):
        return [r.info.run_id for r in client.search_runs([experiment_id], max_results=1000, **query)]

    return {
        "runs": {r: client.get_run(r).to_dictionary() for r in run_ids},
        "default": ids(), "param": ids(filter_string="params.lr = '0.1'"), "tag": ids(filter_string="tags.team = 'x'"),
        "metric": ids(filter_string="metrics.acc > 0.3", order_by=["metrics.acc DESC"]),
        "by name": ids(order_by=["attributes.run_name"]),
        "history": {r: [(m.timestamp, m.step, m.value) for m in client.get_metric_history(r, "acc")] for r in run_ids},
    }


def test_data_of_an_older_mlreg_is_upgraded_on_load(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    svc = start_service(data_dir)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", svc.token)
        client = mlflow.MlflowClient(svc.uri())
        experiment_id = client.create_experiment("upgraded")
        run_ids = []
        for i in range(6):
            run = client.create_run(experiment_id, start_time=1000 + i, run_name=f"run-{5 - i}")
            run_ids.append(run.info.run_id)
            client.log_batch(run.info.run_id, metrics=[Metric("acc", i / 10 + s, 10 + s, s) for s in range(3)],
                             params=[Param("lr", "0.1" if i % 2 else "0.2")], tags=[RunTag("team", "xy"[i % 2])])
        before = _state(client, experiment_id, run_ids)
    finally:
        stop_service(svc)
    _rewrite_snapshot(data_dir, _as_older_mlreg)
    old = _snapshot_items(data_dir)
    assert sum("#H#" in i["pk"] for i in old) == 6 * 3 and not any("rev" in i for i in old if "#R#" in i["pk"])

    for restart in range(2):  # the upgrade is made durable once; the second start finds current data
        svc = start_service(data_dir)
        try:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", svc.token)
            client = mlflow.MlflowClient(svc.uri())
            assert _state(client, experiment_id, run_ids) == before
            if restart == 0:  # an upgraded run takes new writes into its summary and history
                client.log_metric(run_ids[0], "acc", 99.0, timestamp=50, step=9)
                client.set_tag(run_ids[0], "team", "x")
                before = _state(client, experiment_id, run_ids)
                assert before["metric"][0] == run_ids[0] and run_ids[0] in before["tag"]
        finally:
            stop_service(svc)
    upgraded = _snapshot_items(data_dir)
    metas = [i for i in upgraded if "#R#" in i["pk"] and i["sk"] == keys.RUN_SK]
    assert len(metas) == 6 and all(m["rev"] >= 0 and "params" in m and m["g2pk"].endswith("#RUNS") for m in metas)
    assert all(i["sk"].startswith(keys.HISTORY_CHUNK) for i in upgraded if "#H#" in i["pk"])
    assert not any("g1pk" in i for i in upgraded if "#R#" in i["pk"])
