"""mlflow-export-import (PyPI `databricks-mlflow-export-import` 1.2.1, the tool teams use to move between
tracking servers) both ways between `mlreg serve` and a real `mlflow server` 3.17.2 on SQLite, started here.
After each move, everything is compared item by item: experiments, runs, metric histories, artifacts
(sha256), logged models, registered models, versions, stages, aliases, tags and descriptions.

Left out of the comparison, as limits of the tool itself (docs/compatibility.md), not worked around:
- it does not keep run start/end times, ids or artifact URIs (new objects get new ones);
- its import refuses version sources that are not `dbfs:`, `s3:` or an existing local path, before any
  request: so no version can be imported into a server whose artifacts are proxied (`mlflow-artifacts:`),
  mlreg as much as `mlflow server --serve-artifacts`. Into mlreg the registry is therefore not compared;
  the `mlflow server` here keeps artifacts in a local folder so that the other direction imports versions.
Small data keeps it fast; one 5 MiB artifact goes through the multipart upload."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.entities import ViewType

from tests.conftest import free_port

pytestmark = [pytest.mark.skipif(mlflow.__version__ != "3.17.2",
                                 reason="the reference server is mlflow server 3.17.2 (the 3.x venv)"),
              pytest.mark.xdist_group("export_import")]  # one worker starts the reference server
pytest.importorskip("mlflow_export_import", reason="databricks-mlflow-export-import is not installed")

BIN = Path(sys.executable).parent
BIG = 5 * 1024 * 1024  # at the multipart threshold set below
MULTIPART = {"MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "true", "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(BIG)}
# Tags the client or server writes about where and when something ran, not what it is.
VOLATILE_TAGS = ("mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit",
                 "mlflow.log-model.history", "mlflow.modelVersions")


# ---- the two servers -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """`mlflow server` on SQLite with a local artifact folder (not proxied: see the module docstring)."""
    work, port = tmp_path_factory.mktemp("mlflow-server"), free_port()
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers",
                             "1", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
                             "--default-artifact-root", str(work / "artifacts"), "--no-serve-artifacts"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=work)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 240
    while time.time() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"mlflow server did not start: {(work / 'server.log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(30)


def project(service, name: str) -> tuple[str, str]:
    """A fresh mlreg project and an admin token (the real CLI): (tracking URI, token)."""
    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "mlreg.cli", *args, "--data-dir", str(service.data_dir)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    cli("project", "create", name)
    return service.uri(name), cli("token", "create", "--project", name, "--role", "admin")


def tool(command: str, uri: str, token: str | None, folder: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MULTIPART, MLFLOW_TRACKING_URI=uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="2")
    if token:
        env["MLFLOW_TRACKING_TOKEN"] = token
    flag = "--output-dir" if command == "export-all" else "--input-dir"
    done = subprocess.run([str(BIN / command), flag, str(folder)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def client_for(uri: str, token: str | None, monkeypatch) -> mlflow.MlflowClient:
    for name, value in {**MULTIPART, "MLFLOW_TRACKING_TOKEN": token}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri, registry_uri=uri)


# ---- what is moved -------------------------------------------------------------------------------------

def seed(client: mlflow.MlflowClient, prefix: str, tmp_path: Path) -> None:
    exp = client.create_experiment(f"{prefix}-exp", tags={"team": "ml", "mlflow.note.content": "about it"})
    run = client.create_run(exp, run_name=f"{prefix}-run", tags={"stage": "train"}).info.run_id
    client.log_param(run, "lr", "0.1")
    for step in range(5):
        client.log_metric(run, "loss", 1 / (step + 1), timestamp=1_700_000_000_000 + step, step=step)
    client.log_metric(run, "acc", 0.9, timestamp=1_700_000_000_500, step=4)
    client.log_text(run, "hello", "notes/readme.txt")
    client.log_text(run, "flavors: {}\n", "model/MLmodel")
    big = tmp_path / f"{prefix}-big.bin"
    big.write_bytes(random.Random(prefix).randbytes(BIG))
    client.log_artifact(run, str(big), "data")
    model = client.create_logged_model(exp, name=f"{prefix}-lm", source_run_id=run, params={"depth": "3"},
                                       tags={"kind": "tree"})
    (tmp_path / "lm").mkdir(exist_ok=True)
    (tmp_path / "lm" / "MLmodel").write_text(f"model_id: {model.model_id}\n")
    client.log_model_artifacts(model.model_id, str(tmp_path / "lm"))
    client.finalize_logged_model(model.model_id, "READY")
    client.set_terminated(run)

    name = f"{prefix}-model"
    client.create_registered_model(name, tags={"owner": "ml"}, description="the model")
    for n in (1, 2):
        client.create_model_version(name, f"runs:/{run}/model", run, tags={"n": str(n)}, description=f"v{n}")
    client.transition_model_version_stage(name, "1", "Production")
    client.set_registered_model_alias(name, "champion", "2")


def _tags(tags: dict) -> dict:
    return {k: v for k, v in tags.items() if k not in VOLATILE_TAGS}


def _sha256_tree(client: mlflow.MlflowClient, run_id: str, tmp_path: Path) -> dict[str, str]:
    """sha256 of every artifact; MLmodel files only by presence: the tool rewrites the run id in them."""
    local = Path(client.download_artifacts(run_id, "", str(tmp_path / f"dl-{run_id}")))
    return {str(p.relative_to(local)): "present" if p.name == "MLmodel" else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(local.rglob("*")) if p.is_file()}


def snapshot(client: mlflow.MlflowClient, prefix: str, tmp_path: Path, versions: bool = True) -> dict:
    """Everything of `prefix`, keyed by names (ids and times differ between servers by design). Left out:
    mlreg's default experiment of each model (a deliberate difference), and the empty run the tool makes
    as the source run of each logged model it imports (it does so on any server; counted instead)."""
    out: dict = {"experiments": {}, "registered_models": {}, "tool_made_runs": 0}
    for exp in client.search_experiments(view_type=ViewType.ALL, filter_string=f"name LIKE '{prefix}-%'"):
        if "mlreg.registered_model" in exp.tags:
            continue
        runs = {}
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL):
            if run.info.run_name != f"{prefix}-run" and not (run.data.params or run.data.metrics):
                out["tool_made_runs"] += 1
                continue
            runs[run.info.run_name] = {
                "status": run.info.status, "params": run.data.params, "tags": _tags(run.data.tags),
                "metrics": {k: sorted((m.step, m.timestamp, m.value)
                                      for m in client.get_metric_history(run.info.run_id, k))
                            for k in run.data.metrics},
                "artifacts": _sha256_tree(client, run.info.run_id, tmp_path)}
        models = {m.name: {"status": str(m.status), "params": m.params, "tags": _tags(m.tags),
                           "metrics": sorted((x.key, x.step, x.value) for x in m.metrics or []),
                           "artifacts": sorted(a.path for a in client.list_logged_model_artifacts(m.model_id))}
                  for m in client.search_logged_models([exp.experiment_id])}
        out["experiments"][exp.name] = {"lifecycle": exp.lifecycle_stage, "tags": _tags(exp.tags), "runs": runs,
                                        "logged_models": models}
    for rm in client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'"):
        model = out["registered_models"][rm.name] = {"description": rm.description, "tags": _tags(rm.tags)}
        if versions:
            model["aliases"] = rm.aliases
            # Each version read with get: MLflow's search answers versions without their aliases.
            found = [client.get_model_version(rm.name, v.version)
                     for v in client.search_model_versions(f"name = '{rm.name}'")]
            model["versions"] = {v.version: {"stage": v.current_stage, "status": v.status, "description": v.description,
                                             "tags": _tags(v.tags), "aliases": sorted(v.aliases)} for v in found}
    return out


def differences(source: dict, target: dict, path: str = "") -> list[str]:
    """Every leaf that differs, as `path: source != target`."""
    if isinstance(source, dict) and isinstance(target, dict):
        return [d for k in sorted(set(source) | set(target), key=str)
                for d in differences(source.get(k, "<missing>"), target.get(k, "<missing>"), f"{path}/{k}")]
    return [] if source == target else [f"{path}: {source!r} != {target!r}"]


# ---- the two directions --------------------------------------------------------------------------------

def test_mlflow_server_into_mlreg(service, reference, tmp_path, monkeypatch):
    seed(client_for(reference, None, monkeypatch), "into", tmp_path)
    expected = snapshot(client_for(reference, None, monkeypatch), "into", tmp_path, versions=False)
    tool("export-all", reference, None, tmp_path / "export", tmp_path)
    uri, token = project(service, "ei-into")
    tool("import-all", uri, token, tmp_path / "export", tmp_path)
    got = snapshot(client_for(uri, token, monkeypatch), "into", tmp_path, versions=False)
    assert got.pop("tool_made_runs") == 1  # one logged model with a source run
    expected.pop("tool_made_runs")
    diffs = differences(expected, got)
    assert not diffs, "\n".join(diffs)


def test_mlreg_into_mlflow_server(service, reference, tmp_path, monkeypatch):
    uri, token = project(service, "ei-out")
    seed(client_for(uri, token, monkeypatch), "out", tmp_path)
    expected = snapshot(client_for(uri, token, monkeypatch), "out", tmp_path)
    tool("export-all", uri, token, tmp_path / "export", tmp_path)
    tool("import-all", reference, None, tmp_path / "export", tmp_path)
    got = snapshot(client_for(reference, None, monkeypatch), "out", tmp_path)
    assert got.pop("tool_made_runs") == 1  # one logged model with a source run
    expected.pop("tool_made_runs")
    diffs = differences(expected, got)
    assert not diffs, "\n".join(diffs)
