"""The emulator's DynamoDB lock under concurrent clients: requests per second, latency and the time
requests wait for the lock, with every request taking the lock alone (one lock, as mlreg serve did
before) and with the reader/writer lock (reads together, writes in turn). Both journaled to disk as
`mlreg serve` runs them (mlreg/emulator.py, mlreg/journal.py).

    python -m bench.emulator_locks                     # 6 reading and 2 writing threads, 5 s each way
    python -m bench.emulator_locks --readers 8 --writers 0 --seconds 10"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
TABLE = "mlreg-locks"
PARTITIONS, PER_PARTITION = 100, 20


@contextmanager
def emulated(one_lock: bool, data_dir: Path):
    """moto as `mlreg serve` runs it; with `one_lock`, reads take the lock alone too."""
    import boto3
    from moto import mock_aws

    from mlreg import emulator, moto_speedups
    from mlreg.journal import Journal
    from shared import table as table_def

    reads = emulator.READS
    with mock_aws(), moto_speedups.installed():
        boto3.client("dynamodb").create_table(**table_def.create_table_kwargs(TABLE))
        journal = Journal(data_dir, ("pk", "sk"))
        journal.load()
        emulator.READS = set() if one_lock else reads
        undo = emulator.guard_dynamodb(journal, TABLE)
        try:
            yield boto3.client("dynamodb")
        finally:
            undo()
            emulator.READS = reads
            journal.close()


@contextmanager
def lock_waits(waits: list[float]):
    """Time spent acquiring DYNAMODB_LOCK, either way."""
    from mlreg import emulator

    lock = emulator.DYNAMODB_LOCK
    reading, writing = lock.reading, lock.writing

    def timed(acquire):
        @contextmanager
        def wrapper():
            started = time.perf_counter()
            with acquire():
                waits.append(time.perf_counter() - started)
                yield
        return wrapper

    lock.reading, lock.writing = timed(reading), timed(writing)
    try:
        yield
    finally:
        lock.reading, lock.writing = reading, writing


def workload(ddb, readers: int, writers: int, seconds: float) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {"read": [], "write": []}
    stop = threading.Event()

    def key(rng) -> dict:
        return {"pk": {"S": f"p{rng.randrange(PARTITIONS)}"}, "sk": {"S": f"s{rng.randrange(PER_PARTITION):03d}"}}

    def read(rng):
        if rng.random() < 0.5:
            ddb.get_item(TableName=TABLE, Key=key(rng))
        else:
            ddb.query(TableName=TABLE, KeyConditionExpression="pk = :p",
                      ExpressionAttributeValues={":p": {"S": f"p{rng.randrange(PARTITIONS)}"}})

    def write(rng):
        ddb.put_item(TableName=TABLE, Item={**key(rng), "v": {"N": str(rng.random())}, "g1pk": {"S": "all"},
                                            "g1sk": {"S": str(rng.random())}})

    def loop(kind: str, call, seed: int):
        rng, mine = random.Random(seed), []
        while not stop.is_set():
            started = time.perf_counter()
            call(rng)
            mine.append(time.perf_counter() - started)
        latencies[kind].extend(mine)

    threads = [threading.Thread(target=loop, args=("read", read, n)) for n in range(readers)]
    threads += [threading.Thread(target=loop, args=("write", write, 1000 + n)) for n in range(writers)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return latencies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=6)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    print("| lock | reads/s | writes/s | read p50 / p99 (ms) | write p50 / p99 (ms) | waiting for the lock |")
    print("|---|---:|---:|---:|---:|---:|")
    for one_lock in (True, False):
        with tempfile.TemporaryDirectory() as work, emulated(one_lock, Path(work)) as ddb:
            rng = random.Random(0)
            for p in range(PARTITIONS):
                for s in range(PER_PARTITION):
                    ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"p{p}"}, "sk": {"S": f"s{s:03d}"},
                                                        "v": {"N": str(rng.random())}})
            waits: list[float] = []
            with lock_waits(waits):
                latencies = workload(ddb, args.readers, args.writers, args.seconds)
        cells = [f"{len(latencies[k]) / args.seconds:,.0f}" for k in ("read", "write")]
        for kind in ("read", "write"):
            got = sorted(latencies[kind]) or [float("nan")]
            cells.append(f"{statistics.median(got) * 1000:.1f} / {got[int(len(got) * 0.99)] * 1000:.1f}"
                         if latencies[kind] else "-")
        share = sum(waits) / (args.seconds * (args.readers + args.writers))
        name = "one lock (every request alone)" if one_lock else "reader/writer lock"
        print(f"| {name} | {' | '.join(cells)} | {share:.0%} of request time |")
    print(f"\n({args.readers} reading and {args.writers} writing threads, {args.seconds:g} s each way, "
          f"{PARTITIONS * PER_PARTITION:,} items, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
