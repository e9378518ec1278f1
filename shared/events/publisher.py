"""The publisher's logic (functions/publisher.py is its Lambda entry point; `mlreg serve` runs the
same code against the emulated stream and queue, see local.py).

Stream batches: records arrive in commit order per item key. DynamoDB Streams routes every record of
one partition key to the same shard, and a registry model is one partition (`P#<p>#M#<name>`), so
all changes of one model come through one shard in commit order, and Lambda processes a shard one
batch at a time, in order (a parent shard before its children). The publisher keeps that order: it
publishes a batch's events sequentially and, when something fails, reports the first failed record
as the batch item failure so Lambda retries from exactly there (never skipping ahead), then sends
the batch to the on-failure destination after the last retry.

Delivery batches (SQS): one message per (change, webhook); a failed attempt that may succeed later
is postponed by the backoff delay and reported as failed; after the last retry, or on an answer
that will not change (4xx, refused address), it goes to the webhook dead-letter queue."""

from __future__ import annotations

import functools
import json
from typing import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from shared import db, keys
from shared.events import bus, mapping, secrets, webhooks
from shared.events.schema import DomainEvent

logger = Logger(service="mlreg-publisher")
DELIVERY_THREADS = 10


class _Stop(Exception):
    def __init__(self, sequence: str):
        self.sequence = sequence


def handle(event: dict, context=None) -> dict:
    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":
        return deliveries(records)
    return stream(records)


# ---- stream -> bus and delivery queue ---------------------------------------------------------------

def _failure(sequence: str | None) -> dict:
    return {"batchItemFailures": [{"itemIdentifier": sequence}] if sequence else []}


def _names() -> Callable[[str, str], str | None]:
    """(project, model id) -> the model's name, read once per batch from its meta item (a purged
    model's stays a while for this: shared/registry/items.py TOMBSTONE_DAYS)."""
    @functools.cache
    def name_of(project: str, model_id: str) -> str | None:
        return (db.get(keys.registered_model(project, model_id), keys.MODEL_SK) or {}).get("name")
    return name_of


def stream(records: list[dict]) -> dict:
    mapped: list[tuple[str, list[DomainEvent]]] = []
    stop_at, name_of = None, _names()
    for record in records:
        sequence = record["dynamodb"]["SequenceNumber"]
        try:
            mapped.append((sequence, mapping.events_from_record(record, name_of)))
        except Exception:  # a record we cannot read: stop here, Lambda retries then dead-letters it
            logger.exception("unmappable stream record", extra={"sequence": sequence})
            stop_at = sequence
            break
    try:
        _publish(mapped)
    except _Stop as stop:
        return _failure(stop.sequence)
    return _failure(stop_at)


def _publish(mapped: list[tuple[str, list[DomainEvent]]]) -> None:
    flat = [(sequence, e) for sequence, events in mapped for e in events]
    if not flat:
        return
    try:
        sent = bus.put([e for _, e in flat])
    except Exception:
        logger.exception("PutEvents failed")
        raise _Stop(flat[0][0]) from None
    if sent < len(flat):  # records before the failed one are complete: fan them out, retry from it
        failed_sequence = flat[sent][0]
        _fan_out([pair for pair in flat[:sent] if pair[0] != failed_sequence])
        raise _Stop(failed_sequence)
    _fan_out(flat)


def _fan_out(published: list[tuple[str, DomainEvent]]) -> None:
    """One delivery message per (event, subscribed active webhook)."""
    hooks: dict[str, list[dict]] = {}
    messages, first_sequence = [], None
    for sequence, event in published:
        if not event.webhook_event:
            continue
        project = event.detail.project
        if project not in hooks:
            hooks[project] = list(db.iter_query(keys.webhooks(project)))
        subscribed = [h for h in hooks[project] if h.get("status") == "ACTIVE" and event.webhook_event in h["events"]]
        if subscribed and first_sequence is None:
            first_sequence = sequence
        payload = event.webhook_payload
        if subscribed and event.webhook_event == "registered_model.created":
            payload = {**payload, "tags": _model_tags(project, event.detail.model_id)}
        for hook in subscribed:
            messages.append({"project": project, "webhook_id": hook["webhook_id"], "event": event.webhook_event,
                             "payload": payload, "delivery_id": webhooks.delivery_id(event.detail.event_id, hook["webhook_id"]),
                             "event_time": _iso(event.detail.timestamp)})
    if messages:
        try:
            webhooks.enqueue(messages)
        except Exception:
            logger.exception("enqueueing webhook deliveries failed")
            raise _Stop(first_sequence) from None


def _model_tags(project: str, model_id: str) -> dict[str, str]:
    """MLflow's registered_model.created carries the tags; they are separate items, written in the
    same transaction as the model, so they are there by now (one Query)."""
    return {i["key"]: i["value"] for i in db.query_all(keys.registered_model(project, model_id), "T#",
                                                        consistent=True)}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()


# ---- delivery queue -> receivers ----------------------------------------------------------------------

def deliveries(records: list[dict]) -> dict:
    with ThreadPoolExecutor(DELIVERY_THREADS) as pool:
        failed = [r["messageId"] for r, ok in zip(records, pool.map(_delivery, records)) if not ok]
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}


def _delivery(record: dict) -> bool:
    """True when the message is done with (delivered, dropped or dead-lettered)."""
    message = json.loads(record["body"])
    attempt = int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1))
    try:
        outcome = _attempt(message)
        if outcome is None or outcome.ok:
            return True
        delays = webhooks.retry_delays()
        if outcome.retryable and attempt <= len(delays):
            logger.warning("webhook delivery failed; retrying", extra={"webhook": message["webhook_id"],
                           "attempt": attempt, "status": outcome.status, "error": outcome.error})
            webhooks.postpone(record["receiptHandle"], delays[attempt - 1])
            return False
        logger.error("webhook delivery dead-lettered", extra={"webhook": message["webhook_id"], "attempt": attempt,
                     "status": outcome.status, "error": outcome.error})
        webhooks.dead_letter(message, outcome, attempt)
        return True
    except Exception:  # the queue's own redrive policy is the last safety net
        logger.exception("webhook delivery crashed", extra={"webhook": message.get("webhook_id")})
        return False


def _attempt(message: dict) -> webhooks.Outcome | None:
    """None: the webhook was deleted or disabled since, so there is nothing to deliver."""
    hook = db.get(keys.webhooks(message["project"]), keys.webhook_sk(message["webhook_id"]))
    if hook is None or hook.get("status") != "ACTIVE":
        return None
    secret = secrets.decrypt(hook["secret"], message["project"], hook["webhook_id"]) if hook.get("secret") else None
    return webhooks.deliver(hook["url"], secret, message["event"], message["payload"], message["delivery_id"],
                            message["event_time"])
