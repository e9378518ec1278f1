"""Metrics: history points in their own partition per (run, key), and one latest-metric item per
(run, key) in the run's partition, updated on condition so it follows MLflow's rule (the greatest
(step, timestamp, value) wins) whatever order concurrent writers arrive in."""

from __future__ import annotations

import bisect

from shared import db, doubles, keys, pagination
from shared.http import Request
from shared.tracking import messages
from shared.tracking.messages import Metric


def metric_value(item: dict) -> float:
    return doubles.decode(item["value"])


def metric_json(item: dict) -> dict:
    return {"key": item["key"], "value": metric_value(item), "timestamp": item["timestamp"], "step": item["step"]}


def write_points(project: str, run: dict, points: list[Metric], also: list[dict] = ()) -> None:
    """History in parallel batches (idempotent keys), with any `also` items, then the latest item per
    key on condition."""
    from shared.tracking.runs import ordered_item

    history = {(p.key, keys.metric_point_sk(p.timestamp, p.step, p.value)): p for p in points}
    db.batch_put([{"pk": keys.metric_history(project, run["run_id"], k), "sk": sk, "key": k,
                   "value": doubles.encode(p.value), "timestamp": p.timestamp, "step": p.step}
                  for (k, sk), p in history.items()] + list(also))
    latest: dict[str, tuple[str, Metric]] = {}
    for p in points:
        order = keys.metric_order(p.step, p.timestamp, p.value)
        if p.key not in latest or order > latest[p.key][0]:
            latest[p.key] = (order, p)

    # A failed condition means a newer point is already the latest: nothing to do for that key.
    db.conditional_puts([
        (ordered_item(project, run, f"M#{p.key}", "metric", p.key, p.value, key=p.key,
                      value=doubles.encode(p.value), timestamp=p.timestamp, step=p.step, ord=order),
         "attribute_not_exists(pk) OR #o < :o", {"#o": "ord"}, {":o": order})
        for order, p in latest.values()])


def log_metric(req: Request, msg: messages.LogMetric) -> dict:
    from shared.tracking.runs import load_active_meta

    meta = load_active_meta(req.project, msg.run_id)
    write_points(req.project, meta, [msg])
    return {}


def _history_json(item: dict, run_id: str | None = None) -> dict:
    out = metric_json(item)
    if run_id:
        out["run_id"] = run_id
    return out


def get_metric_history(req: Request, msg: messages.GetMetricHistory) -> dict:
    from shared.tracking.runs import load_meta

    load_meta(req.project, msg.run_id)
    query = [msg.run_id, msg.metric_key]  # not max_results: clients change it between pages
    start = pagination.decode(msg.page_token, req.project, query)
    pk = keys.metric_history(req.project, msg.run_id, msg.metric_key)
    items, last = [], start
    while len(items) < msg.max_results:  # DynamoDB pages stop at 1 MB: fill the caller's page
        page, last = db.query(pk, limit=msg.max_results - len(items), start_key=last, consistent=True)
        items += page
        if not last:
            break
    out: dict = {"metrics": [_history_json(i) for i in items]}
    if last:
        out["next_page_token"] = pagination.encode(req.project, query, last)
    return out


def _history(project: str, run_id: str, metric_key: str) -> list[dict]:
    return db.query_all(keys.metric_history(project, run_id, metric_key))


def get_metric_history_bulk_interval(req: Request, msg: messages.GetMetricHistoryBulkInterval) -> dict:
    """MLflow's sampling: at most max_results steps per range, keeping each run's min and max step."""
    from shared.tracking.runs import load_meta

    run_ids, limit = msg.run_ids, msg.max_results
    db.parallel(lambda r: load_meta(req.project, r), run_ids)
    histories = db.parallel(lambda r: _history(req.project, r, msg.metric_key), run_ids)
    steps = _sampled_steps([[i["step"] for i in h] for h in histories], limit, msg.start_step, msg.end_step)
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
