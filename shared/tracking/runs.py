"""Runs: create, get, update, delete, restore, params, tags, inputs, outputs, search.

A run is one partition. Its meta item (`#R`) is the run's summary (shared/tracking/summary.py):
the run info with its params, tags, latest metrics and inputs, so get-run is one GetItem and search
reads one item per run. Per-field items beside it keep the order indexes and guards: `P#` (a param,
write-once), `T#` (a tag), `M#` (a latest metric, written only forwards) sit in their field's order
indexes (gsi3/gsi4); `D#`, `I#`, `O#` (inputs and outputs) and those three make the partition
complete, which overflowed and older runs are read from. Every write is one transaction: the
summary's update, on condition of the `rev` its meta read saw, with the per-field items it implies
(worked out again against the summary a lost race returns), so index entries and summary never
disagree and a write costs two round trips with the read.
"""

from __future__ import annotations

import json
import random
import uuid

from botocore.exceptions import ClientError

from shared import db, keys, pagination
from shared.clock import now_ms
from shared.errors import MlflowError, invalid, not_found
from shared.filters import parse_run_order_by, run_filter_clauses
from shared.http import Request
from shared.tracking import experiments, messages, summary
from shared.tracking.metrics import metric_json, metric_value
from shared.tracking.summary import Change
from shared.validation import MAX_ITEM_TEXT_BYTES
from shared.validation import run_id as valid_run_id

ACTIVE, DELETED = "active", "deleted"
RUN_NAME_TAG = "mlflow.runName"
VIEW_TYPES = experiments.VIEW_TYPES
INFO_FIELDS = ("run_id", "run_uuid", "run_name", "experiment_id", "user_id", "status", "start_time",
               "end_time", "artifact_uri", "lifecycle_stage")


# ---- items ----------------------------------------------------------------------------------------

def child_item(project: str, run: dict, sk: str, **attrs) -> dict:
    """A per-field item in a run's partition."""
    return {"pk": keys.run(project, run["run_id"]), "sk": sk, **attrs}


def ordered_item(project: str, run: dict, sk: str, kind: str, field: str, order_value, **attrs) -> dict:
    """A per-field item that also sits in the order indexes of its field (search_runs' order_by)."""
    order = keys.order_attributes(project, run["experiment_id"], kind, field, order_value, run["start_time"],
                                  run["run_id"])
    return {**child_item(project, run, sk, **attrs), **order}


def meta_item(project: str, run: dict, fields: dict) -> dict:
    """The meta item: run info, the summary `fields`, the run's entries in the start-time order
    indexes and in its experiment's collection of summaries (gsi2, in MLflow's default order)."""
    order = keys.order_attributes(project, run["experiment_id"], "start", "", run["start_time"] or 0,
                                  run["start_time"], run["run_id"])
    return {"pk": keys.run(project, run["run_id"]), "sk": keys.RUN_SK, **run, **fields, **order,
            "g2pk": keys.runs_collection(project, run["experiment_id"]),
            "g2sk": keys.runs_collection_sk(run["start_time"], run["run_id"])}


def tag_item(project: str, run: dict, key: str, value: str) -> dict:
    return ordered_item(project, run, f"T#{key}", "tag", key, value, key=key, value=value)


def param_item(project: str, run: dict, key: str, value: str) -> dict:
    return ordered_item(project, run, f"P#{key}", "param", key, value, key=key, value=value)


def info_of(meta: dict) -> dict:
    return {k: meta.get(k) for k in INFO_FIELDS}


def assemble(items: list[dict]) -> dict | None:
    """A run from its partition's per-field items (overflowed runs, runs of an older mlreg)."""
    run: dict = {"metrics": {}, "params": {}, "tags": {}, "datasets": [], "outputs": [], "model_inputs": []}
    for item in items:
        kind = item["sk"][:2]
        if item["sk"] == keys.RUN_SK:
            run["info"] = info_of(item)
        elif kind == "P#":
            run["params"][item["key"]] = item["value"]
        elif kind == "T#":
            run["tags"][item["key"]] = item["value"]
        elif kind == "M#":
            run["metrics"][item["key"]] = item
        elif kind == "D#":
            run["datasets"].append(item)
        elif kind == "I#":
            run["model_inputs"].append(item)
        elif kind == "O#":
            run["outputs"].append(item)
    return run if "info" in run else None


def from_metas(project: str, metas: list[dict]) -> list[dict]:
    """Runs from their meta items: a summary is the run; the rare others load their partition (in
    parallel)."""
    partial = [m for m in metas if not summary.complete(m)]
    loaded = dict(zip((m["run_id"] for m in partial),
                      db.parallel(lambda m: assemble(db.query_all(m["pk"], consistent=True)), partial)))
    return [{"info": info_of(m), **summary.fields_of(m)} if summary.complete(m) else loaded[m["run_id"]]
            for m in metas if summary.complete(m) or loaded[m["run_id"]]]


def filter_view(run: dict) -> dict:
    """The plain view shared.filters evaluates."""
    return {
        "info": run["info"],
        "metrics": {k: metric_value(m) for k, m in run["metrics"].items()},
        "params": run["params"], "tags": run["tags"],
        "datasets": [{"name": d["dataset"]["name"], "digest": d["dataset"]["digest"],
                      "context": next((t["value"] for t in d.get("tags", []) if t["key"] == "mlflow.data.context"), None)}
                     for d in run["datasets"]],
    }


def to_json(run: dict) -> dict:
    info = {k: v for k, v in run["info"].items() if v is not None}
    out = {
        "info": info,
        "data": {
            "metrics": [metric_json(m) for m in run["metrics"].values()],
            "params": [{"key": k, "value": v} for k, v in run["params"].items()],
            "tags": [{"key": k, "value": v} for k, v in run["tags"].items()],
        },
        "inputs": {
            "dataset_inputs": [{"tags": d.get("tags", []), "dataset": d["dataset"]} for d in run["datasets"]],
            "model_inputs": [{"model_id": m["model_id"]} for m in run["model_inputs"]],
        },
    }
    if run["outputs"]:
        out["outputs"] = {"model_outputs": [{"model_id": o["model_id"], "step": o.get("step", 0)} for o in run["outputs"]]}
    return out


def load(project: str, run_id: str) -> dict | None:
    meta = db.get(keys.run(project, valid_run_id(run_id)), keys.RUN_SK)
    return from_metas(project, [meta])[0] if meta else None


def load_or_404(project: str, run_id: str) -> dict:
    run = load(project, run_id)
    if run is None:
        raise not_found(f"Run with id={run_id} not found")
    return run


def load_meta(project: str, run_id: str) -> dict:
    """The meta item (the summary): what a write needs to know (experiment, lifecycle, fields)."""
    item = db.get(keys.run(project, valid_run_id(run_id)), keys.RUN_SK)
    if item is None:
        raise not_found(f"Run with id={run_id} not found")
    return item


def load_active_meta(project: str, run_id: str) -> dict:
    meta = load_meta(project, run_id)
    if meta["lifecycle_stage"] != ACTIVE:
        raise invalid(f"The run {run_id} must be in the 'active' state. Current state is {meta['lifecycle_stage']}.")
    return meta


def write(project: str, meta: dict, change: Change, always: list[dict] = ()) -> None:
    """A write to a run: one transaction of the summary's update, on condition of the `rev` its
    meta read saw, with the per-field items the change implies against that summary and `always`
    (items that do not depend on it: history chunks, inputs, outputs). A lost race returns the
    summary that won, and the write is worked out again against it. Runs without a complete
    summary, and writes beyond one transaction, go in steps."""
    always = list({(i["pk"], i["sk"]): i for i in always}.values())  # a transaction names an item once
    if not summary.complete(meta):
        return _write_in_steps(project, meta, change, always)
    if not _fits(project, meta, change, always):
        if not _fits(project, meta, change, []):
            return _write_in_steps(project, meta, change, always)
        db.batch_put(always)  # idempotent (history chunks): first, and the rest in one transaction
        always = []
    for attempt in range(summary.ATTEMPTS):
        _check_params(meta, change.params)
        update = summary.update_of(meta, change)
        if update is None:  # the summary holds it all already (a retried request)
            return db.batch_put(always)
        try:
            return _commit(project, meta, change, update, always)
        except ClientError as err:
            if not db.is_conflict(err):
                raise
            meta = summary.lost_to(err, meta)
            if not summary.complete(meta):  # the winner overflowed the summary: its items are the run now
                return _write_in_steps(project, meta, change, always)
        summary.backoff(attempt)
    raise summary.busy()


def _commit(project: str, meta: dict, change: Change, update: tuple, always: list[dict]) -> None:
    puts, deletes = field_items(project, meta, change)
    if not puts and not deletes and not always:
        return summary.apply(meta, update)
    expression, names, values, condition = update
    tx = db.Tx().update(meta["pk"], meta["sk"], expression, names, values, condition, return_old=True)
    for item in [*puts, *always]:
        tx.put(item)
    for sk in deletes:
        tx.delete(meta["pk"], sk)
    tx.commit()


def field_items(project: str, meta: dict, change: Change) -> tuple[list[dict], list[str]]:
    """The per-field items a change implies against a complete summary: `T#` of tags it changes,
    `P#` of new params, `M#` of metrics that move forwards; and the sort keys of removed tags."""
    from shared.tracking.metrics import latest_item

    held = meta["metrics"]
    puts = [tag_item(project, meta, k, v) for k, v in change.tags.items() if meta["tags"].get(k) != v]
    puts += [param_item(project, meta, k, v) for k, v in change.params.items() if k not in meta["params"]]
    puts += [latest_item(project, meta, k, e) for k, e in change.metrics.items()
             if k not in held or summary.metric_order(e) > summary.metric_order(held[k])]
    return puts, [f"T#{k}" for k in change.untagged if k in meta["tags"]]


def _fits(project: str, meta: dict, change: Change, always: list[dict]) -> bool:
    """Whether the write fits one transaction (100 items, 4 MB; the summary counted whole)."""
    puts, deletes = field_items(project, meta, change)
    return (1 + len(puts) + len(deletes) + len(always) <= db.TRANSACT_MAX
            and summary.size([meta, change.tags, change.params, *puts, *always]) <= TRANSACT_SAFE_BYTES)


TRANSACT_SAFE_BYTES = 3_000_000  # a transaction holds 4 MB; the update's expression values count twice


def _write_in_steps(project: str, meta: dict, change: Change, always: list[dict]) -> None:
    """The per-field items first (params on condition, as their guard; `M#` on condition it moves
    forwards: whatever order writers arrive in), then the summary on condition of its `rev`."""
    from shared.tracking.metrics import forward_puts

    param_writes(project, meta, change.params)
    held = meta["metrics"] if summary.complete(meta) else {}
    db.put_together([*always, *tag_items(project, meta, change.tags)], forward_puts(project, meta, change.metrics, held))
    summary.commit(meta, change)


# ---- create / get / update / lifecycle ----------------------------------------------------------

def _random_name() -> str:
    adjectives = ("bold", "calm", "clever", "eager", "gentle", "keen", "lucid", "merry", "nimble", "quiet",
                  "rare", "sleek", "sunny", "swift", "vivid", "wise")
    nouns = ("ant", "bear", "crane", "dove", "eel", "finch", "fox", "gull", "hare", "lark", "lynx", "mole",
             "owl", "seal", "wren", "yak")
    return f"{random.choice(adjectives)}-{random.choice(nouns)}-{random.randint(100, 999)}"


def create_run(req: Request, msg: messages.CreateRun) -> dict:
    experiment_id = msg.experiment_id or experiments.DEFAULT_EXPERIMENT_ID
    tags = {t.key: t.value for t in msg.tags}
    run_name = msg.run_name or tags.get(RUN_NAME_TAG) or _random_name()
    tags[RUN_NAME_TAG] = run_name
    run_id = uuid.uuid4().hex
    run = {
        "run_id": run_id, "run_uuid": run_id, "run_name": run_name, "experiment_id": experiment_id,
        "user_id": msg.user_id, "status": "RUNNING",
        "start_time": now_ms() if msg.start_time is None else msg.start_time, "end_time": None,
        "artifact_uri": f"{experiments.artifact_location(experiment_id)}/{run_id}/artifacts",
        "lifecycle_stage": ACTIVE,
    }
    create(req.project, run, tags)
    return {"run": to_json({"info": run, "params": {}, "metrics": {}, "tags": tags, "datasets": [],
                            "outputs": [], "model_inputs": []})}


def create(project: str, run: dict, tags: dict[str, str]) -> None:
    """One transaction: the meta item (with the tags in its summary) and the tags' items, on
    condition the experiment exists and is active. Tags beyond what a transaction holds follow in
    batches (the run exists by then)."""
    meta, *tag_items = new_run_items(project, run, tags)
    room = db.TRANSACT_MAX - 2
    tx = db.Tx()
    tx.check(keys.experiment(project, run["experiment_id"]), keys.EXPERIMENT_SK,
             "lifecycle_stage = :active", values={":active": ACTIVE})
    tx.put(meta, condition="attribute_not_exists(pk)")
    for item in tag_items[:room]:
        tx.put(item)
    try:
        tx.commit()
    except ClientError as err:
        if db.is_condition_failure(err):
            experiments.load_active(project, run["experiment_id"])  # raises the precise error
        raise
    db.batch_put(tag_items[room:])


def new_run_items(project: str, run: dict, tags: dict[str, str], params: dict[str, str] | None = None,
                  points: list[messages.Metric] = ()) -> list[dict]:
    """Every item of a new run, its meta item first: what create writes (tags only), and what
    bench/harness.py builds experiments from."""
    from shared.tracking import metrics

    params = params or {}
    chunks, latest = metrics.history_items(project, run["run_id"], points), metrics.latest_points(points)
    fields = summary.new(tags)
    fields["params"] = dict(params)
    fields["metrics"] = {k: summary.metric_entry(p.value, p.timestamp, p.step) for k, p in latest.items()}
    return [meta_item(project, run, fields), *(tag_item(project, run, k, v) for k, v in tags.items()),
            *(param_item(project, run, k, v) for k, v in params.items()),
            *(metrics.latest_item(project, run, k, e) for k, e in fields["metrics"].items()), *chunks]


def get_run(req: Request, msg: messages.RunRef) -> dict:
    return {"run": to_json(load_or_404(req.project, msg.run_id))}


def update_run(req: Request, msg: messages.UpdateRun) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    info = {"status": msg.status or meta["status"]}
    if msg.end_time is not None:
        info["end_time"] = msg.end_time
    tags = {}
    if msg.run_name:
        info["run_name"] = tags[RUN_NAME_TAG] = msg.run_name
    write(req.project, meta, Change(info=info, tags=tags))
    out = {**info_of(meta), **info}
    return {"run_info": {k: v for k, v in out.items() if v is not None}}


def _set_lifecycle(project: str, run_id: str, stage: str) -> dict:
    meta = load_meta(project, run_id)
    if stage == DELETED:
        guard_run_deletion(project, meta["run_id"])
    deleted_time = now_ms() if stage == DELETED else None
    summary.commit(meta, Change(info={"lifecycle_stage": stage, "deleted_time": deleted_time}))
    return {}


def guard_run_deletion(project: str, run_id: str) -> None:
    """A run that backs a model version cannot be deleted from under it."""
    links = db.query_all(keys.run(project, run_id), "L#", consistent=True)  # keys.model_link_sk: few per run
    if not links:
        return
    # a link names its model by id; a deleted model's links go with its purge, and hold nothing back
    metas = db.batch_get([(keys.registered_model(project, i), keys.MODEL_SK) for i in {k["model_id"] for k in links}],
                         consistent=True)
    live = {m["model_id"]: m["name"] for m in metas if "deleted_at" not in m}
    backing = next((k for k in links if k["model_id"] in live), None)
    if backing:
        raise MlflowError(f"Run {run_id} backs model version {live[backing['model_id']]} "
                          f"{backing['version']}; delete that version first.", "INVALID_STATE")


def delete_run(req: Request, msg: messages.RunRef) -> dict:
    return _set_lifecycle(req.project, msg.run_id, DELETED)


def restore_run(req: Request, msg: messages.RunRef) -> dict:
    return _set_lifecycle(req.project, msg.run_id, ACTIVE)


# ---- params and tags ---------------------------------------------------------------------------------

def _check_params(meta: dict, params: dict[str, str]) -> None:
    """Params are write-once: the same value again is a no-op, a different one an error."""
    logged = meta["params"] if summary.complete(meta) else {}
    for k, v in params.items():
        if logged.get(k, v) != v:
            raise _param_changed(meta, k, logged[k], v)


def param_writes(project: str, meta: dict, params: dict[str, str]) -> None:
    """A write in steps guards params with their `P#` items (a conditional put each, so concurrent
    writers cannot both win); params the summary already holds are checked there without a write."""
    _check_params(meta, params)
    logged = meta["params"] if summary.complete(meta) else {}
    puts = [(param_item(project, meta, k, v), "attribute_not_exists(pk) OR #v = :v", {"#v": "value"}, {":v": v})
            for k, v in params.items() if k not in logged]
    for index, old in db.conditional_puts(puts)[:1]:
        item = puts[index][0]
        raise _param_changed(meta, item["key"], old.get("value"), item["value"])


def _param_changed(meta: dict, key: str, old: str | None, new: str) -> MlflowError:
    return invalid(f"Changing param values is not allowed. Param with key='{key}' was already logged with "
                   f"value='{old}' for run ID='{meta['run_id']}'. Attempted logging new value '{new}'.")


def tag_items(project: str, meta: dict, tags: dict[str, str]) -> list[dict]:
    """The `T#` items of tags the summary does not hold already."""
    held = meta["tags"] if summary.complete(meta) else {}
    return [tag_item(project, meta, k, v) for k, v in tags.items() if held.get(k) != v]


def tag_change(tags: dict[str, str], **more) -> Change:
    """Setting tags; the server keeps run_name and the mlflow.runName tag in step."""
    info = {"run_name": tags[RUN_NAME_TAG]} if RUN_NAME_TAG in tags else {}
    return Change(info=info, tags=tags, **more)


def log_param(req: Request, msg: messages.LogParam) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    write(req.project, meta, Change(params={msg.key: msg.value}))
    return {}


def set_tag(req: Request, msg: messages.SetTag) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    write(req.project, meta, tag_change({msg.key: msg.value}))
    return {}


def delete_tag(req: Request, msg: messages.DeleteTag) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    missing = not_found(f"No tag with name: {msg.key} in run with id {meta['run_id']}")
    if not summary.complete(meta):
        db.delete(meta["pk"], f"T#{msg.key}", missing=missing)
    elif msg.key not in meta["tags"]:
        raise missing
    write(req.project, meta, Change(untagged=(msg.key,)))
    return {}


def log_batch(req: Request, msg: messages.LogBatch) -> dict:
    from shared.tracking import metrics

    meta = load_active_meta(req.project, msg.run_id)
    tags, params = {t.key: t.value for t in msg.tags}, {p.key: p.value for p in msg.params}
    # A conflicting param fails the request before anything is written.
    _check_params(meta, params)
    chunks, latest = metrics.point_writes(req.project, meta, msg.metrics)
    write(req.project, meta, tag_change(tags, params=params, metrics=latest), chunks)
    return {}


# ---- inputs, outputs, legacy log-model ----------------------------------------------------------------

def log_inputs(req: Request, msg: messages.LogInputs) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    datasets = [{"dataset": d.dataset.as_stored(), "tags": [t.model_dump() for t in d.tags]} for d in msg.datasets]
    items = [child_item(req.project, meta, f"D#{d['dataset']['name']}#{d['dataset']['digest']}", **d)
             for d in datasets]
    items += [child_item(req.project, meta, f"I#{m.model_id}", model_id=m.model_id) for m in msg.models]
    write(req.project, meta, Change(datasets=datasets, model_inputs=[m.model_id for m in msg.models]), items)
    return {}


def log_outputs(req: Request, msg: messages.LogOutputs) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    outputs = [{"model_id": m.model_id, "step": m.step} for m in msg.models]
    write(req.project, meta, Change(outputs=outputs),
          [child_item(req.project, meta, f"O#{o['model_id']}", **o) for o in outputs])
    return {}


def log_model(req: Request, msg: messages.LogModel) -> dict:
    """MLflow 2's legacy route: appends the model's JSON to the `mlflow.log-model.history` tag."""
    meta = load_active_meta(req.project, msg.run_id)
    key = "mlflow.log-model.history"
    if summary.complete(meta):
        old = meta["tags"].get(key)
    else:
        old = (db.get(meta["pk"], f"T#{key}") or {}).get("value")
    text = json.dumps((json.loads(old) if old else []) + [msg.model_json])
    if len(text.encode()) > MAX_ITEM_TEXT_BYTES:
        raise invalid(f"The run's {key} tag would exceed {MAX_ITEM_TEXT_BYTES} bytes")
    write(req.project, meta, tag_change({key: text}))
    return {}


# ---- search ------------------------------------------------------------------------------------------

def search_runs(req: Request, msg: messages.SearchRuns) -> dict:
    from shared.tracking import run_search

    view = VIEW_TYPES[msg.run_view_type]
    clauses = run_filter_clauses(msg.filter)
    parse_run_order_by(msg.order_by)  # refuses a malformed order_by before anything is read
    query = [msg.experiment_ids, view, msg.filter, msg.order_by]  # not max_results: clients change it between pages
    cursor = pagination.decode(msg.page_token, req.project, query)
    order = run_search.indexed_order(msg.order_by)
    if order is not None:
        page, cursor = run_search.search(req.project, msg.experiment_ids, order, view, clauses, msg.max_results, cursor)
    else:
        page, cursor = run_search.search_in_memory(req.project, msg.experiment_ids, view, clauses, msg.order_by,
                                                   msg.max_results, cursor or 0)
    out: dict = {"runs": [to_json(run) for run in page]}
    if cursor is not None:
        out["next_page_token"] = pagination.encode(req.project, query, cursor)
    return out
