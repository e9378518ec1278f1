"""The Lambda functions: one per module of `functions/`, all from one code asset, each with its own
role that holds only what its routes need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs.data import Data
from infra.constructs.logs import log_group
from infra.nag import acknowledge, wildcard_resource
from shared import table as table_definition

# Keep in step with infra/package.py, which builds the dependencies for exactly this platform.
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64

TABLE_READ = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:ConditionCheckItem")
TABLE_WRITE = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem")
OBJECT_READ = ("s3:GetObject",)
# Multipart uploads (presigned parts included) need PutObject plus AbortMultipartUpload.
OBJECT_WRITE = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject")

# Key patterns of the bucket layout (shared/artifacts/paths.py, shared/registry/packages.py).
ALL_PROJECTS = "projects/*"
RUN_ARTIFACTS = "projects/*/artifacts/*"
PACKAGES = "projects/*/packages/*"


@dataclass(frozen=True)
class Access:
    """What one function may touch. `table` is "none", "token" (the authorizer), "session" (the web
    UI's sign-in), "read" or "read-write"."""

    table: str = "read-write"
    read_objects: tuple[str, ...] = ()  # key patterns it may get (and then list the bucket)
    write_objects: tuple[str, ...] = ()  # key patterns it may put and delete
    list_objects: tuple[str, ...] = ()  # key prefixes it may list, when it reads no object
    page_token_secret: bool = True
    put_events: bool = False
    memory_mb: int = 1024  # more memory is more CPU: shorter cold starts for the API functions
    timeout_seconds: int = 29  # API Gateway gives up after 29 s
    description: str = ""

    @property
    def uses_bucket(self) -> bool:
        return bool(self.read_objects or self.write_objects or self.list_objects)


ACCESS: Mapping[str, Access] = {
    # Checks a token: one GetItem, plus stamping the token's last-use time (nothing else).
    "authorizer": Access(table="token", page_token_secret=False, memory_mb=512, timeout_seconds=10,
                         description="API Gateway REQUEST authorizer: project tokens"),
    # Lists logged-model artifacts; reads and writes no object.
    "tracking": Access(list_objects=(RUN_ARTIFACTS,), description="MLflow tracking routes"),
    # Copies small packages in the request (the worker copies the rest); deletes packages with their versions.
    "registry": Access(read_objects=(RUN_ARTIFACTS, PACKAGES), write_objects=(PACKAGES,),
                       description="MLflow model registry routes"),
    # Reads artifacts and packages; writes run artifacts only (packages are read-only to clients).
    "artifacts": Access(table="read", read_objects=(ALL_PROJECTS,), write_objects=(RUN_ARTIFACTS,),
                        description="MLflow artifact routes and presigned transfers"),
    # The web UI's page, sign-in and sign-out: reads tokens and sessions, writes and deletes sessions.
    "ui": Access(table="session", page_token_secret=False, memory_mb=512, timeout_seconds=10,
                 description="the web UI's page, sign-in and sign-out"),
    # The registry worker (shared/registry/worker.py): copies packages, purges deleted models.
    "worker": Access(read_objects=(RUN_ARTIFACTS, PACKAGES), write_objects=(PACKAGES,), page_token_secret=False,
                     memory_mb=1024, timeout_seconds=900, description="registry worker: package copies, model purges"),
    # Turns committed table changes into EventBridge events.
    "publisher": Access(table="read", page_token_secret=False, put_events=True, memory_mb=512, timeout_seconds=60,
                        description="DynamoDB stream -> EventBridge"),
}
# A function the route table gains later starts with the table only; give it an entry for more.
DEFAULT_ACCESS = Access()
# Deploy-time handler of infra/handlers/, not an API function.
DECLARED_PROJECTS = "declared-projects"
_DEPLOY_HANDLERS = {
    DECLARED_PROJECTS: ("infra.handlers.declared_projects.handler",
                        Access(page_token_secret=False, memory_mb=256, timeout_seconds=120,
                               description="CloudFormation custom resource: projects declared in cdk.json")),
}


class Functions(Construct):
    """`by_name[name]` is the function of `functions/<name>.py` (and of the deploy-time handlers)."""

    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, code: lambda_.Code,
                 names: list[str], data: Data, event_bus: events.IEventBus) -> None:
        super().__init__(scope, id)
        self.by_name: dict[str, lambda_.Function] = {}
        self._config, self._code, self._data, self._bus = config, code, data, event_bus
        for name in names:
            self._function(name, f"functions.{name}.handler", ACCESS.get(name, DEFAULT_ACCESS))
        for name, (handler, access) in _DEPLOY_HANDLERS.items():
            self._function(name, handler, access)

    def _function(self, name: str, handler: str, access: Access) -> None:
        scope = Construct(self, name)
        role = iam.Role(scope, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"mlreg {self._config.name}: {name} function")
        logs_group = log_group(scope, "Logs", self._config)
        environment = {
            "MLREG_ENV": self._config.name,
            "POWERTOOLS_SERVICE_NAME": f"mlreg-{name}",
            "POWERTOOLS_METRICS_NAMESPACE": f"mlreg/{self._config.name}",
        }
        if access.table != "none":
            environment["MLREG_TABLE"] = self._data.table.table_name
        if access.uses_bucket:
            environment["MLREG_BUCKET"] = self._data.bucket.bucket_name
        if access.put_events:
            environment["MLREG_EVENT_BUS"] = self._bus.event_bus_name
        if access.page_token_secret:
            environment["MLREG_SECRET_ARN"] = self._data.page_token_secret.secret_arn
        if self._config.webhook_allow_private_ips:  # webhooks to private addresses (create, test, deliveries)
            environment["MLREG_WEBHOOK_ALLOW_PRIVATE_IPS"] = "true"
        if self._config.cors_origin:  # the web front end reads the API's answers
            environment["MLREG_CORS_ORIGIN"] = self._config.cors_origin

        function = lambda_.Function(
            scope, "Function",
            description=f"mlreg {self._config.name}: {access.description or name}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=self._code,
            role=role,
            memory_size=access.memory_mb,
            timeout=Duration.seconds(access.timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=logs_group,
            environment=environment,
        )
        self._grant(role, scope, logs_group, access)
        acknowledge(scope, "AwsSolutions-L1",
                    "Python 3.12 is pinned on purpose: infra/package.py builds the dependency wheels for "
                    "cp312/arm64, and runtime and wheels must move together.")
        acknowledge(scope, "AwsSolutions-IAM5[Resource::*]",
                    "Only actions without resource-level permissions get '*': X-Ray's PutTraceSegments and "
                    "PutTelemetryRecords, and for a stream consumer dynamodb:ListStreams "
                    "(tests/infra/test_iam.py holds every role to that).")
        self.by_name[name] = function

    def _grant(self, role: iam.Role, scope: Construct, logs_group: logs.ILogGroup, access: Access) -> None:
        # Its own log group only (no AWSLambdaBasicExecutionRole, which allows every log group).
        role.add_to_policy(iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                               resources=[logs_group.log_group_arn]))
        table, data = self._data.table, self._data
        if access.table == "session":  # session items: pk, sk and these (shared/sessions.py)
            role.add_to_policy(iam.PolicyStatement(
                actions=["dynamodb:PutItem"], resources=[table.table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:Attributes": [
                    table_definition.PARTITION_KEY, table_definition.SORT_KEY, "role", "token_id", "created_at",
                    table_definition.TTL_ATTRIBUTE]}}))
            role.add_to_policy(iam.PolicyStatement(actions=["dynamodb:DeleteItem"], resources=[table.table_arn]))
        if access.table in ("token", "session"):
            role.add_to_policy(iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[table.table_arn]))
            # Stamping last_used_at on a token item; the keys and that one attribute, nothing more.
            role.add_to_policy(iam.PolicyStatement(
                actions=["dynamodb:UpdateItem"], resources=[table.table_arn],
                conditions={
                    "ForAllValues:StringEquals": {"dynamodb:Attributes": [
                        table_definition.PARTITION_KEY, table_definition.SORT_KEY, "last_used_at"]},
                    "StringEqualsIfExists": {"dynamodb:ReturnValues": ["NONE"]},
                }))
        elif access.table in ("read", "read-write"):
            actions = TABLE_READ + (TABLE_WRITE if access.table == "read-write" else ())
            role.add_to_policy(iam.PolicyStatement(actions=list(actions), resources=[table.table_arn]))
            # Writes go to the table; the GSIs are read only.
            role.add_to_policy(iam.PolicyStatement(actions=["dynamodb:Query"], resources=data.index_arns))

        bucket = data.bucket
        if access.read_objects:
            self._objects(role, scope, OBJECT_READ, access.read_objects)
        if access.write_objects:
            self._objects(role, scope, OBJECT_WRITE, access.write_objects)
        if access.read_objects:
            # S3 answers a missing key with 404 only to callers that may list the bucket, and a
            # request for one key carries no s3:prefix to match. Key names reveal nothing this
            # role could not read already.
            role.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn]))
        elif access.list_objects:
            role.add_to_policy(iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": list(access.list_objects)}}))

        if access.page_token_secret:
            role.add_to_policy(iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"],
                                                   resources=[data.page_token_secret.secret_arn]))
        if access.put_events:
            role.add_to_policy(iam.PolicyStatement(actions=["events:PutEvents"], resources=[self._bus.event_bus_arn]))

    def _objects(self, role: iam.Role, scope: Construct, actions: tuple[str, ...], patterns: tuple[str, ...]) -> None:
        resources = [self._data.bucket.arn_for_objects(p) for p in patterns]
        role.add_to_policy(iam.PolicyStatement(actions=list(actions), resources=resources))
        for resource in resources:
            acknowledge(scope, wildcard_resource(scope, resource),
                        "Object keys are projects/<project>/...: the wildcard stands for the project id and the "
                        "object path below that prefix, which the function checks against the authorised project.")
