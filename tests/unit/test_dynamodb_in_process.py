"""The emulator's in-process answers to the handlers' DynamoDB item operations
(mlreg/dynamodb_in_process.py) change cost, not results: the same requests give the same answers,
errors, items and stream records as moto's own way, and none of them goes through moto's
HTTP-shaped setup."""

from __future__ import annotations

import os

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mlreg import dynamodb_in_process, moto_speedups
from tests.unit.test_moto_speedups import _exercise, _item

REGION = "us-east-1"


def _without_metadata(seen):
    if isinstance(seen, dict):
        return {k: _without_metadata(v) for k, v in seen.items() if k != "ResponseMetadata"}
    if isinstance(seen, (list, tuple)):
        return type(seen)(_without_metadata(v) for v in seen)
    return seen


def _errors_and_answers() -> list:
    """What the exercise leaves out: answers as a whole (capacity, returned values, unprocessed
    keys), and errors with every field botocore gives (a condition's old item, a missing table, a
    request DynamoDB refuses)."""
    name, ddb = os.environ["MLREG_TABLE"], boto3.client("dynamodb", region_name=REGION)
    ddb.put_item(TableName=name, Item=_item("E#0", "S#0", v="a"))
    seen = [ddb.put_item(TableName=name, Item=_item("E#0", "S#0", v="b"), ReturnValues="ALL_OLD",
                         ReturnConsumedCapacity="TOTAL"),
            ddb.get_item(TableName=name, Key={"pk": {"S": "E#0"}, "sk": {"S": "S#0"}}, ProjectionExpression="v, b"),
            ddb.get_item(TableName=name, Key={"pk": {"S": "E#0"}, "sk": {"S": "none"}}),
            ddb.query(TableName=name, KeyConditionExpression="pk = :p", Select="COUNT",
                      ExpressionAttributeValues={":p": {"S": "E#0"}}),
            ddb.delete_item(TableName=name, Key={"pk": {"S": "E#0"}, "sk": {"S": "S#0"}}, ReturnValues="ALL_OLD")]
    ddb.put_item(TableName=name, Item=_item("E#1", "S#0"))
    found = {"TableName": name, "Key": {"pk": {"S": "E#1"}, "sk": {"S": "S#0"}},
             "ConditionExpression": "attribute_not_exists(pk)", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
    for call in [
        lambda: ddb.put_item(TableName=name, Item=_item("E#1", "S#0"), ConditionExpression="attribute_not_exists(pk)",
                             ReturnValuesOnConditionCheckFailure="ALL_OLD"),
        lambda: ddb.get_item(TableName="no-such-table", Key={"pk": {"S": "x"}, "sk": {"S": "y"}}),
        lambda: ddb.put_item(TableName=name, Item={"pk": {"S": "only"}}),
        lambda: ddb.query(TableName=name, KeyConditionExpression="pk = :p"),
        lambda: ddb.transact_write_items(TransactItems=[{"Put": {"TableName": name, "Item": _item("E#2", "S#0")}},
                                                        {"Put": {"TableName": name, "Item": _item("E#2", "S#0")}}]),
        lambda: ddb.transact_write_items(TransactItems=[{"Put": {"TableName": name, "Item": _item("E#3", "S#0")}},
                                                        {"ConditionCheck": found}]),
    ]:
        with pytest.raises(ClientError) as refused:
            call()
        seen.append((type(refused.value).__name__, refused.value.response))
    return _without_metadata(seen)


def _exercises() -> list:
    return [_exercise(), _errors_and_answers()]


def test_answers_in_process_equal_motos(monkeypatch):
    from moto.dynamodb.responses import DynamoHandler

    with mock_aws(), moto_speedups.installed():
        plain = _without_metadata(_exercises())
    with mock_aws(), moto_speedups.installed():
        boto3.setup_default_session()
        undo = dynamodb_in_process.install(boto3.DEFAULT_SESSION.events, REGION)
        set_up = []
        original = DynamoHandler.setup_class
        monkeypatch.setattr(DynamoHandler, "setup_class", lambda self, request, *a, **k:
                            set_up.append(request.headers["X-Amz-Target"]) or original(self, request, *a, **k))
        try:
            answered = _without_metadata(_exercises())
            answer = boto3.client("dynamodb", region_name=REGION).get_item(
                TableName=os.environ["MLREG_TABLE"], Key={"pk": {"S": "P#0"}, "sk": {"S": "S#0"}})
        finally:
            undo()
            boto3.setup_default_session()
    assert answered == plain
    errors = plain[1][-6:]
    assert [error for error, _ in errors] == ["ConditionalCheckFailedException", "ResourceNotFoundException",
                                              "ClientError", "ClientError", "ClientError", "TransactionCanceledException"]
    assert errors[0][1]["Item"]["pk"] == errors[-1][1]["CancellationReasons"][1]["Item"]["pk"] == {"S": "E#1"}
    # moto's own setup only for what is not an item operation: the table, its description, the stream
    assert {target.split(".")[-1] for target in set_up} == {"CreateTable", "DescribeTable"}
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200 and answer["ResponseMetadata"]["RequestId"]


def test_another_endpoint_is_not_answered(monkeypatch):
    """`mlreg serve --dynamodb-endpoint` (DynamoDB Local, or AWS): its calls go there, not to moto."""
    with mock_aws():
        boto3.setup_default_session()
        undo = dynamodb_in_process.install(boto3.DEFAULT_SESSION.events, REGION)
        try:
            answered = []
            monkeypatch.setattr(dynamodb_in_process, "_parsed", lambda *a: answered.append(a) or {})
            elsewhere = boto3.client("dynamodb", region_name="eu-west-1")
            with pytest.raises(ClientError):
                elsewhere.get_item(TableName=os.environ["MLREG_TABLE"], Key={"pk": {"S": "x"}, "sk": {"S": "y"}})
            assert answered == []
        finally:
            undo()
            boto3.setup_default_session()
