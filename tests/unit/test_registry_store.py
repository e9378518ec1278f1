"""Registry storage rules on the emulated account: semver rules, the version counter under
contention, and deletes that leave no item or object behind."""

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
    meta = db.get(keys.registered_model(P, "race"), keys.MODEL_SK)
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
    assert (mv["version"], mv["status"], mv["aliases"]) == ("2", "READY", [])
    assert {"key": "mlreg.version", "value": "1.1.0"} in mv["tags"]
    assert sorted(_objects(f"projects/{P}/packages/tidy/1.1.0/")) == [
        f"projects/{P}/packages/tidy/1.1.0/MLmodel", f"projects/{P}/packages/tidy/1.1.0/data/model.pkl"]
    call(models.set_registered_model_alias, {"name": "tidy", "alias": "champion", "version": "2"})
    with pytest.raises(MlflowError) as linked:
        call(runs.delete_run, {"run_id": run_with_files["run_id"]})
    assert linked.value.error_code == "INVALID_STATE"

    call(versions.delete_model_version, {"name": "tidy", "version": "2"})
    partition = {i["sk"]["S"] for i in _everything() if i["pk"]["S"] == keys.registered_model(P, "tidy")}
    assert partition == {"#M", "T#k", "S#1.0.0", keys.version_sk(1)}
    assert _objects(f"projects/{P}/packages/tidy/1.1.0/") == []

    call(models.delete_registered_model, {"name": "tidy"})
    after = {(i["pk"]["S"], i["sk"]["S"]) for i in _everything()}
    leftovers = after - before
    # Only the model's default experiment (its items, name guard and id counter) stays: it may hold runs.
    assert {pk for pk, _ in leftovers} == {keys.experiment(P, "1"), keys.experiment_name_guard(P, "tidy"), keys.project(P)}
    assert _objects(f"projects/{P}/packages/") == []
    call(runs.delete_run, {"run_id": run_with_files["run_id"]})  # no link holds it any more


def test_rename_moves_every_item_and_the_run_link(run_with_files):
    from shared.registry import models, versions

    call(models.create_registered_model, {"name": "old"})
    call(versions.create_model_version, {"name": "old", "source": f"{run_with_files['artifact_uri']}/model",
                                         "run_id": run_with_files["run_id"]})
    call(models.rename_registered_model, {"name": "old", "new_name": "new"})
    items = _everything()
    assert not [i for i in items if i["pk"]["S"] == keys.registered_model(P, "old")]
    run_items = {i["sk"]["S"] for i in items if i["pk"]["S"] == keys.run(P, run_with_files["run_id"])}
    assert "L#new#1" in run_items and "L#old#1" not in run_items
    assert _objects(f"projects/{P}/packages/old/") == []
    assert len(_objects(f"projects/{P}/packages/new/1.0.0/")) == 2


def _assert_alias_copies_match(name: str) -> None:
    """Every alias item carries exactly its version (get-by-alias answers from it alone)."""
    from shared.registry import items

    partition = db.query_all(keys.registered_model(P, name), consistent=True)
    versions = {i["version"]: items.strip(i) for i in partition if i["sk"].startswith("V#")}
    aliases = [i for i in partition if i["sk"].startswith("A#")]
    for alias in aliases:
        copy, version = items.aliased_version(alias), versions[alias["version"]]
        drop = ("actor", "renamed_from")  # who last wrote, and a rename's mark: per item, not per version
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
    assert (by_alias["current_stage"], by_alias["tags"][-1], by_alias["aliases"]) == (
        "Archived", {"key": "k", "value": "w"}, ["b"])

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
