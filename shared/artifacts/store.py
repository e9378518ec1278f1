"""The S3 side: one lazily created client, listing, small transfers, and presigned URLs that each
cover exactly one object (or one multipart upload) and expire quickly."""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from functools import cache

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.errors import MlflowError, invalid, not_found

DEFAULT_TTL_SECONDS = 900
MAX_TTL_SECONDS = 3600
DELETE_BATCH = 1000  # DeleteObjects limit


@cache
def client():
    endpoint = os.environ.get("MLREG_S3_ENDPOINT") or None
    # A custom endpoint (the local moto server, MinIO) has no bucket DNS names: use path-style URLs.
    s3 = {"addressing_style": "path"} if endpoint else {}
    return boto3.client("s3", endpoint_url=endpoint,
                        config=Config(signature_version="s3v4", s3=s3, retries={"max_attempts": 5, "mode": "standard"}))


def bucket() -> str:
    return os.environ.get("MLREG_BUCKET", "mlreg")


def ttl(requested: int | None = None) -> int:
    """URL lifetime: the configured default (MLREG_PRESIGNED_URL_TTL_SECONDS, 15 min), never more
    than MLREG_PRESIGNED_URL_MAX_TTL_SECONDS (1 h) even if a client asks for longer."""
    default = int(os.environ.get("MLREG_PRESIGNED_URL_TTL_SECONDS", DEFAULT_TTL_SECONDS))
    ceiling = int(os.environ.get("MLREG_PRESIGNED_URL_MAX_TTL_SECONDS", MAX_TTL_SECONDS))
    return max(1, min(requested or default, ceiling))


def s3_error(err: ClientError, what: str) -> MlflowError:
    """An S3 failure as the MLflow error a client understands."""
    code = err.response.get("Error", {}).get("Code", "")
    if code in ("NoSuchKey", "404", "NotFound"):
        return not_found(f"Artifact {what} does not exist")
    if code == "NoSuchUpload":
        return not_found(f"Multipart upload for {what} does not exist (completed or aborted already?)")
    if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "InvalidArgument", "InvalidRange"):
        return invalid(f"{err.response['Error'].get('Message', code)} ({what})")
    return MlflowError(f"Storage error for {what}: {code}", "INTERNAL_ERROR")


def shown(key: str) -> str:
    """A key as the client named it: its artifact route path."""
    _, _, area, rest = key.split("/", 3)
    return rest if area == "artifacts" else f"{area}/{rest}"


# ---- listing and deleting ---------------------------------------------------------------------

def list_folder(prefix: str) -> list[dict]:
    """Direct children of a folder as MLflow FileInfo JSON: basename path, is_dir, file_size left out
    for folders and empty files (as protobuf JSON does). One ListObjectsV2 per 1000 entries."""
    entries = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            entries.append({"path": common["Prefix"][len(prefix):].rstrip("/"), "is_dir": True})
        for obj in page.get("Contents", []):
            name = obj["Key"][len(prefix):]
            if not name or name.endswith("/"):  # folder markers some tools write
                continue
            entry = {"path": name, "is_dir": False}
            if obj["Size"]:
                entry["file_size"] = obj["Size"]
            entries.append(entry)
    return sorted(entries, key=lambda e: e["path"])


def delete_tree(key: str) -> None:
    """The object `key` and everything below `key/` (MLflow deletes files and folders alike)."""
    s3 = client()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=key):
        doomed = [{"Key": o["Key"]} for o in page.get("Contents", [])
                  if o["Key"] == key or o["Key"].startswith(key + "/")]
        for i in range(0, len(doomed), DELETE_BATCH):
            s3.delete_objects(Bucket=bucket(), Delete={"Objects": doomed[i:i + DELETE_BATCH], "Quiet": True})


# ---- small transfers (through the API) ----------------------------------------------------------

def put(key: str, body: bytes, content_type: str | None) -> None:
    extra = {"ContentType": content_type} if content_type else {}
    client().put_object(Bucket=bucket(), Key=key, Body=body, **extra)


def read_up_to(key: str, limit: int) -> bytes | None:
    """The bytes of an object of at most `limit` bytes, None when it is bigger. One ranged GetObject
    either way, so a big object is never read through the function. (Its stored content type is not
    passed on: artifact answers name their own, shared/artifacts/responses.py.)"""
    s3 = client()
    try:
        obj = s3.get_object(Bucket=bucket(), Key=key, Range=f"bytes=0-{limit}")
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "InvalidRange":
            raise s3_error(err, shown(key)) from None
        obj = s3.get_object(Bucket=bucket(), Key=key)  # S3 refuses any range of an empty object
    content_range = obj.get("ContentRange")  # "bytes 0-N/total" when the range was honoured
    size = int(content_range.rsplit("/", 1)[1]) if content_range else obj["ContentLength"]
    if size > limit:
        obj["Body"].close()
        return None
    return obj["Body"].read()


def size_of(key: str) -> int:
    try:
        return client().head_object(Bucket=bucket(), Key=key)["ContentLength"]
    except ClientError as err:
        raise s3_error(err, shown(key)) from None


# ---- presigned URLs ---------------------------------------------------------------------------

def _attachment(filename: str) -> str:
    """Content-Disposition for a presigned GET (as MLflow's S3 repository signs it): browsers save
    the file under its own name instead of rendering it."""
    if not filename.isascii() or not filename.isprintable():
        return f"attachment; filename*=UTF-8''{urllib.parse.quote(filename)}"
    escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
    return f'attachment; filename="{escaped}"'


def presigned_get(key: str, expires: int | None = None) -> str:
    return client().generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket(), "Key": key, "ResponseContentDisposition": _attachment(posixpath.basename(key))},
        ExpiresIn=ttl(expires))


def presigned_put(key: str, content_type: str, expires: int | None = None) -> str:
    """Signed with the content type, so the uploader must send exactly that Content-Type header."""
    return client().generate_presigned_url(
        "put_object", Params={"Bucket": bucket(), "Key": key, "ContentType": content_type}, ExpiresIn=ttl(expires))


# ---- multipart uploads -------------------------------------------------------------------------

def start_multipart(key: str, num_parts: int) -> dict:
    """A multipart upload and one presigned `upload_part` URL per part (signing is local: no requests)."""
    s3 = client()
    upload_id = s3.create_multipart_upload(Bucket=bucket(), Key=key)["UploadId"]
    expires = ttl()
    credentials = [{
        "url": s3.generate_presigned_url(
            "upload_part", Params={"Bucket": bucket(), "Key": key, "UploadId": upload_id, "PartNumber": n},
            ExpiresIn=expires),
        "part_number": n,
        "headers": {},
    } for n in range(1, num_parts + 1)]
    return {"upload_id": upload_id, "credentials": credentials}


def complete_multipart(key: str, upload_id: str, parts: list[dict]) -> None:
    s3 = client()
    try:
        s3.complete_multipart_upload(Bucket=bucket(), Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except ClientError as err:
        # A retried complete (the first answer was lost) finds the upload gone and the object there.
        if err.response.get("Error", {}).get("Code") == "NoSuchUpload" and _exists(key):
            return
        raise s3_error(err, shown(key)) from None


def abort_multipart(key: str, upload_id: str) -> None:
    try:
        client().abort_multipart_upload(Bucket=bucket(), Key=key, UploadId=upload_id)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "NoSuchUpload":  # aborting twice is fine
            raise s3_error(err, shown(key)) from None


def _exists(key: str) -> bool:
    try:
        client().head_object(Bucket=bucket(), Key=key)
        return True
    except ClientError:
        return False
