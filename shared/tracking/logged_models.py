"""MLflow 3 logged models: create, get, finalize, delete, search, tags, params, list artifacts.

A logged model is one partition (`P#<p>#LM#<id>`): a meta item, then `T#` tag and `P#` param items,
so get is one Query. Every item also sits in its experiment's logged-model collection (GSI1), so
search loads an experiment's models with their tags and params in one paged Query. Artifacts live
under the experiment, as MLflow puts them: `<exp>/models/<id>/artifacts/`."""

from __future__ import annotations

import uuid

from botocore.exceptions import ClientError

from shared import db, keys, pagination
from shared.clock import now_ms
from shared.errors import invalid, not_found
from shared.filters import parse_logged_model_filter, parse_logged_model_order_by
from shared.http import Request
from shared.tracking import experiments, messages, runs
from shared.validation import logged_model_id

ACTIVE, DELETED = "active", "deleted"
MODEL_VERSIONS_TAG = "mlflow.modelVersions"
_INFO_FIELDS = ("model_id", "experiment_id", "name", "creation_timestamp_ms", "last_updated_timestamp_ms",
                "artifact_uri", "status", "model_type", "source_run_id", "status_message")


def artifact_path(experiment_id: str, model_id: str) -> str:
    """The artifact route path of a logged model's files (below the project's artifact root)."""
    return f"{experiment_id}/models/{model_id}/artifacts"


# ---- items -----------------------------------------------------------------------------------------

def _item(project: str, model: dict, sk: str, **attrs) -> dict:
    return {"pk": keys.logged_model(project, model["model_id"]), "sk": sk,
            "g1pk": keys.logged_models_collection(project, model["experiment_id"]),
            "g1sk": f"{model['model_id']}#{sk}", **attrs}


def _assemble(items: list[dict]) -> dict | None:
    model: dict = {"tags": {}, "params": {}}
    for item in items:
        if item["sk"] == keys.LOGGED_MODEL_SK:
            model.update({k: item.get(k) for k in (*_INFO_FIELDS, "lifecycle_stage")})
        elif item["sk"].startswith("T#"):
            model["tags"][item["key"]] = item["value"]
        elif item["sk"].startswith("P#"):
            model["params"][item["key"]] = item["value"]
    return model if "model_id" in model else None


def to_json(model: dict) -> dict:
    info = {k: model[k] for k in _INFO_FIELDS if model.get(k) not in (None, "")}
    info["tags"] = [{"key": k, "value": v} for k, v in model["tags"].items()]
    return {"info": info, "data": {"params": [{"key": k, "value": v} for k, v in model["params"].items()],
                                   "metrics": []}}


def _view(model: dict) -> dict:
    """The plain view shared.filters evaluates."""
    return {"name": model["name"], "model_id": model["model_id"], "model_type": model.get("model_type"),
            "status": model["status"].removeprefix("LOGGED_MODEL_"), "source_run_id": model.get("source_run_id"),
            "creation_timestamp": model["creation_timestamp_ms"],
            "last_updated_timestamp": model["last_updated_timestamp_ms"],
            "metrics": {}, "params": model["params"], "tags": model["tags"]}


def load(project: str, model_id: str, allow_deleted: bool = False) -> dict:
    model = _assemble(db.query_all(keys.logged_model(project, logged_model_id(model_id)), consistent=True))
    if model is None or (model["lifecycle_stage"] == DELETED and not allow_deleted):
        raise not_found(f"Logged model with ID '{model_id}' not found.")
    return model


# ---- routes ----------------------------------------------------------------------------------------

def create_logged_model(req: Request, msg: messages.CreateLoggedModel) -> dict:
    experiments.load_active(req.project, msg.experiment_id)
    model_id = f"m-{uuid.uuid4().hex}"
    ts = now_ms()
    model = {"model_id": model_id, "experiment_id": msg.experiment_id, "name": msg.name or runs._random_name(),
             "artifact_uri": f"{experiments.artifact_location(msg.experiment_id)}/models/{model_id}/artifacts",
             "creation_timestamp_ms": ts, "last_updated_timestamp_ms": ts, "status": "LOGGED_MODEL_PENDING",
             "model_type": msg.model_type or None, "source_run_id": msg.source_run_id or None,
             "lifecycle_stage": ACTIVE}
    tags, params = {t.key: t.value for t in msg.tags}, {p.key: p.value for p in msg.params}
    items = [_item(req.project, model, keys.LOGGED_MODEL_SK, **model)]
    items += [_item(req.project, model, f"T#{k}", key=k, value=v) for k, v in tags.items()]
    items += [_item(req.project, model, f"P#{k}", key=k, value=v) for k, v in params.items()]
    db.batch_put(items)  # a fresh id: nothing to collide with, and the meta item is what makes it visible
    return {"model": to_json({**model, "tags": tags, "params": params})}


def get_logged_model(req: Request, msg: messages.GetLoggedModel) -> dict:
    return {"model": to_json(load(req.project, msg.model_id, msg.allow_deleted))}


def _touch(project: str, model_id: str, extra: str = "", values: dict | None = None,
           names: dict | None = None) -> None:
    try:
        db.update(keys.logged_model(project, model_id), keys.LOGGED_MODEL_SK, "SET last_updated_timestamp_ms = :t" + extra,
                  names=names, values={":t": now_ms(), **(values or {})}, condition="attribute_exists(pk)")
    except ClientError as err:
        if db.is_condition_failure(err):
            raise not_found(f"Logged model with ID '{model_id}' not found.") from None
        raise


def finalize_logged_model(req: Request, msg: messages.FinalizeLoggedModel) -> dict:
    load(req.project, msg.model_id)
    _touch(req.project, msg.model_id, ", #s = :s", {":s": msg.status}, {"#s": "status"})
    return {"model": to_json(load(req.project, msg.model_id))}


def delete_logged_model(req: Request, msg: messages.LoggedModelRef) -> dict:
    model = load(req.project, msg.model_id)
    _touch(req.project, model["model_id"], ", lifecycle_stage = :d", {":d": DELETED})
    return {}


def set_logged_model_tags(req: Request, msg: messages.SetLoggedModelTags) -> dict:
    write_tags(req.project, load(req.project, msg.model_id), {t.key: t.value for t in msg.tags})
    return {}


def write_tags(project: str, model: dict, tags: dict[str, str]) -> None:
    db.batch_put([_item(project, model, f"T#{k}", key=k, value=v) for k, v in tags.items()])


def delete_logged_model_tag(req: Request, msg: messages.DeleteLoggedModelTag) -> dict:
    model = load(req.project, msg.model_id)
    db.delete(keys.logged_model(req.project, model["model_id"]), f"T#{msg.tag_key}",
              missing=not_found(f"No tag with key {msg.tag_key!r} found for model with ID {model['model_id']!r}."))
    return {}


def log_logged_model_params(req: Request, msg: messages.LogLoggedModelParams) -> dict:
    model = load(req.project, msg.model_id)
    db.batch_put([_item(req.project, model, f"P#{p.key}", key=p.key, value=p.value) for p in msg.params])
    return {}


def models_of_experiment(project: str, experiment_id: str) -> list[dict]:
    """Every logged model of an experiment with tags and params: one paged Query of the collection."""
    groups = db.query_groups(keys.logged_models_collection(project, experiment_id), "gsi1", db.entity_of_g1sk)
    return [m for m in map(_assemble, groups) if m]


def search_logged_models(req: Request, msg: messages.SearchLoggedModels) -> dict:
    order_by = [o.model_dump() for o in msg.order_by]
    datasets = [d.model_dump() for d in msg.datasets]
    matches, sort_key = parse_logged_model_filter(msg.filter), parse_logged_model_order_by(order_by)
    query = [msg.experiment_ids, msg.filter, order_by, datasets]  # not max_results: clients change it between pages
    found = []
    for models in db.parallel(lambda e: models_of_experiment(req.project, e), msg.experiment_ids):
        for model in models:
            view = _view(model)
            if model["lifecycle_stage"] == ACTIVE and matches(view):
                found.append((sort_key(view), model))
    page, token = pagination.offset_page(req.project, query, msg.page_token, found, msg.max_results)
    return pagination.with_token({"models": [to_json(m) for m in page]}, token)


def list_logged_model_artifacts(req: Request, msg: messages.ListLoggedModelArtifacts) -> dict:
    from shared.registry import packages

    model = load(req.project, msg.model_id)
    sub = msg.artifact_directory_path.strip("/")
    if sub and any(part in ("", ".", "..") for part in sub.split("/")):
        raise invalid(f"Invalid path {sub!r}")
    root = artifact_path(model["experiment_id"], model["model_id"])
    prefix = packages.artifacts_prefix(req.project, f"{root}/{sub}" if sub else root)
    files = []
    for name, is_dir, size in packages.list_folder(prefix):
        entry: dict = {"path": f"{sub}/{name}" if sub else name, "is_dir": is_dir}
        if size:
            entry["file_size"] = size
        files.append(entry)
    return {"root_uri": model["artifact_uri"], "files": files}


def add_model_version(project: str, model_id: str, name: str, version: int) -> None:
    """Record a registration on the logged model (the `mlflow.modelVersions` tag, as MLflow does)."""
    import json

    model = load(project, model_id)
    registered = json.loads(model["tags"].get(MODEL_VERSIONS_TAG) or "[]")
    entry = {"name": name, "version": version}  # a number, as MLflow's server writes it
    if entry not in registered:
        write_tags(project, model, {MODEL_VERSIONS_TAG: json.dumps(registered + [entry])})
