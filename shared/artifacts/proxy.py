"""MLflow's proxied artifact routes (`/api/2.0/mlflow-artifacts/...`), as `mlflow server
--serve-artifacts` answers them, over S3. Small files pass through the function; big ones never do:
downloads are redirected to (or handed) a presigned GET, uploads go in presigned multipart parts."""

from __future__ import annotations

import json

from shared.artifacts import store
from shared.artifacts.paths import file_name, folder_path, folder_prefix, listed_folder, object_key
from shared.errors import invalid
from shared.http import Request, Response
from shared.validation import integer, require

# Lambda answers at most 6 MB and binary bodies travel base64-encoded (4/3 bigger): above this a
# GET is redirected to S3 instead.
INLINE_MAX_BYTES = 4 * 1024 * 1024
MAX_PARTS = 10_000  # S3's limit
CREATE_RESPONSE_BUDGET = 5 * 1024 * 1024  # the part URLs must fit in one Lambda response


def _route_path(req: Request) -> str:
    return req.path_params.get("path", "")


def list_artifacts(req: Request) -> dict:
    """GET mlflow-artifacts/artifacts?path=: direct children, paths relative to the listed folder."""
    files = store.list_folder(folder_prefix(req.project, listed_folder(req.json.get("path"))))
    return {"files": files} if files else {}


def download_artifact(req: Request) -> Response:
    key = object_key(req.project, _route_path(req))
    body, _, content_type = store.read_up_to(key, INLINE_MAX_BYTES)
    if body is None:
        # Both MLflow client lines follow a 307 (and drop the Authorization header on the new host).
        return Response(status=307, body="", headers={"Location": store.presigned_get(key)})
    return Response(body=body, headers={"Content-Type": content_type})


def upload_artifact(req: Request) -> dict:
    """PUT mlflow-artifacts/artifacts/<path>, body = the file. Bodies over API Gateway's or Lambda's
    limit never get here: the gateway answers 413 and names the client settings for multipart."""
    store.put(object_key(req.project, _route_path(req), write=True), req.body, req.headers.get("content-type"))
    return {}


def delete_artifact(req: Request) -> dict:
    store.delete_tree(object_key(req.project, _route_path(req), write=True))
    return {}


def _upload_key(req: Request) -> str:
    """Multipart routes name a folder in the URL and the client's local file in `path` (MLflow's
    object key is folder + basename of that file)."""
    folder = folder_path(_route_path(req))
    if not folder:
        raise invalid("Invalid path: empty")
    name = file_name(require(req.json, "path"))
    return object_key(req.project, f"{folder}/{name}", write=True)


def create_multipart_upload(req: Request) -> dict:
    key = _upload_key(req)
    num_parts = integer(req.json.get("num_parts"), "num_parts", 1)
    if not 1 <= num_parts <= MAX_PARTS:
        raise invalid(f"num_parts must be between 1 and {MAX_PARTS}, got {num_parts}. "
                      "Raise MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE for very large files.")
    created = store.start_multipart(key, num_parts)
    if len(json.dumps(created)) > CREATE_RESPONSE_BUDGET:
        store.abort_multipart(key, created["upload_id"])
        raise invalid(f"{num_parts} part URLs do not fit in one API response: raise "
                      "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE (bytes per part) so the file needs fewer parts.")
    return created


def complete_multipart_upload(req: Request) -> dict:
    key = _upload_key(req)
    upload_id = require(req.json, "upload_id")
    parts = req.json.get("parts")
    if not isinstance(parts, list) or not parts:
        raise invalid("Missing value for required parameter 'parts'.")
    try:
        s3_parts = [{"PartNumber": int(p["part_number"]), "ETag": str(p["etag"])} for p in parts]
    except (KeyError, TypeError, ValueError):
        raise invalid("Each part needs 'part_number' and 'etag'.") from None
    store.complete_multipart(key, upload_id, sorted(s3_parts, key=lambda p: p["PartNumber"]))
    return {}


def abort_multipart_upload(req: Request) -> dict:
    store.abort_multipart(_upload_key(req), require(req.json, "upload_id"))
    return {}


def presigned_download_url(req: Request) -> dict:
    """GET mlflow-artifacts/presigned/<path>: what the 3.x client uses for (ranged, parallel) downloads."""
    key = object_key(req.project, _route_path(req))
    size = store.size_of(key)
    return {"url": store.presigned_get(key), "headers": {}, "file_size": size}
