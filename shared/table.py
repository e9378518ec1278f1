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


# Both GSIs are sparse: only items that carry the index's key attributes appear in them.
GSIS = (
    # Collections: everything of a kind inside a parent (runs of an experiment with their params,
    # tags and latest metrics; experiments of a project; models of a project; versions by run).
    Index("gsi1", "g1pk", "g1sk"),
    # Orderings and secondary lookups (runs of an experiment by start time, logged models of an
    # experiment, versions of a run).
    Index("gsi2", "g2pk", "g2sk"),
)


def create_table_kwargs(table_name: str) -> dict:
    """Arguments for boto3 `create_table` (local service and tests)."""
    key_names = [PARTITION_KEY, SORT_KEY] + [k for g in GSIS for k in (g.partition_key, g.sort_key)]
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": "S"} for k in key_names],
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
                "Projection": {"ProjectionType": "ALL"},
            }
            for g in GSIS
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": STREAM_VIEW},
    }
