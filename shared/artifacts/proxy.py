"""MLflow's proxied artifact routes (`/api/2.0/mlflow-artifacts/...`), as `mlflow server
--serve-artifacts` answers them, over S3. Small files pass through the function; big ones never do:
downloads are redirected to (or handed) a presigned GET, uploads go in presigned multipart parts."""

from __future__ import annotations

import json

from shared.artifacts import messages, store
from shared.artifacts.paths import file_name, folder_path, folder_prefix, listed_folder, object_key
from shared.artifacts.responses import serve
from shared.errors import invalid
from shared.http import Request, Response

CREATE_RESPONSE_BUDGET = 5 * 1024 * 1024  # the part URLs must fit in one Lambda response
RANGED_DOWNLOAD_MIN_BYTES = 100 * 1024 * 1024  # the MLflow client's default download range


def list_artifacts(req: Request, msg: messages.ListArtifacts) -> dict:
    """GET mlflow-artifacts/artifacts?path=: direct children, paths relative to the listed folder."""
    files = store.list_folder(folder_prefix(req.project, listed_folder(msg.path)))
    return {"files": files} if files else {}


def download_artifact(req: Request, msg: messages.ArtifactRef) -> Response:
    """Small files inline (with the headers of shared/artifacts/responses.py), big ones by a 307 to
    S3 (both MLflow client lines follow it, dropping the Authorization header on the new host)."""
    return serve(object_key(req.project, msg.artifact_path), msg.artifact_path)


def upload_artifact(req: Request, msg: messages.UploadArtifact) -> dict:
    """PUT mlflow-artifacts/artifacts/<path>, body = the file. Bodies over API Gateway's or Lambda's
    limit never get here: the gateway answers 413 and names the client settings for multipart."""
    store.put(object_key(req.project, msg.artifact_path, write=True), req.body, req.headers.get("content-type"))
    return {}


def delete_artifact(req: Request, msg: messages.ArtifactRef) -> dict:
    store.delete_tree(object_key(req.project, msg.artifact_path, write=True))
    return {}


def _upload_key(project: str, msg: messages.AbortMultipartUpload | messages.CreateMultipartUpload) -> str:
    """Multipart routes name a folder in the URL and the client's local file in `path` (MLflow's
    object key is folder + basename of that file)."""
    folder = folder_path(msg.artifact_path)
    if not folder:
        raise invalid("Invalid path: empty")
    return object_key(project, f"{folder}/{file_name(msg.path)}", write=True)


def create_multipart_upload(req: Request, msg: messages.CreateMultipartUpload) -> dict:
    key = _upload_key(req.project, msg)
    created = store.start_multipart(key, msg.num_parts)
    if len(json.dumps(created)) > CREATE_RESPONSE_BUDGET:
        store.abort_multipart(key, created["upload_id"])
        raise invalid(f"{msg.num_parts} part URLs do not fit in one API response: raise "
                      "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE (bytes per part) so the file needs fewer parts.")
    return created


def complete_multipart_upload(req: Request, msg: messages.CompleteMultipartUpload) -> dict:
    parts = sorted(({"PartNumber": p.part_number, "ETag": p.etag} for p in msg.parts), key=lambda p: p["PartNumber"])
    store.complete_multipart(_upload_key(req.project, msg), msg.upload_id, parts)
    return {}


def abort_multipart_upload(req: Request, msg: messages.AbortMultipartUpload) -> dict:
    store.abort_multipart(_upload_key(req.project, msg), msg.upload_id)
    return {}


def presigned_download_url(req: Request, msg: messages.ArtifactRef) -> dict:
    """GET mlflow-artifacts/presigned/<path>: what the 3.x client asks before a download. With the
    size it downloads in ranges of MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE, in parallel, each read whole
    into memory before it is written; without it, it streams the plain GET (a 307 to S3 for big files).
    Ranges pay only for files bigger than one (default) range; below, the size is left out (a 20 MB
    download locally: 59 ms streamed, 171-220 ms in one range)."""
    key = object_key(req.project, msg.artifact_path)
    size = store.size_of(key)
    return {"url": store.presigned_get(key), "headers": {},
            **({"file_size": size} if size > RANGED_DOWNLOAD_MIN_BYTES else {})}
