"""Events, alarms, outputs and declared project records."""

from __future__ import annotations

import pytest

from tests.infra.helpers import flat, one, resources

ENVIRONMENTS = ("dev", "staging", "prod")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_one_event_bus_per_environment(synthesis, env):
    _, bus = one(synthesis.templates[env], "AWS::Events::EventBus")
    assert bus["Properties"]["Name"] == f"mlreg-{env}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_publisher_reads_the_stream_bisecting_failures_into_a_dead_letter_queue(synthesis, env):
    template = synthesis.templates[env]
    table_id, _ = one(template, "AWS::DynamoDB::Table")
    (queue_id, queue), = [(k, q) for k, q in resources(template, "AWS::SQS::Queue").items()
                          if k.startswith("EventsPublisherDeadLetters")]
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    (mapping,) = [m for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
                  if "StreamArn" in flat(m["Properties"]["EventSourceArn"])  # events: the other one is webhooks'
                  and "<FunctionspublisherFunction" in flat(m["Properties"]["FunctionName"])]
    props = mapping["Properties"]
    assert flat(props["EventSourceArn"]) == f"<{table_id}.StreamArn>"
    assert props["BisectBatchOnFunctionError"] is True
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["MaximumRetryAttempts"] >= 1
    assert flat(props["DestinationConfig"]["OnFailure"]["Destination"]) == f"<{queue_id}.Arn>"
    assert "<FunctionspublisherFunction" in flat(props["FunctionName"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_alarms_notify_the_environments_topic(synthesis, env):
    template, config = synthesis.templates[env], synthesis.configs[env]
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 6
    described = " ".join(a["Properties"]["AlarmDescription"] for a in alarms.values())
    for topic in ("5xx", "throttled", "authorizer", "publisher", "webhook", "registry jobs"):
        assert topic in described.lower()
    for alarm in alarms.values():
        targets = {flat(a) for a in alarm["Properties"]["AlarmActions"]}
        if config.alarm_topic_arn:
            assert targets == {config.alarm_topic_arn}
        else:
            assert targets == {f"<{one(template, 'AWS::SNS::Topic')[0]}>"}
    subscriptions = resources(template, "AWS::SNS::Subscription")
    assert {s["Properties"]["Endpoint"] for s in subscriptions.values()} == set(config.alarm_emails)
    _, dashboard = one(template, "AWS::CloudWatch::Dashboard")
    assert dashboard["Properties"]["DashboardName"] == f"mlreg-{env}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_outputs_give_the_tracking_uri_template(synthesis, env):
    outputs = synthesis.templates[env]["Outputs"]
    assert flat(outputs["TrackingUriTemplate"]["Value"]).endswith("/projects/<project>")
    assert flat(outputs["IamTrackingUriTemplate"]["Value"]).endswith("/iam/projects/<project>")
    assert flat(outputs["TrackingUriTemplate"]["Value"]).startswith("https://<ApiRestApi")
    for project in synthesis.configs[env].projects:
        key = "TrackingUri" + project.id.replace("-", "")
        assert flat(outputs[key]["Value"]).endswith(f"/projects/{project.id}")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_declared_projects_become_records(synthesis, env):
    template, config = synthesis.templates[env], synthesis.configs[env]
    records = resources(template, "Custom::MlregProject")
    assert {r["Properties"]["Project"]: r["Properties"]["Description"] for r in records.values()} == \
        {p.id: p.description for p in config.projects}
    for record in records.values():
        assert "<FunctionsdeclaredprojectsFunction" in flat(record["Properties"]["ServiceToken"])
        # Removing a project from cdk.json sends Delete, which the handler ignores (data stays);
        # see test_package.py for the handler itself.
        assert record.get("DeletionPolicy", "Delete") == "Delete"


# ---- the registry worker (infra/constructs/registry_worker.py) ----------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_registry_worker_takes_its_jobs_from_the_stream_and_a_queue_with_a_dead_letter_queue(synthesis, env):
    template = synthesis.templates[env]
    table_id, _ = one(template, "AWS::DynamoDB::Table")
    queues = resources(template, "AWS::SQS::Queue")
    (jobs_id, jobs), = [(k, q) for k, q in queues.items() if k.startswith("RegistryWorkerJobs")]
    (dlq_id, _), = [(k, q) for k, q in queues.items() if k.startswith("RegistryWorkerDeadLetters")]
    redrive = jobs["Properties"]["RedrivePolicy"]
    assert flat(redrive["deadLetterTargetArn"]) == f"<{dlq_id}.Arn>" and redrive["maxReceiveCount"] >= 3
    (worker_id, worker), = [(k, f) for k, f in resources(template, "AWS::Lambda::Function").items()
                            if f["Properties"].get("Handler") == "functions.worker.handler"]
    assert worker["Properties"]["Timeout"] == 900 < jobs["Properties"]["VisibilityTimeout"]
    mappings = [m["Properties"] for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
                if f"<{worker_id}" in flat(m["Properties"]["FunctionName"])]
    stream, = [m for m in mappings if "StreamArn" in flat(m["EventSourceArn"])]
    assert flat(stream["EventSourceArn"]) == f"<{table_id}.StreamArn>"
    assert flat(stream["DestinationConfig"]["OnFailure"]["Destination"]) == f"<{dlq_id}.Arn>"
    patterns = [f["Pattern"] for f in stream["FilterCriteria"]["Filters"]]
    assert any("PENDING_REGISTRATION" in p for p in patterns) and any("deleted_at" in p for p in patterns)
    queue, = [m for m in mappings if "StreamArn" not in flat(m["EventSourceArn"])]
    assert flat(queue["EventSourceArn"]) == f"<{jobs_id}.Arn>" and queue["BatchSize"] == 1
    assert queue["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
