"""Metric histories in chunks: one item per (run, key, logged batch) holding the batch's points of
that key packed as binary (int64 timestamp, int64 step, float64 value: every IEEE double exactly).

A chunk's sort key is its earliest timestamp and a hash of its packed points, so a retried batch
writes the same item, and a log-batch of 1,000 points of one metric is one item of 24 KB. Readers
take every chunk of the (run, key) partition, drop identical points (a point logged twice, in two
batches), and sort by (timestamp, step, value), as MLflow returns history. Items of an older mlreg,
one point each, read the same way (and `mlreg/migrations.py` packs them into chunks)."""

from __future__ import annotations

import hashlib
import struct
from typing import Iterable

from shared import doubles, keys

_POINT = struct.Struct(">qqd")
_BITS = struct.Struct(">qqQ")  # the same bytes, the value as its IEEE bits
_SIGN, _ALL = 1 << 63, (1 << 64) - 1
_EXPONENT = 0x7FF << 52
NAN_ORDER = 1 << 64  # after +inf, as keys.encode_float orders NaN

Point = tuple[int, int, float]  # (timestamp, step, value)


def value_order(bits: int) -> int:
    """A double's IEEE bits as an integer in value order: -inf < finite < +inf < NaN, -0.0 == 0.0
    (keys.encode_float's order, so positions of either layout compare)."""
    if bits & _EXPONENT == _EXPONENT and bits & ((1 << 52) - 1):
        return NAN_ORDER
    if bits == _SIGN:
        bits = 0
    return bits ^ _ALL if bits & _SIGN else bits | _SIGN


CHUNK_POINTS_MAX = 8_000  # 192 KB: well inside an item's 400 KB


def chunk_items(pk: str, points: Iterable[Point]) -> list[dict]:
    """The items of one batch's points of one key: one chunk, or several of CHUNK_POINTS_MAX (a
    migrated history, a bench's bulk load). Deterministic, so a retry writes the same items."""
    ordered = _dedupe((ts, step, value, _order_of(value)) for ts, step, value in points)
    return [chunk_item(pk, ordered[i:i + CHUNK_POINTS_MAX]) for i in range(0, len(ordered), CHUNK_POINTS_MAX)]


def chunk_item(pk: str, points: Iterable[Point]) -> dict:
    """The item of one batch's points of one key (sorted and deduplicated, so a retry is identical)."""
    ordered = _dedupe((ts, step, value, _order_of(value)) for ts, step, value in points)
    packed = b"".join(_POINT.pack(ts, step, value) for ts, step, value in ordered)
    return {"pk": pk, "sk": keys.history_chunk_sk(ordered[0][0], hashlib.sha256(packed).hexdigest()[:16]),
            "points": packed}


def _order_of(value: float) -> int:
    return value_order(_BITS.unpack(_POINT.pack(0, 0, value))[2])


def _dedupe(points: Iterable[tuple[int, int, float, int]]) -> list[Point]:
    """Sorted by (timestamp, step, value); of equal points (-0.0 and 0.0 are equal) the first stays."""
    seen: dict[tuple[int, int, int], Point] = {}
    for ts, step, value, order in points:
        seen.setdefault((ts, step, order), (ts, step, value))
    return [seen[k] for k in sorted(seen)]


def positioned(items: list[dict]) -> list[tuple[tuple[int, int, int], Point]]:
    """Every point of a (run, key) partition's items, deduplicated and in MLflow's order, each with
    its position (timestamp, step, value order) for page tokens."""
    keyed: dict[tuple[int, int, int], Point] = {}
    for item in items:  # in sort key order: the same point always comes from the same item
        if item["sk"].startswith(keys.HISTORY_CHUNK):
            data = item["points"]
            for point, (_, _, bits) in zip(_POINT.iter_unpack(data), _BITS.iter_unpack(data)):
                keyed.setdefault((point[0], point[1], value_order(bits)), point)
        else:  # one point per item (an older mlreg)
            value = doubles.decode(item["value"])
            ts, step = item["timestamp"], item["step"]
            keyed.setdefault((ts, step, _order_of(value)), (ts, step, value))
    return sorted(keyed.items(), key=lambda entry: entry[0])


def points(items: list[dict]) -> list[Point]:
    return [point for _, point in positioned(items)]


def legacy_position(sk: str) -> tuple[int, int, int]:
    """The position of a per-point item's sort key (`<ts>#<step>#<value>`, hex), from a page token an
    older mlreg handed out."""
    ts, step, value = sk.split("#")
    return int(ts, 16) - _SIGN, int(step, 16) - _SIGN, NAN_ORDER if value.endswith("n") else int(value, 16)
