"""Cold start: import time of each Lambda function module, and the deployment package's size.

    python -m bench.cold_start                 # import times (median of 5) + package size
    python -m bench.cold_start --repeat 9 --no-package

Import time is `python -c "import functions.<name>"` minus a bare `python -c pass`, each in a fresh
interpreter, median of N, as wall time and as CPU time (user + system: what a busy machine does not
inflate); the first request adds the function's handler and message modules, its boto3 clients, and
the parsing of each of its routes' request messages (built on first use, so this is an upper bound).
The package is built as infra/package.py builds it (Linux arm64 wheels, boto3/botocore left out:
the Lambda runtime has them) and measured unzipped and zipped."""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPORT_TARGET_MS = 300
PACKAGE_TARGET_MB = 5.0


def function_modules() -> list[str]:
    return sorted(p.stem for p in (ROOT / "functions").glob("*.py") if p.stem != "__init__")


def _run(code: str) -> tuple[float, float]:
    """(wall, CPU) seconds of a fresh interpreter running `code`."""
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "PYTHONDONTWRITEBYTECODE": "0"}
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t0, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def first_request_code(name: str) -> str:
    """What the first request adds: the handler modules of the function's routes (resolved lazily),
    the boto3 clients they use (created lazily, no network), and their request messages parsed."""
    from shared import routes

    modules = sorted({r.handler.split(":")[0] for r in routes.routes_of(name)})
    clients = ["shared.db"] + [m for m in ("shared.artifacts.store", "shared.registry.packages")
                               if any(x.startswith(m.rsplit(".", 1)[0]) for x in modules)]
    if name == "authorizer":
        modules, clients = ["shared.projects"], ["shared.db"]
    messages = [f"http._resolve(routes.ROUTES[{i}].message).parse({{}})"
                for i, r in enumerate(routes.ROUTES) if r.function == name and getattr(r, "message", None)]
    first_request = [f"import functions.{name}", *(f"import {m}" for m in modules + clients),
                     *(f"{m}.client()" for m in clients), "from shared import http, routes"]
    # Parsing an empty request is refused (required fields), after building the message's validator.
    return "\n".join(first_request + [f"try: {m}\nexcept Exception: pass" for m in messages])


def import_times(repeat: int = 5) -> dict[str, tuple[float, float, float]]:
    """Milliseconds beyond starting the interpreter: (import of the function module, plus what its
    first request imports, creates and parses; the same in CPU time)."""
    for name in function_modules():  # warm the bytecode cache once
        _run(first_request_code(name))
    bare = [statistics.median(t) for t in zip(*(_run("pass") for _ in range(repeat)))]

    def ms(code: str) -> tuple[float, float]:
        runs = [_run(code) for _ in range(repeat)]
        return tuple((statistics.median(t) - b) * 1000 for t, b in zip(zip(*runs), bare))

    return {name: (ms(f"import functions.{name}")[0], *ms(first_request_code(name))) for name in function_modules()}


def package_size() -> tuple[float, float, str]:
    """(unzipped MB, zipped MB, how it was built)."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "asset"
        try:
            from infra import package

            package.build(target)
            how = "infra/package.py (" + ", ".join(package.RUNTIME_DEPENDENCIES) + f"; {package.PLATFORM})"
        except ImportError:
            deps = ("aws-lambda-powertools", "pydantic", "semver")
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target),
                            "--platform", "manylinux2014_aarch64", "--only-binary=:all:", "--python-version", "3.12",
                            *deps], check=True)
            for name in ("functions", "shared"):
                subprocess.run(["cp", "-r", str(ROOT / name), str(target / name)], check=True)
            how = "pip install --target " + " ".join(deps)
        unzipped = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
        archive = Path(tmp) / "asset.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(target.rglob("*")):
                if f.is_file() and "__pycache__" not in f.parts:
                    z.write(f, f.relative_to(target))
        return unzipped / 1e6, archive.stat().st_size / 1e6, how


def markdown(times: dict[str, tuple[float, float, float]], package: tuple[float, float, str] | None) -> str:
    out = ["| function module | import (ms, median) | first request: + handler and message modules, boto3 clients, "
           "messages parsed (ms) | the same, CPU (ms) | target < 300 ms |", "|---|---:|---:|---:|---|"]
    out += [f"| functions/{n}.py | {a:.0f} | {b:.0f} | {c:.0f} | {'met' if b < IMPORT_TARGET_MS else '**not met**'} |"
            for n, (a, b, c) in times.items()]
    if package:
        unzipped, zipped, how = package
        out += ["", "| deployment package | unzipped (MB) | zipped (MB) | target < 5 MB |", "|---|---:|---:|---|",
                f"| {how} | {unzipped:.1f} | {zipped:.1f} | "
                f"{'met' if zipped < PACKAGE_TARGET_MB else '**not met**'} (zipped) |"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-package", action="store_true", help="skip building the deployment package")
    args = parser.parse_args(argv)
    print(markdown(import_times(args.repeat), None if args.no_package else package_size()))
    print(f"\n(python {sys.version.split()[0]}, {os.cpu_count()} CPUs; bytecode cached)")


if __name__ == "__main__":
    main()
