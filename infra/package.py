"""Builds the one code asset every mlreg Lambda function runs from, without Docker.

    python -m infra.package                  # build/lambda: sources + runtime dependencies (deploys)
    python -m infra.package --source-only    # build/lambda-source: sources only (synth and tests)

The asset holds `functions/` and `shared/` as they are in the repository (handlers are
`functions.<name>.handler`), the deploy-time handlers of `infra/handlers/`, and the runtime
dependencies installed as wheels for Lambda's platform (Linux, arm64, CPython 3.12). boto3 and
botocore come with the Lambda runtime and are left out."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
FULL_ASSET = BUILD / "lambda"
SOURCE_ASSET = BUILD / "lambda-source"

PYTHON_VERSION = "3.12"  # keep in step with the runtime in infra/constructs/functions.py
PLATFORM = "manylinux2014_aarch64"  # keep in step with the architecture there
RUNTIME_DEPENDENCIES = ("aws-lambda-powertools[tracer]", "pydantic", "semver", "graphql-core>=3.2,<3.3")
# boto3 and its dependencies ship with the Lambda runtime; aws-xray-sdk pulls some of them in again.
# Left out, they cannot shadow the runtime's own, matching versions (and the asset stays small).
PROVIDED_BY_LAMBDA = {  # distribution -> top-level modules
    "boto3": ("boto3",), "botocore": ("botocore",), "s3transfer": ("s3transfer",), "jmespath": ("jmespath",),
    "urllib3": ("urllib3",), "python_dateutil": ("dateutil",), "six": ("six.py",),
}

SOURCES = ("functions", "shared")
DEPLOY_HANDLERS = ("infra/__init__.py", "infra/handlers")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def copy_sources(target: Path) -> None:
    for name in SOURCES + DEPLOY_HANDLERS:
        source, dest = ROOT / name, target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, ignore=_IGNORE)
        elif source.exists():
            shutil.copy2(source, dest)


def install_dependencies(target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(target),
         "--platform", PLATFORM, "--implementation", "cp", "--python-version", PYTHON_VERSION,
         "--only-binary=:all:", *RUNTIME_DEPENDENCIES],
        check=True,
    )
    for distribution, modules in PROVIDED_BY_LAMBDA.items():
        for path in [*(target / m for m in modules), *target.glob(f"{distribution}-*.dist-info"), target / "bin"]:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def build(target: Path | None = None, *, with_dependencies: bool = True) -> Path:
    """A fresh asset directory; returns its path."""
    target = target or (FULL_ASSET if with_dependencies else SOURCE_ASSET)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if with_dependencies:
        install_dependencies(target)
    copy_sources(target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source-only", action="store_true", help="skip the dependencies (synth and tests)")
    parser.add_argument("--out", type=Path, help="target directory (default: build/lambda or build/lambda-source)")
    args = parser.parse_args(argv)
    print(build(args.out, with_dependencies=not args.source_only))


if __name__ == "__main__":
    main()
