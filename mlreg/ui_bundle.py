"""MLflow's web UI bundle (`mlflow/server/js/build` inside the `mlflow` wheel), at the version mlreg
is tested with. It is never committed and `mlflow` is never a runtime dependency: the bundle is taken
from an installed `mlflow` of exactly that version, or else extracted once from the wheel
(`pip download mlflow==<pin> --no-deps`) into a cache. `mlreg serve` serves it from there and the CDK
build (infra/ui_bundle.py) uploads the same directory.

    python -m mlreg.ui_bundle      # prints the bundle's directory (extracting it if needed)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from importlib import metadata
from pathlib import Path

# Keep in step with the `mlflow3` extra in pyproject.toml (a unit test holds them together).
MLFLOW_VERSION = "3.17.2"
WHEEL_FOLDER = "mlflow/server/js/build"
CACHE_ENV = "MLREG_UI_CACHE"  # where extracted bundles are kept (default ~/.cache/mlreg/ui)
_lock = threading.Lock()


class BundleError(Exception):
    """The bundle could not be found or extracted (the message says what to do)."""


def cache_root() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "mlreg", "ui")
    return Path(base).expanduser()


def installed_bundle() -> Path | None:
    """The bundle of an installed `mlflow` when its version is the pinned one (nothing is imported)."""
    try:
        dist = metadata.distribution("mlflow")
    except metadata.PackageNotFoundError:
        return None
    folder = Path(str(dist.locate_file(WHEEL_FOLDER)))
    return folder if dist.version == MLFLOW_VERSION and (folder / "index.html").is_file() else None


def bundle_dir() -> Path:
    """The pinned bundle's directory (holding index.html and static/), extracting it on first use."""
    found = installed_bundle()
    if found:
        return found
    target = cache_root() / f"mlflow-{MLFLOW_VERSION}"
    with _lock:
        if not (target / "index.html").is_file():
            _extract(target)
    return target


def _extract(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        wheel = _download_wheel(Path(work))
        staged = Path(work) / "bundle"
        prefix = WHEEL_FOLDER + "/"
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    dest = staged / name[len(prefix):]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(name) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
        if not (staged / "index.html").is_file():
            raise BundleError(f"{wheel.name} holds no {WHEEL_FOLDER}/index.html")
        if not (target / "index.html").is_file():  # a folder without index.html: left by a crash
            shutil.rmtree(target, ignore_errors=True)
        try:
            staged.rename(target)  # atomic: a half-extracted bundle is never used
        except OSError:
            if not (target / "index.html").is_file():  # not another process that got there first
                raise


def _download_wheel(work: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", f"mlflow=={MLFLOW_VERSION}", "--dest", str(work)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = list(work.glob(f"mlflow-{MLFLOW_VERSION}-*.whl"))
    if done.returncode != 0 or not wheels:
        raise BundleError(f"could not download mlflow=={MLFLOW_VERSION} for its web UI "
                          f"({' '.join(command[2:])}): {done.stderr.strip()[-500:]}")
    return wheels[0]


if __name__ == "__main__":
    print(bundle_dir())
