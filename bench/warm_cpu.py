"""Warm CPU per route: the handler's own time (what Lambda bills beyond waiting on I/O), with every
AWS call answered instantly from memory.

    python -m bench.warm_cpu                   # every scenario of bench.request_budget, 500-run search
    python -m bench.warm_cpu --runs 500,5000 --repeat 30
    python -m bench.warm_cpu --baseline        # also with a plain boto3 DynamoDB client, same run

Each scenario of bench/request_budget.py first runs once against moto while the raw HTTP responses
are recorded (moto's botocore hook is wrapped). Then moto is switched off and a `before-send` hook
answers each request with its recorded bytes, so botocore still serialises, signs and parses as in
Lambda; the dispatcher (event -> handler -> JSON response) is timed with process_time (all threads),
median of --repeat runs. --baseline also times each scenario with a plain boto3 DynamoDB client
(botocore's parameter validation and response parsing, which shared/db.py's client skips)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict, deque
from contextlib import contextmanager

from bench import request_budget
from bench.harness import PROJECT, Api, build_experiment, emulated_aws

SLOW_LABEL_WORDS = ("runs:",)  # big searches: fewer repeats


class Tape:
    """Raw responses of AWS calls, keyed by operation and request body; replays them in Lambda's
    place of the network."""

    def __init__(self) -> None:
        self.exact: dict[tuple[str, bytes], tuple[int, dict, bytes]] = {}
        self.by_operation: dict[str, deque] = defaultdict(deque)
        self.misses = 0

    @staticmethod
    def _key(event_name: str, request) -> tuple[str, bytes]:
        body = request.body if isinstance(request.body, (bytes, str)) else b""  # streamed uploads: URL only
        body = body.encode() if isinstance(body, str) else body
        return event_name.split(".", 1)[1], f"{request.method} {request.url}".encode() + b"\n" + body

    def record(self, event_name: str, request, status: int, headers: dict, body: bytes) -> None:
        key = self._key(event_name, request)
        self.exact[key] = (status, dict(headers), body)
        self.by_operation[key[0]].append(self.exact[key])

    def answer(self, event_name: str, request, **_):
        from botocore.awsrequest import AWSResponse
        from moto.core.botocore_stubber import MockRawResponse

        key = self._key(event_name, request)
        found = self.exact.get(key)
        if found is None:  # a fresh uuid or timestamp in the request: same operation, recorded answer
            self.misses += 1
            found = self.by_operation[key[0]][0]
        status, headers, body = found
        return AWSResponse(request.url, status, headers, MockRawResponse(body))


@contextmanager
def recording(tape: Tape):
    """moto answers; the tape keeps a copy of each answer."""
    from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse

    original = BotocoreStubber.__call__

    def call(self, event_name, request, **kwargs):
        response = original(self, event_name, request, **kwargs)
        if response is not None:
            body = response.raw.getvalue()
            tape.record(event_name, request, response.status_code, response.headers, body)
            response.raw = MockRawResponse(body)
        return response

    BotocoreStubber.__call__ = call
    try:
        yield
    finally:
        BotocoreStubber.__call__ = original


@contextmanager
def replaying(tape: Tape):
    """moto off; the tape answers every request of the shared/ clients."""
    from moto.core import models

    clients = [fn() for fn in _client_factories()]
    for c in clients:
        c.meta.events.register_first("before-send", tape.answer, unique_id="bench-tape")
    models.botocore_stubber.enabled = False
    try:
        yield
    finally:
        models.botocore_stubber.enabled = True
        for c in clients:
            c.meta.events.unregister("before-send", unique_id="bench-tape")


def _client_factories():
    for name, module in list(sys.modules.items()):
        fn = getattr(module, "client", None) if name.startswith("shared") else None
        if hasattr(fn, "cache_clear"):
            yield fn


@contextmanager
def plain_dynamodb_client():
    """shared/ code talks to DynamoDB through a default boto3 client for the block."""
    from functools import cache

    import boto3

    from shared import db

    ours = db.client
    db.client = cache(lambda: boto3.client("dynamodb"))
    try:
        yield
    finally:
        db.client = ours


class WarmScenarios(request_budget.Scenarios):
    """Same scenarios; measure() records once against moto, then times replays."""

    def __init__(self, api: Api, repeat: int, baseline: bool = False) -> None:
        super().__init__(recorder=None, api=api)
        self.repeat, self.baseline = repeat, baseline
        self.results: list[tuple] = []  # label, CPU ms, wall ms, AWS calls[, CPU ms with a plain client]

    def measure(self, label: str, method: str, path: str, body=None, query=None) -> dict:
        tape = Tape()
        with recording(tape):
            result = self.api.call(method, path, body, query)
        repeat = max(3, self.repeat // 6) if any(w in label for w in SLOW_LABEL_WORDS) else self.repeat
        cpu, wall = self._replays(tape, label, method, path, body, query, repeat)
        row: tuple = (label, cpu, wall, len(tape.exact))
        if self.baseline:
            with plain_dynamodb_client():
                row += (self._replays(tape, label, method, path, body, query, repeat)[0],)
        self.results.append(row)
        return result

    def _replays(self, tape: Tape, label: str, method: str, path: str, body, query, repeat: int) -> tuple[float, float]:
        from shared.http import make_dispatcher

        event, function = self.api.event(method, path, body, query)
        dispatch = make_dispatcher(function)
        cpu, wall = [], []
        with replaying(tape):
            dispatch(event, None)  # first replay warms caches (handler resolution, parsers)
            for _ in range(repeat):
                c0, w0 = time.process_time(), time.perf_counter()
                response = dispatch(event, None)
                cpu.append((time.process_time() - c0) * 1000)
                wall.append((time.perf_counter() - w0) * 1000)
        assert response["statusCode"] < 500, (label, response["body"][:300])
        return statistics.median(cpu), statistics.median(wall)


def run_all(run_sizes: tuple[int, ...] = (500,), repeat: int = 30, n_versions: int = 50,
            baseline: bool = False) -> list[tuple]:
    from shared.projects import create_project

    with emulated_aws():
        create_project(PROJECT)
        s = WarmScenarios(Api(), repeat, baseline)
        request_budget.tracking(s)
        request_budget.logged_models(s)
        if request_budget._route_exists("registry"):
            request_budget.registry(s, n_versions)
        if request_budget._route_exists("artifacts"):
            request_budget.artifacts(s)
        for n in run_sizes:
            request_budget.search(s, n, build_experiment(s.api, f"exp-{n}", n))
    return s.results


def markdown(results: list[tuple]) -> str:
    baseline = len(results[0]) > 4
    out = ["| scenario | handler CPU (ms, median) | wall (ms, median) | distinct AWS responses replayed |"
           + (" with a plain boto3 client (CPU ms) | ratio |" if baseline else ""),
           "|---|---:|---:|---:|" + ("---:|---:|" if baseline else "")]
    for label, cpu, wall, n, *plain in results:
        out.append(f"| {label} | {cpu:.2f} | {wall:.2f} | {n} |"
                   + (f" {plain[0]:.2f} | {cpu / plain[0]:.2f} |" if plain else ""))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="500", help="experiment sizes for search_runs (comma-separated)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--baseline", action="store_true", help="also time a plain boto3 DynamoDB client")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results = run_all(tuple(int(n) for n in args.runs.split(",") if n), args.repeat, args.versions, args.baseline)
    print(markdown(results))
    print(f"\n(process_time of the dispatcher, {args.repeat} repeats (searches over many runs: fewer); "
          f"bench took {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
