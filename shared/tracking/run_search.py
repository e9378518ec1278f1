"""search_runs over the materialised order indexes (gsi3 ascending, gsi4 descending).

Ordering by one metric, param, tag or start_time (and MLflow's default order) reads index entries
in order, merges the experiments' streams, loads only the candidate runs and filters them, so a page
costs reads in proportion to its size, not to the experiment's. Runs that lack the ordering field
come after all others, in MLflow's default order, as MLflow places them."""

from __future__ import annotations

import base64
import heapq
from dataclasses import dataclass, field

from shared import db, keys
from shared.filters import run_order_clause
from shared.tracking import runs

INDEX_PAGE = 100
READ_BUDGET_PAGES = 5  # a selective filter may return a short page (with a token) after this many reads
_KIND = {"metric": "metric", "param": "param", "tag": "tag"}


@dataclass(frozen=True)
class Order:
    kind: str  # metric | param | tag | start
    key: str
    ascending: bool


def indexed_order(order_by: list[str]) -> Order | None:
    """The order the indexes can serve: none given (MLflow's default), or one metric, param, tag or
    start_time clause. Anything else is ordered in memory."""
    if not order_by:
        return Order("start", "", False)
    if len(order_by) != 1:
        return None
    entity, key, ascending = run_order_clause(order_by[0])
    if entity in _KIND:
        return Order(_KIND[entity], key, ascending)
    if entity == "attribute" and key == "start_time":
        return Order("start", "", ascending)
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class _Stream:
    """One experiment's runs in order: phase 0 reads the field's index, phase 1 the runs without the
    field (by MLflow's default order). `position` is the last entry handed out, for page tokens."""

    project: str
    experiment_id: str
    order: Order
    phase: int = 0
    position: dict | None = None
    buffer: list = field(default_factory=list)
    exhausted: bool = False
    next_key: dict | None = None  # DynamoDB's LastEvaluatedKey within the current phase

    def _index(self) -> tuple[str, str, str]:
        order = self.order if self.phase == 0 else Order("start", "", False)
        name, sk = ("gsi3", "g3") if order.ascending else ("gsi4", "g4")
        return name, sk, keys.run_order(self.project, self.experiment_id, order.kind, order.key)

    def peek(self) -> tuple | None:
        while not self.buffer and not self.exhausted:
            self._fill()
        return self.buffer[0] if self.buffer else None

    def _fill(self) -> None:
        index, prefix, partition = self._index()
        start = self.next_key
        if start is None and self.position and self.position["phase"] == self.phase:  # resuming a page token
            start = {k: ({"B": base64.b64decode(v)} if k.startswith("g") and k.endswith("sk") else {"S": v})
                     for k, v in self.position["key"].items()}
        resp = db.client().query(
            TableName=db.table_name(), IndexName=index, Limit=INDEX_PAGE,
            KeyConditionExpression="#pk = :pk", ExpressionAttributeNames={"#pk": f"{prefix}pk"},
            ExpressionAttributeValues={":pk": {"S": partition}}, **({"ExclusiveStartKey": start} if start else {}))
        for item in resp.get("Items", []):
            entry_key = {"pk": item["pk"]["S"], "sk": item["sk"]["S"], f"{prefix}pk": partition,
                         f"{prefix}sk": _b64(bytes(item[f"{prefix}sk"]["B"]))}
            run_id = item["pk"]["S"].rsplit("#", 1)[1]
            self.buffer.append(((self.phase, bytes(item[f"{prefix}sk"]["B"])), run_id, self.phase, entry_key))
        self.next_key = resp.get("LastEvaluatedKey")
        if not self.next_key:
            if self.phase == 0 and self.order.kind != "start":
                self.phase = 1
            else:
                self.exhausted = True

    def take(self) -> tuple:
        entry = self.buffer.pop(0)
        self.position = {"phase": entry[2], "key": entry[3]}
        return entry


def search(project: str, experiment_ids: list[str], order: Order, view: tuple, matches, limit: int,
           cursor: dict | None) -> tuple[list[dict], dict | None]:
    """One page of runs and the cursor of the next page (None at the end)."""
    cursor = cursor or {}
    deleted_experiments = {e["experiment_id"] for e in db.parallel(lambda x: runs.experiments.load(project, x),
                                                                   experiment_ids) if e and e["lifecycle_stage"] != "active"}
    streams = [_Stream(project, e, order, phase=(cursor.get(e) or {}).get("phase", 0), position=cursor.get(e))
               for e in experiment_ids]
    page: list[dict] = []
    reads = 0
    while len(page) < limit and reads < READ_BUDGET_PAGES * max(limit, INDEX_PAGE):
        batch = _next_candidates(streams, limit - len(page))
        if not batch:
            return page, None
        loaded = db.parallel(lambda entry: runs.load(project, entry[1]), [entry for _, entry in batch])
        reads += len(batch)
        for (stream, entry), run in zip(batch, loaded):
            if run is None or (entry[2] == 1 and _has_field(run, order)):
                continue  # phase 1 lists every run; those with the field were served in phase 0
            stage = "deleted" if run["info"]["experiment_id"] in deleted_experiments else run["info"]["lifecycle_stage"]
            if stage in view and matches(runs.filter_view(run)):
                page.append(run)
    more = any(s.peek() is not None for s in streams)
    return page, ({s.experiment_id: s.position for s in streams if s.position} if more else None)


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


def _has_field(run: dict, order: Order) -> bool:
    field_map = {"metric": run["metrics"], "param": run["params"], "tag": run["tags"]}
    return order.key in field_map.get(order.kind, {})
