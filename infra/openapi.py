"""The REST API as one OpenAPI document, generated from the route table (shared/routes.py).

Why a document instead of CDK Resource/Method constructs: every route appears twice (token tree and
IAM tree), and as constructs each would cost a Resource, a Method and Lambda permissions in the
template. With ~80 routes that passes CloudFormation's 500-resource limit and the 20 KB limit of a
Lambda resource policy. As a document the whole API is one AWS::ApiGateway::RestApi resource, and
each function needs a single invoke permission.

Everything here is plain data: the CDK construct (infra/constructs/api.py) passes in the integration
URIs, which may be CDK tokens."""

from __future__ import annotations

import json
import re
from typing import Iterable, Mapping

from shared import routes as route_table
from shared.routes import CATCH_ALL, IAM_PREFIX, ROUTES, STATIC_FILES, UI_API, UI_CATCH_ALL, Route

TOKEN_AUTH = "mlreg-token"  # the Lambda REQUEST authorizer: `Authorization: Bearer <token>`
SESSION_AUTH = "mlreg-session"  # the same Lambda for the web UI: its session cookie (docs/auth.md)
EITHER_AUTH = "mlreg-token-or-session"  # the same Lambda with no identity source: a token or a cookie
IAM_AUTH = "sigv4"  # API Gateway's AWS_IAM authorisation
AUTHS = {route_table.TOKEN: TOKEN_AUTH, route_table.SESSION: SESSION_AUTH,
         route_table.TOKEN_OR_SESSION: EITHER_AUTH, route_table.PUBLIC: None}
INTEGRATION_TIMEOUT_MS = 29_000  # API Gateway's ceiling for REST APIs
_PARAM = re.compile(r"\{(\w+)\+?\}")

# MLflow's error shape for the answers API Gateway gives itself. `messageString` arrives quoted.
_ERROR = '{"error_code":"%s","message":$context.error.messageString}'
GATEWAY_RESPONSES: dict[str, tuple[int | None, str]] = {
    # response type: (status, or None to keep API Gateway's; MLflow error code)
    "UNAUTHORIZED": (401, "UNAUTHENTICATED"),
    "ACCESS_DENIED": (403, "PERMISSION_DENIED"),
    "EXPIRED_TOKEN": (403, "PERMISSION_DENIED"),
    "INVALID_SIGNATURE": (403, "PERMISSION_DENIED"),
    # A path outside /projects/{project}/ (or an unsigned request to the IAM tree).
    "MISSING_AUTHENTICATION_TOKEN": (404, "ENDPOINT_NOT_FOUND"),
    "REQUEST_TOO_LARGE": (413, "PAYLOAD_TOO_LARGE"),
    "THROTTLED": (429, "REQUEST_LIMIT_EXCEEDED"),
    "QUOTA_EXCEEDED": (429, "REQUEST_LIMIT_EXCEEDED"),
    "INTEGRATION_TIMEOUT": (504, "TEMPORARILY_UNAVAILABLE"),
    "DEFAULT_4XX": (None, "BAD_REQUEST"),
    "DEFAULT_5XX": (None, "INTERNAL_ERROR"),
}
NOT_FOUND_BODY = ('{"error_code":"ENDPOINT_NOT_FOUND","message":"No mlreg route for $context.httpMethod '
                  'at this path. Routes live below /projects/<project>/api/2.0/mlflow/"}')


def token_tree(route_path: str) -> str:
    """The API path of a resource (`/projects/{project}/...`) in the token tree."""
    return route_path


def iam_tree(route_path: str) -> str:
    """The same resource in the SigV4 tree."""
    return IAM_PREFIX + route_path


def path_parameters(path: str) -> list[str]:
    """`/a/{b}/c/{d+}` -> ["b", "d"]: OpenAPI names greedy parameters without the plus."""
    return _PARAM.findall(path)


def build(*, title: str, function_uris: Mapping[str, str], authorizer_uri: str, authorizer_cache_seconds: int,
          cors_origin: str | None = None, routes: Iterable[Route] = ROUTES,
          static_files: tuple[str, str] | None = None) -> dict:
    """The OpenAPI 3 document of the whole API.

    function_uris: Lambda function name -> API Gateway integration URI of that function.
    static_files: (S3 integration URI of the web UI's files, ending in `{path}`; ARN of the role API
    Gateway reads them with)."""
    paths: dict[str, dict] = {}
    routes = list(routes)
    for route in routes:
        uri = function_uris[route.function]
        if route.auth == route_table.TOKEN:  # the MLflow client's routes: both trees
            for path, auth in ((token_tree(route.resource), TOKEN_AUTH), (iam_tree(route.resource), IAM_AUTH)):
                paths.setdefault(path, {})[route.method.lower()] = _lambda_operation(path, auth, uri)
        elif not route.path.startswith(UI_API):  # the web UI's own (the rest come with ui_resources below)
            paths.setdefault(route.resource, {})[route.method.lower()] = _lambda_operation(
                route.resource, AUTHS[route.auth], uri)
    for path, auth in ((token_tree(CATCH_ALL), TOKEN_AUTH), (iam_tree(CATCH_ALL), IAM_AUTH)):
        paths.setdefault(path, {})["x-amazon-apigateway-any-method"] = _not_found_operation(path, auth)
    if any(r.auth == route_table.SESSION for r in routes):
        # The UI calls every API route below /ajax-api/: a few greedy resources carry them, each to one
        # function, whose dispatcher finds the route in the table (shared/routes.py ui_resources).
        for path, function in route_table.ui_resources().items():
            paths.setdefault(path, {})["x-amazon-apigateway-any-method"] = _lambda_operation(
                path, SESSION_AUTH, function_uris[function])
        paths.setdefault(UI_CATCH_ALL, {})["x-amazon-apigateway-any-method"] = _not_found_operation(
            UI_CATCH_ALL, SESSION_AUTH)
    if static_files:
        paths.setdefault(STATIC_FILES, {})["get"] = _static_operation(STATIC_FILES, *static_files)
    if cors_origin:
        # Browsers send preflights without credentials, so these answer without authorisation. The
        # IAM tree gets none: browsers do not sign requests with SigV4.
        for path in [p for p in paths if not p.startswith(IAM_PREFIX + "/")]:
            methods = sorted({m.upper() for m in paths[path] if not m.startswith("x-")} or {"GET", "POST"})
            paths[path]["options"] = _preflight_operation(path, cors_origin, methods)

    return {
        "openapi": "3.0.1",
        "info": {"title": title, "version": "1"},
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                TOKEN_AUTH: _authorizer("Authorization", authorizer_uri, authorizer_cache_seconds),
                # API Gateway answers 401 without invoking an authorizer whose identity source is missing
                # (and caches by it): the UI's requests carry a cookie, not the Authorization header.
                SESSION_AUTH: _authorizer("Cookie", authorizer_uri, authorizer_cache_seconds),
                # Identity sources are optional only without caching: invoked for every request.
                EITHER_AUTH: _authorizer(None, authorizer_uri, 0),
                IAM_AUTH: {"type": "apiKey", "name": "Authorization", "in": "header",
                           "x-amazon-apigateway-authtype": "awsSigv4"},
            },
        },
        # Artifact bodies are bytes: pass every payload through untouched (Lambda gets it base64).
        "x-amazon-apigateway-binary-media-types": ["*/*"],
        "x-amazon-apigateway-gateway-responses": _gateway_responses(cors_origin),
    }


def _authorizer(header: str | None, uri: str, cache_seconds: int) -> dict:
    """`header` None: no identity source (allowed only with caching off): API Gateway invokes the
    authorizer whatever the request carries, and the function looks for a token, then a cookie."""
    authorizer = {"type": "request", "authorizerUri": uri, "authorizerResultTtlInSeconds": cache_seconds}
    if header:
        authorizer["identitySource"] = f"method.request.header.{header}"
    return {"type": "apiKey", "name": header or "Authorization", "in": "header",
            "x-amazon-apigateway-authtype": "custom", "x-amazon-apigateway-authorizer": authorizer}


def _parameters(path: str) -> list[dict]:
    return [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in path_parameters(path)]


def _lambda_operation(path: str, auth: str | None, uri: str) -> dict:
    """`auth` None: no authorizer (the UI's page and sign-in, which check the session themselves)."""
    return {
        "parameters": _parameters(path),
        "security": [{auth: []}] if auth else [],
        "responses": {"200": {"description": "The MLflow response (or an MLflow error)"}},
        "x-amazon-apigateway-integration": {
            "type": "aws_proxy", "httpMethod": "POST", "uri": uri,
            "passthroughBehavior": "when_no_match", "timeoutInMillis": INTEGRATION_TIMEOUT_MS,
        },
    }


def _mock(status: int, headers: Mapping[str, str], body: str) -> dict:
    return {
        "type": "mock",
        # With binary media type */* a mock would see a binary request; converting it to text lets
        # the request template choose the status.
        "contentHandling": "CONVERT_TO_TEXT",
        "passthroughBehavior": "when_no_match",
        "requestTemplates": {"application/json": json.dumps({"statusCode": status})},
        "responses": {"default": {
            "statusCode": str(status),
            "responseParameters": {f"method.response.header.{k}": v for k, v in headers.items()},
            "responseTemplates": {"application/json": body},
        }},
    }


def _method_response(status: int, description: str, headers: Iterable[str]) -> dict:
    return {str(status): {"description": description,
                          "headers": {h: {"schema": {"type": "string"}} for h in headers}}}


def _not_found_operation(path: str, auth: str) -> dict:
    """Unknown paths below a project: MLflow's 404 (API Gateway would answer 403), without a Lambda."""
    headers = {"Content-Type": "'application/json'"}
    return {
        "parameters": _parameters(path),
        "security": [{auth: []}],
        "responses": _method_response(404, "ENDPOINT_NOT_FOUND", headers),
        "x-amazon-apigateway-integration": _mock(404, headers, NOT_FOUND_BODY),
    }


STATIC_HEADERS = ("Content-Type", "Cache-Control", "X-Content-Type-Options")


def _static_operation(path: str, uri: str, role_arn: str) -> dict:
    """A file of the UI's bundle straight from S3, with S3's content type; anything S3 refuses
    (a missing key is a 403 to a reader without ListBucket) is a 404."""
    found = {f"method.response.header.{h}": f"integration.response.header.{h}" for h in STATIC_HEADERS[:2]}
    found["method.response.header.X-Content-Type-Options"] = "'nosniff'"
    return {
        "parameters": _parameters(path),
        "security": [],
        "responses": {**_method_response(200, "A file of MLflow's UI build", STATIC_HEADERS),
                      **_method_response(404, "No such file", ("Content-Type",))},
        "x-amazon-apigateway-integration": {
            "type": "aws", "httpMethod": "GET", "credentials": role_arn,
            "uri": uri,
            "requestParameters": {"integration.request.path.path": "method.request.path.path"},
            "passthroughBehavior": "when_no_match",
            "timeoutInMillis": INTEGRATION_TIMEOUT_MS,
            "responses": {
                "default": {"statusCode": "200", "responseParameters": found},
                "[45]\\d{2}": {"statusCode": "404",
                                 "responseParameters": {"method.response.header.Content-Type": "'text/plain'"},
                                 "responseTemplates": {"application/json": "Not found"}},
            },
        },
    }


def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": f"'{origin}'", "Vary": "'Origin'"}


def _preflight_operation(path: str, origin: str, methods: list[str]) -> dict:
    headers = {
        **_cors_headers(origin),
        "Access-Control-Allow-Methods": "'%s'" % ",".join(methods + ["OPTIONS"]),
        "Access-Control-Allow-Headers": "'Authorization,Content-Type,X-Amz-Date,X-Amz-Security-Token'",
        "Access-Control-Max-Age": "'600'",
    }
    return {
        "parameters": _parameters(path),
        "security": [],
        "responses": _method_response(204, "CORS preflight", headers),
        "x-amazon-apigateway-integration": _mock(204, headers, ""),
    }


def _gateway_responses(cors_origin: str | None) -> dict:
    responses = {}
    for kind, (status, code) in GATEWAY_RESPONSES.items():
        response: dict = {"responseTemplates": {"application/json": _ERROR % code}}
        if status is not None:
            response["statusCode"] = status
        if cors_origin:
            # Without these a browser reports a CORS failure instead of the 401/403/429.
            response["responseParameters"] = {f"gatewayresponse.header.{k}": v
                                              for k, v in _cors_headers(cors_origin).items()}
        responses[kind] = response
    return responses


def operations(spec: dict) -> Iterable[tuple[str, str, dict]]:
    """(path, method, operation) for every operation of a document; the any-method is "ANY"."""
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield path, ("ANY" if method == "x-amazon-apigateway-any-method" else method.upper()), op
