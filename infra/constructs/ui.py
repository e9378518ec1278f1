"""The web UI's static files: MLflow's bundle, taken from the pinned `mlflow` wheel at synth time
(mlreg/ui_bundle.py; never committed), in a private bucket of its own that API Gateway reads for
`/projects/<p>/static-files/...` through an S3 integration (no Lambda, no authorizer: the files are
the same public build for everyone). The UI's page itself (index.html) is served by the `ui`
function, which reads it from here too (shared/ui/pages.py). See docs/ui.md."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.nag import acknowledge, wildcard_resource
from mlreg import ui_bundle

INDEX = "index.html"


class UiAssets(Construct):
    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, id)
        self.bucket = s3.Bucket(
            self, "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            # Rebuilt from the wheel on every deploy: nothing here to keep.
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(self.bucket, "AwsSolutions-S1",
                    "Holds MLflow's public UI build only, deployed by CloudFormation; every read goes through "
                    "the API, whose access log records it.")
        self.deployment = s3deploy.BucketDeployment(
            self, "Bundle",
            sources=[s3deploy.Source.asset(str(ui_bundle.bundle_dir()))],
            destination_bucket=self.bucket,
            prune=True,
            retain_on_delete=False,  # empties the bucket when the stack goes, so the bucket can go too
            memory_limit=512,
            cache_control=[s3deploy.CacheControl.set_public(), s3deploy.CacheControl.max_age(Duration.days(1))],
        )
        self._acknowledge_deployment()

        # API Gateway's S3 integration reads the files with this role: GetObject, nothing else.
        self.reader = iam.Role(self, "ApiGatewayReads", assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
                               description=f"mlreg {config.name}: API Gateway reads the web UI's static files")
        files = self.bucket.arn_for_objects("*")
        self.reader.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[files]))
        acknowledge(self.reader, wildcard_resource(self, files),
                    "Every object of this bucket is a file of MLflow's public UI build, served to anyone.")

    def grant_index(self, grantee: iam.IGrantable) -> None:
        """The `ui` function reads index.html (and nothing else) to serve the UI's page."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[self.bucket.arn_for_objects(INDEX)]))

    def _acknowledge_deployment(self) -> None:
        """CDK's BucketDeployment runs a function of its own (one per stack, outside this construct) while
        CloudFormation deploys; it is on no request path and holds only what CDK grants it."""
        handler = self.deployment.handler_role.node.scope
        reason = ("CDK's BucketDeployment handler copies the UI's asset from CDK's asset bucket into this bucket "
                  "and prunes old files, at deploy time only; CDK grants it these actions on the two buckets.")
        for wildcard in ("Action::s3:GetBucket*", "Action::s3:GetObject*", "Action::s3:List*", "Action::s3:Abort*",
                         "Action::s3:DeleteObject*"):
            acknowledge(handler, f"AwsSolutions-IAM5[{wildcard}]", reason)
        acknowledge(handler, wildcard_resource(self, self.bucket.arn_for_objects("*")), reason)
        acknowledge(handler, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-"
                             "<AWS::AccountId>-<AWS::Region>/*]", reason)
        acknowledge(handler, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                             "AWSLambdaBasicExecutionRole]", reason)
        acknowledge(handler, "AwsSolutions-L1", "CDK's BucketDeployment handler: aws-cdk-lib chooses and upgrades "
                                                "its runtime; it runs at deploy time only.")
