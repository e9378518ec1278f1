"""Events wiring: the webhook delivery queue with its dead-letter queue and alarm, the publisher's
SQS source and grants, the webhook secrets key, and the one-line rule helper."""

from __future__ import annotations

import json

import pytest

from tests.infra.helpers import flat, function_policy, one, resources

ENVIRONMENTS = ("dev", "staging", "prod")


def _queue(template: dict, prefix: str) -> tuple[str, dict]:
    (found,) = [(k, q) for k, q in resources(template, "AWS::SQS::Queue").items() if k.startswith(prefix)]
    return found


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_deliveries_retry_through_a_queue_into_a_dead_letter_queue_with_an_alarm(synthesis, env):
    from infra.constructs.events import DELIVERY_MAX_RECEIVES

    template = synthesis.templates[env]
    dlq_id, dlq = _queue(template, "EventsWebhookDeadLetters")
    _, deliveries = _queue(template, "EventsWebhookDeliveries")
    redrive = deliveries["Properties"]["RedrivePolicy"]
    assert flat(redrive["deadLetterTargetArn"]) == f"<{dlq_id}.Arn>"
    assert redrive["maxReceiveCount"] == DELIVERY_MAX_RECEIVES
    assert deliveries["Properties"]["VisibilityTimeout"] >= 60 and dlq["Properties"]["SqsManagedSseEnabled"]
    (alarm,) = [a for k, a in resources(template, "AWS::CloudWatch::Alarm").items()
                if k.startswith("EventsWebhookDeadLettersAlarm")]
    assert alarm["Properties"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": [dlq_id, "QueueName"]}
    assert alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_publisher_delivers_from_the_queue_reporting_partial_failures(synthesis, env):
    template = synthesis.templates[env]
    queue_id, _ = _queue(template, "EventsWebhookDeliveries")
    (mapping,) = [m["Properties"] for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
                  if flat(m["Properties"]["EventSourceArn"]) == f"<{queue_id}.Arn>"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "<FunctionspublisherFunction" in flat(mapping["FunctionName"])
    (function,) = [f for f in resources(template, "AWS::Lambda::Function").values()
                   if f["Properties"]["Handler"] == "functions.publisher.handler"]
    variables = function["Properties"]["Environment"]["Variables"]
    assert {"MLREG_EVENT_BUS", "MLREG_WEBHOOK_QUEUE_URL", "MLREG_WEBHOOK_DLQ_URL"} <= set(variables)
    # No declared environment lets webhooks call private addresses (cdk.json: webhook_allow_private_ips).
    assert "MLREG_WEBHOOK_ALLOW_PRIVATE_IPS" not in variables


def test_the_publisher_may_decrypt_webhook_secrets_and_send_to_its_queues(dev):
    key_id, key = one(dev, "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    policy = function_policy(dev, "publisher")
    decrypt = [s for s in policy if "kms:Decrypt" in json.dumps(s["Action"])]
    assert decrypt and all(flat(s["Resource"]) == f"<{key_id}.Arn>" for s in decrypt)
    assert not [s for s in policy if "kms:Encrypt" in json.dumps(s["Action"])]
    sends = {flat(r) for s in policy if "sqs:SendMessage" in json.dumps(s["Action"])
             for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])}
    assert {f"<{_queue(dev, p)[0]}.Arn>" for p in ("EventsWebhookDeliveries", "EventsWebhookDeadLetters")} <= sends


def test_a_rule_for_new_versions_of_a_model_is_one_line():
    from aws_cdk import App, Stack
    from aws_cdk import aws_events as events
    from aws_cdk import aws_events_targets as targets
    from aws_cdk import aws_sqs as sqs
    from aws_cdk.assertions import Template

    from infra.constructs.events import OnNewModelVersion

    stack = Stack(App(), "Consumer")
    bus = events.EventBus.from_event_bus_name(stack, "Bus", "mlreg-dev")
    OnNewModelVersion(stack, "Deploy", bus=bus, project="vision", model="resnet",
                      target=targets.SqsQueue(sqs.Queue(stack, "Q")))
    (rule,) = Template.from_stack(stack).find_resources("AWS::Events::Rule").values()
    assert rule["Properties"]["EventPattern"] == {"source": ["mlreg"], "detail-type": ["Model Version Created"],
                                                  "detail": {"project": ["vision"], "model": ["resnet"]}}
