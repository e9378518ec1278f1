"""The route table: which MLflow REST routes exist, which Lambda function serves each, the role a
caller needs, the route's request message (its fields, declared in the domain's messages module) and
how the caller is authenticated. The CDK API, the local gateway, the dispatcher and the auth tests
are all built from this one list, so they cannot drift apart.

Paths are API Gateway resource paths below the project prefix `/projects/{project}`; `{name+}` is a
greedy path parameter, as in API Gateway.

MLflow's web UI (docs/ui.md) calls every `/api/...` route as `/ajax-api/...`, with the browser's
session instead of a token. Those twins are not listed one by one (API Gateway allows 300 resources
per API): `ui_resources()` covers them, and the UI's own routes below `/ajax-api`, with a few greedy
resources, each of one function, whose requests the dispatcher matches against this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import IntEnum
from functools import cache

PROJECT_PREFIX = "/projects/{project}"


class Role(IntEnum):
    """Roles are ordered: a token of a higher role may do everything a lower one may."""

    READ = 1
    WRITE = 2
    ADMIN = 3


# How a route's caller is authenticated (docs/auth.md):
TOKEN = "token"  # `Authorization: Bearer <token>` (or SigV4 on the IAM tree): the MLflow client
SESSION = "session"  # the browser's session cookie, made by signing in with a token: the web UI
PUBLIC = "public"  # nobody yet: the UI's page and sign-in, which check the session themselves
# Either of the first two: the files the UI previews (`get-artifact` and its kin), which MLflow's
# server also serves to scripts and MLflow's own tests call with the client's credentials.
TOKEN_OR_SESSION = "token-or-session"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below PROJECT_PREFIX
    function: str  # Lambda function (module in functions/) that serves it
    handler: str  # "module:callable" inside shared/
    role: Role | None  # None: public routes
    message: str | None = None  # "module:Class": the request's fields (shared/message.py), parsed before the handler
    auth: str = TOKEN

    @property
    def resource(self) -> str:
        """API Gateway resource path, as it appears in the proxy event's `resource`."""
        return PROJECT_PREFIX + self.path


def _routes(function: str, module: str, messages: str, rows: list[tuple[str, str, str, Role | None, str]],
            prefix: str, auth: str = TOKEN):
    """`messages`: the module declaring the rows' request messages (the rows' last column)."""
    return [Route(m, prefix + p, function, f"{module}:{h}", r, f"{messages}:{msg}", auth) for m, p, h, r, msg in rows]


R, W, A = Role.READ, Role.WRITE, Role.ADMIN
API2 = "/api/2.0/mlflow"
API3 = "/api/3.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts"
API, UI_API = "/api/", "/ajax-api/"  # the UI calls `/api/<rest>` as `/ajax-api/<rest>`
UI2, UI3 = "/ajax-api/2.0/mlflow", "/ajax-api/3.0/mlflow"
# The modules declaring each group's request messages (shared/message.py).
TRACKING_MESSAGES, REGISTRY_MESSAGES = "shared.tracking.messages", "shared.registry.messages"
ARTIFACT_MESSAGES, COMMON_MESSAGES = "shared.artifacts.messages", "shared.message"
UI_MESSAGES = "shared.ui.messages"

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
        ("POST", "/model-versions/transition-stage", "transition_model_version_stage", W, "TransitionStage"),
        ("GET", "/model-versions/get-download-uri", "get_model_version_download_uri", R, "VersionRef"),
        ("POST", "/model-versions/set-tag", "set_model_version_tag", W, "SetModelVersionTag"),
        ("DELETE", "/model-versions/delete-tag", "delete_model_version_tag", W, "DeleteModelVersionTag"),
    ], API2),
    *_routes("registry", "shared.registry.search", REGISTRY_MESSAGES, [
        ("GET", "/model-versions/search", "search_model_versions", R, "SearchModelVersions"),
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
    # -- the web UI (docs/ui.md): its page and sign-in (ui function; shared/ui/pages.py) --
    *_routes("ui", "shared.ui.pages", UI_MESSAGES, [
        ("GET", "", "app_page", None, "Empty"),  # `/projects/<p>/` (and a redirect from `/projects/<p>`)
        ("POST", "/signin", "sign_in", None, "SignIn"),
        ("GET", "/signout", "sign_out", None, "Empty"),
    ], "", PUBLIC),
    # -- what the UI calls besides the API routes, with its session --
    *_routes("tracking", "shared.ui.graphql", UI_MESSAGES, [("POST", "/graphql", "graphql", R, "GraphqlQuery")],
             "", SESSION),
    *_routes("artifacts", "shared.artifacts.ui", UI_MESSAGES, [
        ("GET", "/get-artifact", "run_artifact", R, "RunArtifact"),
        ("GET", "/model-versions/get-artifact", "model_version_artifact", R, "ModelVersionArtifact"),
        ("GET", UI2 + "/logged-models/{model_id}/artifacts/files", "logged_model_artifact", R, "LoggedModelArtifact"),
    ], "", TOKEN_OR_SESSION),
    *_routes("artifacts", "shared.ui.package", UI_MESSAGES, [("GET", "/package", "package_page", R, "PackagePage")],
             "", SESSION),
    # Features mlreg does not have, answered the way the UI takes as "absent" (shared/ui/absent.py).
    *_routes("tracking", "shared.ui.absent", UI_MESSAGES, [
        ("GET", UI2 + "/users/current", "no_user", R, "Empty"),
        ("GET", UI2 + "/gateway-proxy", "no_gateway", R, "Empty"),
        ("POST", UI2 + "/experiments/search-datasets", "no_datasets", R, "Empty"),
        ("GET", UI3 + "/assistant/config", "no_assistant", R, "Empty"),
        ("GET", UI3 + "/assistant/providers", "no_assistant_providers", R, "Empty"),
        ("GET", UI3 + "/ui-telemetry", "no_telemetry", R, "Empty"),
        ("POST", UI3 + "/ui-telemetry", "no_telemetry", R, "Empty"),
        ("POST", UI3 + "/traces/metrics", "no_trace_metrics", R, "Empty"),
        ("GET", UI3 + "/traces/search", "no_traces", R, "Empty"),  # POST is the API route's twin (genai.py)
    ], "", SESSION),
]

# Every other path below a project answers MLflow's ENDPOINT_NOT_FOUND. In API Gateway this is a
# MOCK integration (no Lambda call); locally the gateway answers it directly. The UI's own catch-all
# does the same with the session's authorizer.
CATCH_ALL = PROJECT_PREFIX + "/{proxy+}"
UI_CATCH_ALL = PROJECT_PREFIX + UI_API + "{proxy+}"
# The UI's static files (MLflow's bundle): S3 deployed, the bundle's folder locally; no auth.
STATIC_FILES = PROJECT_PREFIX + "/static-files/{path+}"

# The second auth tree (SigV4 callers, AWS_IAM authoriser) serves the same routes under this prefix.
IAM_PREFIX = "/iam"


def functions() -> list[str]:
    return sorted({r.function for r in ROUTES})


def routes_of(function: str) -> list[Route]:
    return [r for r in ROUTES if r.function == function]


def api_routes() -> list[Route]:
    """The routes MLflow clients call with a token; the IAM tree serves these too."""
    return [r for r in ROUTES if r.auth == TOKEN]


@cache
def ui_api_routes() -> tuple[Route, ...]:
    """Everything the UI calls below `/ajax-api/`: each API route's twin, and the UI's own."""
    twins = [replace(r, path=UI_API + r.path[len(API):], auth=SESSION)
             for r in ROUTES if r.auth == TOKEN and r.path.startswith(API)]
    return tuple(twins + [r for r in ROUTES if r.path.startswith(UI_API)])


@cache
def ui_resources() -> dict[str, str]:
    """API Gateway resources (each for any method, to one function) that carry `ui_api_routes()`.
    Where one function serves a path and everything below it, the path and `<path>/{proxy+}` carry
    it all; elsewhere the tree is followed down."""
    below: dict[tuple[str, ...], set[str]] = {}  # path -> functions serving it or paths below it
    at: dict[tuple[str, ...], set[str]] = {}  # path -> functions serving exactly it
    for route in ui_api_routes():
        segments = tuple(route.path.strip("/").split("/"))
        at.setdefault(segments, set()).add(route.function)
        for i in range(1, len(segments) + 1):
            below.setdefault(segments[:i], set()).add(route.function)
    found: dict[str, str] = {}

    def cover(prefix: tuple[str, ...]) -> None:
        path = PROJECT_PREFIX + "/" + "/".join(prefix)
        children = sorted({p[len(prefix)] for p in below if len(p) == len(prefix) + 1 and p[:len(prefix)] == prefix})
        if prefix in at:
            if len(at[prefix]) > 1:
                raise ValueError(f"{path}: routes of several functions at one path")
            found[path] = next(iter(at[prefix]))
        if len(below[prefix]) == 1 and len(prefix) > 1:  # never all of /ajax-api: its catch-all is a mock
            if children:
                found[path + "/{proxy+}"] = next(iter(below[prefix]))
            return
        for child in children:
            cover(prefix + (child,))

    cover(("ajax-api",))
    return found


def resource_regex(resource: str) -> re.Pattern:
    pattern = re.sub(r"\{(\w+)\\?\+\}", r"(?P<\1>.+)", re.escape(resource).replace(r"\{", "{").replace(r"\}", "}"))
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
    return re.compile(pattern + "$")


def _specific_first(resource: str) -> tuple[int, ...]:
    """API Gateway's rule: segment by segment, a literal wins over a parameter, a parameter over a
    greedy one."""
    return tuple(2 if s.endswith("+}") else 1 if s.startswith("{") else 0 for s in resource.split("/"))


@cache
def _matchers() -> list[tuple[re.Pattern, Route]]:
    """Regexes that match a concrete path to its route (the UI's twins included)."""
    ordered = sorted({*ROUTES, *ui_api_routes()}, key=lambda r: (_specific_first(r.resource), r.resource, r.method))
    return [(resource_regex(r.resource), r) for r in ordered]


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


@cache
def _ui_resource_matchers() -> list[tuple[re.Pattern, str]]:
    ordered = sorted([*ui_resources(), UI_CATCH_ALL], key=lambda r: (_specific_first(r), r))
    return [(resource_regex(r), r) for r in ordered]


def api_resource(route: Route, path: str) -> str:
    """The API Gateway resource a request for `route` at `path` reaches (what its event names)."""
    if not route.path.startswith(UI_API):
        return route.resource
    return next(resource for regex, resource in _ui_resource_matchers() if regex.match(path))


def concrete_path(resource: str, params: dict[str, str]) -> str:
    """A resource path with its parameters filled in (`{proxy+}` with the rest of the path)."""
    return re.sub(r"\{(\w+)\+?\}", lambda m: params.get(m.group(1), ""), resource)
