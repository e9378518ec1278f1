"""Upgrades of stored data (mlreg/migrations.py): `mlreg serve` upgrades what it loads, `mlreg migrate`
a deployed table; both run the same steps, once."""

from __future__ import annotations

import io

from mlreg import migrations
from shared import db

PK = "P#p#M#model"
VERSION = {"pk": PK, "sk": "V#0000000002", "g1pk": "P#p#VERSIONS", "g1sk": "model#V#0000000002", "name": "model",
           "version": 2, "current_stage": "Staging", "tags": {"k": "v"}, "aliases": {"champion"}}
ALIAS = {"pk": PK, "sk": "A#champion", "g1pk": "P#p#MODELS", "g1sk": "model#A#champion", "model_name": "model",
         "alias": "champion", "version": 2}
RUN = {"pk": "P#p#R#abc", "sk": "#R", "run_id": "abc", "params": {}, "tags": {}, "metrics": {}, "rev": 0}
OTHER_PROJECT_RUN = {"pk": "P#q#R#def", "sk": "#R", "run_id": "def", "params": {}, "tags": {}, "metrics": {}, "rev": 3}


def _old_items() -> list[dict]:
    return [dict(VERSION), dict(ALIAS), dict(RUN), dict(OTHER_PROJECT_RUN)]


def _expected_alias() -> dict:
    return {**ALIAS, "name": "model", "current_stage": "Staging", "tags": {"k": "v"}, "aliases": {"champion"}, "rev": 0}


def test_versions_count_writes_and_aliases_carry_their_version():
    change = migrations.apply(migrations.STEPS, _old_items())
    assert sorted(change.puts, key=lambda i: i["sk"]) == [_expected_alias(), {**VERSION, "rev": 0}]
    assert change.deletes == []


def test_a_second_run_changes_nothing():
    once = migrations.apply(migrations.STEPS, _old_items())
    upgraded = {(i["pk"], i["sk"]): i for i in [*_old_items(), *once.puts]}
    assert not migrations.apply(migrations.STEPS, list(upgraded.values()))


def test_steps_never_edit_what_they_read():
    items = _old_items()
    migrations.apply(migrations.STEPS, items)
    assert items == _old_items()


def test_snapshot_of_an_older_mlreg_is_upgraded_and_marked():
    saved = [_as_saved(i) for i in _old_items()]
    loaded, changes = migrations.upgrade_snapshot(saved)
    by_key = {(i["pk"]["S"], i["sk"]["S"]): db.from_item(i) for i in loaded}
    assert by_key[(PK, "A#champion")] == _expected_alias()
    assert by_key[(PK, "V#0000000002")]["rev"] == 0
    assert by_key[("P#q#R#def", "#R")] == OTHER_PROJECT_RUN
    assert by_key[(migrations.MARKER_PK, migrations.MARKER_SK)]["applied"] == [s.name for s in migrations.STEPS]
    # what changed, to be made durable: the two upgraded items and the marker, each under its key
    assert sorted(key["sk"]["S"] for key, _ in changes) == [migrations.MARKER_SK, "A#champion", "V#0000000002"]
    assert all(item["pk"] == key["pk"] and item["sk"] == key["sk"] for key, item in changes)
    # loading the upgraded data again passes it through as it is (no conversion: fast restarts)
    again, no_changes = migrations.upgrade_snapshot(loaded)
    assert again is loaded and no_changes == []


def test_saved_binary_values_stay_binary():
    """The journal saves binary values as on DynamoDB's wire (base64 text)."""
    ordered = {**RUN, "g3sk": b"\x01\xff"}
    (item, mark), _ = migrations.upgrade_snapshot([_as_saved(ordered)])
    assert db.from_item(item) == ordered


def test_a_new_data_directory_is_marked_current():
    (mark,), changes = migrations.upgrade_snapshot([])
    assert db.from_item(mark)["applied"] == [s.name for s in migrations.STEPS]
    assert [item for _, item in changes] == [mark]


def _as_saved(item: dict) -> dict:
    """An item as the local service saves it: DynamoDB JSON with binary values in base64."""
    import base64

    return {k: ({"B": base64.b64encode(v["B"]).decode()} if "B" in v else v) for k, v in db.to_item(item).items()}


def test_migrate_a_deployed_table(aws):
    db.batch_put(_old_items())
    out = io.StringIO()
    assert migrations.migrate_table(dry_run=True, out=out) == 0
    assert "4 items read, 2 to write, 0 to delete (dry run" in out.getvalue()
    assert db.get(PK, "A#champion") == ALIAS

    assert migrations.migrate_table(out=out) == 0
    assert db.get(PK, "A#champion") == _expected_alias()
    assert db.get(PK, "V#0000000002")["rev"] == 0
    assert db.get(migrations.MARKER_PK, migrations.MARKER_SK)["applied"] == [s.name for s in migrations.STEPS]

    again = io.StringIO()
    assert migrations.migrate_table(out=again) == 0
    assert "the table is current" in again.getvalue()


# ---- 2026-12-run-summaries (issue 15) ----------------------------------------------------------------

OLD_RUN_PK = "P#p#R#r1"
OLD_COLLECTION = {"g1pk": "P#p#E#1#RUNS"}


def _old_run() -> list[dict]:
    """A run as the mlreg before summaries wrote it: every item in the runs collection (gsi1), the meta
    item also in gsi2 by start time, and one history item per point."""
    from shared import doubles

    def child(sk: str, **attrs) -> dict:
        return {"pk": OLD_RUN_PK, "sk": sk, **OLD_COLLECTION, "g1sk": f"r1#{sk}", **attrs}

    point_sk = "{:016x}#{:016x}#{}".format
    history = [{"pk": f"{OLD_RUN_PK}#H#loss", "sk": point_sk(ts + (1 << 63), step + (1 << 63), "x"), "key": "loss",
                "value": doubles.encode(value), "timestamp": ts, "step": step}
               for ts, step, value in [(5, 1, 0.5), (3, 0, float("nan")), (9, 2, -0.0)]]
    return [
        child("#R", run_id="r1", run_uuid="r1", run_name="n", experiment_id="1", user_id="u", status="FINISHED",
              start_time=7, end_time=8, artifact_uri="s3://b/1/r1/artifacts", lifecycle_stage="active",
              g2pk="P#p#E#1#START", g2sk="x#r1", g3pk="P#p#E#1#O#start#", g3sk=b"\x01"),
        child("P#lr", key="lr", value="0.1"), child("T#team", key="team", value="x"),
        child("M#loss", key="loss", value=doubles.encode(-0.0), timestamp=9, step=2, ord="o"),
        child("D#d#x", dataset={"name": "d", "digest": "x"}, tags=[]),
        child("I#m-1", model_id="m-1"), child("O#m-2", model_id="m-2", step=3),
        {"pk": OLD_RUN_PK, "sk": "L#model#1", "model_name": "model", "version": 1},  # no collection: kept
        *history,
    ]


def test_old_runs_get_summaries_and_history_chunks():
    from shared import keys
    from shared.tracking import history, runs, summary

    old = _old_run()
    change = migrations.apply(migrations.STEPS, old)
    puts = {(i["pk"], i["sk"]): i for i in change.puts}
    meta = puts[(OLD_RUN_PK, "#R")]
    assert summary.complete(meta) and meta["rev"] == 0
    assert (meta["g2pk"], meta["g2sk"]) == ("P#p#E#1#RUNS", keys.runs_collection_sk(7, "r1")) and "g1pk" not in meta
    run = runs.from_metas("p", [meta])[0]
    assert runs.to_json(run) == runs.to_json(runs.assemble(old))  # the summary holds what the partition holds
    assert run["params"] == {"lr": "0.1"} and run["tags"] == {"team": "x"}
    assert meta["metrics"]["loss"][1:] == [9, 2]
    assert not any("g1pk" in i for i in change.puts)  # no run item stays in gsi1's runs collection
    chunks = [i for i in change.puts if "#H#" in i["pk"]]
    assert len(chunks) == 1 and sorted(change.deletes) == sorted((i["pk"], i["sk"]) for i in old if "#H#" in i["pk"])
    got = history.points(chunks)
    assert [(ts, step) for ts, step, _ in got] == [(3, 0), (5, 1), (9, 2)]
    assert got[0][2] != got[0][2] and got[1][2] == 0.5 and str(got[2][2]) == "-0.0"  # NaN and -0.0 exactly


def test_run_summaries_step_is_idempotent_and_pure():
    old = _old_run()
    once = migrations.apply(migrations.STEPS, old)
    assert old == _old_run()
    current = {(i["pk"], i["sk"]): i for i in old}
    for key in once.deletes:
        current.pop(key)
    current.update({(i["pk"], i["sk"]): i for i in once.puts})
    assert not migrations.apply(migrations.STEPS, list(current.values()))


def test_a_run_too_big_for_a_summary_is_marked_overflow():
    from shared.tracking import runs

    old = _old_run()
    old += [{"pk": OLD_RUN_PK, "sk": f"T#big{i}", **OLD_COLLECTION, "g1sk": f"r1#T#big{i}", "key": f"big{i}",
             "value": "v" * 100_000} for i in range(4)]
    meta = next(i for i in migrations.apply(migrations.STEPS, old).puts if i["sk"] == "#R")
    assert meta["overflow"] and "tags" not in meta
    run = runs.assemble([meta, *old[1:]])
    assert len(run["tags"]) == 5  # readers take the partition's items


def test_an_old_run_written_to_before_the_step_ran_still_gets_its_summary():
    """Deployed code writes to an old run's meta item before `mlreg migrate` runs: `rev` moves, no
    fields are added (the run's items hold them); the step still summarises it, keeping `rev`."""
    old = _old_run()
    old[0] = {**old[0], "rev": 2, "status": "KILLED"}
    meta = next(i for i in migrations.apply(migrations.STEPS, old).puts if i["sk"] == "#R")
    assert meta["rev"] == 2 and meta["status"] == "KILLED" and meta["params"] == {"lr": "0.1"}


# ---- 2026-12-model-ids (registry, issue 16) -------------------------------------------------------------

def _model_ids_step():
    return [s for s in migrations.STEPS if s.name == migrations.MODEL_IDS]


def _old_model() -> list[dict]:
    """A model of the layout before ids, as the registry wrote it (keys by name)."""
    pk, page = "P#p#M#resnet", "http://h/projects/p/package?name=resnet&version="
    named = {"g1pk": "P#p#MODELS", "model_name": "resnet"}
    v1 = {"pk": pk, "sk": "V#0000000001", "g1pk": "P#p#VERSIONS", "g1sk": "resnet#V#0000000001", "g2pk": "P#p#VRUN#r1",
          "g2sk": "resnet#V#0000000001", "name": "resnet", "version": 1, "semver": "1.0.0", "run_id": "r1",
          "current_stage": "Production", "status": "READY", "rev": 3, "aliases": {"champion"}, "last_updated_timestamp": 7,
          "tags": {"mlreg.version": "1.0.0", "mlreg.package_url": page + "1", "k": "v"}}
    v2 = {"pk": pk, "sk": "V#0000000002", "g1pk": "P#p#VERSIONS", "g1sk": "resnet#V#0000000002", "name": "resnet",
          "version": 2, "semver": "1.1.0", "run_id": "x", "run_linked": False, "current_stage": "None",
          "status": "READY", "rev": 0, "last_updated_timestamp": 8, "storage_location": "s3://team/m",
          "tags": {"mlreg.version": "1.1.0", "mlreg.package": "external"}}
    return [
        {"pk": pk, "sk": "#M", **named, "g1sk": "resnet##M", "name": "resnet", "last_version": 2, "latest_semver": "1.1.0",
         "experiment_id": "3", "creation_timestamp": 1, "last_updated_timestamp": 8},
        {"pk": pk, "sk": "T#team", **named, "g1sk": "resnet#T#team", "key": "team", "value": "vision"},
        {"pk": pk, "sk": "A#champion", **named, "g1sk": "resnet#A#champion", "alias": "champion",
         **{k: v for k, v in v1.items() if k not in ("pk", "sk", "g1pk", "g1sk", "g2pk", "g2sk")}},
        {"pk": pk, "sk": "S#1.0.0", **named, "g1sk": "resnet#S#1.0.0", "semver": "1.0.0", "version": 1},
        {"pk": pk, "sk": "S#1.1.0", **named, "g1sk": "resnet#S#1.1.0", "semver": "1.1.0", "version": 2},
        v1, v2,
        {"pk": "P#p#R#r1", "sk": "L#resnet#1", "model_name": "resnet", "version": 1},
        dict(RUN),
    ]


def test_models_get_ids_name_guards_and_keep_their_packages():
    from shared import keys
    from shared.registry import items

    change = migrations.apply(_model_ids_step(), _old_model())
    model_id = migrations.model_id_of("p", "resnet")
    put = {(i["pk"], i["sk"]): i for i in change.puts}
    assert all(i["migrated"] == migrations.MODEL_IDS for i in change.puts)  # the publisher makes no events of them
    assert put[(keys.model_name_guard("p", "resnet"), keys.GUARD_SK)]["model_id"] == model_id
    pk = keys.registered_model("p", model_id)
    meta = put[(pk, keys.MODEL_SK)]
    assert (meta["name"], meta["model_id"], meta["last_version"], meta["g1pk"]) == ("resnet", model_id, 2, "P#p#MODELS")
    v1 = put[(pk, keys.version_sk(1))]
    assert "name" not in v1 and v1["package"] == "packages/resnet/1.0.0"  # the package stays where it is
    assert v1["tags"] == {"mlreg.version": "1.0.0", "k": "v"} and v1["package_page"] == "http://h/projects/p/package"
    assert items.version_tags(v1, "renamed")["mlreg.package_url"] == "http://h/projects/p/package?name=renamed&version=1"
    assert "package" not in put[(pk, keys.version_sk(2))]  # external: no package
    assert items.aliased_version(put[(pk, keys.alias_sk("champion"))]) == items.strip(v1)
    assert put[(pk, keys.semver_sk("1.1.0"))]["version"] == 2
    assert (pk, keys.stage_sk("Production", 1)) in put and (pk, keys.stage_sk("None", 2)) in put
    assert put[(keys.run("p", "r1"), keys.model_link_sk(model_id, 1))]["model_id"] == model_id
    assert (keys.run("p", "r2"), keys.model_link_sk(model_id, 2)) not in put  # an external run has no link
    assert sorted(change.deletes) == sorted([(i["pk"], i["sk"]) for i in _old_model()
                                             if i["pk"] == "P#p#M#resnet" or i["sk"].startswith("L#")])


def test_the_model_ids_step_is_idempotent_and_pure():
    old = _old_model()
    once = migrations.apply(_model_ids_step(), old)
    assert old == _old_model()
    gone = set(once.deletes)
    upgraded = [i for i in old if (i["pk"], i["sk"]) not in gone] + once.puts
    assert not migrations.apply(_model_ids_step(), upgraded)
    # a deployed run that stopped part-way (some puts written, nothing deleted) ends the same
    again = migrations.apply(_model_ids_step(), old + once.puts[:3])
    assert sorted(again.deletes) == sorted(once.deletes)
    assert {(i["pk"], i["sk"]): i for i in again.puts} | {(i["pk"], i["sk"]): i for i in once.puts[:3]} == \
        {(i["pk"], i["sk"]): i for i in once.puts}
