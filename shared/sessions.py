"""Browser sessions of the web UI (docs/auth.md, "Signing in from a browser").

A browser cannot send `MLFLOW_TRACKING_TOKEN`, so a person signs in once with a token of the project:
that makes a session, a random id in an HttpOnly, SameSite=Strict cookie that only the project's
paths receive. Like tokens, only the id's SHA-256 is stored: item (P#<project>, #SESSION#<hash>)
with the token's role and id, ending at the token's expiry or after SESSION_SECONDS, whichever comes
first (`expires_at` is also the table's TTL attribute, which removes it later). The authorizer checks
a session with one GetItem in the path's project, so a session of one project never opens another.
Signing out deletes the item; revoking the token, or deleting the project, deletes its sessions."""

from __future__ import annotations

import hashlib
import secrets
import time

from shared import db, keys

COOKIE = "mlreg_session"
SESSION_SECONDS = 12 * 3600
SESSION_PREFIX = keys.session_sk("")


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(project: str, token: dict) -> tuple[str, int]:
    """A new session for a live token's record: (session id for the cookie, its lifetime in seconds)."""
    session_id = secrets.token_urlsafe(32)
    now = int(time.time())
    ends = now + SESSION_SECONDS
    if token.get("token_expires_at"):
        ends = min(ends, token["token_expires_at"] // 1000)
    db.put({"pk": keys.project(project), "sk": keys.session_sk(_hash(session_id)), "role": token["role"],
            "token_id": token["token_id"], "created_at": now * 1000, "expires_at": ends})
    return session_id, ends - now


def session_ids(cookie_header: str | None) -> list[str]:
    """The session cookies a request carries (normally one: the path's project's; a browser sends
    every cookie whose path matches, so there may be more)."""
    found = []
    for part in (cookie_header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            found.append(value.strip('"'))
    return found[:4]


def authenticate(project: str, cookie_header: str | None) -> dict | None:
    """The live session of this project the cookie names (one GetItem per session cookie), else None."""
    now = int(time.time())
    for session_id in session_ids(cookie_header):
        item = db.get(keys.project(project), keys.session_sk(_hash(session_id)))
        if item and item["expires_at"] > now:
            return item
    return None


def end(project: str, cookie_header: str | None) -> None:
    for session_id in session_ids(cookie_header):
        db.delete(keys.project(project), keys.session_sk(_hash(session_id)))


def end_sessions_of(project: str, token_id: str) -> int:
    """Delete the sessions made with one token (one Query of the project's partition)."""
    doomed = [(i["pk"], i["sk"]) for i in db.query_all(keys.project(project), SESSION_PREFIX, consistent=True)
              if i.get("token_id") == token_id]
    db.batch_delete(doomed)
    return len(doomed)


def set_cookie(session_id: str, max_age: int, secure: bool) -> str:
    """No Path attribute: the browser scopes the cookie to the folder of the URL that set it, the
    project's `.../projects/<p>` (sign-in and sign-out live there), whatever stage or base path the
    API has."""
    return f"{COOKIE}={session_id}; Max-Age={max_age}; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
