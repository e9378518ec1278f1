"""Artifact uploads and downloads through the MLflow client, `mlreg serve` against `mlflow server`
(SQLite, --serve-artifacts) in one run, step by step in turn: what each costs per byte here.

    python -m bench.uploads                      # 1 MB and 20 MB, 5 repeats
    python -m bench.uploads --sizes-mb 1,20,100 --repeat 3

Client settings as bench.e2e (and the README) give them: files of 5 MiB and more go in presigned
parts of 5 MiB; the reference's local artifact store takes them in one PUT."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.e2e import Results, markdown, start_mlreg, start_reference, timed


def transfers(servers: list, sizes_mb: list[int], repeat: int, results: Results, work: Path) -> None:
    """Each step on each server in turn, so both see the same machine (load from elsewhere included)."""
    import mlflow
    from mlflow import MlflowClient

    def client_of(server):
        os.environ["MLFLOW_TRACKING_URI"] = server.uri
        if server.token:
            os.environ["MLFLOW_TRACKING_TOKEN"] = server.token
        else:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        mlflow.set_tracking_uri(server.uri)
        return MlflowClient(server.uri)

    runs = {s.name: client_of(s).create_run(client_of(s).create_experiment(f"uploads-{time.time_ns()}")).info.run_id
            for s in servers}
    for size in sizes_mb:
        blob = work / f"blob-{size}" / "blob.bin"
        blob.parent.mkdir()
        blob.write_bytes(os.urandom(size * 1024 * 1024))
        for i in range(-1, repeat):  # round -1 warms up and is not counted
            counted = results if i >= 0 else Results()
            for server in servers:
                client, run_id = client_of(server), runs[server.name]
                timed(counted, f"log_artifact {size} MB", server.name,
                      lambda: client.log_artifact(run_id, str(blob), f"up{size}-{i}"))
                out = work / f"down-{server.name.replace(' ', '-')}-{size}-{i}"
                out.mkdir()
                timed(counted, f"download_artifacts {size} MB", server.name,
                      lambda: client.download_artifacts(run_id, f"up{size}-{i}/blob.bin", str(out)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", default="1,20", help="file sizes in MB, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=("mlreg", "reference"), help="run against one server only")
    parser.add_argument("--settle", type=float, default=30, help="seconds to wait after starting the servers "
                        "(mlflow server's job-runner processes take a while to start, using the CPU meanwhile)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes_mb.split(",") if n]
    os.environ.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    os.environ.setdefault("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(5 * 1024 * 1024))
    os.environ.setdefault("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 * 1024 * 1024))
    work = Path(tempfile.mkdtemp(prefix="mlreg-uploads-"))
    results = Results()
    servers = []
    try:
        for start in (start_mlreg, start_reference):
            if not args.only or (args.only == "mlreg") == (start is start_mlreg):
                servers.append(start(work))
        time.sleep(args.settle)
        transfers(servers, sizes, args.repeat, results, work)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    import mlflow

    print(markdown(results))
    print(f"\n(mlflow client {mlflow.__version__}; {args.repeat} repeats; {os.cpu_count()} cores)", file=sys.stdout)


if __name__ == "__main__":
    main()
