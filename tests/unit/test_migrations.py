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
RUN = {"pk": "P#p#R#abc", "sk": "#R", "run_id": "abc"}
OTHER_PROJECT_RUN = {"pk": "P#q#R#def", "sk": "#R", "run_id": "def"}


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
