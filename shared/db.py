"""Thin access to the one DynamoDB table: typed items in and out, batches chunked and retried.

Clients are created lazily (cold start) and shared (boto3 clients are thread-safe)."""

from __future__ import annotations

import base64
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import cache, partial
from typing import Any, Callable, Iterable, Iterator, TypeVar

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.errors import MlflowError

T = TypeVar("T")
_serializer = TypeSerializer()
BATCH_WRITE_MAX = 25
BATCH_GET_MAX = 100
TRANSACT_MAX = 100
# A log-batch of 1,000 metrics is 40 BatchWriteItems: with 48 at once they are one round trip.
PARALLELISM = 48
_POOL_PREFIX = "mlreg-db"


def table_name() -> str:
    return os.environ.get("MLREG_TABLE", "mlreg")


@cache
def client():
    # parameter_validation off: botocore checks every value against the API's shape model before
    # sending (a quarter of a 1,000-metric log-batch's CPU); DynamoDB validates requests itself.
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=os.environ.get("MLREG_DYNAMODB_ENDPOINT") or None,
        config=Config(retries={"max_attempts": 8, "mode": "adaptive"}, max_pool_connections=PARALLELISM,
                      parameter_validation=False),
    )
    ddb.meta.events.register("before-parse.dynamodb.*", _items_without_botocore_parsing)
    return ddb


_READ_FIELDS = {"GetItem": "Item", "Query": "Items", "BatchGetItem": "Responses"}


def _items_without_botocore_parsing(operation_model, response_dict, customized_response_dict, **_) -> None:
    """botocore parses every attribute value of a read through the API's shape model: most of the
    CPU of a big read (a search page, a metric history). The items already are DynamoDB JSON, so
    they are taken with json.loads, binary values decoded as botocore does, and botocore parses the
    small rest. The response is the same; only its cost changes."""
    field = _READ_FIELDS.get(operation_model.name)
    if field is None or response_dict["status_code"] >= 300:
        return
    body = json.loads(response_dict["body"])
    if field not in body:
        return
    raw = body.pop(field)
    if field == "Responses":
        customized_response_dict[field] = {table: [_binary_decoded(i) for i in found] for table, found in raw.items()}
    else:
        customized_response_dict[field] = _binary_decoded(raw) if field == "Item" else [_binary_decoded(i) for i in raw]
    response_dict["body"] = json.dumps(body).encode()


def _binary_decoded(item: dict) -> dict:
    return {name: _wire_value(value) for name, value in item.items()}


def _wire_value(value: dict) -> dict:
    """One attribute value as botocore returns it: base64 binaries decoded, the rest as on the wire."""
    (kind, v), = value.items()
    if kind == "B":
        return {"B": base64.b64decode(v)}
    if kind == "BS":
        return {"BS": [base64.b64decode(x) for x in v]}
    if kind == "M":
        return {"M": _binary_decoded(v)}
    if kind == "L":
        return {"L": [_wire_value(x) for x in v]}
    return value


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(PARALLELISM, thread_name_prefix=_POOL_PREFIX)


def parallel(fn, items: Iterable) -> list:
    """Run independent requests side by side: one round trip of wall time instead of many. A call
    from inside the pool runs inline: waiting on the pool from its own threads could deadlock it."""
    items = list(items)
    if len(items) <= 1 or threading.current_thread().name.startswith(_POOL_PREFIX):
        return [fn(i) for i in items]
    return list(_pool().map(fn, items))


# ---- item conversion -------------------------------------------------------------------------

def _to_attr(value: Any) -> dict:
    if isinstance(value, float):
        value = Decimal(repr(value))
    return _serializer.serialize(value)


def to_item(data: dict) -> dict:
    return {k: _to_attr(v) for k, v in data.items() if v is not None}


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        exact = Decimal(text)
        return int(exact) if exact == exact.to_integral_value() else float(exact)


def _plain(value: dict) -> Any:
    """One attribute value as plain Python: numbers as int (when integral) or float, binaries as bytes."""
    (kind, v), = value.items()
    if kind == "S":
        return v
    if kind == "N":
        return _number(v)
    if kind == "M":
        return from_item(v)
    if kind == "L":
        return [_plain(x) for x in v]
    if kind == "SS":
        return set(v)
    if kind == "B":
        return bytes(v)
    if kind == "NS":
        return {_number(x) for x in v}
    if kind == "BS":
        return {bytes(x) for x in v}
    return None if kind == "NULL" else v  # BOOL


def from_item(item: dict) -> dict:
    return {k: _plain(v) for k, v in item.items()}


def key(pk: str, sk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


# ---- single-item requests -----------------------------------------------------------------------

def get(pk: str, sk: str, consistent: bool = True) -> dict | None:
    resp = client().get_item(TableName=table_name(), Key=key(pk, sk), ConsistentRead=consistent)
    return from_item(resp["Item"]) if "Item" in resp else None


def put(item: dict, condition: str | None = None, names: dict | None = None, values: dict | None = None) -> None:
    kwargs: dict = {"TableName": table_name(), "Item": to_item(item)}
    _add_expression(kwargs, condition, names, values)
    client().put_item(**kwargs)


def update(pk: str, sk: str, expression: str, names: dict | None = None, values: dict | None = None,
           condition: str | None = None, return_new: bool = False) -> dict | None:
    """A failed `condition` raises with the item as it was (`failed_item`), so no read is needed to tell why."""
    kwargs: dict = {"TableName": table_name(), "Key": key(pk, sk), "UpdateExpression": expression}
    _add_expression(kwargs, condition, names, values)
    if condition:
        kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    if return_new:
        kwargs["ReturnValues"] = "ALL_NEW"
    resp = client().update_item(**kwargs)
    return from_item(resp["Attributes"]) if return_new else None


def delete(pk: str, sk: str, condition: str | None = None, missing: MlflowError | None = None) -> None:
    """`missing`: raised when the item is not there (the delete is then conditioned on it)."""
    kwargs: dict = {"TableName": table_name(), "Key": key(pk, sk)}
    if missing is not None:
        condition = "attribute_exists(pk)" + (f" AND ({condition})" if condition else "")
    if condition:
        kwargs["ConditionExpression"] = condition
    try:
        client().delete_item(**kwargs)
    except ClientError as err:
        if missing is not None and is_condition_failure(err):
            raise missing from None
        raise


def _add_expression(kwargs: dict, condition: str | None, names: dict | None, values: dict | None) -> None:
    if condition:
        kwargs["ConditionExpression"] = condition
    if names:
        kwargs["ExpressionAttributeNames"] = names
    if values:
        kwargs["ExpressionAttributeValues"] = {k: _to_attr(v) for k, v in values.items()}


def is_condition_failure(err: ClientError) -> bool:
    return err.response["Error"]["Code"] in ("ConditionalCheckFailedException", "TransactionCanceledException")


def condition_failed(err: ClientError) -> bool:
    """A condition of the request (or of one of the transaction's items) was false."""
    code = err.response["Error"]["Code"]
    return code == "ConditionalCheckFailedException" or (
        code == "TransactionCanceledException" and "ConditionalCheckFailed" in cancellation_reasons(err))


def failed_item(err: ClientError, index: int | None = None) -> dict | None:
    """The item a failed conditional update found (None: there was none); `index`: of that item of
    a cancelled transaction."""
    found = err.response.get("Item") if index is None else err.response["CancellationReasons"][index].get("Item")
    return from_item(found) if found else None


def is_conflict(err: ClientError) -> bool:
    """A condition failed or a concurrent transaction interfered: worth another optimistic attempt
    (a cancelled transaction's other reasons, such as a ValidationError, are not)."""
    retryable = {"None", "ConditionalCheckFailed", "TransactionConflict"}
    return is_condition_failure(err) and set(cancellation_reasons(err)) <= retryable


def cancellation_reasons(err: ClientError) -> list[str]:
    return [r.get("Code", "None") for r in err.response.get("CancellationReasons", [])]


# ---- queries ---------------------------------------------------------------------------------

def query(pk: str, sk_prefix: str | None = None, *, index: str | None = None, forward: bool = True,
          limit: int | None = None, start_key: dict | None = None, consistent: bool = False,
          sk_between: tuple[str, str] | None = None) -> tuple[list[dict], dict | None]:
    """One page of a Query. Returns (items, last_evaluated_key)."""
    pk_name, sk_name = ("pk", "sk") if index is None else (f"g{index[-1]}pk", f"g{index[-1]}sk")
    cond = "#pk = :pk"
    values: dict = {":pk": {"S": pk}}
    if sk_prefix:
        cond += " AND begins_with(#sk, :sk)"
        values[":sk"] = {"S": sk_prefix}
    elif sk_between:
        cond += " AND #sk BETWEEN :lo AND :hi"
        values[":lo"], values[":hi"] = {"S": sk_between[0]}, {"S": sk_between[1]}
    kwargs: dict = {
        "TableName": table_name(),
        "KeyConditionExpression": cond,
        "ExpressionAttributeNames": {"#pk": pk_name, **({"#sk": sk_name} if ":sk" in values or ":lo" in values else {})},
        "ExpressionAttributeValues": values,
        "ScanIndexForward": forward,
    }
    if index:
        kwargs["IndexName"] = index
    elif consistent:
        kwargs["ConsistentRead"] = True
    if limit:
        kwargs["Limit"] = limit
    if start_key:
        kwargs["ExclusiveStartKey"] = start_key
    resp = client().query(**kwargs)
    return [from_item(i) for i in resp.get("Items", [])], resp.get("LastEvaluatedKey")


def query_groups(pk: str, index: str, group_of: Callable[[dict], str]) -> list[list[dict]]:
    """A collection's items (one paged Query of a GSI partition) grouped by the entity they belong
    to, in first-seen order: what search assembles experiments, runs and models from."""
    groups: dict[str, list[dict]] = {}
    for item in iter_query(pk, index=index):
        groups.setdefault(group_of(item), []).append(item)
    return list(groups.values())


def entity_of_g1sk(item: dict) -> str:
    """The entity id that prefixes a collection item's g1sk (`<id>#...`)."""
    return item["g1sk"].split("#", 1)[0]


def query_all(pk: str, sk_prefix: str | None = None, **kwargs) -> list[dict]:
    """Every item of a Query, following DynamoDB's 1 MB pages."""
    return list(iter_query(pk, sk_prefix, **kwargs))


def iter_query(pk: str, sk_prefix: str | None = None, **kwargs) -> Iterator[dict]:
    start = None
    while True:
        items, start = query(pk, sk_prefix, start_key=start, **kwargs)
        yield from items
        if not start:
            return


# ---- batches and transactions ---------------------------------------------------------------------

def batch_put(items: list[dict]) -> None:
    """Unconditional puts in parallel chunks of 25, retrying UnprocessedItems with backoff.
    Only for idempotent writes: a retry writes the same key with the same value."""
    put_together(items, [])


def put_together(items: list[dict], conditional: list[tuple[dict, str, dict, dict]]) -> list[tuple[int, dict]]:
    """`batch_put(items)` and `conditional_puts(conditional)` side by side: one round trip for both.
    Returns the conditional puts whose condition failed, as `conditional_puts` does."""
    tasks = [partial(_put_batch, items[i:i + BATCH_WRITE_MAX]) for i in range(0, len(items), BATCH_WRITE_MAX)]
    tasks += _conditional_put_tasks(conditional)
    return sorted((f for failed in parallel(lambda task: task(), tasks) for f in failed), key=lambda f: f[0])


def _put_batch(items: list[dict]) -> list:
    _write_chunk([{"PutRequest": {"Item": to_item(i)}} for i in items])
    return []  # no conditions


def batch_delete(keys: list[tuple[str, str]]) -> None:
    chunks = [keys[i:i + BATCH_WRITE_MAX] for i in range(0, len(keys), BATCH_WRITE_MAX)]
    parallel(lambda chunk: _write_chunk([{"DeleteRequest": {"Key": key(pk, sk)}} for pk, sk in chunk]), chunks)


def _write_chunk(requests: list[dict]) -> None:
    for attempt in range(10):
        resp = client().batch_write_item(RequestItems={table_name(): requests})
        requests = resp.get("UnprocessedItems", {}).get(table_name(), [])
        if not requests:
            return
        time.sleep(min(2.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.0))
    raise MlflowError("DynamoDB kept throttling a batch write; retry the request", "TEMPORARILY_UNAVAILABLE")


def batch_get(keys: list[tuple[str, str]], consistent: bool = False) -> list[dict]:
    """Items for many keys (missing ones are absent), in parallel chunks of 100."""
    unique = list(dict.fromkeys(keys))
    chunks = [unique[i:i + BATCH_GET_MAX] for i in range(0, len(unique), BATCH_GET_MAX)]
    return [item for found in parallel(lambda c: _get_chunk(c, consistent), chunks) for item in found]


def _get_chunk(keys: list[tuple[str, str]], consistent: bool) -> list[dict]:
    request = {table_name(): {"Keys": [key(pk, sk) for pk, sk in keys], "ConsistentRead": consistent}}
    found: list[dict] = []
    for attempt in range(10):
        resp = client().batch_get_item(RequestItems=request)
        found += [from_item(i) for i in resp["Responses"].get(table_name(), [])]
        request = resp.get("UnprocessedKeys") or {}
        if not request:
            return found
        time.sleep(min(2.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.0))
    raise MlflowError("DynamoDB kept throttling a batch read; retry the request", "TEMPORARILY_UNAVAILABLE")


class Tx:
    """Collects the writes of one TransactWriteItems: all happen or none."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def put(self, item: dict, condition: str | None = None, values: dict | None = None, names: dict | None = None) -> "Tx":
        op: dict = {"TableName": table_name(), "Item": to_item(item)}
        _add_expression(op, condition, names, values)
        self.items.append({"Put": op})
        return self

    def update(self, pk: str, sk: str, expression: str, names: dict | None = None, values: dict | None = None,
               condition: str | None = None, return_old: bool = False) -> "Tx":
        """`return_old`: a failed condition returns the item as it was (`failed_item(err, index)`)."""
        op: dict = {"TableName": table_name(), "Key": key(pk, sk), "UpdateExpression": expression}
        _add_expression(op, condition, names, values)
        if return_old:
            op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self.items.append({"Update": op})
        return self

    def delete(self, pk: str, sk: str, condition: str | None = None, values: dict | None = None) -> "Tx":
        op: dict = {"TableName": table_name(), "Key": key(pk, sk)}
        _add_expression(op, condition, None, values)
        self.items.append({"Delete": op})
        return self

    def check(self, pk: str, sk: str, condition: str, values: dict | None = None, names: dict | None = None) -> "Tx":
        op: dict = {"TableName": table_name(), "Key": key(pk, sk)}
        _add_expression(op, condition, names, values)
        self.items.append({"ConditionCheck": op})
        return self

    def commit(self, token: str | None = None, on_conflict: MlflowError | None = None) -> None:
        """`token` makes the commit idempotent for 10 minutes (safe client retries); `on_conflict`
        is raised instead when a condition fails (a name taken, an item gone). A concurrent
        transaction's interference is not a failed condition: it stays a retryable error."""
        kwargs: dict = {"TransactItems": self.items}
        if token:
            kwargs["ClientRequestToken"] = token[:36]
        try:
            client().transact_write_items(**kwargs)
        except ClientError as err:
            if on_conflict is not None and condition_failed(err):
                raise on_conflict from None
            raise


def conditional_puts(puts: list[tuple[dict, str, dict, dict]]) -> list[tuple[int, dict]]:
    """Many conditional puts in few round trips: transactions of up to 100, sent in parallel.

    `puts` holds (item, condition, names, values). A transaction fails whole when one condition
    fails, so the failed ones are taken out and the rest sent again. Returns (index, old item) for
    every put whose condition failed."""
    return put_together([], puts)


def _conditional_put_tasks(puts: list[tuple[dict, str, dict, dict]]) -> list[Callable[[], list[tuple[int, dict]]]]:
    if len(puts) == 1:  # a plain conditional put costs half a transaction's capacity
        return [partial(_put_one, *puts[0])]
    return [partial(_put_chunk, puts, list(range(i, min(i + TRANSACT_MAX, len(puts)))))
            for i in range(0, len(puts), TRANSACT_MAX)]


def _put_one(item: dict, condition: str, names: dict, values: dict) -> list[tuple[int, dict]]:
    kwargs: dict = {"TableName": table_name(), "Item": to_item(item), "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
    _add_expression(kwargs, condition, names, values)
    try:
        client().put_item(**kwargs)
        return []
    except ClientError as err:
        if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return [(0, from_item(err.response.get("Item", {})))]


def _put_chunk(puts: list, indices: list[int]) -> list[tuple[int, dict]]:
    failed: list[tuple[int, dict]] = []
    for attempt in range(10):
        if not indices:
            return failed
        ops = []
        for i in indices:
            item, condition, names, values = puts[i]
            op = {"TableName": table_name(), "Item": to_item(item), "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
            _add_expression(op, condition, names, values)
            ops.append({"Put": op})
        try:
            client().transact_write_items(TransactItems=ops)
            return failed
        except ClientError as err:
            reasons = err.response.get("CancellationReasons") or []
            if err.response["Error"]["Code"] != "TransactionCanceledException" or not reasons:
                raise
            retry = []
            for i, reason in zip(indices, reasons):
                if reason.get("Code") == "ConditionalCheckFailed":
                    failed.append((i, from_item(reason.get("Item", {}))))
                elif reason.get("Code") not in (None, "None"):
                    retry.append(i)  # conflict or throttling: send again
                else:
                    retry.append(i)  # innocent bystander of another item's failure
            if len(retry) == len(indices):
                time.sleep(min(1.0, 0.02 * 2 ** attempt) * random.uniform(0.5, 1.0))
            indices = retry
    raise MlflowError("Too many conflicting writes to the same items; retry the request", "REQUEST_LIMIT_EXCEEDED")


def retry_on_conflict(attempt: Callable[[], T], busy_message: str, attempts: int = 12) -> T:
    """Optimistic concurrency: `attempt` reads, then commits a transaction conditioned on what it
    read; when another writer got there first the condition fails and it runs again after a
    jittered backoff (at most ~3.6 s in all: writes by name now read the name's guard too, which
    widens the window a racing writer can win). After `attempts` losses the client is told to retry
    (a 503 it retries itself)."""
    for n in range(attempts):
        try:
            return attempt()
        except ClientError as err:
            if not is_conflict(err):
                raise
            time.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** n)))
    raise MlflowError(busy_message, "TEMPORARILY_UNAVAILABLE")
