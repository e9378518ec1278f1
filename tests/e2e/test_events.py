"""Registry events end to end: the real MLflow client against `mlreg serve`, whose publisher reads
the emulated table's stream, puts events on the emulated EventBridge bus and delivers webhooks.

EventBridge events are observed as a user would: a rule with an SQS target on the bus, made through
the emulator's endpoint (`<data-dir>/endpoint.json`). Webhooks go to a local HTTP receiver that
verifies the signature with the recipe of MLflow's webhook documentation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

from tests.conftest import start_service, stop_service

MLFLOW3 = int(mlflow.__version__.split(".")[0]) >= 3
HAS_WEBHOOK_API = hasattr(mlflow.MlflowClient, "create_webhook")
RETRY_DELAYS = "1,1"  # three attempts, one second apart: the dead-letter test stays fast
BUS = "mlreg-local"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """This module's own `mlreg serve` (overrides the session one): short webhook retry delays, and
    receivers on this machine allowed."""
    svc = start_service(tmp_path_factory.mktemp("events") / "data",
                        extra=["--webhook-retry-delays", RETRY_DELAYS, "--webhook-allow-private-ips"])
    yield svc
    stop_service(svc)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def aws(service, name: str):
    """A client of the emulator's endpoint, signing with its key (as `mlreg token` does)."""
    from mlreg.signatures import KEY_FILE, KEY_ID

    info = json.loads((service.data_dir / "endpoint.json").read_text())
    return boto3.client(name, endpoint_url=info["dynamodb_endpoint"], region_name=info["region"],
                        aws_access_key_id=KEY_ID, aws_secret_access_key=(service.data_dir / KEY_FILE).read_text())


class Rule:
    """An EventBridge rule on the service's bus with an SQS queue as its target."""

    def __init__(self, service, pattern: dict):
        self.sqs, events, name = aws(service, "sqs"), aws(service, "events"), unique("rule")
        self.queue = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=name, EventBusName=BUS, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])
        self.seen: list[dict] = []

    def wait_for(self, predicate, timeout: float = 15.0) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for m in self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", []):
                self.seen.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
            if any(predicate(e) for e in self.seen):
                return self.seen
            time.sleep(0.1)
        raise AssertionError(f"no matching event within {timeout} s; seen: {self.seen}")


def model_rule(service, model: str) -> Rule:
    return Rule(service, {"source": ["mlreg"], "detail": {"project": ["default"], "model": [model]}})


def register(tracking, model: str):
    with mlflow.start_run(experiment_id="0") as run:  # not the experiment other modules made active
        mlflow.log_text("flavors: {}\n", "model/MLmodel")
    tracking.create_registered_model(model, tags={"team": "vision"})
    return tracking.create_model_version(model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id), run


# ---- EventBridge -------------------------------------------------------------------------------------

def test_registering_a_version_puts_the_documented_event_on_the_bus(service, tracking):
    model = unique("events")
    rule = model_rule(service, model)
    mv, run = register(tracking, model)
    tracking.set_registered_model_alias(model, "champion", mv.version)
    tracking.set_model_version_tag(model, mv.version, "validated", "yes")
    tracking.delete_model_version_tag(model, mv.version, "validated")
    tracking.transition_model_version_stage(model, mv.version, "Production")
    tracking.delete_registered_model_alias(model, "champion")

    seen = rule.wait_for(lambda e: e["detail-type"] == "Model Version Alias Deleted")
    created = next(e for e in seen if e["detail-type"] == "Model Version Created")
    assert created["source"] == "mlreg"
    detail = created["detail"]
    token_id = hashlib.sha256(service.token.encode()).hexdigest()[:12]
    assert detail["project"] == "default" and detail["model"] == model and detail["version"] == 1
    assert detail["semver"] == "1.0.0" and detail["run_id"] == run.info.run_id and detail["status"] == "READY"
    assert detail["source"] == f"runs:/{run.info.run_id}/model"
    assert detail["package_uri"] == tracking.get_model_version_download_uri(model, "1")
    assert detail["actor"] == token_id and detail["timestamp"] > 0
    # every change once, in commit order (the stream sequence grows with it)
    types = [e["detail-type"] for e in seen]
    assert types == ["Registered Model Created", "Model Version Created", "Model Version Alias Set",
                     "Model Version Tag Set", "Model Version Tag Deleted", "Model Version Stage Transitioned",
                     "Model Version Alias Deleted"]
    sequences = [int(e["detail"]["sequence"]) for e in seen]
    assert sequences == sorted(sequences)
    stage = seen[5]["detail"]
    assert (stage["previous_stage"], stage["stage"]) == ("None", "Production")
    assert seen[2]["detail"]["alias"] == "champion" and seen[3]["detail"]["tag_key"] == "validated"
    # the registered model's deletion too
    tracking.delete_registered_model(model)
    rule.wait_for(lambda e: e["detail-type"] == "Registered Model Deleted")


def test_a_rename_is_one_event_and_a_delete_is_told_when_final(service, tracking):
    """Issue 16: a rename publishes `Registered Model Renamed` alone (no deletes and creates of the
    model's items); a delete publishes its version's and alias's deletions, then the model's, once the
    registry worker has removed them. The rule follows the model's immutable id across the rename."""
    old, new = unique("renamed-from"), unique("renamed-to")
    mv, _ = register(tracking, old)
    tracking.set_registered_model_alias(old, "champion", mv.version)
    model_id = tracking.get_model_version_download_uri(old, mv.version).split("/")[-2]
    rule = Rule(service, {"source": ["mlreg"], "detail": {"model_id": [model_id]}})
    tracking.rename_registered_model(old, new)
    tracking.set_model_version_tag(new, mv.version, "marker", "after the rename")
    seen = rule.wait_for(lambda e: e["detail"].get("tag_key") == "marker")
    after_alias = [e for e in seen if e["detail-type"] != "Model Version Alias Set"
                   and e["detail-type"] not in ("Registered Model Created", "Model Version Created")]
    assert [e["detail-type"] for e in after_alias] == ["Registered Model Renamed", "Model Version Tag Set"]
    renamed = after_alias[0]["detail"]
    assert (renamed["model"], renamed["previous_name"]) == (new, old)
    assert after_alias[1]["detail"]["model"] == new  # versions are named by the model's name now

    tracking.delete_registered_model(new)
    seen = rule.wait_for(lambda e: e["detail-type"] == "Registered Model Deleted", timeout=60)
    tail = [e["detail-type"] for e in seen[seen.index(after_alias[-1]) + 1:]]
    assert sorted(tail[:-1]) == ["Model Version Alias Deleted", "Model Version Deleted"]
    assert tail[-1] == "Registered Model Deleted" and seen[-1]["detail"]["model"] == new


def test_a_failed_transaction_produces_no_event(service, tracking):
    model = unique("failing")
    rule = model_rule(service, model)
    mv, _ = register(tracking, model)
    with pytest.raises(MlflowException):  # the semver is taken: the version's transaction is cancelled
        tracking.create_model_version(model, mv.source, mv.run_id, tags={"mlreg.version": "1.0.0"})
    with pytest.raises(MlflowException):  # the name is taken: the model's transaction is cancelled
        tracking.create_registered_model(model)
    tracking.set_model_version_tag(model, mv.version, "marker", "after the failures")

    seen = rule.wait_for(lambda e: e["detail"].get("tag_key") == "marker")
    assert [e["detail-type"] for e in seen] == ["Registered Model Created", "Model Version Created",
                                               "Model Version Tag Set"]


# ---- webhooks ---------------------------------------------------------------------------------------

def verify_mlflow_signature(payload: str, signature: str, secret: str, delivery_id: str, timestamp: str) -> bool:
    """The verification recipe of MLflow's webhook documentation, unchanged."""
    if not signature or not signature.startswith("v1,"):
        return False
    signature_b64 = signature.removeprefix("v1,")
    signed_content = f"{delivery_id}.{timestamp}.{payload}"
    expected_signature = hmac.new(secret.encode("utf-8"), signed_content.encode("utf-8"), hashlib.sha256).digest()
    expected_signature_b64 = base64.b64encode(expected_signature).decode("utf-8")
    return hmac.compare_digest(signature_b64, expected_signature_b64)


class Receiver:
    """A local webhook receiver answering `status`, recording what it got."""

    def __init__(self, status: int = 200):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                received.append((dict(self.headers), body, time.time()))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 400 else b"boom")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def wait(self, count: int, timeout: float = 15.0) -> list:
        deadline = time.time() + timeout
        while len(self.received) < count and time.time() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"got {len(self.received)} of {count} deliveries"
        return self.received

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    made = []

    def make(status: int = 200) -> Receiver:
        made.append(Receiver(status))
        return made[-1]

    yield make
    for r in made:
        r.close()


def webhooks_api(service, method: str, path: str = "", **kwargs) -> requests.Response:
    return requests.request(method, f"{service.uri()}/api/2.0/mlflow/webhooks{path}", timeout=30,
                            headers={"Authorization": f"Bearer {service.token}"}, **kwargs)


@pytest.mark.skipif(not HAS_WEBHOOK_API, reason="this MLflow client has no webhook API (MLflow 3.3+)")
def test_a_webhook_receives_the_signed_mlflow_payload(service, tracking, receiver):
    hook_receiver, model, secret = receiver(), unique("hooked"), "s3cr3t-" + uuid.uuid4().hex
    hook = tracking.create_webhook(name=unique("deploy"), url=hook_receiver.url, secret=secret,
                                   events=["model_version.created", "model_version_alias.created"])
    try:
        mv, run = register(tracking, model)
        tracking.set_registered_model_alias(model, "champion", mv.version)
        # Deliveries go through a queue: they may arrive in either order.
        received = {json.loads(b)["entity"]: (h, b) for h, b, _ in hook_receiver.wait(2)}
        (headers, body), (alias_headers, alias_body) = received["model_version"], received["model_version_alias"]
    finally:
        tracking.delete_webhook(hook.webhook_id)

    assert verify_mlflow_signature(body, headers["X-MLflow-Signature"], secret, headers["X-MLflow-Delivery-Id"],
                                   headers["X-MLflow-Timestamp"])
    assert not verify_mlflow_signature(body, headers["X-MLflow-Signature"], "wrong", headers["X-MLflow-Delivery-Id"],
                                       headers["X-MLflow-Timestamp"])
    assert abs(int(headers["X-MLflow-Timestamp"]) - time.time()) < 300
    payload = json.loads(body)
    assert (payload["entity"], payload["action"]) == ("model_version", "created")
    tags = {"mlreg.version": "1.0.0", "mlreg.package_url": f"{service.uri()}/package?name={model}&version=1"}
    assert payload["data"] == {"name": model, "version": "1", "source": f"runs:/{run.info.run_id}/model",
                               "run_id": run.info.run_id, "tags": tags, "description": None}
    alias = json.loads(alias_body)
    assert (alias["entity"], alias["action"]) == ("model_version_alias", "created")
    assert alias["data"] == {"name": model, "alias": "champion", "version": "1"}
    assert verify_mlflow_signature(alias_body, alias_headers["X-MLflow-Signature"], secret,
                                   alias_headers["X-MLflow-Delivery-Id"], alias_headers["X-MLflow-Timestamp"])


def test_a_failing_receiver_gets_retries_then_the_delivery_is_dead_lettered(service, tracking, receiver):
    failing, model = receiver(500), unique("dlq")
    created = webhooks_api(service, "POST", json={"name": unique("failing"), "url": failing.url,
                                                  "events": [{"entity": "REGISTERED_MODEL", "action": "CREATED"}]})
    assert created.status_code == 200, created.text
    hook_id = created.json()["webhook"]["webhook_id"]
    try:
        tracking.create_registered_model(model, tags={"team": "speech"})
        attempts = failing.wait(3)
        sqs = aws(service, "sqs")
        dlq = sqs.get_queue_url(QueueName="mlreg-webhook-dead-letters")["QueueUrl"]
        deadline, letters = time.time() + 10, []
        while time.time() < deadline and not any(json.loads(m["Body"])["payload"]["name"] == model for m in letters):
            letters += sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
            time.sleep(0.1)
    finally:
        webhooks_api(service, "DELETE", f"/{hook_id}")
    letter = next(json.loads(m["Body"]) for m in letters if json.loads(m["Body"])["payload"]["name"] == model)
    assert letter["attempts"] == 3 and letter["last_status"] == 500 and letter["event"] == "registered_model.created"
    assert letter["payload"] == {"name": model, "tags": {"team": "speech"}, "description": None}
    time.sleep(1.5)
    assert len(failing.received) == 3  # no fourth attempt
    ids = {h["X-MLflow-Delivery-Id"] for h, _, _ in attempts}
    assert len(ids) == 1  # one delivery, retried
    gaps = [b[2] - a[2] for a, b in zip(attempts, attempts[1:])]
    assert all(g >= 0.9 for g in gaps), gaps  # the configured backoff


def test_webhook_routes_over_http(service, receiver):
    """Create, list, get, update, test and delete with raw HTTP (any client line)."""
    ok = receiver()
    name = unique("crud")
    created = webhooks_api(service, "POST", json={
        "name": name, "url": ok.url, "description": "d", "secret": "top-secret",
        "events": [{"entity": "MODEL_VERSION_TAG", "action": "SET"}]}).json()["webhook"]
    assert created["name"] == name and created["status"] == "ACTIVE" and "secret" not in created
    assert created["events"] == [{"entity": "MODEL_VERSION_TAG", "action": "SET"}]
    hook_id = created["webhook_id"]
    assert webhooks_api(service, "GET", f"/{hook_id}").json()["webhook"] == created
    assert hook_id in [w["webhook_id"] for w in webhooks_api(service, "GET").json()["webhooks"]]

    updated = webhooks_api(service, "PATCH", f"/{hook_id}", json={"status": "DISABLED", "description": "e"}).json()
    assert updated["webhook"]["status"] == "DISABLED" and updated["webhook"]["description"] == "e"

    result = webhooks_api(service, "POST", f"/{hook_id}/test", json={}).json()["result"]
    assert result["success"] is True and result["response_status"] == 200
    headers, body, _ = ok.wait(1)[0]
    assert json.loads(body)["data"] == {"name": "example_model", "version": "1", "key": "example_key",
                                        "value": "example_value"}
    assert verify_mlflow_signature(body, headers["X-MLflow-Signature"], "top-secret", headers["X-MLflow-Delivery-Id"],
                                   headers["X-MLflow-Timestamp"])

    bad = webhooks_api(service, "POST", json={"name": "-bad-", "url": ok.url,
                                              "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}]})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert webhooks_api(service, "DELETE", f"/{hook_id}").status_code == 200
    missing = webhooks_api(service, "GET", f"/{hook_id}")
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.skipif(not HAS_WEBHOOK_API, reason="this MLflow client has no webhook API (MLflow 3.3+)")
def test_the_mlflow_client_manages_webhooks(tracking, receiver):
    ok = receiver()
    hook = tracking.create_webhook(name=unique("client"), url=ok.url, events=["registered_model.created"],
                                   description="from the client")
    assert tracking.get_webhook(hook.webhook_id).description == "from the client"
    assert hook.webhook_id in [w.webhook_id for w in tracking.list_webhooks()]
    assert tracking.update_webhook(hook.webhook_id, status="DISABLED").status.value == "DISABLED"
    assert tracking.test_webhook(hook.webhook_id).success
    tracking.delete_webhook(hook.webhook_id)
    with pytest.raises(MlflowException):
        tracking.get_webhook(hook.webhook_id)
