"""The registry's items, how they are read, and their MLflow JSON.

A registered model is one partition keyed by its immutable id, `P#<p>#M#<model_id>`; its name is the
guard item of shared/registry/identity.py. The partition holds:
  `#M`                meta: name, description, timestamps, `last_version` counter, `latest_semver`,
                      default experiment; `deleted_at` once deleted (a tombstone until purged)
  `A#<alias>`         alias -> version, with a copy of that version (get-by-alias is one read)
  `T#<key>`           model tags
  `V#<%010d>`         versions: stage, status, source, run, tags (a map), aliases (a set), semver,
                      package (its path, recorded once), rev (write counter)
  `VS#<semver>`       semver guard -> version (also answers `models:/<name>@<semver>`)
  `VT#<stage>#<%010d>` the version's mark in its stage (newest per stage: one Query, Limit 1)
Meta, tag and alias items also sit in the project's model collection (GSI1); versions in their
model's and their project's orderings by last update (GSI1, GSI3) and, when a run backs them, in the
run's version list (GSI2). No item but the meta holds the model's name. See docs/data-model.md."""

from __future__ import annotations

from urllib.parse import quote

from botocore.exceptions import ClientError

from shared import db, keys
from shared.errors import not_found
from shared.registry import identity
from shared.validation import STAGES

ACTIVE_STAGES = ("Staging", "Production")
READY, PENDING, FAILED = "READY", "PENDING_REGISTRATION", "FAILED_REGISTRATION"
PACKAGE_URL_TAG = "mlreg.package_url"  # every version's package page (shared/ui/package.py), kept by mlreg
_NAMED = ("#", "U")  # sort-key range of #M, A#, T# (everything but the per-version items V*)
KEY_ATTRIBUTES = ("pk", "sk", "g1pk", "g1sk", "g2pk", "g2sk", "g3pk", "g3sk", "g4pk", "g4sk")
TOMBSTONE_DAYS = 7  # a purged model's meta stays this long (TTL): late events still find its name


# ---- items -------------------------------------------------------------------------------------------

def _collected(project: str, model_id: str, sk: str, /, **attrs) -> dict:
    """An item of the model partition that also sits in the project's model collection."""
    return {"pk": keys.registered_model(project, model_id), "sk": sk, "g1pk": keys.models_collection(project),
            "g1sk": f"{model_id}#{sk}", **attrs}


def meta_item(project: str, model: dict) -> dict:
    return _collected(project, model["model_id"], keys.MODEL_SK, **model)


def tag_item(project: str, model_id: str, key: str, value: str) -> dict:
    return _collected(project, model_id, keys.model_tag_sk(key), key=key, value=value)


def alias_item(project: str, model_id: str, alias: str, mv: dict) -> dict:
    """The alias and a copy of its version, kept equal to it by `change_version`."""
    return _collected(project, model_id, keys.alias_sk(alias), **strip(mv), alias=alias)


def aliased_version(item: dict) -> dict:
    """The version an alias item carries."""
    return {k: v for k, v in strip(item).items() if k != "alias"}


def semver_item(project: str, model_id: str, semver: str, version: int) -> dict:
    return {"pk": keys.registered_model(project, model_id), "sk": keys.semver_sk(semver), "semver": semver,
            "version": version}


def stage_item(project: str, model_id: str, stage: str, version: int) -> dict:
    return {"pk": keys.registered_model(project, model_id), "sk": keys.stage_sk(stage, version), "version": version}


def order_attributes(project: str, model_id: str, version: int, last_updated: int) -> dict:
    """Where a version sits in its model's and its project's orderings by last update."""
    return {"g1pk": keys.model_versions_by_update(project, model_id),
            "g1sk": keys.version_update_order(last_updated, version),
            "g3pk": keys.versions_collection(project),
            "g3sk": keys.project_version_order(last_updated, version, model_id)}


def version_item(project: str, model_id: str, mv: dict) -> dict:
    item = {"pk": keys.registered_model(project, model_id), "sk": keys.version_sk(mv["version"]), **mv,
            **order_attributes(project, model_id, mv["version"], mv["last_updated_timestamp"])}
    if mv.get("run_id"):
        item.update(g2pk=keys.versions_by_run(project, mv["run_id"]), g2sk=f"{model_id}#{mv['version']:010d}")
    return item


def linked_run(mv: dict) -> str | None:
    """The run a version backs onto, if the project holds it (an external source may name a run it does not)."""
    return mv.get("run_id") if mv.get("run_linked", True) else None


def link_item(project: str, run_id: str, model_id: str, version: int) -> dict:
    """The run-side mark that a version backs onto this run (runs refuse deletion while it exists)."""
    return {"pk": keys.run(project, run_id), "sk": keys.model_link_sk(model_id, version), "model_id": model_id,
            "version": version}


def strip(item: dict) -> dict:
    """An item without its key attributes."""
    return {k: v for k, v in item.items() if k not in KEY_ATTRIBUTES}


# ---- reads ----------------------------------------------------------------------------------------------

def assemble(items: list[dict]) -> dict | None:
    """A live registered model (meta, tags, aliases) from its named items; None if deleted. Semantic
    versions are not aliases in answers: they resolve like one (`models:/X@1.2.0`) and show in the
    version's `mlreg.version` tag, but alias editors (MLflow's UI) must not see them as aliases to move."""
    model: dict = {"tags": {}, "aliases": {}}
    for item in items:
        kind = item["sk"][:2]
        if item["sk"] == keys.MODEL_SK:
            model.update(strip(item))
        elif kind == "T#":
            model["tags"][item["key"]] = item["value"]
        elif kind == "A#":
            model["aliases"][item["alias"]] = item["version"]
    return model if "name" in model and "deleted_at" not in model else None


def named_items(project: str, model_id: str) -> list[dict]:
    return db.query_all(keys.registered_model(project, model_id), sk_between=_NAMED, consistent=True)


def assembled(found: list[dict], name: str) -> dict:
    model = assemble(found)
    if model is None:
        raise identity.model_not_found(name)
    return model


def load_meta(project: str, model_id: str) -> dict | None:
    return db.get(keys.registered_model(project, model_id), keys.MODEL_SK)


def live_names(project: str, model_ids) -> dict[str, str]:
    """model id -> name of the live models among `model_ids` (one BatchGetItem per 100)."""
    metas = db.batch_get([(keys.registered_model(project, i), keys.MODEL_SK) for i in set(model_ids)])
    return {m["model_id"]: m["name"] for m in metas if "deleted_at" not in m}


def version_not_found(name: str, version):
    return not_found(f"Model Version (name={name}, version={version}) not found")


def load_version(project: str, name: str, version: int) -> tuple[str, dict]:
    """(model id, version): one BatchGetItem of the name's guard and the version when warm."""
    model_id, found = identity.read(project, name, [keys.version_sk(version)])
    item = found[keys.version_sk(version)]
    if item is None:
        raise version_not_found(name, version)
    return model_id, strip(item)


def get_version(project: str, model_id: str, version: int) -> dict | None:
    item = db.get(keys.registered_model(project, model_id), keys.version_sk(version))
    return item and strip(item)


def iter_versions(project: str, model_id: str):
    """The model's versions by number, newest first (one paged Query)."""
    for item in db.iter_query(keys.registered_model(project, model_id), keys.VERSION_PREFIX, forward=False,
                              consistent=True):
        yield strip(item)


def newest_version(project: str, model_id: str) -> dict | None:
    found, _ = db.query(keys.registered_model(project, model_id), keys.VERSION_PREFIX, forward=False, limit=1,
                        consistent=True)
    return strip(found[0]) if found else None


def newest_in_stage(project: str, model_id: str, stage: str) -> int | None:
    """The number of the newest version in `stage`: one Query (Limit 1) of the stage's marks."""
    found, _ = db.query(keys.registered_model(project, model_id), keys.stage_prefix(stage), forward=False, limit=1,
                        consistent=True)
    return found[0]["version"] if found else None


def versions_of(project: str, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """(model id, number) -> version, for many versions at once (BatchGetItem, 100 per request)."""
    found = db.batch_get([(keys.registered_model(project, m), keys.version_sk(n)) for m, n in wanted], consistent=True)
    return {(i["pk"].rsplit("#", 1)[1], i["version"]): strip(i) for i in found}


def latest_of(project: str, model_ids: list[str], stages=STAGES) -> dict[str, list[dict]]:
    """The newest version in each stage of each model: one Query per (model, stage) side by side, then
    one BatchGetItem of those versions. Bounded by models and stages, never by a model's versions."""
    pairs = [(m, s) for m in model_ids for s in stages]
    numbers = db.parallel(lambda pair: newest_in_stage(project, *pair), pairs)
    found = versions_of(project, [(m, n) for (m, _), n in zip(pairs, numbers) if n is not None])
    latest: dict[str, list[dict]] = {m: [] for m in model_ids}
    for (m, _), n in zip(pairs, numbers):
        if (m, n) in found:
            latest[m].append(found[(m, n)])
    return {m: sorted(vs, key=lambda mv: STAGES.index(mv["current_stage"])) for m, vs in latest.items()}


def latest_versions(project: str, model_id: str, stages=STAGES) -> list[dict]:
    return latest_of(project, [model_id], stages)[model_id]


def versions_in_stage(project: str, model_id: str, stage: str) -> list[dict]:
    """Every version in `stage` (archive_existing_versions): its marks, then the versions."""
    pk = keys.registered_model(project, model_id)
    numbers = [m["version"] for m in db.iter_query(pk, keys.stage_prefix(stage), consistent=True)]
    return [strip(i) for i in db.batch_get([(pk, keys.version_sk(n)) for n in numbers], consistent=True)]


# ---- version writes ---------------------------------------------------------------------------------------
# A version and the copies its aliases carry change together: every write bumps the version's `rev`, and a
# write that copies the version (or updates the copies) is conditioned on the `rev` it read.

def _counted(expression: str) -> str:
    """The expression plus `rev` + 1 (in its ADD clause if it has one: a clause may appear only once)."""
    return expression.replace("ADD ", "ADD rev :_one, ", 1) if "ADD " in expression else f"{expression} ADD rev :_one"


def _reordered(expression: str, values: dict, project: str, model_id: str, version: int,
               updated: int | None) -> tuple[str, dict]:
    """The version's own update also moves it in the orderings by last update when it sets that time
    (the alias copies stay out of the orderings)."""
    if updated is None:
        return expression, values
    order = order_attributes(project, model_id, version, updated)
    values = {**values, ":_g1sk": order["g1sk"], ":_g3sk": order["g3sk"]}
    moved = "g1sk = :_g1sk, g3sk = :_g3sk"
    if "SET " in expression:
        return expression.replace("SET ", f"SET {moved}, ", 1), values
    return f"{expression} SET {moved}", values


def change_version(tx: db.Tx, project: str, model_id: str, mv: dict, expression: str, values: dict,
                   names: dict | None = None, replaced_alias: str | None = None, updated: int | None = None) -> None:
    """Adds to `tx` the update of version `mv` (as read) and the same update of its aliases' copies; the
    transaction fails if the version changed meanwhile. `replaced_alias`: an alias item `tx` rewrites itself.
    `updated`: the new last_updated_timestamp the expression sets, if it sets one."""
    pk, expression, values = keys.registered_model(project, model_id), _counted(expression), {**values, ":_one": 1}
    own, own_values = _reordered(expression, {**values, ":_rev": mv["rev"]}, project, model_id, mv["version"], updated)
    tx.update(pk, keys.version_sk(mv["version"]), own, names, own_values, "rev = :_rev")
    for alias in sorted(set(mv.get("aliases") or ()) - {replaced_alias}):
        tx.update(pk, keys.alias_sk(alias), expression, names, {**values, ":_v": mv["version"]}, "version = :_v")


def update_version(project: str, model_id: str, name: str, version: int, expression: str, values: dict,
                   names: dict | None = None, updated: int | None = None, return_new: bool = True) -> dict | None:
    """Changes one version (and returns it). Unaliased (the common case): one conditional UpdateItem.
    Aliased: that update fails, returning the version as it was, and one transaction changes it and its
    copies (then returning it costs a read)."""
    pk, sk = keys.registered_model(project, model_id), keys.version_sk(version)
    own, own_values = _reordered(_counted(expression), {**values, ":_one": 1}, project, model_id, version, updated)
    try:
        changed = db.update(pk, sk, own, names, own_values, return_new=return_new,
                            condition="attribute_exists(pk) AND attribute_not_exists(aliases)")
        return strip(changed) if return_new else None
    except ClientError as err:
        if not db.is_condition_failure(err):
            raise
        seen = [strip(db.failed_item(err) or {})]

    def attempt() -> None:
        mv = seen.pop() if seen else get_version(project, model_id, version)
        if not mv:
            raise version_not_found(name, version)
        tx = db.Tx()
        change_version(tx, project, model_id, mv, expression, values, names, updated=updated)
        tx.commit()

    db.retry_on_conflict(attempt, f"Model version {name} {version} kept changing; retry")
    return get_version(project, model_id, version) if return_new else None


# ---- JSON -------------------------------------------------------------------------------------------------

def package_page_url(mv: dict, name: str) -> str | None:
    """The version's package page in the web UI: built from the page's address recorded on the version
    and the model's current name, so it follows renames."""
    page = mv.get("package_page")
    return f"{page}?name={quote(name, safe='')}&version={mv['version']}" if page else None


def version_tags(mv: dict, name: str) -> dict[str, str]:
    tags = dict(mv.get("tags") or {})
    if url := package_page_url(mv, name):
        tags[PACKAGE_URL_TAG] = url
    return tags


def version_json(mv: dict, name: str) -> dict:
    """A version as MLflow answers it, named by the name the request resolved (versions store no name)."""
    out = {k: mv.get(k) for k in ("creation_timestamp", "last_updated_timestamp", "user_id", "current_stage",
                                  "description", "source", "run_id", "status", "status_message", "run_link",
                                  "model_id")}
    out = {"name": name, **{k: v for k, v in out.items() if v not in (None, "")}}
    out["version"] = str(mv["version"])
    out["tags"] = [{"key": k, "value": v} for k, v in version_tags(mv, name).items()]
    out["aliases"] = sorted(mv.get("aliases") or ())
    return out


def model_json(model: dict, latest: list[dict] | None = None) -> dict:
    out = {k: model.get(k) for k in ("name", "creation_timestamp", "last_updated_timestamp", "description", "user_id")}
    out = {k: v for k, v in out.items() if v not in (None, "")}
    out["tags"] = [{"key": k, "value": v} for k, v in model["tags"].items()]
    out["aliases"] = [{"alias": a, "version": str(v)} for a, v in model["aliases"].items()]
    if latest:
        out["latest_versions"] = [version_json(mv, model["name"]) for mv in latest]
    return out
