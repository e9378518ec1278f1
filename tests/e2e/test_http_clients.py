"""The local gateway and odd HTTP clients: every answer in MLflow's JSON shape, connections closed
when (and only when) the answer says so, idle keep-alive connections timed out."""

from __future__ import annotations

import http.client
import json
import socket

import pytest
import requests

from tests.conftest import start_service, stop_service

pytestmark = pytest.mark.client_free  # raw sockets and requests, no MLflow client: once is enough

CREATE = "/projects/default/api/2.0/mlflow/experiments/create"
SEARCH = "/projects/default/api/2.0/mlflow/experiments/search?max_results=1"


def connect(service) -> socket.socket:
    return socket.create_connection((service.host, service.port), timeout=30)


def send(sock: socket.socket, request: bytes) -> tuple[http.client.HTTPResponse, bytes]:
    sock.sendall(request)
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response, response.read()


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed its end (a read returns nothing); waits at most the socket's timeout."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def request_bytes(service, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {service.host}:{service.port}",
             f"Authorization: Bearer {service.token}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def assert_mlflow_error(response, body: bytes, status: int, error_code: str) -> dict:
    assert response.status == status, body
    assert response.getheader("Content-Type") == "application/json"
    error = json.loads(body)
    assert error["error_code"] == error_code and error["message"]
    return error


def test_connection_close_is_answered_with_connection_close_then_closed(service):
    with connect(service) as sock:
        response, body = send(sock, request_bytes(service, "GET", SEARCH, {"Connection": "close"}))
        assert response.status == 200 and "experiments" in json.loads(body)
        assert response.getheader("Connection") == "close"
        assert closed_by_server(sock)


def test_a_pooled_session_sending_connection_close_never_hits_a_closed_socket(service):
    with requests.Session() as session:
        session.headers.update({"Authorization": f"Bearer {service.token}", "Connection": "close"})
        statuses = [session.get(f"{service.base_url}{SEARCH}").status_code for _ in range(30)]
    assert statuses == [200] * 30


def test_keep_alive_connections_stay_open_and_say_nothing_about_closing(service):
    with connect(service) as sock:
        for _ in range(3):
            response, _ = send(sock, request_bytes(service, "GET", SEARCH, {}))
            assert response.status == 200 and response.getheader("Connection") is None


@pytest.mark.parametrize("length", ["abc", "-1", "1.5", "0x10", "5, 6"])
def test_a_malformed_content_length_is_a_json_400_and_the_connection_closes(service, length):
    with connect(service) as sock:
        request = request_bytes(service, "POST", CREATE, {"Content-Length": length}, b'{"name": "x"}')
        response, body = send(sock, request)
        error = assert_mlflow_error(response, body, 400, "BAD_REQUEST")
        assert "Content-Length" in error["message"]
        assert response.getheader("Connection") == "close" and closed_by_server(sock)


def test_two_different_content_lengths_are_refused(service):
    request = request_bytes(service, "POST", CREATE, {"Content-Length": "2"}, b"{}").replace(
        b"Content-Length: 2", b"Content-Length: 2\r\nContent-Length: 3")
    with connect(service) as sock:
        assert_mlflow_error(*send(sock, request), 400, "BAD_REQUEST")


def test_a_url_over_64_kb_is_a_json_414(service):
    with connect(service) as sock:
        response, body = send(sock, request_bytes(service, "GET", SEARCH + "&x=" + "a" * 70_000, {}))
        assert_mlflow_error(response, body, 414, "BAD_REQUEST")
        assert closed_by_server(sock)


@pytest.mark.parametrize("request_line, status, code", [
    (b"GARBAGE\r\n\r\n", 400, "BAD_REQUEST"),
    (b"GET / HTTP/9.x\r\n\r\n", 400, "BAD_REQUEST"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % n for n in range(120)) + b"\r\n", 431, "BAD_REQUEST"),
    (b"BREW /projects/default HTTP/1.1\r\nHost: x\r\n\r\n", 501, "NOT_IMPLEMENTED"),
])
def test_http_level_refusals_are_json(service, request_line, status, code):
    with connect(service) as sock:
        assert_mlflow_error(*send(sock, request_line), status, code)


def test_a_body_cut_short_is_a_json_400(service):
    with connect(service) as sock:
        sock.sendall(request_bytes(service, "POST", CREATE, {"Content-Length": "100"}, b'{"name": "x"}'))
        sock.shutdown(socket.SHUT_WR)  # the client gives up half way
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert_mlflow_error(response, response.read(), 400, "BAD_REQUEST")


def test_a_chunked_body_is_read_like_api_gateway_does(service):
    body = json.dumps({"name": "chunked-body"}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:])) + b"0\r\n\r\n"
    with connect(service) as sock:
        response, data = send(sock, request_bytes(service, "POST", CREATE, {"Transfer-Encoding": "chunked"}, chunked))
        assert response.status == 200, data
        assert json.loads(data)["experiment_id"]
        response, _ = send(sock, request_bytes(service, "GET", SEARCH, {}))  # the connection is still in step
        assert response.status == 200


def test_a_body_over_10_mb_is_a_json_413_without_reading_it(service):
    with connect(service) as sock:
        response, body = send(sock, request_bytes(service, "PUT", "/projects/default/api/2.0/mlflow-artifacts/"
                                                  "artifacts/0/x/artifacts/big.bin", {"Content-Length": str(11 << 20)}))
        assert_mlflow_error(response, body, 413, "PAYLOAD_TOO_LARGE")
        assert response.getheader("Connection") == "close"


@pytest.fixture(scope="module")
def impatient(tmp_path_factory):
    svc = start_service(tmp_path_factory.mktemp("idle") / "data", extra=["--idle-timeout", "1"])
    yield svc
    stop_service(svc)


def test_idle_keep_alive_connections_are_closed(impatient):
    with connect(impatient) as used, connect(impatient) as silent:
        response, _ = send(used, request_bytes(impatient, "GET", SEARCH, {}))
        assert response.status == 200 and response.getheader("Connection") is None
        assert closed_by_server(used)  # within the socket's 30 s timeout, after the server's 1 s
        assert closed_by_server(silent)  # connected, never sent a request
