"""One mlreg environment: data, functions, API, events, projects and alarms in one stack."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack, Tags
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs.api import Api
from infra.constructs.data import Data
from infra.constructs.events import Events
from infra.constructs.functions import DECLARED_PROJECTS, Functions
from infra.constructs.observability import Observability
from infra.constructs.projects import DeclaredProject
from infra.constructs.registry_worker import RegistryWorker
from infra.constructs.ui import UiAssets
from shared.routes import functions as route_functions

AUTHORIZER = "authorizer"
PUBLISHER = "publisher"
WORKER = "worker"  # the registry worker (functions/worker.py)
UI = "ui"  # the web UI's page and sign-in (functions/ui.py)


class MlregStack(Stack):
    """`function_names`: the modules of `functions/` to deploy, normally the route table's functions
    plus the authorizer, plus the publisher once functions/publisher.py exists (see infra/app.py)."""

    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, code: lambda_.Code,
                 function_names: list[str]) -> None:
        env = Environment(account=config.account, region=config.region) if config.account or config.region else None
        super().__init__(scope, id, env=env,
                         description=f"mlreg {config.name}: MLflow-compatible tracking and model registry")
        Tags.of(self).add("mlreg:environment", config.name)

        data = Data(self, "Data", config=config)
        events = Events(self, "Events", config=config)
        functions = Functions(self, "Functions", config=config, code=code, names=function_names, data=data,
                              event_bus=events.bus)
        routes = {name: functions.by_name[name] for name in route_functions()}
        authorizer = functions.by_name[AUTHORIZER]
        ui = UiAssets(self, "Ui", config=config)
        ui.grant_index(functions.by_name[UI])
        functions.by_name[UI].add_environment("MLREG_UI_BUCKET", ui.bucket.bucket_name)
        api = Api(self, "Api", config=config, route_functions=routes, authorizer=authorizer, ui=ui)
        if PUBLISHER in functions.by_name:
            events.add_publisher(functions.by_name[PUBLISHER], data.table)
        events.grant_webhook_admin(functions.by_name["registry"])  # serves the webhook routes
        worker = RegistryWorker(self, "RegistryWorker", config=config, worker=functions.by_name[WORKER],
                                table=data.table, bucket=data.bucket) if WORKER in functions.by_name else None
        self.projects = [
            DeclaredProject(self, f"Project-{project.id}", config=config, project=project, api=api,
                            declare_handler=functions.by_name[DECLARED_PROJECTS])
            for project in config.projects
        ]
        observability = Observability(self, "Observability", config=config, api=api.rest_api,
                                      stage=api.stage.stage_name,
                                      functions={n: f for n, f in functions.by_name.items() if n != DECLARED_PROJECTS},
                                      authorizer=authorizer, dead_letters=events.dead_letters, table=data.table)
        events.webhook_alarm.add_alarm_action(cw_actions.SnsAction(observability.topic))
        if worker:
            worker.alarm.add_alarm_action(cw_actions.SnsAction(observability.topic))

        self.api, self.data, self.events, self.functions, self.ui = api, data, events, functions, ui
        self._outputs(config, api, data, events)

    def _outputs(self, config: EnvironmentConfig, api: Api, data: Data, events: Events) -> None:
        CfnOutput(self, "TrackingUriTemplate", value=api.tracking_uri("<project>"),
                  description="MLFLOW_TRACKING_URI of a project (token: MLFLOW_TRACKING_TOKEN)")
        CfnOutput(self, "UiUrlTemplate", value=api.tracking_uri("<project>") + "/",
                  description="The web UI of a project (sign in with a token of it; docs/ui.md)")
        CfnOutput(self, "IamTrackingUriTemplate", value=api.tracking_uri("<project>", iam_tree=True),
                  description="MLFLOW_TRACKING_URI of a project for SigV4 callers (MLFLOW_TRACKING_AWS_SIGV4=true)")
        for project in config.projects:
            CfnOutput(self, f"TrackingUri-{project.id}", value=api.tracking_uri(project.id),
                      description=f"MLFLOW_TRACKING_URI of project {project.id}")
        CfnOutput(self, "TableName", value=data.table.table_name,
                  description="For `mlreg project|token ... --table` with AWS credentials")
        CfnOutput(self, "BucketName", value=data.bucket.bucket_name)
        CfnOutput(self, "EventBusName", value=events.bus.event_bus_name)
