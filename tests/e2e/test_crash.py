"""`kill -9` of `mlreg serve` at random moments during concurrent writes: after each restart every
write that was answered 200 is there, and no version number or semantic version is issued twice.

Writers use plain HTTP (an answer is an acknowledgement, no client retries in between): metric
batches, model versions, artifact uploads through the API, and multipart uploads whose parts go
straight to the emulated S3 through presigned URLs."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from tests.conftest import Service, start_service, stop_service

pytestmark = pytest.mark.client_free  # kill -9 and raw HTTP, no MLflow client: once is enough

ROUNDS = 3
PART_BYTES = [5 * 1024 * 1024, 64 * 1024]  # S3's smallest first part, and a short last one
MODEL_FILE = b"flavors: {}"  # each version's package is a copy of it, with a manifest


@dataclass
class Ledger:
    """Every acknowledged write, by kind."""

    metrics: dict[str, dict[int, float]] = field(default_factory=dict)  # metric key -> step -> value
    versions: dict[int, tuple[str, str]] = field(default_factory=dict)  # version -> (description, semver)
    files: dict[str, bytes] = field(default_factory=dict)  # artifact route path -> content
    parts: dict[str, dict] = field(default_factory=dict)  # upload id -> {"path", "parts": {n: (etag, bytes)}}
    completed: dict[str, bytes] = field(default_factory=dict)  # artifact route path -> content
    errors: list[str] = field(default_factory=list)  # answers that are neither a success nor "busy, retry"
    lock: threading.Lock = field(default_factory=threading.Lock)


class Refused(Exception):
    """An answer other than 200: not an acknowledgement."""


class Api:
    def __init__(self, service: Service):
        self.base, self.headers = service.uri(), {"Authorization": f"Bearer {service.token}"}

    def call(self, method: str, route: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.base}/api/2.0/{route}", headers=self.headers, timeout=60, **kwargs)

    def ok(self, method: str, route: str, **kwargs) -> dict:
        return answered(self.call(method, route, **kwargs))


def answered(response: requests.Response) -> dict:
    if response.status_code != 200:
        raise Refused(f"{response.status_code} {response.request.method} {response.url}: {response.text[:300]}")
    return response.json() if response.content else {}


def write_until_killed(write, stop: threading.Event, ledger: Ledger) -> None:
    while not stop.is_set():
        try:
            write()
        except requests.RequestException:  # refused, reset, or cut off half way through the answer
            return  # the service is gone: what was not answered in full was never acknowledged
        except Refused as refused:
            if " 429 " not in f" {refused}" and " 503 " not in f" {refused}":  # busy: the client would retry
                with ledger.lock:
                    ledger.errors.append(str(refused))


def metric_writer(api: Api, ledger: Ledger, run_id: str, key: str):
    # Past the last acknowledged step and the batch that may have been written unanswered: no step repeats.
    step = iter(range(max(ledger.metrics.get(key, {0: 0})) + 100, 10**9))

    def write():
        batch = {next(step): random.random() for _ in range(20)}
        api.ok("POST", "mlflow/runs/log-batch", json={"run_id": run_id, "metrics": [
            {"key": key, "value": v, "timestamp": 1, "step": s} for s, v in batch.items()]})
        with ledger.lock:
            ledger.metrics.setdefault(key, {}).update(batch)
    return write


def version_writer(api: Api, ledger: Ledger, model: str, run_id: str):
    def write():
        description = uuid.uuid4().hex
        mv = api.ok("POST", "mlflow/model-versions/create", json={
            "name": model, "source": f"runs:/{run_id}/model", "run_id": run_id, "description": description})
        version = mv["model_version"]
        semver = {t["key"]: t["value"] for t in version.get("tags", [])}["mlreg.version"]
        with ledger.lock:
            if int(version["version"]) in ledger.versions:
                ledger.errors.append(f"version {version['version']} issued twice")
            ledger.versions[int(version["version"])] = (description, semver)
    return write


def file_writer(api: Api, ledger: Ledger, root: str, name: str):
    def write():
        path, content = f"{root}/{name}/{uuid.uuid4().hex}.bin", os.urandom(random.randint(1, 200_000))
        api.ok("PUT", f"mlflow-artifacts/artifacts/{path}", data=content)
        with ledger.lock:
            ledger.files[path] = content
    return write


def multipart_writer(api: Api, ledger: Ledger, root: str):
    def write():
        folder, name = f"{root}/multipart", f"{uuid.uuid4().hex}.bin"
        created = api.ok("POST", f"mlflow-artifacts/mpu/create/{folder}", json={"path": name, "num_parts": 2})
        upload = {"path": f"{folder}/{name}", "parts": {}}
        for credential, size in zip(created["credentials"], PART_BYTES):
            content = os.urandom(size)
            put = requests.put(credential["url"], data=content, timeout=60)
            answered(put)
            with ledger.lock:
                upload["parts"][credential["part_number"]] = (put.headers["ETag"], content)
                ledger.parts[created["upload_id"]] = upload
        parts = [{"part_number": n, "etag": etag} for n, (etag, _) in sorted(upload["parts"].items())]
        api.ok("POST", f"mlflow-artifacts/mpu/complete/{folder}",
               json={"path": name, "upload_id": created["upload_id"], "parts": parts})
        with ledger.lock:
            ledger.parts.pop(created["upload_id"])
            ledger.completed[upload["path"]] = b"".join(c for _, (_, c) in sorted(upload["parts"].items()))
    return write


def history(api: Api, run_id: str, key: str) -> dict[int, float]:
    points, token = {}, None
    while True:
        page = api.ok("GET", "mlflow/metrics/get-history", params={"run_id": run_id, "metric_key": key,
                                                                    "max_results": 25_000, "page_token": token})
        points.update({int(m["step"]): m["value"] for m in page.get("metrics", [])})
        if not (token := page.get("next_page_token")):
            return points


def assert_package(api: Api, model: str, version: int, seed: int) -> None:
    """The version's package: its copy of the model's file, and its manifest beside it."""
    uri = api.ok("GET", "mlflow/model-versions/get-download-uri", params={"name": model, "version": version})
    package = uri["artifact_uri"].split(":/", 1)[1]
    copied = api.call("GET", f"mlflow-artifacts/artifacts/{package}/MLmodel")
    assert (copied.status_code, copied.content) == (200, MODEL_FILE), f"seed {seed}: v{version}'s package lost"
    manifest = api.call("GET", f"mlflow-artifacts/artifacts/{package}.files.json")
    assert manifest.status_code == 200, f"seed {seed}: v{version}'s manifest lost"
    assert manifest.json()["files"][0]["sha256"] == hashlib.sha256(MODEL_FILE).hexdigest(), f"seed {seed}"


def verify(api: Api, ledger: Ledger, model: str, run_id: str, seed: int) -> None:
    assert not ledger.errors, f"seed {seed}: {ledger.errors[:3]}"
    for key, points in ledger.metrics.items():
        stored = history(api, run_id, key)
        lost = {s: v for s, v in points.items() if stored.get(s) != v}
        assert not lost, f"seed {seed}: {len(lost)} acknowledged points of {key} lost"
    for version, (description, semver) in ledger.versions.items():
        mv = api.ok("GET", "mlflow/model-versions/get", params={"name": model, "version": version})["model_version"]
        tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
        assert (mv.get("description"), tags.get("mlreg.version")) == (description, semver), f"seed {seed}: v{version}"
        assert_package(api, model, version, seed)
    for path, content in {**ledger.files, **ledger.completed}.items():
        got = api.call("GET", f"mlflow-artifacts/artifacts/{path}")
        assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(content).digest(), \
            f"seed {seed}: {path} lost"
    for upload_id, upload in list(ledger.parts.items()):  # acknowledged parts of unfinished uploads
        folder, name = upload["path"].rsplit("/", 1)
        parts = [{"part_number": n, "etag": etag} for n, (etag, _) in sorted(upload["parts"].items())]
        done = api.call("POST", f"mlflow-artifacts/mpu/complete/{folder}",
                        json={"path": name, "upload_id": upload_id, "parts": parts})
        assert done.status_code == 200, f"seed {seed}: upload {upload_id}: {done.text}"
        assert api.call("GET", f"mlflow-artifacts/artifacts/{upload['path']}").content == b"".join(
            c for _, (_, c) in sorted(upload["parts"].items()))
        ledger.completed[upload["path"]] = b"".join(c for _, (_, c) in sorted(upload["parts"].items()))
        del ledger.parts[upload_id]
    # The next version gets the next number and a semantic version never given before.
    mv = api.ok("POST", "mlflow/model-versions/create", json={"name": model, "source": f"runs:/{run_id}/model",
                                                              "run_id": run_id, "description": "after restart"})
    number = int(mv["model_version"]["version"])
    semver = {t["key"]: t["value"] for t in mv["model_version"]["tags"]}["mlreg.version"]
    assert number > max(ledger.versions, default=0), f"seed {seed}: version {number} reissued"
    assert semver not in {s for _, s in ledger.versions.values()}, f"seed {seed}: semver {semver} reissued"
    ledger.versions[number] = ("after restart", semver)


def test_kill_9_at_random_moments_loses_no_acknowledged_write(tmp_path):
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    service = start_service(data_dir)
    api = Api(service)
    experiment = api.ok("POST", "mlflow/experiments/create", json={"name": "crash"})["experiment_id"]
    run = api.ok("POST", "mlflow/runs/create", json={"experiment_id": experiment})["run"]["info"]
    run_id, root = run["run_id"], run["artifact_uri"].split(":/", 1)[1]
    api.ok("PUT", f"mlflow-artifacts/artifacts/{root}/model/MLmodel", data=MODEL_FILE)
    model = "crash-model"
    api.ok("POST", "mlflow/registered-models/create", json={"name": model})
    ledger = Ledger()
    try:
        for _ in range(ROUNDS):
            stop = threading.Event()
            writes = [metric_writer(api, ledger, run_id, "a"), metric_writer(api, ledger, run_id, "b"),
                      version_writer(api, ledger, model, run_id), version_writer(api, ledger, model, run_id),
                      file_writer(api, ledger, root, "x"), file_writer(api, ledger, root, "y"),
                      multipart_writer(api, ledger, root)]
            threads = [threading.Thread(target=write_until_killed, args=(w, stop, ledger)) for w in writes]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.5, 3.0))
            service.process.send_signal(signal.SIGKILL)
            service.process.wait()
            stop.set()
            for thread in threads:
                thread.join()
            service = start_service(data_dir, port=service.port)
            api = Api(service)
            verify(api, ledger, model, run_id, seed)
        assert ledger.versions and ledger.files and any(ledger.metrics.values()), f"seed {seed}: nothing written"
    finally:
        stop_service(service)


def logged_objects(data_dir) -> int:
    """Objects' records in the table's log files (mlreg/journal.py)."""
    return sum(log.read_bytes().count(b'{"object"') for log in (data_dir / "wal").glob("*.log"))


def test_a_clean_stop_writes_the_files_of_objects_only_the_log_held(tmp_path):
    """A version's package copy and manifest go through the table's log (one disk commit with the
    version); a stop folds the log away, after writing their files."""
    data_dir = tmp_path / "data"
    service = start_service(data_dir)
    try:
        api = Api(service)
        experiment = api.ok("POST", "mlflow/experiments/create", json={"name": "stop"})["experiment_id"]
        run = api.ok("POST", "mlflow/runs/create", json={"experiment_id": experiment})["run"]["info"]
        root = run["artifact_uri"].split(":/", 1)[1]
        api.ok("PUT", f"mlflow-artifacts/artifacts/{root}/model/MLmodel", data=MODEL_FILE)
        api.ok("POST", "mlflow/registered-models/create", json={"name": "stop-model"})
        for _ in range(3):
            api.ok("POST", "mlflow/model-versions/create", json={
                "name": "stop-model", "source": f"runs:/{run['run_id']}/model", "run_id": run["run_id"]})
        assert logged_objects(data_dir) >= 6  # each version's copy and manifest
    finally:
        stop_service(service)
    assert logged_objects(data_dir) == 0
    service = start_service(data_dir, port=service.port)
    try:
        for version in (1, 2, 3):
            assert_package(Api(service), "stop-model", version, seed=0)
    finally:
        stop_service(service)
