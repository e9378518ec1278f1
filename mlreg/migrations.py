"""Upgrades of stored data to the shape today's code reads: one list of steps, run by `mlreg serve`
on the data it loads and by `mlreg migrate` on a deployed table.

A step is a pure function of all the items of one project (plain Python, as `shared.db` reads them)
that returns what to put (new dicts: it never edits its input) and what to delete. Steps must be idempotent: a deployed migration may stop
part-way and run again, and a second run of a step finds nothing left to change. The table remembers
which steps ran in one marker item above the projects, so data that is current costs nothing to load.
See docs/deployment.md ("Upgrading")."""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable

MARKER_PK, MARKER_SK = "#MLREG", "#MIGRATIONS"  # the one item no project owns; only this module reads it


@dataclass
class Change:
    puts: list[dict] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.puts or self.deletes)


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[list[dict]], Change]


# ---- the steps, oldest first ------------------------------------------------------------------------

def _versions_count_writes(items: list[dict]) -> Change:
    """Model versions count their writes (`rev`) and alias items carry a copy of their version, so
    get-by-alias reads one item."""
    from shared import keys

    change = Change()
    versions = {(i["pk"], i["sk"]): i for i in items if "#M#" in i["pk"] and i["sk"].startswith("V#")}
    for key, version in versions.items():
        if "rev" not in version:
            versions[key] = {**version, "rev": 0}
            change.puts.append(versions[key])
    own = ("pk", "sk", "g1pk", "g1sk", "g2pk", "g2sk", "model_name", "renamed_from", "alias", "version")
    for item in items:
        if "#M#" in item["pk"] and item["sk"].startswith("A#") and "current_stage" not in item:
            version = versions.get((item["pk"], keys.version_sk(int(item["version"])))) or {}
            change.puts.append({**item, **{k: v for k, v in version.items() if k not in own}})
    return change


# ---- issue 15: run summaries, the runs collection of summaries, history chunks ----

def _run_summaries(items: list[dict]) -> Change:
    """Each run's meta item becomes its summary (params, tags, latest metrics, inputs and outputs
    from the partition's items), in its experiment's collection of summaries (gsi2, default order);
    no run item stays in the runs collection of gsi1. Per-point history items are packed into
    chunks. A run too big for a summary is marked `overflow` (read from its partition)."""
    from shared import keys
    from shared.tracking import history, runs, summary

    change = Change()
    partitions: dict[str, list[dict]] = {}
    points: dict[str, list[dict]] = {}
    for item in items:
        if "#R#" not in item["pk"]:
            continue
        if "#H#" in item["pk"]:
            if not item["sk"].startswith(keys.HISTORY_CHUNK):
                points.setdefault(item["pk"], []).append(item)
        else:
            partitions.setdefault(item["pk"], []).append(item)
    for pk, partition in partitions.items():
        meta = next((i for i in partition if i["sk"] == keys.RUN_SK), None)
        # Not a summary yet: an older mlreg's meta item, maybe written to by today's before the step ran.
        if meta is not None and not (summary.complete(meta) or meta.get("overflow")):
            change.puts.append(summary.upgraded_meta(project_of(pk), meta, runs.assemble(partition)))
        change.puts += [{k: v for k, v in i.items() if k not in ("g1pk", "g1sk")}
                        for i in partition if i["sk"] != keys.RUN_SK and "g1pk" in i]
    for pk, old in points.items():
        change.puts += history.chunk_items(pk, history.points(old))
        change.deletes += [(i["pk"], i["sk"]) for i in old]
    return change


# -- 2026-12-model-ids (registry, issue 16) ------------------------------------------------------------
MODEL_IDS = "2026-12-model-ids"


def model_id_of(project: str, name: str) -> str:
    """The id a model of the old layout gets: derived from its name, so a run of the step that stops
    part-way and runs again writes the same items."""
    import uuid

    return uuid.uuid5(uuid.NAMESPACE_URL, f"mlreg:{project}/{name}").hex


def _model_ids(items: list[dict]) -> Change:
    """Models keyed by name (`P#<p>#M#<name>`) -> keyed by an immutable id with a name guard
    (shared/registry/identity.py). Versions keep their package where it is (`package` records
    `packages/<name>/<semver>`), drop the model's name, gain a stage mark; run links name the id.
    The items written carry `migrated`, so the publisher makes no events of the move."""
    from shared import keys
    from shared.registry import identity
    from shared.registry import items as registry

    change = Change()
    old_metas = [i for i in items if i["sk"] == keys.MODEL_SK and "#M#" in i["pk"] and "model_id" not in i]
    if not old_metas:
        return change
    project = project_of(old_metas[0]["pk"])
    by_pk: dict[str, list[dict]] = {}
    for item in items:
        by_pk.setdefault(item["pk"], []).append(item)
    mark = {"migrated": MODEL_IDS}
    for meta in old_metas:
        name, pk = meta["name"], meta["pk"]
        model_id = model_id_of(project, name)
        partition = by_pk.get(pk, [])
        versions = {}
        for item in partition:
            if item["sk"].startswith("V#"):
                mv = {k: v for k, v in registry.strip(item).items() if k not in ("name", "renamed_from")}
                tags = dict(mv.get("tags") or {})
                page = tags.pop(registry.PACKAGE_URL_TAG, None)
                mv["tags"] = tags
                if page:
                    mv["package_page"] = page.split("?", 1)[0]
                if (tags.get("mlreg.package") != "external") and "package" not in mv:
                    mv["package"] = f"packages/{name}/{mv['semver']}"
                if mv.get("status") == registry.PENDING:  # its copy ran inside a request that did not finish
                    mv.update(status=registry.FAILED, status_message="The package copy was interrupted; register "
                                                                     "the version again")
                versions[mv["version"]] = mv
        data = {k: v for k, v in registry.strip(meta).items() if k not in ("renamed_from", "model_name")}
        change.puts += [{**identity.guard_item(project, name, model_id), **mark},
                        {**registry.meta_item(project, {**data, "model_id": model_id}), **mark}]
        for number, mv in versions.items():
            change.puts += [{**registry.version_item(project, model_id, mv), **mark},
                            {**registry.semver_item(project, model_id, mv["semver"], number), **mark},
                            {**registry.stage_item(project, model_id, mv["current_stage"], number), **mark}]
            if registry.linked_run(mv):
                change.puts.append({**registry.link_item(project, mv["run_id"], model_id, number), **mark})
                change.deletes.append((keys.run(project, mv["run_id"]), f"L#{name}#{number}"))
        for item in partition:
            if item["sk"].startswith("T#"):
                change.puts.append({**registry.tag_item(project, model_id, item["key"], item["value"]), **mark})
            elif item["sk"].startswith("A#") and item["version"] in versions:
                change.puts.append({**registry.alias_item(project, model_id, item["alias"], versions[item["version"]]),
                                    **mark})
            change.deletes.append((pk, item["sk"]))
    return change


STEPS: list[Step] = [
    Step("2026-11-version-rev-and-alias-copies", _versions_count_writes),
    Step(MODEL_IDS, _model_ids),
    Step("2026-12-run-summaries", _run_summaries),
]


# ---- running them -------------------------------------------------------------------------------------

def project_of(pk: str) -> str | None:
    """`P#<project>` or `P#<project>#...` -> the project; None for the few keys above projects."""
    if not pk.startswith("P#"):
        return None
    return pk[2:].split("#", 1)[0]


def pending(applied: Iterable[str]) -> list[Step]:
    done = set(applied)
    return [s for s in STEPS if s.name not in done]


def by_project(items: Iterable[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for item in items:
        project = project_of(item["pk"])
        if project is not None:
            groups.setdefault(project, []).append(item)
    return groups


def apply(steps: list[Step], items: list[dict]) -> Change:
    """Every step over every project's items, each seeing what the previous ones left. Returns the
    net change: the last version of each item put, and the keys deleted and not put again."""
    current = {(i["pk"], i["sk"]): i for i in items}
    for step in steps:
        for project_items in by_project(list(current.values())).values():
            change = step.run(project_items)
            for pk, sk in change.deletes:
                current.pop((pk, sk), None)
            for item in change.puts:
                current[(item["pk"], item["sk"])] = item
    before = {(i["pk"], i["sk"]): i for i in items}
    return Change(puts=[i for k, i in current.items() if before.get(k) is not i],
                  deletes=[k for k in before if k not in current])


def marker(applied: Iterable[str]) -> dict:
    return {"pk": MARKER_PK, "sk": MARKER_SK, "applied": sorted(applied)}


# ---- mlreg serve: the items it loads ------------------------------------------------------------------

def upgrade_snapshot(saved: list[dict]) -> tuple[list[dict], list[tuple[dict, dict | None]]]:
    """Items as DynamoDB JSON (the local service's saved table) -> (today's items, the changes as
    (key, item or None for deleted) to make durable), the marker saying the steps ran. Current data
    passes through untouched and unconverted (fast restarts)."""
    from shared import db

    mark = next((i for i in saved if i["pk"].get("S") == MARKER_PK and i["sk"].get("S") == MARKER_SK), None)
    applied = [v["S"] for v in mark["applied"]["L"]] if mark else []
    steps = pending(applied)
    if not steps:
        return saved, []
    items = [db.from_item(_bytes_of_base64(i)) for i in saved if i is not mark]
    change = apply(steps, items)
    gone = set(change.deletes)
    kept = {(i["pk"], i["sk"]): i for i in items if (i["pk"], i["sk"]) not in gone}
    kept.update({(i["pk"], i["sk"]): i for i in change.puts})
    new_mark = marker([*applied, *(s.name for s in steps)])
    written = [db.to_item(i) for i in [*change.puts, new_mark]]
    changes = [({"pk": i["pk"], "sk": i["sk"]}, i) for i in written]
    changes += [({"pk": {"S": pk}, "sk": {"S": sk}}, None) for pk, sk in change.deletes]
    return [db.to_item(i) for i in kept.values()] + [written[-1]], changes


def _bytes_of_base64(value):
    """Saved binary values are base64 text, as on DynamoDB's wire; shared.db converts bytes."""
    if isinstance(value, dict):
        if set(value) == {"B"} and isinstance(value["B"], str):
            return {"B": base64.b64decode(value["B"])}
        if set(value) == {"BS"}:
            return {"BS": [base64.b64decode(v) if isinstance(v, str) else v for v in value["BS"]]}
        return {k: _bytes_of_base64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bytes_of_base64(v) for v in value]
    return value


# ---- mlreg migrate: a deployed table -------------------------------------------------------------------

def scan_table() -> list[dict]:
    """Every item of the table. A Scan: this is an admin tool run once per upgrade, never a request path."""
    from shared import db

    items, start = [], None
    while True:
        resp = db.client().scan(TableName=db.table_name(), **({"ExclusiveStartKey": start} if start else {}))
        items += [db.from_item(i) for i in resp.get("Items", [])]
        start = resp.get("LastEvaluatedKey")
        if not start:
            return items


def migrate_table(dry_run: bool = False, out=sys.stdout) -> int:
    """Run the pending steps on the table the environment names (MLREG_TABLE). Writes are idempotent
    puts and deletes, so an interrupted run is finished by running it again; the marker is written
    last."""
    from shared import db

    mark = db.get(MARKER_PK, MARKER_SK)
    applied = list(mark["applied"]) if mark else []
    steps = pending(applied)
    if not steps:
        print("mlreg migrate: the table is current; nothing to do", file=out)
        return 0
    print(f"mlreg migrate: {len(steps)} step(s) to run: {', '.join(s.name for s in steps)}", file=out)
    items = [i for i in scan_table() if i["pk"] != MARKER_PK]
    change = apply(steps, items)
    print(f"mlreg migrate: {len(items)} items read, {len(change.puts)} to write, {len(change.deletes)} to delete"
          + (" (dry run: nothing written)" if dry_run else ""), file=out)
    if dry_run:
        return 0
    db.batch_put(change.puts)
    db.batch_delete(change.deletes)
    db.put(marker([*applied, *(s.name for s in steps)]))
    print("mlreg migrate: done", file=out)
    return 0
