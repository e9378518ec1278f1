"""Model packages: each model version's own, immutable copy of its source artifacts in the bucket at
`projects/<project>/packages/<model>/<semver>/`, read through the artifact routes as
`mlflow-artifacts:/packages/<model>/<semver>` (read-only there)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import boto3
from botocore.config import Config

from shared.artifacts.paths import package_uri_path

DELETE_BATCH = 1000  # DeleteObjects limit
COPY_THREADS = 16


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


def artifacts_prefix(project: str, path: str) -> str:
    """The key prefix of an artifact route path (`<exp>/<run>/artifacts/model`)."""
    return f"projects/{project}/artifacts/{path.strip('/')}/"


def download_uri(model: str, semver: str) -> str:
    """Resolved by the client against the tracking URI: the project's read-only packages path."""
    return f"mlflow-artifacts:/{package_uri_path(model, semver)}"


def _keys(prefix: str) -> list[tuple[str, int]]:
    found = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=prefix):
        found += [(o["Key"], o["Size"]) for o in page.get("Contents", [])]
    return found


def copy_tree(source_prefix: str, target_prefix: str) -> int:
    """Server-side copy of every object below `source_prefix`; managed copy, so objects over 5 GB
    go as multipart copies. Returns the number of objects copied."""
    objects = _keys(source_prefix)

    def copy(entry):
        key, _ = entry
        client().copy({"Bucket": bucket(), "Key": key}, bucket(), target_prefix + key[len(source_prefix):])

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


def list_folder(prefix: str) -> list[tuple[str, bool, int]]:
    """Direct children below `prefix` as (name, is_dir, size)."""
    entries = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=prefix, Delimiter="/"):
        entries += [(p["Prefix"][len(prefix):].rstrip("/"), True, 0) for p in page.get("CommonPrefixes", [])]
        entries += [(o["Key"][len(prefix):], False, o["Size"]) for o in page.get("Contents", [])
                    if o["Key"] != prefix]
    return entries
