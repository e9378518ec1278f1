"""Turns an API Gateway REST proxy event into a call of the route's handler, and the handler's
result (or MlflowError) into a proxy response in MLflow's JSON shape."""

from __future__ import annotations

import base64
import importlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from shared import routes
from shared.errors import MlflowError, invalid
from shared.routes import IAM_PREFIX, ROUTES, Role, Route

if TYPE_CHECKING:  # route modules load their messages: only a function's first request imports them
    from shared.message import Message

logger = Logger(service="mlreg")
# EMF metrics (no API calls). Lambda's active tracing covers X-Ray: powertools' Tracer would add about
# 1.6 s to every cold start (the X-Ray SDK and its patching), against a 300 ms budget.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "mlreg"))
RETRYABLE_AWS_ERRORS = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
                        "TransactionConflictException", "InternalServerError", "SlowDown", "ServiceUnavailable"}

JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class Response:
    """A non-JSON or non-200 answer (artifact bytes, redirects)."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    project: str
    role: Role
    token_id: str
    method: str
    path_params: dict[str, str]
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    base_url: str  # scheme://host[/stage] the client called, for links back to this API
    via_session: bool = False  # a browser's session (the web UI), not a token
    path: str = ""  # the request path as API Gateway received it (below the stage)

    def fields(self, message: type[Message]) -> dict:
        """The raw fields of `message`, read as MLflow's server reads them: a GET's query string
        (the message's list fields as lists, others their first value) or, without one, the JSON
        body, which every other method sends; then the path's parameters (they win)."""
        if message.raw_body:
            data: dict = {}
        elif (self.method == "GET" and self.query) or not self.body:
            lists = message.list_fields()
            data = {k: v if k in lists else v[0] for k, v in self.query.items() if v}
        else:
            data = json_object(self.body, message.max_body_bytes)
        return {**data, **{k: v for k, v in self.path_params.items() if k != "project"}}


def json_object(body: bytes, max_bytes: int | None = None) -> dict:
    """The request's JSON object. `max_bytes`: MLflow's bound on log-batch bodies (worded as MLflow's)."""
    if max_bytes is not None and len(body) > max_bytes:
        raise invalid(f"Batched logging API requests must be at most {max_bytes} bytes, got a request of size "
                      f"{len(body)}.")
    try:
        data = json.loads(body)
        if isinstance(data, str):  # older clients post their JSON double-encoded (MLflow decodes it again)
            data = json.loads(data)
    except RecursionError:
        raise invalid("Malformed JSON request body: nested too deeply") from None
    except ValueError as exc:
        raise invalid(f"Malformed JSON request body: {exc}") from None
    if not isinstance(data, dict):
        raise invalid("Malformed JSON request body: expected an object of request fields")
    return data


_resolved: dict[str, Any] = {}


def _resolve(name: str) -> Any:
    """A handler or message by its "module:name" in the route table, imported on first use (cold start)."""
    if name not in _resolved:
        module, attribute = name.split(":")
        _resolved[name] = getattr(importlib.import_module(module), attribute)
    return _resolved[name]


def invoke(route: Route, request: Request, fields: dict | None = None) -> Any:
    """Parse a route's message (from the request, or from `fields`) and run its handler: the
    dispatcher calls routes this way, and GraphQL for the web UI too (shared/ui/graphql.py)."""
    message_type = _resolve(route.message)
    message = message_type.parse(request.fields(message_type) if fields is None else fields)
    return _resolve(route.handler)(request, message)


def make_dispatcher(function: str) -> Callable[[dict, Any], dict]:
    """The Lambda handler of one function: serves exactly the routes the table gives it, and the UI's
    greedy resources of this function through the same table (shared/routes.py)."""
    table = {(r.resource, r.method): r for r in ROUTES if r.function == function}
    ui_resources = {res for res, fn in routes.ui_resources().items() if fn == function}

    def find(event: dict, resource: str) -> Route | None:
        if resource not in ui_resources:
            return table.get((resource, event.get("httpMethod")))
        path = routes.concrete_path(resource, event.get("pathParameters") or {})
        route, params = routes.match(event.get("httpMethod"), path)
        if route is None or route.function != function:
            return None
        event["pathParameters"] = params
        return route

    def dispatch(event: dict, context: Any = None) -> dict:
        response = _dispatch(event)
        if os.environ.get("MLREG_CORS_ORIGIN"):  # API Gateway answers preflights; this, the requests
            response["headers"] = {**response.get("headers", {}),
                                   "Access-Control-Allow-Origin": os.environ["MLREG_CORS_ORIGIN"], "Vary": "Origin"}
        status = response["statusCode"]
        if status >= 400:
            metrics.add_dimension(name="function", value=function)
            metrics.add_metric(name="ServerErrors" if status >= 500 else "ClientErrors", unit=MetricUnit.Count, value=1)
            metrics.flush_metrics()
            metrics.clear_metrics()  # flushing while disabled (locally) keeps them: never accumulate
        return response

    def _dispatch(event: dict) -> dict:
        resource = event.get("resource") or ""
        iam_caller = resource.startswith(IAM_PREFIX + "/")
        route = find(event, resource[len(IAM_PREFIX):] if iam_caller else resource)
        logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
        try:
            if route is None:
                raise MlflowError(f"No route for {event.get('httpMethod')} {event.get('path')}", "ENDPOINT_NOT_FOUND")
            request = to_request(event, iam_caller)
            if route.role is not None and request.role < route.role:
                raise role_error(request.role, route.role, request.via_session)
            if request.via_session and route.role is not None and route.role > Role.READ and cross_site(request):
                raise MlflowError("Cross-site writes are refused: use the UI at its own address", "PERMISSION_DENIED")
            return to_response(invoke(route, request))
        except MlflowError as err:
            return error_response(err)
        except ClientError as err:
            return error_response(_aws_error(err, route))
        except Exception:
            logger.exception("unhandled error", extra={"route": route and route.handler})
            return error_response(MlflowError("Internal error; the request can be retried", "INTERNAL_ERROR"))

    return dispatch


def _aws_error(err: ClientError, route: Route | None) -> MlflowError:
    """Throttling and conflicts become retryable answers (the MLflow client retries 429 and 5xx); an
    item or key over DynamoDB's size limits is the request's fault (messages bound each field, but
    not every sum of fields)."""
    code = err.response.get("Error", {}).get("Code", "")
    too_large = _size_refusal(err)
    if too_large:
        return invalid(f"The request's values are too large to store: {too_large}")
    if code in RETRYABLE_AWS_ERRORS or (code == "TransactionCanceledException" and "TransactionConflict" in str(err)):
        return MlflowError(f"Busy ({code}); retry the request", "REQUEST_LIMIT_EXCEEDED")
    logger.exception("AWS error", extra={"route": route and route.handler, "code": code})
    return MlflowError(f"Internal error ({code}); the request can be retried", "INTERNAL_ERROR")


def _size_refusal(err: ClientError) -> str | None:
    error = err.response.get("Error", {})
    if error.get("Code") == "ValidationException":
        texts = [error.get("Message", "")]
    else:  # a transaction names its items' reasons
        texts = [r.get("Message", "") for r in err.response.get("CancellationReasons", [])
                 if r.get("Code") == "ValidationError"]
    return next((text for text in texts if "size" in text.lower()), None)


def role_error(role: Role, needed: Role, via_session: bool) -> MlflowError:
    have, need = role.name.lower(), needed.name.lower()
    if via_session:
        return MlflowError(f"Signed in with a {have} token: this needs a {need} token. Sign out and sign in "
                           f"with a {need} token of this project to do it.", "PERMISSION_DENIED")
    return MlflowError(f"This token's role ({have}) may not call this route (needs {need})", "PERMISSION_DENIED")


def cross_site(request: Request) -> bool:
    """Whether a browser sent this from another origin. Writes with a session must come from the UI's
    own origin (the session cookie is SameSite=Strict as well: two locks on one door)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    foreign_origin = origin and origin.partition("://")[2] != request.headers.get("host")
    return bool((site and site != "same-origin") or foreign_origin)


def to_request(event: dict, iam_caller: bool = False) -> Request:
    """`iam_caller`: a SigV4-signed request on the IAM tree. API Gateway already checked its IAM
    policy (generated per project and role), so it may write; admin routes are never granted there."""
    auth = (event.get("requestContext") or {}).get("authorizer") or {}
    if iam_caller:
        identity = (event.get("requestContext") or {}).get("identity") or {}
        auth = {"role": "write", "token_id": identity.get("userArn") or identity.get("caller") or "iam"}
    params = path_parameters(event)
    body = event.get("body") or ""
    if isinstance(body, bytes):  # the local gateway's in-process hand-over (mlreg/gateway.py build_event)
        raw = body
    else:
        raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    ctx = event.get("requestContext") or {}
    host = headers.get("host", "localhost")
    proto = headers.get("x-forwarded-proto", "https")
    # What the client's URL has before the resource path: the stage, or a custom domain's base path.
    full, path = ctx.get("path") or "", event.get("path") or ""
    stage = ctx.get("stage")
    prefix = f"/{stage}" if stage and stage != "$default" else ""
    if path and full.endswith(path):
        prefix = full[:-len(path)]
    base = f"{proto}://{host}{prefix}"
    return Request(
        project=params.get("project", ""),
        role=Role[auth.get("role", "read").upper()],
        token_id=auth.get("token_id", ""),
        method=event.get("httpMethod", "GET"),
        path_params=params,
        query=event.get("multiValueQueryStringParameters") or {},
        headers=headers,
        body=raw,
        base_url=base,
        via_session=auth.get("session") == "true",
        path=event.get("path") or "",
    )


def path_parameters(event: dict) -> dict[str, str]:
    """API Gateway passes path parameters percent-encoded, as sent: decoded here, once, so
    `a%2541` is the name `a%41`. The project is a plain id, taken as the authorizer checked it."""
    return {k: v if k == "project" else unquote(v) for k, v in (event.get("pathParameters") or {}).items()}


def to_response(result: Any) -> dict:
    if isinstance(result, Response):
        body = result.body
        if isinstance(body, bytes):
            return {
                "statusCode": result.status,
                "headers": {"Content-Type": "application/octet-stream", **result.headers},
                "body": base64.b64encode(body).decode(),
                "isBase64Encoded": True,
            }
        return {"statusCode": result.status, "headers": result.headers, "body": body, "isBase64Encoded": False}
    return {"statusCode": 200, "headers": JSON_HEADERS, "body": dumps(result or {}), "isBase64Encoded": False}


def error_response(err: MlflowError) -> dict:
    return {"statusCode": err.status, "headers": JSON_HEADERS, "body": json.dumps(err.to_json()), "isBase64Encoded": False}


def _json_safe(value: Any) -> Any:
    """Protobuf JSON spells non-finite doubles as strings; the MLflow client parses them back."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def dumps(data: Any) -> str:
    try:  # the common answer holds finite numbers only: no walk over it (a page of 1,000 runs: 0.25 s)
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_json_safe(data), separators=(",", ":"))
