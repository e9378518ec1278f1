"""Registry events: stream record -> events rules, secrets at rest, address checks, signatures, and
the publisher's partial-failure handling (hand-made stream and SQS records, moto where AWS is needed)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from shared import db, keys
from shared.events import mapping, publisher, secrets, webhooks
from shared.events import schema as s

SEQ = iter(range(1000, 10**6))


def record(pk: str, sk: str, old: dict | None = None, new: dict | None = None, when: float = 1_800_000_000.5) -> dict:
    name = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    data = {"Keys": db.to_item({"pk": pk, "sk": sk}), "SequenceNumber": str(next(SEQ)),
            "ApproximateCreationDateTime": when}
    if old:
        data["OldImage"] = db.to_item({"pk": pk, "sk": sk, **old})
    if new:
        data["NewImage"] = db.to_item({"pk": pk, "sk": sk, **new})
    return {"eventID": f"ev{data['SequenceNumber']}", "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": data}


PK = keys.registered_model("vision", "m1")  # the model's id; versions do not hold its name


def name_of(project: str, model_id: str) -> str | None:
    """The publisher's lookup of a model's name (its meta item)."""
    return {("vision", "m1"): "resnet"}.get((project, model_id))


def events_of(rec: dict):
    return mapping.events_from_record(rec, name_of)


VERSION = {"package": "packages/m1/1.2.0", "version": 3, "semver": "1.2.0", "run_id": "r1", "source": "runs:/r1/model",
           "current_stage": "None", "status": "PENDING_REGISTRATION", "tags": {"mlreg.version": "1.2.0"}, "actor": "tok1"}


def types(events) -> list[str]:
    return [e.detail_type for e in events]


# ---- mapping ------------------------------------------------------------------------------------------

def test_only_registry_items_make_events():
    assert events_of(record(keys.run("vision", "r1"), "#R", new={"status": "RUNNING"})) == []
    assert events_of(record(PK, keys.model_tag_sk("t"), new={"key": "t", "value": "v"})) == []
    assert events_of(record(PK, keys.semver_sk("1.0.0"), new={"semver": "1.0.0", "version": 1})) == []


def test_a_version_is_created_when_its_package_is_ready():
    sk = keys.version_sk(3)
    assert events_of(record(PK, sk, new=VERSION)) == []  # pending: no package yet
    (event,) = events_of(record(PK, sk, old=VERSION, new={**VERSION, "status": "READY"}))
    d = event.detail
    assert event.detail_type == s.VERSION_CREATED and event.webhook_event == "model_version.created"
    assert (d.project, d.model, d.version, d.semver, d.run_id, d.actor) == ("vision", "resnet", 3, "1.2.0", "r1", "tok1")
    assert d.package_uri == "mlflow-artifacts:/packages/m1/1.2.0" and d.timestamp == 1_800_000_000_500
    assert d.model_id == "m1"
    assert event.webhook_payload == {"name": "resnet", "version": "3", "source": "runs:/r1/model", "run_id": "r1",
                                     "tags": {"mlreg.version": "1.2.0"}, "description": None}
    failed = events_of(record(PK, sk, old=VERSION, new={**VERSION, "status": "FAILED_REGISTRATION",
                                                                         "status_message": "copy failed"}))
    assert types(failed) == [s.VERSION_FAILED] and failed[0].webhook_event is None


def test_version_changes_become_stage_and_tag_events():
    ready = {**VERSION, "status": "READY", "tags": {"a": "1", "b": "2"}}
    after = {**ready, "current_stage": "Production", "tags": {"a": "1", "b": "3", "c": "4"}}
    events = events_of(record(PK, keys.version_sk(3), old=ready, new=after))
    assert types(events) == [s.STAGE_TRANSITIONED, s.TAG_SET, s.TAG_SET]
    assert (events[0].detail.previous_stage, events[0].detail.stage) == ("None", "Production")
    assert [(e.detail.tag_key, e.detail.tag_value) for e in events[1:]] == [("b", "3"), ("c", "4")]
    removed = events_of(record(PK, keys.version_sk(3), old=after, new={**after, "tags": {}}))
    assert types(removed) == [s.TAG_DELETED] * 3
    assert removed[0].webhook_payload == {"name": "resnet", "version": "3", "key": "a"}
    # ids are stable per record and index: a re-published record keeps them
    assert [e.detail.event_id for e in events] == [f"{events[0].detail.event_id[:-2]}-{i}" for i in range(3)]


def test_alias_moves_and_deletions():
    sk = keys.alias_sk("champion")
    (moved,) = events_of(record(PK, sk, old={"alias": "champion", "version": 1},
                                                 new={"alias": "champion", "version": 2, "actor": "tok"}))
    assert (moved.detail_type, moved.detail.version, moved.detail.previous_version) == (s.ALIAS_SET, 2, 1)
    assert moved.webhook_payload == {"name": "resnet", "alias": "champion", "version": "2"}
    (gone,) = events_of(record(PK, sk, old={"alias": "champion", "version": 2}))
    assert gone.detail_type == s.ALIAS_DELETED and gone.detail.actor is None
    assert gone.webhook_payload == {"name": "resnet", "alias": "champion"}


def test_models_created_renamed_deleted():
    meta = {"name": "resnet", "model_id": "m1", "description": "d"}
    (created,) = events_of(record(PK, keys.MODEL_SK, new=meta))
    assert created.detail_type == s.MODEL_CREATED and created.webhook_event == "registered_model.created"
    # a rename is one event: the meta item's name changes (nothing else of the model is written)
    (renamed,) = events_of(record(PK, keys.MODEL_SK, old={**meta, "name": "old"}, new=meta))
    assert (renamed.detail_type, renamed.detail.model, renamed.detail.previous_name) == (s.MODEL_RENAMED, "resnet", "old")
    # a delete is final when the worker has purged the model: marking it deleted is no event yet
    deleted = {**meta, "deleted_at": 5, "actor": "tok"}
    assert events_of(record(PK, keys.MODEL_SK, old=meta, new=deleted)) == []
    (purged,) = events_of(record(PK, keys.MODEL_SK, old=deleted, new={**deleted, "purged_at": 6}))
    assert (purged.detail_type, purged.detail.model, purged.detail.actor) == (s.MODEL_DELETED, "resnet", "tok")
    assert events_of(record(PK, keys.MODEL_SK, old={**deleted, "purged_at": 6})) == []  # its TTL expiry


def test_the_migration_to_model_ids_makes_no_events():
    old_pk = "P#vision#M#resnet"
    assert events_of(record(old_pk, keys.MODEL_SK, old={"name": "resnet", "model_name": "resnet"})) == []
    assert events_of(record(old_pk, keys.version_sk(3), old={**VERSION, "name": "resnet", "status": "READY"})) == []
    assert events_of(record(PK, keys.MODEL_SK, new={"name": "resnet", "model_id": "m1", "migrated": "x"})) == []
    assert events_of(record(PK, keys.version_sk(3), new={**VERSION, "status": "READY", "migrated": "x"})) == []


def test_the_detail_schema_is_exported():
    schema = json.loads(s.json_schema())
    assert {"project", "model", "version", "semver", "run_id", "source", "package_uri", "stage", "alias", "actor",
            "timestamp"} <= set(schema["properties"])


# ---- secrets --------------------------------------------------------------------------------------------

def test_local_secrets_are_encrypted_and_bound_to_their_webhook(monkeypatch):
    monkeypatch.delenv("MLREG_WEBHOOK_KEY_ARN", raising=False)
    monkeypatch.setenv("MLREG_PAGE_TOKEN_KEY", "k" * 32)
    stored = secrets.encrypt("hunter2", "vision", "w1")
    assert "hunter2" not in stored and stored.startswith("aesgcm:")
    assert secrets.decrypt(stored, "vision", "w1") == "hunter2"
    with pytest.raises(Exception):
        secrets.decrypt(stored, "vision", "w2")
    monkeypatch.delenv("MLREG_PAGE_TOKEN_KEY")
    with pytest.raises(Exception, match="no encryption key"):
        secrets.encrypt("hunter2", "vision", "w1")


def test_deployed_secrets_use_kms_with_an_encryption_context(aws, monkeypatch):
    secrets._kms.cache_clear()
    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    monkeypatch.setenv("MLREG_WEBHOOK_KEY_ARN", key)
    stored = secrets.encrypt("hunter2", "vision", "w1")
    assert stored.startswith("kms:") and secrets.decrypt(stored, "vision", "w1") == "hunter2"
    with pytest.raises(Exception):
        secrets.decrypt(stored, "speech", "w1")
    secrets._kms.cache_clear()


# ---- destinations and signatures -------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "100.64.0.1",
                                     "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe",
                                     "2002:7f00:1::", "0.0.0.0"])
def test_private_addresses_are_not_public(address):
    assert not webhooks._public(address)


def test_public_addresses_are(monkeypatch):
    assert webhooks._public("8.8.8.8") and webhooks._public("2606:4700:4700::1111")


def test_deployed_environments_refuse_private_and_plain_http_destinations(monkeypatch):
    monkeypatch.setenv("MLREG_ENV", "prod")
    for url, reason in [("http://example.com/x", "scheme"), ("https://127.0.0.1/x", "non-public"),
                        ("https://localhost/x", "non-public"), ("https://169.254.169.254/latest", "non-public")]:
        with pytest.raises(webhooks.UnsafeDestination, match=reason):
            webhooks.resolve(url)
    outcome = webhooks.post("https://127.0.0.1:1/x", "{}", {})
    assert outcome.error.startswith("refused:") and not outcome.retryable
    monkeypatch.setenv("MLREG_ENV", "local")
    with pytest.raises(webhooks.UnsafeDestination, match="non-public"):
        webhooks.resolve("http://127.0.0.1:9/x")  # as MLflow: private addresses only when allowed
    monkeypatch.setenv("MLREG_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    assert webhooks.resolve("http://127.0.0.1:9/x") == "127.0.0.1"


def test_create_checks_the_url_without_dns_and_delivery_checks_the_address(monkeypatch):
    """No lookup at create/update (none works where DNS is unavailable); at delivery every address the
    name resolves to must be public, and the request goes to the address that was checked (a second
    lookup could be rebound to a private one)."""
    real, looked_up = socket.getaddrinfo, []
    names = {"rebind.example": ["93.184.216.34", "169.254.169.254"], "hook.example": ["127.0.0.1"]}

    def fake(host, port, *args, **kwargs):
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in names[host]] if host in names \
            else real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert webhooks.validate_url("https://rebind.example/x") and looked_up == []
    with pytest.raises(webhooks.UnsafeDestination, match="169.254.169.254"):
        webhooks.resolve("https://rebind.example/x")
    assert "refused:" in webhooks.post("http://hook.example/x", "{}", {}).error  # private: not allowed

    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLREG_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    try:
        outcome = webhooks.post(f"http://hook.example:{server.server_port}/x", "{}", {})
    finally:
        server.shutdown()
    assert outcome.status == 204 and received == [f"hook.example:{server.server_port}"]
    assert looked_up.count("hook.example") == 2  # one lookup per delivery, none by the HTTP client


def test_signature_matches_mlflows_own_signer():
    delivery = pytest.importorskip("mlflow.webhooks.delivery", reason="MLflow 3.3+ signs webhooks")
    expected = delivery._generate_hmac_signature("sec", "d-1", "1700000000", '{"a": 1}')
    assert webhooks.signature("sec", "d-1", "1700000000", '{"a": 1}') == expected


def test_outcomes_that_are_worth_a_retry():
    assert webhooks.Outcome(status=429).retryable and webhooks.Outcome(status=503).retryable
    assert webhooks.Outcome(error="ConnectTimeoutError: ...").retryable
    assert not webhooks.Outcome(status=404).retryable and not webhooks.Outcome(status=200).retryable


# ---- the publisher's failure handling ----------------------------------------------------------------------

def version_records(n: int) -> list[dict]:
    """n records of one tag set each (one event per record)."""
    ready = {**VERSION, "status": "READY", "tags": {}}
    return [record(PK, keys.version_sk(3), old=ready, new={**ready, "tags": {"k": str(i)}}) for i in range(n)]


def test_a_failed_put_is_retried_from_its_record(monkeypatch):
    records = version_records(4)
    monkeypatch.setattr(publisher, "_names", lambda: name_of)
    monkeypatch.setattr(publisher.bus, "put", lambda events: 2)  # the third event failed
    fanned = []
    monkeypatch.setattr(publisher, "_fan_out", lambda published: fanned.extend(published))
    result = publisher.handle({"Records": records})
    assert result == {"batchItemFailures": [{"itemIdentifier": records[2]["dynamodb"]["SequenceNumber"]}]}
    assert [seq for seq, _ in fanned] == [r["dynamodb"]["SequenceNumber"] for r in records[:2]]


def test_an_unreadable_record_stops_the_batch_there(monkeypatch):
    records = version_records(3)
    monkeypatch.setattr(publisher, "_names", lambda: name_of)
    records[1]["dynamodb"]["NewImage"] = {"bad": {"X": "?"}}
    published = []
    monkeypatch.setattr(publisher.bus, "put", lambda events: published.extend(events) or len(events))
    monkeypatch.setattr(publisher, "_fan_out", lambda published: None)
    result = publisher.handle({"Records": records})
    assert result == {"batchItemFailures": [{"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}]}
    assert len(published) == 1  # only the record before it


def test_events_reach_the_bus_and_subscribed_webhooks_get_a_delivery_each(aws, monkeypatch):
    events, sqs = boto3.client("events"), boto3.client("sqs")
    events.create_event_bus(Name="bus")
    queue = sqs.create_queue(QueueName="deliveries")["QueueUrl"]
    monkeypatch.setenv("MLREG_EVENT_BUS", "bus")
    monkeypatch.setenv("MLREG_WEBHOOK_QUEUE_URL", queue)
    publisher.bus.client.cache_clear(), webhooks.sqs.cache_clear()
    hook = {"pk": keys.webhooks("vision"), "sk": keys.webhook_sk("w1"), "webhook_id": "w1", "status": "ACTIVE",
            "events": ["model_version_tag.set"], "url": "http://127.0.0.1:9/x"}
    db.batch_put([hook, {**hook, "sk": keys.webhook_sk("w2"), "webhook_id": "w2", "status": "DISABLED"},
                  {**hook, "sk": keys.webhook_sk("w3"), "webhook_id": "w3", "events": ["model_version.created"]}])
    db.put({"pk": PK, "sk": keys.MODEL_SK, "name": "resnet", "model_id": "m1"})
    records = version_records(2)
    assert publisher.handle({"Records": records}) == {"batchItemFailures": []}
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in messages]
    assert [(b["webhook_id"], b["payload"]["value"]) for b in bodies] == [("w1", "0"), ("w1", "1")]
    assert len({b["delivery_id"] for b in bodies}) == 2
    publisher.bus.client.cache_clear(), webhooks.sqs.cache_clear()


def test_deliveries_retry_with_the_configured_backoff_then_dead_letter(monkeypatch):
    monkeypatch.setenv("MLREG_WEBHOOK_RETRY_DELAYS", "5,7")
    postponed, letters = [], []
    monkeypatch.setattr(publisher, "_attempt", lambda message: webhooks.Outcome(status=503))
    monkeypatch.setattr(webhooks, "postpone", lambda handle, seconds: postponed.append(seconds))
    monkeypatch.setattr(webhooks, "dead_letter", lambda message, outcome, attempts: letters.append(attempts))

    def sqs_record(attempt: int) -> dict:
        return {"messageId": f"m{attempt}", "receiptHandle": "h", "body": json.dumps({"webhook_id": "w"}),
                "attributes": {"ApproximateReceiveCount": str(attempt)}, "eventSource": "aws:sqs"}

    assert publisher.handle({"Records": [sqs_record(1)]}) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert publisher.handle({"Records": [sqs_record(2)]}) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert publisher.handle({"Records": [sqs_record(3)]}) == {"batchItemFailures": []}
    assert postponed == [5, 7] and letters == [3]
    monkeypatch.setattr(publisher, "_attempt", lambda message: webhooks.Outcome(status=410))
    assert publisher.handle({"Records": [sqs_record(1)]}) == {"batchItemFailures": []}
    assert letters == [3, 1]  # a final answer is not retried


def test_the_documented_schema_is_the_current_one():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    assert s.json_schema() in doc, "docs/events.md is out of date: regenerate its schema block from schema.json_schema()"
    for detail_type in s.DETAIL_TYPES:
        assert f"`{detail_type}`" in doc
