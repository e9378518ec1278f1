"""The storage layer against moto: encodings, batches, tokens, and the table definition."""

from __future__ import annotations

import math
import random

import pytest

from shared import db, keys, pagination
from shared.errors import MlflowError


def test_int_encoding_preserves_order():
    values = [-(2**63), -(10**12), -1, 0, 1, 7, 10**12, 2**63 - 1]
    encoded = [keys.encode_int(v) for v in values]
    assert encoded == sorted(encoded) and len(set(map(len, encoded))) == 1


def test_float_encoding_preserves_order_with_specials():
    rng = random.Random(1)
    values = sorted([-math.inf, math.inf, 0.0, -0.0, 1e-300, -1e-300, 1.7e308, -1.7e308]
                    + [rng.uniform(-1e6, 1e6) for _ in range(200)])
    encoded = [keys.encode_float(v) for v in values]
    assert encoded == sorted(encoded)
    assert keys.encode_float(math.nan) > keys.encode_float(math.inf)


def test_latest_metric_order_follows_mlflow_rule():
    # greatest (step, timestamp, value) wins
    assert keys.metric_order(2, 0, -5.0) > keys.metric_order(1, 999, 100.0)
    assert keys.metric_order(1, 10, 0.0) > keys.metric_order(1, 9, 100.0)
    assert keys.metric_order(1, 10, 2.0) > keys.metric_order(1, 10, 1.0)


def test_page_tokens_are_bound_and_tamper_proof():
    token = pagination.encode("proj", ["q", 1], {"offset": 10})
    assert pagination.decode(token, "proj", ["q", 1]) == {"offset": 10}
    for project, query in (("other", ["q", 1]), ("proj", ["q", 2])):
        with pytest.raises(MlflowError) as exc:
            pagination.decode(token, project, query)
        assert exc.value.error_code == "INVALID_PARAMETER_VALUE"
    body, mac = token.rsplit(".", 1)
    for forged in (body[:-2] + "xx." + mac, body + "." + "0" * len(mac), "garbage", "", "a.b.c"):
        if forged:
            with pytest.raises(MlflowError):
                pagination.decode(forged, "proj", ["q", 1])
    assert pagination.decode(None, "proj", []) is None


def test_batch_put_and_get_chunk_beyond_limits(aws):
    items = [{"pk": "P#t#X", "sk": f"{i:04d}", "n": i, "f": 0.5, "s": "x"} for i in range(130)]
    db.batch_put(items)
    got = db.batch_get([("P#t#X", f"{i:04d}") for i in range(130)] + [("P#t#X", "missing")])
    assert sorted(i["n"] for i in got) == list(range(130))
    assert db.query_all("P#t#X")[5] == {"pk": "P#t#X", "sk": "0005", "n": 5, "f": 0.5, "s": "x"}


def test_batch_write_retries_unprocessed_items(monkeypatch):
    """moto never returns UnprocessedItems; a stub that throttles twice shows the retry."""
    calls = []

    class Throttling:
        def batch_write_item(self, RequestItems):
            requests = RequestItems[db.table_name()]
            calls.append(len(requests))
            if len(calls) < 3:
                return {"UnprocessedItems": {db.table_name(): requests[1:]}}
            return {"UnprocessedItems": {}}

    monkeypatch.setattr(db, "client", lambda: Throttling())
    monkeypatch.setattr(db.time, "sleep", lambda s: None)
    db._write_chunk([{"PutRequest": {"Item": {}}}] * 5)
    assert calls == [5, 4, 3]


def test_batch_write_gives_up_with_a_retryable_error(monkeypatch):
    class AlwaysThrottled:
        def batch_write_item(self, RequestItems):
            return {"UnprocessedItems": RequestItems}

    monkeypatch.setattr(db, "client", lambda: AlwaysThrottled())
    monkeypatch.setattr(db.time, "sleep", lambda s: None)
    with pytest.raises(MlflowError) as exc:
        db._write_chunk([{"PutRequest": {"Item": {}}}])
    assert exc.value.status == 503


def test_every_key_starts_with_the_project():
    builders = [keys.project("p"), keys.experiment("p", "1"), keys.experiment_name_guard("p", "n"),
                keys.experiments_collection("p"), keys.run("p", "r"), keys.runs_collection("p", "1"),
                keys.run_order("p", "1", "param", "k"), keys.metric_history("p", "r", "m")]
    assert all(k.startswith("P#p") for k in builders)


def test_reads_skip_botocore_parsing_with_the_same_result(aws):
    """db.client() takes read items with json.loads instead of botocore's shape parser (CPU): every
    attribute type comes back exactly as botocore would return it, and round-trips to plain Python."""
    import boto3

    name = db.table_name()
    item = {"pk": {"S": "P#x"}, "sk": {"S": "S#1"}, "g3pk": {"S": "o"}, "g3sk": {"B": b"\x00\xff order"},
            "n": {"N": "12"}, "f": {"N": "0.25"}, "big": {"N": "1E+3"}, "t": {"BOOL": True}, "z": {"NULL": True},
            "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": [b"\x01", b"\x02"]},
            "tags": {"M": {"B": {"S": "a tag named B"}, "S": {"N": "7"}, "bin": {"B": b"\x03"}}},
            "l": {"L": [{"S": "x"}, {"B": b"\x04"}, {"M": {"k": {"L": [{"N": "-1"}]}}}]}}
    plain_botocore = boto3.client("dynamodb")
    plain_botocore.put_item(TableName=name, Item=item)
    key = {"pk": item["pk"], "sk": item["sk"]}
    requests = [("get_item", {"Key": key}), ("query", {"KeyConditionExpression": "pk = :p",
                                                       "ExpressionAttributeValues": {":p": item["pk"]}}),
                ("query", {"IndexName": "gsi3", "KeyConditionExpression": "g3pk = :p",
                           "ExpressionAttributeValues": {":p": {"S": "o"}}}),
                ("scan", {}), ("batch_get_item", {})]
    for operation, kwargs in requests:
        if operation == "batch_get_item":
            call = lambda c: c.batch_get_item(RequestItems={name: {"Keys": [key]}})  # noqa: E731
        else:
            call = lambda c: getattr(c, operation)(TableName=name, **kwargs)  # noqa: E731
        ours, theirs = call(db.client()), call(plain_botocore)
        ours.pop("ResponseMetadata"), theirs.pop("ResponseMetadata")
        assert ours == theirs, operation
    assert db.get("P#x", "S#1") == {
        "pk": "P#x", "sk": "S#1", "g3pk": "o", "g3sk": b"\x00\xff order", "n": 12, "f": 0.25, "big": 1000, "t": True,
        "z": None, "ss": {"a", "b"}, "ns": {1, 2.5}, "bs": {b"\x01", b"\x02"},
        "tags": {"B": "a tag named B", "S": 7, "bin": b"\x03"}, "l": ["x", b"\x04", {"k": [-1]}]}
