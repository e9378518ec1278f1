"""Registered models: create, get, rename, update, delete, search, latest versions, tags, aliases.

Items and their layout: shared/registry/items.py; a model's name and its id: identity.py. A rename
swaps two name guards and changes the meta item's name (three writes, whatever the model holds); a
delete frees the name and marks the model deleted in one transaction, and the registry worker
(worker.py) removes its versions, aliases, tags, run links and packages afterwards."""

from __future__ import annotations

import uuid

from botocore.exceptions import ClientError

from shared import db, keys, pagination
from shared.clock import now_ms
from shared.errors import already_exists, invalid
from shared.filters import parse_model_filter, parse_model_order_by
from shared.http import Request
from shared.registry import identity, items, messages
from shared.registry.identity import model_not_found
from shared.registry.items import model_json, version_json
from shared.tracking import experiments
from shared.validation import STAGES


LIVE = "attribute_exists(pk) AND attribute_not_exists(deleted_at)"  # a model's meta item, not deleted


# ---- create / get / update / rename / delete ----------------------------------------------------------

def create_registered_model(req: Request, msg: messages.CreateRegisteredModel) -> dict:
    """One read and one transaction: the name's guard, the model and its tags, and the model's
    default experiment (same name) if no experiment has that name yet (an existing one is reused)."""
    name, tags = msg.name, {t.key: t.value for t in msg.tags}
    ts, model_id = now_ms(), uuid.uuid4().hex
    model = {"model_id": model_id, "name": name, "description": msg.description, "creation_timestamp": ts,
             "last_updated_timestamp": ts, "last_version": 0, "actor": req.token_id}  # events: who made the change

    def attempt() -> None:
        tx = db.Tx()
        model["experiment_id"] = _default_experiment(tx, req.project, name)
        guard_at = len(tx.items)
        tx.put(identity.guard_item(req.project, name, model_id), condition="attribute_not_exists(pk)")
        tx.put(items.meta_item(req.project, model), condition="attribute_not_exists(pk)")
        for k, v in tags.items():
            tx.put(items.tag_item(req.project, model_id, k, v))
        try:
            tx.commit()
        except ClientError as err:
            if db.cancellation_reasons(err)[guard_at:guard_at + 1] == ["ConditionalCheckFailed"]:
                raise already_exists(f"Registered Model (name={name}) already exists.") from None
            raise  # the experiment's name or id was taken meanwhile: read again

    db.retry_on_conflict(attempt, f"Too many concurrent creations of model {name}; retry")
    identity.CACHE.put(req.project, name, model_id)
    return {"registered_model": model_json({**model, "tags": tags, "aliases": {}})}


def _default_experiment(tx: db.Tx, project: str, name: str) -> str:
    """The model's experiment (same name): the existing one's id, or a new one's, written in `tx`
    (its name guard, meta, tag, and the project's id counter; the guard and the counter are read
    together)."""
    guard_key, counter_key = (keys.experiment_name_guard(project, name), keys.GUARD_SK), experiments.counter_key(project)
    found = {(i["pk"], i["sk"]): i for i in db.batch_get([guard_key, counter_key], consistent=True)}
    if guard := found.get(guard_key):
        return guard["experiment_id"]
    experiment_id = experiments.take_next_id(tx, project, found.get(counter_key))
    experiments.add_new(tx, project, name, {"mlreg.registered_model": name}, experiment_id)
    return experiment_id


def _full(project: str, name: str) -> dict:
    """The model with tags, aliases and latest versions: its items and its stages' newest marks side
    by side with the name's guard, then one BatchGetItem of those versions (2 round trips warm)."""
    def reads(model_id: str) -> list:
        return [lambda: items.named_items(project, model_id),
                *(lambda s=s: items.newest_in_stage(project, model_id, s) for s in STAGES)]

    model_id, (named, *newest) = identity.with_model(project, name, reads)
    model = items.assembled(named, name)
    found = items.versions_of(project, [(model_id, n) for n in newest if n is not None])
    latest = sorted(found.values(), key=lambda mv: STAGES.index(mv["current_stage"]))
    return model_json(model, latest)


def get_registered_model(req: Request, msg: messages.ModelRef) -> dict:
    return {"registered_model": _full(req.project, msg.name)}


def _change_meta(project: str, name: str, expression: str, values: dict, names: dict | None = None) -> str:
    model_id = identity.resolve(project, name)
    try:
        db.update(keys.registered_model(project, model_id), keys.MODEL_SK, expression, names, values, condition=LIVE)
    except ClientError as err:
        if db.is_condition_failure(err):
            raise model_not_found(name) from None
        raise
    return model_id


def update_registered_model(req: Request, msg: messages.UpdateRegisteredModel) -> dict:
    _change_meta(req.project, msg.name, "SET description = :d, last_updated_timestamp = :t",
                 {":d": msg.description, ":t": now_ms()})
    return {"registered_model": _full(req.project, msg.name)}


def rename_registered_model(req: Request, msg: messages.RenameRegisteredModel) -> dict:
    """One transaction of three writes, however many versions, aliases and packages the model has:
    the old name's guard goes, the new one's is put (if the name is free), the meta item takes the
    new name. Readers see the old name or the new one; packages stay where they are (versions record
    their package's path). The default experiment keeps its name."""
    name, new_name = msg.name, msg.new_name
    model_id = identity.resolve(req.project, name)
    if new_name == name:
        return {"registered_model": _full(req.project, name)}
    tx = db.Tx()
    tx.delete(keys.model_name_guard(req.project, name), keys.GUARD_SK, "model_id = :id", {":id": model_id})
    tx.put(identity.guard_item(req.project, new_name, model_id), condition="attribute_not_exists(pk)")
    tx.update(keys.registered_model(req.project, model_id), keys.MODEL_SK,
              "SET #n = :new, last_updated_timestamp = :t, actor = :a", {"#n": "name"},
              {":new": new_name, ":old": name, ":t": now_ms(), ":a": req.token_id},  # events: actor
              condition=f"{LIVE} AND #n = :old")
    try:
        tx.commit()
    except ClientError as err:
        reasons = db.cancellation_reasons(err)
        if reasons[1:2] == ["ConditionalCheckFailed"]:
            raise already_exists(f"Registered Model (name={new_name}) already exists.") from None
        if "ConditionalCheckFailed" in reasons:  # renamed or deleted since the guard was read
            identity.CACHE.put(req.project, name, None)
            raise model_not_found(name) from None
        raise
    identity.CACHE.put(req.project, name, None)
    identity.CACHE.put(req.project, new_name, model_id)
    return {"registered_model": _full(req.project, new_name)}


def delete_registered_model(req: Request, msg: messages.ModelRef) -> dict:
    """Answers at once: one transaction frees the name and marks the model deleted (readers no longer
    find it; it leaves the search collection). The registry worker then removes its versions, aliases,
    tags, run links and packages (worker.py), and its events go out as that happens. The default
    experiment and its runs stay."""
    name = msg.name
    model_id = identity.resolve(req.project, name)
    tx = db.Tx()
    tx.delete(keys.model_name_guard(req.project, name), keys.GUARD_SK, "model_id = :id", {":id": model_id})
    tx.update(keys.registered_model(req.project, model_id), keys.MODEL_SK,
              "SET deleted_at = :t, actor = :a REMOVE g1pk, g1sk", values={":t": now_ms(), ":a": req.token_id},
              condition=LIVE)
    identity.CACHE.put(req.project, name, None)
    tx.commit(on_conflict=model_not_found(name))
    return {}


# ---- search and latest versions ------------------------------------------------------------------------

def all_models(project: str) -> list[dict]:
    """Every live model of a project with tags and aliases: one paged Query of the model collection
    (a deleted model's meta leaves it at once; its other items until the worker removes them)."""
    groups = db.query_groups(keys.models_collection(project), "gsi1", db.entity_of_g1sk)
    return [m for m in map(items.assemble, groups) if m]


def search_registered_models(req: Request, msg: messages.SearchRegisteredModels) -> dict:
    matches, sort_key = parse_model_filter(msg.filter), parse_model_order_by(msg.order_by)
    found = []
    for model in all_models(req.project):
        view = {"name": model["name"], "tags": model["tags"], "creation_timestamp": model["creation_timestamp"],
                "last_updated_timestamp": model["last_updated_timestamp"]}
        if matches(view):
            found.append((sort_key(view), model))
    page, token = pagination.offset_page(req.project, [msg.filter, msg.order_by], msg.page_token, found,
                                         msg.max_results)
    latest = items.latest_of(req.project, [m["model_id"] for m in page])
    return pagination.with_token({"registered_models": [model_json(m, latest[m["model_id"]]) for m in page]}, token)


def get_latest_versions(req: Request, msg: messages.GetLatestVersions) -> dict:
    stages = tuple(msg.stages) or STAGES
    model_id, newest = identity.with_model(
        req.project, msg.name, lambda model_id: [lambda s=s: items.newest_in_stage(req.project, model_id, s)
                                                 for s in stages])
    found = items.versions_of(req.project, [(model_id, n) for n in newest if n is not None])
    latest = sorted(found.values(), key=lambda mv: STAGES.index(mv["current_stage"]))
    return {"model_versions": [version_json(mv, msg.name) for mv in latest]} if latest else {}


# ---- tags ----------------------------------------------------------------------------------------------

def _tag_write(project: str, name: str, write) -> None:
    model_id = identity.resolve(project, name)
    tx = db.Tx()
    tx.check(keys.registered_model(project, model_id), keys.MODEL_SK, LIVE)
    write(tx, model_id)
    tx.commit(on_conflict=model_not_found(name))


def set_registered_model_tag(req: Request, msg: messages.SetRegisteredModelTag) -> dict:
    _tag_write(req.project, msg.name, lambda tx, model_id: tx.put(items.tag_item(req.project, model_id, msg.key,
                                                                                msg.value)))
    return {}


def delete_registered_model_tag(req: Request, msg: messages.DeleteRegisteredModelTag) -> dict:
    """Deleting a tag that is not there is a silent success, as in MLflow; a missing model is 404."""
    _tag_write(req.project, msg.name, lambda tx, model_id: tx.delete(keys.registered_model(req.project, model_id),
                                                                     keys.model_tag_sk(msg.key)))
    return {}


# ---- aliases -----------------------------------------------------------------------------------------

def set_registered_model_alias(req: Request, msg: messages.SetRegisteredModelAlias) -> dict:
    name, alias, version = msg.name, msg.alias, msg.version

    def attempt() -> dict:
        model_id, found = identity.read(req.project, name, [keys.version_sk(version), keys.alias_sk(alias)])
        target, old = found[keys.version_sk(version)], found[keys.alias_sk(alias)]
        if target is None:
            raise items.version_not_found(name, version)
        if old and old["version"] == version:
            return {}
        mv = items.strip(target)
        tx = db.Tx()
        copy = {**mv, "aliases": set(mv.get("aliases") or ()) | {alias}, "rev": mv["rev"] + 1}
        condition, values = ("version = :old", {":old": old["version"]}) if old else ("attribute_not_exists(pk)", None)
        tx.put({**items.alias_item(req.project, model_id, alias, copy), "actor": req.token_id},  # events: actor
               condition=condition, values=values)
        # replaced_alias: the two reads may straddle another move (then `mv` is stale and the commit fails)
        items.change_version(tx, req.project, model_id, mv, "ADD aliases :a", {":a": {alias}}, replaced_alias=alias)
        if old:  # the alias leaves its old version (the old alias item holds that version's copy)
            items.change_version(tx, req.project, model_id, items.aliased_version(old), "DELETE aliases :a",
                                 {":a": {alias}}, replaced_alias=alias)
        tx.commit()
        return {}

    return db.retry_on_conflict(attempt, f"Alias {alias} of model {name} kept changing; retry")


def delete_registered_model_alias(req: Request, msg: messages.DeleteRegisteredModelAlias) -> dict:
    """A missing alias is a silent success (MLflow); a missing model is 404."""
    name, alias = msg.name, msg.alias

    def attempt() -> dict:
        model_id, found = identity.read(req.project, name, [keys.alias_sk(alias)])
        old = found[keys.alias_sk(alias)]
        if old is None:
            return {}
        tx = db.Tx()
        tx.delete(keys.registered_model(req.project, model_id), keys.alias_sk(alias), "version = :v",
                  {":v": old["version"]})
        items.change_version(tx, req.project, model_id, items.aliased_version(old), "DELETE aliases :a",
                             {":a": {alias}}, replaced_alias=alias)
        tx.commit()
        return {}

    return db.retry_on_conflict(attempt, f"Alias {alias} of model {name} kept changing; retry")


def version_by_alias(project: str, name: str, alias: str) -> tuple[str, dict]:
    """(model id, the version) an alias, a semantic version (`1.2.0`, also `v1.2.0`) or `latest`
    names. An alias: its item carries a copy of the version (1 round trip warm); `latest`: the newest
    version (1 round trip warm); a semantic version: its guard, then the version (2)."""
    if alias.lower() == "latest":
        model_id, (newest,) = identity.with_model(project, name,
                                                  lambda model_id: [lambda: items.newest_version(project, model_id)])
        if newest is None:
            raise items.not_found(f"Latest version not found for model {name}.")
        return model_id, newest
    semver = alias[1:] if alias[:1] in "vV" and "." in alias else alias
    sk = keys.semver_sk(semver) if "." in alias else keys.alias_sk(alias)
    model_id, found = identity.read(project, name, [sk])
    if found[sk] is None:
        raise invalid(f"Registered model alias {alias} not found.")
    if sk == keys.alias_sk(alias):
        return model_id, items.aliased_version(found[sk])
    mv = items.get_version(project, model_id, found[sk]["version"])
    if mv is None:  # deleted between the two reads
        raise invalid(f"Registered model alias {alias} not found.")
    return model_id, mv


def get_model_version_by_alias(req: Request, msg: messages.GetModelVersionByAlias) -> dict:
    return {"model_version": version_json(version_by_alias(req.project, msg.name, msg.alias)[1], msg.name)}
