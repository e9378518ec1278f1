"""A local stand-in for API Gateway: turns each HTTP request into the REST proxy event the deployed
API sends, runs the same authorizer, then the same Lambda handler, with the same payload limits.
The web UI's static files come from MLflow's bundle on disk (mlreg/ui_static.py)."""

from __future__ import annotations

import base64
import fnmatch
import importlib
import json
import socket
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from mlreg import ui_static
from mlreg.ui_bundle import BundleError
from shared import routes
from shared.errors import MlflowError
from shared.http import error_response

API_GATEWAY_MAX_BODY = 10 * 1024 * 1024  # API Gateway refuses bodies above 10 MB
CACHE_ENTRIES = 10_000  # authorizer answers kept at most (each a small dict)
IDLE_TIMEOUT_SECONDS = 60  # a keep-alive connection with no request for this long is closed
LAMBDA_MAX_PAYLOAD = 6 * 1024 * 1024  # Lambda refuses invocation events and responses above 6 MB
STAGE = "local"
ACCOUNT = "000000000000"
API_ID = "local"

# The header each authorizer reads (infra/openapi.py): API Gateway answers 401 without it.
IDENTITY_SOURCES = {routes.TOKEN: ("authorization",), routes.SESSION: ("cookie",),
                    routes.TOKEN_OR_SESSION: ("authorization", "cookie")}
UNAUTHENTICATED = {"authorization": "Missing or invalid token for this project (MLFLOW_TRACKING_TOKEN)",
                   "cookie": "Not signed in, or the session ended: sign in at /projects/<project>/"}
MULTIPART_HINT = ("Set MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD=true and MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE="
                  "4194304 so large files go straight to S3 in presigned parts.")


def _too_large() -> MlflowError:
    return MlflowError(f"Request body is larger than API Gateway's 10 MB limit. {MULTIPART_HINT}", "PAYLOAD_TOO_LARGE")


def _handler(function: str):
    return importlib.import_module(f"functions.{function}").handler


def build_event(method: str, path: str, query: str, headers: dict[str, str], body: bytes,
                route: routes.Route, params: dict[str, str], source_ip: str, in_process: bool = False) -> dict:
    """The REST API (v1) proxy event. With binary media type */* API Gateway base64-encodes bodies;
    `in_process`: the body is handed over as the bytes that base64 stands for (the handler runs in
    this process: encoding and decoding every byte is all the base64 would add; shared/http.py).
    `path` and `pathParameters` stay percent-encoded as the client sent them (API Gateway decodes
    only the query string); shared/http.py decodes path parameters once. The UI's calls below
    `/ajax-api/` reach the greedy resource that carries them (routes.py)."""
    resource = routes.api_resource(route, path)
    headers = {"X-Forwarded-Proto": "http", **headers}  # API Gateway's says https
    pairs = parse_qsl(query, keep_blank_values=True)
    multi: dict[str, list[str]] = {}
    for k, v in pairs:
        multi.setdefault(k, []).append(v)
    request_id = str(uuid.uuid4())
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi.items()} or None,
        "multiValueQueryStringParameters": multi or None,
        "pathParameters": (params if resource == route.resource else _resource_params(resource, path)) or None,
        "stageVariables": None,
        "requestContext": {
            # `path` as the client sent it: locally there is no stage in the URL.
            "resourcePath": resource, "httpMethod": method, "path": path, "stage": STAGE,
            "requestId": request_id, "accountId": ACCOUNT, "apiId": API_ID, "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000), "identity": {"sourceIp": source_ip},
        },
        "body": (body if in_process else base64.b64encode(body).decode()) if body else None,
        "isBase64Encoded": bool(body),
    }


def _resource_params(resource: str, path: str) -> dict[str, str]:
    """Path parameters as API Gateway gives them for a greedy UI resource (`proxy` holds the rest)."""
    m = routes.resource_regex(resource).match(path)
    return m.groupdict() if m else {}


def payload_size(message: dict) -> int:
    """The size of an event or response as Lambda counts it (its JSON). A base64 body needs no
    escaping: its length is added rather than copied through the JSON encoder again."""
    body = message.get("body")
    if not body or not message.get("isBase64Encoded"):
        return len(json.dumps(message))
    encoded = 4 * -(-len(body) // 3) if isinstance(body, bytes) else len(body)
    return len(json.dumps({**message, "body": ""})) + encoded


def authorizer_event(event: dict) -> dict:
    method, resource = event["httpMethod"], event["path"]
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:local:{ACCOUNT}:{API_ID}/{STAGE}/{method}{resource}",
        "resource": event["resource"], "path": event["path"], "httpMethod": method,
        "headers": event["headers"], "queryStringParameters": event["queryStringParameters"],
        "pathParameters": event["pathParameters"], "requestContext": event["requestContext"],
    }


class AuthorizerCache:
    """API Gateway's cache of the authorizer's answers (ResultsCacheTtl: infra/config.py's
    authorizer_cache_seconds), keyed by the identity source's value. An authorizer with two identity
    sources has no cache, as deployed (infra/openapi.py). Refusals are not kept: a new token works at
    once. `credential_writes`, when given, counts writes of tokens, sessions and projects (the
    emulator's): an answer is kept only while it stands still, so locally a revoked token or an ended
    session is refused at once; against real endpoints it lasts the TTL, as deployed, and so does a
    token's expiry everywhere."""

    def __init__(self, seconds: float, credential_writes=None):
        self.seconds, self._writes = seconds, credential_writes or (lambda: 0)
        self._answers: dict[str, tuple[float, int, dict]] = {}
        self._lock = threading.Lock()

    def get(self, identity: str) -> dict | None:
        with self._lock:
            until, writes, result = self._answers.get(identity, (0.0, 0, None))
        return result if time.monotonic() < until and writes == self._writes() else None

    def put(self, identity: str, writes: int, result: dict) -> None:
        with self._lock:
            if len(self._answers) > CACHE_ENTRIES:  # as API Gateway's, bounded; expired ones go first
                now = time.monotonic()
                self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
            self._answers[identity] = (time.monotonic() + self.seconds, writes, result)

    def writes(self) -> int:
        return self._writes()


def authorize(event: dict, identity_headers: tuple[str, ...] = ("authorization",),
              cache: AuthorizerCache | None = None) -> dict:
    """Run the authorizer as API Gateway does: a missing identity source (the token's Authorization
    header, or the UI session's Cookie; either for the authorizer that has none) or an exception
    means 401, a policy that does not allow this method ARN means 403; otherwise its context becomes
    requestContext.authorizer."""
    given = [h for h in identity_headers if any(k.lower() == h and v for k, v in event["headers"].items())]
    refusal = MlflowError(UNAUTHENTICATED[(given or identity_headers)[0]], "UNAUTHENTICATED")
    if not given:
        raise refusal
    auth_event = authorizer_event(event)
    identity = None
    if cache and cache.seconds and len(identity_headers) == 1:
        # Keyed by the path's project too (docs/auth.md): a Deny cached for another project's path
        # must not answer the token's own project.
        value = next(v for k, v in event["headers"].items() if k.lower() == given[0])
        identity = f"{given[0]} {(event['pathParameters'] or {}).get('project')} {value}"
    result = cache.get(identity) if identity else None
    if result is None:
        writes = cache.writes() if identity else 0
        try:
            result = _handler("authorizer")(auth_event, None)
        except Exception:
            raise refusal from None
        if identity:
            cache.put(identity, writes, result)
    statements = result.get("policyDocument", {}).get("Statement", [])
    arn = auth_event["methodArn"]
    allowed = [s for s in statements if fnmatch.fnmatchcase(arn, s["Resource"]) and s["Effect"] == "Allow"]
    denied = [s for s in statements if fnmatch.fnmatchcase(arn, s["Resource"]) and s["Effect"] == "Deny"]
    if denied or not allowed:
        raise MlflowError("This token may not access this project", "PERMISSION_DENIED")
    return {**result.get("context", {}), "principalId": result.get("principalId")}


def handle(method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str = "127.0.0.1",
           cache: AuthorizerCache | None = None) -> dict:
    """One request through authorizer and handler; returns a proxy response dict."""
    split = urlsplit(raw_path)
    path = split.path
    try:
        if len(body) > API_GATEWAY_MAX_BODY:
            raise _too_large()
        route, params = routes.match(method, path.rstrip("/") or path)  # API Gateway ignores a trailing slash
        if route is None:
            raise MlflowError(f"No API route for {method} {path}", "ENDPOINT_NOT_FOUND")
        event = build_event(method, path, split.query, headers, body, route, params, source_ip, in_process=True)
        if payload_size(event) > LAMBDA_MAX_PAYLOAD:
            raise MlflowError(f"Request is larger than Lambda's 6 MB payload limit. {MULTIPART_HINT}",
                              "PAYLOAD_TOO_LARGE")
        if route.auth != routes.PUBLIC:
            event["requestContext"]["authorizer"] = authorize(event, IDENTITY_SOURCES[route.auth], cache)
        elif route.function == "ui":
            ui_static.bundle()  # the UI's page reads the bundle's index.html
        response = _handler(route.function)(event, None)
        if payload_size(response) > LAMBDA_MAX_PAYLOAD:
            # What a deployed API does when a function's response is over Lambda's limit.
            raise MlflowError("Response is larger than Lambda's 6 MB payload limit", "INTERNAL_ERROR", 502)
        return response
    except MlflowError as err:
        return error_response(err)
    except BundleError as err:
        return error_response(MlflowError(f"The web UI is not available: {err}", "TEMPORARILY_UNAVAILABLE"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients expect from API Gateway
    server_version = "mlreg-local"
    verbose = False
    timeout = IDLE_TIMEOUT_SECONDS  # socket timeout: an idle keep-alive connection is closed

    def setup(self) -> None:
        super().setup()
        # Without this, small keep-alive replies stall on Nagle + delayed ACK (about 40 ms each).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except MlflowError as err:
            self.close_connection = True  # what follows on this connection cannot be told apart from the body
            self._send(error_response(err))
            return
        headers = {k: v for k, v in self.headers.items()}
        static = ui_static.static_file(self.command, urlsplit(self.path).path)
        if static:
            self._send_raw(*static)
            return
        try:
            response = handle(self.command, self.path, headers, body, self.client_address[0], self.server.authorizer_cache)
            self.server.before_answer()  # what the handler wrote is durable before anyone hears of it
        except Exception as exc:  # a bug in a handler: answer as Lambda + API Gateway would
            print(f"mlreg: unhandled error on {self.command} {self.path}: {exc!r}", file=sys.stderr)
            import traceback

            traceback.print_exc()
            response = error_response(MlflowError("Internal server error", "INTERNAL_ERROR"))
        self._send(response)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        lengths = set(self.headers.get_all("Content-Length") or [])
        if not lengths:
            return b""
        length = lengths.pop().strip()
        if lengths or not length.isdigit():
            raise MlflowError(f"Invalid Content-Length header: {self.headers.get('Content-Length')!r}", "BAD_REQUEST")
        if int(length) > API_GATEWAY_MAX_BODY:
            raise _too_large()
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            raise MlflowError("The request body is shorter than its Content-Length", "BAD_REQUEST")
        return body

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(size, 16)
            except ValueError:
                raise MlflowError("Malformed chunked request body", "BAD_REQUEST") from None
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return bytes(body)
            if len(body) + size > API_GATEWAY_MAX_BODY:
                raise _too_large()
            body += self.rfile.read(size)
            self.rfile.readline(8)  # the chunk's CRLF

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a request line over 64 KB, bad syntax, too many headers, an
        unknown method) in MLflow's JSON shape instead of an HTML page."""
        self.close_connection = True
        self.request_version = self.protocol_version  # a status line and headers even for "HTTP/0.9" garbage
        if code == HTTPStatus.REQUEST_URI_TOO_LONG:
            message = "The request line is longer than 65,536 bytes"
        error_code = "NOT_IMPLEMENTED" if code == HTTPStatus.NOT_IMPLEMENTED else "BAD_REQUEST"
        self._send(error_response(MlflowError(message or HTTPStatus(code).description, error_code, code)))

    def _send(self, response: dict) -> None:
        body = response.get("body") or ""
        data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
        self._send_raw(response.get("statusCode", 200), response.get("headers") or {}, data)

    def _send_raw(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:  # say so, or a pooling client sends its next request into a closed socket
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def log_message(self, fmt: str, *args) -> None:
        if self.verbose:
            super().log_message(fmt, *args)


class Gateway(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients connect at once (parallel uploads, concurrent writers)

    def __init__(self, host: str, port: int, verbose: bool = False, idle_timeout: float = IDLE_TIMEOUT_SECONDS,
                 authorizer_cache: AuthorizerCache | None = None, before_answer: Callable[[], None] = lambda: None):
        handler = type("Handler", (_Handler,), {"verbose": verbose, "timeout": idle_timeout})
        self.authorizer_cache, self.before_answer = authorizer_cache, before_answer
        super().__init__((host, port), handler)
