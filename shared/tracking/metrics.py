"""Metrics: the history in chunks (shared/tracking/history.py), one per (run, key, logged batch), and
the latest value of each key in the run's summary and in an `M#` item, its order-index entry. Both
follow MLflow's rule (the greatest (step, timestamp, value) wins) whatever order concurrent writers
arrive in: both are written in one transaction on condition of the summary's `rev`, the `M#` item
only when the key moves forwards (a batch too big for one transaction: the `M#` item on condition
it moves forwards, then the summary; shared/tracking/runs.py `write`)."""

from __future__ import annotations

import bisect
from functools import partial

from shared import db, doubles, keys, pagination
from shared.http import Request
from shared.tracking import history, messages, summary
from shared.tracking.messages import Metric

_FORWARD = "attribute_not_exists(pk) OR #o < :o"


def metric_value(item: dict) -> float:
    return doubles.decode(item["value"])


def metric_json(item: dict) -> dict:
    return {"key": item["key"], "value": metric_value(item), "timestamp": item["timestamp"], "step": item["step"]}


def _order(p: Metric) -> str:
    return keys.metric_order(p.step, p.timestamp, p.value)


def latest_points(points: list[Metric]) -> dict[str, Metric]:
    """The greatest point of each key of a batch."""
    latest: dict[str, Metric] = {}
    for p in points:
        if p.key not in latest or _order(p) > _order(latest[p.key]):
            latest[p.key] = p
    return latest


def history_items(project: str, run_id: str, points: list[Metric]) -> list[dict]:
    """The batch's chunks: one per key (a key of more than CHUNK_POINTS_MAX points: several)."""
    by_key: dict[str, list[tuple]] = {}
    for p in points:
        by_key.setdefault(p.key, []).append((p.timestamp, p.step, p.value))
    return [chunk for k, pts in by_key.items()
            for chunk in history.chunk_items(keys.metric_history(project, run_id, k), pts)]


def latest_item(project: str, run: dict, key: str, entry: list) -> dict:
    """The `M#` item of a key's latest point (`entry` as the summary holds it)."""
    from shared.tracking.runs import ordered_item  # runs imports this module

    value, timestamp, step = entry
    return ordered_item(project, run, f"M#{key}", "metric", key, doubles.decode(value), key=key, value=value,
                        timestamp=timestamp, step=step, ord=summary.metric_order(entry))


def forward_puts(project: str, meta: dict, entries: dict[str, list], held: dict) -> list[tuple]:
    """Conditional puts of the `M#` items that move forwards from `held` (and still do when written)."""
    return [(latest_item(project, meta, k, e), _FORWARD, {"#o": "ord"}, {":o": summary.metric_order(e)})
            for k, e in entries.items() if k not in held or summary.metric_order(e) > summary.metric_order(held[k])]


def point_writes(project: str, meta: dict, points: list[Metric]) -> tuple[list[dict], dict]:
    """What logging `points` writes: history chunks, and the batch's latest entry of each key (the
    summary and the `M#` items take those that move forwards). Points with a `model_id` also go to
    their logged model first."""
    from shared.tracking.logged_models import log_metrics  # imports runs, which imports this module

    log_metrics(project, meta["run_id"], points)
    entries = {k: summary.metric_entry(p.value, p.timestamp, p.step) for k, p in latest_points(points).items()}
    return history_items(project, meta["run_id"], points), entries


def log_metric(req: Request, msg: messages.LogMetric) -> dict:
    from shared.tracking import runs

    meta = runs.load_active_meta(req.project, msg.run_id)
    chunks, latest = point_writes(req.project, meta, [msg])
    runs.write(req.project, meta, summary.Change(metrics=latest), chunks)
    return {}


def _point_json(key: str, point: history.Point, run_id: str | None = None) -> dict:
    timestamp, step, value = point
    out = {"key": key, "value": value, "timestamp": timestamp, "step": step}
    if run_id:
        out["run_id"] = run_id
    return out


def _history_items(project: str, run_id: str, metric_key: str, consistent: bool = False) -> list[dict]:
    return db.query_all(keys.metric_history(project, run_id, metric_key), consistent=consistent)


def _position(cursor) -> tuple[int, int, int] | None:
    """A page token's position: (timestamp, step, value order) of the last point handed out; an
    older mlreg's token holds the last item's key."""
    if cursor is None:
        return None
    return history.legacy_position(cursor["sk"]) if isinstance(cursor, dict) else tuple(cursor)


def get_metric_history(req: Request, msg: messages.GetMetricHistory) -> dict:
    """Every chunk of the (run, key) is read for each page: points are ordered across chunks."""
    from shared.tracking.runs import load_meta

    query = [msg.run_id, msg.metric_key]  # not max_results: clients change it between pages
    position = _position(pagination.decode(msg.page_token, req.project, query))
    reads = [partial(load_meta, req.project, msg.run_id),
             partial(_history_items, req.project, msg.run_id, msg.metric_key, True)]
    _, items = db.parallel(lambda read: read(), reads)
    found = history.positioned(items)
    start = 0 if position is None else bisect.bisect_right(found, position, key=lambda entry: entry[0])
    page = found[start:start + msg.max_results]
    out: dict = {"metrics": [_point_json(msg.metric_key, point) for _, point in page]}
    if start + msg.max_results < len(found):
        out["next_page_token"] = pagination.encode(req.project, query, list(page[-1][0]))
    return out


def get_metric_history_bulk_interval(req: Request, msg: messages.GetMetricHistoryBulkInterval) -> dict:
    """MLflow's sampling: at most max_results steps per range, keeping each run's min and max step."""
    from shared.tracking.runs import load_meta

    run_ids, limit = msg.run_ids, msg.max_results
    reads = [partial(load_meta, req.project, r) for r in run_ids]
    reads += [partial(_history_items, req.project, r, msg.metric_key) for r in run_ids]
    histories = [history.points(items) for items in db.parallel(lambda read: read(), reads)[len(run_ids):]]
    steps = _sampled_steps([[p[1] for p in h] for h in histories], limit, msg.start_step, msg.end_step)
    per_run = max(limit, len(steps))  # bounds rows when many values share a step
    out = []
    for run_id, points in zip(run_ids, histories):
        chosen = sorted((p for p in points if p[1] in steps), key=lambda p: (p[1], p[0]))
        out += [_point_json(msg.metric_key, chosen[i], run_id) for i in _evenly_spaced(len(chosen), per_run)]
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
