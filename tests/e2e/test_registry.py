"""The model registry end to end: the real MLflow client (2.x or 3.x) against `mlreg serve`."""

from __future__ import annotations

import json
import threading
import time
import uuid

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

MLFLOW3 = int(mlflow.__version__.split(".")[0]) >= 3


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api(service, method: str, route: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{service.uri()}/api/2.0/mlflow/{route}", timeout=60,
                            headers={"Authorization": f"Bearer {service.token}"}, **kwargs)


def artifacts(service, method: str, path: str = "", **kwargs) -> requests.Response:
    return requests.request(method, f"{service.uri()}/api/2.0/mlflow-artifacts/artifacts{path}", timeout=60,
                            headers={"Authorization": f"Bearer {service.token}"}, **kwargs)


def code(excinfo) -> str:
    return excinfo.value.error_code


class AddN(mlflow.pyfunc.PythonModel):
    """A tiny pyfunc model with no ML library: adds `n` to every input."""

    def __init__(self, n: int):
        self.n = n

    def predict(self, context, model_input, params=None):
        return [x + self.n for x in model_input]


def log_pyfunc(n: int, registered_model_name: str | None = None):
    """Logs AddN(n). Its requirements are given: the client would otherwise infer them by loading the
    model in a fresh interpreter (3 s a model, all on this machine, no request to the server)."""
    where = {"name": "model"} if MLFLOW3 else {"artifact_path": "model"}
    return mlflow.pyfunc.log_model(python_model=AddN(n), registered_model_name=registered_model_name,
                                   pip_requirements=[f"mlflow=={mlflow.__version__}"], **where)


def predict(uri: str) -> list:
    return list(mlflow.pyfunc.load_model(uri).predict([1, 2]))


@pytest.fixture
def source_run(tracking):
    """A finished run with a small `model/` folder: a valid version source for API-level tests."""
    exp = tracking.create_experiment(unique("registry-src"))
    run = tracking.create_run(exp)
    tracking.log_text(run.info.run_id, "weights", "model/weights.txt")
    tracking.set_terminated(run.info.run_id)
    return run


def package_path(client, name: str, version: str) -> str:
    """The artifact path of a version's package (`packages/<model id>/<semver>`)."""
    return client.get_model_version_download_uri(name, version).removeprefix("mlflow-artifacts:/")


def manifest(service, package: str) -> dict:
    """A package's manifest (`<package>.files.json`), read from the emulator's bucket as the local tools sign."""
    import boto3

    from mlreg.signatures import credentials

    info = json.loads((service.data_dir / "endpoint.json").read_text())
    s3 = boto3.client("s3", endpoint_url=info["dynamodb_endpoint"], region_name=info["region"],
                      **credentials(service.data_dir))
    return json.loads(s3.get_object(Bucket="mlreg-local", Key=f"projects/default/{package}.files.json")["Body"].read())


def eventually(check, seconds: float = 120):
    """What the registry worker does in the background: poll until `check()` is truthy."""
    deadline = time.time() + seconds
    while not (result := check()):
        assert time.time() < deadline, "the registry worker did not finish in time"
        time.sleep(0.2)
    return result


def new_version(client, name: str, run, **kwargs):
    return client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id, **kwargs)


# ---- the whole story with a real pyfunc model ------------------------------------------------------

def test_pyfunc_logged_registered_promoted_and_loaded_by_every_uri_form(tracking, service):
    name = unique("adder")
    mlflow.set_experiment(unique("adder-training"))
    with mlflow.start_run() as run:
        log_pyfunc(1, registered_model_name=name)  # version 1
    with mlflow.start_run() as run2:
        log_pyfunc(10)
    v2 = mlflow.register_model(f"runs:/{run2.info.run_id}/model", name)
    v3 = mlflow.register_model(f"runs:/{run2.info.run_id}/model", name, tags={"mlreg.version": "2.0.0"})
    assert (v2.version, v3.version) == ("2", "3")
    assert [tracking.get_model_version(name, v).tags["mlreg.version"] for v in "123"] == ["1.0.0", "1.1.0", "2.0.0"]
    assert all(tracking.get_model_version(name, v).status == "READY" for v in "123")
    assert tracking.get_model_version(name, "1").run_id == run.info.run_id

    tracking.transition_model_version_stage(name, "1", "Production")
    tracking.transition_model_version_stage(name, "3", "Staging")
    tracking.transition_model_version_stage(name, "3", "Production", archive_existing_versions=True)
    assert tracking.get_model_version(name, "1").current_stage == "Archived"
    tracking.set_registered_model_alias(name, "champion", "3")
    tracking.set_registered_model_alias(name, "challenger", "2")

    package = package_path(tracking, name, "3")  # below the model's immutable id, not its name
    assert package.startswith("packages/") and "/2.0.0~" in package and name not in package
    assert predict(f"models:/{name}/1") == [2, 3]
    assert predict(f"models:/{name}/3") == [11, 12]
    assert predict(f"models:/{name}@champion") == [11, 12]
    assert predict(f"models:/{name}@challenger") == [11, 12]
    assert predict(f"models:/{name}@2.0.0") == [11, 12]
    assert predict(f"models:/{name}@v1.0.0") == [2, 3]
    assert predict(f"models:/{name}/Production") == [11, 12]
    assert predict(f"models:/{name}@latest") == [11, 12]
    tracking.delete_registered_model(name)


# ---- semantic versions ----------------------------------------------------------------------------

def test_semver_from_tags_bumped_unique_and_resolving_like_an_alias(tracking, source_run):
    """Semantic versions resolve as aliases do (`models:/X@1.2.0`, get-by-alias) but are not listed
    among the aliases: MLflow's alias editor would try to rename or delete them."""
    name = unique("semver")
    tracking.create_registered_model(name)
    v1 = new_version(tracking, name, source_run)
    v2 = new_version(tracking, name, source_run, tags={"gitlab.version": "3.4.5-rc.1"})
    v3 = new_version(tracking, name, source_run)
    v4 = new_version(tracking, name, source_run, tags={"mlreg.version": "1.0.1"})
    assert [v.tags["mlreg.version"] for v in (v1, v2, v3, v4)] == ["1.0.0", "3.4.5-rc.1", "3.5.0", "1.0.1"]
    assert v2.tags["gitlab.version"] == "3.4.5-rc.1"
    assert tracking.get_model_version(name, "3").aliases == []
    assert tracking.get_model_version_by_alias(name, "3.4.5-rc.1").version == "2"
    assert tracking.get_model_version_by_alias(name, "v1.0.1").version == "4"
    assert tracking.get_registered_model(name).aliases == {}

    with pytest.raises(MlflowException) as bad:
        new_version(tracking, name, source_run, tags={"mlreg.version": "1.2"})
    assert code(bad) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as taken:
        new_version(tracking, name, source_run, tags={"mlreg.version": "3.5.0"})
    assert code(taken) == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as disagree:
        new_version(tracking, name, source_run, tags={"mlreg.version": "9.0.0", "gitlab.version": "9.0.1"})
    assert code(disagree) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as fixed:
        tracking.set_model_version_tag(name, "1", "mlreg.version", "7.0.0")
    assert code(fixed) == "INVALID_PARAMETER_VALUE"
    # Failed creates used no version number: the next is 5.
    assert new_version(tracking, name, source_run).version == "5"


def test_concurrent_creates_get_consecutive_numbers_and_distinct_semvers(tracking, service, source_run):
    name = unique("race")
    tracking.create_registered_model(name)
    body = {"name": name, "source": f"{source_run.info.artifact_uri}/model", "run_id": source_run.info.run_id}
    results, barrier = [], threading.Barrier(16)

    def create():
        # Connect first (a GET, safe to retry), then all 16 POST over their open connections at once.
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {service.token}"
        for attempt in range(5):
            try:
                session.get(f"{service.uri()}/api/2.0/mlflow/registered-models/get", params={"name": name}, timeout=60)
                break
            except requests.ConnectionError:
                time.sleep(0.1 * (attempt + 1))
        barrier.wait()
        results.append(session.post(f"{service.uri()}/api/2.0/mlflow/model-versions/create", json=body, timeout=60))

    threads = [threading.Thread(target=create) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * 16, [r.text for r in results if r.status_code != 200]
    versions = [r.json()["model_version"] for r in results]
    assert sorted(int(v["version"]) for v in versions) == list(range(1, 17))
    semvers = {v["tags"][0]["value"] if v["tags"][0]["key"] == "mlreg.version" else None for v in versions}
    assert len(semvers) == 16 and None not in semvers
    listed = tracking.search_model_versions(f"name = '{name}'")
    assert len(listed) == 16 and {v.tags["mlreg.version"] for v in listed} == semvers


# ---- registered models -------------------------------------------------------------------------------

def test_registered_model_create_get_update_tags_and_errors(tracking):
    name = unique("rm")
    created = tracking.create_registered_model(name, tags={"team": "vision"}, description="first")
    assert (created.name, created.description, created.tags) == (name, "first", {"team": "vision"})
    with pytest.raises(MlflowException) as dup:
        tracking.create_registered_model(name)
    assert code(dup) == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as missing:
        tracking.get_registered_model(unique("nope"))
    assert code(missing) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as bad_name:
        tracking.create_registered_model("a/b")
    assert code(bad_name) == "INVALID_PARAMETER_VALUE"

    assert tracking.update_registered_model(name, description="second").description == "second"
    tracking.set_registered_model_tag(name, "stage", "beta")
    tracking.delete_registered_model_tag(name, "team")
    tracking.delete_registered_model_tag(name, "never-set")  # silent, as MLflow
    got = tracking.get_registered_model(name)
    assert (got.description, got.tags) == ("second", {"stage": "beta"})
    with pytest.raises(MlflowException) as tag_missing_model:
        tracking.set_registered_model_tag(unique("nope"), "k", "v")
    assert code(tag_missing_model) == "RESOURCE_DOES_NOT_EXIST"
    # Each model has a default experiment of the same name: made with the model, or the one that exists
    made = tracking.get_experiment_by_name(name)
    assert made.tags.get("mlreg.registered_model") == name
    existing = tracking.create_experiment(unique("exp-first"))
    first_name = tracking.get_experiment(existing).name
    tracking.create_registered_model(first_name)
    assert tracking.get_experiment_by_name(first_name).experiment_id == existing
    after = tracking.create_experiment(unique("exp-after"))  # the id counter moved past the model's experiment
    assert int(after) > int(made.experiment_id)


def test_search_registered_models_filters_orders_and_pages(tracking, source_run):
    prefix = unique("srch")
    names = [f"{prefix}-{c}" for c in "abcde"]
    for i, n in enumerate(names):
        tracking.create_registered_model(n, tags={"parity": "even" if i % 2 == 0 else "odd"})
    new_version(tracking, names[0], source_run)

    assert [m.name for m in tracking.search_registered_models(f"name = '{names[1]}'")] == [names[1]]
    assert [m.name for m in tracking.search_registered_models(f"name LIKE '{prefix}-%'")] == names
    assert [m.name for m in tracking.search_registered_models(f"name ILIKE '{prefix.upper()}-%'")] == names
    evens = tracking.search_registered_models(f"name LIKE '{prefix}%' AND tags.parity = 'even'")
    assert [m.name for m in evens] == names[0::2]
    assert evens[0].latest_versions[0].version == "1"
    desc = tracking.search_registered_models(f"name LIKE '{prefix}%'", order_by=["name DESC"])
    assert [m.name for m in desc] == names[::-1]
    by_update = tracking.search_registered_models(f"name LIKE '{prefix}%'", order_by=["last_updated_timestamp DESC"])
    assert by_update[0].name == names[0]  # its version bumped it

    page1 = tracking.search_registered_models(f"name LIKE '{prefix}%'", max_results=2)
    page2 = tracking.search_registered_models(f"name LIKE '{prefix}%'", max_results=2, page_token=page1.token)
    page3 = tracking.search_registered_models(f"name LIKE '{prefix}%'", max_results=2, page_token=page2.token)
    assert [m.name for m in [*page1, *page2, *page3]] == names and not page3.token
    with pytest.raises(MlflowException) as too_many:
        tracking.search_registered_models(max_results=1001)
    assert code(too_many) == "INVALID_PARAMETER_VALUE"


def test_rename_moves_versions_aliases_and_packages(tracking, source_run):
    old, new = unique("before"), unique("after")
    tracking.create_registered_model(old, tags={"k": "v"})
    new_version(tracking, old, source_run)
    new_version(tracking, old, source_run)
    tracking.set_registered_model_alias(old, "champion", "2")
    tracking.rename_registered_model(old, new)
    renamed = tracking.get_registered_model(new)
    assert renamed.name == new and renamed.tags == {"k": "v"}
    assert renamed.aliases == {"champion": "2"}
    assert tracking.get_model_version_by_alias(new, "1.1.0").version == "2"
    assert tracking.get_model_version_by_alias(new, "champion").name == new
    path = mlflow.artifacts.download_artifacts(f"models:/{new}/2")
    assert open(f"{path}/weights.txt").read() == "weights"
    with pytest.raises(MlflowException) as gone:
        tracking.get_registered_model(old)
    assert code(gone) == "RESOURCE_DOES_NOT_EXIST"
    other = unique("taken")
    tracking.create_registered_model(other)
    with pytest.raises(MlflowException) as taken:
        tracking.rename_registered_model(new, other)
    assert code(taken) == "RESOURCE_ALREADY_EXISTS"
    # The run stays linked under the new name.
    with pytest.raises(MlflowException):
        tracking.delete_run(source_run.info.run_id)


def test_delete_model_removes_versions_packages_and_run_links(tracking, service, source_run):
    name = unique("doomed")
    tracking.create_registered_model(name)
    new_version(tracking, name, source_run)
    tracking.set_registered_model_alias(name, "champion", "1")
    package = package_path(tracking, name, "1")
    listing = artifacts(service, "GET", params={"path": package})
    assert [f["path"] for f in listing.json()["files"]] == ["weights.txt"]

    with pytest.raises(MlflowException) as linked:
        tracking.delete_run(source_run.info.run_id)
    assert "backs model version" in linked.value.message
    tracking.delete_registered_model(name)
    with pytest.raises(MlflowException) as gone:
        tracking.get_model_version(name, "1")
    assert code(gone) == "RESOURCE_DOES_NOT_EXIST"
    tracking.create_registered_model(name)  # the name is free at once
    tracking.delete_registered_model(name)
    tracking.delete_run(source_run.info.run_id)  # no live version holds it any more
    # the worker removes the versions, run links and packages in the background
    eventually(lambda: artifacts(service, "GET", params={"path": package}).json() == {})
    with pytest.raises(MlflowException) as missing:
        tracking.delete_registered_model(name)
    assert code(missing) == "RESOURCE_DOES_NOT_EXIST"


# ---- model versions ---------------------------------------------------------------------------------

def test_model_version_get_update_tags_delete(tracking, service, source_run):
    name = unique("mv")
    tracking.create_registered_model(name)
    v1 = new_version(tracking, name, source_run, description="first", tags={"a": "1"})
    # one small file: the request copied the package and answered READY (the client did not wait)
    assert (v1.version, v1.description, v1.status, v1.current_stage) == ("1", "first", "READY", "None")
    package = package_path(tracking, name, "1")
    assert [f["path"] for f in artifacts(service, "GET", params={"path": package}).json()["files"]] == ["weights.txt"]
    assert [(f["path"], f["size"]) for f in manifest(service, package)["files"]] == [("weights.txt", 7)]
    assert v1.source == f"{source_run.info.artifact_uri}/model" and v1.run_id == source_run.info.run_id
    assert tracking.update_model_version(name, "1", description="changed").description == "changed"
    tracking.set_model_version_tag(name, "1", "b", "2")
    tracking.delete_model_version_tag(name, "1", "a")
    tracking.delete_model_version_tag(name, "1", "never-set")  # silent
    package_page = f"{service.uri()}/package?name={name}&version=1"  # the web UI's page of its package
    assert tracking.get_model_version(name, "1").tags == {"b": "2", "mlreg.version": "1.0.0",
                                                          "mlreg.package_url": package_page}
    with pytest.raises(MlflowException) as kept:
        tracking.set_model_version_tag(name, "1", "mlreg.package_url", "elsewhere")
    assert code(kept) == "INVALID_PARAMETER_VALUE"
    for call in (lambda: tracking.get_model_version(name, "9"), lambda: tracking.set_model_version_tag(name, "9", "k", "v"),
                 lambda: tracking.update_model_version(name, "9", "x"), lambda: tracking.get_model_version(unique("x"), "1")):
        with pytest.raises(MlflowException) as missing:
            call()
        assert code(missing) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as not_int:
        tracking.get_model_version(name, "one")
    assert code(not_int) == "INVALID_PARAMETER_VALUE"

    new_version(tracking, name, source_run)
    package = package_path(tracking, name, "2")
    tracking.delete_model_version(name, "2")
    assert new_version(tracking, name, source_run).version == "3"  # numbers are never reused
    with pytest.raises(MlflowException) as deleted:
        tracking.get_model_version(name, "2")
    assert code(deleted) == "RESOURCE_DOES_NOT_EXIST"
    assert artifacts(service, "GET", params={"path": package}).json() == {}


def test_model_version_sources_are_checked(tracking, service, source_run):
    name = unique("src")
    tracking.create_registered_model(name)
    other = tracking.create_run(source_run.info.experiment_id)
    for source, run_id in ((f"{source_run.info.artifact_uri}/model", None),
                           (f"{source_run.info.artifact_uri}/model", other.info.run_id),
                           ("/tmp/model", source_run.info.run_id),  # s3://elsewhere: tests/e2e/test_compat.py
                           (f"{source_run.info.artifact_uri}/../../x", source_run.info.run_id)):
        with pytest.raises(MlflowException) as bad:
            tracking.create_model_version(name, source, run_id)
        assert code(bad) == "INVALID_PARAMETER_VALUE", source
    with pytest.raises(MlflowException) as no_model:
        tracking.create_model_version(unique("none"), f"{source_run.info.artifact_uri}/model", source_run.info.run_id)
    assert code(no_model) == "RESOURCE_DOES_NOT_EXIST"
    # runs:/ and models:/<name>/<version> sources are resolved server side.
    v1 = tracking.create_model_version(name, f"runs:/{source_run.info.run_id}/model")
    assert v1.run_id == source_run.info.run_id
    v2 = tracking.create_model_version(name, f"models:/{name}/1")
    assert v2.source == f"models:/{name}/1" and v2.run_id == source_run.info.run_id
    # The packages are the versions' own copies: deleting the source files does not break them.
    root = source_run.info.artifact_uri.split(":", 1)[1]
    assert artifacts(service, "DELETE", f"{root}/model/weights.txt").status_code == 200
    path = mlflow.artifacts.download_artifacts(f"models:/{name}/2")
    assert open(f"{path}/weights.txt").read() == "weights"


def test_stages_latest_versions_and_transitions(tracking, service, source_run):
    name = unique("stages")
    tracking.create_registered_model(name)
    for _ in range(4):
        new_version(tracking, name, source_run)
    tracking.transition_model_version_stage(name, "1", "staging")  # case-insensitive, as MLflow
    tracking.transition_model_version_stage(name, "2", "Production")
    tracking.transition_model_version_stage(name, "3", "Production")
    latest = {v.current_stage: v.version for v in tracking.get_latest_versions(name)}
    assert latest == {"None": "4", "Staging": "1", "Production": "3"}
    assert [v.version for v in tracking.get_latest_versions(name, stages=["Production"])] == ["3"]
    post = api(service, "POST", "registered-models/get-latest-versions", json={"name": name, "stages": ["Staging"]})
    assert [v["version"] for v in post.json()["model_versions"]] == ["1"]

    moved = tracking.transition_model_version_stage(name, "4", "Production", archive_existing_versions=True)
    assert moved.current_stage == "Production"
    assert {v: tracking.get_model_version(name, v).current_stage for v in "1234"} == {
        "1": "Staging", "2": "Archived", "3": "Archived", "4": "Production"}
    with pytest.raises(MlflowException) as bad_stage:
        tracking.transition_model_version_stage(name, "1", "Gold")
    assert code(bad_stage) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as not_active:
        tracking.transition_model_version_stage(name, "1", "Archived", archive_existing_versions=True)
    assert code(not_active) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as missing:
        tracking.get_latest_versions(unique("nope"))
    assert code(missing) == "RESOURCE_DOES_NOT_EXIST"


def test_search_model_versions_filters_orders_and_pages(tracking, source_run):
    a, b = unique("sva"), unique("svb")
    other = tracking.create_run(source_run.info.experiment_id)
    tracking.log_text(other.info.run_id, "w", "model/w.txt")
    for name in (a, b):
        tracking.create_registered_model(name)
    for i in range(3):
        new_version(tracking, a, source_run, tags={"i": str(i)})
    tracking.create_model_version(b, f"{other.info.artifact_uri}/model", other.info.run_id)

    assert [v.version for v in tracking.search_model_versions(f"name = '{a}'")] == ["3", "2", "1"]
    by_run = tracking.search_model_versions(f"run_id = '{other.info.run_id}'")
    assert [(v.name, v.version) for v in by_run] == [(b, "1")]
    assert [v.version for v in tracking.search_model_versions(f"name = '{a}' AND tags.i = '1'")] == ["2"]
    by_source = tracking.search_model_versions(f"source_path = '{other.info.artifact_uri}/model'")
    assert [v.name for v in by_source] == [b]
    assert {v.name for v in tracking.search_model_versions(f"name IN ('{a}', '{b}')")} == {a, b}
    asc = tracking.search_model_versions(f"name = '{a}'", order_by=["version_number ASC"])
    assert [v.version for v in asc] == ["1", "2", "3"]
    page1 = tracking.search_model_versions(f"name = '{a}'", max_results=2, order_by=["version_number ASC"])
    page2 = tracking.search_model_versions(f"name = '{a}'", max_results=2, order_by=["version_number ASC"],
                                           page_token=page1.token)
    assert [v.version for v in [*page1, *page2]] == ["1", "2", "3"] and not page2.token
    with pytest.raises(MlflowException) as bad:
        tracking.search_model_versions("name = ")
    assert code(bad) == "INVALID_PARAMETER_VALUE"


# ---- aliases -----------------------------------------------------------------------------------------

def test_aliases_set_move_get_delete_and_errors(tracking, service, source_run):
    name = unique("alias")
    tracking.create_registered_model(name)
    new_version(tracking, name, source_run)
    new_version(tracking, name, source_run)
    tracking.set_registered_model_alias(name, "champion", "1")
    assert tracking.get_model_version_by_alias(name, "champion").version == "1"
    tracking.set_registered_model_alias(name, "champion", "2")  # moves
    assert tracking.get_model_version(name, "1").aliases == []
    assert tracking.get_model_version(name, "2").aliases == ["champion"]
    assert tracking.get_registered_model(name).aliases == {"champion": "2"}

    with pytest.raises(MlflowException) as unknown:
        tracking.get_model_version_by_alias(name, "nobody")
    assert code(unknown) == "INVALID_PARAMETER_VALUE"
    for reserved in ("latest", "v1"):
        reply = api(service, "POST", "registered-models/alias", json={"name": name, "alias": reserved, "version": "1"})
        assert (reply.status_code, reply.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    with pytest.raises(MlflowException) as no_version:
        tracking.set_registered_model_alias(name, "x", "9")
    assert code(no_version) == "RESOURCE_DOES_NOT_EXIST"
    tracking.delete_registered_model_alias(name, "never-set")  # silent, as MLflow
    with pytest.raises(MlflowException) as no_model:
        tracking.delete_registered_model_alias(unique("nope"), "champion")
    assert code(no_model) == "RESOURCE_DOES_NOT_EXIST"

    tracking.delete_registered_model_alias(name, "champion")
    assert tracking.get_model_version(name, "2").aliases == []
    tracking.set_registered_model_alias(name, "champion", "2")
    tracking.delete_model_version(name, "2")  # takes its aliases with it
    with pytest.raises(MlflowException) as dangling:
        tracking.get_model_version_by_alias(name, "champion")
    assert code(dangling) == "INVALID_PARAMETER_VALUE"


def test_get_by_alias_sees_every_change_to_its_version_at_once(tracking, source_run):
    """get-by-alias answers from the alias item's copy of the version (one read): every write to the
    version must reach it in the same commit."""
    name = unique("fresh")
    tracking.create_registered_model(name)
    new_version(tracking, name, source_run)
    new_version(tracking, name, source_run)
    tracking.set_registered_model_alias(name, "champion", "1")
    tracking.set_registered_model_alias(name, "stable", "1")
    tracking.set_model_version_tag(name, "1", "validated", "yes")
    tracking.update_model_version(name, "1", "the first")
    tracking.transition_model_version_stage(name, "1", "Production")
    tracking.set_registered_model_alias(name, "challenger", "2")
    tracking.delete_registered_model_alias(name, "stable")
    for alias in ("champion", "1.0.0"):
        by_alias = tracking.get_model_version_by_alias(name, alias)
        assert (by_alias.version, by_alias.tags["validated"], by_alias.description, by_alias.current_stage) == (
            "1", "yes", "the first", "Production")
        assert by_alias.aliases == ["champion"]
    tracking.set_registered_model_alias(name, "champion", "2")
    moved = tracking.get_model_version_by_alias(name, "champion")
    assert (moved.version, moved.aliases, "validated" in moved.tags) == ("2", ["challenger", "champion"], False)
    assert tracking.get_model_version_by_alias(name, "challenger").aliases == ["challenger", "champion"]
    tracking.set_model_version_tag(name, "2", "note", "moved")
    assert tracking.get_model_version_by_alias(name, "challenger").tags["note"] == "moved"


# ---- candidate runs ------------------------------------------------------------------------------------

@pytest.mark.skipif(not MLFLOW3, reason="logged models are MLflow 3")
def test_version_without_a_run_gets_a_candidate_run_in_the_model_experiment(tracking):
    name = unique("candidate")
    tracking.create_registered_model(name)
    experiment = tracking.get_experiment_by_name(name)
    logged = tracking.create_logged_model(experiment.experiment_id)  # no source run
    tracking.finalize_logged_model(logged.model_id, "READY")
    mv = tracking.create_model_version(name, f"models:/{logged.model_id}", model_id=logged.model_id)
    assert mv.run_id
    candidate = tracking.get_run(mv.run_id)
    assert candidate.info.experiment_id == experiment.experiment_id
    assert candidate.data.tags["mlreg.candidate_for"] == name
    tracking.log_metric(mv.run_id, "accuracy", 0.9)  # users log to the version through its run
    assert tracking.get_run(mv.run_id).data.metrics == {"accuracy": 0.9}
    tags = tracking.get_logged_model(logged.model_id).tags
    # The version is a number in the tag, as MLflow's server writes it (issue 14, item 6).
    assert json.loads(tags["mlflow.modelVersions"]) == [{"name": name, "version": 1}]
