"""`mlreg serve`: the same publisher against the emulator (moto): an EventBridge bus, the webhook
delivery queue and its dead-letter queue, and two pollers standing in for Lambda's event sources.

- The stream poller reads the table's stream in order and calls the publisher with the Lambda
  stream event; on a reported failure it retries from that record, and after STREAM_RETRIES sends
  the batch to the publisher dead-letter queue and moves on (as the deployed event source does).
- The queue poller receives delivery messages and calls the publisher with the Lambda SQS event,
  deleting what it reports done (the failed ones were postponed by the publisher itself).

The stream is read in-process (`mlreg.emulator.StreamReader`), under the emulator's read lock: moto
applies a transaction item by item and undoes it on failure, so a reader outside the lock could see
records of a transaction that then fails; and leaving the lock waits until what was read is on disk,
so no event is published for a write a crash could take back. Only records of registry models
(`P#<p>#M#<id>`) are handed over, as only those concern either consumer: run writes, most of the
stream, are passed over unread."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from typing import Callable

import boto3

from shared import keys
from shared.events import publisher

BUS = "mlreg-local"
DELIVERY_QUEUE, WEBHOOK_DLQ, PUBLISHER_DLQ = "mlreg-webhook-deliveries", "mlreg-webhook-dead-letters", "mlreg-publisher-dead-letters"
POLL_SECONDS = 0.1
# A queue is long-polled: an idle poller waits inside the emulated queue, which wakes it on a new
# message, instead of asking ten times a second (each ask ~1.4 ms of the service's CPU, and of its
# GIL, which the requests share). A message made visible again by a retry's delay is seen within this.
QUEUE_WAIT_SECONDS = 1
STREAM_BATCH = 100
STREAM_RETRIES = 5
log = logging.getLogger("mlreg.events")


class LocalConsumer:
    """A Lambda function with two event sources, the table's stream and a queue, stood in for by two
    pollers. Subclasses create their queues in `_setup` (setting `queue` and `stream_dlq`)."""

    handler: Callable[[dict], dict]
    queue: str
    stream_dlq: str
    stream_batch = STREAM_BATCH

    def __init__(self, table: str, stream):
        self.table, self.stream = table, stream  # stream: mlreg.emulator.StreamReader
        self._stop = threading.Event()
        self._last: str | None = None
        self.handled: str | None = None  # every record up to this one is done with (the stream may drop it)
        self._failures: dict[str, int] = {}

    def _setup(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")  # moto knows no account endpoints
        self.ddb, self.sqs = boto3.client("dynamodb"), boto3.client("sqs")
        self._setup()
        self.stream_arn = self.ddb.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        self._last = self.handled = self.stream.latest()  # the stream's records so far (a restored snapshot's) were handled before
        self.stream.followers.append(self)
        for target in (self._stream_loop, self._queue_loop):
            threading.Thread(target=target, name=f"{type(self).__name__}{target.__name__}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _queue(self, name: str, attributes: dict | None = None) -> str:
        return self.sqs.create_queue(QueueName=name, Attributes=attributes or {})["QueueUrl"]

    def _arn(self, queue: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    # -- stream --
    @staticmethod
    def wants(record: dict) -> bool:
        return keys.MODEL_PARTITION.match(record["dynamodb"]["Keys"]["pk"]["S"]) is not None

    def _read(self) -> list[dict]:
        records, self._last = self.stream.read(self._last, self.stream_batch, self.wants)
        return records

    def _stream_loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                before = self._last
                records = self._read()
                if records:
                    self._publish([self._lambda_record(r) for r in records], before)
                self.handled = self._last  # a failed batch set it back to read again from there
            except Exception:
                log.exception("local stream poller")

    def _lambda_record(self, record: dict) -> dict:
        when = record["dynamodb"].get("ApproximateCreationDateTime")
        if isinstance(when, datetime):  # moto's is naive UTC
            record["dynamodb"]["ApproximateCreationDateTime"] = when.replace(tzinfo=when.tzinfo or timezone.utc).timestamp()
        return {**record, "eventSourceARN": self.stream_arn}

    def _publish(self, records: list[dict], before: str | None) -> None:
        try:
            failed = self.handler({"Records": records}).get("batchItemFailures") or []
        except Exception:  # as Lambda: a raising function fails the whole batch
            log.exception("local stream handler")
            failed = [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]
        if not failed:
            return
        sequence = failed[0]["itemIdentifier"]
        attempts = self._failures[sequence] = self._failures.get(sequence, 0) + 1
        index = next(i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] == sequence)
        if attempts <= STREAM_RETRIES:  # read again from the failed record
            self._last = records[index - 1]["dynamodb"]["SequenceNumber"] if index else before
            time.sleep(min(2.0, 0.1 * 2 ** attempts))
            return
        log.error("stream records dead-lettered after %d attempts (from sequence %s)", attempts, sequence)
        self.sqs.send_message(QueueUrl=self.stream_dlq, MessageBody=json.dumps(
            {"first_sequence": sequence, "records": records[index:]}, default=str))
        self._failures.pop(sequence, None)

    # -- queue --
    def _queue_loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10,
                                                    WaitTimeSeconds=QUEUE_WAIT_SECONDS,
                                                    AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
                if messages:
                    self._deliver(messages)
            except Exception:
                log.exception("local delivery poller")

    def _deliver(self, messages: list[dict]) -> None:
        records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                    "attributes": m.get("Attributes", {}), "eventSource": "aws:sqs"} for m in messages]
        failed = {f["itemIdentifier"] for f in self.handler({"Records": records})["batchItemFailures"]}
        done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages) if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(QueueUrl=self.queue, Entries=done)


class LocalEvents(LocalConsumer):
    handler = staticmethod(publisher.handle)

    def _setup(self) -> None:
        events = boto3.client("events")
        bus = os.environ.setdefault("MLREG_EVENT_BUS", BUS)
        if bus != "default" and bus not in [b["Name"] for b in events.list_event_buses()["EventBuses"]]:
            events.create_event_bus(Name=bus)
        dlq = self._queue(WEBHOOK_DLQ)
        from shared.events.webhooks import retry_delays

        # The redrive policy is the safety net for crashes; the publisher dead-letters on its own.
        redrive = json.dumps({"deadLetterTargetArn": self._arn(dlq), "maxReceiveCount": len(retry_delays()) + 2})
        self.queue = self._queue(DELIVERY_QUEUE, {"RedrivePolicy": redrive, "VisibilityTimeout": "60"})
        self.stream_dlq = self._queue(PUBLISHER_DLQ)
        os.environ.update(MLREG_WEBHOOK_QUEUE_URL=self.queue, MLREG_WEBHOOK_DLQ_URL=dlq)
