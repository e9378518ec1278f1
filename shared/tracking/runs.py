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
from shared.tracking import experiments
from shared.tracking.metrics import metric_json, metric_value
from shared.validation import (MAX_ENTITIES_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH,
                               MAX_TAG_VAL_LENGTH, integer, key_name, max_results, require, truncated)
from shared.validation import run_id as valid_run_id

ACTIVE, DELETED = "active", "deleted"
RUN_NAME_TAG = "mlflow.runName"
STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
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


def _run_id_of(req: Request) -> str:
    return req.json.get("run_id") or require(req.json, "run_uuid")


# ---- create / get / update / lifecycle ----------------------------------------------------------

def _random_name() -> str:
    adjectives = ("bold", "calm", "clever", "eager", "gentle", "keen", "lucid", "merry", "nimble", "quiet",
                  "rare", "sleek", "sunny", "swift", "vivid", "wise")
    nouns = ("ant", "bear", "crane", "dove", "eel", "finch", "fox", "gull", "hare", "lark", "lynx", "mole",
             "owl", "seal", "wren", "yak")
    return f"{random.choice(adjectives)}-{random.choice(nouns)}-{random.randint(100, 999)}"


def create_run(req: Request) -> dict:
    data = req.json
    experiment_id = str(data.get("experiment_id") or experiments.DEFAULT_EXPERIMENT_ID)
    tags = _parse_tags(data.get("tags"))
    run_name = data.get("run_name") or tags.get(RUN_NAME_TAG) or _random_name()
    tags[RUN_NAME_TAG] = run_name
    run_id = uuid.uuid4().hex
    run = {
        "run_id": run_id, "run_uuid": run_id, "run_name": run_name, "experiment_id": experiment_id,
        "user_id": data.get("user_id") or "", "status": "RUNNING",
        "start_time": integer(data.get("start_time"), "start_time", now_ms()), "end_time": None,
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
    tx.check(keys.experiment(project, experiments.valid_experiment_id(run["experiment_id"])), keys.EXPERIMENT_SK,
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


def get_run(req: Request) -> dict:
    return {"run": to_json(load_or_404(req.project, _run_id_of(req)))}


def update_run(req: Request) -> dict:
    meta = load_active_meta(req.project, _run_id_of(req))
    data = req.json
    sets, values = ["#s = :s"], {":s": meta["status"]}
    if data.get("status"):
        if data["status"] not in STATUSES:
            raise invalid(f"Invalid run status {data['status']!r}")
        values[":s"] = data["status"]
    if data.get("end_time") is not None:
        sets.append("end_time = :e")
        values[":e"] = integer(data["end_time"], "end_time")
    tx = db.Tx()
    if data.get("run_name"):
        sets.append("run_name = :n")
        values[":n"] = data["run_name"]
        tx.put(tag_item(req.project, meta, RUN_NAME_TAG, data["run_name"]))
    tx.update(meta["pk"], meta["sk"], "SET " + ", ".join(sets), names={"#s": "status"}, values=values)
    tx.commit()
    info = {k: meta.get(k) for k in INFO_FIELDS}
    info.update(status=values[":s"], end_time=values.get(":e", meta.get("end_time")),
                run_name=values.get(":n", meta["run_name"]))
    return {"run_info": {k: v for k, v in info.items() if v is not None}}


def _set_lifecycle(req: Request, stage: str) -> dict:
    meta = load_meta(req.project, _run_id_of(req))
    if stage == DELETED:
        guard_run_deletion(req.project, meta["run_id"])
    extra = ", deleted_time = :t" if stage == DELETED else " REMOVE deleted_time"
    db.update(meta["pk"], meta["sk"], "SET lifecycle_stage = :l" + extra,
              values={":l": stage, **({":t": now_ms()} if stage == DELETED else {})})
    return {}


def link_sk(model_name: str, version: int) -> str:
    """A model version that backs onto a run leaves this item in the run's partition."""
    return f"L#{model_name}#{version}"


def guard_run_deletion(project: str, run_id: str) -> None:
    """A run that backs a model version cannot be deleted from under it."""
    links, _ = db.query(keys.run(project, run_id), "L#", limit=1, consistent=True)
    if links:
        raise MlflowError(f"Run {run_id} backs model version {links[0].get('model_name')} "
                          f"{links[0].get('version')}; delete that version first.", "INVALID_STATE")


def delete_run(req: Request) -> dict:
    return _set_lifecycle(req, DELETED)


def restore_run(req: Request) -> dict:
    return _set_lifecycle(req, ACTIVE)


# ---- params and tags ---------------------------------------------------------------------------------

def _parse_tags(raw: list | None) -> dict[str, str]:
    return {key_name(t.get("key"), "key"): truncated(t.get("value"), MAX_TAG_VAL_LENGTH) for t in raw or []}


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


def log_param(req: Request) -> dict:
    meta = load_active_meta(req.project, _run_id_of(req))
    key = key_name(req.json.get("key"))
    write_params(req.project, meta, {key: truncated(req.json.get("value"), MAX_PARAM_VAL_LENGTH)})
    return {}


def set_tag(req: Request) -> dict:
    meta = load_active_meta(req.project, _run_id_of(req))
    write_tags(req.project, meta, _parse_tags([{"key": req.json.get("key"), "value": req.json.get("value")}]))
    return {}


def delete_tag(req: Request) -> dict:
    meta = load_active_meta(req.project, _run_id_of(req))
    key = require(req.json, "key")
    db.delete(meta["pk"], f"T#{key}", missing=not_found(f"No tag with name: {key} in run with id {meta['run_id']}"))
    return {}


def log_batch(req: Request) -> dict:
    from shared.tracking import metrics

    data = req.json
    raw_metrics, raw_params, raw_tags = (req.list_param(n) for n in ("metrics", "params", "tags"))
    _check_batch_limits(len(raw_metrics), len(raw_params), len(raw_tags))
    points = [metrics.parse_point(m, f"metrics[{i}]") for i, m in enumerate(raw_metrics)]
    params: dict[str, str] = {}
    for i, p in enumerate(raw_params):
        k = key_name(p.get("key"), f"params[{i}].key")
        v = truncated(p.get("value"), MAX_PARAM_VAL_LENGTH)
        if params.get(k, v) != v:
            raise invalid(f"Duplicate parameter keys have been submitted: ['{k}']. Please ensure the request "
                          "contains only one param value per param key.")
        params[k] = v
    tags = _parse_tags(raw_tags)
    meta = load_active_meta(req.project, data.get("run_id") or require(data, "run_id"))
    # Params first: a conflicting param fails the request before anything else is written.
    write_params(req.project, meta, params)
    _sync_run_name(meta, tags)
    # Tags ride in the history's parallel batches: one round trip for both.
    metrics.write_points(req.project, meta, points, also=[tag_item(req.project, meta, k, v) for k, v in tags.items()])
    return {}


def _check_batch_limits(n_metrics: int, n_params: int, n_tags: int) -> None:
    for name, limit, n in (("metrics", 1000, n_metrics), ("params", MAX_PARAMS_TAGS_PER_BATCH, n_params),
                           ("tags", MAX_PARAMS_TAGS_PER_BATCH, n_tags),
                           ("metrics, params, and tags", MAX_ENTITIES_PER_BATCH, n_metrics + n_params + n_tags)):
        if n > limit:
            raise invalid(f"A batch logging request can contain at most {limit} {name}. Got {n} {name}. "
                          f"Please split up {name} across multiple requests and try again.")


# ---- inputs, outputs, legacy log-model ----------------------------------------------------------------

def log_inputs(req: Request) -> dict:
    meta = load_active_meta(req.project, require(req.json, "run_id"))
    items = []
    for entry in req.list_param("datasets"):
        ds = entry.get("dataset") or {}
        name, digest = require(ds, "name"), require(ds, "digest")
        items.append(child_item(req.project, meta, f"D#{name}#{digest}", dataset=ds, tags=entry.get("tags") or []))
    for entry in req.list_param("models"):
        items.append(child_item(req.project, meta, f"I#{require(entry, 'model_id')}", model_id=entry["model_id"]))
    db.batch_put(items)
    return {}


def log_outputs(req: Request) -> dict:
    meta = load_active_meta(req.project, require(req.json, "run_id"))
    db.batch_put([child_item(req.project, meta, f"O#{require(m, 'model_id')}", model_id=m["model_id"],
                             step=integer(m.get("step"), "step", 0)) for m in req.list_param("models")])
    return {}


def log_model(req: Request) -> dict:
    """MLflow 2's legacy route: appends the model's JSON to the `mlflow.log-model.history` tag."""
    meta = load_active_meta(req.project, _run_id_of(req))
    try:
        model = json.loads(require(req.json, "model_json"))
    except ValueError:
        raise invalid("model_json is not valid JSON") from None
    tag = db.get(meta["pk"], "T#mlflow.log-model.history")
    history = json.loads(tag["value"]) if tag else []
    history.append(model)
    write_tags(req.project, meta, {"mlflow.log-model.history": json.dumps(history)})
    return {}


# ---- search ------------------------------------------------------------------------------------------

def runs_of_experiment(project: str, experiment_id: str) -> list[dict]:
    """Every run of an experiment with its data: one paged Query of the run collection."""
    groups = db.query_groups(keys.runs_collection(project, experiment_id), "gsi1", db.entity_of_g1sk)
    return [r for r in map(assemble, groups) if r]


def search_runs(req: Request) -> dict:
    from shared.tracking import run_search

    data = req.json
    experiment_ids = [experiments.valid_experiment_id(e) for e in req.list_param("experiment_ids")]
    view = VIEW_TYPES.get(str(data.get("run_view_type") or "ACTIVE_ONLY"))
    if view is None:
        raise invalid(f"Invalid run_view_type {data.get('run_view_type')!r}")
    limit = max_results(data.get("max_results"), 1000, 50000)
    order_by = req.list_param("order_by")
    matches, sort_key = parse_run_filter(data.get("filter")), parse_run_order_by(order_by)
    query = [experiment_ids, view, data.get("filter"), order_by, limit]
    cursor = pagination.decode(data.get("page_token"), req.project, query)
    order = run_search.indexed_order(order_by)
    if order is not None:
        page, cursor = run_search.search(req.project, experiment_ids, order, view, matches, limit, cursor)
    else:
        page, cursor = _search_in_memory(req.project, experiment_ids, view, matches, sort_key, limit, cursor or 0)
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
