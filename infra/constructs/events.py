"""Registry events: a custom EventBridge bus per environment, fed from the table's stream by the
publisher function (a transactional outbox: only committed changes become events)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.nag import acknowledge
from shared.events import schema as event_schema
from shared.events.webhooks import DEFAULT_RETRY_DELAYS

STREAM_BATCH_SIZE = 100
STREAM_RETRIES = 5
STREAM_MAX_RECORD_AGE = Duration.hours(24)  # the stream keeps records 24 h anyway
# -- webhooks (shared/events/webhooks.py): the publisher postpones a failed delivery by the next delay
# and dead-letters it itself after the last; the queue's redrive is the safety net for crashes.
DELIVERY_BATCH_SIZE = 10
DELIVERY_VISIBILITY = Duration.seconds(90)  # above the publisher's 60 s timeout
DELIVERY_MAX_RECEIVES = len(DEFAULT_RETRY_DELAYS) + 2


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
        self._webhooks(config)

    # -- webhooks: delivery queue, its dead-letter queue and alarm, the key of the webhook secrets --
    def _webhooks(self, config: EnvironmentConfig) -> None:
        removal = RemovalPolicy.RETAIN if config.retain else RemovalPolicy.DESTROY
        self.webhook_key = kms.Key(self, "WebhookSecretsKey", enable_key_rotation=True, removal_policy=removal,
                                   description=f"mlreg {config.name}: encrypts webhook signing secrets")
        self.webhook_dead_letters = sqs.Queue(self, "WebhookDeadLetters", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                              enforce_ssl=True, retention_period=Duration.days(14),
                                              removal_policy=removal)
        self.deliveries = sqs.Queue(
            self, "WebhookDeliveries", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            visibility_timeout=DELIVERY_VISIBILITY, removal_policy=removal,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.webhook_dead_letters,
                                                  max_receive_count=DELIVERY_MAX_RECEIVES))
        self.webhook_alarm = cloudwatch.Alarm(
            self, "WebhookDeadLettersAlarm", threshold=1, evaluation_periods=1,
            metric=self.webhook_dead_letters.metric_approximate_number_of_messages_visible(
                statistic="Maximum", period=Duration.minutes(5)),
            alarm_description="Webhook deliveries that failed every retry (see the dead-letter queue's messages)",
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)

    def grant_webhook_admin(self, function: lambda_.Function) -> None:
        """The function serving the webhook routes encrypts secrets (and decrypts them for the test route)."""
        function.add_environment("MLREG_WEBHOOK_KEY_ARN", self.webhook_key.key_arn)
        self.webhook_key.grant(function, "kms:Encrypt", "kms:Decrypt")  # secrets are small: no data keys

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
        # -- webhooks: the same function delivers from the delivery queue (shared/events/publisher.py) --
        publisher.add_event_source(sources.SqsEventSource(self.deliveries, batch_size=DELIVERY_BATCH_SIZE,
                                                          report_batch_item_failures=True))
        self.deliveries.grant_send_messages(publisher)
        self.webhook_dead_letters.grant_send_messages(publisher)
        self.webhook_key.grant_decrypt(publisher)
        if isinstance(publisher, lambda_.Function):
            publisher.add_environment("MLREG_WEBHOOK_QUEUE_URL", self.deliveries.queue_url)
            publisher.add_environment("MLREG_WEBHOOK_DLQ_URL", self.webhook_dead_letters.queue_url)


class OnNewModelVersion(Construct):
    """"On a new version of model X in project P, call target T" as one line:

        OnNewModelVersion(self, "DeployResnet", bus=bus, project="vision", model="resnet",
                          target=targets.LambdaFunction(deployer))

    `model=None` matches every model of the project; `detail_types` widens it to other events."""

    def __init__(self, scope: Construct, id: str, *, bus: events.IEventBus, project: str, target: events.IRuleTarget,
                 model: str | None = None, detail_types: tuple[str, ...] = (event_schema.VERSION_CREATED,)) -> None:
        super().__init__(scope, id)
        detail = {"project": [project], **({"model": [model]} if model else {})}
        self.rule = events.Rule(self, "Rule", event_bus=bus, description=f"mlreg: {', '.join(detail_types)} in "
                                f"{project}/{model or '*'}", event_pattern=events.EventPattern(
                                    source=[event_schema.SOURCE], detail_type=list(detail_types), detail=detail))
        self.rule.add_target(target)
