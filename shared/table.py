"""The one DynamoDB table: keys, GSIs and stream. The CDK stack, the local service and the tests
all create the table from this definition. Item layouts are documented in docs/data-model.md."""

from __future__ import annotations

from dataclasses import dataclass

PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "expires_at"
STREAM_VIEW = "NEW_AND_OLD_IMAGES"


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    sort_key: str
    sort_key_type: str = "S"  # "B": binary, compared byte by byte
    projection: str = "ALL"


# Both GSIs are sparse: only items that carry the index's key attributes appear in them.
GSIS = (
    # Collections: everything of a kind inside a parent (experiments of a project with their tags;
    # models of a project; model versions of a project).
    Index("gsi1", "g1pk", "g1sk"),
    # Orderings and secondary lookups (run summaries of an experiment in MLflow's default order,
    # logged models of an experiment, versions of a run).
    Index("gsi2", "g2pk", "g2sk"),
    # Materialised orderings for search_runs: one partition per (experiment, metric/param/tag/start
    # time), sorted ascending (gsi3) and descending (gsi4) with MLflow's tie-breaks built into the
    # binary sort key, so a page costs reads in proportion to its size, not the experiment's.
    Index("gsi3", "g3pk", "g3sk", "B", "KEYS_ONLY"),
    Index("gsi4", "g4pk", "g4sk", "B", "KEYS_ONLY"),
)


def create_table_kwargs(table_name: str) -> dict:
    """Arguments for boto3 `create_table` (local service and tests)."""
    types = {PARTITION_KEY: "S", SORT_KEY: "S"}
    for g in GSIS:
        types.update({g.partition_key: "S", g.sort_key: g.sort_key_type})
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": t} for k, t in types.items()],
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": g.name,
                "KeySchema": [
                    {"AttributeName": g.partition_key, "KeyType": "HASH"},
                    {"AttributeName": g.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": g.projection},
            }
            for g in GSIS
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": STREAM_VIEW},
    }
