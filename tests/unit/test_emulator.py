"""The emulator's persistence: snapshots written by an older mlreg load in today's item shapes."""

from __future__ import annotations


def test_data_saved_by_an_older_mlreg_is_upgraded_on_restore():
    """Before alias items carried their version, a snapshot held bare aliases and versions without
    `rev`; `mlreg serve` upgrades them as it loads them."""
    from mlreg.emulator import upgraded

    pk = {"S": "P#p#M#model"}
    version = {"pk": pk, "sk": {"S": "V#0000000002"}, "g1pk": {"S": "P#p#VERSIONS"}, "g1sk": {"S": "model#V#0000000002"},
               "name": {"S": "model"}, "version": {"N": "2"}, "current_stage": {"S": "Staging"},
               "tags": {"M": {"k": {"S": "v"}}}, "aliases": {"SS": ["champion"]}}
    alias = {"pk": pk, "sk": {"S": "A#champion"}, "g1pk": {"S": "P#p#MODELS"}, "g1sk": {"S": "model#A#champion"},
             "model_name": {"S": "model"}, "alias": {"S": "champion"}, "version": {"N": "2"}}
    run = {"pk": {"S": "P#p#R#abc"}, "sk": {"S": "#R"}}
    version_after, alias_after, run_after = upgraded([dict(version), dict(alias), dict(run)])
    assert version_after == {**version, "rev": {"N": "0"}}
    assert alias_after == {**alias, "name": {"S": "model"}, "current_stage": {"S": "Staging"}, "tags": version["tags"],
                           "aliases": version["aliases"], "rev": {"N": "0"}}
    assert run_after == run
