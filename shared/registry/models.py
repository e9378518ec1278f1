"""Registered models: create, get, rename, update, delete, search, latest versions, tags, aliases.

Items and their layout: shared/registry/items.py. A model's name is unique per project because its
meta item is keyed by the name and written on condition it does not exist."""

from __future__ import annotations

from botocore.exceptions import ClientError

from shared import db, keys, pagination
from shared.clock import now_ms
from shared.errors import MlflowError, already_exists, invalid
from shared.filters import parse_model_filter, parse_model_order_by
from shared.http import Request
from shared.registry import items, messages, packages
from shared.registry.items import PACKAGE_URL_TAG, load_meta, load_model, model_json, version_json
from shared.tracking import experiments
from shared.validation import STAGES


def _default_experiment(project: str, name: str) -> str:
    """The model's experiment (same name): reused if it exists, created otherwise."""
    guard = db.get(keys.experiment_name_guard(project, name), keys.GUARD_SK)
    if guard:
        return guard["experiment_id"]
    try:
        return experiments.insert(project, name, {"mlreg.registered_model": name})
    except MlflowError as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return db.get(keys.experiment_name_guard(project, name), keys.GUARD_SK)["experiment_id"]


# ---- create / get / update / rename / delete ----------------------------------------------------------

def create_registered_model(req: Request, msg: messages.CreateRegisteredModel) -> dict:
    name, tags = msg.name, {t.key: t.value for t in msg.tags}
    experiment_id = _default_experiment(req.project, name)
    ts = now_ms()
    model = {"name": name, "description": msg.description, "creation_timestamp": ts,
             "last_updated_timestamp": ts, "last_version": 0, "experiment_id": experiment_id,
             "actor": req.token_id}  # events: who made the change (shared/events/)
    tx = db.Tx()
    tx.put(items.meta_item(req.project, model), condition="attribute_not_exists(pk)")
    for k, v in tags.items():
        tx.put(items.tag_item(req.project, name, k, v))
    tx.commit(on_conflict=already_exists(f"Registered Model (name={name}) already exists."))
    return {"registered_model": model_json({**model, "tags": tags, "aliases": {}})}


def _full(project: str, name: str) -> dict:
    model, latest = db.parallel(lambda job: job(), [lambda: load_model(project, name),
                                                    lambda: items.latest_versions(project, name)])
    return model_json(model, latest)


def get_registered_model(req: Request, msg: messages.ModelRef) -> dict:
    return {"registered_model": _full(req.project, msg.name)}


def update_registered_model(req: Request, msg: messages.UpdateRegisteredModel) -> dict:
    try:
        db.update(keys.registered_model(req.project, msg.name), keys.MODEL_SK,
                  "SET description = :d, last_updated_timestamp = :t", condition="attribute_exists(pk)",
                  values={":d": msg.description, ":t": now_ms()})
    except ClientError as err:
        if db.is_condition_failure(err):
            raise items.model_not_found(msg.name) from None
        raise
    return {"registered_model": _full(req.project, msg.name)}


def rename_registered_model(req: Request, msg: messages.RenameRegisteredModel) -> dict:
    """Moves the partition to the new name in one transaction (so at most ~100 items: see
    docs/registry.md), and the packages to the new name's prefix around it."""
    name, new_name = msg.name, msg.new_name
    pk = keys.registered_model(req.project, name)
    every = db.query_all(pk, consistent=True)
    meta = next((i for i in every if i["sk"] == keys.MODEL_SK), None)
    if meta is None:
        raise items.model_not_found(name)
    if new_name == name:
        return {"registered_model": _full(req.project, name)}
    tx, ts = db.Tx(), now_ms()
    for item in every:
        # events: `renamed_from` marks a move, so it is not published as a creation (shared/events/mapping.py)
        moved = {**_renamed(req.project, item, new_name, ts), "renamed_from": name}
        if item["sk"] == keys.MODEL_SK:
            tx.put(moved, condition="attribute_not_exists(pk)")
            tx.delete(pk, item["sk"], "last_version = :v", {":v": meta["last_version"]})  # no new versions
        else:
            tx.put(moved)
            tx.delete(pk, item["sk"])
        if item["sk"].startswith("V#") and items.linked_run(item):
            from shared.tracking.runs import link_sk

            tx.put(items.link_item(req.project, item["run_id"], new_name, item["version"]))
            tx.delete(keys.run(req.project, item["run_id"]), link_sk(name, item["version"]))
    if len(tx.items) > db.TRANSACT_MAX:
        raise invalid(f"Model {name} has too many versions, tags and aliases to rename in one transaction "
                      f"({len(tx.items)} writes, at most {db.TRANSACT_MAX}); see docs/registry.md")
    source, target = packages.model_prefix(req.project, name), packages.model_prefix(req.project, new_name)
    packages.copy_tree(source, target)
    try:
        tx.commit()
    except ClientError as err:
        packages.delete_tree(target)
        if db.is_condition_failure(err) and db.cancellation_reasons(err)[0] == "ConditionalCheckFailed":
            raise already_exists(f"Registered Model (name={new_name}) already exists.") from None
        if db.is_condition_failure(err):
            raise MlflowError(f"Model {name} changed during the rename; retry", "TEMPORARILY_UNAVAILABLE") from None
        raise
    packages.delete_tree(source)
    return {"registered_model": _full(req.project, new_name)}


def _renamed(project: str, item: dict, new_name: str, ts: int) -> dict:
    data = items.strip(item)
    sk = item["sk"]

    def moved(mv: dict) -> dict:
        tags = {k: packages.renamed_page_url(v, new_name) if k == PACKAGE_URL_TAG else v
                for k, v in (mv.get("tags") or {}).items()}
        return {**mv, "name": new_name, "last_updated_timestamp": ts, "tags": tags}

    if sk == keys.MODEL_SK:
        return items.meta_item(project, {**data, "name": new_name, "last_updated_timestamp": ts})
    if sk.startswith("V#"):
        return items.version_item(project, moved(data))
    if sk.startswith("A#"):  # its copy of the version moves as the version does
        return items.alias_item(project, data["alias"], moved(items.aliased_version(item)))
    return {**item, "pk": keys.registered_model(project, new_name), "g1sk": f"{new_name}#{sk}", "model_name": new_name}


def delete_registered_model(req: Request, msg: messages.ModelRef) -> dict:
    """Packages first, then versions, links, tags and aliases, the meta item last: a retry after a
    failure finds the model and finishes the job. The default experiment and its runs stay."""
    from shared.tracking.runs import link_sk

    name = msg.name
    pk = keys.registered_model(req.project, name)
    every = db.query_all(pk, consistent=True)
    if not any(i["sk"] == keys.MODEL_SK for i in every):
        raise items.model_not_found(name)
    packages.delete_tree(packages.model_prefix(req.project, name))
    doomed = [(pk, i["sk"]) for i in every if i["sk"] != keys.MODEL_SK]
    doomed += [(keys.run(req.project, i["run_id"]), link_sk(name, i["version"]))
               for i in every if i["sk"].startswith("V#") and items.linked_run(i)]
    db.batch_delete(doomed)
    db.delete(pk, keys.MODEL_SK)
    return {}


# ---- search and latest versions ------------------------------------------------------------------------

def all_models(project: str) -> list[dict]:
    """Every model of a project with tags and aliases: one paged Query of the model collection."""
    groups = db.query_groups(keys.models_collection(project), "gsi1", lambda item: item["model_name"])
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
    latest = db.parallel(lambda m: items.latest_versions(req.project, m["name"]), page)
    return pagination.with_token({"registered_models": [model_json(m, lv) for m, lv in zip(page, latest)]}, token)


def get_latest_versions(req: Request, msg: messages.GetLatestVersions) -> dict:
    load_meta(req.project, msg.name)
    found = items.latest_versions(req.project, msg.name, tuple(msg.stages) or STAGES)
    return {"model_versions": [version_json(mv) for mv in found]} if found else {}


# ---- tags ----------------------------------------------------------------------------------------------

def set_registered_model_tag(req: Request, msg: messages.SetRegisteredModelTag) -> dict:
    tx = db.Tx()
    tx.check(keys.registered_model(req.project, msg.name), keys.MODEL_SK, "attribute_exists(pk)")
    tx.put(items.tag_item(req.project, msg.name, msg.key, msg.value))
    tx.commit(on_conflict=items.model_not_found(msg.name))
    return {}


def delete_registered_model_tag(req: Request, msg: messages.DeleteRegisteredModelTag) -> dict:
    """Deleting a tag that is not there is a silent success, as in MLflow; a missing model is 404."""
    tx = db.Tx()
    tx.check(keys.registered_model(req.project, msg.name), keys.MODEL_SK, "attribute_exists(pk)")
    tx.delete(keys.registered_model(req.project, msg.name), keys.model_tag_sk(msg.key))
    tx.commit(on_conflict=items.model_not_found(msg.name))
    return {}


# ---- aliases -----------------------------------------------------------------------------------------

def set_registered_model_alias(req: Request, msg: messages.SetRegisteredModelAlias) -> dict:
    name, alias, version = msg.name, msg.alias, msg.version
    pk = keys.registered_model(req.project, name)

    def attempt() -> dict:
        target, old = db.parallel(lambda sk: db.get(pk, sk), [keys.version_sk(version), keys.alias_sk(alias)])
        if target is None:
            raise items.version_not_found(name, version)
        if old and old["version"] == version:
            return {}
        mv = items.strip(target)
        tx = db.Tx()
        copy = {**mv, "aliases": set(mv.get("aliases") or ()) | {alias}, "rev": mv["rev"] + 1}
        condition, values = ("version = :old", {":old": old["version"]}) if old else ("attribute_not_exists(pk)", None)
        tx.put({**items.alias_item(req.project, alias, copy), "actor": req.token_id},  # events: actor
               condition=condition, values=values)
        # replaced_alias: the two reads may straddle another move (then `mv` is stale and the commit fails)
        items.change_version(tx, req.project, mv, "ADD aliases :a", {":a": {alias}}, replaced_alias=alias)
        if old:  # the alias leaves its old version (the old alias item holds that version's copy)
            items.change_version(tx, req.project, items.aliased_version(old), "DELETE aliases :a", {":a": {alias}},
                                 replaced_alias=alias)
        tx.commit()
        return {}

    return db.retry_on_conflict(attempt, f"Alias {alias} of model {name} kept changing; retry")


def delete_registered_model_alias(req: Request, msg: messages.DeleteRegisteredModelAlias) -> dict:
    """A missing alias is a silent success (MLflow); a missing model is 404."""
    name, alias = msg.name, msg.alias
    pk = keys.registered_model(req.project, name)

    def attempt() -> dict:
        old = db.get(pk, keys.alias_sk(alias))
        if old is None:
            load_meta(req.project, name)
            return {}
        tx = db.Tx()
        tx.delete(pk, keys.alias_sk(alias), "version = :v", {":v": old["version"]})
        items.change_version(tx, req.project, items.aliased_version(old), "DELETE aliases :a", {":a": {alias}},
                             replaced_alias=alias)
        tx.commit()
        return {}

    return db.retry_on_conflict(attempt, f"Alias {alias} of model {name} kept changing; retry")


def _alias_target(project: str, name: str, alias: str) -> dict:
    """The item an alias names, in one read: `latest` -> the newest version; a semantic version (`1.2.0`,
    also `v1.2.0`) -> its guard (the version number only); an alias -> the alias item (a copy of its version)."""
    pk = keys.registered_model(project, name)
    if alias.lower() == "latest":
        newest, _ = db.query(pk, "V#", forward=False, limit=1, consistent=True)
        if not newest:
            load_meta(project, name)
            raise items.not_found(f"Latest version not found for model {name}.")
        return items.strip(newest[0])
    semver = alias[1:] if alias[:1] in "vV" and "." in alias else alias
    item = db.get(pk, keys.semver_sk(semver) if "." in alias else keys.alias_sk(alias))
    if item is None:
        load_meta(project, name)  # 404 for a missing model
        raise invalid(f"Registered model alias {alias} not found.")
    return items.aliased_version(item)


def version_by_alias(project: str, name: str, alias: str) -> dict:
    """The version an alias, a semantic version or `latest` names: one read for an alias or `latest`;
    a semantic version reads its guard, then the version."""
    found = _alias_target(project, name, alias)
    return found if "current_stage" in found else items.load_version(project, name, found["version"])


def get_model_version_by_alias(req: Request, msg: messages.GetModelVersionByAlias) -> dict:
    return {"model_version": version_json(version_by_alias(req.project, msg.name, msg.alias))}
