"""MLflow's input rules (mlflow/utils/validation.py), enforced server side with its messages."""

from __future__ import annotations

import math
import posixpath
import re
from typing import Any

from shared.errors import invalid

MAX_ENTITY_KEY_LENGTH = 250
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_EXPERIMENT_TAG_VAL_LENGTH = 20000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_ENTITIES_PER_BATCH = 1000
MAX_REGISTRY_TAG_VALUE_LENGTH = 100_000

_NAME = re.compile(r"^[/\w.\- :]*$")
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
_EXPERIMENT_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,63}$")


def require(data: dict, field: str) -> Any:
    value = data.get(field)
    if value is None or value == "":
        raise invalid(f"Missing value for required parameter '{field}'. See the API docs for more "
                      "information about request parameters.")
    return value


def key_name(name: Any, path: str = "key") -> str:
    """Metric, param and tag keys: MLflow's character set, not a path that escapes, <= 250."""
    if name is None or name == "":
        raise invalid(f"Missing value for required parameter '{path}'.")
    if not isinstance(name, str) or not _NAME.match(name):
        raise invalid(f"Invalid value {name!r} for parameter '{path}' supplied. Names may only contain "
                      "alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/).")
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise invalid(f"Invalid value {name!r} for parameter '{path}' supplied. Names may be treated as files "
                      f"in certain cases, and must not resolve to other names when treated as such. This name "
                      f"would resolve to {norm!r}")
    if len(name) > MAX_ENTITY_KEY_LENGTH:
        raise invalid(f"'{path}' exceeds the maximum length of {MAX_ENTITY_KEY_LENGTH} characters")
    return name


def truncated(value: Any, limit: int) -> str:
    """Param and tag values over the limit are truncated, as both MLflow's client and server do."""
    text = "" if value is None else str(value)
    return text[:limit]


def bounded(value: Any, limit: int, path: str) -> str:
    text = "" if value is None else str(value)
    if len(text) > limit:
        raise invalid(f"'{path}' exceeds the maximum length of {limit} characters")
    return text


def run_id(value: Any, path: str = "run_id") -> str:
    if not isinstance(value, str) or not _RUN_ID.match(value):
        raise invalid(f"Invalid value {value!r} for parameter '{path}' supplied.")
    return value


def experiment_id(value: Any) -> str:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None or not _EXPERIMENT_ID.match(text):
        raise invalid(f"Invalid experiment ID: '{value}'")
    return text


def integer(value: Any, path: str, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise invalid(f"Missing value for required parameter '{path}'.")
        return default
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value {value!r} for parameter '{path}' supplied: expected an integer.") from None


def number(value: Any, path: str) -> float:
    """Metric values: JSON numbers, or the strings protobuf JSON uses for NaN and +-Infinity."""
    if isinstance(value, bool) or value is None:
        raise invalid(f"Invalid value {value!r} for parameter '{path}' supplied. "
                      "Please specify value as a valid double (64-bit floating point)")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value {value!r} for parameter '{path}' supplied. "
                      "Please specify value as a valid double (64-bit floating point)") from None
    return result


def max_results(value: Any, default: int, maximum: int) -> int:
    n = integer(value, "max_results", default)
    if n < 1 or n > maximum:
        raise invalid(f"Invalid value {n} for parameter 'max_results' supplied. It must be at most "
                      f"{maximum} and at least 1.")
    return n


def is_finite(x: float) -> bool:
    return math.isfinite(x)
