"""search_model_versions: pages read in proportion to their size, not to the number of versions.

Plans, by the filter's `name = '...'` / `run_id = '...'` clause and the order:
- one model, MLflow's default order (last_updated_timestamp DESC, name ASC, version DESC): the
  model's versions by last update (GSI1 `P#<p>#MV#<id>`, read backwards), page by page;
- one model, ordered by version_number (either way): the model's partition (`V#`), page by page;
- the whole project, default order: the project's versions by last update (GSI3, keys only), a
  BatchGetItem of each stretch and one of the names of its models. Versions of different models
  updated in the same millisecond are sorted by name in memory: a page never ends inside such a tie;
- a run's versions (GSI2): all of them (a run backs few), sorted in memory;
- any other order: every candidate (the model's versions, or the project's) sorted in memory. This
  is the one search still proportional to the versions it can match (docs/registry.md).
The other clauses are applied in memory. A selective filter reads on for at most READ_BUDGET pages'
worth of candidates, then answers a short page with a token, as search_runs does."""

from __future__ import annotations

import base64
from typing import Callable, Iterator

from shared import db, keys, pagination
from shared.errors import MlflowError
from shared.filters import parse_version_filter, parse_version_order_by, version_filter_clauses, version_order_columns
from shared.http import Request
from shared.registry import identity, items, messages

DEFAULT_ORDER = [("last_updated_timestamp", False), ("name", True), ("version", False)]
READ_BUDGET = 5  # pages' worth of candidates a page may read
QUERY_PAGE = 200  # index entries per Query while a page fills

Entry = tuple[list, dict]  # (position in the index, as JSON; the version's view)


def _equal_to(text: str | None, key: str) -> str | None:
    """The value of an `attribute <key> = '...'` clause of the filter, if any (it picks the index)."""
    for clause in version_filter_clauses(text):
        if clause.entity_type == "attribute" and clause.key == key and clause.comparator == "=":
            return clause.value
    return None


def _view(mv: dict, name: str) -> dict:
    view = {k: mv.get(k) for k in ("version", "run_id", "source", "current_stage", "creation_timestamp",
                                   "last_updated_timestamp")}
    return {**view, "name": name, "tags": items.version_tags(mv, name), "_mv": mv}


def search_model_versions(req: Request, msg: messages.SearchModelVersions) -> dict:
    matches, sort_key = parse_version_filter(msg.filter), parse_version_order_by(msg.order_by)
    name, run_id = _equal_to(msg.filter, "name"), _equal_to(msg.filter, "run_id")
    columns, query = version_order_columns(msg.order_by), [msg.filter, msg.order_by]
    model_id = None
    if name is not None:
        try:
            model_id = identity.resolve(req.project, name)
        except MlflowError:
            return {"model_versions": []}
    stream = None
    if run_id is None and columns == DEFAULT_ORDER:
        stream = _by_update(req.project, model_id, name) if model_id else _project_by_update(req.project)
    elif run_id is None and model_id and columns[0][0] == "version":
        stream = _by_number(req.project, model_id, name, columns[0][1])
    if stream is None:
        found = [(sort_key(v), v) for v in _candidates(req.project, model_id, name, run_id) if matches(v)]
        page, token = pagination.offset_page(req.project, query, msg.page_token, found, msg.max_results)
    else:
        cursor = pagination.decode(msg.page_token, req.project, query) or {"after": None, "skip": 0}
        group = _same_update if model_id is None else None
        page, cursor = _page(stream, cursor, msg.max_results, matches, sort_key, group)
        token = pagination.encode(req.project, query, cursor) if cursor else None
    return pagination.with_token({"model_versions": [items.version_json(v["_mv"], v["name"]) for v in page]}, token)


# ---- a page from an ordered stream --------------------------------------------------------------------

def _page(stream: Callable[[list | None], Iterator[Entry]], cursor: dict, limit: int, matches, sort_key,
          group_of: Callable[[Entry], object] | None) -> tuple[list[dict], dict | None]:
    """Up to `limit` matching versions from the stream, from `cursor` ({"after": the position before
    the group to resume, "skip": its members already answered}). `group_of`: entries the index does
    not order among themselves (one millisecond's updates across models), sorted here in memory."""
    page: list[dict] = []
    budget = READ_BUDGET * max(limit, QUERY_PAGE)
    group: list[Entry] = []
    group_after, skip, examined = cursor["after"], cursor["skip"], 0

    def flush() -> dict | None:
        """Answer the group's matching members in order; the cursor when the page fills inside it."""
        nonlocal skip
        members = sorted((view for _, view in group if matches(view)), key=sort_key)
        start, skip = skip, 0
        for i in range(start, len(members)):
            if len(page) == limit:
                return {"after": group_after, "skip": i}
            page.append(members[i])
        return None

    for entry in stream(cursor["after"]):
        if group and (group_of is None or group_of(entry) != group_of(group[0])):
            if (resume := flush()) is not None:
                return page, resume
            group_after, group = group[-1][0], []
            if examined >= budget:  # a selective filter: a short page, and a token to read on
                return page, {"after": group_after, "skip": 0}
        group.append(entry)
        examined += 1
    return page, flush()


def _same_update(entry: Entry) -> int:
    return entry[1]["last_updated_timestamp"]


def _by_update(project: str, model_id: str, name: str):
    """One model's versions, newest update first (GSI1, full items)."""
    partition, pk = keys.model_versions_by_update(project, model_id), keys.registered_model(project, model_id)

    def stream(after: list | None) -> Iterator[Entry]:
        start = None
        if after:
            start = {"g1pk": {"S": partition}, "g1sk": {"S": after[0]}, "pk": {"S": pk},
                     "sk": {"S": keys.version_sk(after[1])}}
        while True:
            found, start = db.query(partition, index="gsi1", forward=False, limit=QUERY_PAGE, start_key=start)
            for item in found:
                yield [item["g1sk"], item["version"]], _view(items.strip(item), name)
            if not start:
                return
    return stream


def _by_number(project: str, model_id: str, name: str, ascending: bool):
    """One model's versions by number (the partition itself)."""
    pk = keys.registered_model(project, model_id)

    def stream(after: list | None) -> Iterator[Entry]:
        start = {"pk": {"S": pk}, "sk": {"S": keys.version_sk(after[0])}} if after else None
        while True:
            found, start = db.query(pk, keys.VERSION_PREFIX, forward=ascending, limit=QUERY_PAGE, start_key=start,
                                    consistent=True)
            for item in found:
                yield [item["version"]], _view(items.strip(item), name)
            if not start:
                return
    return stream


def _project_by_update(project: str):
    """Every version of the project, newest update first (GSI3 keys, then the versions and the names
    of their models, a stretch at a time). Versions of deleted models are passed over."""
    partition = keys.versions_collection(project)

    def stream(after: list | None) -> Iterator[Entry]:
        start, names = None, {}
        if after:
            start = {"g3pk": {"S": partition}, "g3sk": {"B": base64.b64decode(after[0])},
                     "pk": {"S": keys.registered_model(project, after[1])}, "sk": {"S": keys.version_sk(after[2])}}
        while True:
            found, start = db.query(partition, index="gsi3", forward=False, limit=QUERY_PAGE, start_key=start)
            wanted = [(i["pk"].rsplit("#", 1)[1], int(i["sk"][2:])) for i in found]
            names.update(items.live_names(project, {m for m, _ in wanted} - names.keys()))
            versions = items.versions_of(project, [w for w in wanted if w[0] in names])
            for item, (model, number) in zip(found, wanted):
                if (model, number) in versions and names.get(model):
                    yield ([base64.b64encode(item["g3sk"]).decode(), model, number],
                           _view(versions[(model, number)], names[model]))
            if not start:
                return
    return stream


def _candidates(project: str, model_id: str | None, name: str | None, run_id: str | None) -> list[dict]:
    """Every version the filter's name or run_id clause allows (read whole, for in-memory orders)."""
    if model_id:
        return [_view(mv, name) for mv in items.iter_versions(project, model_id)]
    if run_id is not None:
        found = [i for i in db.iter_query(keys.versions_by_run(project, run_id), index="gsi2")]
    else:
        found = db.batch_get([(i["pk"], i["sk"]) for i in db.iter_query(keys.versions_collection(project),
                                                                          index="gsi3")])
    names = items.live_names(project, {i["pk"].rsplit("#", 1)[1] for i in found})
    return [_view(items.strip(i), names[m]) for i in found if (m := i["pk"].rsplit("#", 1)[1]) in names]
