"""Turns an API Gateway REST proxy event into a call of the route's handler, and the handler's
result (or MlflowError) into a proxy response in MLflow's JSON shape."""

from __future__ import annotations

import base64
import importlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import unquote

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from shared.errors import MlflowError, invalid
from shared.routes import IAM_PREFIX, ROUTES, Role, Route

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
    _json: Any = None

    @property
    def json(self) -> dict:
        """Request fields: the JSON body for writes, the query string for GETs (as MLflow does)."""
        if self._json is None:
            self._json = self._parse()
        return self._json

    def _parse(self) -> dict:
        if self.method == "GET" or not self.body:
            return {k: v[0] if len(v) == 1 else v for k, v in self.query.items()}
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise invalid(f"Malformed JSON request body: {exc}") from None
        if not isinstance(data, dict):
            raise invalid("Request body must be a JSON object")
        return data

    def list_param(self, name: str) -> list:
        value = self.json.get(name)
        if value is None:
            return []
        return value if isinstance(value, list) else [value]


Handler = Callable[[Request], Any]
_handlers: dict[str, Handler] = {}


def _resolve(route: Route) -> Handler:
    if route.handler not in _handlers:
        module, name = route.handler.split(":")
        _handlers[route.handler] = getattr(importlib.import_module(module), name)
    return _handlers[route.handler]


def make_dispatcher(function: str) -> Callable[[dict, Any], dict]:
    """The Lambda handler of one function: serves exactly the routes the table gives it."""
    table = {(r.resource, r.method): r for r in ROUTES if r.function == function}

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
        route = table.get((resource[len(IAM_PREFIX):] if iam_caller else resource, event.get("httpMethod")))
        logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
        try:
            if route is None:
                raise MlflowError(f"No route for {event.get('httpMethod')} {event.get('path')}", "ENDPOINT_NOT_FOUND")
            request = to_request(event, iam_caller)
            if request.role < route.role:
                raise MlflowError(
                    f"This token's role ({request.role.name.lower()}) may not call this route "
                    f"(needs {route.role.name.lower()})",
                    "PERMISSION_DENIED",
                )
            return to_response(_resolve(route)(request))
        except MlflowError as err:
            return error_response(err)
        except ClientError as err:
            return error_response(_aws_error(err, route))
        except Exception:
            logger.exception("unhandled error", extra={"route": route and route.handler})
            return error_response(MlflowError("Internal error; the request can be retried", "INTERNAL_ERROR"))

    return dispatch


def _aws_error(err: ClientError, route: Route | None) -> MlflowError:
    """Throttling and conflicts become retryable answers (the MLflow client retries 429 and 5xx)."""
    code = err.response.get("Error", {}).get("Code", "")
    if code in RETRYABLE_AWS_ERRORS or (code == "TransactionCanceledException" and "TransactionConflict" in str(err)):
        return MlflowError(f"Busy ({code}); retry the request", "REQUEST_LIMIT_EXCEEDED")
    logger.exception("AWS error", extra={"route": route and route.handler, "code": code})
    return MlflowError(f"Internal error ({code}); the request can be retried", "INTERNAL_ERROR")


def to_request(event: dict, iam_caller: bool = False) -> Request:
    """`iam_caller`: a SigV4-signed request on the IAM tree. API Gateway already checked its IAM
    policy (generated per project and role), so it may write; admin routes are never granted there."""
    auth = (event.get("requestContext") or {}).get("authorizer") or {}
    if iam_caller:
        identity = (event.get("requestContext") or {}).get("identity") or {}
        auth = {"role": "write", "token_id": identity.get("userArn") or identity.get("caller") or "iam"}
    params = path_parameters(event)
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    ctx = event.get("requestContext") or {}
    host = headers.get("host", "localhost")
    stage = ctx.get("stage")
    proto = headers.get("x-forwarded-proto", "https")
    base = f"{proto}://{host}" + (f"/{stage}" if stage and stage != "$default" else "")
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
    return json.dumps(_json_safe(data), separators=(",", ":"))
