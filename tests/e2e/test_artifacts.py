"""Artifacts through `mlreg serve` with the real MLflow client: small files through the API, big ones
straight between the client and S3 (presigned multipart uploads, presigned or redirected downloads)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import posixpath
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pytest
import requests
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

MLFLOW3 = int(mlflow.__version__.split(".")[0]) >= 3
MiB = 1024 * 1024


@pytest.fixture
def run(tracking):
    with mlflow.start_run() as active:
        yield active


@pytest.fixture
def api(service):
    def call(method, route, project="default", **kwargs):
        return requests.request(method, f"{service.uri(project)}/api/2.0/{route}",
                                headers={"Authorization": f"Bearer {service.token}"}, **kwargs)
    return call


def raw_request(service, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    """Sends the path exactly as written (requests would normalise `..` away before sending)."""
    conn = http.client.HTTPConnection(service.host, service.port, timeout=30)
    conn.request(method, path, body=body or None, headers={"Authorization": f"Bearer {service.token}"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else {}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def listing(artifact_uri: str, path: str | None = None) -> list[tuple[str, bool, int | None]]:
    """What MlflowClient.list_artifacts answers, without the 3.x client's logged-model lookup."""
    return [(f.path, f.is_dir, f.file_size) for f in get_artifact_repository(artifact_uri).list_artifacts(path)]


def logged_models_served(api) -> bool:
    response = api("POST", "mlflow/logged-models/search", json={"experiment_ids": ["0"]})
    return response.json().get("error_code") != "ENDPOINT_NOT_FOUND"


# ---- small files --------------------------------------------------------------------------------

def test_small_artifacts_round_trip(run, tmp_path):
    src = tmp_path / "src"
    random_file(src / "top.bin", 3000)
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "nested" / "notes.txt").write_text("notes")
    random_file(src / "nested" / "deeper" / "weights.bin", 70_000)
    (src / "nested" / "deeper" / "empty.txt").write_bytes(b"")
    single = random_file(tmp_path / "single.dat", 1234)

    mlflow.log_artifact(str(single))
    mlflow.log_artifact(str(single), "under/here")
    mlflow.log_artifacts(str(src), "folder")
    mlflow.log_text("héllo wörld", "texts/greeting.txt")
    mlflow.log_dict({"a": 1, "b": [1, 2]}, "config.json")
    numpy = pytest.importorskip("numpy")
    mlflow.log_image(numpy.zeros((4, 4, 3), dtype=numpy.uint8), "images/black.png")

    uri = run.info.artifact_uri
    assert listing(uri) == [
        ("config.json", False, len(json.dumps({"a": 1, "b": [1, 2]}, indent=2))),
        ("folder", True, None), ("images", True, None), ("single.dat", False, 1234),
        ("texts", True, None), ("under", True, None)]
    assert listing(uri, "folder") == [("folder/nested", True, None), ("folder/top.bin", False, 3000)]
    assert listing(uri, "folder/nested/deeper") == [
        ("folder/nested/deeper/empty.txt", False, None), ("folder/nested/deeper/weights.bin", False, 70_000)]
    assert listing(uri, "single.dat") == []  # a file, not a folder
    assert listing(uri, "missing") == []

    out = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "out")))
    for rel in ["top.bin", "nested/notes.txt", "nested/deeper/weights.bin", "nested/deeper/empty.txt"]:
        assert (out / "folder" / rel).read_bytes() == (src / rel).read_bytes(), rel
    assert (out / "single.dat").read_bytes() == single.read_bytes()
    assert (out / "under" / "here" / "single.dat").read_bytes() == single.read_bytes()
    assert (out / "texts" / "greeting.txt").read_text(encoding="utf-8") == "héllo wörld"
    assert json.loads((out / "config.json").read_text()) == {"a": 1, "b": [1, 2]}
    assert (out / "images" / "black.png").read_bytes().startswith(b"\x89PNG")
    assert mlflow.artifacts.load_text(f"{uri}/texts/greeting.txt") == "héllo wörld"


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def test_log_model_and_load_model(tracking):
    with mlflow.start_run():
        where = {"name": "echo"} if MLFLOW3 else {"artifact_path": "echo"}
        info = mlflow.pyfunc.log_model(python_model=Echo(), **where)
    assert mlflow.pyfunc.load_model(info.model_uri).predict([1, 2]) == [1, 2]


def test_client_list_and_download_by_run_id(run, tracking, api, tmp_path):
    mlflow.log_text("x", "a/b.txt")
    if MLFLOW3 and not logged_models_served(api):
        pytest.skip("the 3.x client's list_artifacts also calls POST logged-models/search, not served yet")
    run_id = run.info.run_id
    assert [(f.path, f.is_dir) for f in tracking.list_artifacts(run_id)] == [("a", True)]
    assert [(f.path, f.file_size) for f in tracking.list_artifacts(run_id, "a")] == [("a/b.txt", 1)]
    out = tracking.download_artifacts(run_id, "a", str(tmp_path))
    assert (Path(out) / "b.txt").read_text() == "x"


def test_mlflow2_list_route_is_relative_to_the_run_root(run, api):
    mlflow.log_text("x", "a/b/c.txt")
    mlflow.log_text("yy", "a/d.txt")
    listed = api("GET", "mlflow/artifacts/list", params={"run_id": run.info.run_id, "path": "a"}).json()
    assert listed == {"root_uri": run.info.artifact_uri,
                      "files": [{"path": "a/b", "is_dir": True}, {"path": "a/d.txt", "is_dir": False, "file_size": 2}]}
    assert api("GET", "mlflow/artifacts/list", params={"run_id": run.info.run_id, "path": "zz"}).json() == {
        "root_uri": run.info.artifact_uri}
    missing = api("GET", "mlflow/artifacts/list", params={"run_id": "0" * 32})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_delete_artifacts(run):
    mlflow.log_text("1", "keep.txt")
    mlflow.log_text("2", "gone/a.txt")
    mlflow.log_text("3", "gone/sub/b.txt")
    mlflow.log_text("4", "gonex.txt")  # shares the prefix "gone" but is not below it
    repo = get_artifact_repository(run.info.artifact_uri)
    repo.delete_artifacts("gone")
    assert listing(run.info.artifact_uri) == [("gonex.txt", False, 1), ("keep.txt", False, 1)]


def test_direct_presigned_upload_and_download_urls(run, api):
    up = api("POST", "mlflow/artifacts/presigned-upload-url", json={"run_id": run.info.run_id, "path": "direct/m.json"})
    assert up.status_code == 200, up.text
    body = up.json()
    assert body["headers"] == {"Content-Type": "application/json"}
    assert requests.put(body["presigned_url"], data=b'{"k": 1}', headers=body["headers"]).status_code == 200
    assert listing(run.info.artifact_uri, "direct") == [("direct/m.json", False, 8)]
    down = api("POST", "mlflow/artifacts/presigned-download-url", json={"run_id": run.info.run_id,
                                                                        "path": "direct/m.json", "expiration": 60})
    assert down.json()["file_size"] == 8
    assert requests.get(down.json()["presigned_url"]).content == b'{"k": 1}'
    for bad in [{"run_id": run.info.run_id, "path": "../x"}, {"path": "x"},
                {"run_id": run.info.run_id, "model_id": "m-1", "path": "x"},
                {"run_id": run.info.run_id, "path": "x", "expiration": 0}]:
        refused = api("POST", "mlflow/artifacts/presigned-upload-url", json=bad)
        assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_PARAMETER_VALUE", bad


@pytest.mark.skipif(not MLFLOW3, reason="logged models are an MLflow 3 feature")
def test_presigned_upload_url_for_a_logged_model(run, tracking, api):
    if not logged_models_served(api):
        pytest.skip("logged models are not served yet")
    model = tracking.create_logged_model(experiment_id=run.info.experiment_id, name="m")
    up = api("POST", "mlflow/artifacts/presigned-upload-url", json={"model_id": model.model_id, "path": "weights.bin"})
    assert up.status_code == 200, up.text
    assert requests.put(up.json()["presigned_url"], data=b"w" * 10, headers=up.json()["headers"]).status_code == 200
    assert listing(model.artifact_location) == [("weights.bin", False, 10)]


# ---- big files ----------------------------------------------------------------------------------

def _spy(monkeypatch, cls, name: str) -> list:
    calls = []
    original = getattr(cls, name)

    def spy(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, spy)
    return calls


@pytest.mark.parametrize("size", [12 * MiB, 60 * MiB + 123])
def test_multipart_upload_and_big_download_round_trip(run, service, monkeypatch, tmp_path, size):
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(5 * MiB))
    creates = _spy(monkeypatch, HttpArtifactRepository, "create_multipart_upload")
    presigned = _spy(monkeypatch, HttpArtifactRepository, "_get_presigned_download_url") if MLFLOW3 else None
    ranged = _spy(monkeypatch, HttpArtifactRepository, "_multipart_download") if MLFLOW3 else None
    big = random_file(tmp_path / "big.bin", size)

    mlflow.log_artifact(str(big), "models")
    assert len(creates) == 1 and creates[0][1] == -(-size // (10 * 1024 * 1024))  # num_parts of 10 MB chunks
    assert listing(run.info.artifact_uri, "models") == [("models/big.bin", False, size)]

    out = mlflow.artifacts.download_artifacts(artifact_uri=f"{run.info.artifact_uri}/models/big.bin",
                                              dst_path=str(tmp_path / "out"))
    assert sha256(Path(out)) == sha256(big)
    if MLFLOW3:  # server-info advertises multipart downloads: the 3.x client asks for a presigned URL,
        # whose answer leaves out the size of a file within one default range: the GET is streamed
        assert len(presigned) == 1 and ranged == []

    # The plain GET (what 2.x clients use) answers a 307 to a presigned S3 URL for big files.
    root = run.info.artifact_uri.split(":/", 1)[1]
    path = f"/projects/default/api/2.0/mlflow-artifacts/artifacts/{root}/models/big.bin"
    conn = http.client.HTTPConnection(service.host, service.port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {service.token}"})
    response = conn.getresponse()
    response.read()
    assert response.status == 307
    location = response.getheader("Location")
    assert "X-Amz-Expires=900" in location and "/models/big.bin?" in location
    assert "/projects/default/artifacts/" in location


def test_big_put_without_multipart_gets_413_naming_the_settings(run, monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", raising=False)
    monkeypatch.delenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", raising=False)
    big = random_file(tmp_path / "too-big.bin", 12 * MiB)
    with pytest.raises(Exception) as err:
        mlflow.log_artifact(str(big))
    message = str(err.value)
    assert "413" in message and "PAYLOAD_TOO_LARGE" in message
    assert "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD=true" in message
    assert "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE=" in message


def test_files_just_under_5_mib_need_a_threshold_below_lambdas_limit(run, monkeypatch, tmp_path):
    """Lambda takes at most 6 MB of event, and the body travels base64-encoded: a PUT over ~4.5 MiB
    cannot pass. A 4 MiB threshold sends such files as one presigned part (S3 accepts a last part
    under 5 MiB); with the 5 MiB threshold they fall between the two paths and get the 413."""
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    middle = random_file(tmp_path / "middle.bin", 4 * MiB + 700 * 1024)
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(5 * MiB))
    with pytest.raises(Exception, match="413"):
        mlflow.log_artifact(str(middle), "five")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(4 * MiB))
    creates = _spy(monkeypatch, HttpArtifactRepository, "create_multipart_upload")
    mlflow.log_artifact(str(middle), "four")
    assert len(creates) == 1 and creates[0][1] == 1
    out = mlflow.artifacts.download_artifacts(artifact_uri=f"{run.info.artifact_uri}/four/middle.bin",
                                              dst_path=str(tmp_path / "out"))
    assert sha256(Path(out)) == sha256(middle)


def test_multipart_abort_and_bad_parts(run, api):
    root = run.info.artifact_uri.split(":/", 1)[1]
    created = api("POST", f"mlflow-artifacts/mpu/create/{root}", json={"path": "/local/x.bin", "num_parts": 2}).json()
    assert [c["part_number"] for c in created["credentials"]] == [1, 2]
    assert all("uploadId=" in c["url"] and "/x.bin?" in c["url"] for c in created["credentials"])
    bad = api("POST", f"mlflow-artifacts/mpu/complete/{root}",
              json={"path": "/local/x.bin", "upload_id": created["upload_id"],
                    "parts": [{"part_number": 1, "etag": "nope"}]})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    for _ in range(2):  # aborting is idempotent (clients retry)
        aborted = api("POST", f"mlflow-artifacts/mpu/abort/{root}",
                      json={"path": "/local/x.bin", "upload_id": created["upload_id"]})
        assert aborted.status_code == 200 and aborted.json() == {}
    assert listing(run.info.artifact_uri) == []


# ---- refusals -----------------------------------------------------------------------------------

TRAVERSALS = ["../x", "0/../../x", "..%2F..%2Fx", "%2e%2e/%2e%2e/x", "%252e%252e/x", "a//b", "a%5Cb", "a/./b",
              "%2Fetc%2Fpasswd"]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_refused(service, path):
    base = "/projects/default/api/2.0/mlflow-artifacts"
    for method, route, body in [("GET", f"artifacts/{path}", b""), ("PUT", f"artifacts/{path}", b"x"),
                                ("DELETE", f"artifacts/{path}", b""), ("GET", f"presigned/{path}", b""),
                                ("GET", f"artifacts?path={path}", b""),
                                ("POST", f"mpu/create/{path}", b'{"path": "f.bin", "num_parts": 1}')]:
        status, body_json = raw_request(service, method, f"{base}/{route}", body)
        assert (status, body_json.get("error_code")) == (400, "INVALID_PARAMETER_VALUE"), (method, route)
    status, body_json = raw_request(service, "POST", f"{base}/mpu/create/0/r/artifacts",
                                    json.dumps({"path": "x%2F..%2F..%2Fy", "num_parts": 1}).encode())
    assert status == 400


def test_packages_are_read_only(service):
    base = "/projects/default/api/2.0/mlflow-artifacts"
    for method, route, body in [("PUT", "artifacts/packages/m/1.0.0/MLmodel", b"x"),
                                ("DELETE", "artifacts/packages/m/1.0.0", b""),
                                ("POST", "mpu/create/packages/m/1.0.0", b'{"path": "f.bin", "num_parts": 1}')]:
        assert raw_request(service, method, f"{base}/{route}", body) == (403, {
            "error_code": "PERMISSION_DENIED",
            "message": "Model packages are read-only: register a model version to create one"})
    assert raw_request(service, "GET", f"{base}/artifacts/packages/m/9.9.9/MLmodel")[0] == 404


def test_cross_project_is_refused(run, service, api):
    """The service keeps its state in its own process, so the second project is only a name here; the
    in-process gateway test in tests/unit/test_artifact_paths.py uses two real projects and tokens."""
    mlflow.log_text("secret", "s.txt")
    rel = posixpath.join(run.info.artifact_uri.split(":/", 1)[1], "s.txt")
    assert api("GET", f"mlflow-artifacts/artifacts/{rel}").content == b"secret"
    for method, route in [("GET", f"mlflow-artifacts/artifacts/{rel}"), ("GET", "mlflow-artifacts/artifacts"),
                          ("PUT", f"mlflow-artifacts/artifacts/{rel}"), ("GET", f"mlflow-artifacts/presigned/{rel}"),
                          ("GET", "mlflow/artifacts/list")]:
        response = api(method, route, project="other", params={"run_id": run.info.run_id})
        assert response.status_code in (401, 403), (method, route)
