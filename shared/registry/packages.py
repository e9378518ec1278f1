"""Model packages: each model version's own, immutable copy of its source artifacts in the bucket,
read through the artifact routes as `mlflow-artifacts:/<package>` (read-only there).

A version records its package's path when it is created (`package`, below `projects/<project>/`):
`packages/<model_id>/<semver>~<attempt>` since 2026-12 (a request copies a small source before the
transaction that decides the version's number and semver, and a concurrent creator may win that
semver: each attempt copies below its own path); `packages/<model_id>/<semver>` since models have
ids; versions made before keep the path they had (`packages/<model name>/<semver>`), so a rename,
and the migration to ids, move no object.

A small source (at most INLINE_MAX_FILES files and INLINE_MAX_BYTES in all) is copied by the request
that creates the version (shared/registry/versions.py) before the version is written, READY; any
other is copied by the registry worker (shared/registry/worker.py), and so is a small one whose copy
in the request did not finish. Files up to 5 GB (S3's single-copy limit) are one CopyObject each, for
which S3 computes the file's full SHA-256; bigger ones as multipart copies in parallel parts, each
part with S3's SHA-256 (the object then keeps a checksum of the part checksums). A finished package
has a manifest beside it (`<package>.files.json`: every file's path, size, SHA-256 or part
checksums) that the package page shows."""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import cache
from typing import Callable

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.artifacts.paths import PACKAGES, package_uri_path

DELETE_BATCH = 1000  # DeleteObjects limit
COPY_THREADS = 16
WHOLE_COPY_MAX_BYTES = 5 * 1024**3  # S3's CopyObject limit; bigger files go in parts
PART_BYTES = 512 * 1024**2  # a part copy takes seconds, so a worker stops between them when its time is up
MAX_PARTS = 10_000
COPY_PAUSE_SECONDS = 0.0  # fault injection for tests only (shared/registry/local.py): a slow worker copy
# A source this small is copied in the request: server-side copies, 16 at once, so a request spends
# about one CopyObject's time (tens of ms on S3 for a few MB) instead of the client's 3 s polls for a
# worker that is reached through the stream and a queue (seconds deployed).
INLINE_MAX_FILES = 16
INLINE_MAX_BYTES = 16 * 1024**2
INLINE_SECONDS = 10.0  # no copy in the request starts later than this (API Gateway allows 29 s)


@cache
def client():
    endpoint = os.environ.get("MLREG_S3_ENDPOINT") or None
    # A custom endpoint (the local moto server, MinIO) has no bucket DNS names: use path-style URLs.
    s3 = {"addressing_style": "path"} if endpoint else {}
    return boto3.client("s3", endpoint_url=endpoint, config=Config(s3=s3, max_pool_connections=COPY_THREADS * 2,
                                                                   retries={"max_attempts": 5, "mode": "standard"}))


def bucket() -> str:
    return os.environ.get("MLREG_BUCKET", "mlreg")


# ---- layout ---------------------------------------------------------------------------------------

def package_path(model_id: str, semver: str, attempt: str) -> str:
    """A new version's package, below the project's root: its semver, then `~` and 8 hex digits of
    the create attempt (`~` is in no semver), so that no two attempts write to one path."""
    return f"{PACKAGES}/{model_id}/{semver}~{attempt[:8]}"


def model_packages_prefix(project: str, model_id: str) -> str:
    """Every package made since models have ids (deleted with the model)."""
    return f"projects/{project}/{PACKAGES}/{model_id}/"


def prefix(project: str, package: str) -> str:
    """The S3 key prefix of a package path."""
    return f"projects/{project}/{package}/"


def manifest_key(project: str, package: str) -> str:
    return f"projects/{project}/{package}.files.json"


def artifacts_root(project: str) -> str:
    return f"projects/{project}/artifacts/"


def artifacts_prefix(project: str, path: str) -> str:
    """The key prefix of an artifact route path (`<exp>/<run>/artifacts/model`)."""
    return f"{artifacts_root(project)}{path.strip('/')}/"


def page_base(base_url: str, project: str) -> str:
    """Where package pages are (shared/ui/package.py); a version records it, its URL adds name and number."""
    return f"{base_url}/projects/{project}/package"


def download_uri(package: str) -> str:
    """Resolved by the client against the tracking URI: the project's read-only packages path. The
    segment after `packages/` (a model id, or an older package's model name) is escaped, so the
    client's URLs decode back to the literal key (shared/artifacts/paths.py `listed_folder`)."""
    _, owner, semver = package.split("/", 2)
    return f"mlflow-artifacts:/{package_uri_path(owner, semver)}"


# A version whose source mlreg does not hold has no package: it carries this tag, and its
# `storage_location` (the source, as MLflow's registry keeps it) is what get-download-uri answers.
PACKAGE_TAG, EXTERNAL = "mlreg.package", "external"


def is_external(mv: dict) -> bool:
    return (mv.get("tags") or {}).get(PACKAGE_TAG) == EXTERNAL


def version_download_uri(mv: dict) -> str | None:
    """Where a version's files are read: its package, or the source of an external version."""
    if is_external(mv):
        return mv.get("storage_location") or mv.get("source")
    return download_uri(mv["package"]) if mv.get("package") else None


# ---- listing and deleting ---------------------------------------------------------------------------

def objects(prefix: str) -> list[tuple[str, int]]:
    found = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=prefix):
        found += [(o["Key"], o["Size"]) for o in page.get("Contents", [])]
    return found


def delete_tree(prefix: str, *extra_keys: str) -> int:
    """Delete every object below `prefix` and `extra_keys` (DeleteObjects, 1000 keys per request)."""
    keys = [k for k, _ in objects(prefix)] + list(extra_keys)
    for i in range(0, len(keys), DELETE_BATCH):
        client().delete_objects(Bucket=bucket(), Delete={"Objects": [{"Key": k} for k in keys[i:i + DELETE_BATCH]],
                                                         "Quiet": True})
    return len(keys)


def delete_package(project: str, package: str) -> int:
    return delete_tree(prefix(project, package), manifest_key(project, package))


def list_folder(prefix: str) -> list[tuple[str, bool, int]]:
    """Direct children below `prefix` as (name, is_dir, size)."""
    entries = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=prefix, Delimiter="/"):
        entries += [(p["Prefix"][len(prefix):].rstrip("/"), True, 0) for p in page.get("CommonPrefixes", [])]
        entries += [(o["Key"][len(prefix):], False, o["Size"]) for o in page.get("Contents", [])
                    if o["Key"] != prefix]
    return entries


# ---- files and their checksums ----------------------------------------------------------------------

@dataclass
class File:
    path: str  # below the package
    size: int
    sha256: str | None  # hex, of the whole file; None where S3 keeps only part checksums
    part_sha256: str | None = None  # S3's checksum of the part checksums ("<base64>-<parts>")
    part_size: int | None = None  # with which the part checksums can be recomputed


def _sha256(checksum: str | None, kind: str | None = "FULL_OBJECT") -> str | None:
    if not checksum or "-" in checksum or (kind or "FULL_OBJECT") != "FULL_OBJECT":
        return None
    return base64.b64decode(checksum).hex()


def write_manifest(project: str, package: str, files: list[File]) -> None:
    body = json.dumps({"files": [asdict(f) for f in sorted(files, key=lambda f: f.path)]}, indent=1)
    client().put_object(Bucket=bucket(), Key=manifest_key(project, package), Body=body.encode(),
                        ContentType="application/json")


def files(project: str, package: str) -> list[File]:
    """A package's files: its manifest (one GET), or for a package made before manifests, a listing and
    one HeadObject per file, in parallel."""
    try:
        body = client().get_object(Bucket=bucket(), Key=manifest_key(project, package))["Body"].read()
        return [File(**f) for f in json.loads(body)["files"]]
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
    root = prefix(project, package)

    def described(entry: tuple[str, int]) -> File:
        key, size = entry
        head = client().head_object(Bucket=bucket(), Key=key, ChecksumMode="ENABLED")
        return File(key[len(root):], size, _sha256(head.get("ChecksumSHA256"), head.get("ChecksumType")))

    with ThreadPoolExecutor(COPY_THREADS) as pool:
        return list(pool.map(described, objects(root)))


# ---- copying ------------------------------------------------------------------------------------------

class OutOfTime(Exception):
    """The worker's time is nearly up: what is copied stays, the next run carries on from there."""


def small_source(source_prefix: str) -> list[tuple[str, int]] | None:
    """The source's objects if it is small enough to copy in the request (one ListObjectsV2 of at most
    INLINE_MAX_FILES + 1 keys), else None."""
    if INLINE_MAX_FILES < 0:  # copies in requests turned off (fault injection, shared/registry/local.py)
        return None
    page = client().list_objects_v2(Bucket=bucket(), Prefix=source_prefix, MaxKeys=INLINE_MAX_FILES + 1)
    found = [(o["Key"], o["Size"]) for o in page.get("Contents", [])]
    too_big = page.get("IsTruncated") or len(found) > INLINE_MAX_FILES or sum(size for _, size in found) > INLINE_MAX_BYTES
    return None if too_big else found


def copy_tree(source_prefix: str, target_prefix: str, time_left: Callable[[], float], reserve: float,
              listed: list[tuple[str, int]] | None = None, pause: float = 0.0) -> list[File]:
    """Server-side copy of every object below `source_prefix` that is not below `target_prefix` yet
    (a previous run's copies are kept), each with S3's SHA-256. No copy starts with less than
    `reserve` seconds of `time_left()`: then OutOfTime. Returns every file of the package.
    `listed`: the source's objects, listed already for a package nothing was copied to yet (the
    request's copy: no listing of either). `pause`: fault injection (COPY_PAUSE_SECONDS)."""
    done = {} if listed is not None else {key[len(target_prefix):]: size for key, size in objects(target_prefix)}
    pending = listed if listed is not None else objects(source_prefix)

    def copy(entry: tuple[str, int]) -> File:
        key, size = entry
        path = key[len(source_prefix):]
        if done.get(path) == size:
            return _described(target_prefix + path, path, size)
        if time_left() < reserve:
            raise OutOfTime
        if pause:
            time.sleep(pause)
        if size <= WHOLE_COPY_MAX_BYTES:
            result = client().copy_object(Bucket=bucket(), Key=target_prefix + path, ChecksumAlgorithm="SHA256",
                                          CopySource={"Bucket": bucket(), "Key": key})["CopyObjectResult"]
            return File(path, size, _sha256(result.get("ChecksumSHA256")))
        return _copy_in_parts(key, target_prefix + path, path, size, time_left, reserve)

    if len(pending) <= 1:  # a one-file model: no pool to start
        return [copy(entry) for entry in pending]
    with ThreadPoolExecutor(COPY_THREADS) as pool:
        return list(pool.map(copy, pending))


def _described(key: str, path: str, size: int) -> File:
    head = client().head_object(Bucket=bucket(), Key=key, ChecksumMode="ENABLED")
    checksum, kind = head.get("ChecksumSHA256"), head.get("ChecksumType")
    whole = _sha256(checksum, kind)
    return File(path, size, whole, None if whole else checksum, None if whole else part_size(size))


def part_size(size: int) -> int:
    return max(PART_BYTES, -(-size // MAX_PARTS))


def _copy_in_parts(source: str, target: str, path: str, size: int, time_left: Callable[[], float],
                   reserve: float) -> File:
    """A multipart copy in parallel parts. An upload a previous run left unfinished is taken up
    (S3 lists its parts), so a copy longer than one worker's time goes on where it stopped."""
    s3, step = client(), part_size(size)
    upload_id = _unfinished_upload(target) or s3.create_multipart_upload(
        Bucket=bucket(), Key=target, ChecksumAlgorithm="SHA256")["UploadId"]
    parts = {p["PartNumber"]: p for page in s3.get_paginator("list_parts").paginate(
        Bucket=bucket(), Key=target, UploadId=upload_id) for p in page.get("Parts", [])}

    def copy_part(number: int) -> dict:
        if number in parts:
            found = parts[number]
            return {"PartNumber": number, "ETag": found["ETag"], "ChecksumSHA256": found.get("ChecksumSHA256")}
        if time_left() < reserve:
            raise OutOfTime
        first = (number - 1) * step
        result = s3.upload_part_copy(Bucket=bucket(), Key=target, UploadId=upload_id, PartNumber=number,
                                     CopySource={"Bucket": bucket(), "Key": source},
                                     CopySourceRange=f"bytes={first}-{min(first + step, size) - 1}")["CopyPartResult"]
        return {"PartNumber": number, "ETag": result["ETag"], "ChecksumSHA256": result.get("ChecksumSHA256")}

    with ThreadPoolExecutor(COPY_THREADS) as pool:
        done = list(pool.map(copy_part, range(1, -(-size // step) + 1)))
    completed = s3.complete_multipart_upload(
        Bucket=bucket(), Key=target, UploadId=upload_id,
        MultipartUpload={"Parts": [{k: v for k, v in p.items() if v is not None} for p in done]})
    checksum = completed.get("ChecksumSHA256")
    return File(path, size, None, checksum, step)


def _unfinished_upload(key: str) -> str | None:
    uploads = client().list_multipart_uploads(Bucket=bucket(), Prefix=key).get("Uploads", [])
    return next((u["UploadId"] for u in uploads if u["Key"] == key), None)
