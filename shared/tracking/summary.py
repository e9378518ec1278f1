"""The run summary: a run's meta item (`#R`) also holds its params, tags, latest metrics, dataset
inputs and model inputs and outputs, so get-run is one GetItem and search reads one item per run.

    params   {key: value}                 tags     {key: value}
    metrics  {key: [value, timestamp, step]} (value as shared/doubles.py text; MLflow's latest point)
    datasets [{dataset, tags}] by (name, digest)   model_inputs [model_id]   outputs [{model_id, step}]
    rev      a write counter

Every write to a run updates the summary on condition that `rev` is still what the write read (the
meta read every write makes anyway), in one transaction with the per-field items the change implies
against it (shared/tracking/runs.py `write`); when another writer got there first, the failed
condition returns the item and the write is worked out again against it. A write too big for one
transaction puts its per-field items first (conditioned as the order indexes need: `P#` once, `M#`
only forwards), then updates the summary. So the summary is the truth, and an order-index entry
that does not match it is stale.

A summary that would pass SAFE_BYTES (DynamoDB items hold 400 KB; a run's tags may hold 350 KB of
text) is marked `overflow` and drops the fields: readers then assemble the run from its partition's
per-field items, which every write keeps complete. Runs written by an older mlreg read the same way
until `mlreg migrate` (or `mlreg serve`'s loader) gives them a summary."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from shared import db, doubles, keys
from shared.errors import MlflowError, not_found

FIELDS = ("params", "tags", "metrics", "datasets", "model_inputs", "outputs")
SAFE_BYTES = 300_000
PATH_UPDATES_MAX = 50  # more changed keys of one map: the whole map is set (expressions hold 4 KB)
WHOLE_MAP_BYTES = 2048  # a map this small is set whole: one path, not one per key (see _path_entries)
ATTEMPTS = 16  # with backoff(): ~4 s of waits at most before the client is told to retry (8 writers on one run)


def new(tags: dict[str, str]) -> dict:
    """The summary attributes of a new run."""
    return {"params": {}, "tags": dict(tags), "metrics": {}, "rev": 0}


def complete(meta: dict) -> bool:
    """Whether the meta item holds the run's fields (not an overflowed or older run)."""
    return "params" in meta and not meta.get("overflow")


def metric_entry(value: float, timestamp: int, step: int) -> list:
    return [doubles.encode(value), timestamp, step]


def metric_order(entry: list) -> str:
    """MLflow's latest-metric rule: the greatest (step, timestamp, value)."""
    value, timestamp, step = entry
    return keys.metric_order(step, timestamp, doubles.decode(value))


def fields_of(meta: dict) -> dict:
    """The run's fields from a complete summary, as runs.assemble builds them from items."""
    return {
        "params": dict(meta["params"]), "tags": dict(meta["tags"]),
        "metrics": {k: {"key": k, "value": v, "timestamp": ts, "step": step}
                    for k, (v, ts, step) in meta["metrics"].items()},
        "datasets": list(meta.get("datasets", [])),
        "model_inputs": [{"model_id": m} for m in meta.get("model_inputs", [])],
        "outputs": list(meta.get("outputs", [])),
    }


def upgraded_meta(project: str, meta: dict, run: dict) -> dict:
    """The summary of a run an older mlreg wrote (`run` assembled from its partition): its meta item
    with the run's fields, in its experiment's collection of summaries (gsi2, default order) instead
    of the runs collection of every run item (gsi1) and the start-time entry (gsi2) of before."""
    fields = {
        "params": dict(run["params"]), "tags": dict(run["tags"]),
        "metrics": {k: [m["value"], m["timestamp"], m["step"]] for k, m in run["metrics"].items()},
        "datasets": sorted(({"dataset": d["dataset"], "tags": d.get("tags", [])} for d in run["datasets"]),
                           key=_dataset_key),
        "model_inputs": sorted(m["model_id"] for m in run["model_inputs"]),
        "outputs": sorted(({"model_id": o["model_id"], "step": o.get("step", 0)} for o in run["outputs"]),
                          key=lambda o: o["model_id"]),
    }
    kept = {k: v for k, v in meta.items() if k not in ("g1pk", "g1sk")}
    upgraded = {**kept, "g2pk": keys.runs_collection(project, meta["experiment_id"]),
                "g2sk": keys.runs_collection_sk(meta["start_time"], meta["run_id"]), "rev": meta.get("rev", 0)}
    if size({**upgraded, **fields}) > SAFE_BYTES:
        return {**upgraded, "overflow": True}
    return {**upgraded, **fields}


@dataclass
class Change:
    """What one write changes in a run. `info`: run attributes to set (None: remove)."""

    info: dict = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    untagged: tuple[str, ...] = ()
    metrics: dict[str, list] = field(default_factory=dict)  # key -> metric_entry, the batch's latest
    datasets: list[dict] = field(default_factory=list)
    model_inputs: list[str] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)


def commit(meta: dict, change: Change) -> None:
    """Apply `change` to the summary read as `meta`, on condition nobody wrote it since; retried on
    the item a lost race returns."""
    for attempt in range(ATTEMPTS):
        update = update_of(meta, change)
        if update is None:
            return
        try:
            return apply(meta, update)
        except ClientError as err:
            if not db.is_conflict(err):
                raise
            meta = lost_to(err, meta)
        backoff(attempt)
    raise busy()


def apply(meta: dict, update: tuple[str, dict, dict, str]) -> None:
    expression, names, values, condition = update
    db.update(meta["pk"], meta["sk"], expression, names=names, values=values, condition=condition)


def lost_to(err: ClientError, meta: dict) -> dict:
    """The summary a write lost to: the item its failed condition found, alone or as the first item
    of a transaction (the same `meta` when the transaction met another instead)."""
    single = err.response["Error"]["Code"] == "ConditionalCheckFailedException"
    if not single and db.cancellation_reasons(err)[0] != "ConditionalCheckFailed":
        return meta
    found = db.failed_item(err, None if single else 0)
    if found is None:
        raise not_found(f"Run with id={meta['run_id']} not found") from None
    return found


def backoff(attempt: int) -> None:
    """Jittered: writers that lost to each other spread out instead of meeting again."""
    time.sleep(random.uniform(0, min(0.4, 0.005 * 2 ** attempt)))


def busy() -> MlflowError:
    return MlflowError("Too many concurrent writes to this run; retry the request", "TEMPORARILY_UNAVAILABLE")


# ---- the update expression ---------------------------------------------------------------------------

def update_of(meta: dict, change: Change) -> tuple[str, dict, dict, str] | None:
    """The UpdateItem that applies `change` to `meta`, or None when it changes nothing."""
    sets, paths, removes = dict(change.info), [], []
    if complete(meta):
        merged = _merged(meta, change)
        if size({**meta, **merged}) > SAFE_BYTES:
            sets["overflow"] = True
            removes += [f for f in FIELDS if f in meta]
        else:
            for name, value in merged.items():
                entries = _path_entries(meta, name, value)
                if entries is None:
                    sets[name] = value
                else:
                    paths += entries
            if "tags" not in sets:  # a whole new map already lacks them
                removes += [("tags", key) for key in change.untagged if key in meta["tags"]]
    if not sets and not paths and not removes:
        return None
    return _expression(meta, sets, paths, removes)


def _merged(meta: dict, change: Change) -> dict:
    """The new value of each field the change alters."""
    out = {}
    for name in ("params", "tags"):
        new = {k: v for k, v in getattr(change, name).items() if meta[name].get(k) != v}
        if new:
            out[name] = {**meta[name], **new}
    if any(k in meta["tags"] for k in change.untagged):
        out["tags"] = {k: v for k, v in out.get("tags", meta["tags"]).items() if k not in change.untagged}
    newer = {k: e for k, e in change.metrics.items()
             if k not in meta["metrics"] or metric_order(e) > metric_order(meta["metrics"][k])}
    if newer:
        out["metrics"] = {**meta["metrics"], **newer}
    for name, entries, key in (("datasets", change.datasets, _dataset_key), ("model_inputs", change.model_inputs, str),
                               ("outputs", change.outputs, lambda o: o["model_id"])):
        old = meta.get(name, [])
        merged = sorted({**{key(e): e for e in old}, **{key(e): e for e in entries}}.values(), key=key)
        if merged != old:
            out[name] = merged
    return out


def _dataset_key(entry: dict) -> tuple[str, str]:
    return entry["dataset"]["name"], entry["dataset"]["digest"]


def _path_entries(meta: dict, name: str, value) -> list[tuple[str, str, object]] | None:
    """A map's changed keys as (map, key, value) path updates; None: set the whole attribute (a list,
    a new map, a small map, or too many keys for one expression). Removed keys are REMOVE paths of
    their own. A small map goes whole: about as many bytes, and an expression of one path (DynamoDB
    bills an update by the item's size either way; the emulator evaluates each path in Python: a
    fresh run's log-batch of 10 params and 10 metrics took 30.5 ms with paths, 24.1 whole). The
    write's condition on the summary's rev makes either form apply to the summary it was worked out
    against."""
    if not isinstance(value, dict) or name not in meta or size(value) <= WHOLE_MAP_BYTES:
        return None
    changed = [(name, k, v) for k, v in value.items() if meta[name].get(k, _ABSENT) != v]
    return changed if len(changed) <= PATH_UPDATES_MAX else None


_ABSENT = object()


def _expression(meta: dict, sets: dict, paths: list, removes: list) -> tuple[str, dict, dict, str]:
    names: dict = {"#rev": "rev"}
    values: dict = {}
    assign, remove = [], []
    for i, (attr, value) in enumerate(sets.items()):
        names[f"#a{i}"] = attr
        if value is None:
            remove.append(f"#a{i}")
        else:
            values[f":a{i}"] = value
            assign.append(f"#a{i} = :a{i}")
    for i, entry in enumerate([*paths, *removes]):
        if isinstance(entry, str):  # a whole attribute
            names[f"#r{i}"] = entry
            remove.append(f"#r{i}")
            continue
        name, key = entry[0], entry[1]
        names[f"#m_{name}"], names[f"#k{i}"] = name, key
        if len(entry) == 3:
            values[f":k{i}"] = entry[2]
            assign.append(f"#m_{name}.#k{i} = :k{i}")
        else:
            remove.append(f"#m_{name}.#k{i}")
    rev = meta.get("rev")
    values[":next"] = (rev or 0) + 1
    assign.append("#rev = :next")
    if rev is None:
        condition = "attribute_exists(pk) AND attribute_not_exists(#rev)"
    else:
        condition, values[":rev"] = "#rev = :rev", rev
    expression = "SET " + ", ".join(assign) + (" REMOVE " + ", ".join(remove) if remove else "")
    return expression, names, values, condition


def size(value) -> int:
    """About the bytes DynamoDB counts for a value (names and text by their UTF-8 length)."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return sum(len(k.encode()) + 1 + size(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return 3 + sum(1 + size(v) for v in value)
    if isinstance(value, bytes):
        return len(value)
    return 8
