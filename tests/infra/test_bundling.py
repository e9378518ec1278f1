"""The deployable Lambda asset: `cdk synth` builds it on a fresh clone (CDK local bundling, no Docker)
from the lock file's wheels, the same every time, under a hash that changes only with its inputs.

The locked wheels are downloaded once into the wheelhouse (build/wheels, or MLREG_WHEELHOUSE) and
taken from there afterwards, so only the first run on a machine needs the package index."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra import package

ROOT = package.ROOT
AARCH64 = 183  # ELF e_machine


def repository_copy(target: Path) -> Path:
    """What a clone of this work tree would hold: tracked and new files, without ignored ones."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    return package.fetch_wheels()


def test_cdk_synth_on_a_fresh_clone_builds_the_locked_asset(tmp_path, wheelhouse):
    clone = repository_copy(tmp_path / "clone")
    node_modules = ROOT / "node_modules"
    assert (node_modules / ".bin" / "cdk").exists(), "the pinned CDK CLI is missing: run `npm ci` (./dev test does)"
    (clone / "node_modules").symlink_to(node_modules)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MLREG_WHEELHOUSE": str(wheelhouse), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    env.pop("MLREG_LAMBDA_ASSET", None)
    result = subprocess.run(["node_modules/.bin/cdk", "synth", "-c", "env=dev", "--no-notices", "-q"], cwd=clone,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]

    template = (clone / "cdk.out" / "mlreg-dev.template.json").read_text()
    expected_key = f"{staged_hash(clone / 'cdk.out')}.zip"
    assert template.count(expected_key) >= 5, "every function runs from the one bundled asset"
    asset = clone / "cdk.out" / f"asset.{expected_key.removesuffix('.zip')}"
    installed = {tuple(d.name.removesuffix(".dist-info").rsplit("-", 1)) for d in asset.glob("*.dist-info")}
    assert installed == {(p.name.replace("-", "_"), p.version) for p in package.pins(clone)}, "exactly the lock"
    sdk_data = asset / "botocore" / "data"  # the pinned SDK, its data cut to the services the functions call
    assert sorted(d.name for d in sdk_data.iterdir() if d.is_dir()) == sorted(package.AWS_SERVICES)
    assert not (asset / "boto3" / "data").exists()
    (native,) = asset.glob("pydantic_core/_pydantic_core.cpython-312-*.so")
    assert int.from_bytes(native.read_bytes()[18:20], "little") == AARCH64, "built for Lambda's arm64"
    assert (asset / "functions" / "tracking.py").read_bytes() == (ROOT / "functions" / "tracking.py").read_bytes()
    assert not (asset / "bin").exists()
    assert {oct(p.stat().st_mode & 0o777) for p in asset.rglob("*") if p.is_file()} == {"0o644"}
    modules = list(asset.rglob("*.py"))
    compiled = [m for m in modules if (m.parent / "__pycache__" / f"{m.stem}.cpython-312.pyc").is_file()]
    if package.bytecode_python():  # bytecode for Lambda's Python, checked by source hash, naming /var/task paths
        assert len(compiled) == len(modules)
        pyc = (asset / "shared" / "__pycache__" / "routes.cpython-312.pyc").read_bytes()
        assert int.from_bytes(pyc[4:8], "little") == 0b01, "unchecked-hash bytecode: unzip timestamps do not matter"
        assert b"/var/task/shared/routes.py" in pyc and str(clone).encode() not in pyc
    else:
        assert not list(asset.rglob("__pycache__"))


def staged_hash(cdk_out: Path) -> str:
    """The hash of the bundled Lambda asset (the biggest asset directory CDK staged)."""
    staged = max(cdk_out.glob("asset.*"), key=lambda d: sum(1 for _ in d.rglob("*")))
    return staged.name.removeprefix("asset.")


def test_two_builds_give_the_same_files_bytes_and_modes(tmp_path, wheelhouse):
    clone = repository_copy(tmp_path / "clone")
    first = package.build(tmp_path / "first", root=clone)
    os.utime(clone / "shared" / "routes.py", (1, 1))  # a new timestamp changes nothing
    second = package.build(tmp_path / "second", root=clone)
    assert package.tree_digest(first) == package.tree_digest(second)


def test_bytecode_needs_lambdas_python_and_names_it_in_the_hash(monkeypatch):
    monkeypatch.setattr(package.shutil, "which", lambda name: None)
    monkeypatch.setenv("MLREG_LAMBDA_PYTHON", sys.executable)  # this interpreter: not CPython 3.12 (3.11 here)
    if sys.version_info[:2] != (3, 12):
        assert package.bytecode_python() is None
    without = package.asset_hash()
    monkeypatch.setattr(package, "bytecode_python", lambda: ("python3.12", "3.12.1"))
    assert package.asset_hash() != without, "bytecode changes the asset: it changes the hash"


def test_the_asset_hash_follows_sources_lock_and_packager_only(tmp_path):
    clone = repository_copy(tmp_path / "clone")
    unchanged = package.asset_hash(clone)
    assert unchanged == package.asset_hash(ROOT), "the same inputs give the same hash anywhere"

    os.utime(clone / "shared" / "db.py", (1, 1))
    (clone / "shared" / "__pycache__").mkdir(exist_ok=True)
    (clone / "shared" / "__pycache__" / "db.cpython-312.pyc").write_bytes(b"cache")
    (clone / "README.md").write_text("docs are not in the asset")
    (clone / "infra" / "constructs" / "api.py").write_text("# CDK code is not in the asset\n")
    assert package.asset_hash(clone) == unchanged

    for changed in ("shared/routes.py", package.LOCK_FILE, "infra/package.py", "infra/handlers/declared_projects.py"):
        original = (clone / changed).read_bytes()
        (clone / changed).write_bytes(original + b"\n# changed\n")
        assert package.asset_hash(clone) != unchanged, f"{changed} is an input of the asset"
        (clone / changed).write_bytes(original)
    (clone / "functions" / "extra.py").write_text("handler = None\n")
    assert package.asset_hash(clone) != unchanged, "a new function module is an input too"


def test_synth_reuses_an_unchanged_asset_and_a_source_change_replaces_it(tmp_path, monkeypatch):
    """Two synths as two `cdk synth` runs would do them (same cdk.out, fresh processes): the same S3
    key and one build; then a changed source: a new key, a new build."""
    from aws_cdk import App, AssetStaging, Stack
    from aws_cdk import aws_lambda as lambda_

    from infra.bundling import bundled_code
    from infra.constructs.functions import ARCHITECTURE, RUNTIME

    builds = []
    monkeypatch.setattr(package, "install_dependencies", lambda target, root: builds.append(root))
    clone = repository_copy(tmp_path / "clone")
    outdir = tmp_path / "cdk.out"

    def synth_key() -> str:
        AssetStaging.clear_asset_hash_cache()  # what a new process starts with
        app = App(outdir=str(outdir))
        lambda_.Function(Stack(app, "S"), "F", runtime=RUNTIME, architecture=ARCHITECTURE,
                         handler="functions.tracking.handler", code=bundled_code(clone))
        template = app.synth().get_stack_by_name("S").template
        (function,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
        return function["Properties"]["Code"]["S3Key"]

    first, second = synth_key(), synth_key()
    assert first == second and len(builds) == 1, "nothing changed: same asset, not rebuilt"
    with open(clone / "shared" / "routes.py", "a") as f:
        f.write("\n# a change\n")
    assert synth_key() != first and len(builds) == 2
