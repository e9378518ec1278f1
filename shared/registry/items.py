"""The registry's items, how they are read, and their MLflow JSON.

A registered model is one partition `P#<p>#M#<name>`:
  `#M`            meta: description, timestamps, `last_version` counter, `latest_semver`, default experiment
  `T#<key>`       model tags
  `A#<alias>`     alias -> version, with a copy of that version (get-by-alias is one GetItem)
  `S#<semver>`    semver guard -> version (also answers `models:/<name>@<semver>`)
  `V#<%010d>`     versions: stage, status, source, run, tags (a map), aliases (a set), semver, package
Meta, tag, alias and semver items also sit in the project's model collection (GSI1) for search;
version items in the project's version collection (GSI1) and, when a run backs them, in the run's
version list (GSI2). See docs/data-model.md."""

from __future__ import annotations

from botocore.exceptions import ClientError

from shared import db, keys
from shared.errors import not_found
from shared.validation import STAGES

ACTIVE_STAGES = ("Staging", "Production")
READY, PENDING, FAILED = "READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION"
PACKAGE_URL_TAG = "mlreg.package_url"  # every version's package page (shared/ui/package.py), kept by mlreg
_META_AND_NAMED = ("#", "U")  # sort-key range holding #M, A#, S#, T# (everything but versions)


# ---- items -------------------------------------------------------------------------------------------

def _named(project: str, name: str, sk: str, /, **attrs) -> dict:
    """An item of the model partition that also sits in the project's model collection."""
    return {"pk": keys.registered_model(project, name), "sk": sk, "g1pk": keys.models_collection(project),
            "g1sk": f"{name}#{sk}", "model_name": name, **attrs}


def meta_item(project: str, model: dict) -> dict:
    return _named(project, model["name"], keys.MODEL_SK, **model)


def tag_item(project: str, name: str, key: str, value: str) -> dict:
    return _named(project, name, keys.model_tag_sk(key), key=key, value=value)


def alias_item(project: str, alias: str, mv: dict) -> dict:
    """The alias and a copy of its version, kept equal to it by `change_version`."""
    copy = {k: v for k, v in mv.items() if k != "renamed_from"}  # a rename mark belongs to the move, not the copy
    return _named(project, mv["name"], keys.alias_sk(alias), **copy, alias=alias)


def aliased_version(item: dict) -> dict:
    """The version an alias item carries."""
    return {k: v for k, v in strip(item).items() if k != "alias"}


def semver_item(project: str, name: str, semver: str, version: int) -> dict:
    return _named(project, name, keys.semver_sk(semver), semver=semver, version=version)


def version_item(project: str, mv: dict) -> dict:
    number_key = f"{mv['name']}#{keys.version_sk(mv['version'])}"
    item = {"pk": keys.registered_model(project, mv["name"]), "sk": keys.version_sk(mv["version"]),
            "g1pk": keys.versions_collection(project), "g1sk": number_key, **mv}
    if mv.get("run_id"):
        item.update(g2pk=keys.versions_by_run(project, mv["run_id"]), g2sk=number_key)
    return item


def linked_run(mv: dict) -> str | None:
    """The run a version backs onto, if the project holds it (an external source may name a run it does not)."""
    return mv.get("run_id") if mv.get("run_linked", True) else None


def link_item(project: str, run_id: str, name: str, version: int) -> dict:
    """The run-side mark that a version backs onto this run (runs refuse deletion while it exists)."""
    from shared.tracking.runs import link_sk

    return {"pk": keys.run(project, run_id), "sk": link_sk(name, version), "model_name": name, "version": version}


def strip(item: dict) -> dict:
    """An item without its key attributes."""
    return {k: v for k, v in item.items() if k not in ("pk", "sk", "g1pk", "g1sk", "g2pk", "g2sk", "model_name")}


# ---- reads ----------------------------------------------------------------------------------------------

def assemble(items: list[dict]) -> dict | None:
    """A registered model (meta, tags, aliases) from its non-version items. Semantic versions are
    not aliases in answers: they resolve like one (`models:/X@1.2.0`) and show in the version's
    `mlreg.version` tag, but alias editors (MLflow's UI) must not see them as aliases to move."""
    model: dict = {"tags": {}, "aliases": {}}
    for item in items:
        kind = item["sk"][:2]
        if item["sk"] == keys.MODEL_SK:
            model.update(strip(item))
        elif kind == "T#":
            model["tags"][item["key"]] = item["value"]
        elif kind == "A#":
            model["aliases"][item["alias"]] = item["version"]
    return model if "name" in model else None


def load_model(project: str, name: str) -> dict:
    """Meta, tags and aliases: one strongly consistent Query of the partition, versions left out."""
    model = assemble(db.query_all(keys.registered_model(project, name), sk_between=_META_AND_NAMED,
                                  consistent=True))
    if model is None:
        raise model_not_found(name)
    return model


def load_meta(project: str, name: str) -> dict:
    item = db.get(keys.registered_model(project, name), keys.MODEL_SK)
    if item is None:
        raise model_not_found(name)
    return item


def model_not_found(name: str):
    return not_found(f"Registered Model with name={name} not found")


def version_not_found(name: str, version):
    return not_found(f"Model Version (name={name}, version={version}) not found")


def load_version(project: str, name: str, version: int) -> dict:
    """One GetItem."""
    item = db.get(keys.registered_model(project, name), keys.version_sk(version))
    if item is None:
        raise version_not_found(name, version)
    return strip(item)


def iter_versions(project: str, name: str):
    """The model's versions, newest first (one paged Query)."""
    for item in db.iter_query(keys.registered_model(project, name), "V#", forward=False, consistent=True):
        yield strip(item)


def latest_versions(project: str, name: str, stages=STAGES) -> list[dict]:
    """The newest version in each stage, reading newest-first and stopping once all are found."""
    found: dict[str, dict] = {}
    for mv in iter_versions(project, name):
        if mv["current_stage"] in stages and mv["current_stage"] not in found:
            found[mv["current_stage"]] = mv
            if len(found) == len(stages):
                break
    return sorted(found.values(), key=lambda mv: STAGES.index(mv["current_stage"]))


# ---- version writes ---------------------------------------------------------------------------------------
# A version and the copies its aliases carry change together: every write bumps the version's `rev`, and a
# write that copies the version (or updates the copies) is conditioned on the `rev` it read.

def _counted(expression: str) -> str:
    """The expression plus `rev` + 1 (in its ADD clause if it has one: a clause may appear only once)."""
    return expression.replace("ADD ", "ADD rev :_one, ", 1) if "ADD " in expression else f"{expression} ADD rev :_one"


def change_version(tx: db.Tx, project: str, mv: dict, expression: str, values: dict, names: dict | None = None,
                   replaced_alias: str | None = None) -> None:
    """Adds to `tx` the update of version `mv` (as read) and the same update of its aliases' copies; the
    transaction fails if the version changed meanwhile. `replaced_alias`: an alias item `tx` rewrites itself."""
    pk, expression, values = keys.registered_model(project, mv["name"]), _counted(expression), {**values, ":_one": 1}
    tx.update(pk, keys.version_sk(mv["version"]), expression, names, {**values, ":_rev": mv["rev"]}, "rev = :_rev")
    for alias in sorted(set(mv.get("aliases") or ()) - {replaced_alias}):
        tx.update(pk, keys.alias_sk(alias), expression, names, {**values, ":_v": mv["version"]}, "version = :_v")


def update_version(project: str, name: str, version: int, expression: str, values: dict,
                   names: dict | None = None, return_new: bool = True) -> dict | None:
    """Changes one version (and returns it). Unaliased (the common case): one conditional UpdateItem. Aliased:
    that update fails, returning the version as it was, and one transaction changes it and its copies."""
    pk, sk = keys.registered_model(project, name), keys.version_sk(version)
    try:
        return strip(db.update(pk, sk, _counted(expression), names, {**values, ":_one": 1}, return_new=True,
                               condition="attribute_exists(pk) AND attribute_not_exists(aliases)"))
    except ClientError as err:
        if not db.is_condition_failure(err):
            raise
        seen = [strip(db.failed_item(err) or {})]

    def attempt() -> None:
        mv = seen.pop() if seen else load_version(project, name, version)
        if not mv:
            raise version_not_found(name, version)
        tx = db.Tx()
        change_version(tx, project, mv, expression, values, names)
        tx.commit()

    db.retry_on_conflict(attempt, f"Model version {name} {version} kept changing; retry")
    return load_version(project, name, version) if return_new else None


# ---- JSON -------------------------------------------------------------------------------------------------

def version_json(mv: dict) -> dict:
    out = {k: mv.get(k) for k in ("name", "creation_timestamp", "last_updated_timestamp", "user_id", "current_stage",
                                  "description", "source", "run_id", "status", "status_message", "run_link",
                                  "model_id")}
    out = {k: v for k, v in out.items() if v not in (None, "")}
    out["version"] = str(mv["version"])
    out["tags"] = [{"key": k, "value": v} for k, v in (mv.get("tags") or {}).items()]
    out["aliases"] = sorted(mv.get("aliases") or ())
    return out


def model_json(model: dict, latest: list[dict] | None = None) -> dict:
    out = {k: model.get(k) for k in ("name", "creation_timestamp", "last_updated_timestamp", "description", "user_id")}
    out = {k: v for k, v in out.items() if v not in (None, "")}
    out["tags"] = [{"key": k, "value": v} for k, v in model["tags"].items()]
    out["aliases"] = [{"alias": a, "version": str(v)} for a, v in model["aliases"].items()]
    if latest:
        out["latest_versions"] = [version_json(mv) for mv in latest]
    return out
