"""Emulated DynamoDB and S3 (moto) inside this process, durable in a data directory.

Handlers call moto in-process; an HTTP moto server in the same process shares that state so clients
can follow presigned S3 URLs, and checks signatures as AWS does (mlreg/signatures.py). Every write
is on disk before it is answered: table writes through the write-ahead log of mlreg/journal.py,
objects and multipart parts as files (mlreg/objects.py). So `kill -9` at any moment loses no
acknowledged write, and a restart reads a snapshot plus a short log.

moto's DynamoDB is not thread-safe (two transactions can both pass their conditions, a read can see
half a transaction); DynamoDB itself isolates them. Here writes take turns and reads run together
(a reader/writer lock around every DynamoDB request, whichever way it arrives)."""

from __future__ import annotations

import copy
import gc
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import botocore

from mlreg import dynamodb_in_process, migrations, moto_speedups, part_puts, s3_in_process, signatures
from mlreg.journal import Journal
from mlreg.objects import ObjectFiles, patch_moto_s3
from shared import keys
from shared import table as table_def

S3_MEMORY_BYTES = 16 * 1024 * 1024
FOLD_CHECK_SECONDS = 5.0
FOLD_MIN_LOG_BYTES = 16 * 1024 * 1024  # logs are folded into the snapshot once they outgrow it (and this)
RECLAIM_SECONDS = 600.0  # frozen objects go through one full collection this often (freeze_survivors)
READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable", "ListTables",
         "DescribeTimeToLive", "DescribeContinuousBackups", "ListTagsOfResource"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


class ReadWriteLock:
    """Many readers at once, or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._readers = self._writers_waiting = 0
        self._writing = False

    @contextmanager
    def reading(self):
        with self._state:
            while self._writing or self._writers_waiting:
                self._state.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._state:
                self._readers -= 1
                if not self._readers:
                    self._state.notify_all()

    @contextmanager
    def writing(self):
        with self._state:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._state.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._state:
                self._writing = False
                self._state.notify_all()


DYNAMODB_LOCK = ReadWriteLock()


class DurableReads:
    """A context manager for readers outside moto's request path (the events' stream poller): the
    read lock, and on leaving, a wait until everything that could have been seen is on disk."""

    def __init__(self, journal: Journal):
        self.journal = journal
        self._held = threading.local()

    def __enter__(self):
        self._held.context = DYNAMODB_LOCK.reading()
        self._held.context.__enter__()

    def __exit__(self, *exc):
        seen = self.journal.appended
        self._held.context.__exit__(*exc)
        self.journal.wait(seen)


def moto_table(region: str, name: str):
    """The table as moto holds it in this process."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[DEFAULT_ACCOUNT_ID][region].tables[name]


class StreamReader:
    """The table's stream, read in-process as a Lambda event source reads it: in order, after a
    sequence number, under the read lock (DurableReads). Records a consumer does not want are passed
    over unserialised: most are run writes, which neither the publisher nor the registry worker acts
    on, and through the DynamoDB Streams API every one of them cost a serialisation and a parse."""

    def __init__(self, durable_reads: DurableReads, table: str, region: str):
        self.durable_reads, self.table, self.region = durable_reads, table, region
        self.followers: list = []  # consumers whose `handled` position trim() respects

    def _shard(self):
        return moto_table(self.region, self.table).stream_shard

    def latest(self) -> str | None:
        """The sequence number of the last record (None: the stream is empty)."""
        with self.durable_reads:
            items = self._shard().items
            return items[-1].record["dynamodb"]["SequenceNumber"] if items else None

    def read(self, after: str | None, limit: int, wants) -> tuple[list[dict], str | None]:
        """Up to `limit` records after `after` that `wants(record)`, as the DynamoDB Streams API
        gives them, and the sequence number read up to (passed-over records included)."""
        found, last = [], after
        with self.durable_reads:
            shard = self._shard()
            i = 0 if after is None else int(after) - shard.starting_sequence_number + 1
            assert i >= 0, "read from before what trim() dropped"
            while i < len(shard.items) and len(found) < limit:
                record = shard.items[i].record
                last, i = record["dynamodb"]["SequenceNumber"], i + 1
                if wants(record):
                    found.append(copy.deepcopy(record))
        return found, last

    def trim(self) -> int:
        """Drop the records every follower has handled: moto keeps every record of the stream, with
        both images, in memory for the life of the process (deployed, a stream keeps 24 hours).
        Returns how many went."""
        handled = [f.handled for f in self.followers]
        if not handled or None in handled:
            return 0
        with DYNAMODB_LOCK.writing():  # moto numbers a new record by the list's length
            shard = self._shard()
            done = min(int(h) for h in handled) - shard.starting_sequence_number + 1
            if done > 0:
                del shard.items[:done]
                shard.starting_sequence_number += done
        return max(done, 0)


def _attribute(value) -> dict:
    """A moto attribute value as botocore returns one (binaries as bytes)."""
    if value.type == "M":
        return {"M": {k: _attribute(v) for k, v in value.value.items()}}
    if value.type == "L":
        return {"L": [_attribute(v) for v in value.value]}
    return {value.type: value.value}


def _named_items(action: str, request: dict):
    """(table, attributes naming the item) of every item a write request may change."""
    if action == "PutItem":
        yield request["TableName"], request["Item"]
    elif action in ("UpdateItem", "DeleteItem"):
        yield request["TableName"], request["Key"]
    elif action == "BatchWriteItem":
        for table, writes in request["RequestItems"].items():
            for write in writes:
                yield table, write["PutRequest"]["Item"] if "PutRequest" in write else write["DeleteRequest"]["Key"]
    elif action == "TransactWriteItems":
        for entry in request["TransactItems"]:
            (kind, operation), = entry.items()
            if kind != "ConditionCheck":
                yield operation["TableName"], operation.get("Item") or operation["Key"]


def _changes(handler, action: str, journal: Journal, table_name: str) -> list[tuple[dict, dict | None]]:
    """The key and resulting item (None: gone) of every item of our table the request named."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    table = handler.dynamodb_backend.tables[table_name]
    changes = []
    for name, attributes in _named_items(action, handler.body):
        if name == table_name:
            key = {k: attributes[k] for k in journal.key_names}
            hash_value, range_value = (DynamoType(key[k]) for k in journal.key_names)
            item = table.items.get(hash_value, {}).get(range_value)
            changes.append((key, item.to_json()["Attributes"] if item else None))
    return changes


def _is_credential(key: dict) -> bool:
    """A token, a session or a project: what the authorizer's answers rest on."""
    sort_key = next(iter(key[table_def.SORT_KEY].values()))
    return sort_key.startswith((keys.token_sk(""), keys.session_sk(""), keys.PROJECT_SK))


def guard_dynamodb(journal: Journal, table_name: str, credentials_written=lambda: None, before_journal=lambda: None):
    """Every DynamoDB request under DYNAMODB_LOCK (reads shared, anything else exclusive); every
    committed write journaled, and answered only once on disk; `credentials_written` called after a
    write of a token, a session or a project; `before_journal` before a write is journaled (the
    objects' files it may name made durable first; objects logged are in the log before it).
    Returns the undo (tests)."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    def call_action(self, *args, **kwargs):
        action = self._get_action()
        if action in READS:
            with DYNAMODB_LOCK.reading():
                response = original(self, *args, **kwargs)
                seen = journal.appended
        else:
            with DYNAMODB_LOCK.writing():
                response = original(self, *args, **kwargs)
                changes = _changes(self, action, journal, table_name) if action in WRITES and response[0] == 200 else []
                if changes:
                    before_journal()
                seen = journal.append(changes) if changes else journal.appended
                if any(_is_credential(key) for key, _ in changes):
                    credentials_written()
        journal.wait(seen)  # outside the lock: concurrent requests share one fsync
        return response

    DynamoHandler.call_action = call_action
    return lambda: setattr(DynamoHandler, "call_action", original)


def _part_put(request, full_url: str) -> tuple[str, int] | None:
    """(upload id, part number) of a part's PUT whose body is at hand as bytes (a presigned part)."""
    if request.method != "PUT" or "partNumber=" not in full_url or type(request.data) is not bytes:
        return None
    return part_puts.part_in(urlsplit(full_url).query)


def save_s3_writes(files: ObjectFiles):
    """After every S3 request moto answers with success, and before that answer goes out, the
    objects and parts it wrote are on disk (in-process calls and the moto server alike). Returns
    the undo (tests)."""
    from moto.s3.responses import S3Response

    key_response, bucket_response = S3Response.key_response, S3Response.bucket_response

    def saved_key_response(self, request, full_url, headers):
        part = _part_put(request, full_url)
        if part:
            return files.put_part(lambda: key_response(self, request, full_url, headers), lambda: self.bucket_name,
                                  *part, request.data)
        response = key_response(self, request, full_url, headers)
        if request.method in ("PUT", "POST", "DELETE") and response[0] < 300:
            files.key_request(request.method, self.bucket_name, self.parse_key_name(), self.querystring, response[2],
                              self.raw_body if request.method == "POST" else b"")
        return response

    def saved_bucket_response(self, request, full_url, headers):
        response = bucket_response(self, request, full_url, headers)
        if request.method == "POST" and response[0] < 300:
            files.bucket_request(request.method, self.bucket_name, self.querystring, self.raw_body)
        return response

    S3Response.key_response, S3Response.bucket_response = saved_key_response, saved_bucket_response
    return lambda: (setattr(S3Response, "key_response", key_response),
                    setattr(S3Response, "bucket_response", bucket_response))


def unsigned_in_process(signature_version, **_):
    """The signer of this process's DynamoDB calls: none, as moto answers them in-process and checks
    no signature (SigV4 was a tenth of a write's CPU); the usual one for a presigned URL, which a
    client follows to the moto server, which checks it (mlreg/signatures.py). S3 calls stay signed:
    moto's S3 answers an unsigned request as an anonymous one (403 on a private bucket)."""
    return None if str(signature_version).endswith(("-query", "-presign-post")) else botocore.UNSIGNED


def _freeze_survivors(phase: str, info: dict) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def freeze_survivors() -> None:
    """Python's full collections walk every object it tracks, and the emulated table is millions of
    them: at 5,000 runs each took 1.0-1.8 s, every 5-15 s while runs were written, and stalled every
    request. From now on the objects that survive a full collection (the table's items, mostly; now,
    the table as loaded) are frozen out of the collector's sight (`gc.freeze`), so each later full
    collection walks only what is newer. A reference cycle among frozen objects that dies later
    waits for `reclaim_frozen` (after a 5,000-run build: 16,819 objects, docs/performance.md)."""
    if _freeze_survivors not in gc.callbacks:
        gc.collect()
        gc.freeze()
        gc.callbacks.append(_freeze_survivors)


def thaw_survivors() -> None:
    """The collector sees every object again (the emulator stops)."""
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
        gc.unfreeze()


def reclaim_frozen() -> None:
    """One full collection of everything, the frozen objects too (cycles that died while frozen are
    freed), after which the survivors are frozen again: one stall of a whole walk (1-2 s at 5,000
    runs) every RECLAIM_SECONDS instead of one every few seconds of writing."""
    if _freeze_survivors in gc.callbacks:
        gc.unfreeze()
        gc.collect()


class Emulator:
    """moto in-process plus a moto HTTP server for presigned URLs, durable in `data_dir`."""

    def __init__(self, data_dir: Path, table: str, bucket: str, region: str, secret: str):
        self.data_dir, self.table, self.bucket, self.region, self.secret = data_dir, table, bucket, region, secret
        self.journal = Journal(data_dir, (table_def.PARTITION_KEY, table_def.SORT_KEY))
        self.files = ObjectFiles(data_dir, self.journal)
        self.durable_reads = DurableReads(self.journal)
        self.stream = StreamReader(self.durable_reads, table, region)
        self._stop = threading.Event()
        self.endpoint = ""
        self.credential_writes = 0  # writes of tokens, sessions, projects (the gateway's authorizer cache)

    # -- lifecycle --
    def start(self) -> None:
        from moto import mock_aws
        from moto.server import ThreadedMotoServer

        os.environ.setdefault("AWS_DEFAULT_REGION", self.region)
        self._mock = mock_aws()
        self._mock.start()
        # After moto set its fake keys: what this process signs (presigned URLs) is signed with the
        # installation's secret, so nobody without the data directory can make or edit one.
        os.environ.update(AWS_ACCESS_KEY_ID=signatures.KEY_ID, AWS_SECRET_ACCESS_KEY=self.secret)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        moto_speedups.install()
        boto3.setup_default_session()  # every DynamoDB client made from here on (the handlers'): unsigned
        boto3.DEFAULT_SESSION.events.register("choose-signer.dynamodb", unsigned_in_process)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        wsgi = self._server._server  # the werkzeug server behind ThreadedMotoServer
        app = part_puts.answering_parts(wsgi.app, self.files)
        wsgi.app = signatures.checked(app, signatures.KEY_ID, self.secret)
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # The handlers' S3 calls to this endpoint are answered in-process, as moto answers AWS's own
        # endpoints (no HTTP hop, no second parse of every byte); presigned URLs reach the server.
        os.environ["MOTO_S3_CUSTOM_ENDPOINTS"] = self.endpoint
        # moto keeps an object's bytes in memory up to this size and spills bigger ones to a temporary
        # file: a second disk write of every byte beside the data directory's. Parts of the usual
        # 5-10 MB and files up to this size stay in memory.
        os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(S3_MEMORY_BYTES))
        boto3.client("dynamodb", region_name=self.region).create_table(**table_def.create_table_kwargs(self.table))
        boto3.client("s3", region_name=self.region).create_bucket(Bucket=self.bucket)
        table = moto_table(self.region, self.table)
        saved = self.journal.load()
        items, upgrades = migrations.upgrade_snapshot(saved)  # an older mlreg's data in today's shape
        moto_speedups.restore_items(table, items)
        if upgrades:
            self.journal.wait(self.journal.append(upgrades))
        patch_moto_s3()
        self.files.load()
        guard_dynamodb(self.journal, self.table, self._credentials_written, self.files.files_synced)
        dynamodb_in_process.install(boto3.DEFAULT_SESSION.events, self.region)
        save_s3_writes(self.files)
        s3_in_process.install(boto3.DEFAULT_SESSION.events, self.endpoint, self.files)
        freeze_survivors()
        threading.Thread(target=self._group_indexes, name="emulator-index-groups", daemon=True).start()
        self._upkeep = threading.Thread(target=self._upkeep_loop, name="emulator-upkeep", daemon=True)
        self._upkeep.start()

    def _group_indexes(self) -> None:
        table = moto_table(self.region, self.table)
        for index in table.global_indexes:  # one at a time: a write waits for one index's walk at most
            with DYNAMODB_LOCK.reading():  # then writes keep the grouping up to date
                moto_speedups.group_index(table, index)

    def _credentials_written(self) -> None:
        self.credential_writes += 1

    def model_items(self) -> list[dict]:
        """Every item of the registered models' partitions, read from moto's table in-process (at
        start, for the jobs a stopped `mlreg serve` left undone: shared/registry/local.py)."""
        from shared import db

        table = moto_table(self.region, self.table)
        with self.durable_reads:
            return [db.from_item({name: _attribute(value) for name, value in item.attrs.items()})
                    for pk, partition in table.items.items() if keys.MODEL_PARTITION.match(pk.value)
                    for item in partition.values()]

    def stop(self) -> None:
        """Stop serving, and fold the logs so the next start reads the snapshot alone."""
        self._stop.set()
        self._upkeep.join()
        self._server.stop()
        self.files.drain()
        self.journal.close()
        self.files.file_logged()
        self.journal.fold(self.journal.generation + 1)
        self._mock.stop()
        thaw_survivors()

    # -- compaction --
    def fold(self) -> None:
        with DYNAMODB_LOCK.writing():
            generation = self.journal.rotate()
        self.files.file_logged(before=generation)  # the logs it drops are the only copy of some objects
        self.journal.fold_aside(generation)
        self.files.forget_filed(before=generation)

    def _upkeep_loop(self) -> None:
        """Every few seconds: fold the logs once they outgrow the snapshot, drop the stream records every
        consumer has handled, and now and then reclaim what died frozen."""
        reclaimed = time.monotonic()
        while not self._stop.wait(FOLD_CHECK_SECONDS):
            try:
                if self.journal.log_bytes() > max(FOLD_MIN_LOG_BYTES, self.journal.snapshot_bytes()):
                    self.fold()
                self.stream.trim()
                if time.monotonic() - reclaimed >= RECLAIM_SECONDS:
                    reclaim_frozen()
                    reclaimed = time.monotonic()
            except Exception as exc:  # keep serving: the logs stay, and the next round tries again
                logging.getLogger("mlreg").warning("the emulator's upkeep (folding the logs) failed: %s", exc)
