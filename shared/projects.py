"""Projects and their tokens.

A token reads `mlreg_<project>_<secret>`: it names its project, so the authorizer can tell a valid
token of another project (403) from a bad one (401) without reading outside the path's project.
Only the token's SHA-256 is stored, under the project it belongs to (pk `P#<project>`, sk
`#TOKEN#<hash>`), so the authorizer's check is one GetItem keyed by (project in the path, hash).
The token id shown by `mlreg token list` is the first 12 hex digits of that hash."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets

from botocore.exceptions import ClientError

from shared import db, keys, sessions
from shared.clock import now_ms
from shared.errors import already_exists, invalid, not_found
from shared.routes import Role

TOKEN_PREFIX = "mlreg_"
TOKEN_ID_LENGTH = 12
LAST_USED_RESOLUTION_MS = 60_000  # last_used_at is written at most once a minute per token
ACTIVE, DELETED = "active", "deleted"
_PROJECT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_TOKEN_FIELDS = ("token_id", "project", "name", "role", "created_at", "last_used_at", "token_expires_at",
                 "revoked", "revoked_at")
_log = logging.getLogger(__name__)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_project_id(project: str) -> bool:
    return isinstance(project, str) and bool(_PROJECT_ID.match(project))


def valid_project_id(project: str) -> str:
    if not is_project_id(project):
        raise invalid(f"Invalid project id {project!r}: use 1-63 lowercase letters, digits and dashes")
    return project


def project_named_by(token: str) -> str | None:
    """The project a token says it belongs to (`mlreg_<project>_<secret>`); None if it names none.
    Project ids have no underscore, so the first one after the prefix ends the project."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    project, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    return project if sep and secret and is_project_id(project) else None


# ---- projects ------------------------------------------------------------------------------------

def create_project(project: str, description: str = "") -> None:
    """The project item and its default experiment "0" (MLflow clients log there by default).
    A deleted project's id stays taken: a new project must never inherit its data."""
    from shared.tracking import experiments

    valid_project_id(project)
    try:
        db.put({"pk": keys.project(project), "sk": keys.PROJECT_SK, "project": project, "description": description,
                "state": ACTIVE, "creation_time": now_ms(),
                "g1pk": keys.projects_directory(), "g1sk": project}, condition="attribute_not_exists(pk)")
    except ClientError as err:
        if db.is_condition_failure(err):
            raise already_exists(f"Project {project} already exists (deleted projects keep their id)") from None
        raise
    experiments.insert(project, "Default", {}, experiment_id=experiments.DEFAULT_EXPERIMENT_ID)


def get_project(project: str) -> dict | None:
    return db.get(keys.project(project), keys.PROJECT_SK)


def list_projects(include_deleted: bool = False) -> list[dict]:
    """Every project, by id: one paged Query of the projects directory (GSI1)."""
    found = db.iter_query(keys.projects_directory(), index="gsi1")
    return [p for p in found if include_deleted or p.get("state", ACTIVE) == ACTIVE]


def project_contents(project: str) -> list[str]:
    """What a project still holds beyond its empty default experiment (three small Queries)."""
    from shared.tracking import experiments

    held = []
    items, _ = db.query(keys.experiments_collection(project), index="gsi1", limit=50)
    if any(not i["g1sk"].startswith(experiments.DEFAULT_EXPERIMENT_ID + "#") for i in items):
        held.append("experiments")
    runs, _ = db.query(keys.runs_collection(project, experiments.DEFAULT_EXPERIMENT_ID), index="gsi2", limit=1)
    if runs:
        held.append("runs in the default experiment")
    models, _ = db.query(keys.models_collection(project), index="gsi1", limit=1)
    if models:
        held.append("registered models")
    return held


def delete_project(project: str, force: bool = False) -> int:
    """Mark the project deleted and revoke all its tokens (so every request to it gets 401).
    Its data stays in the table and bucket; refuses a project with data unless `force`.
    Returns the number of tokens revoked."""
    item = get_project(project)
    if item is None or item.get("state") == DELETED:
        raise not_found(f"Project {project} does not exist")
    held = project_contents(project)
    if held and not force:
        raise invalid(f"Project {project} still holds {' and '.join(held)}; use --force to delete it anyway")
    db.update(keys.project(project), keys.PROJECT_SK, "SET #s = :deleted, deleted_at = :now", names={"#s": "state"},
              values={":deleted": DELETED, ":now": now_ms()}, condition="attribute_exists(pk)")
    live = [t for t in list_tokens(project) if not t.get("revoked")]
    db.parallel(lambda t: revoke_token(project, t["token_id"]), live)
    return len(live)


# ---- tokens --------------------------------------------------------------------------------------

def create_token(project: str, role: Role, name: str = "", expires_at_ms: int | None = None) -> str:
    """A new random token for an active project; the caller shows it once, we keep only its hash."""
    token = f"{TOKEN_PREFIX}{project}_{secrets.token_urlsafe(32)}"
    digest = hash_token(token)
    tx = db.Tx()
    tx.check(keys.project(project), keys.PROJECT_SK, "attribute_exists(pk) AND (attribute_not_exists(#s) OR #s = :active)",
             names={"#s": "state"}, values={":active": ACTIVE})
    tx.put({"pk": keys.project(project), "sk": keys.token_sk(digest), "token_id": digest[:TOKEN_ID_LENGTH],
            "project": project, "role": role.name.lower(), "name": name, "created_at": now_ms(),
            "token_expires_at": expires_at_ms})
    tx.commit(on_conflict=not_found(f"Project {project} does not exist"))
    return token


def token_id_of(token: str) -> str:
    return hash_token(token)[:TOKEN_ID_LENGTH]


def list_tokens(project: str) -> list[dict]:
    """The project's tokens without their hashes (one Query of the project partition)."""
    items = db.query_all(keys.project(project), keys.token_sk(""), consistent=True)
    return [{k: i[k] for k in _TOKEN_FIELDS if k in i} for i in items]


def revoke_token(project: str, token_id: str) -> None:
    """Idempotent: revoking a revoked token keeps its first revocation time. Its browser sessions end."""
    if not re.fullmatch(r"[0-9a-f]{%d}" % TOKEN_ID_LENGTH, token_id or ""):
        raise invalid(f"Invalid token id {token_id!r}")
    items = db.query_all(keys.project(project), keys.token_sk(token_id), consistent=True)
    if not items:
        raise not_found(f"No token {token_id} in project {project}")
    db.update(keys.project(project), items[0]["sk"], "SET revoked = :yes, revoked_at = if_not_exists(revoked_at, :now)",
              values={":yes": True, ":now": now_ms()}, condition="attribute_exists(pk)")
    sessions.end_sessions_of(project, items[0]["token_id"])


def authenticate(project: str, token: str) -> dict | None:
    """The token's record if it is a live token of this project now, else None (one GetItem,
    strongly consistent so a new token works at once and a revoked one stops at once)."""
    item = db.get(keys.project(project), keys.token_sk(hash_token(token)))
    if not item or item.get("revoked"):
        return None
    if item.get("token_expires_at") and item["token_expires_at"] <= now_ms():
        return None
    return item


def note_use(item: dict) -> None:
    """Stamp last_used_at, at most once a minute per token: a write only when the stored stamp is
    stale, conditioned so concurrent invocations write it once. Best effort: never fails a request."""
    now = now_ms()
    if now - item.get("last_used_at", 0) < LAST_USED_RESOLUTION_MS:
        return
    try:
        db.update(item["pk"], item["sk"], "SET last_used_at = :now",
                  condition="attribute_exists(pk) AND (attribute_not_exists(last_used_at) OR last_used_at < :stale)",
                  values={":now": now, ":stale": now - LAST_USED_RESOLUTION_MS})
    except ClientError as err:
        if not db.is_condition_failure(err):
            _log.warning("could not record token use: %s", err)
