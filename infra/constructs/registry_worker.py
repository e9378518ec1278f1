"""The registry worker's wiring (shared/registry/worker.py): the table's stream, filtered to the two
changes that call for a job, feeds the worker, which queues the jobs; the jobs queue feeds the worker
one job per invocation. Jobs the queue gave up on (and stream batches the worker could not queue)
land in one dead-letter queue, whose alarm pages (docs/registry.md, "The registry worker")."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import EnvironmentConfig
from shared.registry import items
from shared.registry.worker import MAX_RECEIVES

WORKER_TIMEOUT = Duration.minutes(15)  # a Lambda's longest; a longer job continues in a new message
JOBS_VISIBILITY = Duration.minutes(16)  # above the worker's timeout: a running job is not handed out twice
STREAM_RETRIES = 5


class RegistryWorker(Construct):
    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, worker: lambda_.Function,
                 table: dynamodb.ITable, bucket: s3.IBucket) -> None:
        super().__init__(scope, id)
        removal = RemovalPolicy.RETAIN if config.retain else RemovalPolicy.DESTROY
        self.dead_letters = sqs.Queue(self, "DeadLetters", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                      enforce_ssl=True, retention_period=Duration.days(14), removal_policy=removal)
        self.jobs = sqs.Queue(self, "Jobs", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                              visibility_timeout=JOBS_VISIBILITY, removal_policy=removal,
                              dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters,
                                                                    max_receive_count=MAX_RECEIVES))
        worker.add_event_source(sources.DynamoEventSource(
            table, starting_position=lambda_.StartingPosition.TRIM_HORIZON, batch_size=100,
            bisect_batch_on_error=True, retry_attempts=STREAM_RETRIES, report_batch_item_failures=True,
            on_failure=sources.SqsDlq(self.dead_letters),
            filters=[  # only the changes that call for a job reach the function
                lambda_.FilterCriteria.filter({"eventName": ["INSERT"], "dynamodb": {
                    "NewImage": {"status": {"S": [items.PENDING]}}}}),
                lambda_.FilterCriteria.filter({"eventName": ["MODIFY"], "dynamodb": {
                    "NewImage": {"deleted_at": {"N": lambda_.FilterRule.exists()}}}}),
            ]))
        worker.add_event_source(sources.SqsEventSource(self.jobs, batch_size=1, report_batch_item_failures=True))
        self.jobs.grant_send_messages(worker)  # continuations, and the jobs it queues from the stream
        worker.add_environment("MLREG_WORKER_QUEUE_URL", self.jobs.queue_url)
        # multipart copies of big files: taking up an upload a previous run left unfinished
        worker.add_to_role_policy(iam.PolicyStatement(actions=["s3:ListMultipartUploadParts"],
                                                      resources=[bucket.arn_for_objects("projects/*/packages/*")]))
        worker.add_to_role_policy(iam.PolicyStatement(actions=["s3:ListBucketMultipartUploads"],
                                                      resources=[bucket.bucket_arn]))
        self.alarm = cloudwatch.Alarm(
            self, "DeadLettersAlarm", threshold=1, evaluation_periods=1,
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(
                statistic="Maximum", period=Duration.minutes(5)),
            alarm_description="Registry jobs (package copies, model purges) that failed every retry: versions stay "
                              "PENDING_REGISTRATION or deleted models keep items (see the dead-letter queue)",
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
