"""Opaque, tamper-proof page tokens bound to the project and the query that made them: its filter and
order, not its page size (MLflow's clients may change max_results between pages, so callers leave it
out of the query they bind)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from functools import cache
from typing import Any, Iterable

from shared.errors import invalid

_DEV_KEY = b"mlreg-local-development-key"


@cache
def _signing_key() -> bytes:
    """The deployed stack hands a Secrets Manager secret; locally a key from the data dir or env."""
    if os.environ.get("MLREG_PAGE_TOKEN_KEY"):
        return os.environ["MLREG_PAGE_TOKEN_KEY"].encode()
    if os.environ.get("MLREG_SECRET_ARN"):
        import boto3

        secret = boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["MLREG_SECRET_ARN"])
        return secret["SecretString"].encode()
    return _DEV_KEY


def _query_hash(project: str, query: Any) -> str:
    return hashlib.sha256(json.dumps([project, query], sort_keys=True, default=str).encode()).hexdigest()[:16]


def _mac(payload: bytes) -> str:
    return hmac.new(_signing_key(), payload, hashlib.sha256).hexdigest()[:32]


def encode(project: str, query: Any, cursor: Any) -> str:
    payload = json.dumps({"q": _query_hash(project, query), "c": cursor}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _mac(payload)


def decode(token: str | None, project: str, query: Any) -> Any:
    """The cursor inside a token, or None for the first page. Refuses tokens that were altered or
    made for another project or another query."""
    if not token:
        return None
    try:
        body, mac = str(token).rsplit(".", 1)
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        data = json.loads(payload)
        valid = hmac.compare_digest(mac, _mac(payload)) and data["q"] == _query_hash(project, query)
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise invalid("Invalid page token: it was altered or belongs to another query")
    return data["c"]


def with_token(response: dict, token: str | None) -> dict:
    """A page of a list: `next_page_token` only when there is a next page, as MLflow answers."""
    return {**response, "next_page_token": token} if token else response


def offset_page(project: str, query: Any, token: str | None, keyed: Iterable[tuple[Any, Any]],
                limit: int) -> tuple[list, str | None]:
    """Sort (sort key, item) pairs and cut one page; the token carries the next offset. For
    searches that read their whole (small, per-project) collection: experiments, models, versions."""
    offset = decode(token, project, query) or 0
    ordered = [item for _, item in sorted(keyed, key=lambda pair: pair[0])]
    end = offset + limit
    return ordered[offset:end], (encode(project, query, end) if end < len(ordered) else None)
