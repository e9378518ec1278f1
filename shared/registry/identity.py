"""A registered model's identity: an immutable id, found from its name through one guard item.

`P#<p>#MN#<name>` / `#G` holds the id of the model that has the name now. It is written with
`attribute_not_exists` (names are unique), swapped in the transaction of a rename and deleted in the
transaction of a delete, so a name maps to one live model or to none, and the old name of a renamed
or deleted model is free at once. Everything else of the model is keyed by the id.

Reads that must stay one round trip (get-model-version, get-by-alias) keep a per-container cache of
name -> id and read the guard *in the same BatchGetItem* as the id-keyed item: the answer is taken
only when the guard still maps the name to the cached id, which makes it as current as the guard.
Warm (the name seen before in this container): 1 round trip. Cold, or stale after a rename or a
delete: the guard read tells the right id (or that there is none), and a second round trip reads the
item under it. Writes read the guard strongly consistently first (`resolve`), so a cached id never
chooses where a write lands."""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Callable

from shared import db, keys
from shared.errors import not_found

CACHE_SIZE = 4096  # names per container; an entry is a short string pair


class _NameCache:
    """Least recently used name -> id entries of one container (shared by the handler's threads)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._entries: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._size, self._lock = size, Lock()

    def get(self, project: str, name: str) -> str | None:
        with self._lock:
            found = self._entries.get((project, name))
            if found is not None:
                self._entries.move_to_end((project, name))
            return found

    def put(self, project: str, name: str, model_id: str | None) -> None:
        with self._lock:
            if model_id is None:
                self._entries.pop((project, name), None)
                return
            self._entries[(project, name)] = model_id
            self._entries.move_to_end((project, name))
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


CACHE = _NameCache()


def guard_item(project: str, name: str, model_id: str) -> dict:
    return {"pk": keys.model_name_guard(project, name), "sk": keys.GUARD_SK, "model_id": model_id, "name": name}


def model_not_found(name: str):
    return not_found(f"Registered Model with name={name} not found")


def resolve(project: str, name: str) -> str:
    """The id the name maps to now: one strongly consistent GetItem (writes start here)."""
    guard = db.get(keys.model_name_guard(project, name), keys.GUARD_SK)
    CACHE.put(project, name, guard and guard["model_id"])
    if guard is None:
        raise model_not_found(name)
    return guard["model_id"]


def read(project: str, name: str, sks: list[str]) -> tuple[str, dict[str, dict | None]]:
    """The model's id and its items at sort keys `sks` (None where absent): one BatchGetItem of the
    guard and the items when the name's id is cached and still right, else two round trips."""
    guard_key = (keys.model_name_guard(project, name), keys.GUARD_SK)
    cached = CACHE.get(project, name)
    if cached is not None:
        found = _by_key(db.batch_get([guard_key, *((keys.registered_model(project, cached), sk) for sk in sks)],
                                     consistent=True))
        guard = found.get(guard_key)
        model_id = guard and guard["model_id"]
        if model_id == cached:
            return cached, {sk: found.get((keys.registered_model(project, cached), sk)) for sk in sks}
        CACHE.put(project, name, model_id)
        if model_id is None:
            raise model_not_found(name)
    else:
        model_id = resolve(project, name)
    found = _by_key(db.batch_get([(keys.registered_model(project, model_id), sk) for sk in sks], consistent=True))
    return model_id, {sk: found.get((keys.registered_model(project, model_id), sk)) for sk in sks}


def with_model(project: str, name: str, reads: Callable[[str], list[Callable[[], object]]]) -> tuple[str, list]:
    """The results of `reads(model_id)` (Queries, say) for the model the name maps to, run side by side
    with the guard's read when the id is cached: 1 round trip warm, 2 cold or stale."""
    cached = CACHE.get(project, name)
    if cached is not None:
        guard, *results = db.parallel(lambda job: job(), [
            lambda: db.get(keys.model_name_guard(project, name), keys.GUARD_SK), *reads(cached)])
        model_id = guard and guard["model_id"]
        if model_id == cached:
            return cached, results
        CACHE.put(project, name, model_id)
        if model_id is None:
            raise model_not_found(name)
    else:
        model_id = resolve(project, name)
    return model_id, db.parallel(lambda job: job(), reads(model_id))


def _by_key(items: list[dict]) -> dict[tuple[str, str], dict]:
    return {(i["pk"], i["sk"]): i for i in items}
