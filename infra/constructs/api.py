"""The REST API: the route table served twice, under `/projects/{project}` (token authorizer) and
under `/iam/projects/{project}` (AWS_IAM), from one OpenAPI document (see infra/openapi.py)."""

from __future__ import annotations

import json
from typing import Mapping

from aws_cdk import Aws, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra import openapi
from infra.config import EnvironmentConfig
from infra.constructs.logs import log_group
from infra.constructs.ui import UiAssets
from infra.nag import acknowledge
from shared.routes import IAM_PREFIX, PROJECT_PREFIX

STAGE = "v1"
API_GATEWAY = iam.ServicePrincipal("apigateway.amazonaws.com")

# One JSON line per request. Never the Authorization header; the token id identifies the caller.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "time": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "method": "$context.httpMethod",
    "resource": "$context.resourcePath",
    "path": "$context.path",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integration.latency",
    "errorType": "$context.error.responseType",
    "project": "$context.authorizer.project",
    "role": "$context.authorizer.role",
    "tokenId": "$context.authorizer.token_id",
    "iamCaller": "$context.identity.userArn",
    "authorizerError": "$context.authorizer.error",
    "xrayTraceId": "$context.xrayTraceId",
}


def lambda_uri(function: lambda_.IFunction) -> str:
    return (f"arn:{Aws.PARTITION}:apigateway:{Aws.REGION}:lambda:path/2015-03-31/functions/"
            f"{function.function_arn}/invocations")


def s3_uri(bucket: str) -> str:
    """API Gateway's S3 integration URI for the object named by the `path` parameter."""
    return f"arn:{Aws.PARTITION}:apigateway:{Aws.REGION}:s3:path/{bucket}/{{path}}"


class Api(Construct):
    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig,
                 route_functions: Mapping[str, lambda_.IFunction], authorizer: lambda_.IFunction,
                 ui: UiAssets | None = None) -> None:
        super().__init__(scope, id)
        self.spec = openapi.build(
            title=f"mlreg-{config.name}",
            function_uris={name: lambda_uri(fn) for name, fn in route_functions.items()},
            authorizer_uri=lambda_uri(authorizer),
            authorizer_cache_seconds=config.authorizer_cache_seconds,
            cors_origin=config.cors_origin,
            static_files=(s3_uri(ui.bucket.bucket_name), ui.reader.role_arn) if ui else None,
        )
        access_logs = log_group(self, "AccessLogs", config)
        self.rest_api = apigw.SpecRestApi(
            self, "RestApi",
            api_definition=apigw.ApiDefinition.from_inline(self.spec),
            rest_api_name=f"mlreg-{config.name}",
            description=f"mlreg {config.name}: MLflow tracking and model registry",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=config.api_cloudwatch_role,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
                # Execution logs need the account-level role; errors only (requests are in the access log).
                logging_level=(apigw.MethodLoggingLevel.ERROR if config.api_cloudwatch_role
                               else apigw.MethodLoggingLevel.OFF),
                data_trace_enabled=False,
                # Per-method metrics would be a billed custom metric per route and tree.
                metrics_enabled=False,
                tracing_enabled=True,
                throttling_rate_limit=config.rate_limit,
                throttling_burst_limit=config.burst_limit,
            ),
        )
        # An inline document does not change the deployment's identity by itself: without this, a
        # changed route table would update the API but never redeploy the stage.
        self.rest_api.latest_deployment.add_to_logical_id(self.spec)
        self.stage = self.rest_api.deployment_stage

        # One permission per function for the whole stage; one per method would outgrow the 20 KB
        # limit of a Lambda resource policy.
        for name, function in route_functions.items():
            function.add_permission("InvokeFromApi", principal=API_GATEWAY,
                                    source_arn=self.rest_api.arn_for_execute_api("*", "/*", STAGE))
        authorizer.add_permission("InvokeAsAuthorizer", principal=API_GATEWAY, source_arn=Stack.of(self).format_arn(
            service="execute-api", resource=self.rest_api.rest_api_id, resource_name="authorizers/*"))

        self._web_acl(config)
        self._acknowledge(config)

    @property
    def url(self) -> str:
        """`https://<api>.execute-api.<region>.amazonaws.com/v1/`"""
        return self.rest_api.url

    def tracking_uri(self, project: str, iam_tree: bool = False) -> str:
        prefix = (IAM_PREFIX + PROJECT_PREFIX if iam_tree else PROJECT_PREFIX).replace("{project}", project)
        return self.url + prefix.lstrip("/")

    def execute_api_arn(self, pattern: str) -> str:
        """The ARN of `METHOD/path` in this API's stage."""
        method, _, path = pattern.partition("/")
        return self.rest_api.arn_for_execute_api(method, "/" + path, STAGE)

    def _web_acl(self, config: EnvironmentConfig) -> None:
        if config.waf_web_acl_arn:
            wafv2.CfnWebACLAssociation(self, "WebAcl", resource_arn=self.stage.stage_arn,
                                       web_acl_arn=config.waf_web_acl_arn)
        else:
            acknowledge(self, "AwsSolutions-APIG3",
                        "No WAF by default: a web ACL costs a monthly fee at rest, and every method already "
                        "needs a token or SigV4 and is throttled per stage. Set waf_web_acl_arn in cdk.json to "
                        "associate one.")

    def _acknowledge(self, config: EnvironmentConfig) -> None:
        acknowledge(self, "AwsSolutions-APIG2",
                    "Requests are validated by the handlers, which answer MLflow's INVALID_PARAMETER_VALUE with "
                    "MLflow's messages; artifact bodies are opaque bytes with no schema to validate.")
        if config.api_cloudwatch_role:
            acknowledge(self, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                              "AmazonAPIGatewayPushToCloudWatchLogs]",
                        "API Gateway's account-level logging role uses the AWS-maintained policy made for it; it "
                        "only allows writing CloudWatch logs.")
        else:
            acknowledge(self, "AwsSolutions-APIG6",
                        "api_cloudwatch_role is off for this environment, so execution logging cannot be enabled "
                        "from this stack; access logs still record every request.")
