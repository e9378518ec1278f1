"""Model versions: create (with semantic version and package), get, update, delete, transition-stage,
get-download-uri, tags. Search: search.py.

Version numbers come from the model meta item's `last_version`, advanced in the same transaction
that puts the version, its semver guard, its stage mark and its run link, on condition the counter
still holds the value read: concurrent creators retry and get distinct, consecutive numbers. A
small source (packages.small_source) is copied by the request before that transaction, which then
writes the version READY; any other is written PENDING_REGISTRATION and copied by the registry
worker (worker.py), which turns it READY (or FAILED_REGISTRATION) afterwards, as it finishes a copy
the request could not. Each attempt copies below a package path of its own (packages.package_path):
an attempt that loses the race never touches the winner's package, and removes its own copy."""

from __future__ import annotations

import time
import uuid

import semver as semver_lib
from botocore.exceptions import ClientError

from shared import db, keys
from shared.clock import now_ms
from shared.errors import already_exists, invalid
from shared.http import Request
from shared.registry import identity, items, messages, packages, sources, worker
from shared.registry.items import PACKAGE_URL_TAG, load_version, version_json
from shared.registry.models import LIVE
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

def _allocate(project: str, model_id: str, name: str, fields: dict, wanted: str | None, meta_read: dict | None,
              listed: list[tuple[str, int]] | None) -> dict:
    """Put the version with the next number and its semver, retrying while others win the race.
    `meta_read`: the model's meta item as just read, for the first attempt; `listed`: a small
    source's objects, copied by each attempt before its transaction."""
    pk = keys.registered_model(project, model_id)
    first = [meta_read]

    def attempt() -> dict:
        meta = first.pop() if first else items.load_meta(project, model_id)
        if meta is None or "deleted_at" in meta:
            raise identity.model_not_found(name)
        number, last = meta["last_version"] + 1, meta.get("latest_semver")
        semver = wanted or next_semver(last)
        ts, token = now_ms(), uuid.uuid4().hex
        mv = {**fields, "version": number, "semver": semver, "creation_timestamp": ts, "last_updated_timestamp": ts,
              "rev": 0, "tags": {**fields["tags"], SEMVER_TAG: semver}}
        if mv["status"] == items.PENDING:  # its package: where it goes, recorded once
            mv["package"] = packages.package_path(model_id, semver, token)
            if listed is not None:
                mv = _copied_first(project, mv, listed)
        tx = db.Tx()
        tx.update(pk, keys.MODEL_SK, "SET last_version = :n, latest_semver = :s, last_updated_timestamp = :t",
                  values={":n": number, ":s": highest(last, semver), ":t": ts, ":old": meta["last_version"]},
                  condition=f"{LIVE} AND last_version = :old")
        tx.put(items.semver_item(project, model_id, semver, number), condition="attribute_not_exists(pk)")
        tx.put(items.version_item(project, model_id, mv), condition="attribute_not_exists(pk)")
        tx.put(items.stage_item(project, model_id, mv["current_stage"], number))
        if items.linked_run(mv):
            tx.put(items.link_item(project, mv["run_id"], model_id, number))
        try:
            tx.commit(token)  # a retried request of a transaction that did commit answers success
        except ClientError as err:
            if listed is not None and db.cancellation_reasons(err):  # nothing was written: nobody's package
                _remove_copy(project, mv["package"])
            if wanted and db.cancellation_reasons(err)[1:2] == ["ConditionalCheckFailed"]:  # the semver guard
                raise already_exists(f"Model {name} already has a version with semantic version {semver}") from None
            raise
        return mv

    return db.retry_on_conflict(attempt, f"Too many concurrent versions of model {name}; retry", CREATE_ATTEMPTS)


def _remove_copy(project: str, package: str) -> None:
    """An attempt's copy that no version names: removed, or left to the model's purge (which deletes
    everything below the model's packages) if S3 refuses now; the attempt's own error stands."""
    try:
        packages.delete_package(project, package)
    except Exception:
        worker.logger.exception("an abandoned package copy stays until its model is purged", extra={"package": package})


def _copied_first(project: str, mv: dict, listed: list[tuple[str, int]]) -> dict:
    """A small source's package, copied before its version is written: the version as it is then
    written (READY, or FAILED_REGISTRATION when S3 refuses the copy, as the worker would end it). A
    copy that does not finish (time, network) leaves it PENDING: the worker's job copies the rest."""
    deadline = time.monotonic() + packages.INLINE_SECONDS
    target = packages.prefix(project, mv["package"])
    try:
        done = worker.package_fields(project, mv, lambda: packages.copy_tree(
            mv["package_from"], target, lambda: deadline - time.monotonic(), 0.0, listed=listed))
    except Exception:
        worker.logger.exception("the request's package copy did not finish; the worker's job will",
                                extra={"package": mv["package"]})
        return mv
    return {key: value for key, value in {**mv, **done}.items() if key != "package_from"}


def create_model_version(req: Request, msg: messages.CreateModelVersion) -> dict:
    """The version is written in one transaction: READY at once when its source is external or small
    (its package copied here first), else PENDING_REGISTRATION for the worker to copy (the client
    waits for READY)."""
    name, tags = msg.name, {t.key: t.value for t in msg.tags}
    for own in (packages.PACKAGE_TAG, PACKAGE_URL_TAG):  # the server's to set (a copied version brings them)
        tags.pop(own, None)
    wanted = requested_semver(tags)
    # the model (its id and meta item: one BatchGetItem once the name's id is cached) beside the source
    (model_id, found), origin = db.parallel(lambda read: read(), [
        lambda: identity.read(req.project, name, [keys.MODEL_SK]),
        lambda: sources.resolve(req.project, msg.source, msg.run_id or None, msg.model_id or None)])
    meta = found[keys.MODEL_SK]
    if meta is None or "deleted_at" in meta:  # deleted since its name was resolved
        raise identity.model_not_found(name)
    if wanted and origin.copy_of == (model_id, wanted):  # copy_model_version within a model brings the
        wanted = None                                    # source's tags, semver included: the copy gets the next one
        tags = {k: v for k, v in tags.items() if k not in (SEMVER_TAG, GITLAB_SEMVER_TAG)}
    small = None if origin.external else packages.small_source(origin.package_from)  # small or not
    run_id = origin.run_id or _candidate_run(req.project, {**meta, "name": name})
    fields = {"source": origin.source, "run_id": run_id, "model_id": origin.model_id,
              "run_link": msg.run_link or None, "description": msg.description,
              "user_id": "", "current_stage": "None", "status": items.READY if origin.external else items.PENDING,
              "tags": tags, "actor": req.token_id}  # events: who made the change (shared/events/)
    if origin.external:
        fields["tags"] = {**tags, packages.PACKAGE_TAG: packages.EXTERNAL}
        fields["storage_location"] = origin.download_uri
    else:
        fields.update(package_from=origin.package_from, package_page=packages.page_base(req.base_url, req.project))
    if not origin.run_in_project:
        fields["run_linked"] = False  # a run mlreg does not hold: no link item in a partition of nothing
    mv = _allocate(req.project, model_id, name, fields, wanted, meta, small)
    if mv.get("model_id"):
        logged_models.add_model_version(req.project, mv["model_id"], name, mv["version"])
    return {"model_version": version_json(mv, name)}


# ---- get / update / delete ------------------------------------------------------------------------------

def get_model_version(req: Request, msg: messages.VersionRef) -> dict:
    return {"model_version": version_json(load_version(req.project, msg.name, msg.version)[1], msg.name)}


def _update_version(project: str, name: str, version: int, expression: str, values: dict,
                    names: dict | None = None, updated: int | None = None, return_new: bool = True) -> dict | None:
    model_id = identity.resolve(project, name)
    try:
        return items.update_version(project, model_id, name, version, expression, values, names, updated,
                                    return_new)
    except ClientError as err:
        if "size" in str(err) and (err.response["Error"]["Code"] == "ValidationException"
                                   or "ValidationError" in db.cancellation_reasons(err)):
            raise invalid(f"The tags of model version {name} {version} would exceed 400 KB") from None
        raise


def update_model_version(req: Request, msg: messages.UpdateModelVersion) -> dict:
    ts = now_ms()
    mv = _update_version(req.project, msg.name, msg.version, "SET description = :d, last_updated_timestamp = :t",
                         {":d": msg.description, ":t": ts}, updated=ts)
    return {"model_version": version_json(mv, msg.name)}


def delete_model_version(req: Request, msg: messages.VersionRef) -> dict:
    """The version, its semver guard, stage mark, aliases and run link in one transaction (on condition
    its aliases did not change meanwhile), then its package. The number is never reused: the counter
    stays; the semver is free again."""
    name = msg.name

    def attempt() -> tuple[str, dict]:
        model_id, mv = load_version(req.project, name, msg.version)
        pk = keys.registered_model(req.project, model_id)
        aliases = sorted(mv.get("aliases") or ())
        tx = db.Tx()
        if aliases:
            tx.delete(pk, keys.version_sk(mv["version"]), "size(aliases) = :n", {":n": len(aliases)})
        else:
            tx.delete(pk, keys.version_sk(mv["version"]), condition="attribute_exists(pk) AND attribute_not_exists(aliases)")
        for alias in aliases:
            tx.delete(pk, keys.alias_sk(alias), "version = :v", {":v": mv["version"]})
        tx.delete(pk, keys.semver_sk(mv["semver"]))
        tx.delete(pk, keys.stage_sk(mv["current_stage"], mv["version"]))
        if items.linked_run(mv):
            tx.delete(keys.run(req.project, mv["run_id"]), keys.model_link_sk(model_id, mv["version"]))
        tx.update(pk, keys.MODEL_SK, "SET last_updated_timestamp = :t", values={":t": now_ms()}, condition=LIVE)
        tx.commit()
        return model_id, mv

    _, mv = db.retry_on_conflict(attempt, f"Model version {name} {msg.version} kept changing; retry")
    if mv.get("package"):  # a copy still running finds its version gone and removes what it wrote (worker.py)
        packages.delete_package(req.project, mv["package"])
    return {}


# ---- stages, download URI, tags ------------------------------------------------------------------------

def transition_model_version_stage(req: Request, msg: messages.TransitionStage) -> dict:
    """The version (with its alias copies) and its stage mark move in one transaction; with
    archive_existing_versions, so do the other versions in the target stage (found by their marks)."""
    name, stage = msg.name, msg.stage
    if msg.archive_existing_versions and stage not in items.ACTIVE_STAGES:
        raise invalid(f"Model version transition cannot archive existing model versions because '{stage}' is not "
                      f"an Active stage. Valid stages are {list(items.ACTIVE_STAGES)}")
    moved = "SET current_stage = :s, last_updated_timestamp = :t, actor = :a"

    def attempt() -> dict:
        model_id, mv = load_version(req.project, name, msg.version)
        pk, ts = keys.registered_model(req.project, model_id), now_ms()
        others = [v for v in items.versions_in_stage(req.project, model_id, stage)
                  if v["version"] != mv["version"]] if msg.archive_existing_versions else []
        tx = db.Tx()
        for version, target in ((mv, stage), *((other, "Archived") for other in others)):
            items.change_version(tx, req.project, model_id, version, moved,
                                 {":s": target, ":t": ts, ":a": req.token_id}, updated=ts)  # events: actor
            if version["current_stage"] != target:
                tx.delete(pk, keys.stage_sk(version["current_stage"], version["version"]))
                tx.put(items.stage_item(req.project, model_id, target, version["version"]))
        tx.update(pk, keys.MODEL_SK, "SET last_updated_timestamp = :t", values={":t": ts}, condition=LIVE)
        if len(tx.items) > db.TRANSACT_MAX:
            raise invalid(f"Archiving {len(others)} versions of model {name} at once takes more than one "
                          f"transaction ({len(tx.items)} writes, at most {db.TRANSACT_MAX}); archive some first")
        tx.commit()
        return {**mv, "current_stage": stage, "last_updated_timestamp": ts}

    mv = db.retry_on_conflict(attempt, f"Versions of model {name} changed during the transition; retry")
    return {"model_version": version_json(mv, name)}


def get_model_version_download_uri(req: Request, msg: messages.VersionRef) -> dict:
    _, mv = load_version(req.project, msg.name, msg.version)
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
