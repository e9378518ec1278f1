"""The route table: which MLflow REST routes exist, which Lambda function serves each, the role a
token needs, and the route's request message (its fields, declared in the domain's messages module).
The CDK API, the local gateway, the dispatcher and the auth tests are all built from this one list,
so they cannot drift apart.

Paths are API Gateway resource paths below the project prefix `/projects/{project}`; `{name+}` is a
greedy path parameter, as in API Gateway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from functools import cache

PROJECT_PREFIX = "/projects/{project}"


class Role(IntEnum):
    """Roles are ordered: a token of a higher role may do everything a lower one may."""

    READ = 1
    WRITE = 2
    ADMIN = 3


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below PROJECT_PREFIX
    function: str  # Lambda function (module in functions/) that serves it
    handler: str  # "module:callable" inside shared/
    role: Role
    message: str | None = None  # "module:Class": the request's fields (shared/message.py), parsed before the handler

    @property
    def resource(self) -> str:
        """API Gateway resource path, as it appears in the proxy event's `resource`."""
        return PROJECT_PREFIX + self.path


def _routes(function: str, module: str, messages: str, rows: list[tuple[str, str, str, Role, str]], prefix: str):
    """`messages`: the module declaring the rows' request messages (the rows' last column)."""
    return [Route(m, prefix + p, function, f"{module}:{h}", r, f"{messages}:{msg}") for m, p, h, r, msg in rows]


R, W, A = Role.READ, Role.WRITE, Role.ADMIN
API2 = "/api/2.0/mlflow"
API3 = "/api/3.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts"
# The modules declaring each group's request messages (shared/message.py).
TRACKING_MESSAGES, REGISTRY_MESSAGES = "shared.tracking.messages", "shared.registry.messages"
ARTIFACT_MESSAGES, COMMON_MESSAGES = "shared.artifacts.messages", "shared.message"

ROUTES: list[Route] = [
    *_routes("tracking", "shared.tracking.experiments", TRACKING_MESSAGES, [
        ("POST", "/experiments/create", "create_experiment", W, "CreateExperiment"),
        ("GET", "/experiments/get", "get_experiment", R, "ExperimentRef"),
        ("GET", "/experiments/get-by-name", "get_experiment_by_name", R, "GetExperimentByName"),
        ("GET", "/experiments/search", "search_experiments", R, "SearchExperiments"),
        ("POST", "/experiments/search", "search_experiments", R, "SearchExperiments"),
        ("POST", "/experiments/update", "update_experiment", W, "UpdateExperiment"),
        ("POST", "/experiments/delete", "delete_experiment", A, "ExperimentRef"),
        ("POST", "/experiments/restore", "restore_experiment", A, "ExperimentRef"),
        ("POST", "/experiments/set-experiment-tag", "set_experiment_tag", W, "SetExperimentTag"),
        ("POST", "/experiments/delete-experiment-tag", "delete_experiment_tag", W, "DeleteExperimentTag"),
    ], API2),
    *_routes("tracking", "shared.tracking.runs", TRACKING_MESSAGES, [
        ("POST", "/runs/create", "create_run", W, "CreateRun"),
        ("GET", "/runs/get", "get_run", R, "RunRef"),
        ("POST", "/runs/update", "update_run", W, "UpdateRun"),
        ("POST", "/runs/delete", "delete_run", W, "RunRef"),
        ("POST", "/runs/restore", "restore_run", W, "RunRef"),
        ("POST", "/runs/log-parameter", "log_param", W, "LogParam"),
        ("POST", "/runs/log-batch", "log_batch", W, "LogBatch"),
        ("POST", "/runs/log-inputs", "log_inputs", W, "LogInputs"),
        ("POST", "/runs/outputs", "log_outputs", W, "LogOutputs"),
        ("POST", "/runs/log-model", "log_model", W, "LogModel"),
        ("POST", "/runs/set-tag", "set_tag", W, "SetTag"),
        ("POST", "/runs/delete-tag", "delete_tag", W, "DeleteTag"),
        ("POST", "/runs/search", "search_runs", R, "SearchRuns"),
    ], API2),
    *_routes("tracking", "shared.tracking.metrics", TRACKING_MESSAGES, [
        ("POST", "/runs/log-metric", "log_metric", W, "LogMetric"),
        ("GET", "/metrics/get-history", "get_metric_history", R, "GetMetricHistory"),
        ("GET", "/metrics/get-history-bulk-interval", "get_metric_history_bulk_interval", R,
         "GetMetricHistoryBulkInterval"),
    ], API2),
    # -- logged models (tracking function; shared/tracking/logged_models.py) --
    *_routes("tracking", "shared.tracking.logged_models", TRACKING_MESSAGES, [
        ("POST", "/logged-models", "create_logged_model", W, "CreateLoggedModel"),
        ("POST", "/logged-models/search", "search_logged_models", R, "SearchLoggedModels"),
        ("GET", "/logged-models/{model_id}", "get_logged_model", R, "GetLoggedModel"),
        ("PATCH", "/logged-models/{model_id}", "finalize_logged_model", W, "FinalizeLoggedModel"),
        ("DELETE", "/logged-models/{model_id}", "delete_logged_model", W, "LoggedModelRef"),
        ("PATCH", "/logged-models/{model_id}/tags", "set_logged_model_tags", W, "SetLoggedModelTags"),
        ("DELETE", "/logged-models/{model_id}/tags/{tag_key}", "delete_logged_model_tag", W, "DeleteLoggedModelTag"),
        ("POST", "/logged-models/{model_id}/params", "log_logged_model_params", W, "LogLoggedModelParams"),
        ("GET", "/logged-models/{model_id}/artifacts/directories", "list_logged_model_artifacts", R,
         "ListLoggedModelArtifacts"),
    ], API2),
    # -- registry (registry function; shared/registry/) --
    *_routes("registry", "shared.registry.models", REGISTRY_MESSAGES, [
        ("POST", "/registered-models/create", "create_registered_model", W, "CreateRegisteredModel"),
        ("GET", "/registered-models/get", "get_registered_model", R, "ModelRef"),
        ("POST", "/registered-models/rename", "rename_registered_model", W, "RenameRegisteredModel"),
        ("PATCH", "/registered-models/update", "update_registered_model", W, "UpdateRegisteredModel"),
        ("DELETE", "/registered-models/delete", "delete_registered_model", A, "ModelRef"),
        ("GET", "/registered-models/search", "search_registered_models", R, "SearchRegisteredModels"),
        ("GET", "/registered-models/get-latest-versions", "get_latest_versions", R, "GetLatestVersions"),
        ("POST", "/registered-models/get-latest-versions", "get_latest_versions", R, "GetLatestVersions"),
        ("POST", "/registered-models/set-tag", "set_registered_model_tag", W, "SetRegisteredModelTag"),
        ("DELETE", "/registered-models/delete-tag", "delete_registered_model_tag", W, "DeleteRegisteredModelTag"),
        ("POST", "/registered-models/alias", "set_registered_model_alias", W, "SetRegisteredModelAlias"),
        ("DELETE", "/registered-models/alias", "delete_registered_model_alias", W, "DeleteRegisteredModelAlias"),
        ("GET", "/registered-models/alias", "get_model_version_by_alias", R, "GetModelVersionByAlias"),
    ], API2),
    *_routes("registry", "shared.registry.versions", REGISTRY_MESSAGES, [
        ("POST", "/model-versions/create", "create_model_version", W, "CreateModelVersion"),
        ("GET", "/model-versions/get", "get_model_version", R, "VersionRef"),
        ("PATCH", "/model-versions/update", "update_model_version", W, "UpdateModelVersion"),
        ("DELETE", "/model-versions/delete", "delete_model_version", W, "VersionRef"),
        ("GET", "/model-versions/search", "search_model_versions", R, "SearchModelVersions"),
        ("POST", "/model-versions/transition-stage", "transition_model_version_stage", W, "TransitionStage"),
        ("GET", "/model-versions/get-download-uri", "get_model_version_download_uri", R, "VersionRef"),
        ("POST", "/model-versions/set-tag", "set_model_version_tag", W, "SetModelVersionTag"),
        ("DELETE", "/model-versions/delete-tag", "delete_model_version_tag", W, "DeleteModelVersionTag"),
    ], API2),
    # -- artifacts (artifacts function; shared/artifacts/) --
    *_routes("artifacts", "shared.artifacts.proxy", ARTIFACT_MESSAGES, [
        ("GET", "/artifacts", "list_artifacts", R, "ListArtifacts"),
        ("GET", "/artifacts/{artifact_path+}", "download_artifact", R, "ArtifactRef"),
        ("PUT", "/artifacts/{artifact_path+}", "upload_artifact", W, "UploadArtifact"),
        ("DELETE", "/artifacts/{artifact_path+}", "delete_artifact", W, "ArtifactRef"),
        ("POST", "/mpu/create/{artifact_path+}", "create_multipart_upload", W, "CreateMultipartUpload"),
        ("POST", "/mpu/complete/{artifact_path+}", "complete_multipart_upload", W, "CompleteMultipartUpload"),
        ("POST", "/mpu/abort/{artifact_path+}", "abort_multipart_upload", W, "AbortMultipartUpload"),
        ("GET", "/presigned/{artifact_path+}", "presigned_download_url", R, "ArtifactRef"),
    ], ARTIFACTS),
    *_routes("artifacts", "shared.artifacts.run_artifacts", ARTIFACT_MESSAGES, [
        ("GET", "/artifacts/list", "list_artifacts", R, "ListRunArtifacts"),
        ("POST", "/artifacts/presigned-upload-url", "presigned_upload_url", W, "PresignedUploadUrl"),
        ("POST", "/artifacts/presigned-download-url", "presigned_download_url", R, "PresignedDownloadUrl"),
    ], API2),
    # -- webhooks (registry function; shared/registry/webhooks.py) --
    *_routes("registry", "shared.registry.webhooks", REGISTRY_MESSAGES, [
        ("POST", "/webhooks", "create_webhook", A, "CreateWebhook"),
        ("GET", "/webhooks", "list_webhooks", A, "ListWebhooks"),
        ("GET", "/webhooks/{webhook_id}", "get_webhook", A, "WebhookRef"),
        ("PATCH", "/webhooks/{webhook_id}", "update_webhook", A, "UpdateWebhook"),
        ("DELETE", "/webhooks/{webhook_id}", "delete_webhook", A, "WebhookRef"),
        ("POST", "/webhooks/{webhook_id}/test", "test_webhook", A, "WebhookTest"),
    ], API2),
    # -- traces and evaluation datasets: not stored; their list routes answer empty (shared/tracking/genai.py) --
    *_routes("tracking", "shared.tracking.genai", TRACKING_MESSAGES, [
        ("GET", "/traces", "search_traces", R, "SearchTraces"),
    ], API2),
    *_routes("tracking", "shared.tracking.genai", TRACKING_MESSAGES, [
        ("POST", "/traces/search", "search_traces_v3", R, "SearchTracesV3"),
    ], API3),
    *_routes("tracking", "shared.tracking.genai", COMMON_MESSAGES, [
        ("POST", "/datasets/search", "search_datasets", R, "Empty"),
    ], API3),
    *_routes("tracking", "shared.tracking.server_info", COMMON_MESSAGES, [
        ("GET", "/server-info", "server_info", R, "Empty"),
        ("GET", "/server-features", "server_info", R, "Empty"),
    ], API3),
]

# Every other path below a project answers MLflow's ENDPOINT_NOT_FOUND. In API Gateway this is a
# MOCK integration (no Lambda call); locally the gateway answers it directly.
CATCH_ALL = PROJECT_PREFIX + "/{proxy+}"

# The second auth tree (SigV4 callers, AWS_IAM authoriser) serves the same routes under this prefix.
IAM_PREFIX = "/iam"


def functions() -> list[str]:
    return sorted({r.function for r in ROUTES})


def routes_of(function: str) -> list[Route]:
    return [r for r in ROUTES if r.function == function]


@cache
def _matchers() -> list[tuple[re.Pattern, Route]]:
    """Regexes that match a concrete path to its route, literal routes first (API Gateway's rule:
    the most specific resource wins)."""

    def to_regex(resource: str) -> re.Pattern:
        pattern = re.sub(r"\{(\w+)\\?\+\}", r"(?P<\1>.+)", re.escape(resource).replace(r"\{", "{").replace(r"\}", "}"))
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        return re.compile(pattern + "$")

    ordered = sorted(ROUTES, key=lambda r: (r.resource.count("{"), "+}" in r.resource))
    return [(to_regex(r.resource), r) for r in ordered]


def match(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    """Find the route for a request path (`/projects/p/api/...`), as API Gateway would.
    Returns (None, params) when the path is a project path without a route for it."""
    params: dict[str, str] = {}
    for regex, route in _matchers():
        m = regex.match(path)
        if m:
            params = m.groupdict()
            if route.method == method:
                return route, params
    return None, params
