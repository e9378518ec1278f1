"""Projects declared in cdk.json: their records in the table and, per project, a read and a write IAM
managed policy for SigV4 callers of the `/iam/projects/<project>` tree."""

from __future__ import annotations

from aws_cdk import CustomResource
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import grants
from infra.config import EnvironmentConfig, Principal, Project
from infra.constructs.api import Api
from infra.nag import acknowledge, wildcard_resource
from shared.routes import Role


class DeclaredProject(Construct):
    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, project: Project, api: Api,
                 declare_handler: lambda_.IFunction) -> None:
        super().__init__(scope, id)
        # Taking the project out of cdk.json deletes this resource, whose handler keeps the data.
        CustomResource(self, "Record", service_token=declare_handler.function_arn,
                       resource_type="Custom::MlregProject",
                       properties={"Project": project.id, "Description": project.description})
        self.read_policy = self._policy("ReadPolicy", config, project, Role.READ, api, project.read)
        self.write_policy = self._policy("WritePolicy", config, project, Role.WRITE, api, project.write)

    def _policy(self, id: str, config: EnvironmentConfig, project: Project, role: Role, api: Api,
                principals: tuple[Principal, ...]) -> iam.ManagedPolicy:
        patterns = grants.granted_paths(project.id, role)
        resources = [api.execute_api_arn(p) for p in patterns]
        denied = [api.execute_api_arn(p) for p in grants.denied_paths(project.id, role)]
        policy = iam.ManagedPolicy(
            self, id,
            managed_policy_name=f"mlreg-{config.name}-{project.id}-{role.name.lower()}",
            description=f"mlreg {config.name}: {role.name.lower()} access to project {project.id} with SigV4 "
                        f"(MLFLOW_TRACKING_AWS_SIGV4=true)",
            statements=[iam.PolicyStatement(actions=["execute-api:Invoke"], resources=resources),
                        *([iam.PolicyStatement(effect=iam.Effect.DENY, actions=["execute-api:Invoke"],
                                               resources=denied)] if denied else [])],
        )
        for i, principal in enumerate(principals):
            if principal.kind == "role":
                policy.attach_to_role(iam.Role.from_role_arn(self, f"{id}Role{i}", principal.arn))
            else:
                policy.attach_to_user(iam.User.from_user_arn(self, f"{id}User{i}", principal.arn))
        for pattern, resource in zip(patterns, resources):
            if "*" in pattern:
                acknowledge(policy, wildcard_resource(policy, resource),
                            f"Generated from the route table (infra/grants.py): every route below this path of "
                            f"project {project.id} needs at most the {role.name.lower()} role, or the wildcard is a "
                            f"path parameter; infra/grants.check proves no route above that role matches.")
        return policy
