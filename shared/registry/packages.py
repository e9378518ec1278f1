"""Model packages: each model version's own, immutable copy of its source artifacts in the bucket at
`projects/<project>/packages/<model>/<semver>/`, read through the artifact routes as
`mlflow-artifacts:/packages/<model>/<semver>` (read-only there)."""

from __future__ import annotations

import base64
import os
import re
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from urllib.parse import quote

import boto3
from botocore.config import Config

from shared.artifacts.paths import package_uri_path

DELETE_BATCH = 1000  # DeleteObjects limit
COPY_THREADS = 16
# Files up to this size are copied in one CopyObject, so S3 computes each one's full SHA-256 (shown
# on the package page); bigger ones go in parallel parts, for which S3 keeps per-part checksums only.
WHOLE_COPY_MAX_BYTES = 512 * 1024 * 1024


@cache
def client():
    endpoint = os.environ.get("MLREG_S3_ENDPOINT") or None
    # A custom endpoint (the local moto server, MinIO) has no bucket DNS names: use path-style URLs.
    s3 = {"addressing_style": "path"} if endpoint else {}
    return boto3.client("s3", endpoint_url=endpoint, config=Config(s3=s3, max_pool_connections=COPY_THREADS * 2,
                                                                   retries={"max_attempts": 5, "mode": "standard"}))


def bucket() -> str:
    return os.environ.get("MLREG_BUCKET", "mlreg")


def model_prefix(project: str, model: str) -> str:
    return f"projects/{project}/packages/{model}/"


def package_prefix(project: str, model: str, semver: str) -> str:
    return f"{model_prefix(project, model)}{semver}/"


def artifacts_root(project: str) -> str:
    return f"projects/{project}/artifacts/"


def artifacts_prefix(project: str, path: str) -> str:
    """The key prefix of an artifact route path (`<exp>/<run>/artifacts/model`)."""
    return f"{artifacts_root(project)}{path.strip('/')}/"


def page_url(base_url: str, project: str, model: str, version: int) -> str:
    """The version's package page in the web UI (shared/ui/package.py): stable, as version numbers
    are never reused."""
    return f"{base_url}/projects/{project}/package?name={quote(model, safe='')}&version={version}"


def renamed_page_url(url: str, new_name: str) -> str:
    return re.sub(r"([?&]name=)[^&]*", lambda m: m.group(1) + quote(new_name, safe=""), url)


def download_uri(model: str, semver: str) -> str:
    """Resolved by the client against the tracking URI: the project's read-only packages path."""
    return f"mlflow-artifacts:/{package_uri_path(model, semver)}"


# A version whose source mlreg does not hold has no package: it carries this tag, and its
# `storage_location` (the source, as MLflow's registry keeps it) is what get-download-uri answers.
PACKAGE_TAG, EXTERNAL = "mlreg.package", "external"


def is_external(mv: dict) -> bool:
    return (mv.get("tags") or {}).get(PACKAGE_TAG) == EXTERNAL


def version_download_uri(mv: dict) -> str | None:
    """Where a version's files are read: its package, or the source of an external version."""
    if is_external(mv):
        return mv.get("storage_location") or mv.get("source")
    return download_uri(mv["name"], mv["semver"]) if mv.get("semver") and mv.get("name") else None


def _keys(prefix: str) -> list[tuple[str, int]]:
    found = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=prefix):
        found += [(o["Key"], o["Size"]) for o in page.get("Contents", [])]
    return found


def copy_tree(source_prefix: str, target_prefix: str) -> int:
    """Server-side copy of every object below `source_prefix`, each with S3's SHA-256 checksum;
    managed copy, so big objects go as multipart copies. Returns the number of objects copied."""
    from boto3.s3.transfer import TransferConfig

    objects = _keys(source_prefix)
    whole_files = TransferConfig(multipart_threshold=WHOLE_COPY_MAX_BYTES)

    def copy(entry):
        key, _ = entry
        client().copy({"Bucket": bucket(), "Key": key}, bucket(), target_prefix + key[len(source_prefix):],
                      ExtraArgs={"ChecksumAlgorithm": "SHA256"}, Config=whole_files)

    with ThreadPoolExecutor(COPY_THREADS) as pool:
        list(pool.map(copy, objects))
    return len(objects)


def delete_tree(prefix: str) -> int:
    """Delete every object below `prefix` (DeleteObjects, 1000 keys per request)."""
    keys = [k for k, _ in _keys(prefix)]
    for i in range(0, len(keys), DELETE_BATCH):
        client().delete_objects(Bucket=bucket(), Delete={"Objects": [{"Key": k} for k in keys[i:i + DELETE_BATCH]],
                                                         "Quiet": True})
    return len(keys)


def files(prefix: str) -> list[tuple[str, int, str | None]]:
    """Every file below `prefix`: (path below it, size, SHA-256 in hex, or None where S3 keeps no
    whole-file checksum). One listing, then one HeadObject per file, in parallel."""
    found = _keys(prefix)

    def checksum(key: str) -> str | None:
        head = client().head_object(Bucket=bucket(), Key=key, ChecksumMode="ENABLED")
        value = head.get("ChecksumSHA256")
        if not value or "-" in value or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
            return None  # none, or a checksum of part checksums
        return base64.b64decode(value).hex()

    with ThreadPoolExecutor(COPY_THREADS) as pool:
        sums = list(pool.map(checksum, [k for k, _ in found]))
    return [(key[len(prefix):], size, sha) for (key, size), sha in zip(found, sums)]


def list_folder(prefix: str) -> list[tuple[str, bool, int]]:
    """Direct children below `prefix` as (name, is_dir, size)."""
    entries = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=prefix, Delimiter="/"):
        entries += [(p["Prefix"][len(prefix):].rstrip("/"), True, 0) for p in page.get("CommonPrefixes", [])]
        entries += [(o["Key"][len(prefix):], False, o["Size"]) for o in page.get("Contents", [])
                    if o["Key"] != prefix]
    return entries
