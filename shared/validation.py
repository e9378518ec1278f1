"""MLflow's input rules and limits (mlflow/utils/validation.py and the request checks of
mlflow/server/handlers.py), with MLflow's wording.

A broken rule raises `Refused`. Inside a request message (shared/message.py) the message records it
against the field and the message names the field as MLflow does (`params[0].key`); raised anywhere
else it is MLflow's 400 INVALID_PARAMETER_VALUE. Limits per field: docs/reliability.md."""

from __future__ import annotations

import json
import os
import posixpath
import re
from typing import Any, Callable

from shared.errors import MlflowError

# ---- MLflow's limits (mlflow/utils/validation.py) ----
MAX_ENTITY_KEY_LENGTH = 250
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_EXPERIMENT_TAG_VAL_LENGTH = 20000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_ENTITIES_PER_BATCH = 1000
MAX_BATCH_LOG_REQUEST_SIZE = 1_000_000
MAX_REGISTRY_TAG_VALUE_LENGTH = 100_000
MAX_ALIAS_LENGTH = 255
MAX_DATASET_NAME_SIZE = 500
MAX_DATASET_DIGEST_SIZE = 36
MAX_DATASET_SOURCE_SIZE = 65535
MAX_DATASET_SCHEMA_SIZE = 1048575
MAX_DATASET_PROFILE_SIZE = 16777215
MAX_INPUT_TAG_KEY_SIZE = 255
MAX_INPUT_TAG_VALUE_SIZE = 500

# ---- where MLflow has no check, its database columns set the limit (mlflow/store/*/dbmodels) ----
MAX_NAME_LENGTH = 256  # registered model names, user ids
MAX_DESCRIPTION_LENGTH = 5000  # registered models and model versions
MAX_URI_LENGTH = 500  # run links, webhook URLs
MAX_SHORT_TEXT_LENGTH = 1000  # webhook descriptions and secrets, upload ids, etags

# ---- mlreg's own bounds: what one DynamoDB item and key can hold (docs/reliability.md) ----
MAX_KEY_BYTES = 500  # names and keys that become part of a sort key (at most 1,024 bytes with their prefix)
MAX_EXPERIMENT_NAME_BYTES = 1500  # experiment names key their name guard (partition keys hold 2,048 bytes)
MAX_ITEM_TEXT_BYTES = 350_000  # text kept in one item (DynamoDB items hold 400 KB)
MAX_PATH_LENGTH = 1024  # artifact paths (S3 keys hold at most 1,024 bytes)
MAX_SOURCE_LENGTH = 2048  # version sources name artifact paths, which S3 allows up to 1,024 bytes
MAX_QUERY_TEXT_LENGTH = 100_000  # filters, order_by clauses and page tokens
MAX_LIST_LENGTH = 1000  # ids and clauses in one request
MAX_INT64 = 2 ** 63 - 1

API_DOCS = " See the API docs for more information about request parameters."
_KEY_CHARACTERS = re.compile(r"^[/\w.\- :]*$")
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
_EXPERIMENT_ID = re.compile(r"^[0-9]{1,19}$")
_ALIAS = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")


class Refused(MlflowError, ValueError):
    """A value breaks one of MLflow's rules. `wording` is the message, or a function of the field's
    path when MLflow's message names the field (inside a message the field's path is known)."""

    def __init__(self, wording: str | Callable[[str], str], path: str = "") -> None:
        self.wording = wording
        super().__init__(self.worded(path), "INVALID_PARAMETER_VALUE")

    def worded(self, path: str) -> str:
        text = self.wording(path) if callable(self.wording) else self.wording
        # A value quoted from the request may hold a lone surrogate: spelt out, it can be sent on.
        return text.encode("utf-8", "backslashreplace").decode()


# ---- MLflow's wording (mlflow/utils/validation.py, mlflow/server/handlers.py) ----

def shown(value: Any) -> str:
    """A value as MLflow quotes it in messages (JSON), cut short: errors do not echo megabytes."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 1000 else text[:1000] + "..."


def invalid_value(path: str, value: Any, detail: str | None = None) -> str:
    if detail:
        return f"Invalid value {shown(value)} for parameter '{path}' supplied: {detail}"
    return f"Invalid value {shown(value)} for parameter '{path}' supplied."


def missing_value(path: str) -> str:
    return f"Missing value for required parameter '{path}'."


def exceeds_maximum_length(name: str, limit: int, unit: str = "characters") -> str:
    return f"'{name}' exceeds the maximum length of {limit} {unit}"


def wrong_type(value: Any) -> Refused:
    """What MLflow's request schema answers for a value of the wrong type (or out of its range)."""
    return Refused(lambda path: invalid_value(path, value, f" Hint: Value was of type '{type(value).__name__}'.")
                   + API_DOCS)


def refuse_missing() -> Refused:
    return Refused(lambda path: missing_value(path) + API_DOCS, "name")


def too_long(limit: int, name: str | None = None, unit: str = "characters") -> Refused:
    """`name`: how MLflow's message names the field ("Param value"), else by its path."""
    return Refused(lambda path: exceeds_maximum_length(name or path, limit, unit), "value")


# ---- rules ----

def truncate_long_values() -> bool:
    """MLflow's server truncates param and run tag values over their limits unless its environment
    sets MLFLOW_TRUNCATE_LONG_VALUES=false; then it refuses them. mlreg reads the same variable."""
    return os.environ.get("MLFLOW_TRUNCATE_LONG_VALUES", "true").strip().lower() not in ("false", "0", "no")


def bounded_value(value: str, limit: int, name: str | None = None) -> str:
    """Param and run tag values: cut to `limit`, or refused when truncation is off (as MLflow)."""
    if len(value) <= limit:
        return value
    if truncate_long_values():
        return value[:limit]
    raise too_long(limit, name)


def key_name(name: str, entity: str | None = None) -> str:
    """Metric, param and tag keys: MLflow's characters, not a path that escapes, <= 250 characters.
    `entity`: how MLflow names the key in its length message ("Param key", "Metric name")."""
    if not _KEY_CHARACTERS.match(name):
        raise Refused(lambda path: invalid_value(path, name, "Names may only contain alphanumerics, underscores (_), "
                                                 "dashes (-), periods (.), spaces ( ), colon(:) and slashes (/)."), "key")
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise Refused(lambda path: invalid_value(
            path, name, "Names may be treated as files in certain cases, and must not resolve to other names when "
                        f"treated as such. This name would resolve to {norm!r}"), "key")
    if len(name) > MAX_ENTITY_KEY_LENGTH:
        raise too_long(MAX_ENTITY_KEY_LENGTH, entity)
    if len(name.encode()) > MAX_KEY_BYTES:
        raise too_long(MAX_KEY_BYTES, entity, "bytes (UTF-8)")
    return name


def run_id(value: str) -> str:
    if not _RUN_ID.match(value) or len(value.encode()) > MAX_KEY_BYTES:
        raise Refused(lambda path: invalid_value(path, value), "run_id")
    return value


def experiment_id(value: str) -> str:
    """Experiment ids are integers here, as in MLflow's SQL store (and they key items)."""
    if not _EXPERIMENT_ID.match(value):
        raise Refused(f"Invalid experiment ID '{value}'. Experiment ID must be a valid integer.")
    return value


def experiment_name(name: str) -> str:
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise too_long(MAX_EXPERIMENT_NAME_LENGTH, "name")
    if len(name.encode()) > MAX_EXPERIMENT_NAME_BYTES:
        raise too_long(MAX_EXPERIMENT_NAME_BYTES, "name", "bytes (UTF-8)")
    return name


def model_name(name: str) -> str:
    """MLflow's registered model name rules, plus no '#' (it would make the package path ambiguous)."""
    if not name.strip():
        raise refuse_missing()
    if "/" in name or ":" in name:
        raise Refused(f"Invalid model name '{name}'. Names cannot contain '/' or ':'.")
    if "#" in name:
        raise Refused(f"Invalid model name '{name}'. mlreg model names cannot contain '#'.")
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith(".."):
        raise Refused(lambda path: f"Invalid value '{name}' for parameter '{path}' supplied: Names may be treated as "
                                   "files in certain cases, and must not resolve to other names when treated as such. "
                                   f"This name would resolve to '{norm}'", "name")
    if len(name) > MAX_NAME_LENGTH:
        raise too_long(MAX_NAME_LENGTH)
    if len(name.encode()) > MAX_KEY_BYTES:
        raise too_long(MAX_KEY_BYTES, unit="bytes (UTF-8)")
    return name


def version_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise Refused(f"Parameter 'version' must be an integer, got '{value}'.") from None
    if not 0 < number <= MAX_INT64:
        raise Refused(f"Parameter 'version' must be an integer, got '{value}'.")
    return number


def alias(name: str) -> str:
    if not _ALIAS.match(name):
        raise Refused(f"Invalid alias name: '{name}'. Names may only contain alphanumerics, underscores (_), "
                      "and dashes (-).")
    if len(name.encode()) > MAX_KEY_BYTES:
        raise too_long(MAX_KEY_BYTES, "Registered model alias name", "bytes (UTF-8)")
    return name


def settable_alias(name: str) -> str:
    """An alias a client may set: not `latest` and not a version (`v3`), both reserved."""
    if name.lower() == "latest":
        raise Refused("'latest' alias name (case insensitive) is reserved.")
    if _VERSION_ALIAS.match(name):
        raise Refused(f"Version alias name '{name}' is reserved.")
    return name


def search_limit(maximum: int) -> Callable[[Any], Refused]:
    """How MLflow's stores refuse a search's max_results out of 1..maximum."""

    def refusal(value: Any) -> Refused:
        if int(value) < 1:
            return Refused(f"Invalid value {int(value)} for parameter 'max_results' supplied. It must be a positive "
                           "integer")
        return Refused(f"Invalid value {int(value)} for parameter 'max_results' supplied. It must be at most {maximum}")

    return refusal


def key_bytes(value: str) -> str:
    """Text that becomes part of a key: DynamoDB bounds keys in bytes, not characters."""
    if len(value.encode()) > MAX_KEY_BYTES:
        raise too_long(MAX_KEY_BYTES, unit="bytes (UTF-8)")
    return value


STAGES = ("None", "Staging", "Production", "Archived")


def stage(value: str) -> str:
    """A model version stage, any case, as its canonical name."""
    for name in STAGES:
        if name.lower() == value.lower():
            return name
    raise Refused(f"Invalid Model Version stage: {value}. Value must be one of {', '.join(STAGES)}.")


def logged_model_id(value: str) -> str:
    if "#" in value or "/" in value or len(value.encode()) > MAX_KEY_BYTES:
        raise Refused(f"Invalid logged model ID: {value!r}")
    return value


_LOGGED_MODEL_NAME_CHARS = ("/", ":", ".", "%", '"', "'")


def logged_model_name(name: str) -> str:
    if any(c in name for c in _LOGGED_MODEL_NAME_CHARS):
        raise Refused(f"Invalid model name ({name!r}) provided. Model name must be a non-empty string and cannot "
                      f"contain the following characters: {_LOGGED_MODEL_NAME_CHARS}")
    return name


def item_text(total_bytes: int, what: str) -> None:
    """Text that one DynamoDB item holds together (a dataset, a version's tags)."""
    if total_bytes > MAX_ITEM_TEXT_BYTES:
        raise Refused(f"{what} take {total_bytes} bytes; mlreg stores at most {MAX_ITEM_TEXT_BYTES} bytes in one item "
                      "(DynamoDB items hold 400 KB)")
