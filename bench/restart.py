"""Restart time of `mlreg serve` as its data grows: a data directory holding N items (runs with
params, metrics and tags, built by the handlers' own write code), then the time from launching
`mlreg serve` to its first answered API request. Each size is measured with everything in the
snapshot, and with a tail of the items in the write-ahead log instead (a restart after `kill -9`).

    python -m bench.restart                                  # 100,000 items
    python -m bench.restart --items 7000,100000 --log-items 20000
    python -m bench.restart --checkout ../main --legacy      # another checkout; snapshot as an older mlreg wrote it

Between repeats the service is killed (SIGKILL), so every start reads the same files."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
RUNS_PER_BATCH = 500


def launch(checkout: Path, data_dir: Path) -> tuple[subprocess.Popen, float]:
    """Starts `mlreg serve` and returns it once it answers an authenticated API request, with the
    seconds that took."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mlreg.cli", "serve", "--port", str(port), "--data-dir",
                             str(data_dir)], cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    token = (data_dir / "admin-token").read_text().strip() if (data_dir / "admin-token").exists() else None
    url = f"http://127.0.0.1:{port}/projects/default/api/2.0/mlflow/experiments/search?max_results=1"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mlreg serve exited: {proc.stderr.read().decode()[-2000:]}")
        token = token or ((data_dir / "admin-token").read_text().strip() if (data_dir / "admin-token").exists()
                          else None)
        try:
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            if urllib.request.urlopen(request, timeout=5).status == 200:
                return proc, time.perf_counter() - started
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.05)


def built_items(count: int) -> list[dict]:
    """At least `count` items as the handlers write them (bench.harness builders, in-process moto)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from bench.harness import Api, build_experiment, emulated_aws

    with emulated_aws():
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]].tables[
            os.environ["MLREG_TABLE"]]
        api, batch = Api(), 0
        while (have := sum(len(partition) for partition in table.items.values())) < count:
            build_experiment(api, f"restart-{batch}", min(RUNS_PER_BATCH, (count - have) // 15 + 1))  # ~18 items a run
            batch += 1
        return [item.to_json()["Attributes"] for item in table.all_items()]


def prepare(checkout: Path, data_dir: Path, items: list[dict], log_items: int, legacy: bool) -> None:
    """A data directory the service made (project `default`, its admin token), plus `items`: in the
    snapshot, and the last `log_items` of them as write-ahead log records."""
    proc, _ = launch(checkout, data_dir)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    from bench.harness import put_in_data_dir
    from mlreg.journal import atomic_write, dumps, loads

    saved = loads((data_dir / "table.json").read_bytes())
    own = saved if isinstance(saved, list) else saved["items"]
    in_snapshot, in_log = items[:len(items) - log_items], items[len(items) - log_items:]
    if legacy:
        atomic_write(data_dir / "table.json", dumps(own + items).encode())
        return
    atomic_write(data_dir / "table.json", dumps({"generation": saved["generation"],
                                                 "items": own + in_snapshot}).encode())
    put_in_data_dir(data_dir, in_log, per_record=1)  # one record per write, as the service logs them


def measure(checkout: Path, data_dir: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        proc, seconds = launch(checkout, data_dir)
        proc.send_signal(signal.SIGKILL)  # leaves the files as they were
        proc.wait()
        times.append(seconds)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", default="100000", help="data sizes in items, comma-separated")
    parser.add_argument("--log-items", type=int, default=10000, help="items written as log records instead")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the mlreg checkout whose `mlreg serve` runs")
    parser.add_argument("--legacy", action="store_true", help="write the snapshot as a bare list (mlreg before "
                        "the write-ahead log; no log records)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.items.split(",") if n]
    rows = []
    all_items = built_items(max(sizes))
    for size in sizes:
        for log_items in ([0] if args.legacy else [0, min(args.log_items, size)]):
            work = Path(tempfile.mkdtemp(prefix="mlreg-restart-"))
            try:
                prepare(args.checkout, work / "data", all_items[:size], log_items, args.legacy)
                snapshot_mb = (work / "data" / "table.json").stat().st_size / 1e6
                seconds = measure(args.checkout, work / "data", args.repeat)
                rows.append((size, log_items, snapshot_mb, seconds))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    print("| items | of them in the log | snapshot | restart (median) |")
    print("|---|---|---|---|")
    for size, log_items, snapshot_mb, seconds in rows:
        print(f"| {size:,} | {log_items:,} | {snapshot_mb:.1f} MB | {seconds:.2f} s |")
    print(f"\n(`mlreg serve` from {args.checkout}{', legacy snapshot' if args.legacy else ''}; "
          f"{args.repeat} starts each)")


if __name__ == "__main__":
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    main()
