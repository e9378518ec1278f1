"""Where mlreg keeps its state: the one DynamoDB table, the artifact bucket, the page-token secret."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.nag import acknowledge
from shared import table as table_definition


_ATTRIBUTE_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER,
                    "B": dynamodb.AttributeType.BINARY}


class Data(Construct):
    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, id)
        removal = RemovalPolicy.RETAIN if config.retain else RemovalPolicy.DESTROY
        self.table = self._table(config, removal)
        self.bucket = self._bucket(config, removal)
        self.page_token_secret = self._secret(removal)

    @property
    def index_arns(self) -> list[str]:
        """Each GSI by name: grants never need `index/*`."""
        return [f"{self.table.table_arn}/index/{gsi.name}" for gsi in table_definition.GSIS]

    def _table(self, config: EnvironmentConfig, removal: RemovalPolicy) -> dynamodb.Table:
        string = dynamodb.AttributeType.STRING
        table = dynamodb.Table(
            self, "Table",
            partition_key=dynamodb.Attribute(name=table_definition.PARTITION_KEY, type=string),
            sort_key=dynamodb.Attribute(name=table_definition.SORT_KEY, type=string),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            deletion_protection=config.deletion_protection,
            stream=dynamodb.StreamViewType[table_definition.STREAM_VIEW],
            time_to_live_attribute=table_definition.TTL_ATTRIBUTE,
            removal_policy=removal,
        )
        for gsi in table_definition.GSIS:
            table.add_global_secondary_index(
                index_name=gsi.name,
                partition_key=dynamodb.Attribute(name=gsi.partition_key, type=string),
                sort_key=dynamodb.Attribute(name=gsi.sort_key, type=_ATTRIBUTE_TYPES[gsi.sort_key_type]),
                projection_type=dynamodb.ProjectionType[gsi.projection],
            )
        return table

    def _bucket(self, config: EnvironmentConfig, removal: RemovalPolicy) -> s3.Bucket:
        access_logs = self._access_log_bucket(config, removal) if config.s3_access_logs else None
        bucket = s3.Bucket(
            self, "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            # Versioning keeps an overwritten or deleted package recoverable for a while.
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(id="abort-incomplete-multipart-uploads",
                                 abort_incomplete_multipart_upload_after=Duration.days(1)),
                s3.LifecycleRule(id="expire-old-versions",
                                 noncurrent_version_expiration=Duration.days(config.noncurrent_version_days),
                                 expired_object_delete_marker=True),
            ],
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="data-bucket/" if access_logs else None,
            removal_policy=removal,
            auto_delete_objects=not config.retain,
        )
        if access_logs is None:
            acknowledge(bucket, "AwsSolutions-S1",
                        "Server access logs are opt-in per environment (s3_access_logs in cdk.json): every "
                        "object operation already goes through the API's functions, whose requests are "
                        "logged and traced.")
        return bucket

    def _access_log_bucket(self, config: EnvironmentConfig, removal: RemovalPolicy) -> s3.Bucket:
        bucket = s3.Bucket(
            self, "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # S3 log delivery writes with the bucket-owner-enforced setting via the bucket policy CDK adds.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(365))],
            removal_policy=removal,
            auto_delete_objects=not config.retain,
        )
        return bucket

    def _secret(self, removal: RemovalPolicy) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self, "PageTokenKey",
            description="mlreg: HMAC key that signs page tokens (read once per function cold start)",
            generate_secret_string=secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=64),
            removal_policy=removal,
        )
        acknowledge(secret, "AwsSolutions-SMG4",
                    "The key only signs short-lived page tokens; rotating it would need a rotation function "
                    "for no gain beyond invalidating pagination in flight. Replace it by updating the secret.")
        return secret
