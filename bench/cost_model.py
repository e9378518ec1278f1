"""Cost model: monthly cost at rest, and the cost of one million calls of each common route, from
the request budget (requests, round trips, read/write request units) and the warm CPU per route.

    python -m bench.cost_model                    # measures both (about a minute), then prices them
    python -m bench.cost_model --memory-mb 1024 --ddb-rtt-ms 8

Prices: AWS us-east-1, on-demand, public list prices as known to the author (knowledge as of
2025; DynamoDB on-demand after its November 2024 price cut). They must be checked against
https://aws.amazon.com/pricing before relying on the figures."""

from __future__ import annotations

import argparse
import math

PRICES_AS_OF = "2025 (author's knowledge; check https://aws.amazon.com/pricing)"
PRICES = {  # USD, us-east-1
    "api_gateway_rest_per_million": 3.50,  # first 333 million requests a month
    "lambda_requests_per_million": 0.20,
    "lambda_arm64_gb_second": 0.0000133334,  # first 7.5 billion GB-s a month
    "ddb_read_request_unit_per_million": 0.125,  # on-demand
    "ddb_write_request_unit_per_million": 0.625,  # on-demand
    "ddb_storage_gb_month": 0.25,  # standard table class, after the free 25 GB
    "ddb_pitr_gb_month": 0.20,  # continuous backups (the stack enables PITR)
    "s3_put_copy_post_list_per_thousand": 0.005,
    "s3_get_head_per_thousand": 0.0004,
    "s3_storage_gb_month": 0.023,
    "cloudwatch_alarm_month": 0.10,
    "eventbridge_custom_events_per_million": 1.00,
}
S3_CLASS_A = {"PutObject", "CopyObject", "CompleteMultipartUpload", "CreateMultipartUpload", "UploadPart",
              "ListObjectsV2", "ListObjects"}
S3_CLASS_B = {"GetObject", "HeadObject"}

# Routes a tracking client calls most, by scenario label of bench/request_budget.py.
COMMON = [
    "runs/create", "runs/log-batch 200 metrics", "runs/log-batch 1,000 points of 1 metric", "runs/log-metric",
    "runs/log-parameter", "runs/set-tag", "runs/update", "runs/get (100 params, 200 metrics)",
    "experiments/get-by-name",
    "metrics/get-history (1,000 points)", "runs/search (1 run)", "registered-models/alias (get-by-alias)",
    "model-versions/get", "model-versions/create", "artifacts/presigned-download-url", "mlflow-artifacts upload (1 KB)",
    "mlflow-artifacts download (1 KB)",
]


def route_cost(row, cpu_ms: float, memory_mb: int, ddb_rtt_ms: float, s3_rtt_ms: float) -> dict:
    """USD per million calls of one route, by service."""
    p = PRICES
    s3_trips = min(row.s3, row.waves)
    ddb_trips = max(0, row.waves - s3_trips)
    duration_ms = math.ceil(cpu_ms + ddb_trips * ddb_rtt_ms + s3_trips * s3_rtt_ms)  # billed per 1 ms
    a = sum(n for op, n in row.operations.items() if op in S3_CLASS_A)
    b = sum(n for op, n in row.operations.items() if op in S3_CLASS_B)
    cost = {
        "api": p["api_gateway_rest_per_million"],
        "lambda": p["lambda_requests_per_million"]
        + duration_ms / 1000 * memory_mb / 1024 * p["lambda_arm64_gb_second"] * 1e6,
        "dynamodb": row.read_units * p["ddb_read_request_unit_per_million"]
        + row.write_units * p["ddb_write_request_unit_per_million"],
        "s3": a * p["s3_put_copy_post_list_per_thousand"] * 1000 + b * p["s3_get_head_per_thousand"] * 1000,
    }
    cost["total"] = sum(cost.values())
    cost["duration_ms"] = duration_ms
    return cost


def at_rest(ddb_gb: float, s3_gb: float, alarms: int = 5) -> dict:
    p = PRICES
    return {"DynamoDB storage": ddb_gb * p["ddb_storage_gb_month"], "DynamoDB PITR": ddb_gb * p["ddb_pitr_gb_month"],
            "S3 storage": s3_gb * p["s3_storage_gb_month"],
            f"CloudWatch alarms ({alarms})": alarms * p["cloudwatch_alarm_month"],
            "API Gateway, Lambda, EventBridge idle": 0.0}


def measure(n_versions: int = 3) -> tuple[dict, dict]:
    """Rows of the request budget and warm CPU per scenario (small data, where counts do not depend
    on size)."""
    from bench import request_budget, warm_cpu

    rows = {r.label: r for r in request_budget.run_all(run_sizes=(), n_versions=n_versions, latency=0.03)}
    cpu = {label: c for label, c, _, _ in warm_cpu.run_all(run_sizes=(), repeat=10, n_versions=n_versions)}
    return rows, cpu


def markdown(rows: dict, cpu: dict, args) -> str:
    out = [f"Prices: us-east-1 on-demand, {PRICES_AS_OF}. Lambda arm64 at {args.memory_mb} MB; billed duration = "
           f"warm CPU + {args.ddb_rtt_ms:g} ms per DynamoDB round trip + {args.s3_rtt_ms:g} ms per S3 round trip "
           "(assumed in-region latencies). The authorizer's result is cached 60 s per token, so its cost per "
           "call is negligible at volume (one Lambda call + one GetItem per token per minute).", "",
           "| route (scenario) | billed ms | API GW | Lambda | DynamoDB | S3 | **USD per million calls** |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for label in COMMON:
        if label not in rows or label not in cpu:
            continue
        c = route_cost(rows[label], cpu[label], args.memory_mb, args.ddb_rtt_ms, args.s3_rtt_ms)
        out.append(f"| {label} | {c['duration_ms']} | {c['api']:.2f} | {c['lambda']:.2f} | {c['dynamodb']:.2f} | "
                   f"{c['s3']:.2f} | **{c['total']:.2f}** |")
    rest = at_rest(args.ddb_gb, args.s3_gb)
    out += ["", f"At rest, a month ({args.ddb_gb:g} GB in DynamoDB, {args.s3_gb:g} GB of artifacts in S3):", "",
            "| item | USD / month |", "|---|---:|"]
    out += [f"| {k} | {v:.2f} |" for k, v in rest.items()]
    out.append(f"| **total** | **{sum(rest.values()):.2f}** |")
    out += ["", "Unit prices used: " + ", ".join(f"{k} ${v:g}" for k, v in PRICES.items())]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory-mb", type=int, default=1024, help="API function memory (infra default 1024)")
    parser.add_argument("--ddb-rtt-ms", type=float, default=8.0)
    parser.add_argument("--s3-rtt-ms", type=float, default=20.0)
    parser.add_argument("--ddb-gb", type=float, default=1.0, help="table size for the at-rest figure")
    parser.add_argument("--s3-gb", type=float, default=50.0, help="artifact bytes for the at-rest figure")
    args = parser.parse_args(argv)
    rows, cpu = measure()
    print(markdown(rows, cpu, args))


if __name__ == "__main__":
    main()
