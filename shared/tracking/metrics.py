"""Metrics: history points in their own partition per (run, key), and one latest-metric item per
(run, key) in the run's partition, updated on condition so it follows MLflow's rule (the greatest
(step, timestamp, value) wins) whatever order concurrent writers arrive in."""

from __future__ import annotations

import bisect
import math

from shared import db, keys, pagination
from shared.clock import now_ms
from shared.errors import invalid
from shared.http import Request
from shared.validation import integer, key_name, number, require

HISTORY_PAGE_MAX = 25000
BULK_MAX_RUNS = 100
BULK_MAX_RESULTS = 2500


def stored(value: float):
    """DynamoDB numbers cannot hold NaN or infinities: those are kept as their protobuf names."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def metric_value(item: dict) -> float:
    return float(item["value"])


def metric_json(item: dict) -> dict:
    return {"key": item["key"], "value": metric_value(item), "timestamp": item["timestamp"], "step": item["step"]}


def parse_point(raw: dict, path: str) -> dict:
    key = key_name(raw.get("key"), f"{path}.key")
    value = number(raw.get("value"), f"{path}.value")
    timestamp = integer(raw.get("timestamp"), f"{path}.timestamp", now_ms())
    if timestamp < 0:
        raise invalid(f"Invalid value {timestamp} for parameter '{path}.timestamp' supplied. "
                      "Timestamp must be a nonnegative long (64-bit integer)")
    point = {"key": key, "value": value, "timestamp": timestamp, "step": integer(raw.get("step"), f"{path}.step", 0)}
    for field in ("model_id", "dataset_name", "dataset_digest"):  # MLflow 3: a value of a logged model
        if raw.get(field):
            point[field] = str(raw[field])
    return point


def write_points(project: str, run: dict, points: list[dict], also: list[dict] = ()) -> None:
    """History in parallel batches (idempotent keys), with any `also` items, then the latest item per
    key on condition; points with a `model_id` also go to their logged model."""
    from shared.tracking.logged_models import log_metrics  # imports runs, which imports this module
    from shared.tracking.runs import ordered_item

    log_metrics(project, run["run_id"], points)
    history = {(p["key"], keys.metric_point_sk(p["timestamp"], p["step"], p["value"])): p for p in points}
    db.batch_put([{"pk": keys.metric_history(project, run["run_id"], k), "sk": sk, "key": k,
                   "value": stored(p["value"]), "timestamp": p["timestamp"], "step": p["step"]}
                  for (k, sk), p in history.items()] + list(also))
    latest: dict[str, tuple[str, dict]] = {}
    for p in points:
        order = keys.metric_order(p["step"], p["timestamp"], p["value"])
        if p["key"] not in latest or order > latest[p["key"]][0]:
            latest[p["key"]] = (order, p)

    # A failed condition means a newer point is already the latest: nothing to do for that key.
    db.conditional_puts([
        (ordered_item(project, run, f"M#{p['key']}", "metric", p["key"], p["value"], key=p["key"],
                      value=stored(p["value"]), timestamp=p["timestamp"], step=p["step"], ord=order),
         "attribute_not_exists(pk) OR #o < :o", {"#o": "ord"}, {":o": order})
        for order, p in latest.values()])


def log_metric(req: Request) -> dict:
    from shared.tracking.runs import load_active_meta

    data = req.json
    point = parse_point(data, "metric")
    meta = load_active_meta(req.project, data.get("run_id") or require(data, "run_uuid"))
    write_points(req.project, meta, [point])
    return {}


def _history_json(item: dict, run_id: str | None = None) -> dict:
    out = metric_json(item)
    if run_id:
        out["run_id"] = run_id
    return out


def get_metric_history(req: Request) -> dict:
    from shared.tracking.runs import load_meta

    data = req.json
    run_id = data.get("run_id") or require(data, "run_uuid")
    metric_key = require(data, "metric_key")
    limit = integer(data.get("max_results"), "max_results", HISTORY_PAGE_MAX)
    if not 1 <= limit <= HISTORY_PAGE_MAX:
        raise invalid(f"max_results must be between 1 and {HISTORY_PAGE_MAX}")
    load_meta(req.project, run_id)
    query = [run_id, metric_key, limit]
    start = pagination.decode(data.get("page_token"), req.project, query)
    pk = keys.metric_history(req.project, run_id, metric_key)
    items, last = [], start
    while len(items) < limit:  # DynamoDB pages stop at 1 MB: fill the caller's page
        page, last = db.query(pk, limit=limit - len(items), start_key=last, consistent=True)
        items += page
        if not last:
            break
    out: dict = {"metrics": [_history_json(i) for i in items]}
    if last:
        out["next_page_token"] = pagination.encode(req.project, query, last)
    return out


def _history(project: str, run_id: str, metric_key: str) -> list[dict]:
    return db.query_all(keys.metric_history(project, run_id, metric_key))


def get_metric_history_bulk_interval(req: Request) -> dict:
    """MLflow's sampling: at most max_results steps per range, keeping each run's min and max step."""
    data = req.json
    run_ids = req.list_param("run_ids")
    if not run_ids:
        raise invalid("Missing value for required parameter 'run_ids'.")
    if len(run_ids) > BULK_MAX_RUNS:
        raise invalid(f"GetMetricHistoryBulkInterval request must specify at most {BULK_MAX_RUNS} run_ids. "
                      f"Received {len(run_ids)} run_ids.")
    metric_key = require(data, "metric_key")
    limit = integer(data.get("max_results"), "max_results", BULK_MAX_RESULTS)
    if not 1 <= limit <= BULK_MAX_RESULTS:
        raise invalid(f"max_results must be between 1 and {BULK_MAX_RESULTS}.")
    start_step, end_step = data.get("start_step"), data.get("end_step")
    if (start_step is None) != (end_step is None):
        raise invalid("If either start step or end step are specified, both must be specified.")
    if start_step is not None:
        start_step, end_step = integer(start_step, "start_step"), integer(end_step, "end_step")
        if start_step > end_step:
            raise invalid(f"end_step must be greater than start_step. Found start_step={start_step} "
                          f"and end_step={end_step}.")
    from shared.tracking.runs import load_meta

    db.parallel(lambda r: load_meta(req.project, r), run_ids)
    histories = db.parallel(lambda r: _history(req.project, r, metric_key), run_ids)
    steps = _sampled_steps([[i["step"] for i in h] for h in histories], limit, start_step, end_step)
    per_run = max(limit, len(steps))  # bounds rows when many values share a step
    out = []
    for run_id, history in zip(run_ids, histories):
        chosen = sorted((i for i in history if i["step"] in steps), key=lambda i: (i["step"], i["timestamp"]))
        out += [_history_json(chosen[i], run_id) for i in _evenly_spaced(len(chosen), per_run)]
    return {"metrics": out}


def _evenly_spaced(total: int, limit: int) -> list[int]:
    """At most `limit` indices into `total` items, always with the first and the last."""
    if total <= limit:
        return list(range(total))
    if limit == 1:
        return [total - 1]
    step = (total - 1) / (limit - 1)
    return sorted({round(i * step) for i in range(limit)})


def _sampled_steps(all_runs: list[list[int]], limit: int, start: int | None, end: int | None) -> set[int]:
    bounds = {s for run in all_runs if run for s in (min(run), max(run))}
    all_steps = sorted({s for run in all_runs for s in run})
    if start is None:
        start, end = 0, (all_steps[-1] if all_steps else 0)
    lo, hi = bisect.bisect_left(all_steps, start), bisect.bisect_right(all_steps, end)
    if hi - lo <= limit:
        sampled = set(all_steps[lo:hi])
    else:
        interval = (hi - lo) / limit
        sampled = {all_steps[lo + int(i * interval)] for i in range(limit) if lo + int(i * interval) < hi}
        sampled.add(all_steps[hi - 1])
    return sampled | {s for s in bounds if start <= s <= end}
