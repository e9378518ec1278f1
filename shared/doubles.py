"""Metric values as they are stored: text that round-trips every IEEE double exactly.

DynamoDB numbers hold 38 digits between 1e-130 and 9.99e125, so 1e308, subnormals (1e-320), NaN and
the infinities do not fit. A value is kept as its shortest round-trip text (`repr`; protobuf JSON's
names for the non-finite ones). Items written by an older mlreg (finite values as DynamoDB numbers,
the others as these same names) decode the same way. Orders use the binary keys of shared/keys.py."""

from __future__ import annotations

import math
from decimal import Decimal


def encode(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def decode(stored: str | int | float | Decimal) -> float:
    return float(stored)
