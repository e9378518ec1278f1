"""Registry storage rules on the emulated account: semver rules, the version counter under
contention, the registry worker's jobs, renames that touch a fixed number of items, and deletes that
leave no item or object behind."""

from __future__ import annotations

import json
import os
import threading

import boto3
import pytest

from shared import db, http, keys
from shared.errors import MlflowError
from shared.http import Request
from shared.routes import ROUTES, Role

P = "unit"


def call(handler, body: dict | None = None, method: str = "POST", **query):
    """The handler with its route's message, parsed from `body` (or `query`) as the dispatcher does."""
    route = next(r for r in ROUTES if http._resolve(r.handler) is handler)
    req = Request(project=P, role=Role.ADMIN, token_id="t", method=method, path_params={},
                  query={k: [v] for k, v in query.items()}, headers={}, body=json.dumps(body or {}).encode(),
                  base_url="http://localhost")
    message = http._resolve(route.message)
    return handler(req, message.parse(req.fields(message)))


@pytest.fixture
def registry(aws):
    from shared.registry import packages
    from shared.tracking import experiments

    packages.client.cache_clear()
    experiments.insert(P, "Default", {}, experiment_id="0")
    yield
    packages.client.cache_clear()


@pytest.fixture
def run_with_files(registry):
    from shared.tracking import runs

    created = call(runs.create_run, {"experiment_id": "0"})["run"]["info"]
    s3 = boto3.client("s3")
    for name in ("MLmodel", "data/model.pkl"):
        s3.put_object(Bucket=os.environ["MLREG_BUCKET"], Key=f"projects/{P}/artifacts/0/{created['run_id']}/artifacts/model/{name}",
                      Body=b"x")
    return created


def _id(name: str) -> str:
    from shared.registry import identity

    return identity.resolve(P, name)


def _copy_packages() -> None:
    """What the registry worker does for every pending version (deployed: fed by the stream)."""
    from shared.registry import worker

    for item in _everything():
        record = {"dynamodb": {"Keys": {"pk": item["pk"], "sk": item["sk"]}, "NewImage": item}}
        if (job := worker.job_of(record)) and job["job"] == "package":
            worker.package(job, lambda: 900.0)


def _purge(model_id: str) -> None:
    from shared.registry import worker

    worker.purge({"project": P, "model_id": model_id}, lambda: 900.0)


def test_semver_rules():
    from shared.registry.versions import highest, next_semver, requested_semver

    assert next_semver(None) == "1.0.0"
    assert next_semver("1.4.2") == "1.5.0"
    assert next_semver("2.0.0-rc.1+b7") == "2.1.0"
    assert highest("1.10.0", "1.9.0") == "1.10.0" and highest(None, "0.1.0") == "0.1.0"
    assert requested_semver({"gitlab.version": "1.2.3"}) == "1.2.3"
    assert requested_semver({"mlreg.version": "1.2.3", "gitlab.version": "1.2.3"}) == "1.2.3"
    for bad in ("1.2", "v1.2.3", "01.2.3", "latest"):
        with pytest.raises(MlflowError) as err:
            requested_semver({"mlreg.version": bad})
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def _serialised_moto():
    """moto's DynamoDB is not thread-safe; DynamoDB itself serialises conflicting transactions.
    Serialise moto's handler so the test observes our retry logic, not moto's races."""
    from moto.dynamodb.responses import DynamoHandler

    lock, original = threading.RLock(), DynamoHandler.call_action

    def call_action(self, *args, **kwargs):
        with lock:
            return original(self, *args, **kwargs)

    return DynamoHandler, original, call_action


def test_counter_gives_distinct_consecutive_versions_under_contention(run_with_files):
    from shared.registry import models, versions

    call(models.create_registered_model, {"name": "race"})
    body = {"name": "race", "source": f"{run_with_files['artifact_uri']}/model", "run_id": run_with_files["run_id"]}
    handler_cls, original, locked = _serialised_moto()
    handler_cls.call_action = locked
    results, errors = [], []

    def create():
        try:
            results.append(call(versions.create_model_version, body)["model_version"])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=create) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    finally:
        handler_cls.call_action = original
    assert not errors
    assert sorted(int(v["version"]) for v in results) == list(range(1, 9))
    assert len({t["value"] for v in results for t in v["tags"] if t["key"] == "mlreg.version"}) == 8
    meta = db.get(keys.registered_model(P, _id("race")), keys.MODEL_SK)
    assert (meta["last_version"], meta["latest_semver"]) == (8, "1.7.0")


def _everything() -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=os.environ["MLREG_TABLE"])["Items"]


def _objects(prefix: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=os.environ["MLREG_BUCKET"], Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_version_copies_package_and_delete_leaves_nothing(run_with_files):
    from shared.registry import models, versions
    from shared.tracking import runs

    before = {(i["pk"]["S"], i["sk"]["S"]) for i in _everything()}
    call(models.create_registered_model, {"name": "tidy", "tags": [{"key": "k", "value": "v"}]})
    source = {"name": "tidy", "source": f"{run_with_files['artifact_uri']}/model", "run_id": run_with_files["run_id"]}
    call(versions.create_model_version, source)
    mv = call(versions.create_model_version, source)["model_version"]
    # two small files: the request copies them and answers READY (no worker involved)
    assert (mv["version"], mv["status"], mv["aliases"]) == ("2", "READY", [])
    assert {"key": "mlreg.version", "value": "1.1.0"} in mv["tags"]
    model_id = _id("tidy")
    package = f"projects/{P}/{_version_item(model_id, 2)['package']}"
    assert package.startswith(f"projects/{P}/packages/{model_id}/1.1.0~")
    assert sorted(_objects(f"{package}/")) == [f"{package}/MLmodel", f"{package}/data/model.pkl"]
    manifest = json.loads(boto3.client("s3").get_object(Bucket=os.environ["MLREG_BUCKET"],
                                                        Key=f"{package}.files.json")["Body"].read())
    import hashlib
    assert manifest["files"][0] == {"path": "MLmodel", "size": 1, "sha256": hashlib.sha256(b"x").hexdigest(),
                                    "part_sha256": None, "part_size": None}
    call(models.set_registered_model_alias, {"name": "tidy", "alias": "champion", "version": "2"})
    with pytest.raises(MlflowError) as linked:
        call(runs.delete_run, {"run_id": run_with_files["run_id"]})
    assert linked.value.error_code == "INVALID_STATE"

    call(versions.delete_model_version, {"name": "tidy", "version": "2"})
    partition = {i["sk"]["S"] for i in _everything() if i["pk"]["S"] == keys.registered_model(P, model_id)}
    assert partition == {"#M", "T#k", "VS#1.0.0", "VT#None#0000000001", keys.version_sk(1)}
    assert _objects(f"{package}/") == []

    call(models.delete_registered_model, {"name": "tidy"})
    with pytest.raises(MlflowError):  # gone for readers at once, the name free
        call(versions.get_model_version, method="GET", name="tidy", version="1")
    _purge(model_id)
    _purge(model_id)  # idempotent: a repeated job finds nothing to do
    after = {(i["pk"]["S"], i["sk"]["S"]) for i in _everything()}
    leftovers = after - before
    # Only the model's default experiment (its items, name guard and id counter) stays: it may hold runs;
    # and the model's meta item, marked purged, until its TTL removes it (late events read its name).
    assert {pk for pk, _ in leftovers} == {keys.experiment(P, "1"), keys.experiment_name_guard(P, "tidy"), keys.project(P),
                                           keys.registered_model(P, model_id)}
    tombstone = db.get(keys.registered_model(P, model_id), keys.MODEL_SK)
    assert tombstone["purged_at"] and tombstone["expires_at"] and "g1pk" not in tombstone
    assert _objects(f"projects/{P}/packages/") == []
    call(runs.delete_run, {"run_id": run_with_files["run_id"]})  # no link holds it any more


def _version_item(model_id: str, number: int) -> dict:
    return db.get(keys.registered_model(P, model_id), keys.version_sk(number))


def _job_of(model_id: str, number: int) -> dict | None:
    from shared.registry import worker

    item = db.to_item(_version_item(model_id, number))
    return worker.job_of({"dynamodb": {"Keys": {"pk": item["pk"], "sk": item["sk"]}, "NewImage": item}})


def test_small_source_is_copied_before_the_version_is_written_ready_and_no_job_follows(run_with_files):
    from shared.registry import models, versions

    call(models.create_registered_model, {"name": "inline"})
    mv = call(versions.create_model_version, {"name": "inline", "source": f"{run_with_files['artifact_uri']}/model",
                                              "run_id": run_with_files["run_id"]})["model_version"]
    assert mv["status"] == "READY"
    model_id = _id("inline")
    item = _version_item(model_id, 1)
    assert (item["status"], item["package_files"], item["package_bytes"]) == ("READY", 2, 2)
    assert "package_from" not in item and "inline_until" not in item
    assert _job_of(model_id, 1) is None  # inserted READY: the stream asks the worker for nothing
    package = f"projects/{P}/{item['package']}"
    assert _objects(f"{package}/") == [f"{package}/MLmodel", f"{package}/data/model.pkl"]


def test_an_attempt_that_loses_its_transaction_removes_its_own_copy_and_leaves_the_winners(run_with_files,
                                                                                            monkeypatch):
    """Two creators read the same counter: the first attempt of the second copies, loses the
    transaction to the first, removes what it copied, and wins the next number on its retry."""
    from shared.registry import models, packages, versions

    call(models.create_registered_model, {"name": "race"})
    source = {"name": "race", "source": f"{run_with_files['artifact_uri']}/model", "run_id": run_with_files["run_id"]}
    small_source, raced = packages.small_source, []

    def listing_then_a_rival(prefix):  # the model's meta is read: the rival commits version 1 now
        if not raced:  # once: the rival's own listing passes straight through
            raced.append(None)
            raced[0] = call(versions.create_model_version, source)["model_version"]
        return small_source(prefix)

    monkeypatch.setattr(packages, "small_source", listing_then_a_rival)
    mv = call(versions.create_model_version, source)["model_version"]
    assert (raced[0]["version"], mv["version"], mv["status"]) == ("1", "2", "READY")
    model_id = _id("race")
    paths = [_version_item(model_id, n)["package"] for n in (1, 2)]
    assert paths[0].split("/")[-1].startswith("1.0.0~") and paths[1].split("/")[-1].startswith("1.1.0~")
    # the losing attempt's copy (1.0.0 below a path of its own) is gone; both packages are whole
    assert sorted({key.split("/")[4] for key in _objects(f"projects/{P}/packages/{model_id}/")}) == sorted(
        [paths[0].split("/")[-1], paths[0].split("/")[-1] + ".files.json",
         paths[1].split("/")[-1], paths[1].split("/")[-1] + ".files.json"])


def test_big_source_and_unfinished_request_copy_are_left_to_the_worker(run_with_files, monkeypatch):
    from shared.registry import models, packages, versions

    call(models.create_registered_model, {"name": "big"})
    source = {"name": "big", "source": f"{run_with_files['artifact_uri']}/model", "run_id": run_with_files["run_id"]}
    monkeypatch.setattr(packages, "INLINE_MAX_FILES", 1)  # the source's 2 files are more than the bound
    assert call(versions.create_model_version, source)["model_version"]["status"] == "PENDING_REGISTRATION"
    monkeypatch.setattr(packages, "INLINE_MAX_FILES", 16)
    monkeypatch.setattr(packages, "INLINE_SECONDS", -1.0)  # no copy may start: the request's copy stops at once
    assert call(versions.create_model_version, source)["model_version"]["status"] == "PENDING_REGISTRATION"
    model_id = _id("big")
    assert _objects(f"projects/{P}/packages/{model_id}/") == []
    assert _job_of(model_id, 1)["job"] == _job_of(model_id, 2)["job"] == "package"
    _copy_packages()
    for number in (1, 2):
        assert call(versions.get_model_version, method="GET", name="big", version=str(number))["model_version"][
            "status"] == "READY"
        item = _version_item(model_id, number)
        assert len(_objects(f"projects/{P}/{item['package']}/")) == 2 and "package_from" not in item


def test_rename_swaps_name_guards_and_touches_nothing_else(run_with_files):
    from shared.registry import models, versions

    call(models.create_registered_model, {"name": "old"})
    call(versions.create_model_version, {"name": "old", "source": f"{run_with_files['artifact_uri']}/model",
                                         "run_id": run_with_files["run_id"]})
    _copy_packages()
    model_id = _id("old")
    before = {(i["pk"]["S"], i["sk"]["S"]): i for i in _everything()}
    objects = _objects(f"projects/{P}/packages/")
    call(models.rename_registered_model, {"name": "old", "new_name": "new"})
    after = {(i["pk"]["S"], i["sk"]["S"]): i for i in _everything()}
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {(keys.model_name_guard(P, "old"), keys.GUARD_SK), (keys.model_name_guard(P, "new"), keys.GUARD_SK),
                       (keys.registered_model(P, model_id), keys.MODEL_SK)}
    assert _objects(f"projects/{P}/packages/") == objects  # packages stay where they are
    assert _id("new") == model_id
    got = call(versions.get_model_version, method="GET", name="new", version="1")["model_version"]
    assert got["name"] == "new" and got["status"] == "READY"
    assert {"key": "mlreg.package_url", "value": "http://localhost/projects/unit/package?name=new&version=1"} in got["tags"]


def _assert_alias_copies_match(name: str) -> None:
    """Every alias item carries exactly its version (get-by-alias answers from it alone)."""
    from shared.registry import items

    partition = db.query_all(keys.registered_model(P, _id(name)), consistent=True)
    versions = {i["version"]: items.strip(i) for i in partition if i["sk"].startswith("V#")}
    aliases = [i for i in partition if i["sk"].startswith("A#")]
    for alias in aliases:
        copy, version = items.aliased_version(alias), versions[alias["version"]]
        drop = ("actor",)  # who last wrote: per item, not per version
        assert {k: v for k, v in copy.items() if k not in drop} == {k: v for k, v in version.items() if k not in drop}
        assert alias["alias"] in version["aliases"]
    assert sum(len(v.get("aliases") or ()) for v in versions.values()) == len(aliases)


def test_alias_items_carry_their_version_through_every_write(run_with_files):
    from shared.registry import models, versions

    call(models.create_registered_model, {"name": "copies"})
    source = {"name": "copies", "source": f"{run_with_files['artifact_uri']}/model", "run_id": run_with_files["run_id"]}
    for _ in range(3):
        call(versions.create_model_version, source)
    steps = [
        (models.set_registered_model_alias, {"alias": "a", "version": "1"}),
        (models.set_registered_model_alias, {"alias": "b", "version": "1"}),
        (models.set_registered_model_alias, {"alias": "c", "version": "2"}),
        (versions.set_model_version_tag, {"version": "1", "key": "k", "value": "v"}),
        (versions.set_model_version_tag, {"version": "2", "key": "k", "value": "w"}),
        (versions.delete_model_version_tag, {"version": "1", "key": "k"}),
        (versions.update_model_version, {"version": "1", "description": "first"}),
        (versions.transition_model_version_stage, {"version": "2", "stage": "Production"}),
        (versions.transition_model_version_stage, {"version": "1", "stage": "Production",
                                                   "archive_existing_versions": True}),
        (models.set_registered_model_alias, {"alias": "b", "version": "2"}),
        (models.set_registered_model_alias, {"alias": "a", "version": "3"}),
        (models.delete_registered_model_alias, {"alias": "c"}),
        (versions.delete_model_version, {"version": "3"}),
    ]
    for handler, body in steps:
        call(handler, {"name": "copies", **body})
        _assert_alias_copies_match("copies")
    by_alias = call(models.get_model_version_by_alias, {"name": "copies", "alias": "b"})["model_version"]
    assert by_alias == call(versions.get_model_version, {"name": "copies", "version": "2"})["model_version"]
    assert (by_alias["current_stage"], by_alias["aliases"]) == ("Archived", ["b"])
    assert {"key": "k", "value": "w"} in by_alias["tags"]

    call(models.rename_registered_model, {"name": "copies", "new_name": "renamed"})
    _assert_alias_copies_match("renamed")
    moved = call(models.get_model_version_by_alias, {"name": "renamed", "alias": "b"})["model_version"]
    assert moved == call(versions.get_model_version, {"name": "renamed", "version": "2"})["model_version"]
    assert moved["name"] == "renamed"


def test_alias_copies_stay_exact_under_concurrent_writers(run_with_files):
    """Tag writers on both versions race alias moves between them: nothing is lost, copies stay exact."""
    from shared.registry import models, versions

    call(models.create_registered_model, {"name": "busy"})
    source = {"name": "busy", "source": f"{run_with_files['artifact_uri']}/model", "run_id": run_with_files["run_id"]}
    call(versions.create_model_version, source)
    call(versions.create_model_version, source)
    call(models.set_registered_model_alias, {"name": "busy", "alias": "stable", "version": "1"})
    handler_cls, original, locked = _serialised_moto()
    errors = []

    def tagger(version: str, n: int):
        for i in range(n):
            try:
                call(versions.set_model_version_tag, {"name": "busy", "version": version, "key": f"k{i}", "value": str(i)})
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    def mover(n: int):
        for i in range(n):
            try:
                call(models.set_registered_model_alias, {"name": "busy", "alias": "champion", "version": str(1 + i % 2)})
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    handler_cls.call_action = locked
    try:
        threads = [threading.Thread(target=tagger, args=("1", 12)), threading.Thread(target=tagger, args=("2", 12)),
                   threading.Thread(target=mover, args=(12,)), threading.Thread(target=mover, args=(11,))]
        [t.start() for t in threads]
        [t.join() for t in threads]
    finally:
        handler_cls.call_action = original
    assert not errors
    _assert_alias_copies_match("busy")
    for version in ("1", "2"):
        tags = call(versions.get_model_version, {"name": "busy", "version": version})["model_version"]["tags"]
        assert {t["key"] for t in tags} >= {f"k{i}" for i in range(12)}
