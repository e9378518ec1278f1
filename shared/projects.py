"""Projects and their tokens. A token is shown once; only its SHA-256 is stored, under the project
it belongs to, so the authorizer's check is one GetItem keyed by (project, hash)."""

from __future__ import annotations

import hashlib
import re
import secrets

from botocore.exceptions import ClientError

from shared import db, keys
from shared.clock import now_ms
from shared.errors import already_exists, invalid
from shared.routes import Role

TOKEN_PREFIX = "mlreg_"
_PROJECT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def valid_project_id(project: str) -> str:
    if not isinstance(project, str) or not _PROJECT_ID.match(project):
        raise invalid(f"Invalid project id {project!r}: use 1-63 lowercase letters, digits and dashes")
    return project


def create_project(project: str, description: str = "") -> None:
    """The project item and its default experiment "0" (MLflow clients log there by default)."""
    from shared.tracking import experiments

    valid_project_id(project)
    try:
        db.put({"pk": keys.project(project), "sk": keys.PROJECT_SK, "project": project, "description": description,
                "creation_time": now_ms()}, condition="attribute_not_exists(pk)")
    except ClientError as err:
        if db.is_condition_failure(err):
            raise already_exists(f"Project {project} already exists") from None
        raise
    experiments.insert(project, "Default", {}, experiment_id=experiments.DEFAULT_EXPERIMENT_ID)


def get_project(project: str) -> dict | None:
    return db.get(keys.project(project), keys.PROJECT_SK)


def create_token(project: str, role: Role, name: str = "", expires_at_ms: int | None = None) -> str:
    """A new random token; the caller shows it once, we keep only its hash."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    digest = hash_token(token)
    db.put({"pk": keys.project(project), "sk": keys.token_sk(digest), "token_id": digest[:12], "project": project,
            "role": role.name.lower(), "name": name, "created_at": now_ms(), "token_expires_at": expires_at_ms})
    return token


def lookup_token(project: str, token: str) -> dict | None:
    """The token's record if it is valid for this project now, else None."""
    item = db.get(keys.project(project), keys.token_sk(hash_token(token)), consistent=False)
    if not item or item.get("revoked"):
        return None
    if item.get("token_expires_at") and item["token_expires_at"] <= now_ms():
        return None
    return item
