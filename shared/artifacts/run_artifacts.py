"""The run-scoped artifact routes of `/api/2.0/mlflow/artifacts/...`: MLflow 2's list, and the
presigned upload/download URLs MLflow added for direct cloud transfers.

Run artifact URIs are `mlflow-artifacts:/<exp>/<run>/artifacts`; their path is the run's artifact
route path, so these routes reach the same objects as the proxied ones, always in the caller's project.
MLflow's reference server refuses presigned URLs for proxied artifact roots; ours are S3 behind the
proxy, so we can hand them out, scoped to one object and short-lived."""

from __future__ import annotations

import mimetypes
import posixpath
from urllib.parse import urlparse

from shared.artifacts import store
from shared.artifacts.paths import folder_path, folder_prefix, object_key, safe_path
from shared.errors import invalid
from shared.http import Request
from shared.tracking import runs
from shared.validation import integer, require

MAX_EXPIRATION = 604800  # what cloud providers accept; MLflow refuses anything outside 1..this


def artifact_root(artifact_uri: str) -> str:
    """The artifact route path of an `mlflow-artifacts:` URI."""
    parsed = urlparse(artifact_uri or "")
    if parsed.scheme != "mlflow-artifacts":
        raise invalid(f"Unsupported artifact URI {artifact_uri!r}: expected mlflow-artifacts:/...")
    return safe_path(parsed.path.lstrip("/"))


def _run_meta(req: Request) -> dict:
    return runs.load_meta(req.project, req.json.get("run_id") or require(req.json, "run_uuid"))


def list_artifacts(req: Request) -> dict:
    """GET mlflow/artifacts/list: children of `path` in the run's artifacts, paths relative to the
    run's root (MLflow 2's listing)."""
    rel = folder_path(req.json.get("path"))
    meta = _run_meta(req)
    root = artifact_root(meta["artifact_uri"])
    files = store.list_folder(folder_prefix(req.project, posixpath.join(root, rel) if rel else root))
    result: dict = {"root_uri": meta["artifact_uri"]}
    if files:
        result["files"] = [{**f, "path": posixpath.join(rel, f["path"]) if rel else f["path"]} for f in files]
    return result


def _expiration(req: Request) -> int | None:
    value = req.json.get("expiration")
    if value is None:
        return None
    seconds = integer(value, "expiration")
    if not 1 <= seconds <= MAX_EXPIRATION:
        raise invalid(f"expiration must be between 1 and {MAX_EXPIRATION} seconds (got {seconds}).")
    return seconds


def _logged_model_artifact_uri(project: str, model_id: str) -> str:
    from shared.tracking import logged_models  # MLflow 3 logged models live with tracking

    return logged_models.load(project, model_id)["artifact_uri"]


def presigned_upload_url(req: Request) -> dict:
    """POST mlflow/artifacts/presigned-upload-url {run_id | model_id, path, expiration}."""
    run_id, model_id = req.json.get("run_id"), req.json.get("model_id")
    if bool(run_id) == bool(model_id):
        raise invalid("Exactly one of run_id and model_id must be provided.")
    path = safe_path(require(req.json, "path"))
    expires = _expiration(req)
    uri = runs.load_meta(req.project, run_id)["artifact_uri"] if run_id else _logged_model_artifact_uri(
        req.project, model_id)
    key = object_key(req.project, f"{artifact_root(uri)}/{path}", write=True)
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return {"presigned_url": store.presigned_put(key, content_type, expires), "headers": {"Content-Type": content_type}}


def presigned_download_url(req: Request) -> dict:
    """POST mlflow/artifacts/presigned-download-url {run_id, path, expiration}."""
    run_id = require(req.json, "run_id")
    path = safe_path(require(req.json, "path"))
    expires = _expiration(req)
    key = object_key(req.project, f"{artifact_root(runs.load_meta(req.project, run_id)['artifact_uri'])}/{path}")
    size = store.size_of(key)
    return {"presigned_url": store.presigned_get(key, expires), "headers": {}, "file_size": size}
