"""End to end: one workload through the real MLflow client against `mlreg serve` and, in the same run,
against the reference `mlflow server` (SQLite, --serve-artifacts), both on this machine.

    python -m bench.e2e --sizes 2000,5000 --settle 30     # issue 15's workload (~5 min on 2 cores)
    python -m bench.e2e --sizes 2000,5000 --settle 30 --rounds 2   # twice, in turns (~11 min)
    python -m bench.e2e --sizes 50 --artifact-mb 0        # a quick look

Reports the median of each step per server and the ratio mlreg / reference. Sizes are configurable;
the command prints what it ran."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # answering, even if with an error
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


@dataclass
class Server:
    name: str
    uri: str
    token: str | None
    proc: subprocess.Popen

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_mlreg(work: Path, extra: list[str] = ()) -> Server:
    port, data = free_port(), work / "mlreg-data"
    log = work / "mlreg.log"
    proc = subprocess.Popen([sys.executable, "-m", "mlreg.cli", "serve", "--port", str(port), "--data-dir", str(data),
                             *extra], stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    _wait(f"http://127.0.0.1:{port}/", proc, log)
    while not (data / "admin-token").exists():
        time.sleep(0.1)
    token = (data / "admin-token").read_text().strip()
    return Server("mlreg", f"http://127.0.0.1:{port}/projects/default", token, proc)


def start_reference(work: Path) -> Server:
    port, log = free_port(), work / "mlflow.log"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
                             "--artifacts-destination", str(work / "mlflow-artifacts"), "--serve-artifacts"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=work)
    _wait(f"http://127.0.0.1:{port}/health", proc, log, timeout=180)
    return Server("mlflow server", f"http://127.0.0.1:{port}", None, proc)


@dataclass
class Results:
    steps: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # step -> server -> seconds
    rates: dict[str, int] = field(default_factory=dict)  # step -> items done, for a throughput row
    written: dict[tuple[str, str], int] = field(default_factory=dict)  # samples already in --samples' file

    def add(self, step: str, server: str, seconds: float, rate: int | None = None) -> None:
        self.steps.setdefault(step, {}).setdefault(server, []).append(seconds)
        if rate:
            self.rates[step] = rate


def timed(results: Results, step: str, server: str, fn, repeat: int = 1):
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        results.add(step, server, time.perf_counter() - t0)
    return out


def workload(server: Server, args, results: Results, work: Path) -> None:
    """The same calls against either server, through the MLflow client."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    os.environ["MLFLOW_TRACKING_URI"] = server.uri
    if server.token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = server.token
    else:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    mlflow.set_tracking_uri(server.uri)
    client = MlflowClient(server.uri)
    name = server.name
    now = int(time.time() * 1000)

    def new_run(experiment_id: str, i: int) -> str:
        run = client.create_run(experiment_id, start_time=now + i)
        client.log_batch(run.info.run_id, metrics=[Metric("acc", ((i * 7919) % 1000) / 1000, now, 0),
                                                   Metric("loss", 1 / (i + 1), now, 0)],
                         params=[Param(f"p{j}", str((i + j) % 5)) for j in range(3)],
                         tags=[RunTag("team", "xyzw"[i % 4])])
        return run.info.run_id

    # 1. one run with log_batch: create-run and log-batch latency, one at a time
    exp = client.create_experiment(f"e2e-latency-{time.time_ns()}")
    for i in range(args.latency_runs):
        run = timed(results, "create_run", name, lambda: client.create_run(exp, start_time=now + i))
        timed(results, "log_batch (10 params, 10 metrics)", name, lambda: client.log_batch(
            run.info.run_id, metrics=[Metric(f"m{j}", j, now, 0) for j in range(10)],
            params=[Param(f"p{j}", "v") for j in range(10)]))
        timed(results, "get_run", name, lambda: client.get_run(run.info.run_id))
    run_id = run.info.run_id

    # 2. search_runs over experiments of each size (issue 15's queries), built by 8 logging threads
    for n in args.sizes:
        sexp = client.create_experiment(f"e2e-search-{n}-{time.time_ns()}")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda i: new_run(sexp, i), range(n)))
        results.add(f"{args.threads} threads logging runs (create_run + log_batch), {n:,} runs", name,
                    time.perf_counter() - t0, rate=n)
        queries = [
            ("filter params.p0 = '3'", dict(filter_string="params.p0 = '3'"), sum(1 for i in range(n) if i % 5 == 3)),
            ("filter tags.team = 'x'", dict(filter_string="tags.team = 'x'"), sum(1 for i in range(n) if i % 4 == 0)),
            ("metrics.acc > 0.9 order by acc", dict(filter_string="metrics.acc > 0.9", order_by=["metrics.acc DESC"]),
             sum(1 for i in range(n) if ((i * 7919) % 1000) / 1000 > 0.9)),
            ("default order", {}, n),
        ]
        for _ in range(args.repeat):  # in turns: a passing stall (work left by the build) meets every query alike
            for label, query, expected in queries:
                found = timed(results, f"search_runs {n:,} runs: {label}, page of 100", name,
                              lambda: client.search_runs([sexp], max_results=100, **query))
                assert len(found) == min(100, expected), (name, label, len(found))

        def page_through():
            token, total = None, 0
            while True:
                page = client.search_runs([sexp], max_results=1000, page_token=token)
                total += len(page)
                token = page.token
                if not token:
                    return total

        total = timed(results, f"search_runs {n:,} runs: page through, pages of 1,000", name, page_through,
                      repeat=args.repeat)
        assert total == n, (name, total)

    # 3. registry (the version's files: a run artifact, since mlreg copies them into the package)
    src = work / f"model-{name.replace(' ', '-')}"
    src.mkdir(exist_ok=True)
    (src / "MLmodel").write_text("flavors: {}\n")
    client.log_artifacts(run_id, str(src), "model")
    latency = max(args.repeat, args.latency_runs)  # single requests of a few ms: as many samples as create_run
    for _ in range(latency):  # each a new model (and its default experiment); the last gets the versions
        model = f"e2e-model-{time.time_ns()}"
        timed(results, "create_registered_model", name, lambda: client.create_registered_model(model))
    for _ in range(latency):
        mv = timed(results, "create_model_version", name,
                   lambda: client.create_model_version(model, f"runs:/{run_id}/model", run_id))
    timed(results, "get_model_version", name, lambda: client.get_model_version(model, mv.version), repeat=latency)
    client.set_registered_model_alias(model, "champion", mv.version)
    timed(results, "get_model_version_by_alias", name, lambda: client.get_model_version_by_alias(model, "champion"),
          repeat=latency)
    timed(results, "search_model_versions name=", name, lambda: client.search_model_versions(f"name='{model}'"),
          repeat=latency)

    # 4. artifacts: upload and download a file of each size (the 1 and 20 MB, and 10)
    for mb in args.artifact_mb:
        blob = work / f"blob-{mb}.bin"
        if not blob.exists():
            blob.write_bytes(os.urandom(mb * 1024 * 1024))
        for i in range(max(3, args.repeat)):
            timed(results, f"log_artifact {mb} MB", name, lambda: client.log_artifact(run_id, str(blob), f"up{mb}-{i}"))
            out = work / f"down-{name.replace(' ', '-')}-{mb}-{i}"
            timed(results, f"download_artifacts {mb} MB", name,
                  lambda: client.download_artifacts(run_id, f"up{mb}-{i}/{blob.name}", str(out)))

    # 5. a metric history: log in batches of 1,000, read back whole (last: the emulator slows
    #    down as its table grows, and 20,000 points are most of it)
    history_run = client.create_run(exp).info.run_id
    for start in range(0, args.history, 1000):
        timed(results, "log_batch 1,000 history points", name, lambda: client.log_batch(
            history_run,
            metrics=[Metric("loss", 1 / (s + 1), now + s, s) for s in range(start, min(start + 1000, args.history))]))
    got = timed(results, f"get_metric_history ({args.history:,} points)", name,
                lambda: client.get_metric_history(history_run, "loss"), repeat=3)
    assert len(got) == args.history, (name, len(got))


def _write_samples(path: Path, results: Results, server: str, round_: int) -> None:
    """The server's samples taken since the last call, appended as JSON lines."""
    with open(path, "a") as out:
        for step, by_server in results.steps.items():
            samples = by_server.get(server, [])
            written = results.written.get((step, server), 0)
            for seconds in samples[written:]:
                out.write(json.dumps({"step": step, "server": server, "round": round_, "ms": seconds * 1000}) + "\n")
            results.written[(step, server)] = len(samples)


def markdown(results: Results) -> str:
    out = ["| step | mlreg serve (ms, median) | mlflow server (ms, median) | ratio mlreg / reference | n |",
           "|---|---:|---:|---:|---:|"]
    for step, by_server in results.steps.items():
        a, b = (statistics.median(by_server.get(s, [float("nan")])) * 1000 for s in ("mlreg", "mlflow server"))
        out.append(f"| {step} | {a:,.1f} | {b:,.1f} | {a / b:.2f} | {len(by_server.get('mlreg', []))} |")
        if step in results.rates:  # throughput: higher is better, so the ratio is reference / mlreg
            n = results.rates[step]
            out.append(f"| {step}: runs/s | {n / a * 1000:,.1f} | {n / b * 1000:,.1f} | {b / a:.2f} (higher: ahead) "
                       f"| {len(by_server.get('mlreg', []))} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="500,5000", help="experiment sizes for search_runs, comma-separated "
                        "(both servers build each experiment through the client: 500,5000 takes ~6 minutes)")
    parser.add_argument("--history", type=int, default=20000, help="metric history points")
    parser.add_argument("--artifact-mb", default="1,10,20", help="artifact sizes, comma-separated (0: none)")
    parser.add_argument("--latency-runs", type=int, default=10,
                        help="runs created one at a time for latency (and registry calls of each kind, at least --repeat)")
    parser.add_argument("--threads", type=int, default=8, help="client threads that build the search experiments")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of both servers, each on fresh data, the "
                        "first server alternating (2: mlreg, reference, reference, mlreg): a drift of the machine's "
                        "speed meets both alike; medians pool the rounds")
    parser.add_argument("--only", choices=("mlreg", "reference"), help="run against one server only")
    parser.add_argument("--samples", type=Path, help="also write every sample (step, server, round, ms) to this "
                        "file, one JSON object a line: a close row's spread and its rounds")
    parser.add_argument("--settle", type=float, default=0, help="seconds to wait after a server starts, before its "
                        "workload (mlflow server's job-runner processes use the CPU for a while after it answers)")
    args = parser.parse_args(argv)
    args.sizes = [int(n) for n in args.sizes.split(",") if n]
    args.artifact_mb = [int(mb) for mb in args.artifact_mb.split(",") if mb and int(mb)]
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    # Files over Lambda's 6 MB payload go to S3 in presigned parts (docs: artifacts); same settings for
    # both servers (the reference's local artifact store falls back to one PUT).
    os.environ.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    os.environ.setdefault("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(5 * 1024 * 1024))
    os.environ.setdefault("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 * 1024 * 1024))
    work = Path(tempfile.mkdtemp(prefix="mlreg-e2e-"))
    results = Results()
    t0 = time.perf_counter()
    try:
        for round_ in range(args.rounds):  # in turns, each on fresh data: mlreg first, then the reference first
            folder = work / f"round-{round_}"
            folder.mkdir()
            for start in (start_mlreg, start_reference)[::1 if round_ % 2 == 0 else -1]:
                if args.only and (args.only == "mlreg") != (start is start_mlreg):
                    continue
                server = start(folder)
                time.sleep(args.settle)
                try:
                    t1 = time.perf_counter()
                    workload(server, args, results, folder)
                    print(f"  {server.name}: {time.perf_counter() - t1:.0f} s", file=sys.stderr)
                finally:
                    server.stop()
                if args.samples:
                    _write_samples(args.samples, results, server.name, round_)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import mlflow

    print(markdown(results))
    print(f"\n(mlflow client {mlflow.__version__}; sizes {args.sizes}, history {args.history:,}, artifact "
          f"{args.artifact_mb} MB, {args.repeat} repeats, {args.rounds} round(s), settle {args.settle:g} s; bench took "
          f"{time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
