"""What every request message is made of: the base class, field types with MLflow's limits, and the
wording of a refused request. The messages of each domain (shared/*/messages.py) build on it; the
route table names each route's message and the dispatcher (shared/http.py) parses it before the
handler runs. docs/decisions/001-validate-at-the-dispatcher.md says why.

Field types check values themselves (PlainValidator): a JSON value is taken as protobuf JSON takes it
(an int64 also as a decimal string, a double also as "NaN" or "Infinity"), never coerced otherwise,
and every refusal is worded as MLflow words it (shared/validation.py)."""

from __future__ import annotations

import math
import re
from functools import cache
from typing import Annotated, Any, Callable, ClassVar, get_origin

from pydantic import (AliasChoices, BaseModel, ConfigDict, Field, PlainValidator, ValidationError, WithJsonSchema,
                      model_validator)

from shared import validation as rules
from shared.validation import (API_DOCS, MAX_INT64, Refused, bounded_value, invalid_value, missing_value,
                               too_long, wrong_type)

_INTEGER = re.compile(r"-?[0-9]{1,20}")
_DOUBLE_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class Message(BaseModel):
    """A route's request fields. Unknown fields are ignored (clients send fields we do not read)."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)  # built on first use: cold start
    raw_body: ClassVar[bool] = False  # True: the body is the payload (an artifact upload), not fields
    max_body_bytes: ClassVar[int | None] = None  # MLflow's own bound on a route's body (log-batch: 1 MB)

    @model_validator(mode="before")
    @classmethod
    def _protobuf_json(cls, data: Any) -> Any:
        """As MLflow reads a request: null is an absent field, and an empty string is an absent
        required one (its `_assert_required`)."""
        if not isinstance(data, dict):
            return data
        required = _required_names(cls)
        return {k: v for k, v in data.items() if v is not None and not (v == "" and k in required)}

    @classmethod
    def parse(cls, data: dict):
        """The message, or MLflow's 400 naming the first refused field."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise Refused(worded(err.errors(include_url=False)[0])) from None

    @classmethod
    def list_fields(cls) -> frozenset[str]:
        """Fields a query string may repeat: the declared type decides, not the count."""
        return _list_names(cls)


@cache
def _required_names(cls: type[Message]) -> frozenset[str]:
    return frozenset(n for name, f in cls.model_fields.items() if f.is_required() for n in _names(name, f))


@cache
def _list_names(cls: type[Message]) -> frozenset[str]:
    return frozenset(n for name, f in cls.model_fields.items() if get_origin(f.annotation) is list
                     for n in _names(name, f))


def _names(name: str, field) -> list[str]:
    alias = field.validation_alias
    return list(getattr(alias, "choices", None) or [name])


def mlflow_path(loc: tuple) -> str:
    """('params', 0, 'key') -> 'params[0].key', as MLflow names nested fields."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def worded(error: dict) -> str:
    path = mlflow_path(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, Refused):
        return cause.worded(path)
    if error["type"] == "missing":
        return missing_value(path) + API_DOCS
    if error["type"] == "too_long":
        return invalid_value(path, f"<{error['ctx']['actual_length']} items>",
                             f"at most {error['ctx']['max_length']} items are allowed.") + API_DOCS
    return wrong_type(error["input"]).worded(path)  # an object or list where another type was expected


# ---- field types ----------------------------------------------------------------------------------------

def typed(check: Callable[[Any], Any], python_type: type, schema: dict):
    """A field type checked by `check` (which returns the value to keep), published as `schema`."""
    return Annotated[python_type, PlainValidator(check), WithJsonSchema(schema)]


def text(limit: int, rule: Callable[[str], str] | None = None, name: str | None = None, truncatable: bool = False):
    """A JSON string of at most `limit` characters, then `rule` (shared.validation) when not empty.
    `name`: how MLflow's length message names the field, else its path. `truncatable`: a longer
    value is cut to the limit, as MLflow's server cuts param and run tag values (unless
    MLFLOW_TRUNCATE_LONG_VALUES=false)."""

    def check(value: Any) -> str:
        if type(value) is not str:
            raise wrong_type(value)
        if len(value) > limit:
            if not truncatable:
                raise too_long(limit, name)
            value = bounded_value(value, limit, name)
        if not value.isascii():
            _utf8(value)
        return rule(value) if rule and value else value

    return typed(check, str, {"type": "string", "maxLength": limit})


def _utf8(value: str) -> None:
    """A lone surrogate (JSON `"\\ud800"`) is a str in Python but cannot be stored or sent on."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise Refused(lambda path: invalid_value(path, value, "it is not valid Unicode (a lone surrogate).")) from None


def long(minimum: int = -MAX_INT64 - 1, maximum: int = MAX_INT64, refusal: Callable[[Any], Refused] = wrong_type):
    """A 64-bit integer: a JSON integer (or an integral number), or a decimal string as protobuf
    JSON and query strings send it. Out of [minimum, maximum]: `refusal(value)`, MLflow's type
    message unless the field has its own."""

    def check(value: Any) -> int:
        if type(value) is int:
            number = value
        elif type(value) is float and value.is_integer():
            number = int(value)
        elif type(value) is str and _INTEGER.fullmatch(value):
            number = int(value)
        else:
            raise wrong_type(value)
        if not -MAX_INT64 - 1 <= number <= MAX_INT64:
            raise wrong_type(value)
        if not minimum <= number <= maximum:
            raise refusal(value)
        return number

    return typed(check, int, {"type": "integer", "format": "int64", "minimum": minimum, "maximum": maximum})


def _double(value: Any) -> float:
    """Metric values: any IEEE double, as a JSON number or a string (protobuf JSON's "NaN",
    "Infinity", "-Infinity", or a number)."""
    try:
        if type(value) in (int, float):
            return float(value)
        if type(value) is str:
            return _DOUBLE_NAMES[value] if value in _DOUBLE_NAMES else float(value)
    except (ValueError, OverflowError):
        pass
    raise Refused(lambda path: invalid_value(path, value, "Please specify value as a valid double (64-bit floating "
                                                          "point)"))


Double = typed(_double, float, {"oneOf": [{"type": "number"}, {"type": "string", "enum": list(_DOUBLE_NAMES)}]})


def _bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    if type(value) is str and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if type(value) is str:
        raise Refused(f"Invalid boolean value: {value[:100]}, must be 'true' or 'false'.")
    raise wrong_type(value)


Bool = typed(_bool, bool, {"type": "boolean"})


def choice(values: dict[Any, str], refusal: Callable[[Any], Refused] = wrong_type):
    """A protobuf enum (its name or number, as protobuf JSON and query strings send it) or a fixed
    set of strings: the canonical name of the value given."""

    def check(value: Any) -> str:
        key = int(value) if type(value) is str and value.isdigit() and len(value) < 5 else value
        if type(key) is bool or type(key) not in (str, int) or key not in values:
            raise refusal(value)
        return values[key]

    return typed(check, str, {"enum": sorted({v for v in values.values()})})


def enum(*names: str, refusal: Callable[[Any], Refused] = wrong_type):
    """A protobuf enum whose numbers 1, 2, ... are `names` (0, unspecified, is refused)."""
    return choice({**{name: name for name in names}, **dict(enumerate(names, 1))}, refusal)


def many(limit: int | None = rules.MAX_LIST_LENGTH):
    """A list field: empty when absent, at most `limit` items (None: the route bounds it otherwise)."""
    return Field(default_factory=list, max_length=limit)


def run_id_field():
    """MLflow's older clients name a run `run_uuid`."""
    return Field(validation_alias=AliasChoices("run_id", "run_uuid"))


# ---- fields of several domains ----------------------------------------------------------------------------
RunId = text(256, rules.run_id)
ExperimentId = text(64, rules.experiment_id)
LoggedModelId = text(256, rules.logged_model_id)
TagKey = text(rules.MAX_ENTITY_KEY_LENGTH, rules.key_name)
KeyRef = text(rules.MAX_ENTITY_KEY_LENGTH, rules.key_bytes)  # a key looked up (deleted, read), not written
QueryText = text(rules.MAX_QUERY_TEXT_LENGTH)  # filters, order_by clauses, page tokens
ViewType = enum("ACTIVE_ONLY", "DELETED_ONLY", "ALL")


class Empty(Message):
    """A route without request fields."""
