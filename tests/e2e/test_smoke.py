"""`mlreg smoke` against `mlreg serve`: every check passes on a working service, and a service broken
on purpose (a wrong token, a route that answers 404, events on another bus) gives a clear failing
line and a non-zero exit. The smoke command never imports mlflow."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from mlreg import signatures
from tests.conftest import free_port

pytestmark = pytest.mark.client_free  # `mlreg smoke` uses no MLflow client: once is enough

CHECKS = ["server-info", "experiment and run", "params and metrics", "small file, presigned",
          "multipart file, presigned parts", "register a version", "load by number", "load by alias",
          "load by semver", "stage transition", "event arrives", "UI sign-in page", "UI session",
          "another project refused"]


def smoke(service, *extra: str, uri: str | None = None, token: str | None = None) -> tuple[int, dict[str, tuple]]:
    """Runs `mlreg smoke` in a fresh interpreter; returns the exit code and {check: (verdict, detail)}."""
    argv = ["smoke", "--tracking-uri", uri or service.uri(), "--token", token or service.token,
            "--data-dir", str(service.data_dir), "--event-timeout", "15", *extra]
    code = ("import sys\nfrom mlreg import cli\nrc = cli.main(sys.argv[1:])\n"
            "assert 'mlflow' not in sys.modules, 'mlreg smoke imported mlflow'\nsys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    assert "imported mlflow" not in done.stderr
    lines = {}
    for line in done.stdout.splitlines()[1:]:
        verdict, rest = line[:4], line[6:]
        name = next((c for c in [*CHECKS, "cleanup"] if rest.startswith(c + " ")), None)
        assert name, f"not a check line: {line!r}\n{done.stderr}"
        lines[name] = (verdict, rest[len(name):].strip())
    return done.returncode, lines


def call(service, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(service.uri() + path, data=json.dumps(body).encode() if body else None,
                                     method=method, headers={"Authorization": f"Bearer {service.token}"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def scratch_name(lines: dict) -> str:
    return re.search(r"mlreg-smoke-[\w-]+", lines["cleanup"][1]).group(0)


def test_every_check_passes_on_a_working_service_and_the_scratch_data_goes(service):
    code, lines = smoke(service)
    assert list(lines) == [*CHECKS, "cleanup"]
    assert {name: verdict for name, (verdict, _) in lines.items()} == dict.fromkeys([*CHECKS, "cleanup"], "PASS"), lines
    assert code == 0
    assert "Model Version Created" in lines["event arrives"][1] and "403" in lines["another project refused"][1]

    name = scratch_name(lines)
    status, body = call(service, "GET", f"/api/2.0/mlflow/registered-models/get?name={name}")
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    status, body = call(service, "GET", f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}")
    assert status == 404 or body["experiment"]["lifecycle_stage"] == "deleted"


def test_keep_leaves_the_scratch_experiment_and_model(service):
    code, lines = smoke(service, "--keep", "--skip", "event arrives")
    assert code == 0 and lines["cleanup"][0] == "KEEP" and "event arrives" not in lines
    name = scratch_name(lines)
    status, body = call(service, "GET", f"/api/2.0/mlflow/registered-models/get?name={name}")
    assert status == 200 and body["registered_model"]["latest_versions"][0]["current_stage"] == "Staging"
    status, body = call(service, "GET", f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}")
    assert status == 200 and body["experiment"]["lifecycle_stage"] == "active"


def test_a_wrong_token_fails_the_first_check_and_skips_what_depends_on_it(service):
    code, lines = smoke(service, "--skip", "event arrives", token="mlreg_default_not-a-real-token")
    assert code == 1
    assert lines["server-info"][0] == "FAIL" and "401" in lines["server-info"][1]
    assert "UNAUTHENTICATED" in lines["server-info"][1]
    assert lines["experiment and run"][0] == "FAIL"
    assert lines["params and metrics"][0] == "SKIP" and "run_id" in lines["params and metrics"][1]


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the client behind the proxy sees the redirect
        return None


NO_REDIRECTS = urllib.request.build_opener(_KeepRedirects)


@pytest.fixture(params=["transition-stage"])
def broken_gateway(service, request):
    """A gateway in front of the service where one route is gone (answers MLflow's 404): the
    parameter is a piece of its path."""
    broken = request.param

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            if broken in self.path:
                self._answer(404, json.dumps({"error_code": "ENDPOINT_NOT_FOUND",
                                              "message": f"No route for {self.command} {self.path}"}).encode())
                return
            length = int(self.headers.get("Content-Length") or 0)
            request = urllib.request.Request(service.base_url + self.path, method=self.command,
                                             data=self.rfile.read(length) if length else None,
                                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
            try:
                with NO_REDIRECTS.open(request) as response:
                    self._answer(response.status, response.read(), response.headers)
            except urllib.error.HTTPError as err:
                self._answer(err.code, err.read(), err.headers)

        def _answer(self, status: int, body: bytes, headers=None) -> None:
            self.send_response(status)
            for name, value in (headers or {"Content-Type": "application/json"}).items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/projects/default"
    server.shutdown()


def test_a_broken_route_gives_one_failing_line(service, broken_gateway):
    code, lines = smoke(service, uri=broken_gateway)
    assert code == 1
    verdict, detail = lines["stage transition"]
    assert verdict == "FAIL" and "404 ENDPOINT_NOT_FOUND" in detail and "transition-stage" in detail
    assert lines["event arrives"][0] == "SKIP"
    assert [n for n, (v, _) in lines.items() if v == "PASS"] == [
        n for n in [*CHECKS, "cleanup"] if n not in ("stage transition", "event arrives")]


def test_events_that_do_not_arrive_fail_the_event_check(service):
    info = json.loads((service.data_dir / "endpoint.json").read_text())
    events = boto3.client("events", endpoint_url=info["dynamodb_endpoint"], region_name=info["region"],
                          **signatures.credentials(service.data_dir))
    events.create_event_bus(Name=f"quiet-{free_port()}")
    bus = events.list_event_buses(NamePrefix="quiet-")["EventBuses"][-1]["Name"]
    code, lines = smoke(service, "--event-bus", bus, "--event-timeout", "3")
    assert code == 1
    verdict, detail = lines["event arrives"]
    assert verdict == "FAIL" and f"on bus {bus} within 3 s" in detail and "Model Version Created" in detail
    assert events.list_rules(EventBusName=bus)["Rules"] == [], "the temporary rule is removed"


@pytest.mark.parametrize("broken_gateway", ["/signin"], indirect=True)
def test_a_broken_sign_in_fails_the_ui_session_check_alone(service, broken_gateway):
    code, lines = smoke(service, "--skip", "event arrives", uri=broken_gateway)
    assert code == 1
    verdict, detail = lines["UI session"]
    assert verdict == "FAIL" and "sign-in -> 404" in detail and "no session cookie" in detail
    assert [n for n, (v, _) in lines.items() if v != "PASS"] == ["UI session"]
