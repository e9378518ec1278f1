"""`mlreg smoke`: check a running environment end to end, one line per check.

    mlreg smoke --tracking-uri https://<api>/v1/projects/sandbox --token mlreg_sandbox_... \\
                --event-bus mlreg-dev
    mlreg smoke                      # MLFLOW_TRACKING_URI / MLFLOW_TRACKING_TOKEN, e.g. `mlreg serve`'s

Everything happens in a scratch experiment and registered model named `mlreg-smoke-<time>-<random>`,
deleted afterwards (`--keep` leaves them; deleting needs an admin token). The checks speak MLflow's
REST API as the MLflow client does, over plain HTTP (no mlflow import: it is not a dependency of
mlreg); presigned transfers go straight to S3. Events are watched with a temporary EventBridge rule
whose target is a temporary SQS queue (both removed afterwards): on the environment's bus with your
AWS credentials, or on `mlreg serve`'s emulated bus (found through `<data-dir>/endpoint.json`).

Each check is a function that takes the run's `Smoke` state, raises `CheckFailed` with the reason,
and returns a short detail; `needs` names the state it reads, so a check whose input failed is
skipped, not failed twice. Adding a check is one function and one line in CHECKS."""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts"
PART_BYTES = 5 * 1024 * 1024  # S3's smallest part (all but the last)
MLMODEL = b"artifact_path: model\nflavors: {}\nmlreg_smoke: true\n"
LOCAL_BUS = "mlreg-local"  # shared/events/local.py
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class CheckFailed(Exception):
    pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # an API redirect is an answer to check, not to follow
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def http(method: str, url: str, data: bytes | None = None, headers: dict | None = None,
         timeout: float = 60) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
    except (urllib.error.URLError, OSError) as err:
        raise CheckFailed(f"{method} {url.split('?')[0]}: {getattr(err, 'reason', err)}") from None


class Api:
    """MLflow's REST API of one project, with a token or SigV4 (the IAM tree)."""

    def __init__(self, tracking_uri: str, token: str | None = None, sigv4_region: str | None = None) -> None:
        self.uri = tracking_uri.rstrip("/")
        self.token, self.sigv4_region = token, sigv4_region

    @property
    def project(self) -> str:
        return self.uri.rsplit("/", 1)[-1]

    def for_project(self, project: str) -> Api:
        return Api(f"{self.uri.rsplit('/', 1)[0]}/{project}", self.token, self.sigv4_region)

    def send(self, method: str, path: str, body: dict | bytes | None = None,
             query: dict | None = None) -> tuple[int, dict, bytes]:
        url = self.uri + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        headers = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
        return http(method, url, data, self._signed(method, url, data, headers))

    def call(self, method: str, path: str, body: dict | bytes | None = None, query: dict | None = None) -> dict:
        """The JSON answer of a 200; anything else fails the check with MLflow's error code and message."""
        status, _, content = self.send(method, path, body, query)
        if status != 200:
            raise CheckFailed(f"{method} {path} -> {status} {_error(content)}")
        return json.loads(content or b"{}")

    def _signed(self, method: str, url: str, data: bytes | None, headers: dict) -> dict:
        if self.token:
            return {**headers, "Authorization": f"Bearer {self.token}"}
        if not self.sigv4_region:
            return headers
        import botocore.session
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = botocore.session.get_session().get_credentials()
        if credentials is None:
            raise CheckFailed("--sigv4: no AWS credentials found")
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(credentials, "execute-api", self.sigv4_region).add_auth(request)
        return dict(request.headers)


def _error(content: bytes) -> str:
    try:
        body = json.loads(content)
        return f"{body.get('error_code', '')}: {body.get('message', '')}".strip(": ")
    except ValueError:
        return content[:200].decode(errors="replace")


class EventWatch:
    """A temporary EventBridge rule (events of one model) with a temporary SQS queue as its target."""

    def __init__(self, bus: str, model: str, project: str, local: dict | None = None) -> None:
        import boto3

        kwargs: dict = {}
        if local:  # the emulator takes only its own key (never send real ones to it)
            kwargs.update(endpoint_url=local["dynamodb_endpoint"], region_name=local["region"], **local["credentials"])
        self.sqs, self.events = boto3.client("sqs", **kwargs), boto3.client("events", **kwargs)
        self.bus, self.name, self.seen = bus, model, []
        self.queue = self.sqs.create_queue(QueueName=model)["QueueUrl"]
        try:
            queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue,
                                                      AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            rule_arn = self.events.put_rule(Name=model, EventBusName=bus, EventPattern=json.dumps(
                {"source": ["mlreg"], "detail": {"project": [project], "model": [model]}}))["RuleArn"]
            self.sqs.set_queue_attributes(QueueUrl=self.queue, Attributes={"Policy": json.dumps({
                "Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
                    "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]})})
            self.events.put_targets(Rule=model, EventBusName=bus, Targets=[{"Id": "smoke", "Arn": queue_arn}])
        except Exception:
            self.remove()  # what was made so far
            raise

    def wait_for(self, detail_types: set[str], timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            seen = {e["detail-type"] for e in self.seen}
            if detail_types <= seen or time.monotonic() > deadline:
                return sorted(detail_types - seen)
            for message in self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10,
                                                    WaitTimeSeconds=1).get("Messages", []):
                self.seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])

    def remove(self) -> None:
        """The rule (with its target) and the queue, as far as they exist."""
        from botocore.exceptions import ClientError

        try:
            self.events.remove_targets(Rule=self.name, EventBusName=self.bus, Ids=["smoke"])
            self.events.delete_rule(Name=self.name, EventBusName=self.bus)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        self.sqs.delete_queue(QueueUrl=self.queue)


@dataclass
class Smoke:
    api: Api
    name: str  # of the scratch experiment and registered model
    other_project: str
    event_timeout: float
    watch: EventWatch | None = None
    watch_error: str = ""
    state: dict = field(default_factory=dict)  # what checks made: experiment_id, run_id, version, ...


# ---- the checks ---------------------------------------------------------------------------------------

def server_info(s: Smoke) -> str:
    info = s.api.call("GET", "/api/3.0/mlflow/server-info")
    return f"store {info.get('store_type')}, multipart uploads {'on' if info.get('multipart_uploads_enabled') else 'off'}"


def experiment_and_run(s: Smoke) -> str:
    s.state["experiment_id"] = s.api.call("POST", f"{API}/experiments/create", {"name": s.name})["experiment_id"]
    run = s.api.call("POST", f"{API}/runs/create", {"experiment_id": s.state["experiment_id"], "run_name": "smoke",
                                                    "start_time": int(time.time() * 1000)})["run"]["info"]
    s.state["run_id"], s.state["artifact_uri"] = run["run_id"], run["artifact_uri"]
    return f"experiment {s.state['experiment_id']}, run {run['run_id']}"


def params_and_metrics(s: Smoke) -> str:
    run_id = s.state["run_id"]
    s.api.call("POST", f"{API}/runs/log-batch", {"run_id": run_id, "params": [{"key": "lr", "value": "0.1"}],
               "metrics": [{"key": "auc", "value": 0.5 + step / 10, "timestamp": 0, "step": step} for step in range(3)]})
    data = s.api.call("GET", f"{API}/runs/get", query={"run_id": run_id})["run"]["data"]
    params = {p["key"]: p["value"] for p in data.get("params", [])}
    metrics = {m["key"]: (m["value"], m["step"]) for m in data.get("metrics", [])}
    if params != {"lr": "0.1"} or metrics != {"auc": (0.7, 2)}:
        raise CheckFailed(f"read back params {params}, latest metrics {metrics}")
    history = s.api.call("GET", f"{API}/metrics/get-history", query={"run_id": run_id, "metric_key": "auc"})
    if len(history.get("metrics", [])) != 3:
        raise CheckFailed(f"metric history has {len(history.get('metrics', []))} points, logged 3")
    return "1 param, 3 metric points read back"


def small_file(s: Smoke) -> str:
    run_id = s.state["run_id"]
    up = s.api.call("POST", f"{API}/artifacts/presigned-upload-url", {"run_id": run_id, "path": "model/MLmodel"})
    _transfer("PUT", up["presigned_url"], MLMODEL, up.get("headers"))
    down = s.api.call("POST", f"{API}/artifacts/presigned-download-url", {"run_id": run_id, "path": "model/MLmodel"})
    if _transfer("GET", down["presigned_url"], headers=down.get("headers")) != MLMODEL:
        raise CheckFailed("the file read back differs from the one uploaded")
    s.state["model_source"] = f"runs:/{run_id}/model"
    return f"{len(MLMODEL)} bytes up and down through presigned URLs"


def multipart_file(s: Smoke) -> str:
    folder = f"{_artifact_path(s.state['artifact_uri'])}/smoke"
    content = secrets.token_bytes(PART_BYTES + 1024)
    created = s.api.call("POST", f"{ARTIFACTS}/mpu/create/{folder}", {"path": "big.bin", "num_parts": 2})
    parts = []
    for part in created["credentials"]:
        n = part["part_number"]
        _, headers, _ = _transfer("PUT", part["url"], content[(n - 1) * PART_BYTES:n * PART_BYTES],
                                  part.get("headers"), full=True)
        parts.append({"part_number": n, "etag": headers.get("ETag") or headers.get("etag")})
    s.api.call("POST", f"{ARTIFACTS}/mpu/complete/{folder}",
               {"path": "big.bin", "upload_id": created["upload_id"], "parts": parts})
    link = s.api.call("GET", f"{ARTIFACTS}/presigned/{folder}/big.bin")
    back = _transfer("GET", link["url"], headers=link.get("headers"))
    if back != content:
        raise CheckFailed(f"read back {len(back)} bytes that differ from the {len(content)} uploaded")
    return f"{len(content):,} bytes in {len(parts)} presigned parts, read back equal"


REGISTRATION_WAIT = 300  # seconds, as MLflow's client waits for READY (await_registration_for)


def register_version(s: Smoke) -> str:
    s.api.call("POST", f"{API}/registered-models/create", {"name": s.name})
    s.state["model"] = s.name
    version = s.api.call("POST", f"{API}/model-versions/create", {
        "name": s.name, "source": s.state["model_source"], "run_id": s.state["run_id"]})["model_version"]
    deadline = time.monotonic() + REGISTRATION_WAIT
    while version.get("status") == "PENDING_REGISTRATION" and time.monotonic() < deadline:
        time.sleep(0.5)  # the registry worker copies the package (docs/registry.md); the client waits so too
        version = s.api.call("GET", f"{API}/model-versions/get",
                             query={"name": s.name, "version": version["version"]})["model_version"]
    if version.get("status") != "READY":
        raise CheckFailed(f"version {version.get('version')} is {version.get('status')}: {version.get('status_message')}")
    s.state["version"] = version["version"]
    uri = s.api.call("GET", f"{API}/model-versions/get-download-uri",
                     query={"name": s.name, "version": version["version"]})["artifact_uri"]
    semver = next(t["value"] for t in version.get("tags", []) if t["key"] == "mlreg.version")
    s.state["package_path"], s.state["semver"] = _artifact_path(uri), semver
    return f"version {version['version']} ({s.state['semver']}), package {uri}"


def load_by_number(s: Smoke) -> str:
    version = s.api.call("GET", f"{API}/model-versions/get", query={"name": s.name, "version": s.state["version"]})
    return _load(s, version["model_version"], f"models:/{s.name}/{s.state['version']}")


def load_by_alias(s: Smoke) -> str:
    s.api.call("POST", f"{API}/registered-models/alias", {"name": s.name, "alias": "smoke", "version": s.state["version"]})
    version = s.api.call("GET", f"{API}/registered-models/alias", query={"name": s.name, "alias": "smoke"})
    return _load(s, version["model_version"], f"models:/{s.name}@smoke")


def load_by_semver(s: Smoke) -> str:
    version = s.api.call("GET", f"{API}/registered-models/alias", query={"name": s.name, "alias": s.state["semver"]})
    return _load(s, version["model_version"], f"models:/{s.name}@{s.state['semver']}")


def _load(s: Smoke, version: dict, uri: str) -> str:
    """Resolve to the registered version and read its package, as the client's load_model does."""
    if str(version["version"]) != str(s.state["version"]):
        raise CheckFailed(f"{uri} resolves to version {version['version']}, not {s.state['version']}")
    status, _, content = s.api.send("GET", f"{ARTIFACTS}/artifacts/{s.state['package_path']}/MLmodel")
    if status != 200 or content != MLMODEL:
        raise CheckFailed(f"{uri}: package MLmodel -> {status} {_error(content) if status != 200 else 'differs'}")
    return f"{uri} -> version {version['version']}, package read"


def stage_transition(s: Smoke) -> str:
    version = s.api.call("POST", f"{API}/model-versions/transition-stage", {
        "name": s.name, "version": s.state["version"], "stage": "Staging", "archive_existing_versions": False})
    if version["model_version"].get("current_stage") != "Staging":
        raise CheckFailed(f"stage is {version['model_version'].get('current_stage')}, not Staging")
    s.state["transitioned"] = True
    return "None -> Staging"


def event_arrives(s: Smoke) -> str:
    if s.watch is None:
        raise CheckFailed(s.watch_error)
    expected = {"Model Version Created", "Model Version Stage Transitioned"}
    missing = s.watch.wait_for(expected, s.event_timeout)
    if missing:
        raise CheckFailed(f"no {', '.join(missing)} event of {s.name} on bus {s.watch.bus} within "
                          f"{s.event_timeout:.0f} s (saw: {sorted({e['detail-type'] for e in s.watch.seen}) or 'none'})")
    return f"{', '.join(sorted(expected))} on bus {s.watch.bus}"


def ui_sign_in_page(s: Smoke) -> str:
    """The link the MLflow client prints (`<tracking uri>/#/...`) opens the UI's sign-in page."""
    status, headers, content = http("GET", s.api.uri + "/")
    page = content.decode(errors="replace")
    if status != 200 or "action=signin" not in page:
        raise CheckFailed(f"GET {s.api.uri}/ -> {status}, not the sign-in page: {page[:200]!r}")
    if "default-src 'none'" not in _header(headers, "Content-Security-Policy"):
        raise CheckFailed("the sign-in page has no Content-Security-Policy")
    return f"{s.api.uri}/ -> sign-in page ({len(content):,} bytes)"


def ui_session(s: Smoke) -> str:
    """Sign in with the token as a browser does, then open the UI and read the scratch experiment
    through `ajax-api` with the session cookie alone (the UI's calls), and sign out."""
    if not s.api.token:
        raise CheckFailed("the UI signs in with a token: --sigv4 has none (pass --token, or --skip this check)")
    form = urllib.parse.urlencode({"token": s.api.token, "next": ""}).encode()
    status, headers, content = http("POST", s.api.uri + "/signin", form,
                                    {"Content-Type": "application/x-www-form-urlencoded"})
    cookie = _header(headers, "Set-Cookie").split(";", 1)[0]
    if status != 303 or not cookie:
        raise CheckFailed(f"sign-in -> {status} {_error(content)}, no session cookie")
    session = {"Cookie": cookie}
    try:
        status, _, content = http("GET", s.api.uri + "/", headers=session)
        if status != 200 or b"static-files/" not in content:
            raise CheckFailed(f"the UI page with a session -> {status}, not MLflow's UI")
        status, _, content = http("GET", f"{s.api.uri}/ajax-api/2.0/mlflow/experiments/get?"
                                  + urllib.parse.urlencode({"experiment_id": s.state["experiment_id"]}), headers=session)
        name = json.loads(content).get("experiment", {}).get("name") if status == 200 else None
        if name != s.name:
            raise CheckFailed(f"ajax-api experiments/get with the session -> {status} {_error(content) if status != 200 else name}")
    finally:
        http("GET", s.api.uri + "/signout", headers=session)
    return "signed in, UI page and one ajax-api call with the session cookie, signed out"


def _header(headers: dict, name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), "")


def other_project_refused(s: Smoke) -> str:
    status, _, content = s.api.for_project(s.other_project).send("GET", "/api/3.0/mlflow/server-info")
    if status != 403:
        raise CheckFailed(f"project {s.other_project} answered {status} {_error(content)}, not 403")
    return f"project {s.other_project}: 403 {_error(content)}"


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Smoke], str]
    needs: tuple[str, ...] = ()


CHECKS = [
    Check("server-info", server_info),
    Check("experiment and run", experiment_and_run),
    Check("params and metrics", params_and_metrics, needs=("run_id",)),
    Check("small file, presigned", small_file, needs=("run_id",)),
    Check("multipart file, presigned parts", multipart_file, needs=("artifact_uri",)),
    Check("register a version", register_version, needs=("model_source",)),
    Check("load by number", load_by_number, needs=("version",)),
    Check("load by alias", load_by_alias, needs=("version",)),
    Check("load by semver", load_by_semver, needs=("version",)),
    Check("stage transition", stage_transition, needs=("version",)),
    Check("event arrives", event_arrives, needs=("transitioned",)),
    Check("UI sign-in page", ui_sign_in_page),
    Check("UI session", ui_session, needs=("experiment_id",)),
    Check("another project refused", other_project_refused),
]


def cleanup(s: Smoke) -> str:
    """The scratch model (its version and package first), the run's artifacts, the run, the experiment."""
    done = []
    if "model" in s.state:
        if "version" in s.state:
            s.api.call("DELETE", f"{API}/model-versions/delete", {"name": s.name, "version": s.state["version"]})
        s.api.call("DELETE", f"{API}/registered-models/delete", {"name": s.name})
        done.append(f"model {s.name}")
    if "run_id" in s.state:
        s.api.call("DELETE", f"{ARTIFACTS}/artifacts/{_artifact_path(s.state['artifact_uri'])}")
        s.api.call("POST", f"{API}/runs/delete", {"run_id": s.state["run_id"]})
        done.append("run and its artifacts")
    if "experiment_id" in s.state:
        s.api.call("POST", f"{API}/experiments/delete", {"experiment_id": s.state["experiment_id"]})
        done.append(f"experiment {s.name}")
    return "deleted " + (", ".join(done) or "nothing (nothing was made)")


def run(s: Smoke, checks: list[Check], keep: bool = False, out=sys.stdout) -> bool:
    """Run the checks, one line each, then clean up (unless keep); True when none failed."""
    width = max(len(c.name) for c in [*checks, Check("cleanup", cleanup)])
    failed = False

    def line(verdict: str, name: str, detail: str) -> None:
        print(f"{verdict:4}  {name:<{width}}  {detail}", file=out, flush=True)

    for check in checks:
        missing = [n for n in check.needs if n not in s.state]
        if missing:
            line("SKIP", check.name, f"needs {', '.join(missing)}, which an earlier check did not make")
            continue
        started = time.monotonic()
        try:
            detail = check.run(s)
        except CheckFailed as err:
            failed = True
            line("FAIL", check.name, str(err))
        except Exception as err:  # a bug or an unexpected answer: still one clear line
            failed = True
            line("FAIL", check.name, f"{type(err).__name__}: {err}")
        else:
            line("PASS", check.name, f"{detail} ({(time.monotonic() - started) * 1000:.0f} ms)")
    if s.watch:
        try:
            s.watch.remove()
        except Exception as err:
            failed = True
            line("FAIL", "cleanup", f"the temporary rule and queue {s.name} stay: {type(err).__name__}: {err}")
    if keep:
        line("KEEP", "cleanup", f"left experiment and model {s.name} (--keep)")
        return not failed
    try:
        line("PASS", "cleanup", cleanup(s))
    except CheckFailed as err:
        failed = True
        hint = " (deleting experiments and models needs an admin token; or use --keep)" if "PERMISSION" in str(err) else ""
        line("FAIL", "cleanup", f"{err}{hint}")
    return not failed


def _transfer(method: str, url: str, data: bytes | None = None, headers: dict | None = None, full: bool = False):
    """A presigned S3 request: no API credentials, the URL is the authorisation. (Without a content
    type urllib would send a form's, which S3 servers may try to read as one.)"""
    headers = {"Content-Type": "application/octet-stream", **(headers or {})} if data is not None else headers or {}
    status, response_headers, content = http(method, url, data, headers, timeout=300)
    if status != 200:
        raise CheckFailed(f"presigned {method} -> {status} {content[:300].decode(errors='replace')}")
    return (status, response_headers, content) if full else content


def _artifact_path(uri: str) -> str:
    """`mlflow-artifacts:/a/b` -> `a/b`: the artifact route path of an artifact URI."""
    return re.sub(r"^mlflow-artifacts:/*", "", uri).rstrip("/")


def _region_of(url: str) -> str | None:
    found = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", url)
    return found.group(1) if found else os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def _local_emulator(data_dir: Path) -> dict | None:
    """Endpoint and region of a running `mlreg serve`'s emulator (one moto server serves every
    service) with data in `data_dir`, if any."""
    from mlreg import signatures

    published = data_dir / "endpoint.json"
    info = json.loads(published.read_text()) if published.exists() else {}
    return {**info, "credentials": signatures.credentials(data_dir)} if info.get("emulated") else None


def cmd_smoke(args) -> int:
    if not args.tracking_uri:
        print("mlreg smoke: give --tracking-uri (or set MLFLOW_TRACKING_URI)", file=sys.stderr)
        return 2
    if not args.token and not args.sigv4:
        print("mlreg smoke: give --token (or set MLFLOW_TRACKING_TOKEN), or --sigv4 for the IAM tree", file=sys.stderr)
        return 2
    api = Api(args.tracking_uri, None if args.sigv4 else args.token, _region_of(args.tracking_uri) if args.sigv4 else None)
    name = f"mlreg-smoke-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"
    other = args.other_project if args.other_project != api.project else f"{api.project}-not"
    smoke = Smoke(api, name, other, args.event_timeout)
    checks = [c for c in CHECKS if c.name not in set(args.skip)]
    if any(c.run is event_arrives for c in checks):
        local = _local_emulator(args.data_dir) if urllib.parse.urlsplit(api.uri).hostname in LOCAL_HOSTS else None
        bus = args.event_bus or (LOCAL_BUS if local else None)
        if bus is None:
            smoke.watch_error = ("no event bus: pass --event-bus (the stack output EventBusName, with AWS credentials "
                                 "that may manage rules and queues), or --skip 'event arrives'")
        else:
            try:
                smoke.watch = EventWatch(bus, name, api.project, local)
            except Exception as err:
                smoke.watch_error = f"cannot watch bus {bus}: {type(err).__name__}: {err}"
    print(f"mlreg smoke: {api.uri} ({'SigV4' if args.sigv4 else 'token'}), scratch name {name}", flush=True)
    return 0 if run(smoke, checks, keep=args.keep) else 1


def add_command(sub) -> None:
    smoke = sub.add_parser("smoke", help="check a running environment end to end (one line per check)",
                           description=__doc__.split("\n\n")[0])
    smoke.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                       help="https://<api>/v1/projects/<project> (default: MLFLOW_TRACKING_URI)")
    smoke.add_argument("--token", default=os.environ.get("MLFLOW_TRACKING_TOKEN"),
                       help="a write or admin token of the project (default: MLFLOW_TRACKING_TOKEN)")
    smoke.add_argument("--sigv4", action="store_true", help="the IAM tree (/iam/projects/...): sign with AWS credentials")
    smoke.add_argument("--event-bus", help="the environment's EventBridge bus (stack output EventBusName)")
    smoke.add_argument("--data-dir", type=Path, default=Path(".mlreg"),
                       help="a local `mlreg serve`'s data directory, for its emulated bus (default .mlreg)")
    smoke.add_argument("--other-project", default="mlreg-smoke-elsewhere",
                       help="a project the credentials must not open (an existing one proves more)")
    smoke.add_argument("--event-timeout", type=float, default=60, help="seconds to wait for the events")
    smoke.add_argument("--skip", action="append", default=[], metavar="CHECK", help="leave out a check (repeatable)")
    smoke.add_argument("--keep", action="store_true", help="leave the scratch experiment, run and model")
    smoke.set_defaults(func=cmd_smoke)
