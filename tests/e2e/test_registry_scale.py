"""The registry without cliffs (issue 16), end to end with the real MLflow client (2.x or 3.x):
rename and delete of models with many versions, concurrent writers during a rename, package copies
slower than the API's limit and copies that fail, and data of the layout before model ids."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

from shared import db, keys
from shared.registry import items
from tests.conftest import start_service, stop_service
from tests.e2e.test_registry import MLFLOW3, api, eventually, log_pyfunc, manifest, package_path, predict, unique

REPO = Path(__file__).resolve().parents[2]
BEFORE_MODEL_IDS = "94053fe"
LOCAL_BUCKET = "mlreg-local"  # `mlreg serve`'s default bucket  # main just before the registry moved to model ids (the old layout)


def table(service):
    """The emulator's DynamoDB, signed as the local tools sign it."""
    from mlreg.signatures import credentials

    info = json.loads((service.data_dir / "endpoint.json").read_text())
    client = boto3.client("dynamodb", endpoint_url=info["dynamodb_endpoint"], region_name=info["region"],
                          **credentials(service.data_dir))
    return client, info["table"]


def model_id(service, name: str) -> str:
    client, name_of_table = table(service)
    guard = client.get_item(TableName=name_of_table, Key=db.key(keys.model_name_guard("default", name), keys.GUARD_SK))
    return db.from_item(guard["Item"])["model_id"]


def partition_size(service, model: str) -> int:
    client, name_of_table = table(service)
    pages = client.get_paginator("query").paginate(
        TableName=name_of_table, KeyConditionExpression="pk = :pk", Select="COUNT",
        ExpressionAttributeValues={":pk": {"S": keys.registered_model("default", model)}})
    return sum(page["Count"] for page in pages)


def external_version(service, name: str, i: int) -> int:
    """One version through the API (external source: no package, READY at once)."""
    answer = api(service, "POST", "model-versions/create", json={"name": name, "source": f"s3://team-bucket/m/{i}"})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["model_version"]["version"])


def all_versions(client, name: str) -> list[int]:
    found, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", max_results=1000, page_token=token)
        found += [int(mv.version) for mv in page]
        token = page.token
        if not token:
            return sorted(found)


# ---- rename ---------------------------------------------------------------------------------------------

def test_rename_of_a_model_with_many_versions_loses_no_concurrent_write(tracking, service):
    """120 versions through the API, then a rename while one writer adds versions and another moves
    an alias, each switching to the new name when the old one is gone: every acknowledged write is
    there afterwards, under the new name, and the old name is free."""
    old, new = unique("big"), unique("big-renamed")
    mlflow.set_experiment(unique("big-training"))
    with mlflow.start_run():
        log_pyfunc(5, registered_model_name=old)  # version 1 has a package
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: external_version(service, old, i), range(119)))
    tracking.set_registered_model_alias(old, "champion", "1")
    names, acknowledged, moves, stop = {"now": old}, [], [], threading.Event()

    def with_name(call):
        """A client that learns of the rename from the 404 of the old name."""
        for _ in range(3):
            try:
                return call(names["now"])
            except MlflowException as err:
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                names["now"] = new
        raise AssertionError("the model was under neither name")

    def creator():
        while not stop.is_set() or len(acknowledged) < 5:
            acknowledged.append(int(with_name(lambda n: tracking.create_model_version(
                n, "s3://team-bucket/late", await_creation_for=0)).version))

    def mover():
        i = 0
        while not stop.is_set() or len(moves) < 5:
            target = str(2 + i % 50)
            with_name(lambda n: tracking.set_registered_model_alias(n, "challenger", target))
            moves.append(target)
            i += 1

    seen = []

    def reader():
        """Every answer names the model by the name it was asked for: the old one until the rename,
        then only the new one (the old name answers 404 from then on, never the model)."""
        while not stop.is_set():
            for asked in (old, new):
                try:
                    seen.append((asked, tracking.get_model_version(asked, "1").name))
                except MlflowException as err:
                    assert err.error_code == "RESOURCE_DOES_NOT_EXIST"
                    seen.append((asked, None))

    workers = [threading.Thread(target=creator), threading.Thread(target=mover), threading.Thread(target=reader)]
    [w.start() for w in workers]
    eventually(lambda: len(acknowledged) >= 2 and len(moves) >= 2)
    tracking.rename_registered_model(old, new)
    stop.set()
    [w.join() for w in workers]

    assert all(found in (asked, None) for asked, found in seen)
    renamed_at = next(i for i, (asked, found) in enumerate(seen) if asked == new and found)
    assert all(found is None for asked, found in seen[renamed_at + 2:] if asked == old)  # pairs: old, new
    assert all_versions(tracking, new) == list(range(1, 121 + len(acknowledged)))  # none lost, none twice
    assert sorted(acknowledged) == list(range(121, 121 + len(acknowledged)))
    renamed = tracking.get_registered_model(new)
    assert renamed.aliases == {"champion": "1", "challenger": moves[-1]}
    assert tracking.get_model_version_by_alias(new, "challenger").version == moves[-1]
    assert tracking.get_model_version(new, "120").name == new
    # every way of loading works at once under the new name, from the package that did not move
    assert predict(f"models:/{new}/1") == [6, 7]
    assert predict(f"models:/{new}@champion") == [6, 7]
    assert predict(f"models:/{new}@1.0.0") == [6, 7]
    with pytest.raises(MlflowException) as gone:
        tracking.get_model_version(old, "1")
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    tracking.create_registered_model(old)  # the old name is free
    assert tracking.search_model_versions(f"name = '{old}'") == []

    # deleted: gone for readers at once, then purged by the worker, run links and packages included
    package, model = package_path(tracking, new, "1"), model_id(service, new)
    tracking.delete_registered_model(new)
    with pytest.raises(MlflowException):
        tracking.get_model_version_by_alias(new, "champion")
    eventually(lambda: partition_size(service, model) == 1)  # the meta item stays, marked purged (TTL)
    assert requests.get(f"{service.uri()}/api/2.0/mlflow-artifacts/artifacts", params={"path": package}, timeout=60,
                        headers={"Authorization": f"Bearer {service.token}"}).json() == {}


# ---- 10,000 versions ----------------------------------------------------------------------------------

def _versions(model: str, count: int) -> list[dict]:
    """`count` external versions as the registry writes them. Every 10th is in Production, every 7th
    in Staging."""
    puts = []
    for n in range(1, count + 1):
        stage = "Production" if n % 10 == 0 else "Staging" if n % 7 == 0 else "None"
        semver = f"1.{n - 1}.0"
        mv = {"version": n, "semver": semver, "source": f"s3://team-bucket/m/{n}", "run_id": "", "run_linked": False,
              "current_stage": stage, "status": "READY", "creation_timestamp": n, "last_updated_timestamp": n,
              "rev": 0, "user_id": "", "storage_location": f"s3://team-bucket/m/{n}", "migrated": "bulk",
              "tags": {"mlreg.version": semver, "mlreg.package": "external"}}
        puts += [items.version_item("default", model, mv), items.semver_item("default", model, semver, n),
                 items.stage_item("default", model, stage, n)]
    return puts


@pytest.fixture
def huge_model(tmp_path):
    """A service of its own with a model of 10,000 external versions (the model made through the
    API; its versions written into the stopped service's data directory: through the API they take
    minutes, as requests to the emulator still a minute). Killed after the test, data and all: the
    background purge of 10,000 versions (minutes on the emulator) must not load the machine on."""
    from bench.harness import put_in_data_dir

    data, name = tmp_path / "data", unique("huge")
    svc = start_service(data)
    try:
        assert api(svc, "POST", "registered-models/create", json={"name": name}).status_code == 200
        model = model_id(svc, name)
        client, table_name = table(svc)
        meta = db.from_item(client.get_item(TableName=table_name, Key=db.key(keys.registered_model("default", model),
                                                                              keys.MODEL_SK))["Item"])
    finally:
        stop_service(svc)
    meta.update(last_version=10_000, latest_semver="1.9999.0")
    put_in_data_dir(data, [db.to_item(i) for i in [*_versions(model, 10_000), meta]])
    svc = start_service(data)
    yield svc, name, model
    svc.process.kill()
    svc.process.wait()


@pytest.mark.skipif(not MLFLOW3, reason="built in the table, then the same client calls on both lines: once is enough "
                                         "(the 120-version rename through the API runs on both)")
def test_ten_thousand_versions_search_rename_and_delete(huge_model, monkeypatch):
    service, name, model = huge_model
    tracking, new = _client_of(service, monkeypatch), unique("huge-renamed")
    tracking.set_registered_model_alias(name, "champion", "9999")
    tracking.set_registered_model_alias(name, "old-faithful", "3")

    # newest per stage, aliases, semvers: reads bounded by what they answer, not by 10,000 versions
    latest = {mv.current_stage: int(mv.version) for mv in tracking.get_latest_versions(name, ["Production", "Staging",
                                                                                              "None"])}
    assert latest == {"Production": 10_000, "Staging": 9996, "None": 9999}
    got = tracking.get_registered_model(name)
    assert got.aliases == {"champion": "9999", "old-faithful": "3"}
    assert {int(mv.version) for mv in got.latest_versions} == {10_000, 9996, 9999}
    assert tracking.get_model_version_by_alias(name, "1.4999.0").version == "5000"
    page = tracking.search_model_versions(f"name = '{name}'", max_results=100)
    assert [int(mv.version) for mv in page] == list(range(10_000, 9_900, -1)) and page.token
    after = tracking.search_model_versions(f"name = '{name}'", max_results=100, page_token=page.token)
    assert [int(mv.version) for mv in after] == list(range(9_900, 9_800, -1))
    ascending = tracking.search_model_versions(f"name = '{name}'", max_results=5, order_by=["version_number ASC"])
    assert [int(mv.version) for mv in ascending] == [1, 2, 3, 4, 5]
    tagged = tracking.search_model_versions(f"name = '{name}' AND tags.`mlreg.version` = '1.9989.0'")
    assert [int(mv.version) for mv in tagged] == [9_990]

    tracking.rename_registered_model(name, new)
    assert tracking.get_model_version(new, "10000").name == new
    assert tracking.get_model_version_by_alias(new, "champion").version == "9999"
    assert tracking.get_latest_versions(new, ["Staging"])[0].version == "9996"

    size = partition_size(service, model)  # counted before the purge starts: it competes with no writer
    tracking.delete_registered_model(new)  # answers at once: the name is free, the model gone for readers
    with pytest.raises(MlflowException) as gone:
        tracking.get_model_version(new, "1")
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert tracking.search_registered_models(f"name = '{new}'") == []
    tracking.create_registered_model(new)
    assert tracking.search_model_versions(f"name = '{new}'") == []
    # the worker purges in the background, a page at a time (the whole purge, continuations included, is
    # followed to its end on 2,000 versions in tests/unit/test_registry_store.py and on 120 versions above)
    eventually(lambda: partition_size(service, model) < size)


# ---- packages: a slow copy, a failing copy -----------------------------------------------------------

@pytest.fixture(scope="module")
def slow_copies(tmp_path_factory):
    """A service whose package copies take longer than API Gateway's 29 s (every file copy of the worker
    pauses; no copy runs in the request, whatever the source's size)."""
    os.environ["MLREG_SLOW_COPY_SECONDS"] = "31"
    try:
        svc = start_service(tmp_path_factory.mktemp("slow") / "data")
    finally:
        del os.environ["MLREG_SLOW_COPY_SECONDS"]
    yield svc
    stop_service(svc)


def _client_of(service, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", service.uri())
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", service.token)
    mlflow.set_tracking_uri(service.uri())
    return mlflow.MlflowClient(service.uri())


def test_a_copy_slower_than_the_api_finishes_ready_and_loads(slow_copies, monkeypatch):
    client = _client_of(slow_copies, monkeypatch)
    name = unique("slow")
    mlflow.set_experiment(unique("slow-training"))
    with mlflow.start_run() as run:
        logged = log_pyfunc(3)  # MLflow 3: a logged model (models:/m-...); 2.x: the run's model/ folder
    client.create_registered_model(name)
    created = api(slow_copies, "POST", "model-versions/create", json={
        "name": name, "source": logged.model_uri, "run_id": run.info.run_id})
    assert created.status_code == 200 and created.json()["model_version"]["status"] == "PENDING_REGISTRATION"
    assert client.get_model_version(name, "1").status == "PENDING_REGISTRATION"  # the copy is still running
    mv = mlflow.register_model(logged.model_uri, name)  # the client's own wait covers it
    assert client.get_model_version(name, "1").status == "READY"
    assert client.get_model_version(name, mv.version).status == "READY"
    assert predict(f"models:/{name}/1") == [4, 5]
    assert predict(f"models:/{name}@1.1.0") == [4, 5]


def test_a_big_source_is_pending_until_the_worker_copies_it(tracking, service, tmp_path):
    """More files than a request copies: the create answer is PENDING_REGISTRATION, the worker copies the
    package and the version turns READY (the client's own wait ends there), with every file in its manifest."""
    from shared.registry.packages import INLINE_MAX_FILES

    name = unique("big")
    tracking.create_registered_model(name)
    run = tracking.create_run(tracking.create_experiment(unique("big-src")))
    folder = tmp_path / "model"
    folder.mkdir()
    for i in range(INLINE_MAX_FILES + 1):
        (folder / f"part-{i:02d}.txt").write_text(f"{i}\n")
    tracking.log_artifacts(run.info.run_id, str(folder), "model")
    created = api(service, "POST", "model-versions/create", json={
        "name": name, "source": f"runs:/{run.info.run_id}/model", "run_id": run.info.run_id})
    assert created.status_code == 200 and created.json()["model_version"]["status"] == "PENDING_REGISTRATION"
    tracking.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)  # waits for READY
    assert tracking.get_model_version(name, "2").status == "READY"
    eventually(lambda: tracking.get_model_version(name, "1").status == "READY")
    for version in ("1", "2"):
        files = manifest(service, package_path(tracking, name, version))["files"]
        assert sorted(f["path"] for f in files) == sorted(p.name for p in folder.iterdir())


def test_a_failing_copy_ends_failed_registration_with_its_message(tracking, service):
    """A source S3 will not copy (archived to Glacier): the version ends FAILED_REGISTRATION, and the
    client's own wait shows S3's reason."""
    from mlreg.signatures import credentials

    name = unique("failing")
    tracking.create_registered_model(name)
    run = tracking.create_run(tracking.create_experiment(unique("failing-src")))
    info = json.loads((service.data_dir / "endpoint.json").read_text())
    s3 = boto3.client("s3", endpoint_url=info["dynamodb_endpoint"], region_name=info["region"],
                      **credentials(service.data_dir))
    s3.put_object(Bucket=LOCAL_BUCKET, Body=b"w", StorageClass="GLACIER",
                  Key=f"projects/default/artifacts/{run.info.experiment_id}/{run.info.run_id}/artifacts/model/w.bin")
    with pytest.raises(MlflowException) as waited:
        tracking.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    failed = tracking.get_model_version(name, "1")
    assert failed.status == "FAILED_REGISTRATION"
    assert failed.status_message.startswith(f"Copying the package from runs:/{run.info.run_id}/model failed")
    assert "ObjectNotInActiveTierError" in failed.status_message
    assert failed.status_message in waited.value.message  # what the client shows its user


# ---- data of the layout before model ids --------------------------------------------------------------

def test_data_written_before_model_ids_loads_and_serves(tmp_path, monkeypatch):
    """`mlreg serve` of the last commit before model ids writes a model; today's `mlreg serve` loads
    that data directory (its loader runs the 2026-12-model-ids step) and serves the model under its
    name, from the packages where the old code put them, and renames it."""
    old_code = tmp_path / "old"
    old_code.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE_MODEL_IDS, "mlreg", "shared", "functions"],
                             check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(old_code)
    data = tmp_path / "data"
    with monkeypatch.context() as old:  # `python -m` imports from the working directory first
        old.chdir(old_code)
        before = start_service(data)
    try:
        client = _client_of(before, monkeypatch)
        name = unique("legacy")
        mlflow.set_experiment(unique("legacy-training"))
        with mlflow.start_run() as run:
            log_pyfunc(7, registered_model_name=name)
        client.set_registered_model_alias(name, "champion", "1")
        assert client.get_model_version_download_uri(name, "1") == f"mlflow-artifacts:/packages/{name}/1.0.0"
    finally:
        stop_service(before)
    after = start_service(data)
    try:
        client = _client_of(after, monkeypatch)
        assert client.get_model_version(name, "1").status == "READY"
        assert client.get_model_version_download_uri(name, "1") == f"mlflow-artifacts:/packages/{name}/1.0.0"
        assert predict(f"models:/{name}@champion") == [8, 9]
        client.rename_registered_model(name, f"{name}-new")
        assert predict(f"models:/{name}-new/1") == [8, 9]
        with pytest.raises(MlflowException):
            client.delete_run(run.info.run_id)  # the run link came along
        assert package_path(client, f"{name}-new", "1") == f"packages/{name}/1.0.0"
    finally:
        stop_service(after)


def test_a_copy_cut_off_by_a_stop_finishes_after_the_restart(tmp_path, monkeypatch):
    """The local jobs queue does not outlive `mlreg serve`: at start the worker queues again what the
    table still calls for, so a version left PENDING by a stop ends READY after the restart."""
    data = tmp_path / "data"
    monkeypatch.setenv("MLREG_SLOW_COPY_SECONDS", "600")  # the first service never finishes its copy
    svc = start_service(data)
    monkeypatch.delenv("MLREG_SLOW_COPY_SECONDS")
    try:
        client = _client_of(svc, monkeypatch)
        name = unique("cut-off")
        mlflow.set_experiment(unique("cut-off-training"))
        with mlflow.start_run() as run:
            logged = log_pyfunc(3)
        client.create_registered_model(name)
        created = api(svc, "POST", "model-versions/create", json={
            "name": name, "source": logged.model_uri, "run_id": run.info.run_id})
        assert created.json()["model_version"]["status"] == "PENDING_REGISTRATION"
    finally:
        svc.process.kill()  # as a crash or Ctrl-C in the middle of the copy
        svc.process.wait()
    svc = start_service(data)
    try:
        client = _client_of(svc, monkeypatch)
        eventually(lambda: client.get_model_version(name, "1").status == "READY")
        assert manifest(svc, package_path(client, name, "1"))["files"]
    finally:
        stop_service(svc)
