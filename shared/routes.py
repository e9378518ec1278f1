"""The route table: which MLflow REST routes exist, which Lambda function serves each, the role a
caller needs and how the caller is authenticated. The CDK API, the local gateway, the dispatcher and
the auth tests are all built from this one list, so they cannot drift apart.

Paths are API Gateway resource paths below the project prefix `/projects/{project}`; `{name+}` is a
greedy path parameter, as in API Gateway.

MLflow's web UI (docs/ui.md) calls every `/api/...` route as `/ajax-api/...`, with the browser's
session instead of a token. Those twins are not listed one by one (API Gateway allows 300 resources
per API): `ui_resources()` covers them, and the UI's own routes below `/ajax-api`, with a few greedy
resources, each of one function, whose requests the dispatcher matches against this table.
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


# How a route's caller is authenticated (docs/auth.md):
TOKEN = "token"  # `Authorization: Bearer <token>` (or SigV4 on the IAM tree): the MLflow client
SESSION = "session"  # the browser's session cookie, made by signing in with a token: the web UI
PUBLIC = "public"  # nobody yet: the UI's page and sign-in, which check the session themselves


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below PROJECT_PREFIX
    function: str  # Lambda function (module in functions/) that serves it
    handler: str  # "module:callable" inside shared/
    role: Role | None  # None: public routes
    auth: str = TOKEN

    @property
    def resource(self) -> str:
        """API Gateway resource path, as it appears in the proxy event's `resource`."""
        return PROJECT_PREFIX + self.path


def _routes(function: str, module: str, rows: list[tuple[str, str, str, Role | None]], prefix: str,
            auth: str = TOKEN):
    return [Route(m, prefix + p, function, f"{module}:{h}", r, auth) for m, p, h, r in rows]


R, W, A = Role.READ, Role.WRITE, Role.ADMIN
API2 = "/api/2.0/mlflow"
API3 = "/api/3.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts"
API, UI_API = "/api/", "/ajax-api/"  # the UI calls `/api/<rest>` as `/ajax-api/<rest>`
UI2, UI3 = "/ajax-api/2.0/mlflow", "/ajax-api/3.0/mlflow"

ROUTES: list[Route] = [
    *_routes("tracking", "shared.tracking.experiments", [
        ("POST", "/experiments/create", "create_experiment", W),
        ("GET", "/experiments/get", "get_experiment", R),
        ("GET", "/experiments/get-by-name", "get_experiment_by_name", R),
        ("GET", "/experiments/search", "search_experiments", R),
        ("POST", "/experiments/search", "search_experiments", R),
        ("POST", "/experiments/update", "update_experiment", W),
        ("POST", "/experiments/delete", "delete_experiment", A),
        ("POST", "/experiments/restore", "restore_experiment", A),
        ("POST", "/experiments/set-experiment-tag", "set_experiment_tag", W),
        ("POST", "/experiments/delete-experiment-tag", "delete_experiment_tag", W),
    ], API2),
    *_routes("tracking", "shared.tracking.runs", [
        ("POST", "/runs/create", "create_run", W),
        ("GET", "/runs/get", "get_run", R),
        ("POST", "/runs/update", "update_run", W),
        ("POST", "/runs/delete", "delete_run", W),
        ("POST", "/runs/restore", "restore_run", W),
        ("POST", "/runs/log-parameter", "log_param", W),
        ("POST", "/runs/log-batch", "log_batch", W),
        ("POST", "/runs/log-inputs", "log_inputs", W),
        ("POST", "/runs/outputs", "log_outputs", W),
        ("POST", "/runs/log-model", "log_model", W),
        ("POST", "/runs/set-tag", "set_tag", W),
        ("POST", "/runs/delete-tag", "delete_tag", W),
        ("POST", "/runs/search", "search_runs", R),
    ], API2),
    *_routes("tracking", "shared.tracking.metrics", [
        ("POST", "/runs/log-metric", "log_metric", W),
        ("GET", "/metrics/get-history", "get_metric_history", R),
        ("GET", "/metrics/get-history-bulk-interval", "get_metric_history_bulk_interval", R),
    ], API2),
    # -- logged models (tracking function; shared/tracking/logged_models.py) --
    *_routes("tracking", "shared.tracking.logged_models", [
        ("POST", "/logged-models", "create_logged_model", W),
        ("POST", "/logged-models/search", "search_logged_models", R),
        ("GET", "/logged-models/{model_id}", "get_logged_model", R),
        ("PATCH", "/logged-models/{model_id}", "finalize_logged_model", W),
        ("DELETE", "/logged-models/{model_id}", "delete_logged_model", W),
        ("PATCH", "/logged-models/{model_id}/tags", "set_logged_model_tags", W),
        ("DELETE", "/logged-models/{model_id}/tags/{tag_key}", "delete_logged_model_tag", W),
        ("POST", "/logged-models/{model_id}/params", "log_logged_model_params", W),
        ("GET", "/logged-models/{model_id}/artifacts/directories", "list_logged_model_artifacts", R),
    ], API2),
    # -- registry (registry function; shared/registry/) --
    *_routes("registry", "shared.registry.models", [
        ("POST", "/registered-models/create", "create_registered_model", W),
        ("GET", "/registered-models/get", "get_registered_model", R),
        ("POST", "/registered-models/rename", "rename_registered_model", W),
        ("PATCH", "/registered-models/update", "update_registered_model", W),
        ("DELETE", "/registered-models/delete", "delete_registered_model", A),
        ("GET", "/registered-models/search", "search_registered_models", R),
        ("GET", "/registered-models/get-latest-versions", "get_latest_versions", R),
        ("POST", "/registered-models/get-latest-versions", "get_latest_versions", R),
        ("POST", "/registered-models/set-tag", "set_registered_model_tag", W),
        ("DELETE", "/registered-models/delete-tag", "delete_registered_model_tag", W),
        ("POST", "/registered-models/alias", "set_registered_model_alias", W),
        ("DELETE", "/registered-models/alias", "delete_registered_model_alias", W),
        ("GET", "/registered-models/alias", "get_model_version_by_alias", R),
    ], API2),
    *_routes("registry", "shared.registry.versions", [
        ("POST", "/model-versions/create", "create_model_version", W),
        ("GET", "/model-versions/get", "get_model_version", R),
        ("PATCH", "/model-versions/update", "update_model_version", W),
        ("DELETE", "/model-versions/delete", "delete_model_version", W),
        ("GET", "/model-versions/search", "search_model_versions", R),
        ("POST", "/model-versions/transition-stage", "transition_model_version_stage", W),
        ("GET", "/model-versions/get-download-uri", "get_model_version_download_uri", R),
        ("POST", "/model-versions/set-tag", "set_model_version_tag", W),
        ("DELETE", "/model-versions/delete-tag", "delete_model_version_tag", W),
    ], API2),
    # -- artifacts (artifacts function; shared/artifacts/) --
    *_routes("artifacts", "shared.artifacts.proxy", [
        ("GET", "/artifacts", "list_artifacts", R),
        ("GET", "/artifacts/{path+}", "download_artifact", R),
        ("PUT", "/artifacts/{path+}", "upload_artifact", W),
        ("DELETE", "/artifacts/{path+}", "delete_artifact", W),
        ("POST", "/mpu/create/{path+}", "create_multipart_upload", W),
        ("POST", "/mpu/complete/{path+}", "complete_multipart_upload", W),
        ("POST", "/mpu/abort/{path+}", "abort_multipart_upload", W),
        ("GET", "/presigned/{path+}", "presigned_download_url", R),
    ], ARTIFACTS),
    *_routes("artifacts", "shared.artifacts.run_artifacts", [
        ("GET", "/artifacts/list", "list_artifacts", R),
        ("POST", "/artifacts/presigned-upload-url", "presigned_upload_url", W),
        ("POST", "/artifacts/presigned-download-url", "presigned_download_url", R),
    ], API2),
    # -- webhooks (registry function; shared/registry/webhooks.py) --
    *_routes("registry", "shared.registry.webhooks", [
        ("POST", "/webhooks", "create_webhook", A),
        ("GET", "/webhooks", "list_webhooks", A),
        ("GET", "/webhooks/{webhook_id}", "get_webhook", A),
        ("PATCH", "/webhooks/{webhook_id}", "update_webhook", A),
        ("DELETE", "/webhooks/{webhook_id}", "delete_webhook", A),
        ("POST", "/webhooks/{webhook_id}/test", "test_webhook", A),
    ], API2),
    *_routes("tracking", "shared.tracking.server_info", [
        ("GET", "/server-info", "server_info", R),
        ("GET", "/server-features", "server_info", R),
    ], API3),
    # -- the web UI (docs/ui.md): its page and sign-in (ui function; shared/ui/pages.py) --
    *_routes("ui", "shared.ui.pages", [
        ("GET", "", "app_page", None),  # `/projects/<p>/` (and a redirect from `/projects/<p>`)
        ("POST", "/signin", "sign_in", None),
        ("GET", "/signout", "sign_out", None),
    ], "", PUBLIC),
    # -- what the UI calls besides the API routes, with its session --
    *_routes("tracking", "shared.ui.graphql", [("POST", "/graphql", "graphql", R)], "", SESSION),
    *_routes("artifacts", "shared.artifacts.ui", [
        ("GET", "/get-artifact", "run_artifact", R),
        ("GET", "/model-versions/get-artifact", "model_version_artifact", R),
        ("GET", UI2 + "/logged-models/{model_id}/artifacts/files", "logged_model_artifact", R),
    ], "", SESSION),
    *_routes("artifacts", "shared.ui.package", [("GET", "/package", "package_page", R)], "", SESSION),
    # Features mlreg does not have, answered the way the UI takes as "absent" (shared/ui/absent.py).
    *_routes("tracking", "shared.ui.absent", [
        ("GET", UI2 + "/users/current", "no_user", R),
        ("GET", UI2 + "/gateway-proxy", "no_gateway", R),
        ("POST", UI2 + "/experiments/search-datasets", "no_datasets", R),
        ("GET", UI3 + "/assistant/config", "no_assistant", R),
        ("GET", UI3 + "/assistant/providers", "no_assistant_providers", R),
        ("GET", UI3 + "/ui-telemetry", "no_telemetry", R),
        ("POST", UI3 + "/ui-telemetry", "no_telemetry", R),
        ("POST", UI3 + "/traces/metrics", "no_trace_metrics", R),
        ("GET", UI3 + "/traces/search", "no_traces", R),
        ("POST", UI3 + "/traces/search", "no_traces", R),
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
    twins = [Route(r.method, UI_API + r.path[len(API):], r.function, r.handler, r.role, SESSION)
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
