"""Benchmark: a 1 GB artifact round trip through `mlreg serve` with the unmodified MLflow client.

Starts `mlreg serve` on a free port with a temporary data directory, uploads a random 1 GB file with
presigned multipart upload, downloads it again (3.x: presigned ranged parts; 2.x: a 307 redirect to a
presigned GET), checks the sha256 and prints throughput. Run with the interpreter of the client line
to measure, e.g.:

    /tmp/venvs/v3/bin/python bench/artifacts_1gb.py [--size-mb 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.ports import free_port

REPO = Path(__file__).resolve().parent.parent
CHUNK = 64 * 1024 * 1024


def start_service(work: Path) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    data = work / "data"
    log = open(work / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlreg.cli", "serve", "--port", str(port), "--data-dir", str(data)],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while not (data / "admin-token").exists() or not _listening(port):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise SystemExit(f"mlreg serve did not start: {(work / 'serve.log').read_text()}")
        time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}/projects/default", (data / "admin-token").read_text().strip()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(CHUNK, left))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    size = args.size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="mlreg-bench-") as tmp:
        work = Path(tmp)
        proc, uri, token = start_service(work)
        try:
            os.environ.update({
                "MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_TOKEN": token,
                "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "true", "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": "5242880",
            })
            import mlflow

            src = work / "model.bin"
            expected = write_random(src, size)
            with mlflow.start_run() as run:
                started = time.perf_counter()
                mlflow.log_artifact(str(src))
                upload_s = time.perf_counter() - started
            started = time.perf_counter()
            out = mlflow.artifacts.download_artifacts(artifact_uri=f"{run.info.artifact_uri}/model.bin",
                                                      dst_path=str(work / "out"))
            download_s = time.perf_counter() - started
            ok = sha256_of(Path(out)) == expected
            report(mlflow.__version__, args.size_mb, upload_s, download_s, ok, expected)
        finally:
            stop(proc)
    return 0 if ok else 1


def report(version: str, size_mb: int, upload_s: float, download_s: float, ok: bool, expected: str) -> None:
    mb = size_mb * 1024 * 1024 / 1e6
    print(f"mlflow {version}, {size_mb} MiB, local moto S3")
    print(f"upload:   {upload_s:7.1f} s  {mb / upload_s:7.1f} MB/s (presigned multipart)")
    print(f"download: {download_s:7.1f} s  {mb / download_s:7.1f} MB/s")
    print(f"sha256 {'matches' if ok else 'DIFFERS'}: {expected}", flush=True)


def stop(proc: subprocess.Popen) -> None:
    """The service snapshots its objects to the data directory on exit: a 1 GB object takes a while."""
    proc.terminate()
    try:
        proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
