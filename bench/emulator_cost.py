"""The emulator's own cost: the DynamoDB calls our handlers make, timed directly against moto
in-process (table stream on, as `mlreg serve` runs it), at growing table sizes, with moto as it is
and with the patches `mlreg serve` installs (mlreg/moto_speedups.py). Explains where `mlreg serve`
is slower than the reference server in bench.e2e.

    python -m bench.emulator_cost                     # table sizes 1,000 / 10,000 / 40,000 items
    python -m bench.emulator_cost --sizes 1000,100000

Per call, median of --repeat: GetItem; Query of one 14-item partition (a run); Query through GSI1 of
one experiment's run collection; TransactWriteItems of 5 puts (log-batch's params); BatchWriteItem
of 25 puts (metric history); a full Scan."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
import uuid

from bench.harness import default_session  # noqa: F401  (sets the AWS environment defaults)


def _items(n_runs: int, experiment: str) -> list[dict]:
    items = []
    for _ in range(n_runs):
        run = uuid.uuid4().hex
        for k in range(14):
            sk = "#R" if k == 0 else f"P#p{k}"
            items.append({"pk": {"S": f"P#b#R#{run}"}, "sk": {"S": sk}, "g1pk": {"S": f"P#b#E#{experiment}#RUNS"},
                          "g1sk": {"S": f"{run}#{sk}"}, "value": {"S": "x" * 20}})
    return items


def measure(sizes: list[int], repeat: int, patched: bool) -> list[tuple[int, dict[str, float]]]:
    import boto3
    from moto import mock_aws

    from mlreg.moto_speedups import installed
    from shared import table as table_def

    out = []
    for size in sizes:
        with mock_aws(), (installed() if patched else contextlib.nullcontext()):
            ddb = boto3.client("dynamodb")
            name = os.environ["MLREG_TABLE"]
            ddb.create_table(**table_def.create_table_kwargs(name))  # with its stream, as mlreg serve
            filler = _items(size // 14, "big")
            for i in range(0, len(filler), 25):
                ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": it}} for it in filler[i:i + 25]]})
            probe = _items(1, "small")
            ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": it}} for it in probe]})
            pk = probe[0]["pk"]["S"]
            calls = {
                "GetItem": lambda: ddb.get_item(TableName=name, Key={"pk": {"S": pk}, "sk": {"S": "#R"}}),
                "Query (one run, 14 items)": lambda: ddb.query(
                    TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": pk}}),
                "Query GSI1 (experiment of 1 run)": lambda: ddb.query(
                    TableName=name, IndexName="gsi1", KeyConditionExpression="g1pk = :p",
                    ExpressionAttributeValues={":p": {"S": "P#b#E#small#RUNS"}}),
                "TransactWriteItems (5 puts)": lambda: ddb.transact_write_items(TransactItems=[
                    {"Put": {"TableName": name, "Item": {"pk": {"S": pk}, "sk": {"S": f"T#{uuid.uuid4().hex}"}}}}
                    for _ in range(5)]),
                "BatchWriteItem (25 puts)": lambda: ddb.batch_write_item(RequestItems={name: [
                    {"PutRequest": {"Item": {"pk": {"S": pk}, "sk": {"S": f"H#{uuid.uuid4().hex}"}}}}
                    for _ in range(25)]}),
                "Scan (whole table)": lambda: _scan_all(ddb, name),
            }
            timings = {}
            for label, fn in calls.items():
                n = 1 if label.startswith("Scan") else repeat
                samples = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    fn()
                    samples.append((time.perf_counter() - t0) * 1000)
                timings[label] = statistics.median(samples)
            out.append((len(filler) + len(probe), timings))
    return out


def _scan_all(ddb, name: str) -> None:
    kwargs = {"TableName": name}
    while True:
        page = ddb.scan(**kwargs)
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def markdown(plain: list[tuple[int, dict[str, float]]], patched: list[tuple[int, dict[str, float]]]) -> str:
    labels = list(plain[0][1])
    out = ["| call (ms, median): moto / patched | " + " | ".join(f"{size:,} items" for size, _ in plain) + " |",
           "|---|" + "---:|" * len(plain)]
    out += [f"| {label} | " + " | ".join(f"{a[label]:,.1f} / {b[label]:,.1f}" for (_, a), (_, b) in zip(plain, patched))
            + " |" for label in labels]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,40000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(markdown(measure(sizes, args.repeat, patched=False), measure(sizes, args.repeat, patched=True)))


if __name__ == "__main__":
    main()
