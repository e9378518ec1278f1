"""The registry worker: the work no request waits for (functions/worker.py is its Lambda entry point;
`mlreg serve` runs the same code against the emulated stream and queue, see local.py).

Two jobs, both idempotent (a job run twice, or again after a crash, finds what is done and does the rest):
- `package`: a version written PENDING_REGISTRATION gets its package copied (shared/registry/packages.py),
  then turns READY (its files' count and bytes on the version, each file's size and SHA-256 in the
  package's manifest) or FAILED_REGISTRATION with a message the client shows.
- `purge`: a model marked deleted (`deleted_at`: its name is already free and readers no longer find it)
  loses its packages, versions, aliases, tags, semver guards, stage marks and run links, a page at a
  time; then its meta item is marked `purged_at` (the `Registered Model Deleted` event) and expires.

How jobs arrive: the table's stream (INSERT of a PENDING version; MODIFY of a meta item that gains
`deleted_at`) -> `handle` sends one message per job to the jobs queue; a failure fails the stream batch
(retried, then sent to the dead-letter queue). The jobs queue -> `handle` runs the jobs. A job that
fails is reported failed: SQS shows it again after the visibility timeout and, after the queue's
maximum receives, moves it to the dead-letter queue, whose alarm fires. A job whose time runs out
(a Lambda has 15 minutes; a package of 1 TB copies for longer) sends its own continuation (a fresh
message, so it does not use up receives) and picks up where it stopped: finished files and parts are
kept (docs/registry.md, "The registry worker")."""

from __future__ import annotations

import json
import os
import re
import time
from functools import cache
from typing import Callable

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from shared import db, keys
from shared.clock import now_ms
from shared.errors import MlflowError
from shared.registry import items, packages

logger = Logger(service="mlreg-registry-worker")
RESERVE_SECONDS = 60.0  # no copy or page starts with less time left: a part copy takes seconds
PURGE_PAGE = 500  # items per Query while purging
LOCAL_SECONDS = 900.0  # `mlreg serve`: a job's time, as a Lambda's timeout (MLREG_WORKER_SECONDS)
MAX_RECEIVES = 5  # deliveries of a failing job before the queue moves it to the dead-letter queue
RETRY_SECONDS = 10  # a failed job shows again after this times its receive count


@cache
def _sqs():
    return boto3.client("sqs")


def queue_url() -> str:
    return os.environ["MLREG_WORKER_QUEUE_URL"]


def handle(event: dict, context=None) -> dict:
    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":
        return run_jobs(records, _time_left(context))
    enqueue([job for record in records if (job := job_of(record))])
    return {"batchItemFailures": []}


def _time_left(context) -> Callable[[], float]:
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        return lambda: context.get_remaining_time_in_millis() / 1000
    deadline = time.monotonic() + float(os.environ.get("MLREG_WORKER_SECONDS") or LOCAL_SECONDS)
    return lambda: deadline - time.monotonic()


# ---- stream -> jobs ---------------------------------------------------------------------------------

def job_of(record: dict) -> dict | None:
    """The job a stream record asks for, if any."""
    data = record.get("dynamodb") or {}
    key = db.from_item(data.get("Keys") or {})
    match = keys.MODEL_PARTITION.match(str(key.get("pk", "")))
    if not match:
        return None
    old = db.from_item(data["OldImage"]) if data.get("OldImage") else None
    new = db.from_item(data["NewImage"]) if data.get("NewImage") else None
    return _job(match, key.get("sk", ""), old, new)


def _job(match: re.Match, sk: str, old: dict | None, new: dict | None) -> dict | None:
    """A pending version was inserted: package it; a model was marked deleted: purge it."""
    where = {"project": match["project"], "model_id": match["model_id"]}
    if sk.startswith(keys.VERSION_PREFIX) and new and not old and new.get("status") == items.PENDING:
        return {"job": "package", **where, "version": new["version"], "package": new.get("package")}
    if sk == keys.MODEL_SK and new and new.get("deleted_at") and not (old or {}).get("deleted_at"):
        return {"job": "purge", **where}
    return None


def enqueue(jobs: list[dict]) -> None:
    for i in range(0, len(jobs), 10):
        entries = [{"Id": str(n), "MessageBody": json.dumps(job)} for n, job in enumerate(jobs[i:i + 10])]
        failed = _sqs().send_message_batch(QueueUrl=queue_url(), Entries=entries).get("Failed")
        if failed:
            raise RuntimeError(f"jobs queue refused {len(failed)} messages: {failed[0].get('Message')}")


# ---- the jobs -----------------------------------------------------------------------------------------

def run_jobs(records: list[dict], time_left: Callable[[], float]) -> dict:
    """One job per message, in turn (a package copy is parallel inside)."""
    failed = []
    for record in records:
        job = json.loads(record["body"])
        try:
            JOBS[job["job"]](job, time_left)
        except packages.OutOfTime:
            logger.info("job continues in a new message", extra={"job": job})
            enqueue([job])
        except Exception:
            logger.exception("registry job failed; the queue retries it", extra={"job": job})
            failed.append(record["messageId"])
            _postpone(record)
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}


def _postpone(record: dict) -> None:
    """Show a failed job again soon (the visibility timeout, long enough for the longest job, is not)."""
    receives = int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1))
    try:
        _sqs().change_message_visibility(QueueUrl=queue_url(), ReceiptHandle=record["receiptHandle"],
                                         VisibilityTimeout=RETRY_SECONDS * receives)
    except ClientError:
        logger.exception("could not postpone the failed job; it shows again after the visibility timeout")


def package(job: dict, time_left: Callable[[], float]) -> None:
    project, model_id, number = job["project"], job["model_id"], job["version"]
    mv = items.get_version(project, model_id, number)
    if mv is None:  # deleted while pending: what a copy wrote goes too
        if job.get("package"):
            packages.delete_package(project, job["package"])
        return
    if mv["status"] != items.PENDING:
        return  # done by an earlier delivery of this job
    target = packages.prefix(project, mv["package"])
    register(project, model_id, mv, lambda: packages.copy_tree(mv["package_from"], target, time_left, RESERVE_SECONDS,
                                                               pause=packages.COPY_PAUSE_SECONDS))


def package_fields(project: str, mv: dict, copy: Callable[[], list[packages.File]]) -> dict:
    """Copy a version's package (`copy`) and write its manifest. Returns the fields the version ends
    with: READY (its files' count and bytes), or FAILED_REGISTRATION when S3 refuses the copy. Shared
    by the worker and the request's own copy of a small source (versions.py); OutOfTime and other
    errors pass through."""
    try:
        files = copy()
        # an empty source registers as with MLflow (which never reads it); the message says so
        status, message = items.READY, "" if files else f"The source {mv['source']} holds no files"
    except ClientError as err:
        files, status, message = [], items.FAILED, f"Copying the package from {mv['source']} failed: {err}"
    if files:
        packages.write_manifest(project, mv["package"], files)
    return {"status": status, "status_message": message, "package_files": len(files),
            "package_bytes": sum(f.size for f in files)}


def register(project: str, model_id: str, mv: dict, copy: Callable[[], list[packages.File]]) -> dict | None:
    """A pending version's package copied (`package_fields`), then the version turned READY or
    FAILED_REGISTRATION. Returns the fields it set; None if the version was deleted during the copy
    (what the copy wrote is removed then). OutOfTime and other errors pass through, leaving the
    version PENDING."""
    done = package_fields(project, mv, copy)
    try:
        items.update_version(project, model_id, model_id, mv["version"],
                             "SET #s = :s, status_message = :m, package_files = :n, package_bytes = :b "
                             "REMOVE package_from, inline_until",
                             {":s": done["status"], ":m": done["status_message"], ":n": done["package_files"],
                              ":b": done["package_bytes"]}, {"#s": "status"}, return_new=False)
    except MlflowError:  # the version was deleted during the copy
        packages.delete_package(project, mv["package"])
        return None
    return done


def purge(job: dict, time_left: Callable[[], float]) -> None:
    project, model_id = job["project"], job["model_id"]
    meta = items.load_meta(project, model_id)
    if meta is None or "deleted_at" not in meta or meta.get("purged_at"):
        return
    pk = keys.registered_model(project, model_id)
    packages.delete_tree(packages.model_packages_prefix(project, model_id))  # every package made since ids
    while True:
        if time_left() < RESERVE_SECONDS:
            raise packages.OutOfTime
        found, _ = db.query(pk, limit=PURGE_PAGE, consistent=True)
        doomed = [i for i in found if i["sk"] != keys.MODEL_SK]
        if not doomed:
            break
        versions = [i for i in doomed if i["sk"].startswith(keys.VERSION_PREFIX)]
        for mv in versions:  # a package of the layout before ids sits elsewhere
            below = mv.get("package") and packages.prefix(project, mv["package"])
            if below and not below.startswith(packages.model_packages_prefix(project, model_id)):
                packages.delete_package(project, mv["package"])
        links = [(keys.run(project, mv["run_id"]), keys.model_link_sk(model_id, mv["version"]))
                 for mv in versions if items.linked_run(mv)]
        db.batch_delete(links + [(pk, i["sk"]) for i in doomed])
    now = now_ms()
    try:
        db.update(pk, keys.MODEL_SK, "SET purged_at = :t, expires_at = :e", values={
            ":t": now, ":e": now // 1000 + items.TOMBSTONE_DAYS * 86400}, condition="attribute_not_exists(purged_at)")
    except ClientError as err:
        if not db.is_condition_failure(err):
            raise


JOBS: dict[str, Callable[[dict, Callable[[], float]], None]] = {"package": package, "purge": purge}


def pending_jobs(items_: list[dict]) -> list[dict]:
    """The jobs a table's items still call for (`mlreg serve` at start: its queue does not outlive it)."""
    found = []
    for item in items_:
        match = keys.MODEL_PARTITION.match(item["pk"])
        unfinished = match and not item.get("purged_at")  # a pending version, a deleted model not purged
        if unfinished and (job := _job(match, item["sk"], None, item)):
            found.append(job)
    return found
