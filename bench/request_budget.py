"""DynamoDB and S3 requests per route, counted with botocore's event hooks on emulated AWS.

    python -m bench.request_budget            # table of requests per tracking route

Deterministic: the same code path makes the same calls, so the suite can assert budgets."""

from __future__ import annotations

import json
import os
from collections import Counter
from contextlib import contextmanager

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("MLREG_TABLE", "mlreg-bench")
os.environ.setdefault("MLREG_BUCKET", "mlreg-bench")


class RequestCounter:
    """Counts AWS API calls made through the shared DynamoDB client."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()

    def __call__(self, event_name: str, **_) -> None:
        self.calls[event_name.split(".")[-1]] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class Api:
    """Calls route handlers in-process with API Gateway events, as the deployed API would."""

    def __init__(self, project: str = "bench") -> None:
        from shared import db

        self.project = project
        self.counter = RequestCounter()
        db.client().meta.events.register("before-call.dynamodb", self.counter)

    def call(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> dict:
        from mlreg.gateway import build_event
        from shared import routes
        from shared.http import make_dispatcher

        full = f"/projects/{self.project}{path}"
        route, params = routes.match(method, full)
        assert route, path
        qs = "&".join(f"{k}={v}" for k, vs in (query or {}).items() for v in (vs if isinstance(vs, list) else [vs]))
        event = build_event(method, full, qs, {"Host": "bench"}, json.dumps(body).encode() if body else b"", route,
                            params, "127.0.0.1")
        event["requestContext"]["authorizer"] = {"project": self.project, "role": "admin", "token_id": "bench"}
        response = make_dispatcher(route.function)(event, None)
        assert response["statusCode"] == 200, (path, response["body"])
        return json.loads(response["body"])

    @contextmanager
    def count(self):
        self.counter.calls.clear()
        yield self.counter


@contextmanager
def emulated_aws():
    import boto3
    from moto import mock_aws

    from shared import db
    from shared import table as table_def

    with mock_aws():
        db.client.cache_clear()
        boto3.client("dynamodb").create_table(**table_def.create_table_kwargs(os.environ["MLREG_TABLE"]))
        boto3.client("s3").create_bucket(Bucket=os.environ["MLREG_BUCKET"])
        yield
        db.client.cache_clear()


def tracking_budget() -> list[tuple[str, int, dict]]:
    """(route, DynamoDB requests, by operation) for each tracking route on a run with 100 params,
    200 metrics and history."""
    from shared.projects import create_project

    rows = []
    create_project("bench")
    api = Api()
    A = "/api/2.0/mlflow"

    def measure(label, method, path, body=None, query=None):
        with api.count() as c:
            result = api.call(method, path, body, query)
        rows.append((label, c.total, dict(c.calls)))
        return result

    exp = measure("experiments/create", "POST", f"{A}/experiments/create", {"name": "bench"})["experiment_id"]
    measure("experiments/get", "GET", f"{A}/experiments/get", query={"experiment_id": exp})
    measure("experiments/get-by-name", "GET", f"{A}/experiments/get-by-name", query={"experiment_name": "bench"})
    measure("experiments/search", "POST", f"{A}/experiments/search", {"max_results": 10})
    measure("experiments/update", "POST", f"{A}/experiments/update", {"experiment_id": exp, "new_name": "bench2"})
    measure("experiments/set-experiment-tag", "POST", f"{A}/experiments/set-experiment-tag",
            {"experiment_id": exp, "key": "k", "value": "v"})
    measure("experiments/delete-experiment-tag", "POST", f"{A}/experiments/delete-experiment-tag",
            {"experiment_id": exp, "key": "k"})
    run = measure("runs/create", "POST", f"{A}/runs/create", {"experiment_id": exp, "start_time": 1})["run"]["info"]["run_id"]
    measure("runs/log-batch (100 params)", "POST", f"{A}/runs/log-batch",
            {"run_id": run, "params": [{"key": f"p{i}", "value": "v"} for i in range(100)]})
    measure("runs/log-batch (200 metrics x 5 steps)", "POST", f"{A}/runs/log-batch",
            {"run_id": run, "metrics": [{"key": f"m{i % 200}", "value": i, "timestamp": 1, "step": i // 200}
                                        for i in range(1000)]})
    measure("runs/log-metric", "POST", f"{A}/runs/log-metric", {"run_id": run, "key": "m0", "value": 1, "timestamp": 2, "step": 9})
    measure("runs/log-parameter", "POST", f"{A}/runs/log-parameter", {"run_id": run, "key": "solo", "value": "1"})
    measure("runs/set-tag", "POST", f"{A}/runs/set-tag", {"run_id": run, "key": "t", "value": "v"})
    measure("runs/delete-tag", "POST", f"{A}/runs/delete-tag", {"run_id": run, "key": "t"})
    measure("runs/log-inputs", "POST", f"{A}/runs/log-inputs",
            {"run_id": run, "datasets": [{"dataset": {"name": "d", "digest": "x", "source_type": "local", "source": "{}"}}]})
    measure("runs/get (100 params, 200 metrics)", "GET", f"{A}/runs/get", query={"run_id": run})
    measure("runs/update", "POST", f"{A}/runs/update", {"run_id": run, "status": "FINISHED", "end_time": 5})
    measure("metrics/get-history", "GET", f"{A}/metrics/get-history", query={"run_id": run, "metric_key": "m0"})
    measure("metrics/get-history-bulk-interval", "GET", f"{A}/metrics/get-history-bulk-interval",
            query={"run_ids": run, "metric_key": "m0"})
    measure("runs/search (1 run)", "POST", f"{A}/runs/search", {"experiment_ids": [exp], "max_results": 100})
    measure("runs/delete", "POST", f"{A}/runs/delete", {"run_id": run})
    measure("runs/restore", "POST", f"{A}/runs/restore", {"run_id": run})
    measure("experiments/delete", "POST", f"{A}/experiments/delete", {"experiment_id": exp})
    measure("experiments/restore", "POST", f"{A}/experiments/restore", {"experiment_id": exp})
    return rows


def main() -> None:
    with emulated_aws():
        rows = tracking_budget()
    print("| route | DynamoDB requests | by operation |\n|---|---|---|")
    for label, total, calls in rows:
        print(f"| {label} | {total} | {', '.join(f'{k} {v}' for k, v in sorted(calls.items()))} |")
    print("(plus 1 GetItem in the authorizer per uncached request)")


if __name__ == "__main__":
    main()
