"""Cold start: the first request of each request-path function (init + first invoke), as Lambda
serves it, and the deployment package's size.

    python -m bench.cold_start                      # 7 cold starts per function and way, + package size
    python -m bench.cold_start --repeat 15 --no-package

Each cold start is a fresh interpreter that imports `functions.<name>` (Lambda's init phase) and
calls its handler once with a real API Gateway event (the first invoke): the authorizer checks a
token, tracking gets a run, registry gets a model version, artifacts takes a small upload (and,
in a second row, hands out a presigned upload URL: a DynamoDB read as well). AWS is a moto server
in this process, seeded through the handlers themselves (its answers take a few ms of wall time,
which CPU time does not count).

Three ways of starting, side by side:
- **as shipped**: what functions/<name>.py does at import (it creates the AWS client every request
  of the function needs: the init phase); the rest happens on the first request. Init + first
  invoke is the latency of a request that meets a cold start; init alone is what an environment
  Lambda initialises ahead of requests takes off the request path.
- **without bytecode**: the same, from a copy of the code where no bytecode exists or can be
  written, as Lambda runs an asset built without a Python 3.12 at hand.
- **SnapStart**: Lambda runs the init once, at publish time, snapshots it, and restores it on a
  cold start; the init can also prime what requests load later. Measured: the first invoke after
  an init that also imported every route module of the function and created all its clients, in
  the same process (the restored state, no connections yet). Not measurable here and to be added:
  the restore itself (its `Restore Duration` appears in the function's REPORT log line in AWS).

Times are CPU time (process_time) of the interpreter: on a shared machine wall time mostly
measures the neighbours, and even CPU time grows when they compete for caches and cores. Each cell
is the best of N cold starts (like timeit, the run least disturbed; its init and first invoke come
from that one run), the median in brackets. Not included: the interpreter's own start, Lambda's
runtime bootstrap and TLS to AWS (the moto server is plain HTTP)."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 300
PACKAGE_TARGET_MB = 5.0
FIRST_REQUESTS = {"authorizer": "a token (GetItem, last-use stamp)", "tracking": "get-run",
                  "registry": "get-model-version", "artifacts": "upload a file (PutObject)",
                  "artifacts-presign": "presigned upload URL (GetItem + presign)",
                  "ui": "the web UI's sign-in page (no cookie yet: no AWS call)"}
FUNCTIONS = tuple(FIRST_REQUESTS)
WAYS = ("shipped", "uncompiled", "primed")
GROUPS = {  # import time per origin (python -X importtime, self times)
    "AWS SDK": ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil"),
    "powertools": ("aws_lambda_powertools",),
    "pydantic": ("pydantic", "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions"),
    "mlreg": ("functions", "shared"),
}

# One cold start, printed as JSON. "primed": init also imports the route modules and creates all clients.
CHILD = r"""
import importlib, json, sys, time
name, way, event_file = sys.argv[1:4]
name = name.split("-")[0]  # artifacts-presign: the artifacts function
event = json.load(open(event_file))
cpu = time.process_time
c0 = cpu()
module = importlib.import_module("functions." + name)
if way == "primed":
    from shared import routes
    for handler in {r.handler.split(":")[0] for r in routes.routes_of(name)} or {"shared.projects"}:
        importlib.import_module(handler)
    from shared import db
    db.client()
    if name in ("artifacts", "registry"):
        from shared.artifacts import store
        store.client()
    if name == "registry":
        from shared.registry import packages
        packages.client()
c1 = cpu()
result = module.handler(event, None)
c2 = cpu()
ok = "policyDocument" in result if name == "authorizer" else result.get("statusCode") == 200
if not ok:
    sys.exit("first invoke failed: " + json.dumps(result)[:500])
pydantic_models = sorted(m for m, mod in sys.modules.items() if m.startswith("shared.") and "BaseModel" in vars(mod))
print(json.dumps({"init": c1 - c0, "invoke": c2 - c1, "pydantic_modules": pydantic_models}))
"""


@dataclass
class Start:
    init_cpu: float
    invoke_cpu: float

    @property
    def first_request_cpu(self) -> float:
        return self.init_cpu + self.invoke_cpu


class LocalAws:
    """A moto server with the table and bucket, seeded through the handlers (mlreg.gateway)."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                    "MLREG_DYNAMODB_ENDPOINT": f"http://{host}:{port}", "MLREG_S3_ENDPOINT": f"http://{host}:{port}",
                    "MLREG_TABLE": "mlreg-bench", "MLREG_BUCKET": "mlreg-bench", "MLREG_PAGE_TOKEN_KEY": "bench",
                    "POWERTOOLS_METRICS_DISABLED": "true", "MLREG_ENV": "bench"}
        os.environ.update(self.env)
        import boto3

        from shared import db, projects
        from shared import table as table_def
        from shared.routes import Role

        db.client().create_table(**table_def.create_table_kwargs(self.env["MLREG_TABLE"]))
        boto3.client("s3", endpoint_url=self.env["MLREG_S3_ENDPOINT"]).create_bucket(Bucket=self.env["MLREG_BUCKET"])
        projects.create_project("bench", "cold start bench")
        self.token = projects.create_token("bench", Role.WRITE, name="bench")

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        from mlreg import gateway

        data = json.dumps(body).encode() if body is not None else b""
        response = gateway.handle(method, f"/projects/bench{path}", self.headers(), data)
        assert response["statusCode"] == 200, response
        return json.loads(response["body"] or "{}")

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}", "Host": "bench.execute-api.us-east-1.amazonaws.com",
                "Content-Type": "application/json"}

    def first_requests(self) -> dict[str, dict]:
        """One typical first request per function, as the proxy event (or authorizer event) Lambda gets."""
        from mlreg import gateway
        from shared import routes

        api = "/api/2.0/mlflow"
        experiment = self.call("POST", f"{api}/experiments/create", {"name": "cold"})["experiment_id"]
        run = self.call("POST", f"{api}/runs/create", {"experiment_id": experiment})["run"]["info"]["run_id"]
        self.call("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/model/MLmodel", {})
        self.call("POST", f"{api}/registered-models/create", {"name": "cold"})
        self.call("POST", f"{api}/model-versions/create", {"name": "cold", "source": f"runs:/{run}/model", "run_id": run})

        def event(method: str, path: str, query: str = "", body: dict | None = None) -> dict:
            full = f"/projects/bench{path}"
            route, params = routes.match(method, full.rstrip("/"))
            data = json.dumps(body).encode() if body else b""
            proxy = gateway.build_event(method, full, query, self.headers(), data, route, params, "127.0.0.1")
            if route.auth != routes.PUBLIC:  # the UI's page and sign-in have no authorizer
                proxy["requestContext"]["authorizer"] = gateway.authorize(proxy)
            return proxy

        get_run = event("GET", f"{api}/runs/get", f"run_id={run}")
        return {
            "authorizer": gateway.authorizer_event(get_run),
            "tracking": get_run,
            "registry": event("GET", f"{api}/model-versions/get", "name=cold&version=1"),
            "artifacts": event("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/a.txt",
                               body={"small": "file"}),
            "artifacts-presign": event("POST", f"{api}/artifacts/presigned-upload-url",
                                       body={"run_id": run, "path": "b.bin"}),
            "ui": event("GET", "/"),  # the sign-in page (no session yet)
        }

    def stop(self) -> None:
        self.server.stop()


def cold_start(name: str, way: str, event_file: Path, env: dict, code_dir: Path = ROOT) -> tuple[Start, list[str]]:
    out = subprocess.run([sys.executable, "-c", CHILD, name, way, str(event_file)], cwd=code_dir, env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{name} ({way}): {out.stderr.strip()[-2000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Start(data["init"], data["invoke"]), data["pydantic_modules"]


def without_bytecode(target: Path) -> Path:
    """The asset's Python code as an asset without bytecode holds it (sources and the locked
    distributions, from this interpreter's installation), to be run where no bytecode can be written."""
    import importlib.metadata
    import shutil

    from infra import package

    files = [(package.ROOT / f, target / f) for f in package.source_files()]
    for pin in package.pins():
        dist = importlib.metadata.distribution(pin.name)
        files += [(Path(dist.locate_file(f)), target / f) for f in dist.files or []
                  if not {"__pycache__", "bin", ".."} & set(f.parts) and ".dist-info" not in str(f)
                  and f.suffix != ".pyc"]
    for source, dest in files:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
    package.trim_sdk(target)
    return target


def shipped_sdk(target: Path) -> Path:
    """The AWS SDK as the asset ships it (its data cut by infra/package.py's trim_sdk), from this
    interpreter's installation, with bytecode: put before the installed one on the path."""
    import shutil

    import boto3
    import botocore

    from infra import package

    for module in (boto3, botocore):
        shutil.copytree(Path(module.__file__).parent, target / module.__name__,
                        ignore=shutil.ignore_patterns("__pycache__"))
    package.trim_sdk(target)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(target)], check=True)
    return target


def import_groups(name: str, event_file: Path, env: dict) -> dict[str, float]:
    """Seconds of import (self time) per origin in one shipped cold start, from `python -X importtime`."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", CHILD, name, "shipped", str(event_file)],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    totals = dict.fromkeys([*GROUPS, "other"], 0.0)
    # Lines come children first, indented by depth: a module's time (stdlib ones included) counts for
    # the nearest grouped module that imported it, or itself.
    pending: list[tuple[int, float, str | None]] = []  # (depth, self seconds, own group) awaiting a parent
    for self_us, indent, module in re.findall(r"import time:\s+(\d+) \|\s+\d+ \|( *)(\S+)", out.stderr):
        depth, own = len(indent), _group(module)
        children = [p for p in pending if p[0] > depth]
        pending = [p for p in pending if p[0] <= depth]
        for _, seconds, group in children:
            totals[group or own or "other"] += seconds
        pending.append((depth, int(self_us) / 1e6, own))
    for _, seconds, group in pending:
        totals[group or "other"] += seconds
    return totals


def least_import_times(name: str, event_file: Path, env: dict, runs: int = 3) -> dict[str, float]:
    """Per origin, the least of a few runs: importtime's figures are wall time."""
    found = [import_groups(name, event_file, env) for _ in range(runs)]
    return {group: min(f[group] for f in found) for group in found[0]}


def _group(module: str) -> str | None:
    top = module.split(".")[0]
    return next((g for g, tops in GROUPS.items() if top in tops), None)


def measure(repeat: int) -> tuple[dict, dict, dict]:
    """({(function, way): [Start]}, {function: import seconds per origin}, {function: pydantic modules})."""
    aws = LocalAws()
    try:
        events = aws.first_requests()
        starts: dict = {}
        models: dict = {}
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, **aws.env, "PYTHONDONTWRITEBYTECODE": "0",
                   "PYTHONPATH": str(shipped_sdk(Path(tmp) / "sdk"))}
            sources = without_bytecode(Path(tmp) / "sources")
            uncompiled_env = {**env, "PYTHONPATH": str(sources), "PYTHONDONTWRITEBYTECODE": "1"}
            files = {}
            for name, event in events.items():
                files[name] = Path(tmp) / f"{name}.json"
                files[name].write_text(json.dumps(event))
                cold_start(name, "shipped", files[name], env)  # bytecode cache warm, as in the runtime's own files
            for _ in range(repeat):  # interleaved: a slow moment of the machine hits every column alike
                for name in FUNCTIONS:
                    for way in WAYS:
                        start, models[name] = (cold_start(name, way, files[name], uncompiled_env, sources)
                                               if way == "uncompiled" else cold_start(name, way, files[name], env))
                        starts.setdefault((name, way), []).append(start)
            groups = {name: least_import_times(name, files[name], env) for name in FUNCTIONS}
        return starts, groups, models
    finally:
        aws.stop()


def _best(starts: list[Start]) -> Start:
    """The cold start least disturbed by the machine's other work (as timeit takes the minimum)."""
    return min(starts, key=lambda s: s.first_request_cpu)


def _median_ms(starts: list[Start]) -> float:
    return statistics.median(s.first_request_cpu for s in starts) * 1000


def markdown(starts: dict, groups: dict, models: dict, package: tuple[float, float, str] | None) -> str:
    out = ["| function: first request | init (clients created) | + first invoke | **= first request** (median) | "
           "without bytecode in the asset | SnapStart: primed init (in the snapshot) | first invoke after restore | "
           f"target <= {TARGET_MS} ms |",
           "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name in FUNCTIONS:
        shipped, uncompiled, primed = (_best(starts[(name, way)]) for way in WAYS)
        first = shipped.first_request_cpu * 1000
        out.append(f"| {name}: {FIRST_REQUESTS[name]} | {shipped.init_cpu * 1000:.0f} | {shipped.invoke_cpu * 1000:.0f} "
                   f"| **{first:.0f}** ({_median_ms(starts[(name, 'shipped')]):.0f}) | "
                   f"{uncompiled.first_request_cpu * 1000:.0f} ({_median_ms(starts[(name, 'uncompiled')]):.0f}) | "
                   f"{primed.init_cpu * 1000:.0f} | restore + {primed.invoke_cpu * 1000:.0f} | "
                   f"{'met' if round(first) <= TARGET_MS else '**not met**'} |")
    out += ["", "| function | imports of the shipped first request (ms, importtime, least of 3): " + " | ".join(GROUPS) + " | other | "
            "modules with pydantic models |", "|---|" + "---:|" * (len(GROUPS) + 1) + "---|"]
    for name in FUNCTIONS:
        cells = " | ".join(f"{groups[name][g] * 1000:.0f}" for g in [*GROUPS, "other"])
        out.append(f"| {name} | {cells} | {', '.join(models[name]) or 'none'} |")
    if package:
        unzipped, zipped, how = package
        out += ["", "| deployment package | unzipped (MB) | zipped (MB) | target < 5 MB |", "|---|---:|---:|---|",
                f"| {how} | {unzipped:.1f} | {zipped:.1f} | "
                f"{'met' if zipped < PACKAGE_TARGET_MB else '**not met**'} (zipped) |"]
    return "\n".join(out)


def package_size() -> tuple[float, float, str]:
    """(unzipped MB, zipped MB, how it was built): the asset `cdk synth` builds."""
    from infra import package

    with tempfile.TemporaryDirectory() as tmp:
        target = package.build(Path(tmp) / "asset")
        unzipped = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
        archive = Path(tmp) / "asset.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(target.rglob("*")):
                if f.is_file():
                    z.write(f, f.relative_to(target))
        compiler = package.bytecode_python()
        bytecode = f"bytecode for Python {compiler[1]}" if compiler else "no bytecode"
        return (unzipped / 1e6, archive.stat().st_size / 1e6,
                f"infra/package.py ({package.LOCK_FILE}, {package.PLATFORM}, {bytecode})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-package", action="store_true", help="skip building the deployment package")
    args = parser.parse_args(argv)
    started = time.time()
    starts, groups, models = measure(args.repeat)
    print(markdown(starts, groups, models, None if args.no_package else package_size()))
    load = os.getloadavg()[0]
    print(f"\n(CPU ms: the best of {args.repeat} cold starts per cell, the median in brackets; python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f}; bench took "
          f"{time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
