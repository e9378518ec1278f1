"""Registry events: a custom EventBridge bus per environment, fed from the table's stream by the
publisher function (a transactional outbox: only committed changes become events)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.nag import acknowledge

STREAM_BATCH_SIZE = 100
STREAM_RETRIES = 5
STREAM_MAX_RECORD_AGE = Duration.hours(24)  # the stream keeps records 24 h anyway


class Events(Construct):
    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, id)
        self.bus = events.EventBus(self, "Bus", event_bus_name=f"mlreg-{config.name}",
                                   description=f"mlreg {config.name}: model registry events")
        # Stream batches the publisher gave up on land here. It exists before the publisher does,
        # so its alarm and retention are in place from the first deployment.
        self.dead_letters = sqs.Queue(
            self, "PublisherDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=RemovalPolicy.RETAIN if config.retain else RemovalPolicy.DESTROY,
        )
        acknowledge(self.dead_letters, "AwsSolutions-SQS3",
                    "This queue is itself the dead-letter destination of the publisher's stream source "
                    "(an event-source on-failure destination, which cdk-nag does not recognise as a DLQ).")

    def add_publisher(self, publisher: lambda_.IFunction, table: dynamodb.ITable) -> None:
        """Feed the table's stream to `publisher`, in order per item, a bad record isolated by
        bisecting its batch and, after the retries, its batch's metadata sent to the dead-letter queue."""
        publisher.add_event_source(sources.DynamoEventSource(
            table,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=STREAM_BATCH_SIZE,
            bisect_batch_on_error=True,
            retry_attempts=STREAM_RETRIES,
            max_record_age=STREAM_MAX_RECORD_AGE,
            report_batch_item_failures=True,
            on_failure=sources.SqsDlq(self.dead_letters),
        ))
