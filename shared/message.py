"""What every request message is made of: the base class, field types with MLflow's limits, and the
wording of a refused request. The messages of each domain (shared/*/messages.py) build on it; the
route table names each route's message and the dispatcher (shared/http.py) parses it before the
handler runs. docs/decisions/001-validate-at-the-dispatcher.md says why, and why this small layer
rather than pydantic (a cold start's budget).

A message is a class of annotated fields, as a dataclass declares them. Field types check values
themselves: a JSON value is taken as protobuf JSON takes it (an int64 also as a decimal string, a
double also as "NaN" or "Infinity"), never coerced otherwise, and every refusal is worded as MLflow
words it (shared/validation.py), naming the field's path (`params[0].key`)."""

from __future__ import annotations

import math
import re
import sys
import types
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Callable, ClassVar, Union, get_args, get_origin

from shared import validation as rules
from shared.validation import (API_DOCS, MAX_INT64, Refused, bounded_value, invalid_value, missing_value,
                               too_long, wrong_type)

_INTEGER = re.compile(r"-?[0-9]{1,20}")
_DOUBLE_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_NO_DEFAULT = object()


@dataclass(frozen=True, eq=False)  # compared and hashed by identity (a union of field types hashes them)
class Check:
    """A field type's check (in `Annotated[python_type, Check(...)]`): returns the value to keep or
    raises Refused. `schema`: the values it takes, as JSON Schema (tests build requests from it)."""
    check: Callable[[Any], Any]
    schema: dict


@dataclass(frozen=True)
class FieldInfo:
    default: Any = _NO_DEFAULT
    default_factory: Callable[[], Any] | None = None
    max_length: int | None = None  # lists: at most this many items
    aliases: tuple[str, ...] = ()  # the names a request may give the field by (the first wins)


def Field(default: Any = _NO_DEFAULT, *, default_factory: Callable[[], Any] | None = None,  # noqa: N802
          max_length: int | None = None, validation_alias: str | tuple[str, ...] | None = None) -> Any:
    """A field's default, list bound or other names, where a plain default does not say enough."""
    aliases = (validation_alias,) if isinstance(validation_alias, str) else tuple(validation_alias or ())
    return FieldInfo(default, default_factory, max_length, aliases)


def model_validator(mode: str = "after"):
    """Marks a method that checks the whole message once its fields are read (it raises Refused)."""
    assert mode == "after", "only checks of the parsed message are supported"

    def mark(method):
        method.__message_check__ = True
        return method

    return mark


@dataclass(frozen=True)
class _Field:
    name: str
    names: tuple[str, ...]  # what the request may call it
    read: Callable[[Any, tuple], Any]  # (value, location) -> the value to keep
    info: FieldInfo
    is_list: bool
    schema: dict  # JSON Schema; a message inside is {"$ref": "#/$defs/<class>"}

    @property
    def required(self) -> bool:
        return self.info.default is _NO_DEFAULT and self.info.default_factory is None

    def default(self) -> Any:
        return self.info.default_factory() if self.info.default_factory else self.info.default


class Message:
    """A route's request fields. Unknown fields are ignored (clients send fields we do not read)."""

    raw_body: ClassVar[bool] = False  # True: the body is the payload (an artifact upload), not fields
    max_body_bytes: ClassVar[int | None] = None  # MLflow's own bound on a route's body (log-batch: 1 MB)

    def __init__(self, **values: Any) -> None:
        """A message made in code (benches, tests) with Python names, checked as a request's would be."""
        fields = {f.name: f for f in _fields(type(self))}
        unknown = set(values) - set(fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        parsed = type(self).parse({fields[name].names[0]: value for name, value in values.items()})
        self.__dict__.update(parsed.__dict__)

    @classmethod
    def parse(cls, data: dict):
        """The message, or MLflow's 400 naming the first refused field."""
        try:
            return cls._read(data, ())
        except _Refusal as refusal:
            raise Refused(refusal.worded()) from None

    @classmethod
    def _read(cls, data: Any, location: tuple):
        if not isinstance(data, dict):
            raise _Refusal(location, wrong_type(data))
        message = object.__new__(cls)
        for field in _fields(cls):
            # As MLflow reads a request: null is an absent field, an empty string an absent required one,
            # and a field's other name is read when the first is absent or empty (`run_id or run_uuid`).
            given = [data[n] for n in field.names if data.get(n) is not None]
            given = next((g for g in given if g != ""), given[0] if given else None)
            if given is None or (given == "" and field.required):
                if field.required:
                    raise _Refusal((*location, field.name), None)
                value = field.default()
            else:
                value = field.read(given, (*location, field.name))
            object.__setattr__(message, field.name, value)
        for check in _checks(cls):
            try:
                check(message)
            except Refused as refused:
                raise _Refusal(location, refused) from None
        return message

    @classmethod
    def json_schema(cls) -> dict:
        """The fields as JSON Schema, messages inside under `$defs`: what a request may hold."""
        defs: dict[str, dict] = {}

        def describe(message: type[Message]) -> dict:
            for nested in _nested(message):
                if nested.__name__ not in defs:
                    defs[nested.__name__] = {}
                    defs[nested.__name__] = describe(nested)
            fields = _fields(message)
            return {"type": "object", "properties": {f.names[0]: f.schema for f in fields},
                    "required": [f.names[0] for f in fields if f.required]}

        schema = describe(cls)
        return {**schema, "$defs": defs} if defs else schema

    @classmethod
    def list_fields(cls) -> frozenset[str]:
        """Fields a query string may repeat: the declared type decides, not the count."""
        return frozenset(n for f in _fields(cls) if f.is_list for n in f.names)

    def model_dump(self) -> dict:
        """The fields as plain values (messages inside as dicts)."""
        return {f.name: _dumped(getattr(self, f.name)) for f in _fields(type(self))}

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and self.model_dump() == other.model_dump()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.model_dump().items())})"


def _dumped(value: Any) -> Any:
    if isinstance(value, Message):
        return value.model_dump()
    return [_dumped(v) for v in value] if isinstance(value, list) else value


class _Refusal(Exception):
    """A refused value and where it is (`refused` None: the field is missing)."""

    def __init__(self, location: tuple, refused: Refused | None) -> None:
        self.location, self.refused = location, refused

    def worded(self) -> str:
        path = mlflow_path(self.location)
        return missing_value(path) + API_DOCS if self.refused is None else self.refused.worded(path)


def mlflow_path(loc: tuple) -> str:
    """('params', 0, 'key') -> 'params[0].key', as MLflow names nested fields."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


# ---- reading a class's declaration (once, on its first use: cold start) -------------------------------------

@cache
def _fields(cls: type[Message]) -> tuple[_Field, ...]:
    fields = []
    for name, hint in _annotations(cls).items():
        if get_origin(hint) is ClassVar:
            continue
        declared = getattr(cls, name, _NO_DEFAULT)
        info = declared if isinstance(declared, FieldInfo) else FieldInfo(default=declared)
        read, is_list, schema = _reader(hint, info.max_length)
        fields.append(_Field(name, info.aliases or (name,), read, info, is_list, schema))
    return tuple(fields)


def _nested(message: type[Message]) -> list[type[Message]]:
    """The message types of a message's fields (alone or in lists)."""
    found = []
    for hint in _annotations(message).values():
        for candidate in (hint, *get_args(hint)):
            if isinstance(candidate, type) and issubclass(candidate, Message):
                found.append(candidate)
    return found


def _annotations(cls: type) -> dict[str, Any]:
    """Every class's annotations, bases first, evaluated in the module that declares them (a
    refusal written as a lambda in an annotation sees that module's names when it runs)."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        module = sys.modules[klass.__module__].__dict__
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            found[name] = eval(annotation, module, dict(vars(klass))) if isinstance(annotation, str) else annotation
    return found


@cache
def _checks(cls: type[Message]) -> tuple[Callable, ...]:
    seen: dict[str, Callable] = {}
    for klass in reversed(cls.__mro__):
        seen.update({n: f for n, f in vars(klass).items() if getattr(f, "__message_check__", False)})
    return tuple(seen.values())


def _reader(hint: Any, max_length: int | None) -> tuple[Callable[[Any, tuple], Any], bool, dict]:
    """(read(value, location), whether it is a list, JSON Schema) for a field's annotation."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):  # `X | None`: an absent value is the default
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return _reader(inner, max_length)
    if origin is Annotated:
        check = next(m for m in hint.__metadata__ if isinstance(m, Check))
        return _scalar(check.check), False, check.schema
    if origin is list:
        item, _, schema = _reader(get_args(hint)[0], None)
        return _list(item, max_length), True, {"type": "array", "items": schema}
    if origin is dict:
        return _scalar(lambda value: value if isinstance(value, dict) else _raise(wrong_type(value))), False, \
            {"type": "object"}
    if isinstance(hint, type) and issubclass(hint, Message):
        return hint._read, False, {"$ref": f"#/$defs/{hint.__name__}"}
    if hint is Any:
        return (lambda value, location: value), False, {}
    raise TypeError(f"message fields are declared with shared.message's types, not {hint!r}")


def _scalar(check: Callable[[Any], Any]) -> Callable[[Any, tuple], Any]:
    def read(value: Any, location: tuple) -> Any:
        try:
            return check(value)
        except Refused as refused:
            raise _Refusal(location, refused) from None

    return read


def _list(item: Callable[[Any, tuple], Any], max_length: int | None) -> Callable[[Any, tuple], list]:
    def read(value: Any, location: tuple) -> list:
        if not isinstance(value, list):
            raise _Refusal(location, wrong_type(value))
        if max_length is not None and len(value) > max_length:
            raise _Refusal(location, Refused(lambda path: invalid_value(
                path, f"<{len(value)} items>", f"at most {max_length} items are allowed.") + API_DOCS))
        return [item(v, (*location, i)) for i, v in enumerate(value)]

    return read


def _raise(refused: Refused):
    raise refused


# ---- field types ----------------------------------------------------------------------------------------

def typed(check: Callable[[Any], Any], python_type: type, schema: dict):
    """A field type checked by `check` (which returns the value to keep); `schema`: what it takes."""
    return Annotated[python_type, Check(check, schema)]


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
    return Field(validation_alias=("run_id", "run_uuid"))


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
