"""EventBridge PutEvents, in commit order: up to 10 entries per call, one call after another."""

from __future__ import annotations

import os
from functools import cache

from shared.events.schema import DomainEvent

MAX_ENTRIES = 10  # PutEvents limit


@cache
def client():
    import boto3

    return boto3.client("events", endpoint_url=os.environ.get("MLREG_EVENTS_ENDPOINT") or None)


def bus_name() -> str:
    return os.environ.get("MLREG_EVENT_BUS", "default")


def put(events: list[DomainEvent]) -> int:
    """Publish `events` in order; returns how many were published before the first that failed
    (len(events) when all were)."""
    for start in range(0, len(events), MAX_ENTRIES):
        chunk = events[start:start + MAX_ENTRIES]
        resp = client().put_events(Entries=[e.entry(bus_name()) for e in chunk])
        if resp.get("FailedEntryCount"):
            failed = next(i for i, entry in enumerate(resp["Entries"]) if entry.get("ErrorCode"))
            return start + failed
    return len(events)
