"""The registry worker's jobs on the emulated account: a purge of thousands of versions that runs out
of time continues where it stopped, and a repeated or late job changes nothing."""

from __future__ import annotations

from shared import db, keys
from shared.registry import items, packages, worker
from tests.unit.test_registry_store import P, _id, call, registry, run_with_files  # noqa: F401 - fixtures


def test_a_purge_longer_than_one_run_continues_and_ends_purged(run_with_files, monkeypatch):
    from shared.registry import models

    call(models.create_registered_model, {"name": "many"})
    model_id = _id("many")
    puts = []
    for n in range(1, 2001):
        mv = {"version": n, "semver": f"1.{n}.0", "source": "s3://team/m", "run_id": run_with_files["run_id"],
              "current_stage": "None", "status": "READY", "last_updated_timestamp": n, "rev": 0, "tags": {}}
        puts += [items.version_item(P, model_id, mv), items.semver_item(P, model_id, mv["semver"], n),
                 items.stage_item(P, model_id, "None", n), items.link_item(P, mv["run_id"], model_id, n)]
    db.batch_put(puts)
    call(models.delete_registered_model, {"name": "many"})
    job = {"project": P, "model_id": model_id}
    monkeypatch.setattr(worker, "PURGE_PAGE", 400)
    runs, clock = 0, iter(range(10**6))
    while True:  # each run has time for three pages, as a Lambda whose 15 minutes run out
        runs += 1
        start = next(clock)
        try:
            worker.purge(job, lambda: worker.RESERVE_SECONDS + 3 - (next(clock) - start))
            break
        except packages.OutOfTime:
            continue
    assert runs > 2
    assert [i["sk"] for i in db.query_all(keys.registered_model(P, model_id), consistent=True)] == [keys.MODEL_SK]
    assert db.query_all(keys.run(P, run_with_files["run_id"]), "L#", consistent=True) == []
    assert items.load_meta(P, model_id)["purged_at"]
    worker.purge(job, lambda: 900.0)  # a late repeat of the job: nothing to do
    assert items.load_meta(P, model_id)["purged_at"]


def test_a_package_job_for_a_deleted_or_finished_version_does_nothing(run_with_files):
    from shared.registry import models, versions

    call(models.create_registered_model, {"name": "quick"})
    source = {"name": "quick", "source": f"{run_with_files['artifact_uri']}/model", "run_id": run_with_files["run_id"]}
    call(versions.create_model_version, source)
    model_id = _id("quick")
    job = {"project": P, "model_id": model_id, "version": 1, "package": items.get_version(P, model_id, 1)["package"]}
    worker.package(job, lambda: 900.0)
    ready = items.get_version(P, model_id, 1)
    assert (ready["status"], ready["package_files"], ready["package_bytes"]) == ("READY", 2, 2)
    worker.package(job, lambda: 900.0)  # delivered twice: the version is READY already
    assert items.get_version(P, model_id, 1)["rev"] == ready["rev"]
    call(versions.delete_model_version, {"name": "quick", "version": "1"})
    worker.package(job, lambda: 900.0)  # a job after the delete removes what a copy might have written
    assert packages.objects(f"projects/{P}/packages/{model_id}/") == []


def test_the_jobs_a_table_still_calls_for():
    """`mlreg serve` queues them again at start (its emulated queue does not outlive it)."""
    pk = keys.registered_model(P, "m1")
    found = worker.pending_jobs([
        {"pk": pk, "sk": keys.version_sk(1), "version": 1, "status": items.PENDING, "package": "packages/m1/1.0.0"},
        {"pk": pk, "sk": keys.version_sk(2), "version": 2, "status": items.READY},
        {"pk": pk, "sk": keys.MODEL_SK, "deleted_at": 5},
        {"pk": keys.registered_model(P, "m2"), "sk": keys.MODEL_SK, "deleted_at": 5, "purged_at": 6},
        {"pk": keys.registered_model(P, "m3"), "sk": keys.MODEL_SK},
        {"pk": keys.run(P, "r"), "sk": keys.RUN_SK, "status": items.PENDING},
    ])
    assert found == [{"job": "package", "project": P, "model_id": "m1", "version": 1, "package": "packages/m1/1.0.0"},
                     {"job": "purge", "project": P, "model_id": "m1"}]
