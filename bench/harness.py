"""What the bench commands share: emulated AWS, an in-process API Gateway, a recorder of every AWS
call (botocore event hooks), and fast builders of realistic data.

Data is built from the handlers' own item builders (shared.tracking.runs.new_run_items) or with
their write functions while a `before-call` hook collects the items they would put instead of sending
them one request at a time; the items then go in with BatchWriteItem. So a 5,000-run experiment
holds exactly the items the handlers write, in seconds."""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("MLREG_TABLE", "mlreg-bench")
os.environ.setdefault("MLREG_BUCKET", "mlreg-bench")
os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")

PROJECT = "bench"
A2 = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts"


def clear_client_caches() -> None:
    """Every cached boto3 client of shared/ (db, artifact store, packages): the next use builds a new
    one on the current default session, which carries our hooks."""
    for name, module in list(sys.modules.items()):
        client = getattr(module, "client", None) if name.startswith("shared") else None
        if hasattr(client, "cache_clear"):
            client.cache_clear()


def default_session():
    import boto3

    return boto3._get_default_session()


# ---- recording AWS calls ------------------------------------------------------------------------

@dataclass
class Call:
    service: str  # "dynamodb" | "s3"
    operation: str
    start: float
    end: float = 0.0
    read_units: float = 0.0
    write_units: float = 0.0
    items_read: int = 0
    task: tuple[int, int] | None = None  # (parallel batch, task in it); None: on the request's thread


def item_size(item: dict) -> int:
    """DynamoDB's item size, roughly: attribute names plus values in their wire form."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict) -> int:
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return len(v.strip("-").lstrip("0").replace(".", "")) // 2 + 2
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(_value_size(x) + 1 for x in v)
    return sum(len(str(x)) for x in v)  # sets


def _read_units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


def _write_units(size: int) -> float:
    return max(1, math.ceil(size / 1024))


def _units(op: str, params: dict, parsed: dict) -> tuple[float, float, int]:
    """(read request units, write request units, items read) of one DynamoDB call, as on-demand
    billing counts them (sizes estimated from the items on the wire)."""
    consistent = bool(params.get("ConsistentRead"))
    if op == "GetItem":
        item = parsed.get("Item")
        return _read_units(item_size(item) if item else 0, consistent), 0, int(bool(item))
    if op == "Query":
        items = parsed.get("Items", [])
        return _read_units(sum(map(item_size, items)), consistent), 0, len(items)
    if op == "BatchGetItem":
        items = [i for found in parsed.get("Responses", {}).values() for i in found]
        return sum(_read_units(item_size(i), consistent) for i in items) or 0.5, 0, len(items)
    if op == "BatchWriteItem":
        reqs = [r for rs in params["RequestItems"].values() for r in rs]
        return 0, sum(_write_units(item_size(r["PutRequest"]["Item"])) if "PutRequest" in r else 1 for r in reqs), 0
    if op == "PutItem":
        return 0, _write_units(item_size(params["Item"])), 0
    if op in ("UpdateItem", "DeleteItem"):
        return 0, 1, 0  # small items: the item's size is not on the wire
    if op == "TransactWriteItems":
        reads = writes = 0.0
        for entry in params["TransactItems"]:
            (kind, body), = entry.items()
            if kind == "ConditionCheck":
                reads += 2
            else:
                writes += 2 * (_write_units(item_size(body["Item"])) if kind == "Put" else 1)
        return reads, writes, 0
    return 0, 0, 0


def api_params(service: str, request_dict: dict) -> dict:
    """The API parameters of a call, from the serialized request before-call sees (DynamoDB's body is
    the parameters as JSON; S3's are not needed)."""
    if service != "dynamodb" or not request_dict.get("body"):
        return {}
    return json.loads(request_dict["body"])


class Recorder:
    """Every AWS API call with its start and end, from botocore's before-call / after-call hooks.

    `latency` adds a fixed delay to each call, as a network would, so the AWS time it reports looks
    like a deployment's. Round trips (`Measurement.waves`) come from the code's structure instead."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.calls: list[Call] = []
        self._open = threading.local()
        self._lock = threading.Lock()

    def install(self, session) -> None:
        session.events.register("before-call", self._before)
        session.events.register("after-call", self._after)
        session.events.register("after-call-error", self._after)

    def _before(self, event_name: str, params: dict, **_) -> None:
        _, service, op = event_name.split(".")
        call = Call(service, op, time.perf_counter(), task=getattr(_TASK, "id", None))
        stack = getattr(self._open, "stack", None) or []
        stack.append((call, api_params(service, params)))
        self._open.stack = stack
        if self.latency:
            time.sleep(self.latency)

    def _after(self, event_name: str, parsed: dict | None = None, **kwargs) -> None:
        stack = getattr(self._open, "stack", None)
        if not stack:
            return  # a call another hook answered before ours ran (the bulk builder's)
        call, params = stack.pop()
        call.end = time.perf_counter()
        if call.service == "dynamodb":
            response = parsed if parsed is not None else {}
            call.read_units, call.write_units, call.items_read = _units(call.operation, params, response)
        with self._lock:
            self.calls.append(call)

    @contextmanager
    def measure(self):
        """The calls made inside the block, as a Measurement filled in when the block ends."""
        first = len(self.calls)
        result = Measurement([])
        yield result
        result.calls = sorted(self.calls[first:], key=lambda c: c.start)


@dataclass
class Measurement:
    calls: list[Call] = field(default_factory=list)

    def count(self, service: str) -> int:
        return sum(c.service == service for c in self.calls)

    def by_operation(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.calls:
            out[c.operation] = out.get(c.operation, 0) + 1
        return dict(sorted(out.items()))

    @property
    def waves(self) -> int:
        """Sequential round trips, from the code's structure rather than timing (deterministic): each
        call on the request's thread is one; a `db.parallel` batch of n tasks runs in
        ceil(n / PARALLELISM) waves, each as long as its longest task's chain of calls."""
        from shared.db import PARALLELISM

        sequential, batches = 0, {}
        for c in self.calls:
            if c.task is None:
                sequential += 1
            else:
                tasks = batches.setdefault(c.task[0], {})
                tasks[c.task[1]] = tasks.get(c.task[1], 0) + 1
        return sequential + sum(math.ceil(len(t) / PARALLELISM) * max(t.values()) for t in batches.values())

    @property
    def aws_seconds(self) -> float:
        """Wall time with at least one AWS call in flight (the union of the calls' intervals)."""
        total, cur_start, cur_end = 0.0, None, None
        for c in sorted(self.calls, key=lambda c: c.start):
            if cur_end is None or c.start > cur_end:
                if cur_end is not None:
                    total += cur_end - cur_start
                cur_start, cur_end = c.start, c.end
            else:
                cur_end = max(cur_end, c.end)
        return total + ((cur_end - cur_start) if cur_end is not None else 0.0)

    def total(self, attr: str) -> float:
        return sum(getattr(c, attr) for c in self.calls)


# ---- emulated AWS and in-process API -------------------------------------------------------------

@contextmanager
def fast_moto():
    """moto at DynamoDB's cost per request (mlreg/moto_speedups.py, as `mlreg serve` runs it), one
    request at a time: moto is not thread-safe, and our parallel batches would race inside it."""
    from moto.core.botocore_stubber import BotocoreStubber

    from mlreg.moto_speedups import installed

    process, lock = BotocoreStubber.process_request, threading.RLock()

    def one_at_a_time(self, request):
        with lock:
            return process(self, request)

    BotocoreStubber.process_request = one_at_a_time
    try:
        with installed():
            yield
    finally:
        BotocoreStubber.process_request = process


_TASK = threading.local()  # the (batch, task) a pool thread is running, for Call.task
_batches = itertools.count()


@contextmanager
def tagged_parallel():
    """Wrap shared.db.parallel so each call knows which batch and task issued it. Nested calls run
    inline in their task, as db.parallel itself does."""
    from shared import db

    original = db.parallel

    def parallel(fn, items):
        if getattr(_TASK, "id", None) is not None:
            return [fn(i) for i in items]
        batch = next(_batches)

        def run(indexed):
            _TASK.id = (batch, indexed[0])
            try:
                return fn(indexed[1])
            finally:
                _TASK.id = None

        return original(run, list(enumerate(items)))

    db.parallel = parallel
    try:
        yield
    finally:
        db.parallel = original


@contextmanager
def emulated_aws(recorder: Recorder | None = None, stream: bool = False):
    """moto in-process with the table and bucket created from the shared definitions; the recorder
    (if any) sees every call made by shared/ code after setup.

    Bench speed-ups that change no request count: the table's stream is off unless asked for, and
    moto costs per request what DynamoDB does (`fast_moto`)."""
    import boto3
    from moto import mock_aws

    from shared import table as table_def

    kwargs = table_def.create_table_kwargs(os.environ["MLREG_TABLE"])
    if not stream:
        kwargs.pop("StreamSpecification", None)
    with mock_aws(), fast_moto(), tagged_parallel():
        clear_client_caches()
        boto3.client("dynamodb").create_table(**kwargs)
        boto3.client("s3").create_bucket(Bucket=os.environ["MLREG_BUCKET"])
        if recorder:
            recorder.install(default_session())
        try:
            yield
        finally:
            clear_client_caches()


class Api:
    """Calls route handlers in-process with API Gateway proxy events, as the deployed API would
    (after the authorizer, whose one cached GetItem is not counted)."""

    def __init__(self, project: str = PROJECT) -> None:
        self.project = project

    def event(self, method: str, path: str, body=None, query: dict | None = None,
              headers: dict | None = None) -> tuple[dict, str]:
        from urllib.parse import urlencode

        from mlreg.gateway import build_event
        from shared import routes

        full = f"/projects/{self.project}{path}"
        route, params = routes.match(method, full.rstrip("/") or full)  # as API Gateway: `/projects/p/` too
        assert route, f"no route for {method} {path}"
        qs = urlencode([(k, v) for k, vs in (query or {}).items() for v in (vs if isinstance(vs, list) else [vs])])
        raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
        event = build_event(method, full, qs, {"Host": "bench", "Content-Type": "application/json", **(headers or {})},
                            raw, route, params, "127.0.0.1")
        event["requestContext"]["authorizer"] = {"project": self.project, "role": "admin", "token_id": "bench"}
        return event, route.function

    def raw(self, method: str, path: str, body=None, query: dict | None = None, headers: dict | None = None) -> dict:
        """The proxy response of one call."""
        from shared.http import make_dispatcher

        event, function = self.event(method, path, body, query, headers)
        response = make_dispatcher(function)(event, None)
        assert response["statusCode"] < 400, (method, path, response["body"][:500])
        return response

    def call(self, method: str, path: str, body=None, query: dict | None = None, headers: dict | None = None) -> dict:
        response = self.raw(method, path, body, query, headers)
        if response.get("isBase64Encoded") or not response["body"] or not response["body"].startswith(("{", "[")):
            return {}
        return json.loads(response["body"])


# ---- fast data builders ----------------------------------------------------------------------------

class _Collector:
    """A before-call hook that answers DynamoDB writes with success and keeps their Put items, so
    the handlers' write code yields its items without a round trip each."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict] = {}

    def __call__(self, event_name: str, params: dict, **_):
        from botocore.awsrequest import AWSResponse

        op = event_name.split(".")[-1]
        params = api_params("dynamodb", params)
        if op == "PutItem":
            self._keep(params["Item"])
        elif op == "TransactWriteItems":
            for entry in params["TransactItems"]:
                (kind, body), = entry.items()
                if kind == "Put":
                    self._keep(body["Item"])
                elif kind != "ConditionCheck":
                    raise AssertionError(f"bulk builder cannot collect a transactional {kind}")
        elif op == "BatchWriteItem":
            for reqs in params["RequestItems"].values():
                for r in reqs:
                    self._keep(r["PutRequest"]["Item"])
        else:
            raise AssertionError(f"bulk builder cannot collect {op}; build this data through the API")
        return AWSResponse("https://collected", 200, {}, None), {}

    def _keep(self, item: dict) -> None:
        self.items[(item["pk"]["S"], item["sk"]["S"])] = item


def bulk_write(build) -> int:
    """Runs `build()` (handler write functions) with its DynamoDB writes collected, then writes the
    items with BatchWriteItem (25 per request, in parallel). Returns the number of items."""
    from shared import db

    collector = _Collector()
    events = db.client().meta.events  # each client has its own copy of the session's hooks
    events.register_first("before-call.dynamodb", collector, unique_id="bench-collector")
    try:
        build()
    finally:
        events.unregister("before-call.dynamodb", unique_id="bench-collector")
    wire = list(collector.items.values())
    chunks = [wire[i:i + db.BATCH_WRITE_MAX] for i in range(0, len(wire), db.BATCH_WRITE_MAX)]
    db.parallel(lambda c: db._write_chunk([{"PutRequest": {"Item": i}} for i in c]), chunks)
    return len(wire)


def put_in_data_dir(data_dir, items: list[dict], per_record: int = 1000) -> None:
    """Puts `items` (DynamoDB wire format) into the table of a stopped `mlreg serve`'s data directory,
    as write-ahead log records of `per_record` items: its next start reads them as committed writes.
    No request per item, and no stream record (a restart replays none)."""
    from mlreg.journal import Journal

    journal = Journal(data_dir, ("pk", "sk"))
    journal.load()  # opens the next log: what is appended is read after everything before
    for start in range(0, len(items), per_record):
        journal.append([({"pk": i["pk"], "sk": i["sk"]}, i) for i in items[start:start + per_record]])
    journal.close()


def new_run(experiment_id: str, start_time: int, name: str | None = None) -> dict:
    from shared.tracking import experiments, runs

    run_id = uuid.uuid4().hex
    return {"run_id": run_id, "run_uuid": run_id, "run_name": name or f"run-{start_time}",
            "experiment_id": experiment_id,
            "user_id": "bench", "status": "FINISHED", "start_time": start_time, "end_time": start_time + 1000,
            "artifact_uri": f"{experiments.artifact_location(experiment_id)}/{run_id}/artifacts",
            "lifecycle_stage": runs.ACTIVE}


def build_experiment(api: Api, name: str, n_runs: int, params: int = 5, metrics: int = 5) -> str:
    """An experiment of `n_runs` finished runs, each with a run name tag, `params` params and
    `metrics` metrics (one point each; `acc` spread over [0, 1) so filters and ordering bite)."""
    from shared import db
    from shared.tracking import runs
    from shared.tracking.messages import Metric

    experiment_id = api.call("POST", f"{A2}/experiments/create", {"name": name})["experiment_id"]
    items = []
    for i in range(n_runs):
        run = new_run(experiment_id, 1_700_000_000_000 + i)
        acc = ((i * 7919) % n_runs) / n_runs
        points = [Metric.parse({"key": "acc", "value": acc, "timestamp": 1})]
        points += [Metric.parse({"key": f"m{j}", "value": float(i + j), "timestamp": 1}) for j in range(metrics - 1)]
        items += runs.new_run_items(PROJECT, run, {runs.RUN_NAME_TAG: run["run_name"], "team": "bench"},
                                    {f"p{j}": str((i * 7 + j) % 13) for j in range(params)}, points)
    db.batch_put(items)
    return experiment_id
