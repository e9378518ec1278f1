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

from shared.artifacts import messages, store
from shared.artifacts.paths import folder_path, folder_prefix, object_key, safe_path
from shared.errors import invalid
from shared.http import Request
from shared.tracking import runs


def artifact_root(artifact_uri: str) -> str:
    """The artifact route path of an `mlflow-artifacts:` URI."""
    parsed = urlparse(artifact_uri or "")
    if parsed.scheme != "mlflow-artifacts":
        raise invalid(f"Unsupported artifact URI {artifact_uri!r}: expected mlflow-artifacts:/...")
    return safe_path(parsed.path.lstrip("/"))


def list_artifacts(req: Request, msg: messages.ListRunArtifacts) -> dict:
    """GET mlflow/artifacts/list: children of `path` in the run's artifacts, paths relative to the
    run's root (MLflow 2's listing)."""
    rel = folder_path(msg.path)
    meta = runs.load_meta(req.project, msg.run_id)
    root = artifact_root(meta["artifact_uri"])
    files = store.list_folder(folder_prefix(req.project, posixpath.join(root, rel) if rel else root))
    result: dict = {"root_uri": meta["artifact_uri"]}
    if files:
        result["files"] = [{**f, "path": posixpath.join(rel, f["path"]) if rel else f["path"]} for f in files]
    return result


def _logged_model_artifact_uri(project: str, model_id: str) -> str:
    from shared.tracking import logged_models  # MLflow 3 logged models live with tracking

    return logged_models.load(project, model_id)["artifact_uri"]


def presigned_upload_url(req: Request, msg: messages.PresignedUploadUrl) -> dict:
    """POST mlflow/artifacts/presigned-upload-url {run_id | model_id, path, expiration}."""
    path = safe_path(msg.path)
    uri = (runs.load_meta(req.project, msg.run_id)["artifact_uri"] if msg.run_id
           else _logged_model_artifact_uri(req.project, msg.model_id))
    key = object_key(req.project, f"{artifact_root(uri)}/{path}", write=True)
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return {"presigned_url": store.presigned_put(key, content_type, msg.expiration),
            "headers": {"Content-Type": content_type}}


def presigned_download_url(req: Request, msg: messages.PresignedDownloadUrl) -> dict:
    """POST mlflow/artifacts/presigned-download-url {run_id, path, expiration}."""
    path = safe_path(msg.path)
    key = object_key(req.project, f"{artifact_root(runs.load_meta(req.project, msg.run_id)['artifact_uri'])}/{path}")
    size = store.size_of(key)
    return {"presigned_url": store.presigned_get(key, msg.expiration), "headers": {}, "file_size": size}
