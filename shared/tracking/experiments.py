"""Experiments: create, get, get-by-name, search, rename, delete, restore, tags.

An experiment is a meta item plus one item per tag in its own partition (get = one Query). Its name
is unique per project through a guard item written in the same transaction. Every experiment item
also sits in the project's experiment collection (GSI1) so search is one paged Query."""

from __future__ import annotations

from shared import db, keys, pagination
from shared.clock import now_ms
from shared.errors import already_exists, invalid, not_found
from shared.filters import parse_experiment_filter, parse_experiment_order_by
from shared.http import Request
from shared.tracking import messages

ACTIVE, DELETED = "active", "deleted"
VIEW_TYPES = {"ACTIVE_ONLY": (ACTIVE,), "DELETED_ONLY": (DELETED,), "ALL": (ACTIVE, DELETED)}
DEFAULT_EXPERIMENT_ID = "0"


def artifact_location(experiment_id: str) -> str:
    """Resolved by the client against the tracking URI, so artifacts go through this project's API."""
    return f"mlflow-artifacts:/{experiment_id}"


# ---- storage -------------------------------------------------------------------------------------

def _meta_item(project: str, exp: dict) -> dict:
    return {
        "pk": keys.experiment(project, exp["experiment_id"]), "sk": keys.EXPERIMENT_SK,
        "g1pk": keys.experiments_collection(project), "g1sk": f"{exp['experiment_id']}#",
        **exp,
    }


def _tag_item(project: str, experiment_id: str, key: str, value: str) -> dict:
    return {
        "pk": keys.experiment(project, experiment_id), "sk": f"T#{key}",
        "g1pk": keys.experiments_collection(project), "g1sk": f"{experiment_id}#T#{key}",
        "key": key, "value": value,
    }


def _assemble(items: list[dict]) -> dict | None:
    meta = next((i for i in items if i["sk"] == keys.EXPERIMENT_SK), None)
    if meta is None:
        return None
    exp = {k: meta[k] for k in ("experiment_id", "name", "artifact_location", "lifecycle_stage",
                                "creation_time", "last_update_time")}
    exp["tags"] = {i["key"]: i["value"] for i in items if i["sk"].startswith("T#")}
    return exp


def load(project: str, experiment_id: str) -> dict | None:
    return _assemble(db.query_all(keys.experiment(project, experiment_id), consistent=True))


def load_or_404(project: str, experiment_id: str) -> dict:
    exp = load(project, experiment_id)
    if exp is None:
        raise not_found(f"No Experiment with id={experiment_id} exists")
    return exp


def load_active(project: str, experiment_id: str) -> dict:
    exp = load_or_404(project, experiment_id)
    if exp["lifecycle_stage"] != ACTIVE:
        raise invalid(f"The experiment {experiment_id} must be in the 'active' state. "
                      f"Current state is {exp['lifecycle_stage']}.")
    return exp


def to_json(exp: dict) -> dict:
    out = {k: v for k, v in exp.items() if k != "tags"}
    out["tags"] = [{"key": k, "value": v} for k, v in exp["tags"].items()]
    return out


def insert(project: str, name: str, tags: dict[str, str], experiment_id: str | None = None) -> str:
    """Create an experiment and its name guard atomically; the id comes from a project counter."""
    if experiment_id is None:
        counter = db.update(keys.project(project), keys.counter_sk("experiment"), "ADD n :one",
                            values={":one": 1}, return_new=True)
        experiment_id = str(counter["n"])
    tx = db.Tx()
    add_new(tx, project, name, tags, experiment_id)
    tx.commit(on_conflict=already_exists(f"Experiment(name={name}) already exists."))
    return experiment_id


def add_new(tx: db.Tx, project: str, name: str, tags: dict[str, str], experiment_id: str) -> None:
    """The writes of a new experiment: its name guard (on condition the name is free), meta and tags."""
    ts = now_ms()
    exp = {"experiment_id": experiment_id, "name": name, "artifact_location": artifact_location(experiment_id),
           "lifecycle_stage": ACTIVE, "creation_time": ts, "last_update_time": ts}
    tx.put({"pk": keys.experiment_name_guard(project, name), "sk": keys.GUARD_SK, "experiment_id": experiment_id},
           condition="attribute_not_exists(pk)")
    tx.put(_meta_item(project, exp), condition="attribute_not_exists(pk)")
    for k, v in tags.items():
        tx.put(_tag_item(project, experiment_id, k, v))


def counter_key(project: str) -> tuple[str, str]:
    """The project's experiment id counter (its `n` is the last id handed out)."""
    return keys.project(project), keys.counter_sk("experiment")


def take_next_id(tx: db.Tx, project: str, counter: dict | None) -> str:
    """The id after `counter` (the counter item as read), taken in `tx` on condition nobody took it
    first (a concurrent create-experiment makes the transaction fail: read again and retry)."""
    last = int(counter["n"]) if counter else 0
    condition = "n = :old" if counter else "attribute_not_exists(n)"
    tx.update(*counter_key(project), "SET n = :n", values={":n": last + 1, **({":old": last} if counter else {})},
              condition=condition)
    return str(last + 1)


def _touch(tx: db.Tx, project: str, experiment_id: str, extra: str = "", values: dict | None = None,
           names: dict | None = None) -> None:
    tx.update(keys.experiment(project, experiment_id), keys.EXPERIMENT_SK,
              "SET last_update_time = :now" + extra, values={":now": now_ms(), **(values or {})},
              names=names, condition="attribute_exists(pk)")


# ---- routes --------------------------------------------------------------------------------------

def create_experiment(req: Request, msg: messages.CreateExperiment) -> dict:
    if msg.artifact_location:
        raise invalid("artifact_location cannot be set: mlreg stores every artifact in the project's "
                      "bucket behind the mlflow-artifacts routes")
    return {"experiment_id": insert(req.project, msg.name, {t.key: t.value for t in msg.tags})}


def get_experiment(req: Request, msg: messages.ExperimentRef) -> dict:
    return {"experiment": to_json(load_or_404(req.project, msg.experiment_id))}


def get_experiment_by_name(req: Request, msg: messages.GetExperimentByName) -> dict:
    guard = db.get(keys.experiment_name_guard(req.project, msg.experiment_name), keys.GUARD_SK)
    exp = load(req.project, guard["experiment_id"]) if guard else None
    if exp is None:
        raise not_found(f"Could not find experiment with name '{msg.experiment_name}'")
    return {"experiment": to_json(exp)}


def search_experiments(req: Request, msg: messages.SearchExperiments) -> dict:
    view = VIEW_TYPES[msg.view_type]
    matches = parse_experiment_filter(msg.filter)
    sort_key = parse_experiment_order_by(msg.order_by)
    found = [(sort_key(e), e) for e in all_experiments(req.project) if e["lifecycle_stage"] in view and matches(e)]
    page, token = pagination.offset_page(req.project, [view, msg.filter, msg.order_by], msg.page_token, found,
                                         msg.max_results)
    return pagination.with_token({"experiments": [to_json(e) for e in page]}, token)


def all_experiments(project: str) -> list[dict]:
    """Every experiment of a project with its tags: one paged Query of the collection."""
    groups = db.query_groups(keys.experiments_collection(project), "gsi1", db.entity_of_g1sk)
    return [e for e in map(_assemble, groups) if e]


def update_experiment(req: Request, msg: messages.UpdateExperiment) -> dict:
    exp, new_name = load_or_404(req.project, msg.experiment_id), msg.new_name
    if exp["lifecycle_stage"] != ACTIVE:
        raise invalid("Cannot rename a non-active experiment.")
    if new_name == exp["name"]:
        return {}
    tx = db.Tx()
    tx.put({"pk": keys.experiment_name_guard(req.project, new_name), "sk": keys.GUARD_SK,
            "experiment_id": exp["experiment_id"]}, condition="attribute_not_exists(pk)")
    tx.delete(keys.experiment_name_guard(req.project, exp["name"]), keys.GUARD_SK)
    _touch(tx, req.project, exp["experiment_id"], ", #n = :name", {":name": new_name}, {"#n": "name"})
    tx.commit(on_conflict=already_exists(f"Experiment(name={new_name}) already exists."))
    return {}


def _set_lifecycle(project: str, experiment_id: str, expected: str, new: str) -> dict:
    exp = load_or_404(project, experiment_id)
    if exp["experiment_id"] == DEFAULT_EXPERIMENT_ID and new == DELETED:
        raise invalid("Cannot delete the default experiment '0'. This is an internally reserved experiment.")
    if exp["lifecycle_stage"] != expected:
        if exp["lifecycle_stage"] == new:
            return {}  # a retried call: already done
        raise invalid(f"Cannot change experiment {exp['experiment_id']} from {exp['lifecycle_stage']} to {new}")
    tx = db.Tx()
    _touch(tx, project, exp["experiment_id"], ", lifecycle_stage = :stage", {":stage": new})
    tx.commit()
    return {}


def delete_experiment(req: Request, msg: messages.ExperimentRef) -> dict:
    return _set_lifecycle(req.project, msg.experiment_id, ACTIVE, DELETED)


def restore_experiment(req: Request, msg: messages.ExperimentRef) -> dict:
    return _set_lifecycle(req.project, msg.experiment_id, DELETED, ACTIVE)


def set_experiment_tag(req: Request, msg: messages.SetExperimentTag) -> dict:
    exp = load_active(req.project, msg.experiment_id)
    tx = db.Tx()
    tx.put(_tag_item(req.project, exp["experiment_id"], msg.key, msg.value))
    _touch(tx, req.project, exp["experiment_id"])
    tx.commit()
    return {}


def delete_experiment_tag(req: Request, msg: messages.DeleteExperimentTag) -> dict:
    exp = load_active(req.project, msg.experiment_id)
    if msg.key not in exp["tags"]:
        raise not_found(f"No tag with name: {msg.key} in experiment with id {exp['experiment_id']}")
    tx = db.Tx()
    tx.delete(keys.experiment(req.project, exp["experiment_id"]), f"T#{msg.key}")
    _touch(tx, req.project, exp["experiment_id"])
    tx.commit()
    return {}
