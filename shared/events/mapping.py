"""Stream record -> domain events. Pure: no I/O, so every rule is unit-tested on hand-made records.

Only registry items produce events (`P#<project>#M#<model id>` partitions): the meta item (created,
renamed: its name changed; deleted: the registry worker marked it purged, so the event comes when the
delete is final), version items (ready/failed, stage, tags, deleted) and alias items (set, deleted).
Everything else a stream carries (runs, metrics, experiments, tokens) maps to nothing; so do the
records of the 2026-12 migration to model ids (items it writes carry `migrated`; the items it removes
are in the old layout, see `_old_layout`). Versions and aliases do not hold their model's name:
`name_of(project, model_id)` (the publisher's lookup of the meta item) tells it.

A change the registry writes as one item write is one stream record, so it becomes its events once;
a failed transaction writes nothing, so it has no record and no event."""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from shared import db, keys
from shared.events import schema as s
from shared.registry.items import version_tags
from shared.registry.packages import is_external, version_download_uri

READY, FAILED = "READY", "FAILED_REGISTRATION"


def _image(record: dict, which: str) -> dict | None:
    raw = (record.get("dynamodb") or {}).get(which)
    return db.from_item(raw) if raw else None


def _commit_ms(record: dict) -> int:
    """ApproximateCreationDateTime: epoch seconds in Lambda events (a datetime from boto3 locally)."""
    when = (record.get("dynamodb") or {}).get("ApproximateCreationDateTime", 0)
    return int(when.timestamp() * 1000) if isinstance(when, datetime) else int(float(when) * 1000)


def _old_layout(sk: str, item: dict | None) -> bool:
    """An item of the layout before model ids (only the migration removes those): named items held
    `model_name`, versions their model's `name`."""
    return bool(item) and ("model_name" in item or (sk.startswith("V#") and "name" in item))


def events_from_record(record: dict, name_of: Callable[[str, str], str | None] = lambda p, m: None
                       ) -> list[s.DomainEvent]:
    keys_ = db.from_item((record.get("dynamodb") or {}).get("Keys") or {})
    match = keys.MODEL_PARTITION.match(str(keys_.get("pk", "")))
    if not match:
        return []
    sk = keys_.get("sk", "")
    old, new = _image(record, "OldImage"), _image(record, "NewImage")
    if (new and new.get("migrated") and not old) or (old and not new and _old_layout(sk, old)):
        return []
    project, model_id = match["project"], match["model_id"]
    name = (new or old or {}).get("name") if sk == keys.MODEL_SK else name_of(project, model_id)
    base = {"project": project, "model": name or "", "model_id": model_id,
            "sequence": record["dynamodb"]["SequenceNumber"], "timestamp": _commit_ms(record),
            "actor": (new or {}).get("actor") or None}
    if sk == keys.MODEL_SK:
        found = _model_events(old, new, base)
    elif sk.startswith("V#"):
        found = _version_events(old, new, base)
    elif sk.startswith("A#"):
        found = _alias_events(old, new, base)
    else:
        found = []
    for i, event in enumerate(found):  # stable ids: a re-published change keeps its ids
        event.detail.event_id = f"{record['eventID']}-{i}"
    return found


def _event(detail_type: str, base: dict, webhook: str | None = None, payload: dict | None = None,
           **fields) -> s.DomainEvent:
    return s.DomainEvent(detail_type=detail_type, detail=s.EventDetail(event_id="", **base, **fields),
                         webhook_event=webhook, webhook_payload=payload)


def _model_events(old: dict | None, new: dict | None, base: dict) -> list[s.DomainEvent]:
    if new and not old:
        description = new.get("description") or None
        return [_event(s.MODEL_CREATED, base, "registered_model.created",
                       {"name": base["model"], "tags": {}, "description": description}, description=description)]
    if not (old and new):  # a purged model's meta leaving (TTL): its deletion was told when purged
        return []
    if new.get("purged_at") and not old.get("purged_at"):
        return [_event(s.MODEL_DELETED, {**base, "actor": new.get("actor")})]
    if new.get("name") != old.get("name"):
        return [_event(s.MODEL_RENAMED, base, previous_name=old.get("name"))]
    return []


def _version_fields(mv: dict) -> dict:
    return {"version": mv.get("version"), "semver": mv.get("semver"), "run_id": mv.get("run_id") or None,
            "source": mv.get("source"), "stage": mv.get("current_stage"), "status": mv.get("status"),
            "package_uri": None if is_external(mv) else version_download_uri(mv)}


def _version_created(mv: dict, base: dict) -> s.DomainEvent:
    if mv.get("status") == FAILED:
        return _event(s.VERSION_FAILED, base, status_message=mv.get("status_message") or None,
                      **_version_fields(mv))
    payload = {"name": base["model"], "version": str(mv["version"]), "source": mv.get("source"),
               "run_id": mv.get("run_id") or None, "tags": version_tags(mv, base["model"]),
               "description": mv.get("description") or None}
    return _event(s.VERSION_CREATED, base, "model_version.created", payload,
                  description=mv.get("description") or None, **_version_fields(mv))


def _version_events(old: dict | None, new: dict | None, base: dict) -> list[s.DomainEvent]:
    if old and not new:
        return [_event(s.VERSION_DELETED, {**base, "actor": None}, **_version_fields(old))]
    if new and not old:  # a version is written PENDING, then READY once its package is copied
        return [_version_created(new, base)] if new.get("status") in (READY, FAILED) else []
    found = []
    if new.get("status") != old.get("status") and new.get("status") in (READY, FAILED):
        found.append(_version_created(new, base))
    if new.get("current_stage") != old.get("current_stage"):
        found.append(_event(s.STAGE_TRANSITIONED, base, previous_stage=old.get("current_stage"),
                            **_version_fields(new)))
    found += _tag_events(old.get("tags") or {}, new.get("tags") or {}, new, base)
    return found


def _tag_events(before: dict, after: dict, mv: dict, base: dict) -> list[s.DomainEvent]:
    fields, version = _version_fields(mv), str(mv["version"])
    found = []
    for key in sorted(after):
        if before.get(key) != after[key]:
            found.append(_event(s.TAG_SET, base, "model_version_tag.set",
                                {"name": base["model"], "version": version, "key": key, "value": after[key]},
                                tag_key=key, tag_value=after[key], **fields))
    for key in sorted(before.keys() - after.keys()):
        found.append(_event(s.TAG_DELETED, base, "model_version_tag.deleted",
                            {"name": base["model"], "version": version, "key": key}, tag_key=key, **fields))
    return found


def _alias_events(old: dict | None, new: dict | None, base: dict) -> list[s.DomainEvent]:
    if new and old and old.get("version") == new.get("version"):
        return []
    if new:
        return [_event(s.ALIAS_SET, base, "model_version_alias.created",
                       {"name": base["model"], "alias": new["alias"], "version": str(new["version"])},
                       alias=new["alias"], version=new["version"], previous_version=(old or {}).get("version"))]
    return [_event(s.ALIAS_DELETED, {**base, "actor": None}, "model_version_alias.deleted",
                   {"name": base["model"], "alias": old["alias"]}, alias=old["alias"], version=old.get("version"))]
