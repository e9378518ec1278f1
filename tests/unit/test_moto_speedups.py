"""The emulator's moto patches (mlreg/moto_speedups.py) change cost, not results: the same requests
give the same answers, items and stream records with and without them."""

from __future__ import annotations

import os
from datetime import datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mlreg import moto_speedups
from mlreg.emulator import moto_table
from shared import table as table_def


def _item(pk: str, sk: str, group: str | None = None, **attrs) -> dict:
    item = {"pk": {"S": pk}, "sk": {"S": sk}, "b": {"B": sk.encode()}, "n": {"N": "1.5"}, "ss": {"SS": ["x", "y"]},
            "m": {"M": {"t": {"BOOL": True}, "z": {"NULL": True}, "l": {"L": [{"N": "2"}, {"BS": [b"\x00"]}]}}},
            **{k: {"S": v} for k, v in attrs.items()}}
    if group:
        item.update(g1pk={"S": group}, g1sk={"S": f"{pk}#{sk}"})
    return item


def _query_all(ddb, **kwargs) -> list[list[dict]]:
    """Every page of a Query (pages of 4), as the pages came."""
    pages, start = [], None
    while True:
        resp = ddb.query(TableName=os.environ["MLREG_TABLE"], Limit=4, **kwargs,
                         **({"ExclusiveStartKey": start} if start else {}))
        pages.append(resp["Items"])
        start = resp.get("LastEvaluatedKey")
        if not start:
            return pages


def _moto_table():
    """The exercise's table as moto holds it."""
    return moto_table(os.environ.get("AWS_DEFAULT_REGION", "us-east-1"), os.environ["MLREG_TABLE"])


def _stream(ddb) -> list[tuple]:
    return [(r.record["eventName"], r.record["dynamodb"]["Keys"]["sk"]["S"]) for r in _moto_table().stream_shard.items]


def _exercise() -> list:
    """Queries (table and GSI, pages, both directions, filters), writes that move items between GSI
    partitions, and transactions that fail part-way and that succeed."""
    name = os.environ["MLREG_TABLE"]
    ddb = boto3.client("dynamodb")
    ddb.create_table(**table_def.create_table_kwargs(name))
    for p in range(3):
        for i in range(9):
            ddb.put_item(TableName=name, Item=_item(f"P#{p}", f"S#{i}", f"G#{i % 2}", v=str(i)))
            ddb.update_item(TableName=name, Key={"pk": {"S": f"P#{p}"}, "sk": {"S": f"S#{i}"}},
                            UpdateExpression="SET g3pk = :o, g3sk = :k",  # a binary sort key, with equal heads
                            ExpressionAttributeValues={":o": {"S": "O#x"}, ":k": {"B": bytes([1, i % 4, 255 - i % 3])}})
    seen = []

    def look(new_groups: tuple = ()):
        seen.append(_query_all(ddb, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "P#1"}}))
        seen.append(_query_all(ddb, KeyConditionExpression="pk = :p AND begins_with(sk, :s)", ScanIndexForward=False,
                               ExpressionAttributeValues={":p": {"S": "P#2"}, ":s": {"S": "S#"}}))
        for group in ("G#0", "G#1", "G#2", *new_groups):
            seen.append(_query_all(ddb, IndexName="gsi1", KeyConditionExpression="g1pk = :g",
                                   ExpressionAttributeValues={":g": {"S": group}}))
        for group in new_groups:  # gsi3 is keys-only: the grouping holds copies, not the items
            seen.append(_query_all(ddb, IndexName="gsi3", KeyConditionExpression="g3pk = :g",
                                   ExpressionAttributeValues={":g": {"S": group}}))
        seen.append(_query_all(ddb, IndexName="gsi1", KeyConditionExpression="g1pk = :g AND g1sk > :s",
                               FilterExpression="v <> :v", ScanIndexForward=False,
                               ExpressionAttributeValues={":g": {"S": "G#0"}, ":s": {"S": "P#1"}, ":v": {"S": "4"}}))
        for forward in (True, False):
            for condition, values in [("", {}), (" AND g3sk BETWEEN :lo AND :hi", {":lo": {"B": b"\x01\x01"},
                                                                                ":hi": {"B": b"\x01\x02\xff\xff"}}),
                                      (" AND begins_with(g3sk, :b)", {":b": {"B": b"\x01\x02"}})]:
                seen.append(_query_all(ddb, IndexName="gsi3", KeyConditionExpression="g3pk = :o" + condition,
                                       ScanIndexForward=forward, ExpressionAttributeValues={":o": {"S": "O#x"}, **values}))
        seen.append(ddb.get_item(TableName=name, Key={"pk": {"S": "P#0"}, "sk": {"S": "S#4"}}).get("Item"))
        seen.append(ddb.batch_get_item(RequestItems={name: {"Keys": [
            {"pk": {"S": "P#1"}, "sk": {"S": f"S#{i}"}} for i in range(3)]}})["Responses"][name])
        seen.append(ddb.scan(TableName=name, Limit=5)["Items"])
        seen.append(("stream", _stream(ddb)))

    look()
    ddb.update_item(TableName=name, Key={"pk": {"S": "P#0"}, "sk": {"S": "S#0"}}, UpdateExpression="SET g1pk = :g",
                    ExpressionAttributeValues={":g": {"S": "G#2"}})
    ddb.delete_item(TableName=name, Key={"pk": {"S": "P#1"}, "sk": {"S": "S#1"}})
    look()
    # Writes after the groupings are built, each moving an item within or between index partitions
    # (the groupings are kept, not rebuilt): a new sort key, a key attribute removed, a put over an
    # item into another group, an update that creates an item, a failed condition.
    ddb.update_item(TableName=name, Key={"pk": {"S": "P#0"}, "sk": {"S": "S#5"}}, UpdateExpression="SET g3sk = :k",
                    ExpressionAttributeValues={":k": {"B": bytes([1, 2, 0])}})
    ddb.update_item(TableName=name, Key={"pk": {"S": "P#2"}, "sk": {"S": "S#6"}}, UpdateExpression="REMOVE g1pk, g3sk")
    ddb.put_item(TableName=name, Item=_item("P#1", "S#2", "G#2", v="moved"))
    ddb.update_item(TableName=name, Key={"pk": {"S": "P#3"}, "sk": {"S": "S#0"}}, UpdateExpression="SET g1pk = :g, g1sk = :s",
                    ExpressionAttributeValues={":g": {"S": "G#0"}, ":s": {"S": "P#0"}})
    ddb.put_item(TableName=name, Item=_item("P#3", "S#1", "G#3"))  # a partition first read below
    ddb.put_item(TableName=name, Item=_item("P#3", "S#2", "G#3"))
    ddb.update_item(TableName=name, Key={"pk": {"S": "P#3"}, "sk": {"S": "S#2"}}, UpdateExpression="SET g1pk = :g",
                    ExpressionAttributeValues={":g": {"S": "G#2"}})  # ... and one that left it before
    for sk, partition in (("S#1", "G#3"), ("S#2", "G#3"), ("S#2", "O#x")):
        ddb.update_item(TableName=name, Key={"pk": {"S": "P#3"}, "sk": {"S": sk}}, UpdateExpression="SET g3pk = :o, g3sk = :k",
                        ExpressionAttributeValues={":o": {"S": partition}, ":k": {"B": sk.encode()}})
    with pytest.raises(ClientError):
        ddb.put_item(TableName=name, Item=_item("P#1", "S#3", "G#1"), ConditionExpression="attribute_not_exists(pk)")
    # the same conditions again (parsed once when patched), now holding, then failing on another item,
    # then with other values, of another type too: each write is judged by its own values
    ddb.put_item(TableName=name, Item=_item("P#3", "S#9", "G#3"), ConditionExpression="attribute_not_exists(pk)")
    for sk, value, holds in (("S#4", {"S": "4"}, True), ("S#5", {"S": "4"}, False), ("S#5", {"S": "5"}, True),
                             ("S#4", {"S": "5"}, False), ("S#4", {"N": "4"}, False)):
        update = dict(TableName=name, Key={"pk": {"S": "P#2"}, "sk": {"S": sk}}, UpdateExpression="SET w = :w",
                      ConditionExpression="v = :v", ExpressionAttributeValues={":v": value, ":w": {"S": "x"}})
        if holds:
            ddb.update_item(**update)
        else:
            with pytest.raises(ClientError):
                ddb.update_item(**update)
    for condition, values in [("v IN (:a, :b) AND size(ss) = :n", [("3", "6", "2"), ("3", "6", "3"), ("5", "7", "2")]),
                              ("n BETWEEN :a AND :b AND begins_with(sk, :n)", [("1", "2", "S#"), ("2", "3", "S#")])]:
        for a, b, n in values:
            kinds = ("S", "S", "N") if "size" in condition else ("N", "N", "S")
            try:
                ddb.update_item(TableName=name, Key={"pk": {"S": "P#0"}, "sk": {"S": "S#3"}}, UpdateExpression="SET w = :a",
                                ConditionExpression=condition, ExpressionAttributeValues={
                                    f":{k}": {kind: v} for k, kind, v in zip("abn", kinds, (a, b, n))})
                seen.append((condition, a, b, n, "written"))
            except ClientError as err:
                seen.append((condition, a, b, n, err.response["Error"]["Code"]))
    seen.extend(_plain_set_updates(ddb, name))
    look(("G#3",))
    failing = [{"Put": {"TableName": name, "Item": _item("P#1", "S#new", "G#1")}},
               {"Update": {"TableName": name, "Key": {"pk": {"S": "P#2"}, "sk": {"S": "S#2"}},
                           "UpdateExpression": "SET g1pk = :g", "ExpressionAttributeValues": {":g": {"S": "G#2"}}}},
               {"Delete": {"TableName": name, "Key": {"pk": {"S": "P#2"}, "sk": {"S": "S#3"}}}},
               {"ConditionCheck": {"TableName": name, "Key": {"pk": {"S": "P#0"}, "sk": {"S": "S#5"}},
                                   "ConditionExpression": "attribute_not_exists(pk)"}}]
    with pytest.raises(ClientError) as cancelled:
        ddb.transact_write_items(TransactItems=failing)
    seen.append(cancelled.value.response["CancellationReasons"])
    look()
    ddb.transact_write_items(TransactItems=failing[:3])
    look()
    seen.append(_stream_records(ddb))
    return seen


def _plain_set_updates(ddb, name: str) -> list:
    """SET updates of the plain shape (taken without moto's validation pass) and their near misses
    (moto's own way), each answered as moto answers it: names and values shared, spaced and
    lowercase, what the update returns, a failed condition returning the old item, a reserved word, a
    key attribute, a path set twice, a missing or unused placeholder, sets, an item too big, an index
    key empty or of another type, an item that is not there yet."""
    key = {"pk": {"S": "P#0"}, "sk": {"S": "S#7"}}
    cases = [
        ("SET #a = :v, w2 = :v", {"#a": "w1"}, {":v": {"S": "x"}}, {"ReturnValues": "ALL_NEW"}),
        ("set  w3=:n ,w4 = :m", None, {":n": {"N": "7"}, ":m": {"M": {"k": {"L": [{"S": "a"}]}}}},
         {"ReturnValues": "UPDATED_OLD"}),
        ("SET w3 = :n", None, {":n": {"N": "8"}, ":old": {"N": "0"}},
         {"ConditionExpression": "w3 = :old", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}),
        ("SET w3 = :n", None, {":n": {"N": "9"}, ":old": {"N": "7"}}, {"ConditionExpression": "w3 = :old"}),
        ("SET name = :v", None, {":v": {"S": "x"}}, {}),
        ("SET sk = :v", None, {":v": {"S": "x"}}, {}),
        ("SET w5 = :v, w5 = :v", None, {":v": {"S": "x"}}, {}),
        ("SET w5 = :missing", None, {":v": {"S": "x"}}, {}),
        ("SET w5 = :v", {"#unused": "x"}, {":v": {"S": "x"}}, {}),
        ("SET w6 = :s", None, {":s": {"SS": ["a", "b"]}}, {"ReturnValues": "ALL_NEW"}),
        ("SET w6 = :s", None, {":s": {"SS": []}}, {}),
        ("SET w7 = :big", None, {":big": {"S": "x" * 405_000}}, {}),
        ("SET g1pk = :e", None, {":e": {"S": ""}}, {}),
        ("SET g1pk = :n", None, {":n": {"N": "1"}}, {}),
        ("SET w8 = :v", None, {":v": {"S": "x"}}, {"Key": {"pk": {"S": "P#9"}, "sk": {"S": "new"}},
                                                   "ReturnValues": "ALL_NEW"}),
    ]
    seen = []
    for expression, names, values, extra in cases:
        request = {"TableName": name, "Key": key, "UpdateExpression": expression, "ExpressionAttributeValues": values,
                   **({"ExpressionAttributeNames": names} if names else {}), **extra}
        try:
            answer = ddb.update_item(**request)
            seen.append((expression, {k: v for k, v in answer.items() if k != "ResponseMetadata"}))
        except ClientError as err:
            seen.append((expression, err.response["Error"], err.response.get("Item")))
    seen.append(ddb.get_item(TableName=name, Key=key)["Item"])
    return seen


def _stream_records(ddb) -> list[dict]:
    """The stream's records as GetRecords answers them (their random ids aside; the creation time, and the
    size moto estimates from a dump that includes it, checked for their types only)."""
    streams = boto3.client("dynamodbstreams")
    arn = ddb.describe_table(TableName=os.environ["MLREG_TABLE"])["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
    assert records and all(isinstance(r["dynamodb"].pop("ApproximateCreationDateTime"), datetime) and
                           isinstance(r["dynamodb"].pop("SizeBytes"), int) for r in records)
    return [{k: v for k, v in r.items() if k != "eventID"} for r in records]


def _plain_and_patched(exercise) -> tuple:
    """What `exercise()` saw on moto as it is, then on moto patched as `mlreg serve` runs it."""
    with mock_aws():
        plain = exercise()
    with mock_aws(), moto_speedups.installed():
        return plain, exercise()


def test_patched_moto_answers_exactly_as_moto():
    plain, patched = _plain_and_patched(_exercise)
    assert patched == plain
    assert any(isinstance(pages, list) and len(pages) > 1 and isinstance(pages[0], list) for pages in plain)  # paged


def test_a_failed_transaction_leaves_no_item_and_no_stream_record():
    with mock_aws(), moto_speedups.installed():
        seen = _exercise()
    streams = [s[1] for s in seen if isinstance(s, tuple) and s[0] == "stream"]
    before_failure, after_failure = streams[-3], streams[-2]
    assert after_failure == before_failure
    assert ("INSERT", "S#new") in streams[-1] and ("REMOVE", "S#3") in streams[-1]



def test_a_failed_transaction_keeps_the_index_groupings():
    """Undone item by item, with its index entries: the next GSI Query reads its partition (equal
    answers: the exercise above), not a regrouping of the whole table."""
    with mock_aws(), moto_speedups.installed():
        _exercise()
        table = _moto_table()
        groupings = table.__dict__["_mlreg_index_groups"]
        ddb = boto3.client("dynamodb")
        with pytest.raises(ClientError):
            ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": table.name, "Item": _item("P#9", "S#0", "G#0")}},
                {"ConditionCheck": {"TableName": table.name, "Key": {"pk": {"S": "P#0"}, "sk": {"S": "S#0"}},
                                    "ConditionExpression": "attribute_not_exists(pk)"}}])
        found = _query_all(ddb, IndexName="gsi1", KeyConditionExpression="g1pk = :g",
                           ExpressionAttributeValues={":g": {"S": "G#0"}})
        assert found[0] and all(item["pk"]["S"] != "P#9" for page in found for item in page)
        assert table.__dict__["_mlreg_index_groups"] is groupings  # kept, not built anew


def test_index_groupings_built_ahead_answer_as_those_built_by_a_first_query():
    """`mlreg serve` groups every GSI after a start, so no request walks the whole table."""
    with mock_aws(), moto_speedups.installed():
        _exercise()
        table = _moto_table()
        ddb = boto3.client("dynamodb")

        def queries() -> list:
            return [_query_all(ddb, IndexName=index, KeyConditionExpression=f"{name} = :v",
                               ExpressionAttributeValues={":v": {"S": value}})
                    for index, name, value in (("gsi1", "g1pk", "G#0"), ("gsi1", "g1pk", "G#2"), ("gsi3", "g3pk", "O#x"))]

        moto_speedups.forget_groupings(table)
        on_first_query = queries()
        moto_speedups.forget_groupings(table)
        for index in table.global_indexes:
            moto_speedups.group_index(table, index)
        assert {(index.schema_key_attrs[0],) for index in table.global_indexes} <= set(table.__dict__["_mlreg_index_groups"])
        assert queries() == on_first_query and any(page for pages in on_first_query for page in pages)


def _list_everything(s3) -> list:
    """Listings of a bucket whose keys change between them: prefixes that match nothing, one key, a
    folder and its look-alike (`a/b` beside `a/b-c`, `a/b/`), with and without a delimiter, paged."""
    bucket, seen = "speedups-listing", []

    def look(**kwargs):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2}, **kwargs)
        seen.append([(p.get("KeyCount"), [o["Key"] for o in p.get("Contents", [])],
                      [c["Prefix"] for c in p.get("CommonPrefixes", [])]) for p in pages])

    s3.create_bucket(Bucket=bucket)
    for key in ["a/b/1", "a/b/2", "a/b/c/3", "a/b-c/4", "a/b", "a/bz", "z", "a/b/\u00e9\U0001F600"]:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for prefix in ["a/b/", "a/b", "a/", "a/b/c", "zz", "", "a/b/\u00e9"]:
        look(Prefix=prefix)
        look(Prefix=prefix, Delimiter="/")
    s3.delete_object(Bucket=bucket, Key="a/b/1")
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a/b/c/3"}, {"Key": "a/bz"}]})
    s3.put_object(Bucket=bucket, Key="a/b/0", Body=b"new")
    s3.put_object(Bucket=bucket, Key="a/b/2", Body=b"again")  # a key written twice is listed once
    s3.copy_object(Bucket=bucket, Key="a/b/9", CopySource={"Bucket": bucket, "Key": "z"})
    for prefix in ["a/b/", "a/b", "a/"]:
        look(Prefix=prefix)
        look(Prefix=prefix, Delimiter="/", StartAfter="a/b/0")
    return seen


def test_patched_s3_listings_answer_as_moto():
    plain, patched = _plain_and_patched(lambda: _list_everything(boto3.client("s3", region_name="us-east-1")))
    assert patched == plain
    assert plain[0][0][1] == ["a/b/1", "a/b/2"]  # the listings are real: paged, keys below the prefix


def _queue_traffic(sqs) -> list:
    url, seen = sqs.create_queue(QueueName="speedups-queue")["QueueUrl"], []
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "later", "DelaySeconds": 60},
                                                  {"Id": "2", "MessageBody": "now"}])
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    seen.append({k: attributes[k] for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed")})
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    seen.append([m["Body"] for m in received])
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    seen.append([m["Body"] for m in again])  # visible again at once (timeout 0), then hidden for 30 s
    seen.append(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []))
    return seen


def test_patched_sqs_clock_keeps_delays_and_visibility():
    plain, patched = _plain_and_patched(lambda: _queue_traffic(boto3.client("sqs", region_name="us-east-1")))
    assert patched == plain == [{"ApproximateNumberOfMessages": "1", "ApproximateNumberOfMessagesDelayed": "1"},
                                ["now"], ["now"], []]


def test_item_requests_parse_as_moto_parses_them(monkeypatch):
    """Every request of the exercise (binary keys, sets and nested values, conditions, transactions)
    gives the same parameters plainly parsed as through moto's shape-walking parser."""
    from moto.core.responses import BaseResponse
    from moto.dynamodb.responses import DynamoHandler

    compared = []
    with mock_aws(), moto_speedups.installed():
        plain = DynamoHandler.parse_parameters

        def both(handler, request):
            BaseResponse.parse_parameters(handler, request)
            by_shape = handler.params
            plain(handler, request)
            assert handler.params == by_shape
            compared.append(handler._get_action())

        monkeypatch.setattr(DynamoHandler, "parse_parameters", both)
        _exercise()
    assert {"GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "UpdateItem", "DeleteItem",
            "TransactWriteItems"} <= set(compared)
