"""Model versions: create (with semantic version and package), get, update, delete, search,
transition-stage, get-download-uri, tags.

Version numbers come from the model meta item's `last_version`, advanced in the same transaction
that puts the version, its semver guard and its run link, on condition the counter still holds
the value read: concurrent creators retry and get distinct, consecutive numbers."""

from __future__ import annotations

import uuid

import semver as semver_lib
from botocore.exceptions import ClientError

from shared import db, keys, pagination
from shared.clock import now_ms
from shared.errors import already_exists, invalid
from shared.filters import parse_version_filter, parse_version_order_by, version_filter_clauses
from shared.http import Request
from shared.registry import items, messages, packages, sources
from shared.registry.items import PACKAGE_URL_TAG, load_version, version_json
from shared.tracking import experiments, logged_models, runs
from shared.validation import key_bytes

SEMVER_TAG = "mlreg.version"  # ours: set on every version
GITLAB_SEMVER_TAG = "gitlab.version"  # GitLab's name for the same thing, accepted on create
FIRST_SEMVER = "1.0.0"
CREATE_ATTEMPTS = 64


# ---- semantic versions -----------------------------------------------------------------------------

def parse_semver(text: str, field: str = SEMVER_TAG) -> semver_lib.Version:
    try:
        return semver_lib.Version.parse(text)
    except (TypeError, ValueError):
        raise invalid(f"Invalid semantic version {text!r} in tag '{field}': expected MAJOR.MINOR.PATCH "
                      "(https://semver.org), e.g. 1.4.0 or 2.0.0-rc.1") from None


def requested_semver(tags: dict[str, str]) -> str | None:
    """The semver a creator asks for in the version tags (ours or GitLab's), validated."""
    given = {tags[k] for k in (SEMVER_TAG, GITLAB_SEMVER_TAG) if tags.get(k)}
    if len(given) > 1:
        raise invalid(f"Tags '{SEMVER_TAG}' and '{GITLAB_SEMVER_TAG}' disagree: {sorted(given)}")
    if not given:
        return None
    text = key_bytes(given.pop())  # it keys the semver guard
    parse_semver(text)
    return text


def next_semver(latest: str | None) -> str:
    """The rule when none is given: bump the MINOR of the model's highest semver (patch to 0,
    pre-release and build dropped); the first version is 1.0.0."""
    return str(semver_lib.Version.parse(latest).bump_minor()) if latest else FIRST_SEMVER


def highest(a: str | None, b: str) -> str:
    return b if a is None or semver_lib.Version.parse(b) > semver_lib.Version.parse(a) else a


def _candidate_run(project: str, meta: dict) -> str:
    """A version without a run gets one in the model's experiment, so users can log params,
    metrics and files to the version through its run_id."""
    run_id = uuid.uuid4().hex
    experiment_id = meta["experiment_id"]
    run = {"run_id": run_id, "run_uuid": run_id, "run_name": f"{meta['name']}-candidate", "experiment_id": experiment_id,
           "user_id": "", "status": "FINISHED", "start_time": now_ms(), "end_time": None,
           "artifact_uri": f"{experiments.artifact_location(experiment_id)}/{run_id}/artifacts",
           "lifecycle_stage": runs.ACTIVE}
    runs.create(project, run, {runs.RUN_NAME_TAG: run["run_name"], "mlreg.candidate_for": meta["name"]})
    return run_id


# ---- create -------------------------------------------------------------------------------------------

def _allocate(project: str, name: str, fields: dict, wanted: str | None, page_base_url: str | None) -> dict:
    """Put the version with the next number and its semver, retrying while others win the race.
    `page_base_url`: where the version's package page is linked from (None: no package, no page)."""
    pk = keys.registered_model(project, name)

    def attempt() -> dict:
        meta = items.load_meta(project, name)
        number, last = meta["last_version"] + 1, meta.get("latest_semver")
        semver = wanted or next_semver(last)
        ts = now_ms()
        page = {PACKAGE_URL_TAG: packages.page_url(page_base_url, project, name, number)} if page_base_url else {}
        mv = {**fields, "name": name, "version": number, "semver": semver, "creation_timestamp": ts,
              "last_updated_timestamp": ts, "rev": 0, "tags": {**fields["tags"], SEMVER_TAG: semver, **page}}
        tx = db.Tx()
        tx.update(pk, keys.MODEL_SK, "SET last_version = :n, latest_semver = :s, last_updated_timestamp = :t",
                  values={":n": number, ":s": highest(last, semver), ":t": ts, ":old": meta["last_version"]},
                  condition="last_version = :old")
        tx.put(items.semver_item(project, name, semver, number), condition="attribute_not_exists(pk)")
        tx.put(items.version_item(project, mv), condition="attribute_not_exists(pk)")
        if items.linked_run(mv):
            tx.put(items.link_item(project, mv["run_id"], name, number))
        try:
            tx.commit()
        except ClientError as err:
            if wanted and db.cancellation_reasons(err)[1:2] == ["ConditionalCheckFailed"]:  # the semver guard
                raise already_exists(f"Model {name} already has a version with semantic version {semver}") from None
            raise
        return mv

    return db.retry_on_conflict(attempt, f"Too many concurrent versions of model {name}; retry", CREATE_ATTEMPTS)


def create_model_version(req: Request, msg: messages.CreateModelVersion) -> dict:
    name, tags = msg.name, {t.key: t.value for t in msg.tags}
    for own in (packages.PACKAGE_TAG, PACKAGE_URL_TAG):  # the server's to set (a copied version brings them)
        tags.pop(own, None)
    wanted = requested_semver(tags)
    meta = items.load_meta(req.project, name)
    origin = sources.resolve(req.project, msg.source, msg.run_id or None, msg.model_id or None)
    if wanted and origin.copy_of == (name, wanted):  # copy_model_version within a model brings the source's
        wanted = None                                 # tags, semver included: the copy gets the next one
        tags = {k: v for k, v in tags.items() if k not in (SEMVER_TAG, GITLAB_SEMVER_TAG)}
    run_id = origin.run_id or _candidate_run(req.project, meta)
    fields = {"source": origin.source, "run_id": run_id, "model_id": origin.model_id,
              "run_link": msg.run_link or None, "description": msg.description,
              "user_id": "", "current_stage": "None", "status": items.READY if origin.external else items.PENDING,
              "tags": tags, "actor": req.token_id}  # events: who made the change (shared/events/)
    if origin.external:
        fields["tags"] = {**tags, packages.PACKAGE_TAG: packages.EXTERNAL}
        fields["storage_location"] = origin.download_uri
    if not origin.run_in_project:
        fields["run_linked"] = False  # a run mlreg does not hold: no link item in a partition of nothing
    mv = _allocate(req.project, name, fields, wanted, None if origin.external else req.base_url)
    if not origin.external:
        mv = _fill_package(req.project, mv, origin.package_from)
    if mv.get("model_id"):
        logged_models.add_model_version(req.project, mv["model_id"], name, mv["version"])
    return {"model_version": version_json(mv)}


def _fill_package(project: str, mv: dict, source_prefix: str) -> dict:
    """Copy the source into the version's package, then mark the version READY (or FAILED)."""
    target = packages.package_prefix(project, mv["name"], mv["semver"])
    try:
        copied = packages.copy_tree(source_prefix, target)
        status, message = items.READY, None if copied else f"The source {mv['source']} holds no files"
    except ClientError as err:
        status, message = items.FAILED, f"Copying the package failed: {err}"
    return items.update_version(project, mv["name"], mv["version"], "SET #s = :s, status_message = :m",
                                {":s": status, ":m": message or ""}, {"#s": "status"})


# ---- get / update / delete ------------------------------------------------------------------------------

def get_model_version(req: Request, msg: messages.VersionRef) -> dict:
    return {"model_version": version_json(load_version(req.project, msg.name, msg.version))}


def _update_version(project: str, name: str, version, expression: str, values: dict,
                    names: dict | None = None, return_new: bool = True) -> dict | None:
    try:
        return items.update_version(project, name, version, expression, values, names, return_new)
    except ClientError as err:
        if "size" in str(err) and (err.response["Error"]["Code"] == "ValidationException"
                                   or "ValidationError" in db.cancellation_reasons(err)):
            raise invalid(f"The tags of model version {name} {version} would exceed 400 KB") from None
        raise


def update_model_version(req: Request, msg: messages.UpdateModelVersion) -> dict:
    mv = _update_version(req.project, msg.name, msg.version, "SET description = :d, last_updated_timestamp = :t",
                         {":d": msg.description, ":t": now_ms()})
    return {"model_version": version_json(mv)}


def delete_model_version(req: Request, msg: messages.VersionRef) -> dict:
    """The version, its semver guard, aliases and run link in one transaction (on condition its
    aliases did not change meanwhile), then its package. The number is never reused: the counter
    stays; the semver is free again."""
    name = msg.name
    pk = keys.registered_model(req.project, name)

    def attempt() -> dict:
        mv = load_version(req.project, name, msg.version)
        aliases = sorted(mv.get("aliases") or ())
        tx = db.Tx()
        if aliases:
            tx.delete(pk, keys.version_sk(mv["version"]), "size(aliases) = :n", {":n": len(aliases)})
        else:
            tx.delete(pk, keys.version_sk(mv["version"]), condition="attribute_exists(pk) AND attribute_not_exists(aliases)")
        for alias in aliases:
            tx.delete(pk, keys.alias_sk(alias), "version = :v", {":v": mv["version"]})
        tx.delete(pk, keys.semver_sk(mv["semver"]))
        if items.linked_run(mv):
            tx.delete(keys.run(req.project, mv["run_id"]), runs.link_sk(name, mv["version"]))
        tx.update(pk, keys.MODEL_SK, "SET last_updated_timestamp = :t", values={":t": now_ms()},
                  condition="attribute_exists(pk)")
        tx.commit()
        return mv

    mv = db.retry_on_conflict(attempt, f"Model version {name} {msg.version} kept changing; retry")
    if not packages.is_external(mv):
        packages.delete_tree(packages.package_prefix(req.project, name, mv["semver"]))
    return {}


# ---- stages, download URI, tags ------------------------------------------------------------------------

def transition_model_version_stage(req: Request, msg: messages.TransitionStage) -> dict:
    name, stage = msg.name, msg.stage
    if msg.archive_existing_versions and stage not in items.ACTIVE_STAGES:
        raise invalid(f"Model version transition cannot archive existing model versions because '{stage}' is not "
                      f"an Active stage. Valid stages are {list(items.ACTIVE_STAGES)}")
    pk, moved = keys.registered_model(req.project, name), "SET current_stage = :s, last_updated_timestamp = :t, actor = :a"

    def attempt() -> dict:
        mv, ts = load_version(req.project, name, msg.version), now_ms()
        others = [v for v in items.iter_versions(req.project, name)
                  if v["current_stage"] == stage and v["version"] != mv["version"]] if msg.archive_existing_versions else []
        tx = db.Tx()
        items.change_version(tx, req.project, mv, moved, {":s": stage, ":t": ts, ":a": req.token_id})  # events: actor
        for other in others:
            items.change_version(tx, req.project, other, moved, {":s": "Archived", ":t": ts, ":a": req.token_id})
        tx.update(pk, keys.MODEL_SK, "SET last_updated_timestamp = :t", values={":t": ts}, condition="attribute_exists(pk)")
        tx.commit()
        return {**mv, "current_stage": stage, "last_updated_timestamp": ts}

    mv = db.retry_on_conflict(attempt, f"Versions of model {name} changed during the transition; retry")
    return {"model_version": version_json(mv)}


def get_model_version_download_uri(req: Request, msg: messages.VersionRef) -> dict:
    mv = load_version(req.project, msg.name, msg.version)
    return {"artifact_uri": packages.version_download_uri(mv)}


def _fixed_tag(key: str) -> None:
    if key in (SEMVER_TAG, GITLAB_SEMVER_TAG):
        raise invalid(f"Tag '{key}' holds the version's semantic version, which is fixed once the version exists")
    if key == packages.PACKAGE_TAG:
        raise invalid(f"Tag '{key}' tells whether the version has a package, which is fixed once the version exists")
    if key == PACKAGE_URL_TAG:
        raise invalid(f"Tag '{key}' holds the address of the version's package page, which mlreg keeps")


def set_model_version_tag(req: Request, msg: messages.SetModelVersionTag) -> dict:
    _fixed_tag(msg.key)
    _update_version(req.project, msg.name, msg.version, "SET tags.#k = :v, actor = :a",
                    {":v": msg.value, ":a": req.token_id}, {"#k": msg.key}, return_new=False)  # events: actor
    return {}


def delete_model_version_tag(req: Request, msg: messages.DeleteModelVersionTag) -> dict:
    """A tag that is not there is a silent success, as in MLflow; a missing version is 404."""
    _fixed_tag(msg.key)
    _update_version(req.project, msg.name, msg.version, "REMOVE tags.#k SET actor = :a",
                    {":a": req.token_id}, {"#k": msg.key}, return_new=False)  # events: actor
    return {}


# ---- search --------------------------------------------------------------------------------------------

def _equal_to(text: str | None, key: str) -> str | None:
    """The value of an `attribute <key> = '...'` clause of the filter, if any (it picks the index)."""
    for clause in version_filter_clauses(text):
        if clause.entity_type == "attribute" and clause.key == key and clause.comparator == "=":
            return clause.value
    return None


def _candidates(project: str, text: str | None):
    """One paged Query: the model's partition, the run's versions (GSI2) or all of the project (GSI1)."""
    name, run_id = _equal_to(text, "name"), _equal_to(text, "run_id")
    if name:
        return items.iter_versions(project, name)
    if run_id:
        return (items.strip(i) for i in db.iter_query(keys.versions_by_run(project, run_id), index="gsi2"))
    return (items.strip(i) for i in db.iter_query(keys.versions_collection(project), index="gsi1"))


def search_model_versions(req: Request, msg: messages.SearchModelVersions) -> dict:
    matches, sort_key = parse_version_filter(msg.filter), parse_version_order_by(msg.order_by)
    found = []
    for mv in _candidates(req.project, msg.filter):
        view = {k: mv.get(k) for k in ("name", "version", "run_id", "source", "current_stage", "creation_timestamp",
                                       "last_updated_timestamp")}
        view["tags"] = mv.get("tags") or {}
        if matches(view):
            found.append((sort_key(view), mv))
    page, token = pagination.offset_page(req.project, [msg.filter, msg.order_by], msg.page_token, found,
                                         msg.max_results)
    return pagination.with_token({"model_versions": [version_json(mv) for mv in page]}, token)
