"""Make moto cost what AWS does: proportional to the items a request touches, not to the table,
the queue or the bucket. Local only (`mlreg serve`, the bench); the unit tests run moto as it is.

moto as it is (bench.emulator_cost measures both):
- TransactWriteItems deep-copies the whole table (with its stream records) as its rollback copy,
  once per item of the transaction: 31 s for 5 puts at 40,000 items.
- Query walks and sorts every item of the table for a base-table Query, and of the table again for
  a GSI Query: 1.3 s at 40,000 items.
- Responses go through a generic serializer that walks the API's shape model per attribute: a
  Query page of 1 MB takes seconds (most of a 20,000-point metric history's 13 s).

Patched, with the same results:
- a transaction saves only the items it names, and on failure puts them back with their index
  entries (and drops the stream records it wrote);
- a base-table Query reads its partition only;
- a Query's results are not deep-copied (moto copies every item a Query returns; the response only
  reads them);
- a GSI Query reads the items of its index partition, grouped once per index and then kept up to
  date by every write, as DynamoDB keeps its indexes (a keys-only index's grouping holds only the
  keys, so moto's copy of each result stays small); a search right after a write no longer regroups
  the whole table, and `mlreg serve` groups every index right after a start (`group_index`), so no
  request does;
- reads (GetItem, BatchGetItem, Query, Scan) answer with plain JSON: their results already are
  DynamoDB JSON, with bytes for binary values (base64 on the wire); a caller in this process may
  take the result itself (`answer_objects`), and moto turns attribute values into plain ones
  directly, where its generic conversion probed every value (a third of a 200-item Query);
- an item's size (DynamoDB's 400 KB limit) is counted once per item, not once per attribute over the
  attributes set so far (moto's check is quadratic: most of the time of a restore, and of every put),
  and kept until an update (a Query counts the size of each item it returns twice);
- GetItem of a missing partition leaves the table as it was (moto adds an empty partition: a write,
  which concurrent reads must not make);
- moto's SQS reads the clock through datetime arithmetic (~2 us) for every message of a queue on
  every send and receive (each one counts the queue's visible and delayed messages): with the 300
  delayed package jobs of a burst of registrations, a send took 7 ms and a receive 4 ms; it reads
  time.time() (0.9 and 0.7 ms);
- an S3 listing with a prefix reads the keys below the prefix, found in a sorted index of the
  bucket's key names that every write keeps (moto copies and walks the whole bucket: 2.2 ms at 100
  keys, 14.6 ms at 20,000);
- a condition or filter expression is parsed once per (expression, names, the values' names and
  types) into a template with placeholders for the values; each write gets a copy with its own
  values in their places (31 us against moto's 123 us for a three-clause condition): moto parsed
  each anew, 17 times in a create-registered-model (a seventh of its CPU), and values that change
  with every write (a counter, a timestamp) defeat a cache of whole parses;
- an update expression is parsed once (moto parsed it twice per update, for its request's checks
  and for the update), and an update that only sets top-level attributes to given values (`SET a =
  :x, #b = :y`, none a key of the table or an index) on an existing item is applied as it reads,
  without moto's validation pass (a copy of the tree, then ten walks of it): 0.74 -> 0.12 ms, where a
  put takes 0.04; any other update, and every error, is moto's;
- the item operations' requests are parsed as json.loads does, with binary values decoded: moto
  walked the API's shape model member by member for the same result (13% of a log-batch's time);
- moto finds a request's handler among its response class's methods, listed anew with
  `inspect.getmembers` on every request (a tenth of a GetItem's time): listed once per class.

Every DynamoDB patch assumes writes take turns and reads only run beside other reads
(`mlreg.emulator` locks them so). Concurrent reads may each build a GSI grouping: the same one,
whoever keeps it. S3 requests run side by side: a bucket's keys and its index of names change
under one lock."""

from __future__ import annotations

import base64
import bisect
import copy
import functools
import json
import re
import threading
import time
from collections import defaultdict
from contextlib import contextmanager

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
    # each as its owner defines it (a classmethod itself, not the method it binds)
    originals = [(owner, name, vars(owner).get(name, getattr(owner, name))) for owner, name, _ in patches]
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
            *_point_reads(Table), *_items(), *_sqs_clock(), *_s3_listings(), *_handler_names(), *_parsed_conditions(),
            *_parsed_updates(), *_plain_json_requests()]


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
    """The items a failed transaction named put back, and their index entries with them (a grouping
    forgotten instead would cost the next GSI Query a walk of the whole table)."""
    for table, hash_value, range_value, item in saved:
        grouped = "_mlreg_index_groups" in table.__dict__
        before = _places(table, table.items.get(hash_value, {}).get(range_value)) if grouped else []
        if item is None:
            table.items.get(hash_value, {}).pop(range_value, None)
        else:
            table.items[hash_value][range_value] = item
        if grouped:
            _moved(table, (hash_value, range_value), before, item)
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
    """Forget the table's GSI groupings: items changed other than by a write request (a restore, an
    undone transaction)."""
    table.__dict__.pop("_mlreg_index_groups", None)


def _groupings(table) -> dict:
    """hash attribute names -> {hash values -> {table key -> entry}}, and ("sorted", index name) ->
    {hash values -> (sort tuples, entries)}: built on first use, then kept by `_moved`."""
    return table.__dict__.setdefault("_mlreg_index_groups", {})


def _table_key(item) -> tuple:
    return item.hash_key, item.range_key


def _hash_values(item, names: tuple) -> tuple | None:
    values = tuple(item.attrs.get(name) for name in names)
    return values if all(v is not None for v in values) else None


def group_index(table, index) -> None:
    """A GSI's grouping, built now (`mlreg serve` after a start, in the background): else the first
    Query of the index walks the whole table (~550 ms at 7,000 runs) in a request."""
    _index_partition(table, [(index.schema_key_attrs[0], None)])


def _index_partition(table, hash_conditions) -> list:
    """The items whose index hash attributes equal the Query's (each index has its own hash
    attributes, so they name the grouping)."""
    groups = _groupings(table)
    names = tuple(name for name, _ in hash_conditions)
    if names not in groups:
        kept = _keys_only(table, names)
        grouped: dict = defaultdict(dict)
        for partition in table.items.values():
            for item in partition.values():
                values = _hash_values(item, names)
                if values is not None:
                    grouped[values][_table_key(item)] = item if kept is None else _with_attributes(item, kept)
        groups[names] = grouped
    return list(groups[names].get(tuple(value for _, value in hash_conditions), {}).values())


def _places(table, item) -> list[tuple]:
    """Where `item` (None: no item) sits in the table's groupings, as values that a later change of
    the item in place does not alter: (grouping, index hash names, hash values, sort tuple or None
    for the grouping of a whole index partition)."""
    if item is None:
        return []
    places = []
    for name, grouping in _groupings(table).items():
        if name[0] != "sorted":
            values = _hash_values(item, name)
            if values is not None:
                places.append((grouping, name, values, None))
            continue
        index = next(i for i in table.global_indexes if i.name == name[1])
        names = tuple(index.schema_key_attrs[:1])
        values = _hash_values(item, names)
        if values is not None and index.schema_key_attrs[1] in item.attrs:
            places.append((grouping, names, values, _sort_tuple(table, index, item)))
    return places


def _moved(table, key: tuple, before: list[tuple], item) -> None:
    """After a write to the item at `key`: its old entries (`before`: its places before the write)
    out of the groupings, its new ones (`item`: the item now, None when it is gone) in."""
    for grouping, _, values, sort in before:
        if sort is None:
            grouping.get(values, {}).pop(key, None)
        elif values in grouping:
            sort_keys, entries = grouping[values]
            at = bisect.bisect_left(sort_keys, sort)
            if at < len(sort_keys) and sort_keys[at] == sort:
                del sort_keys[at], entries[at]
    for grouping, names, values, sort in _places(table, item):
        kept = _keys_only(table, names)
        entry = item if kept is None else _with_attributes(item, kept)
        if sort is None:
            grouping.setdefault(values, {})[key] = entry
        elif values in grouping:  # a sorted partition not built yet is built from its grouping when read
            sort_keys, entries = grouping[values]
            at = bisect.bisect_left(sort_keys, sort)
            sort_keys.insert(at, sort)
            entries.insert(at, entry)


def _keeping_indexes(table, hash_value, range_value, write):
    """`write()`, which changes at most the item at this key, with the groupings kept up to date."""
    from moto.dynamodb.exceptions import ConditionalCheckFailed

    if "_mlreg_index_groups" not in table.__dict__:
        return write()
    key = (hash_value, range_value)
    before = _places(table, table.items.get(hash_value, {}).get(range_value))
    try:
        result = write()
    except ConditionalCheckFailed:  # nothing changed
        raise
    except Exception:  # it may have changed the item part-way: group again when next read
        forget_groupings(table)
        raise
    _moved(table, key, before, table.items.get(hash_value, {}).get(range_value))
    return result


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


def _sort_tuple(table, index, item) -> tuple:
    return tuple(item.attrs[n].cast_value for n in _sort_names(table, index, index.schema_key_attrs[1]))


def _sorted_partition(table, index, range_name: str, hash_conditions) -> tuple[list, list]:
    """An index partition's items that hold the index's sort key, sorted, with their sort tuples;
    kept beside the grouping."""
    cache = _groupings(table).setdefault(("sorted", index.name), {})
    hash_values = tuple(value for _, value in hash_conditions)
    if hash_values not in cache:
        keyed = sorted(((_sort_tuple(table, index, item), item)
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
    from moto.dynamodb.models.dynamo_type import DynamoType

    put, delete, update = table_class.put_item, table_class.delete_item, backend_class.update_item

    def put_item(self, item_attrs, *args, **kwargs):
        hash_value = DynamoType(item_attrs[self.hash_key_attr]) if self.hash_key_attr in item_attrs else None
        range_value = DynamoType(item_attrs[self.range_key_attr]) if self.range_key_attr in item_attrs else None
        return _keeping_indexes(self, hash_value, range_value, lambda: put(self, item_attrs, *args, **kwargs))

    def delete_item(self, hash_key, range_key, *args, **kwargs):
        return _keeping_indexes(self, hash_key, range_key, lambda: delete(self, hash_key, range_key, *args, **kwargs))

    def update_item(self, table_name, key, *args, **kwargs):
        table = self.tables.get(table_name)
        if table is None or table.hash_key_attr not in key or table.range_key_attr not in key:
            if table is not None:
                forget_groupings(table)
            return update(self, table_name, key, *args, **kwargs)
        def write():
            done = _plain_sets(table, key, *args, **kwargs)
            return update(self, table_name, key, *args, **kwargs) if done is None else done

        item = _keeping_indexes(table, DynamoType(key[table.hash_key_attr]), DynamoType(key[table.range_key_attr]),
                                write)
        item.__dict__.pop("_mlreg_size", None)
        return item

    return [(table_class, "put_item", put_item), (table_class, "delete_item", delete_item),
            (backend_class, "update_item", update_item)]


# ---- updates: parsed once; plain SETs applied as they read -------------------------------------------

UPDATES_KEPT = 4096
_PLAIN_SET = re.compile(r"\s*(#[A-Za-z0-9_]+|[A-Za-z][A-Za-z0-9_]*)\s*=\s*(:[A-Za-z0-9_]+)\s*")


def _parsed_updates() -> list:
    """moto parses an update expression twice per update (its request's checks, then the update): the
    tree of each expression is kept (nothing changes it: moto's validator works on a copy)."""
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    make, kept = UpdateExpressionParser.make.__func__, {}

    def kept_make(cls, expression):
        tree = kept.get(expression)
        if tree is None:
            tree = make(cls, expression)  # moto's error for a bad one
            if len(kept) >= UPDATES_KEPT:
                kept.clear()
            kept[expression] = tree
        return tree

    return [(UpdateExpressionParser, "make", classmethod(kept_make))]


@functools.cache
def _reserved_words() -> frozenset[str]:
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    return frozenset(ReservedKeywords.get_reserved_keywords())


def _set_pairs(table, expression: str, names: dict | None, values: dict | None) -> list[tuple[str, dict]] | None:
    """(attribute, value) for each action of `SET a = :x, #b = :y` (top-level attributes set to given
    values, each once, none a key of the table or an index), the update mlreg makes most; else None.
    Its syntax was checked by moto's request handling, which parsed the expression before."""
    verb, _, actions = expression.strip().partition(" ")
    if verb.upper() != "SET":
        return None
    pairs, keys = [], table.attribute_keys
    for action in actions.split(","):
        match = _PLAIN_SET.fullmatch(action)
        if match is None:
            return None
        path, placeholder = match.groups()
        name = (names or {}).get(path) if path.startswith("#") else path
        value = (values or {}).get(placeholder)
        if name is None or not isinstance(value, dict) or len(value) != 1 or name in keys \
                or (path == name and name.upper() in _reserved_words()):
            return None  # moto's way, and its error where there is one
        pairs.append((name, value))
    return pairs if len({name for name, _ in pairs}) == len(pairs) else None


def _plain_sets(table, key: dict, update_expression: str | None, expression_attribute_names: dict | None,
                expression_attribute_values: dict | None, attribute_updates=None, expected=None,
                condition_expression: str | None = None, return_values_on_condition_check_failure: str | None = None):
    """A plain SET update of an existing item (`_set_pairs`) as moto's update_item makes it, with no
    validation pass over a copy of its tree (10 walks; 0.74 ms against 0.04 for a put), or None
    (nothing done) for moto to make it."""
    from moto.dynamodb import models
    from moto.dynamodb.exceptions import ConditionalCheckFailed, ItemSizeTooLarge, ItemSizeToUpdateTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType

    if not update_expression or attribute_updates or expected:
        return None
    pairs = _set_pairs(table, update_expression, expression_attribute_names, expression_attribute_values)
    if pairs is None:
        return None
    item = table.get_item(DynamoType(key[table.hash_key_attr]), DynamoType(key[table.range_key_attr]))
    if item is None:  # moto makes it
        return None
    before = copy.deepcopy(item)
    condition = models.create_condition_expression_parser(condition_expression, expression_attribute_names,
                                                          expression_attribute_values).parse()
    if not condition.expr(item):
        if return_values_on_condition_check_failure == "ALL_OLD":
            raise ConditionalCheckFailed(item=item.to_json()["Attributes"])
        raise ConditionalCheckFailed
    try:
        for name, value in pairs:
            item.attrs[name] = DynamoType(value)
    except ItemSizeTooLarge:
        raise ItemSizeToUpdateTooLarge() from None
    if table.stream_shard is not None:
        table.stream_shard.add(before, item)
    return item


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


def _sqs_clock() -> list:
    """The same epoch seconds moto computes from a naive UTC datetime, read directly."""
    from moto.sqs import models

    unix_time, unix_time_millis = models.unix_time, models.unix_time_millis

    def seconds(dt=None) -> float:
        return time.time() if dt is None else unix_time(dt)

    def millis(dt=None) -> float:
        return time.time() * 1000.0 if dt is None else unix_time_millis(dt)

    return [(models, "unix_time", seconds), (models, "unix_time_millis", millis)]


CONDITIONS_KEPT = 1024  # parsed condition expressions (the table's write code has a few dozen)


class _Hole:
    """Where a template's expression attribute value goes (`_parsed_conditions`)."""

    def __init__(self, name: str) -> None:
        self.name = name


def _holes(node, found: dict) -> dict:
    """id -> (name, type) of every placeholder AttributeValue in a parsed expression tree."""
    if isinstance(node, (list, tuple)):
        for child in node:
            _holes(child, found)
    elif hasattr(node, "__dict__"):
        if isinstance(getattr(node, "value", None), _Hole):
            found[id(node)] = (node.value.name, node.type)
        for child in vars(node).values():
            _holes(child, found)
    return found


class _KeptParser:
    """moto's ConditionExpressionParser as moto's code uses it (`parse()`, then the names and values
    it found), answered from the templates `_parsed_conditions` keeps."""

    def __init__(self, parsed, expression, names, values) -> None:
        self._parsed, self._args = parsed, (expression, names, values)
        self.expr_attr_names_found: list[str] = []
        self.expr_attr_values_found: list[str] = []

    def parse(self):
        tree, names, values = self._parsed(*self._args)
        self.expr_attr_names_found, self.expr_attr_values_found = list(names), list(values)
        return tree


def _parsed_conditions() -> list:
    from moto.dynamodb import comparisons, models, responses
    from moto.dynamodb.models import table

    kept: dict[tuple, tuple] = {}

    def moto_parse(expression, names, values) -> tuple:
        parser = comparisons.create_condition_expression_parser(expression, names, values)
        return parser.parse(), parser.expr_attr_names_found, parser.expr_attr_values_found

    def filled(tree, holes: dict, values: dict):
        """A copy of the tree with these values in their places (evaluating a tree only reads it)."""
        if not holes:
            return tree
        return copy.deepcopy(tree, {hole: comparisons.AttributeValue({kind: values[name][kind]})
                                    for hole, (name, kind) in holes.items()})

    def template(expression, names, values: dict, parsed):
        """The expression parsed once with placeholders for its values, and where they sit; None
        where that does not give what `parsed` (moto's parse with the values) is."""
        try:
            tree = moto_parse(expression, names, {k: {kind: _Hole(k) for kind in v} for k, v in values.items()})[0]
            holes = _holes(tree, {})
            return (tree, holes) if repr(filled(tree, holes, values)) == repr(parsed) else None
        except Exception:
            return None

    def parsed(expression, names, values) -> tuple:
        """(tree, names found, values found), as moto's parser gives them."""
        key = (expression, repr(names), tuple((k, tuple(v)) for k, v in sorted((values or {}).items())))
        entry = kept.get(key)  # one lookup: readers run side by side, and a writer may clear `kept`
        if entry is not None:
            found, names_found, values_found = entry
            tree = filled(*found, values) if found else moto_parse(expression, names, values)[0]
            return tree, names_found, values_found
        tree, names_found, values_found = moto_parse(expression, names, values)  # moto's error for a bad one
        if len(kept) >= CONDITIONS_KEPT:
            kept.clear()
        found = template(expression, names, values or {}, tree) if expression else None
        kept[key] = found, tuple(names_found), tuple(values_found)
        return tree, names_found, values_found

    def get_filter_expression(expression, names, values):
        return parsed(expression, names, values)[0]

    def create_condition_expression_parser(expression, names, values):
        return _KeptParser(parsed, expression, names, values)

    return [(models, "get_filter_expression", get_filter_expression),
            (table, "get_filter_expression", get_filter_expression),
            (models, "create_condition_expression_parser", create_condition_expression_parser),
            (responses, "create_condition_expression_parser", create_condition_expression_parser)]


# ---- requests: plain JSON ---------------------------------------------------------------------------

JSON_ACTIONS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "PutItem", "UpdateItem",
                "DeleteItem", "BatchWriteItem", "TransactWriteItems"}  # the item operations mlreg makes


def blobs_decoded(value: dict) -> dict:
    """A binary AttributeValue's base64 (B, BS) as the bytes it stands for: json.loads' object hook."""
    if len(value) == 1:
        if isinstance(value.get("B"), str):
            value["B"] = base64.b64decode(value["B"])
        elif isinstance(value.get("BS"), list) and all(isinstance(v, str) for v in value["BS"]):
            value["BS"] = [base64.b64decode(v) for v in value["BS"]]
    return value


def _plain_json_requests() -> list:
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.parse_parameters

    def parse_parameters(self, request) -> None:
        if self._get_action() in JSON_ACTIONS:
            try:
                params = json.loads(request.data or b"{}", object_hook=blobs_decoded)
            except ValueError:
                params = None
            if isinstance(params, dict):
                self.params = params
                return
        original(self, request)

    return [(DynamoHandler, "parse_parameters", parse_parameters)]


def _handler_names() -> list:
    from moto.core import responses

    return [(responses, "method_names_from_class", functools.cache(responses.method_names_from_class))]


# ---- S3 listings: read below the prefix -----------------------------------------------------------------

_key_names_lock = threading.Lock()  # a bucket's keys and its index of names change together


def _sorted_names(store) -> list[str]:
    """The store's key names in order: built on first use, then kept by its writes."""
    names = store.__dict__.get("_mlreg_names")
    if names is None:
        names = store.__dict__["_mlreg_names"] = sorted(dict.keys(store))
    return names


class _KeysBelow:
    """A bucket as moto's listing reads it (`bucket.keys.items()`), holding only the keys below a prefix."""

    def __init__(self, store, prefix: str) -> None:
        self.keys = self
        with _key_names_lock:
            names = _sorted_names(store)
            below = names[bisect.bisect_left(names, prefix):]
            self._items = [(name, store[name]) for name in _while_prefixed(below, prefix)]

    def items(self) -> list:
        return self._items


def _while_prefixed(names: list[str], prefix: str):
    for name in names:
        if not name.startswith(prefix):
            return
        yield name


def _s3_listings() -> list:
    from moto.s3.models import S3Backend
    from moto.s3.utils import _VersionedKeyStore as Store

    set_item, set_list, pop, list_objects = Store.__setitem__, Store.setlist, Store.pop, S3Backend.list_objects

    def named(store, key: str) -> None:
        names = store.__dict__.get("_mlreg_names")
        if names is not None and not dict.__contains__(store, key):
            bisect.insort(names, key)

    def unnamed(store, key: str) -> None:
        names = store.__dict__.get("_mlreg_names")
        if names is not None:
            at = bisect.bisect_left(names, key)
            if at < len(names) and names[at] == key:
                del names[at]

    def store_set_item(self, key, value):
        with _key_names_lock:
            named(self, key)
            return set_item(self, key, value)

    def store_set_list(self, key, list_):
        with _key_names_lock:
            named(self, key)
            return set_list(self, key, list_)

    def store_pop(self, key):
        with _key_names_lock:
            pop(self, key)
            unnamed(self, key)

    def store_del_item(self, key):
        with _key_names_lock:
            dict.__delitem__(self, key)
            unnamed(self, key)

    def list_objects_below(self, bucket, prefix, delimiter, marker, max_keys):
        if prefix and type(bucket.keys) is Store:
            bucket = _KeysBelow(bucket.keys, prefix)
        return list_objects(self, bucket, prefix, delimiter, marker, max_keys)

    return [(Store, "__setitem__", store_set_item), (Store, "setlist", store_set_list), (Store, "pop", store_pop),
            (Store, "__delitem__", store_del_item), (S3Backend, "list_objects", list_objects_below)]


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


# A caller in this process that sets `.wanted` gets a read's result itself in `.result`, and an
# empty body: no JSON written for it to parse back (mlreg.dynamodb_in_process).
answer_objects = threading.local()


def _responses() -> list:
    from moto.dynamodb import responses
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict

    original, original_to_dict = responses.DynamoResult.execute_result, responses.dynamo_to_dict

    def execute_result(self, context):
        if context.operation_model.name not in _READS or isinstance(self.result, Exception):
            return original(self, context)
        if getattr(answer_objects, "wanted", False):
            answer_objects.result, body = self.result, ""
        else:
            body = json.dumps(self.result, default=_binary)
        return 200, {"Content-Type": "application/x-amz-json-1.0"}, body

    def dynamo_to_dict(obj):
        """moto's conversion of a result to plain values, with attribute values (most of a read's
        items) taken straight; everything else as moto converts it."""
        kind = type(obj)
        if kind is DynamoType:
            value = obj.value
            if obj.type == "M":
                return {"M": {k: dynamo_to_dict(v) for k, v in value.items()}}
            if obj.type == "L":
                return {"L": [dynamo_to_dict(v) for v in value]}
            if obj.type in ("B", "BS") or type(value) not in (str, bool, list):
                return original_to_dict(obj)
            return {obj.type: list(value) if type(value) is list else value}
        if kind is dict or kind is LimitedSizeDict:
            return {k: dynamo_to_dict(v) for k, v in obj.items()}
        if kind is list:
            return [dynamo_to_dict(v) for v in obj]
        return original_to_dict(obj)

    return [(responses.DynamoResult, "execute_result", execute_result), (responses, "dynamo_to_dict", dynamo_to_dict)]
