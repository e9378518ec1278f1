"""search_runs: a page of runs in at most two sequential round trips for the orders the indexes hold.

RT1 reads one index partition per experiment (beside the experiment's own Query): for MLflow's
default order, the experiment's collection of summaries (gsi2, sorted in that order: the page comes
whole, no RT2); otherwise an order index (gsi3 ascending, gsi4 descending; keys only): the order
field's partition, narrowed by a key condition when a filter clause is on that field (a range or an
equality), or, for the default order with an equality clause on a param, tag or metric, the
clause's own partition narrowed to the value, whose entries already come in default order (every
key ends with MLflow's tie-breaks). RT2 reads those candidates' summaries (`#R`) in parallel
BatchGetItems; the remaining clauses run in memory. A summary is the truth: an index entry that does
not match it (a write in flight) is skipped. Clauses the indexes do not narrow may reject
candidates: after a read budget the page comes back short, with a token. Runs lacking the order
field come after all others in default order, as MLflow places them. Orderings the indexes do not
hold read the experiment's collection of summaries and sort in memory."""

from __future__ import annotations

import base64
import heapq
from dataclasses import dataclass, field
from functools import partial

from shared import db, keys
from shared.filters import Clause, parse_run_order_by, run_matcher, run_order_clause
from shared.tracking import experiments, runs

INDEX_PAGE = 100  # the read budget's unit for pages smaller than this
QUERY_MAX = 1000  # index entries per Query: a page of 1,000 reads 1,001 (one more: is there a next page?)
READ_BUDGET_PAGES = 5  # a selective filter may return a short page (with a token) after this many reads
_KIND = {"metric": "metric", "param": "param", "tag": "tag"}
_DEFAULT = ("start", "", False)
_BINARY_KEYS = ("g3sk", "g4sk")


@dataclass(frozen=True)
class Order:
    kind: str  # metric | param | tag | start
    key: str
    ascending: bool


@dataclass(frozen=True)
class Source:
    """An order-index partition to read, with its key condition: ("begins", prefix) or ("between",
    low, high) over the index's sort key, or None."""

    kind: str
    key: str
    ascending: bool
    condition: tuple | None = None


def indexed_order(order_by: list[str]) -> Order | None:
    """The order the indexes can serve: none given (MLflow's default), or one metric, param, tag or
    start_time clause. Anything else is ordered in memory."""
    if not order_by:
        return Order(*_DEFAULT)
    if len(order_by) != 1:
        return None
    entity, key, ascending = run_order_clause(order_by[0])
    if entity in _KIND:
        return Order(_KIND[entity], key, ascending)
    if entity == "attribute" and key == "start_time":
        return Order("start", "", ascending)
    return None


# ---- the plan --------------------------------------------------------------------------------------

def plan(order: Order, clauses: list[Clause]) -> tuple[Source, bool, bool]:
    """The index partition a page reads first, whether runs lacking the order field follow, and
    whether clauses remain that the key condition does not answer (candidates may then be rejected)."""
    if (order.kind, order.key, order.ascending) == _DEFAULT:
        for c in clauses:
            value = _index_value(c)
            if c.comparator == "=" and c.entity_type in _KIND and value is not None:
                source = Source(c.entity_type, c.key, True, ("begins", keys.order_head(value, True)))
                return source, False, len(clauses) > 1
    on_field = [c for c in clauses if _on_field(c, order)]
    narrowing = sorted(((c, cond) for c, cond in ((c, _condition(c, order.ascending)) for c in on_field) if cond),
                       key=lambda pair: pair[1][0] != "begins")  # an equality narrows most
    lacking = order.kind != "start" and not any(c.comparator != "IS NULL" for c in on_field)
    if not narrowing:
        return Source(order.kind, order.key, order.ascending), lacking, bool(clauses)
    used, condition = narrowing[0]
    residual = len(clauses) > 1 or used.comparator == "LIKE"
    return Source(order.kind, order.key, order.ascending, condition), lacking, residual


def _on_field(clause: Clause, order: Order) -> bool:
    if order.kind == "start":
        return clause.entity_type == "attribute" and clause.key == "start_time"
    return clause.entity_type == order.kind and clause.key == order.key


def _index_value(clause: Clause):
    """The clause's value as the index encodes its field's values; None when it cannot narrow."""
    value = clause.value
    if clause.entity_type == "metric":
        return float(value)
    if clause.entity_type == "attribute":  # start_time: the index holds integers
        return value if isinstance(value, int) else None
    return value if isinstance(value, str) else None


def _condition(clause: Clause, ascending: bool) -> tuple | None:
    """A key condition every run satisfying `clause` meets (a superset: strictness and long strings
    are checked in memory)."""
    if clause.comparator == "LIKE":
        literal = clause.value.split("%", 1)[0].split("_", 1)[0]
        return ("begins", keys.order_text_prefix(literal, ascending)) if literal else None
    value = _index_value(clause)
    if value is None or clause.comparator not in ("=", ">", ">=", "<", "<="):
        return None
    head = keys.order_head(value, ascending)
    if clause.comparator == "=":
        return "begins", head
    # Keys of larger values come after `head` (ascending) or before it (descending); a key that
    # begins with `head` (the value itself) sorts after `head` and before after_order_head(head).
    low, high = keys.NUMBERS_HEAD, keys.after_order_head(keys.NUMBERS_HEAD)
    strict = clause.comparator in (">", "<")
    if (clause.comparator in (">", ">=")) == ascending:
        return "between", keys.after_order_head(head) if strict else head, high
    return "between", low, head if strict else keys.after_order_head(head)


# ---- index streams ---------------------------------------------------------------------------------

@dataclass
class _Stream:
    """One experiment's candidates in order: phase 0 reads the plan's source, phase 1 (when runs
    lacking the order field follow) every run by MLflow's default order. `position` is the last
    entry a page used, for page tokens."""

    project: str
    experiment_id: str
    source: Source
    lacking: bool
    phase: int = 0
    position: dict | None = None
    buffer: list = field(default_factory=list)
    exhausted: bool = False
    next_key: dict | None = None  # DynamoDB's LastEvaluatedKey within the current phase

    def current(self) -> Source:
        return self.source if self.phase == 0 else Source(*_DEFAULT)

    def fill(self, wanted: int) -> None:
        while len(self.buffer) < wanted and not self.exhausted:
            self._query(wanted - len(self.buffer))

    def peek(self) -> tuple | None:
        self.fill(1)
        return self.buffer[0] if self.buffer else None

    def _query(self, wanted: int) -> None:
        source = self.current()
        if source == Source(*_DEFAULT):  # the summaries themselves, in default order: no RT2 for them
            index, prefix, partition = "gsi2", "g2", keys.runs_collection(self.project, self.experiment_id)
        else:
            index, prefix = ("gsi3", "g3") if source.ascending else ("gsi4", "g4")
            partition = keys.run_order(self.project, self.experiment_id, source.kind, source.key)
        start = self.next_key
        if start is None and self.position and self.position["phase"] == self.phase:  # resuming a page token
            start = {k: ({"B": base64.b64decode(v)} if k in _BINARY_KEYS else {"S": v})
                     for k, v in self.position["key"].items()}
        condition, values = "#pk = :pk", {":pk": {"S": partition}}
        if source.condition and source.condition[0] == "begins":
            condition += " AND begins_with(#sk, :lo)"
            values[":lo"] = {"B": source.condition[1]}
        elif source.condition:
            condition += " AND #sk BETWEEN :lo AND :hi"
            values[":lo"], values[":hi"] = {"B": source.condition[1]}, {"B": source.condition[2]}
        names = {"#pk": f"{prefix}pk", **({"#sk": f"{prefix}sk"} if source.condition else {})}
        resp = db.client().query(
            TableName=db.table_name(), IndexName=index, Limit=min(wanted, QUERY_MAX),
            KeyConditionExpression=condition, ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            **({"ExclusiveStartKey": start} if start else {}))
        for item in resp.get("Items", []):
            summary = db.from_item(item) if index == "gsi2" else None
            sort_key = summary["g2sk"] if summary else bytes(item[f"{prefix}sk"]["B"])
            entry_key = {"pk": item["pk"]["S"], "sk": item["sk"]["S"], f"{prefix}pk": partition,
                         f"{prefix}sk": sort_key if summary else base64.b64encode(sort_key).decode()}
            run_id = item["pk"]["S"].rsplit("#", 1)[1]
            self.buffer.append(((self.phase, sort_key), run_id, self.phase, entry_key, source, summary))
        self.next_key = resp.get("LastEvaluatedKey")
        if not self.next_key:
            if self.phase == 0 and self.lacking:
                self.phase = 1
            else:
                self.exhausted = True

    def take(self) -> tuple:
        """The next entry (its position is recorded when the page uses it)."""
        return self.buffer.pop(0)


def search(project: str, experiment_ids: list[str], order: Order, view: tuple, clauses: list[Clause], limit: int,
           cursor: dict | None) -> tuple[list[dict], dict | None]:
    """One page of runs and the cursor of the next page (None at the end)."""
    cursor = cursor or {}
    source, lacking, residual = plan(order, clauses)
    matches = run_matcher(clauses)
    streams = [_Stream(project, e, source, lacking, phase=(cursor.get(e) or {}).get("phase", 0), position=cursor.get(e))
               for e in experiment_ids]
    budget = READ_BUDGET_PAGES * max(limit, INDEX_PAGE)
    page: list[dict] = []
    reads = 0
    # RT1: the index pages, and the experiments (a deleted one's runs count as deleted), side by side
    found = db.parallel(lambda task: task(), [partial(experiments.load, project, e) for e in experiment_ids]
                        + [partial(s.fill, _candidates_wanted(limit, budget, residual) + 1) for s in streams])
    deleted_experiments = {e["experiment_id"] for e in found[:len(experiment_ids)]
                           if e and e["lifecycle_stage"] != "active"}
    while len(page) < limit and reads < budget:
        n = _candidates_wanted(limit - len(page), budget - reads, residual)
        db.parallel(lambda s: s.fill(n + 1), streams)
        batch = _next_candidates(streams, n)
        if not batch:
            return page, None
        loaded = summaries(project, [entry for _, entry in batch])  # RT2
        for k, (stream, (sort_key, run_id, phase, entry_key, entry_source, _)) in enumerate(batch):
            if len(page) == limit:
                _put_back(batch[k:])
                break
            reads += 1
            stream.position = {"phase": phase, "key": entry_key}
            run = loaded.get(run_id)
            if run is None or not _is_candidate(run, phase, sort_key[1], entry_source, order):
                continue
            stage = "deleted" if run["info"]["experiment_id"] in deleted_experiments else run["info"]["lifecycle_stage"]
            if stage in view and matches(runs.filter_view(run)):
                page.append(run)
    more = any(s.peek() is not None for s in streams)
    return page, ({s.experiment_id: s.position for s in streams if s.position} if more else None)


def _candidates_wanted(missing: int, budget_left: int, residual: bool) -> int:
    """Clauses the key condition leaves may reject candidates: read twice the page's need at once
    rather than another pair of round trips (unused candidates go back to their streams)."""
    return min(missing * (2 if residual else 1), budget_left)


def _put_back(unused: list[tuple["_Stream", tuple]]) -> None:
    """Candidates read but not needed for the page return to the front of their streams, in order."""
    for stream, entry in reversed(unused):
        stream.buffer.insert(0, entry)


def summaries(project: str, entries: list[tuple]) -> dict[str, dict]:
    """The candidates' runs by id: from the summaries their entries carry (the default order's
    collection), the others' by one parallel BatchGetItem (overflowed runs load their partition)."""
    carried = [entry[5] for entry in entries if entry[5]]
    wanted = [(keys.run(project, entry[1]), keys.RUN_SK) for entry in entries if not entry[5]]
    metas = carried + (db.batch_get(wanted, consistent=True) if wanted else [])
    return {run["info"]["run_id"]: run for run in runs.from_metas(project, metas)}


def _is_candidate(run: dict, phase: int, sort_key: bytes, source: Source, order: Order) -> bool:
    """Phase 0: the entry still matches the summary (else a newer entry of the run exists). Phase 1
    lists every run; those with the order field were served in phase 0."""
    if phase == 1:
        return _field_value(run, order.kind, order.key) is None
    if source == Source(*_DEFAULT):
        return True  # the entry is the summary
    value = _field_value(run, source.kind, source.key)
    if value is None:
        return False
    ascending, descending = keys.order_values(value, run["info"]["start_time"], run["info"]["run_id"])
    return sort_key == (ascending if source.ascending else descending)


def _field_value(run: dict, kind: str, key: str):
    if kind == "start":
        return run["info"]["start_time"] or 0
    if kind == "metric":
        metric = run["metrics"].get(key)
        return None if metric is None else runs.metric_value(metric)
    return run[f"{kind}s"].get(key)


def _next_candidates(streams: list[_Stream], n: int) -> list[tuple[_Stream, tuple]]:
    """The next n entries of the merged streams, in global order."""
    heap = [(s.peek()[0], i) for i, s in enumerate(streams) if s.peek() is not None]
    heapq.heapify(heap)
    out = []
    while heap and len(out) < n:
        _, i = heapq.heappop(heap)
        out.append((streams[i], streams[i].take()))
        nxt = streams[i].peek()
        if nxt is not None:
            heapq.heappush(heap, (nxt[0], i))
    return out


# ---- orderings the indexes do not hold -----------------------------------------------------------------

def search_in_memory(project: str, experiment_ids: list[str], view: tuple, clauses: list[Clause],
                     order_by: list[str], limit: int, offset: int) -> tuple[list[dict], int | None]:
    """Load the experiments' summaries (one paged Query of gsi2 each), filter, sort."""
    matches, sort_key = run_matcher(clauses), parse_run_order_by(order_by)
    found = []
    for experiment_runs in db.parallel(partial(runs_of_experiment, project), experiment_ids):
        for run in experiment_runs:
            run_view = runs.filter_view(run)
            if run["info"]["lifecycle_stage"] in view and matches(run_view):
                found.append((sort_key(run_view), run))
    found.sort(key=lambda pair: pair[0])
    return [run for _, run in found[offset:offset + limit]], (offset + limit if offset + limit < len(found) else None)


def runs_of_experiment(project: str, experiment_id: str) -> list[dict]:
    """Every run of an experiment from its summaries (one paged Query of its collection, gsi2)."""
    return runs.from_metas(project, list(db.iter_query(keys.runs_collection(project, experiment_id), index="gsi2")))
