"""Runs: create, get, update, delete, restore, params, tags, inputs, outputs, search.

A run is one partition: a meta item, then `P#`, `T#`, `M#` (latest metric), `D#` (dataset input)
and `O#` (output) items, so get-run is one Query. Every item of a run also carries the experiment's
run collection key (GSI1), so search loads an experiment's runs, with their data, in one paged Query.
"""

from __future__ import annotations

import json
import random
import uuid

from botocore.exceptions import ClientError

from shared import db, keys, pagination
from shared.clock import now_ms
from shared.errors import MlflowError, invalid, not_found
from shared.filters import parse_run_filter, parse_run_order_by
from shared.http import Request
from shared.tracking import experiments, messages
from shared.tracking.metrics import metric_json, metric_value
from shared.validation import MAX_ITEM_TEXT_BYTES
from shared.validation import run_id as valid_run_id

ACTIVE, DELETED = "active", "deleted"
RUN_NAME_TAG = "mlflow.runName"
VIEW_TYPES = experiments.VIEW_TYPES
INFO_FIELDS = ("run_id", "run_uuid", "run_name", "experiment_id", "user_id", "status", "start_time",
               "end_time", "artifact_uri", "lifecycle_stage")


# ---- items ----------------------------------------------------------------------------------------

def child_item(project: str, run: dict, sk: str, **attrs) -> dict:
    """An item in a run's partition, also placed in its experiment's run collection."""
    return {"pk": keys.run(project, run["run_id"]), "sk": sk,
            "g1pk": keys.runs_collection(project, run["experiment_id"]), "g1sk": f"{run['run_id']}#{sk}", **attrs}


def ordered_item(project: str, run: dict, sk: str, kind: str, field: str, order_value, **attrs) -> dict:
    """A run item that also sits in the order indexes of its field (search_runs' order_by)."""
    order = keys.order_attributes(project, run["experiment_id"], kind, field, order_value, run["start_time"],
                                  run["run_id"])
    return {**child_item(project, run, sk, **attrs), **order}


def _meta_item(project: str, run: dict) -> dict:
    item = ordered_item(project, run, keys.RUN_SK, "start", "", run["start_time"] or 0, **run)
    item["g2pk"] = keys.runs_by_start(project, run["experiment_id"])
    item["g2sk"] = f"{keys.encode_int(run['start_time'] or 0)}#{run['run_id']}"
    return item


def tag_item(project: str, run: dict, key: str, value: str) -> dict:
    return ordered_item(project, run, f"T#{key}", "tag", key, value, key=key, value=value)


def assemble(items: list[dict]) -> dict | None:
    """A run (meta, params, tags, latest metrics, inputs, outputs) from its partition's items."""
    run: dict = {"metrics": {}, "params": {}, "tags": {}, "datasets": [], "outputs": [], "model_inputs": []}
    for item in items:
        kind = item["sk"][:2]
        if item["sk"] == keys.RUN_SK:
            run["info"] = {k: item.get(k) for k in INFO_FIELDS}
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
    return assemble(db.query_all(keys.run(project, valid_run_id(run_id)), consistent=True))


def load_or_404(project: str, run_id: str) -> dict:
    run = load(project, run_id)
    if run is None:
        raise not_found(f"Run with id={run_id} not found")
    return run


def load_meta(project: str, run_id: str) -> dict:
    """Just the meta item: what a write needs to know (experiment, lifecycle)."""
    item = db.get(keys.run(project, valid_run_id(run_id)), keys.RUN_SK)
    if item is None:
        raise not_found(f"Run with id={run_id} not found")
    return item


def load_active_meta(project: str, run_id: str) -> dict:
    meta = load_meta(project, run_id)
    if meta["lifecycle_stage"] != ACTIVE:
        raise invalid(f"The run {run_id} must be in the 'active' state. Current state is {meta['lifecycle_stage']}.")
    return meta


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
    """One transaction: the run's items, on condition the experiment exists and is active. Tags
    beyond what a transaction holds follow in batches (the run exists by then)."""
    tag_items = [tag_item(project, run, k, v) for k, v in tags.items()]
    room = db.TRANSACT_MAX - 2
    tx = db.Tx()
    tx.check(keys.experiment(project, run["experiment_id"]), keys.EXPERIMENT_SK,
             "lifecycle_stage = :active", values={":active": ACTIVE})
    tx.put(_meta_item(project, run), condition="attribute_not_exists(pk)")
    for item in tag_items[:room]:
        tx.put(item)
    try:
        tx.commit()
    except ClientError as err:
        if db.is_condition_failure(err):
            experiments.load_active(project, run["experiment_id"])  # raises the precise error
        raise
    db.batch_put(tag_items[room:])


def get_run(req: Request, msg: messages.RunRef) -> dict:
    return {"run": to_json(load_or_404(req.project, msg.run_id))}


def update_run(req: Request, msg: messages.UpdateRun) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    sets, values = ["#s = :s"], {":s": msg.status or meta["status"]}
    if msg.end_time is not None:
        sets.append("end_time = :e")
        values[":e"] = msg.end_time
    tx = db.Tx()
    if msg.run_name:
        sets.append("run_name = :n")
        values[":n"] = msg.run_name
        tx.put(tag_item(req.project, meta, RUN_NAME_TAG, msg.run_name))
    tx.update(meta["pk"], meta["sk"], "SET " + ", ".join(sets), names={"#s": "status"}, values=values)
    tx.commit()
    info = {k: meta.get(k) for k in INFO_FIELDS}
    info.update(status=values[":s"], end_time=values.get(":e", meta.get("end_time")),
                run_name=values.get(":n", meta["run_name"]))
    return {"run_info": {k: v for k, v in info.items() if v is not None}}


def _set_lifecycle(project: str, run_id: str, stage: str) -> dict:
    meta = load_meta(project, run_id)
    if stage == DELETED:
        guard_run_deletion(project, meta["run_id"])
    extra = ", deleted_time = :t" if stage == DELETED else " REMOVE deleted_time"
    db.update(meta["pk"], meta["sk"], "SET lifecycle_stage = :l" + extra,
              values={":l": stage, **({":t": now_ms()} if stage == DELETED else {})})
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

def write_params(project: str, meta: dict, params: dict[str, str]) -> None:
    """Params are write-once: the same value again is a no-op, a different one an error."""
    puts = [(ordered_item(project, meta, f"P#{k}", "param", k, v, key=k, value=v), "attribute_not_exists(pk) OR #v = :v",
             {"#v": "value"}, {":v": v}) for k, v in params.items()]
    for index, old in db.conditional_puts(puts)[:1]:
        k, v = puts[index][0]["key"], puts[index][0]["value"]
        raise invalid(f"Changing param values is not allowed. Param with key='{k}' was already logged with "
                      f"value='{old.get('value')}' for run ID='{meta['run_id']}'. Attempted logging new value '{v}'.")


def write_tags(project: str, meta: dict, tags: dict[str, str]) -> None:
    _sync_run_name(meta, tags)
    db.batch_put([tag_item(project, meta, k, v) for k, v in tags.items()])


def _sync_run_name(meta: dict, tags: dict[str, str]) -> None:
    if RUN_NAME_TAG in tags:  # the server keeps run_name and the tag in step
        db.update(meta["pk"], meta["sk"], "SET run_name = :n", values={":n": tags[RUN_NAME_TAG]})


def log_param(req: Request, msg: messages.LogParam) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    write_params(req.project, meta, {msg.key: msg.value})
    return {}


def set_tag(req: Request, msg: messages.SetTag) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    write_tags(req.project, meta, {msg.key: msg.value})
    return {}


def delete_tag(req: Request, msg: messages.DeleteTag) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    db.delete(meta["pk"], f"T#{msg.key}", missing=not_found(f"No tag with name: {msg.key} in run with id {meta['run_id']}"))
    return {}


def log_batch(req: Request, msg: messages.LogBatch) -> dict:
    from shared.tracking import metrics

    meta = load_active_meta(req.project, msg.run_id)
    tags = {t.key: t.value for t in msg.tags}
    # Params first: a conflicting param fails the request before anything else is written.
    write_params(req.project, meta, {p.key: p.value for p in msg.params})
    _sync_run_name(meta, tags)
    # Tags ride in the history's parallel batches: one round trip for both.
    metrics.write_points(req.project, meta, msg.metrics, also=[tag_item(req.project, meta, k, v) for k, v in tags.items()])
    return {}


# ---- inputs, outputs, legacy log-model ----------------------------------------------------------------

def log_inputs(req: Request, msg: messages.LogInputs) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    items = [child_item(req.project, meta, f"D#{d.dataset.name}#{d.dataset.digest}", dataset=d.dataset.as_stored(),
                        tags=[t.model_dump() for t in d.tags]) for d in msg.datasets]
    items += [child_item(req.project, meta, f"I#{m.model_id}", model_id=m.model_id) for m in msg.models]
    db.batch_put(items)
    return {}


def log_outputs(req: Request, msg: messages.LogOutputs) -> dict:
    meta = load_active_meta(req.project, msg.run_id)
    db.batch_put([child_item(req.project, meta, f"O#{m.model_id}", model_id=m.model_id, step=m.step) for m in msg.models])
    return {}


def log_model(req: Request, msg: messages.LogModel) -> dict:
    """MLflow 2's legacy route: appends the model's JSON to the `mlflow.log-model.history` tag."""
    meta = load_active_meta(req.project, msg.run_id)
    tag = db.get(meta["pk"], "T#mlflow.log-model.history")
    history = json.loads(tag["value"]) if tag else []
    text = json.dumps(history + [msg.model_json])
    if len(text.encode()) > MAX_ITEM_TEXT_BYTES:
        raise invalid(f"The run's mlflow.log-model.history tag would exceed {MAX_ITEM_TEXT_BYTES} bytes")
    write_tags(req.project, meta, {"mlflow.log-model.history": text})
    return {}


# ---- search ------------------------------------------------------------------------------------------

def runs_of_experiment(project: str, experiment_id: str) -> list[dict]:
    """Every run of an experiment with its data: one paged Query of the run collection."""
    groups = db.query_groups(keys.runs_collection(project, experiment_id), "gsi1", db.entity_of_g1sk)
    return [r for r in map(assemble, groups) if r]


def search_runs(req: Request, msg: messages.SearchRuns) -> dict:
    from shared.tracking import run_search

    view = VIEW_TYPES[msg.run_view_type]
    matches, sort_key = parse_run_filter(msg.filter), parse_run_order_by(msg.order_by)
    query = [msg.experiment_ids, view, msg.filter, msg.order_by]  # not max_results: clients change it between pages
    cursor = pagination.decode(msg.page_token, req.project, query)
    order = run_search.indexed_order(msg.order_by)
    if order is not None:
        page, cursor = run_search.search(req.project, msg.experiment_ids, order, view, matches, msg.max_results, cursor)
    else:
        page, cursor = _search_in_memory(req.project, msg.experiment_ids, view, matches, sort_key, msg.max_results,
                                         cursor or 0)
    out: dict = {"runs": [to_json(run) for run in page]}
    if cursor is not None:
        out["next_page_token"] = pagination.encode(req.project, query, cursor)
    return out


def _search_in_memory(project: str, experiment_ids: list[str], view: tuple, matches, sort_key, limit: int,
                      offset: int) -> tuple[list[dict], int | None]:
    """Orderings the indexes do not hold (several keys, other attributes): load, filter, sort."""
    found = []
    for runs in db.parallel(lambda e: runs_of_experiment(project, e), experiment_ids):
        for run in runs:
            view_ = filter_view(run)
            if run["info"]["lifecycle_stage"] in view and matches(view_):
                found.append((sort_key(view_), run))
    found.sort(key=lambda pair: pair[0])
    return [run for _, run in found[offset:offset + limit]], (offset + limit if offset + limit < len(found) else None)
