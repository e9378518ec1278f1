"""Every key of the table in one place. Each starts with the project (`P#<project>`), so a request
authorised for one project cannot build a key into another. See docs/data-model.md."""

from __future__ import annotations

import math
import re
import struct

SEP = "#"


def project(p: str) -> str:
    return f"P#{p}"


# ---- project-level items (pk = project) ----
PROJECT_SK = "#PROJECT"


def token_sk(token_hash: str) -> str:
    return f"#TOKEN#{token_hash}"


def session_sk(session_hash: str) -> str:
    """A browser session of the web UI (shared/sessions.py)."""
    return f"#SESSION#{session_hash}"


def counter_sk(name: str) -> str:
    return f"#COUNTER#{name}"


# ---- experiments ----
def experiment(p: str, experiment_id: str) -> str:
    return f"P#{p}#E#{experiment_id}"


EXPERIMENT_SK = "#E"


def experiment_name_guard(p: str, name: str) -> str:
    return f"P#{p}#EN#{name}"


GUARD_SK = "#G"


def experiments_collection(p: str) -> str:
    """GSI1 partition holding every experiment of a project with its tags."""
    return f"P#{p}#EXPS"


# ---- runs ----
def run(p: str, run_id: str) -> str:
    return f"P#{p}#R#{run_id}"


RUN_SK = "#R"


def runs_collection(p: str, experiment_id: str) -> str:
    """GSI2 partition: the summaries (meta items) of an experiment's runs in MLflow's default order."""
    return f"P#{p}#E#{experiment_id}#RUNS"


def runs_collection_sk(start_time: int | None, run_id: str) -> str:
    """MLflow's default order (start time descending, then run id) as an ascending sort key."""
    return f"{encode_int(-int(start_time or 0))}#{run_id}"


def metric_history(p: str, run_id: str, metric_key: str) -> str:
    return f"P#{p}#R#{run_id}#H#{metric_key}"


HISTORY_CHUNK = "C#"  # history items of today: chunks of points; older ones hold one point each


def history_chunk_sk(min_timestamp: int, digest: str) -> str:
    """A chunk of a metric's history: its earliest timestamp, then a hash of its packed points, so a
    retried batch writes the same item."""
    return f"{HISTORY_CHUNK}{encode_int(min_timestamp)}#{digest}"


# ---- order-preserving encodings for sort keys ----
def encode_int(n: int) -> str:
    """Fixed-width, order-preserving text for a signed 64-bit integer."""
    return f"{(int(n) + (1 << 63)) & ((1 << 64) - 1):016x}"


def encode_float(x: float) -> str:
    """Fixed-width, order-preserving text for a double; -inf < finite < +inf < NaN."""
    if math.isnan(x):
        return "f" * 16 + "n"
    x = x or 0.0  # -0.0 equals 0.0
    bits = struct.unpack(">Q", struct.pack(">d", float(x)))[0]
    bits = bits ^ ((1 << 64) - 1) if bits >> 63 else bits | (1 << 63)
    return f"{bits:016x}"


def metric_order(step: int, timestamp: int, value: float) -> str:
    """MLflow's latest-metric rule as one comparable string: greatest (step, timestamp, value)."""
    return f"{encode_int(step)}#{encode_int(timestamp)}#{encode_float(value)}"


# ---- the directory of projects (auth / admin CLI) ----
def projects_directory() -> str:
    """GSI1 partition listing every project item. The one key above the projects: only the admin CLI
    (`mlreg project list`) reads it; no request handler ever builds it."""
    return "#PROJECTS"


# ---- model registry (see docs/registry.md, docs/data-model.md) ----
# A model's identity is its id, never its name: everything of a model hangs off `P#<p>#M#<model_id>`,
# and the name is one guard item pointing at the id, so a rename rewrites a fixed number of items.
def registered_model(p: str, model_id: str) -> str:
    """One partition per registered model: meta, tags, aliases, versions, semver guards, stage marks."""
    return f"P#{p}#M#{model_id}"


MODEL_PARTITION = re.compile(r"^P#(?P<project>[^#]+)#M#(?P<model_id>[^#]+)$")  # registered_model's key


def model_name_guard(p: str, name: str) -> str:
    """The name's guard (sk GUARD_SK) -> model_id; written on condition it does not exist."""
    return f"P#{p}#MN#{name}"


MODEL_SK = "#M"


def models_collection(p: str) -> str:
    """GSI1 partition: every live model's meta, tag and alias items (search registered models)."""
    return f"P#{p}#MODELS"


def model_versions_by_update(p: str, model_id: str) -> str:
    """GSI1 partition: one model's versions ordered by last update (see `version_update_order`)."""
    return f"P#{p}#MV#{model_id}"


def versions_collection(p: str) -> str:
    """GSI3 partition (keys only): every model version of a project by last update (search without a name)."""
    return f"P#{p}#VERSIONS"


def versions_by_run(p: str, run_id: str) -> str:
    """GSI2 partition: the model versions a run backs."""
    return f"P#{p}#VRUN#{run_id}"


def version_sk(version: int) -> str:
    """Zero-padded so the partition's versions sort by number (newest first when read backwards)."""
    return f"V#{int(version):010d}"


VERSION_PREFIX = "V#"


def semver_sk(semver: str) -> str:
    """The semver guard. Outside the `#`..`U` range of the named items (meta, aliases, tags), so
    reading a model never reads one item per version."""
    return f"VS#{semver}"


def stage_prefix(stage: str) -> str:
    return f"VT#{stage}#"


def stage_sk(stage: str, version: int) -> str:
    """A version's mark in its stage: the newest version of a stage is one Query (Limit 1)."""
    return f"{stage_prefix(stage)}{int(version):010d}"


def alias_sk(alias: str) -> str:
    return f"A#{alias}"


def model_tag_sk(key: str) -> str:
    return f"T#{key}"


def model_link_sk(model_id: str, version: int) -> str:
    """The item a version leaves in the partition of the run it backs (runs refuse deletion while it exists)."""
    return f"L#{model_id}#{version}"


def version_update_order(last_updated: int, version: int) -> str:
    """A version's place in its model's GSI1 partition: read backwards, MLflow's default order
    (last_updated_timestamp DESC, version DESC) within one model."""
    return f"{encode_int(last_updated)}#{int(version):010d}"


def project_version_order(last_updated: int, version: int, model_id: str) -> bytes:
    """A version's place in the project's GSI3 partition: by last update (ties of one millisecond
    are ordered by name when read: shared/registry/search.py)."""
    return _u64(last_updated) + _u64(version) + model_id.encode()


# ---- MLflow 3 logged models ----
def logged_model(p: str, model_id: str) -> str:
    return f"P#{p}#LM#{model_id}"


LOGGED_MODEL_SK = "#LM"
LOGGED_MODEL_METRIC = "M#"


def logged_model_metric_sk(key: str, run_id: str, timestamp: int, step: int) -> str:
    """One logged value of a logged model's metric; MLflow's key is (model, name, timestamp, step, run)."""
    return f"{LOGGED_MODEL_METRIC}{key}#{run_id}#{timestamp}#{step}"


def logged_models_collection(p: str, experiment_id: str) -> str:
    """GSI1 partition: every item (meta, tags, params, metrics) of the logged models of an experiment."""
    return f"P#{p}#E#{experiment_id}#LMODELS"


# ---- materialised run orderings (gsi3 ascending, gsi4 descending) ----
ORDER_KINDS = ("metric", "param", "tag", "start")
_MAX_ORDER_TEXT = 768  # GSI sort keys hold at most 1024 bytes: longer strings order by this prefix
_PRESENT, _NAN = b"\x01", b"\x02"  # NaN sorts after every number in both directions, as in MLflow


def run_order(p: str, experiment_id: str, kind: str, key: str = "") -> str:
    """The order-index partition of one field of an experiment's runs."""
    return f"P#{p}#E#{experiment_id}#O#{kind}#{key}"


def _u64(n: int) -> bytes:
    return ((int(n) + (1 << 63)) & ((1 << 64) - 1)).to_bytes(8, "big")


def _invert(data: bytes) -> bytes:
    return bytes(255 - b for b in data)


def order_head(value, ascending: bool) -> bytes:
    """An order key without its tie-breaks: the keys of every run with an equal value begin with it
    (strings: with equal first 768 bytes)."""
    if isinstance(value, str):
        text = value.encode()[:_MAX_ORDER_TEXT]
        return _PRESENT + text + b"\x00" if ascending else _PRESENT + _invert(text) + b"\xff"
    if isinstance(value, float) and math.isnan(value):
        return _NAN
    if isinstance(value, int):
        number = _u64(value)
    else:
        bits = struct.unpack(">Q", struct.pack(">d", float(value) or 0.0))[0]
        number = (bits ^ ((1 << 64) - 1) if bits >> 63 else bits | (1 << 63)).to_bytes(8, "big")
    return _PRESENT + (number if ascending else _invert(number))


def order_values(value, start_time: int, run_id: str) -> tuple[bytes, bytes]:
    """(ascending, descending) sort keys for a field's value. Both end with MLflow's tie-breaks,
    start_time DESC then run_id ASC, so a forward Query yields MLflow's order in either direction."""
    ties = _u64(-int(start_time or 0)) + run_id.encode()
    return order_head(value, True) + ties, order_head(value, False) + ties


def order_text_prefix(prefix: str, ascending: bool) -> bytes:
    """The keys of every string value that starts with `prefix` begin with this (a LIKE 'abc%')."""
    text = prefix.encode()[:_MAX_ORDER_TEXT]
    return _PRESENT + (text if ascending else _invert(text))


_MAX_ORDER_KEY = 1024  # a GSI sort key's limit in bytes, so also of a key condition's value
NUMBERS_HEAD = _PRESENT  # every number's key begins with it (NaN's with _NAN, after them)


def after_order_head(head: bytes) -> bytes:
    """A bound after every key that begins with `head` (and before the next head), for BETWEEN."""
    return head + b"\xff" * (_MAX_ORDER_KEY - len(head))


def order_attributes(p: str, experiment_id: str, kind: str, key: str, value, start_time: int, run_id: str) -> dict:
    """The attributes that put an item into both order indexes."""
    partition = run_order(p, experiment_id, kind, key)
    asc, desc = order_values(value, start_time, run_id)
    return {"g3pk": partition, "g3sk": asc, "g4pk": partition, "g4sk": desc}


# ---- webhooks (shared/registry/webhooks.py; the publisher reads them: shared/events/) ----
def webhooks(p: str) -> str:
    """One partition per project holding its webhooks: list and by-event lookups are one Query."""
    return f"P#{p}#WH"


def webhook_sk(webhook_id: str) -> str:
    return f"W#{webhook_id}"
