"""Make moto's DynamoDB cost what DynamoDB's does: proportional to the items a request touches,
not to the table. Local only (`mlreg serve`, the bench); the unit tests run moto as it is.

moto as it is (bench.emulator_cost measures both):
- TransactWriteItems deep-copies the whole table (with its stream records) as its rollback copy,
  once per item of the transaction: 31 s for 5 puts at 40,000 items.
- Query walks and sorts every item of the table for a base-table Query, and of the table again for
  a GSI Query: 1.3 s at 40,000 items.
- Responses go through a generic serializer that walks the API's shape model per attribute: a
  Query page of 1 MB takes seconds (most of a 20,000-point metric history's 13 s).

Patched, with the same results:
- a transaction saves only the items it names, and on failure puts them back (and drops the stream
  records it wrote);
- a base-table Query reads its partition only;
- a Query's results are not deep-copied (moto copies every item a Query returns; the response only
  reads them);
- a GSI Query reads the items of its index partition, grouped once per index until the next write
  (a keys-only index's grouping holds only the keys, so moto's copy of each result stays small);
- reads (GetItem, BatchGetItem, Query, Scan) and the stream's GetRecords answer with plain JSON: their
  results already are DynamoDB JSON, with bytes for binary values (base64 on the wire) and, in stream
  records, a datetime for the creation time (epoch seconds on the wire). `mlreg serve`'s two stream
  pollers read every write's records, under the table's read lock that writers wait for;
- an item's size (DynamoDB's 400 KB limit) is counted once per item, not once per attribute over the
  attributes set so far (moto's check is quadratic: most of the time of a restore, and of every put),
  and kept until an update (a Query counts the size of each item it returns twice);
- GetItem of a missing partition leaves the table as it was (moto adds an empty partition: a write,
  which concurrent reads must not make).

Every patch assumes writes take turns and reads only run beside other reads (`mlreg.emulator`
locks them so). Concurrent reads may each build a GSI grouping: the same one, whoever keeps it."""

from __future__ import annotations

import base64
import bisect
import copy
import json
import threading
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime

_installed = threading.Lock()
_state = threading.local()  # per request: the partition a Query may read


def install() -> None:
    """For the life of the process (`mlreg serve`). Idempotent."""
    from moto.dynamodb import models

    with _installed:
        if not getattr(models.DynamoDBBackend.transact_write_items, "_mlreg", False):
            for owner, name, patched in _patches():
                setattr(owner, name, patched)


@contextmanager
def installed():
    """For a block (the bench, inside a test process whose other tests use moto as it is)."""
    patches = _patches()
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, patched in patches:
        setattr(owner, name, patched)
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _patches() -> list[tuple[object, str, object]]:
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    return [*_transactions(models, Table), *_queries(Table), *_writes(models.DynamoDBBackend, Table), *_responses(),
            *_point_reads(Table), *_items()]


# ---- transactions: undo by item ------------------------------------------------------------------------

class _NoTableCopies:
    """moto's `copy` module, except that a Table is "copied" as itself while a transaction runs."""

    def __init__(self, table_class) -> None:
        self._table_class = table_class

    def __getattr__(self, name):
        return getattr(copy, name)

    def deepcopy(self, obj, memo=None):
        if getattr(_state, "in_transaction", False) and isinstance(obj, self._table_class):
            return obj
        return copy.deepcopy(obj, memo)


def _named_items(backend, transact_items: list[dict]) -> list[tuple]:
    """(table, hash, range, copy of the item or None) for every item the transaction names."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    saved = []
    for entry in transact_items:
        op = next(iter(entry.values()))
        table = backend.tables.get(op.get("TableName"))
        if table is None:
            continue
        key = op.get("Key") or op.get("Item") or {}
        if table.hash_key_attr not in key:
            continue
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
        current = table.items.get(hash_value, {}).get(range_value) if range_value else None
        saved.append((table, hash_value, range_value, copy.deepcopy(current)))
    return saved


def _restore(saved: list[tuple], stream_lengths: dict) -> None:
    for table, hash_value, range_value, item in saved:
        if item is None:
            table.items.get(hash_value, {}).pop(range_value, None)
        else:
            table.items[hash_value][range_value] = item
        forget_groupings(table)
    for table, length in stream_lengths.items():
        del table.stream_shard.items[length:]


def _transactions(models, table_class) -> list:
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(backend, transact_items, *args, **kwargs):
        saved = _named_items(backend, transact_items)
        streams = {t: len(t.stream_shard.items) for t, *_ in saved if t.stream_shard is not None}
        _state.in_transaction = True
        try:
            return original(backend, transact_items, *args, **kwargs)
        except Exception:
            _restore(saved, streams)
            raise
        finally:
            _state.in_transaction = False

    transact_write_items._mlreg = True
    return [(models, "copy", _NoTableCopies(table_class)),
            (models.DynamoDBBackend, "transact_write_items", transact_write_items)]


# ---- queries: read the partition ---------------------------------------------------------------------

def forget_groupings(table) -> None:
    """Forget the table's GSI groupings: an item was put, changed or deleted."""
    table.__dict__.pop("_mlreg_index_groups", None)


def _index_partition(table, hash_conditions) -> list:
    """The items whose index hash attributes equal the Query's, from a grouping built once per write
    (each index has its own hash attributes, so they name the grouping)."""
    groups = table.__dict__.setdefault("_mlreg_index_groups", {})
    names = tuple(name for name, _ in hash_conditions)
    if names not in groups:
        kept = _keys_only(table, names)
        grouped = defaultdict(list)
        for partition in table.items.values():
            for item in partition.values():
                values = tuple(item.attrs.get(name) for name in names)
                if all(v is not None for v in values):
                    grouped[values].append(item if kept is None else _with_attributes(item, kept))
        groups[names] = grouped
    return groups[names].get(tuple(value for _, value in hash_conditions), [])


def _index_slice(table, index_name: str, hash_conditions, comparison: str | None, bounds: list, limit: int | None,
                 start_key: dict | None, forward: bool) -> list:
    """The part of an index partition a Query reads, as DynamoDB reads it: from the partition sorted
    once per grouping in moto's order, the sort-key range of a BETWEEN or begins_with condition, after
    the ExclusiveStartKey, at most Limit + 1 items (moto needs the next one to hand out a
    LastEvaluatedKey), and the item past the range. moto then checks, sorts (already sorted) and pages that slice as it would the
    whole table, so a page costs what it returns, not what the partition holds."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    index = next((i for i in table.global_indexes if i.name == index_name), None)
    ranges = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"] if index else []
    if len(ranges) != 1:
        return _index_partition(table, hash_conditions)
    keys, items = _sorted_partition(table, index, ranges[0], hash_conditions)
    low, high = 0, len(items)
    op = (comparison or "").upper()
    if op == "BETWEEN":
        low = bisect.bisect_left(keys, (bounds[0].cast_value,))
        high = bisect.bisect_right(keys, (bounds[1].cast_value, _MAX))
    elif op == "BEGINS_WITH":
        prefix = bounds[0].cast_value
        low = high = bisect.bisect_left(keys, (prefix,))
        while high < len(keys) and keys[high][0][:len(prefix)] == prefix:
            high += 1
    if start_key:
        start = tuple(DynamoType(start_key[name]).cast_value for name in _sort_names(table, index, ranges[0]))
        if forward:
            low = max(low, bisect.bisect_right(keys, start))
        else:
            high = min(high, bisect.bisect_left(keys, start))
    # One item past the range: when a page ends with the range, moto hands out a LastEvaluatedKey
    # if any item follows in the partition.
    low, high = (low, min(high + 1, len(items))) if forward else (max(low - 1, 0), high)
    if limit and high - low > limit + 1:
        low, high = (low, low + limit + 1) if forward else (high - limit - 1, high)
    return items[low:high]


class _Max:
    """After every value (a BETWEEN's upper bound takes every key that begins with it)."""

    def __lt__(self, other):
        return False

    def __gt__(self, other):
        return True


_MAX = _Max()


def _sort_names(table, index, range_name: str) -> list[str]:
    """moto's order of a GSI's items: its sort key, then the table's keys."""
    return [range_name, table.hash_key_attr, *([table.range_key_attr] if table.range_key_attr else [])]


def _sorted_partition(table, index, range_name: str, hash_conditions) -> tuple[list, list]:
    """An index partition's items that hold the index's sort key, sorted, with their sort tuples;
    kept beside the grouping (until the next write)."""
    cache = table.__dict__.setdefault("_mlreg_index_groups", {}).setdefault(("sorted", index.name), {})
    hash_values = tuple(value for _, value in hash_conditions)
    if hash_values not in cache:
        names = _sort_names(table, index, range_name)
        keyed = sorted(((tuple(item.attrs[n].cast_value for n in names), item)
                        for item in _index_partition(table, hash_conditions) if range_name in item.attrs),
                       key=lambda pair: pair[0])
        cache[hash_values] = ([k for k, _ in keyed], [i for _, i in keyed])
    return cache[hash_values]


def _keys_only(table, hash_names: tuple) -> tuple | None:
    """The attributes a keys-only index holds (the table's keys and its own), or None for other
    indexes. moto deep-copies every item a Query returns, then projects it: for a keys-only index
    the grouping holds the projection already, so a Query costs what its keys weigh."""
    for index in table.global_indexes:
        if tuple(index.schema_key_attrs[:1]) == hash_names and (index.projection or {}).get("ProjectionType") == "KEYS_ONLY":
            return (table.hash_key_attr, table.range_key_attr, *index.schema_key_attrs)
    return None


def _with_attributes(item, names: tuple):
    from moto.dynamodb.models.dynamo_type import Item, LimitedSizeDict

    light = object.__new__(Item)
    light.hash_key, light.range_key = item.hash_key, item.range_key
    light.attrs = LimitedSizeDict({n: item.attrs[n] for n in names if n in item.attrs})
    return light


class _NoQueryCopies:
    """moto's table module's `copy`, except that a Query's results are not deep-copied: the response
    only reads them (projections build new items), and reads only run beside other reads."""

    def __getattr__(self, name):
        return getattr(copy, name)

    def deepcopy(self, obj, memo=None):
        if getattr(_state, "partition", None) is not None and isinstance(obj, list):
            return list(obj)
        return copy.deepcopy(obj, memo)


def _queries(table_class) -> list:
    from moto.dynamodb.models import table as table_module

    original_query, original_all_items = table_class.query, table_class.all_items

    def query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,
              projection_expressions, index_name=None, *args, hash_key_conditions=None, **kwargs):
        if index_name is None and self.range_key_attr:
            _state.partition = list(self.items.get(hash_key, {}).values())
        elif index_name and hash_key_conditions:
            _state.partition = _index_slice(self, index_name, hash_key_conditions, range_comparison, range_objs,
                                            limit, exclusive_start_key, scan_index_forward)
        try:
            return original_query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                                  scan_index_forward, projection_expressions, index_name, *args,
                                  hash_key_conditions=hash_key_conditions, **kwargs)
        finally:
            _state.partition = None

    def all_items(self):
        partition = getattr(_state, "partition", None)
        return original_all_items(self) if partition is None else partition  # query sorts what it reads

    return [(table_class, "query", query), (table_class, "all_items", all_items), (table_module, "copy", _NoQueryCopies())]


def _writes(backend_class, table_class) -> list:
    """Every write path: puts and deletes go through the table; updates change the item in place."""
    put, delete, update = table_class.put_item, table_class.delete_item, backend_class.update_item

    def put_item(self, *args, **kwargs):
        forget_groupings(self)
        return put(self, *args, **kwargs)

    def delete_item(self, *args, **kwargs):
        forget_groupings(self)
        return delete(self, *args, **kwargs)

    def update_item(self, table_name, *args, **kwargs):
        table = self.tables.get(table_name)
        if table is not None:
            forget_groupings(table)
        item = update(self, table_name, *args, **kwargs)
        item.__dict__.pop("_mlreg_size", None)
        return item

    return [(table_class, "put_item", put_item), (table_class, "delete_item", delete_item),
            (backend_class, "update_item", update_item)]


def _items() -> list:
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    def item_init(self, hash_key, range_key, attrs):
        self.hash_key, self.range_key = hash_key, range_key
        values = {name: DynamoType(value) for name, value in attrs.items()}
        size = sum(bytesize(name) + value.size() for name, value in values.items())
        if size > 405000:  # moto's limit
            raise ItemSizeTooLarge
        self.attrs = LimitedSizeDict(values)  # dict's own update: no check per attribute
        self._mlreg_size = size

    def item_size(self):
        """Counted once (a Query counts each item it returns twice, against its 1 MB page); an update
        forgets it (updates change items in place)."""
        if "_mlreg_size" not in self.__dict__:
            self._mlreg_size = sum(bytesize(name) + value.size() for name, value in self.attrs.items())
        return self._mlreg_size

    return [(Item, "__init__", item_init), (Item, "size", item_size)]


def restore_items(table, items: list[dict]) -> None:
    """Saved items (DynamoDB JSON, binary values in base64 or bytes) straight into moto's table (a
    restart of `mlreg serve`): no requests, no stream records, no size check (each passed it when
    written), and moto's attribute values built directly (about 4 times faster than its constructor)."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

    def value(saved: dict) -> DynamoType:
        converted = DynamoType.__new__(DynamoType)
        (converted.type, inner), = saved.items()
        if converted.type == "L":
            inner = [value(v) for v in inner]
        elif converted.type == "M":
            inner = {k: value(v) for k, v in inner.items()}
        elif converted.type == "B" and isinstance(inner, str):  # saved as on the wire: base64
            inner = base64.b64decode(inner)
        elif converted.type == "BS":
            inner = [base64.b64decode(v) if isinstance(v, str) else v for v in inner]
        converted.value = inner
        return converted

    hash_name, range_name = table.hash_key_attr, table.range_key_attr
    for saved in items:
        item = Item.__new__(Item)
        item.attrs = LimitedSizeDict({name: value(v) for name, v in saved.items()})
        item.hash_key, item.range_key = item.attrs[hash_name], item.attrs[range_name]
        table.items[item.hash_key][item.range_key] = item
    forget_groupings(table)


def _point_reads(table_class) -> list:
    original = table_class.get_item

    def get_item(self, hash_key, range_key=None, projection_expression=None):
        if range_key is not None and hash_key not in self.items:  # moto's self.items[hash_key] adds it
            return None
        return original(self, hash_key, range_key, projection_expression)

    return [(table_class, "get_item", get_item)]


# ---- responses: plain JSON for reads ------------------------------------------------------------------

_READS = {"GetItem", "BatchGetItem", "Query", "Scan"}


def _binary(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(type(value).__name__)


def _responses() -> list:
    from moto.dynamodb.responses import DynamoResult

    original = DynamoResult.execute_result

    def execute_result(self, context):
        if context.operation_model.name not in _READS or isinstance(self.result, Exception):
            return original(self, context)
        return 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(self.result, default=_binary)

    return [(DynamoResult, "execute_result", execute_result), _stream_records()]


def _stream_records() -> tuple:
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    def get_records(self) -> str:
        limit = self._get_param("Limit")
        result = self.backend.get_records(self._get_param("ShardIterator"), 1000 if limit is None else limit)
        return json.dumps(result, default=_stream_value)

    return DynamoDBStreamsHandler, "get_records", get_records


def _stream_value(value):
    if isinstance(value, datetime):
        return value.timestamp()
    return _binary(value)
