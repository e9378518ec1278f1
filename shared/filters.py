"""MLflow search filter strings and order_by clauses, parsed and evaluated in memory.

A hand-written scanner + recursive-descent parser stands in for MLflow's sqlparse-based
`mlflow.utils.search_utils` so the Lambda bundle needs no extra dependency. Semantics follow
MLflow 3: the in-memory `Search*Utils.filter/sort` family, plus the SQL stores wherever those
are stricter or define the server's defaults (noted inline). Views are plain dicts: runs keep
attributes under view["info"], other entities keep them at the top level.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from shared.errors import invalid

Predicate = Callable[[dict], bool]
SortKey = Callable[[dict], Any]

NUMERIC_COMPARATORS = frozenset({"=", "!=", ">", ">=", "<", "<="})
STRING_COMPARATORS = frozenset({"=", "!=", "LIKE", "ILIKE"})
LIST_COMPARATORS = frozenset({"IN", "NOT IN"})
NULL_COMPARATORS = frozenset({"IS NULL", "IS NOT NULL"})
IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
DELETED_INTERNAL_STAGE = "Deleted_Internal"
_DATASET_KEYS = ("context", "digest", "name")
_BUCKETS = {"metric": "metrics", "param": "params", "tag": "tags"}
_ECHO = 200  # longest piece of user text echoed back in an error message

# --- lexical pieces (linear-time: no nested quantifiers, each tried once per position) ---
_SQ = r"'(?:''|\\'|[^'])*'"  # sqlparse's rules: '' or \' inside; the raw inner text is the value
_DQ = r'"(?:""|\\"|[^"])*"'
_BQ = r"`(?:``|[^`])*`"
_FIRST = re.compile(rf"[^\W\d]\w*|{_BQ}|{_DQ}")
_IDENT = re.compile(rf"(?:[^\W\d]\w*|{_BQ}|{_DQ})(?:\.(?:\w+|{_BQ}|{_DQ}|{_SQ}))*")
_STRING = re.compile(f"{_SQ}|{_DQ}")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?[eE]-?\d+|\d+\.\d*|\.\d+|\d+)(?![\w.])")
_INTEGER = re.compile(r"-?\d+")
_BARE = re.compile(rf"{_BQ}|\w+")
_OP = re.compile(r"[<>=~!]+")
_WORD = re.compile(r"\w+")
_WS = re.compile(r"\s*")
_LPAREN, _RPAREN, _COMMA, _SEMI = (re.compile(re.escape(c)) for c in "(),;")
_RESERVED = frozenset({"OR", "NOT", "IN", "IS", "LIKE", "ILIKE", "RLIKE", "NULL", "BETWEEN"})


@dataclass(frozen=True)
class Clause:
    """One AND-ed comparison with a canonical key (aliases resolved, quotes removed)."""

    entity_type: str  # 'metric' | 'param' | 'tag' | 'attribute' | 'dataset'
    key: str
    comparator: str  # upper case: = != > >= < <= LIKE ILIKE IN 'NOT IN' 'IS NULL' 'IS NOT NULL'
    value: Any  # float (metric), int|float (numeric attribute), str, tuple[str, ...], None


@dataclass(frozen=True)
class _Schema:
    """What one search API accepts; mirrors the matching MLflow Search*Utils class."""

    prefixes: dict[str, str]  # `<prefix>.` -> entity type
    entity_error: str  # message for an unknown prefix, {} is the prefix
    attributes: dict[str, str]  # filterable attribute names -> view field
    numeric: frozenset[str]  # numeric view fields
    comparators: dict[str, frozenset[str]]  # entity type, or a view field, -> comparators
    orderable: dict[str, str]  # order_by attribute names -> view field
    order_entities: frozenset[str] = frozenset({"attribute"})
    list_fields: frozenset[str] | None = None  # fields taking IN lists; None: every string field
    info_key: str | None = None  # runs keep attributes under view["info"]
    int_literals: bool = False  # SQL stores reject float literals for numeric attributes
    quoted_numbers: bool = False  # model versions accept version_number = '3'
    prompt_tag: bool = False  # registry: a missing is_prompt tag reads as 'false'
    metric_rows: bool = False  # logged models: view["metrics"] lists every logged value
    transforms: dict[str, Callable[[Any], Any]] = field(default_factory=dict)  # sort values


# --- scanner -------------------------------------------------------------------------------


def _cut(text: str) -> str:
    return f"{text[:_ECHO]}..." if len(text) > _ECHO else text


class _Scanner:
    """Cursor over the text; each `take` skips whitespace, then matches one regex in place."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def take(self, regex: re.Pattern) -> str | None:
        self.pos = _WS.match(self.text, self.pos).end()
        m = regex.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group()

    def word(self, *words: str) -> str | None:
        """Consume the next word only if it is one of `words` (case-insensitive keywords)."""
        start, w = self.pos, self.take(_WORD)
        if w is not None and w.upper() in words:
            return w.upper()
        self.pos = start
        return None

    def done(self) -> bool:
        self.pos = _WS.match(self.text, self.pos).end()
        return self.pos >= len(self.text)

    def error(self) -> Exception:
        return invalid(f"Invalid clause(s) in filter string: '{_cut(self.text[self.pos:])}'")


# --- identifiers -----------------------------------------------------------------------------


def _unquote(key: str) -> str:
    """MLflow's `_trim_backticks(_strip_quotes(key))`."""
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "'\"":
        key = key[1:-1]
    if len(key) >= 2 and key[0] == key[-1] == "`":
        key = key[1:-1]
    return key


def _resolve(schema: _Schema, raw: str, attributes: dict[str, str]) -> tuple[str, str, str]:
    """Split `prefix.key` into (entity type, canonical key, unquoted key as written)."""
    head = _FIRST.match(raw).group()
    if len(head) == len(raw):
        entity, key = "attribute", _unquote(raw)
    else:
        prefix = head[1:-1] if len(head) >= 2 and head[0] == head[-1] == "`" else head
        if prefix not in schema.prefixes:
            raise invalid(schema.entity_error.format(_cut(prefix)))
        entity, key = schema.prefixes[prefix], _unquote(raw[len(head) + 1 :])
    if entity == "attribute":
        if key not in attributes:
            raise invalid(
                f"Invalid attribute key '{_cut(key)}' specified. "
                f"Valid keys are '{sorted(attributes)}'"
            )
        return entity, attributes[key], key
    if entity == "dataset" and key not in _DATASET_KEYS:
        raise invalid(
            f"Invalid dataset key '{_cut(key)}' specified. Valid keys are '{_DATASET_KEYS}'"
        )
    return entity, key, key


# --- filter grammar: filter := (AND | clause)* ; clause := ident comparator operand -----------


def _parse_filter(text: str | None, schema: _Schema) -> list[Clause]:
    if text is None:
        return []
    if not isinstance(text, str):
        raise invalid(f"Invalid filter {_cut(repr(text))}. Could not be parsed.")
    scanner, clauses = _Scanner(text), []
    while not scanner.done():
        # MLflow only rejects non-AND connectives; stray or missing ANDs are ignored.
        if scanner.word("AND"):
            continue
        if scanner.take(_SEMI):
            raise invalid(
                f"Search filter contained multiple expression '{_cut(text)}'. "
                "Provide AND-ed expression list."
            )
        clauses.append(_parse_clause(scanner, schema))
    return clauses


def _parse_clause(scanner: _Scanner, schema: _Schema) -> Clause:
    start = scanner.pos
    reserved = scanner.word(*_RESERVED)
    if reserved:  # e.g. OR: MLflow has no disjunction, only AND-ed comparisons
        raise invalid(f"Invalid clause(s) in filter string: '{reserved}'")
    raw = scanner.take(_IDENT)
    if raw is None:
        raise scanner.error()
    entity, key, name = _resolve(schema, raw, schema.attributes)
    comparator = _parse_comparator(scanner)
    if comparator is None:
        scanner.pos = start
        raise scanner.error()
    operand = _parse_operand(scanner, comparator)
    return _make_clause(schema, entity, key, name, comparator, operand)


def _parse_comparator(scanner: _Scanner) -> str | None:
    op = scanner.take(_OP)
    if op:
        return op
    word = scanner.word("LIKE", "ILIKE", "RLIKE", "IN", "NOT", "IS")
    if word == "NOT":
        negated = scanner.word("IN", "LIKE", "ILIKE", "RLIKE")
        return negated and f"NOT {negated}"
    if word == "IS":
        if scanner.word("NULL"):
            return "IS NULL"
        return "IS NOT NULL" if scanner.word("NOT") and scanner.word("NULL") else None
    return word


def _parse_operand(scanner: _Scanner, comparator: str) -> tuple[str, str, Any]:
    """Returns (kind, raw text, value) with kind in str|num|bare|list|none."""
    if comparator in NULL_COMPARATORS:
        return "none", "", None
    if comparator in LIST_COMPARATORS:
        return _parse_list(scanner)
    for kind, regex in (("str", _STRING), ("num", _NUMBER), ("bare", _BARE)):
        raw = scanner.take(regex)
        if raw is not None:
            return kind, raw, raw[1:-1] if kind == "str" else raw
    raise scanner.error()


def _parse_list(scanner: _Scanner) -> tuple[str, str, tuple[str, ...]]:
    """A parenthesised, comma-separated list of quoted strings (a trailing comma is fine)."""
    start, items = scanner.pos, []
    if scanner.take(_LPAREN) is None:
        raise _list_error("a non-empty list of string values, but got ill-formed list.")
    while scanner.take(_RPAREN) is None:
        item = scanner.take(_STRING)
        if item is None:
            other = scanner.take(_NUMBER) or scanner.take(_BARE)
            if other is None:
                raise _list_error("a non-empty list of string values, but got ill-formed list.")
            raise _list_error(
                "string value, punctuation, or whitespace, but got different type in list: "
                + _cut(other)
            )
        items.append(item[1:-1])
        if scanner.take(_RPAREN) is not None:
            break
        if scanner.take(_COMMA) is None:
            raise _list_error("a non-empty list of string values, but got ill-formed list.")
    if not items:
        raise _list_error("a non-empty list of string values, but got empty list")
    return "list", scanner.text[start : scanner.pos], tuple(items)


def _list_error(detail: str) -> Exception:
    return invalid(f"While parsing a list in the query, expected {detail}")


# --- semantic checks (MLflow checks the value type first, then the comparator) -------------


def _make_clause(schema: _Schema, entity: str, key: str, name: str, comparator: str, operand):
    """Validate one parsed comparison; `key` is canonical, `name` as the user wrote it."""
    kind, raw, value = operand
    if kind != "none":
        numeric = entity == "metric" or (entity == "attribute" and key in schema.numeric)
        value = (_numeric_value if numeric else _string_value)(schema, entity, key, name, operand)
    allowed = _allowed(schema, entity, key)
    if comparator not in allowed:
        nullable = [f"{e}s" for e in ("tag", "param") if NULL_COMPARATORS <= _allowed(schema, e)]
        if comparator in NULL_COMPARATORS and nullable:
            raise invalid(
                f"IS NULL / IS NOT NULL is only supported for {' and '.join(nullable)}, "
                f"not for '{entity}' '{_cut(name)}'"
            )
        raise invalid(f"Invalid comparator '{comparator}' not one of '{sorted(allowed)}'")
    return Clause(entity, key, comparator, value)


def _allowed(schema: _Schema, entity: str, key: str = "") -> frozenset[str]:
    if entity != "attribute":
        return schema.comparators.get(entity, frozenset())
    if key in schema.comparators:
        return schema.comparators[key]
    return NUMERIC_COMPARATORS if key in schema.numeric else schema.comparators["attribute"]


def _numeric_value(schema: _Schema, entity: str, key: str, name: str, operand) -> int | float:
    kind, raw, text = operand
    if not (kind == "num" or (kind == "str" and schema.quoted_numbers and entity == "attribute")):
        what = "metric" if entity == "metric" else f"numeric attribute: {name}"
        raise invalid(f"Expected numeric value type for {what}. Found {_cut(raw)}")
    if entity == "metric":
        return float(text)
    if _INTEGER.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # more digits than int() accepts
            pass
    elif kind == "num" and not schema.int_literals:
        return float(text)
    raise invalid(f"Invalid value for numeric attribute '{name}': {_cut(raw)!r}")


def _string_value(schema: _Schema, entity: str, key: str, name: str, operand):
    kind, raw, value = operand
    if kind == "str":
        return value
    if kind == "list" and entity in ("attribute", "dataset"):
        lists = schema.list_fields
        if entity == "dataset" or lists is None or key in lists:
            return value
        raise invalid(
            f"Only {sorted(lists)} attributes support comparison with a list of quoted "
            "string values."
        )
    if kind == "bare":
        raise invalid(
            "Parameter value is either not quoted or unidentified quote types used for string "
            f"value {_cut(raw)}. Use either single or double quotes."
        )
    label = {"param": "parameter", "dataset": "dataset attributes"}.get(entity, entity)
    raise invalid(
        f"Expected a quoted string value for {label} (e.g. 'my-value'). Got value {_cut(raw)}"
    )


# --- evaluation -----------------------------------------------------------------------------


def like_matcher(pattern: str, ignore_case: bool = False) -> Callable[[str], bool]:
    """SQL LIKE: `%` any run, `_` one char, no escape char; at worst O(len(text) * len(pattern)).

    MLflow compiles the pattern to one regex of `.*`s, which backtracks exponentially on
    '%%%%a'-style input. The pieces between `%`s have fixed lengths, so matching them
    leftmost-first is exact with no backtracking. Unlike MLflow, `%`/`_` match newlines (SQL).
    """
    fold = str.lower if ignore_case else str
    pieces = fold(pattern).split("%")
    regexes = [re.compile("".join("." if c == "_" else re.escape(c) for c in p), re.DOTALL)
               for p in pieces]
    (head, *middle), sizes = regexes, [len(p) for p in pieces]
    if not middle:
        return lambda text: len(text) == sizes[0] and head.match(fold(text)) is not None
    *middle, tail = middle

    def match(text: str) -> bool:
        text = fold(text)
        end = len(text) - sizes[-1]
        if end < sizes[0] or not head.match(text) or not tail.match(text, end):
            return False
        pos = sizes[0]
        for regex, size in zip(middle, sizes[1:-1]):
            found = regex.search(text, pos, end)
            if found is None:
                return False
            pos = found.start() + size
        return True

    return match


# NaN metrics: every comparison is false except `!=`, in MLflow's in-memory and SQL stores alike.
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
    "<": operator.lt, "<=": operator.le,
    "IN": lambda a, b: a in b, "NOT IN": lambda a, b: a not in b,
}


def _comparison(comparator: str, value: Any) -> Callable[[Any], bool]:
    """Test for one left-hand value; a missing value (None) never matches a comparison."""
    if comparator in NULL_COMPARATORS:
        wanted = comparator == "IS NULL"
        return lambda lhs: (lhs is None) == wanted
    if comparator in ("LIKE", "ILIKE"):
        match = like_matcher(value, ignore_case=comparator == "ILIKE")
        return lambda lhs: isinstance(lhs, str) and match(lhs)
    op = _OPS[comparator]
    value = frozenset(value) if comparator in LIST_COMPARATORS else value

    def test(lhs: Any) -> bool:
        if lhs is None:
            return False
        try:
            return bool(op(lhs, value))
        except TypeError:  # a view holding an unexpected type simply does not match
            return False

    return test


def _getter(schema: _Schema, entity: str, key) -> Callable[[dict], Any]:
    if entity == "metric" and schema.metric_rows:
        return _latest_metric_getter(*key)
    if entity == "attribute":
        if schema.info_key:
            return lambda view: (view.get(schema.info_key) or {}).get(key)
        return lambda view: view.get(key)
    bucket = _BUCKETS[entity]
    return lambda view: (view.get(bucket) or {}).get(key)


def _clause_test(schema: _Schema, clause: Clause) -> Predicate:
    compare = _comparison(clause.comparator, clause.value)
    if clause.entity_type == "dataset":  # any logged dataset input may satisfy the clause
        key = clause.key
        return lambda view: any(compare(d.get(key)) for d in view.get("datasets") or ())
    if clause.entity_type == "metric" and schema.metric_rows:  # any logged value may satisfy the clause
        key = clause.key
        return lambda view: any(compare(m["value"]) for m in view["metrics"] if m["key"] == key)
    get = _getter(schema, clause.entity_type, clause.key)
    if schema.prompt_tag and clause.entity_type == "tag" and clause.key == IS_PROMPT_TAG:
        # Clients add `tags.mlflow.prompt.is_prompt != 'true'`; plain models lack the tag.
        c, v = clause.comparator, clause.value
        missing = (c == "=" and v == "false") or (c == "!=" and v == "true")
        return lambda view: missing if get(view) is None else compare(get(view))
    return lambda view: compare(get(view))


def _latest_metric_getter(name: str, dataset_name: str | None, dataset_digest: str | None) -> Callable[[dict], Any]:
    """A logged model's value of a metric for ordering, as MLflow's SQL store picks it: the newest by
    timestamp, then step, then the lowest run id, among values logged for the dataset if one is named."""
    def get(view: dict) -> Any:
        rows = [m for m in view["metrics"] if m["key"] == name
                and (not dataset_name or m.get("dataset_name") == dataset_name)
                and (not dataset_digest or m.get("dataset_digest") == dataset_digest)]
        if not rows:
            return None
        newest = max(m["timestamp"] for m in rows)
        at = [m for m in rows if m["timestamp"] == newest]
        top = max(m["step"] for m in at)
        return min((m for m in at if m["step"] == top), key=lambda m: m.get("run_id") or "")["value"]
    return get


def _predicate(schema: _Schema, clauses: list[Clause]) -> Predicate:
    tests = [_clause_test(schema, c) for c in clauses]
    return lambda view: all(test(view) for test in tests)


# --- ordering -------------------------------------------------------------------------------


class _Desc:
    """Inverts one sort component, so a single ascending sort handles DESC columns."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.value == other.value


def _component(value: Any, ascending: bool) -> tuple:
    # MLflow puts NaN after all numbers and missing values after NaN, in either direction.
    if value is None:
        return (2, 0)
    if isinstance(value, float) and math.isnan(value):
        return (1, 0)
    return (0, value if ascending else _Desc(value))


def _parse_order_clause(schema: _Schema, text: Any) -> tuple[str, str, bool]:
    if not isinstance(text, str):
        raise invalid(f"Invalid order_by clause {_cut(repr(text))}. Could not be parsed.")
    scanner = _Scanner(text)
    raw = scanner.take(_IDENT)
    direction = scanner.take(_WORD) if raw else None
    if raw is None or not scanner.done():
        raise invalid(f"Invalid order_by clause '{_cut(text)}'. Could not be parsed.")
    if direction and direction.lower() not in ("asc", "desc"):
        raise invalid(f"Invalid ordering key in order_by clause '{_cut(text)}'.")
    entity, key, _ = _resolve(schema, raw, schema.orderable)
    if entity not in schema.order_entities:
        raise invalid(f"Invalid order_by entity type '{entity}'")
    return entity, key, (direction or "asc").lower() == "asc"


def _parse_order_by(schema: _Schema, order_by: list[str] | None, default: list[str]) -> list:
    items = order_by or default
    if not isinstance(items, (list, tuple)):
        raise invalid(f"Invalid order_by {_cut(repr(items))}: expected a list of strings.")
    specs, seen = [], set()
    for text in items:
        entity, key, ascending = _parse_order_clause(schema, text)
        if (entity, key) in seen:  # as the SQL stores do
            raise invalid(f"`order_by` contains duplicate fields: {_cut(str(list(items)))}")
        seen.add((entity, key))
        specs.append((entity, key, ascending))
    return specs


def _with_ties(specs: list, *ties: tuple[str, bool]) -> list:
    """Append attribute tie-breakers the caller did not order by already."""
    present = {key for entity, key, _ in specs if entity == "attribute"}
    return specs + [("attribute", key, asc) for key, asc in ties if key not in present]


def _sort_key(schema: _Schema, specs: list) -> SortKey:
    columns = [(_sort_getter(schema, entity, key), asc) for entity, key, asc in specs]
    return lambda view: tuple(_component(get(view), asc) for get, asc in columns)


def _sort_getter(schema: _Schema, entity: str, key: str) -> Callable[[dict], Any]:
    get = _getter(schema, entity, key)
    transform = schema.transforms.get(key) if entity == "attribute" else None
    if transform is None:
        return get
    return lambda view: None if (value := get(view)) is None else transform(value)


# --- schemas --------------------------------------------------------------------------------


def _same(*names: str) -> dict[str, str]:
    return {n: n for n in names}


def _experiment_id_order(value: Any) -> tuple:
    # The SQL store keeps experiment ids as integers, so '10' sorts after '9'.
    text = str(value)
    return (0, int(text), "") if text.isdigit() and len(text) < 19 else (1, 0, text)


_RUN_PREFIXES = {
    **dict.fromkeys(("metric", "metrics"), "metric"),
    **dict.fromkeys(("parameter", "parameters", "param", "params"), "param"),
    **dict.fromkeys(("tag", "tags"), "tag"),
    **dict.fromkeys(("attribute", "attributes", "attr", "run"), "attribute"),
    **dict.fromkeys(("dataset", "datasets"), "dataset"),
}
_RUN_FIELDS = _same("run_id", "run_name", "status", "user_id", "artifact_uri", "start_time")
_RUN_FIELDS |= {"end_time": "end_time", "created": "start_time", "Created": "start_time"}
_REGISTRY_PREFIXES = {"attribute": "attribute", "tag": "tag", "tags": "tag"}
_REGISTRY_ERROR = "Invalid entity type '{}'. Valid entity types are ('attribute', 'tag', 'tags')"
_RUN_ERROR = "Invalid entity type '{}'. Valid values are ['metric', 'parameter', 'tag', 'attribute'"
_STRING_ATTR = STRING_COMPARATORS | LIST_COMPARATORS
_NULLABLE = STRING_COMPARATORS | NULL_COMPARATORS
_TIMESTAMPS = _same("creation_timestamp", "last_updated_timestamp")
_LOGGED_FIELDS = _same("name", "model_id", "model_type", "status", "source_run_id") | _TIMESTAMPS
_LOGGED_FIELDS |= {"creation_time": "creation_timestamp"}
_LOGGED_FIELDS |= {"last_updated_time": "last_updated_timestamp"}

_RUNS = _Schema(
    prefixes=_RUN_PREFIXES,
    entity_error=_RUN_ERROR + ", 'dataset']",
    attributes=_RUN_FIELDS | dict.fromkeys(("run name", "Run name", "Run Name"), "run_name"),
    numeric=frozenset({"start_time", "end_time"}),
    comparators={"metric": NUMERIC_COMPARATORS, "param": _NULLABLE, "tag": _NULLABLE,
                 "dataset": _STRING_ATTR, "attribute": _STRING_ATTR},
    orderable=_RUN_FIELDS,
    order_entities=frozenset({"metric", "param", "tag", "attribute"}),
    list_fields=frozenset({"run_id"}),
    info_key="info",
)
_EXPERIMENTS = _Schema(
    prefixes=_REGISTRY_PREFIXES,
    entity_error=_REGISTRY_ERROR,
    attributes=_same("name", "experiment_id", "creation_time", "last_update_time"),
    numeric=frozenset({"creation_time", "last_update_time"}),
    comparators={"tag": _NULLABLE, "attribute": _STRING_ATTR, "name": STRING_COMPARATORS,
                 # an INTEGER column in the SQL store: no LIKE
                 "experiment_id": frozenset({"=", "!="}) | LIST_COMPARATORS},
    orderable=_same("name", "experiment_id", "creation_time", "last_update_time"),
    list_fields=frozenset({"experiment_id"}),
    int_literals=True,
    transforms={"experiment_id": _experiment_id_order},
)
_MODELS = _Schema(
    prefixes=_REGISTRY_PREFIXES,
    entity_error=_REGISTRY_ERROR,
    attributes=_same("name"),
    numeric=frozenset(_TIMESTAMPS),
    comparators={"tag": STRING_COMPARATORS, "attribute": _STRING_ATTR},
    # creation_timestamp: in-memory store only; timestamp: SQL store alias
    orderable=_same("name") | _TIMESTAMPS | {"timestamp": "last_updated_timestamp"},
    list_fields=frozenset({"name"}),
    prompt_tag=True,
)
_VERSIONS = _Schema(
    prefixes=_REGISTRY_PREFIXES,
    entity_error=_REGISTRY_ERROR,
    attributes=_same("name", "run_id") | {"source_path": "source", "version_number": "version"},
    numeric=frozenset({"version", *_TIMESTAMPS}),
    comparators={"tag": STRING_COMPARATORS, "attribute": _STRING_ATTR},
    orderable=_same("name") | _TIMESTAMPS | {"version_number": "version"},
    list_fields=frozenset({"name", "run_id"}),
    int_literals=True,
    quoted_numbers=True,
    prompt_tag=True,
)
_LOGGED_MODELS = _Schema(
    prefixes={p: e for p, e in _RUN_PREFIXES.items() if e != "dataset"},
    entity_error=_RUN_ERROR + "]",
    attributes=_LOGGED_FIELDS,
    numeric=frozenset(_TIMESTAMPS),
    comparators={"metric": NUMERIC_COMPARATORS, "param": STRING_COMPARATORS,
                 "tag": STRING_COMPARATORS, "attribute": _STRING_ATTR},
    orderable=_LOGGED_FIELDS,
    order_entities=frozenset({"metric", "attribute"}),
    metric_rows=True,
)


# --- public API -----------------------------------------------------------------------------


def run_filter_clauses(text: str | None) -> list[Clause]:
    """The AND-ed clauses of a search_runs filter (empty or blank text: no clauses)."""
    return _parse_filter(text, _RUNS)


def run_order_clause(text: str) -> tuple[str, str, bool]:
    """One order_by clause of search_runs as (entity type, key, ascending)."""
    return _parse_order_clause(_RUNS, text)


def parse_run_filter(text: str | None) -> Predicate:
    return run_matcher(run_filter_clauses(text))


def run_matcher(clauses: list[Clause]) -> Predicate:
    return _predicate(_RUNS, clauses)


def parse_run_order_by(order_by: list[str] | None) -> SortKey:
    """Sort key for run views; MLflow always breaks ties by start_time DESC, run_id ASC."""
    specs = _parse_order_by(_RUNS, order_by, [])
    specs += [("attribute", "start_time", False), ("attribute", "run_id", True)]
    return _sort_key(_RUNS, specs)


def parse_experiment_filter(text: str | None) -> Predicate:
    return _predicate(_EXPERIMENTS, _parse_filter(text, _EXPERIMENTS))


def parse_experiment_order_by(order_by: list[str] | None) -> SortKey:
    """Default creation_time DESC, experiment_id ASC; otherwise ties go to experiment_id DESC."""
    specs = _parse_order_by(_EXPERIMENTS, order_by, ["creation_time DESC", "experiment_id ASC"])
    return _sort_key(_EXPERIMENTS, _with_ties(specs, ("experiment_id", False)))


def parse_model_filter(text: str | None) -> Predicate:
    return _predicate(_MODELS, _parse_filter(text, _MODELS))


def parse_model_order_by(order_by: list[str] | None) -> SortKey:
    """Registered models: ties (and the default) go to name ASC."""
    specs = _parse_order_by(_MODELS, order_by, [])
    return _sort_key(_MODELS, _with_ties(specs, ("name", True)))


def version_filter_clauses(text: str | None) -> list[Clause]:
    """The AND-ed clauses of a search_model_versions filter (for picking an index)."""
    return _parse_filter(text, _VERSIONS)


def parse_version_filter(text: str | None) -> Predicate:
    """Model versions; like both MLflow stores, never matches stage 'Deleted_Internal'."""
    matches = _predicate(_VERSIONS, _parse_filter(text, _VERSIONS))
    return lambda view: view.get("current_stage") != DELETED_INTERNAL_STAGE and matches(view)


_VERSION_ORDER_DEFAULT = ["last_updated_timestamp DESC", "name ASC", "version_number DESC"]  # the SQL store's


def parse_version_order_by(order_by: list[str] | None) -> SortKey:
    """SQL store default: last_updated_timestamp DESC, name ASC, version DESC."""
    specs = _parse_order_by(_VERSIONS, order_by, _VERSION_ORDER_DEFAULT)
    return _sort_key(_VERSIONS, _with_ties(specs, ("name", True), ("version", False)))


def version_order_columns(order_by: list[str] | None) -> list[tuple[str, bool]]:
    """The (attribute, ascending) columns of a search_model_versions order, ties included (it picks an index)."""
    specs = _parse_order_by(_VERSIONS, order_by, _VERSION_ORDER_DEFAULT)
    return [(key, ascending) for _, key, ascending in _with_ties(specs, ("name", True), ("version", False))]


def parse_logged_model_filter(text: str | None) -> Predicate:
    return _predicate(_LOGGED_MODELS, _parse_filter(text, _LOGGED_MODELS))


def parse_logged_model_order_by(order_by: list[dict] | None) -> SortKey:
    """order_by is MLflow 3's list of {field_name, ascending, dataset_name, dataset_digest}; a metric
    orders by its newest value (for that dataset, if named). Ties: creation_timestamp DESC, model_id ASC.
    """
    if order_by is not None and not isinstance(order_by, (list, tuple)):
        raise invalid("`order_by` must be a list of dictionaries.")
    specs = [_logged_order_clause(item) for item in order_by or []]
    ties = _with_ties(specs, ("creation_timestamp", False), ("model_id", True))
    return _sort_key(_LOGGED_MODELS, ties)


def _logged_order_clause(item: Any) -> tuple[str, str, bool]:
    if not isinstance(item, dict):
        raise invalid("`order_by` must be a list of dictionaries.")
    name = item.get("field_name")
    if not isinstance(name, str):
        raise invalid("`field_name` in the `order_by` clause must be specified.")
    ascending = item.get("ascending")
    if ascending is None:
        ascending = True
    if not isinstance(ascending, bool):
        raise invalid(
            "Value of `ascending` in the `order_by` clause must be a boolean, got "
            f"{type(ascending)} for field {_cut(name)}."
        )
    if item.get("dataset_digest") and not item.get("dataset_name"):
        raise invalid("`dataset_digest` can only be specified if `dataset_name` is also specified.")
    if "." in name:
        entity, key = name.split(".", 1)
        if entity != "metrics":
            raise invalid(
                f"Invalid order by field name: {_cut(entity)}, only `metrics.<name>` is allowed."
            )
        return "metric", (key, item.get("dataset_name"), item.get("dataset_digest")), ascending
    if name.strip() not in _LOGGED_FIELDS:
        raise invalid(f"Invalid order by field name: {_cut(name)}.")
    return "attribute", _LOGGED_FIELDS[name.strip()], ascending
