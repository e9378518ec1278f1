"""The Lambda asset (sources; for the built asset with its locked wheels see test_bundling.py), and the
deploy-time handler that records declared projects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import package
from infra.handlers import declared_projects


def test_source_asset_holds_the_handlers_and_no_caches(tmp_path):
    asset = package.build(tmp_path / "asset", with_dependencies=False)
    assert (asset / "functions").is_dir() and (asset / "shared" / "routes.py").is_file()
    assert (asset / "infra" / "handlers" / "declared_projects.py").is_file()
    assert not (asset / "infra" / "constructs").exists(), "CDK code stays out of the functions"
    assert not list(asset.rglob("__pycache__"))


def test_the_asset_keeps_the_sdk_data_of_every_service_the_functions_call():
    """A client of a service whose data was cut from the asset would fail only when deployed."""
    import re

    called = set()
    for path in [*Path(package.ROOT, "functions").rglob("*.py"), *Path(package.ROOT, "shared").rglob("*.py")]:
        if path.name == "local.py" and path.parent.name == "events":
            continue  # mlreg serve's stand-in for the stream and the bus: never runs in Lambda
        called |= set(re.findall(r"""boto3\.client\(\s*["']([a-z0-9-]+)["']""", path.read_text()))
    assert called and called <= set(package.AWS_SERVICES), called - set(package.AWS_SERVICES)


def test_trimmed_sdk_creates_clients_of_its_services(tmp_path):
    """The cut data still makes working clients (endpoint resolution, models) for every service."""
    import shutil
    import subprocess
    import sys

    import boto3
    import botocore

    for module in (boto3, botocore):
        shutil.copytree(Path(module.__file__).parent, tmp_path / module.__name__)
    package.trim_sdk(tmp_path)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import boto3, botocore; "
            "assert botocore.__file__.startswith(sys.argv[1]); "
            "[boto3.client(s, region_name='eu-west-1').meta.endpoint_url for s in sys.argv[2:]]")
    subprocess.run([sys.executable, "-c", code, str(tmp_path), *package.AWS_SERVICES], check=True)


def test_the_function_runtime_matches_the_wheels():
    from infra.constructs import functions

    assert functions.RUNTIME.name == f"python{package.PYTHON_VERSION}"
    assert package.PLATFORM.endswith("aarch64") and functions.ARCHITECTURE.name == "arm64"


@pytest.fixture
def cloudformation(monkeypatch):
    """Captures what the handler answers CloudFormation."""
    answers = []
    def respond(event, context, status, reason, physical_id):
        answers.append((status, reason, physical_id))

    monkeypatch.setattr(declared_projects, "respond", respond)
    return answers


def _event(kind: str, project: str = "vision", description: str = "Image models") -> dict:
    return {"RequestType": kind, "ResourceProperties": {"Project": project, "Description": description},
            "StackId": "s", "RequestId": "r", "LogicalResourceId": "l", "ResponseURL": "https://example.invalid/"}


def test_create_makes_a_missing_project(monkeypatch, cloudformation):
    created = []
    monkeypatch.setattr(declared_projects.projects, "get_project", lambda p: None)
    monkeypatch.setattr(declared_projects.projects, "create_project", lambda p, d: created.append((p, d)))
    declared_projects.handler(_event("Create"), None)
    assert created == [("vision", "Image models")]
    assert cloudformation == [("SUCCESS", "OK", "mlreg-project-vision")]


def test_update_changes_only_the_description(monkeypatch, cloudformation):
    updates = []
    monkeypatch.setattr(declared_projects.projects, "get_project", lambda p: {"description": "old", "state": "active"})
    monkeypatch.setattr(declared_projects.db, "update", lambda *a, **k: updates.append((a, k)))
    declared_projects.handler(_event("Update"), None)
    assert updates and updates[0][1]["values"] == {":d": "Image models"}
    assert cloudformation[0][0] == "SUCCESS"


def test_delete_keeps_the_project_and_its_data(monkeypatch, cloudformation):
    monkeypatch.setattr(declared_projects.projects, "get_project", lambda p: pytest.fail("Delete must not touch data"))
    declared_projects.handler(_event("Delete"), None)
    assert cloudformation == [("SUCCESS", "OK", "mlreg-project-vision")]


def test_a_deleted_projects_id_is_refused_and_reported(monkeypatch, cloudformation):
    monkeypatch.setattr(declared_projects.projects, "get_project", lambda p: {"state": "deleted"})
    declared_projects.handler(_event("Create"), None)
    status, reason, _ = cloudformation[0]
    assert status == "FAILED" and "stays taken" in reason


def test_the_answer_reaches_cloudformations_url(monkeypatch):
    sent = {}

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b""

    def urlopen(request, timeout):
        sent.update(url=request.full_url, method=request.get_method(), body=json.loads(request.data))
        return Response()

    monkeypatch.setattr(declared_projects.urllib.request, "urlopen", urlopen)
    declared_projects.respond(_event("Create"), None, "SUCCESS", "OK", "mlreg-project-vision")
    assert sent["method"] == "PUT" and sent["url"] == "https://example.invalid/"
    assert sent["body"]["Status"] == "SUCCESS" and sent["body"]["PhysicalResourceId"] == "mlreg-project-vision"


def test_every_handler_resolves_inside_the_asset(tmp_path):
    """What Lambda will do: import `functions.<name>` (or the deploy-time handler) from the asset root."""
    import os
    import subprocess
    import sys

    from infra import app
    from infra.constructs.functions import _DEPLOY_HANDLERS

    asset = package.build(tmp_path / "asset", with_dependencies=False)
    handlers = [f"functions.{name}.handler" for name in app.default_function_names()]
    handlers += [handler for handler, _ in _DEPLOY_HANDLERS.values()]
    script = "import importlib, sys\n" + "".join(
        f"assert callable(getattr(importlib.import_module({h.rsplit('.', 1)[0]!r}), {h.rsplit('.', 1)[1]!r}))\n"
        for h in handlers)
    env = {**os.environ, "PYTHONPATH": str(asset), "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
