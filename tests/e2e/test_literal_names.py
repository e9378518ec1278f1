"""Names and paths with `%` in them round-trip literally: what the client sent is what is stored,
listed and loaded, and the URIs mlreg hands out escape what needs escaping.

The MLflow client puts artifact paths into URLs without escaping them (and `requests` then turns
`%41` into `A`), and it decodes the names it lists until they stop changing: a file named
`report%41.txt` can never be uploaded or listed literally through it. Names travel literally where
the client sends them in JSON or a query string (model names, multipart and presigned uploads), and
where the client is given a URI (model packages); a careful HTTP client that escapes its URL paths
gets every name literally."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from urllib.parse import quote

import mlflow
import pytest
import requests

from tests.e2e.test_registry import log_pyfunc, predict


def suffix() -> str:
    return uuid.uuid4().hex[:6]


def rest(service, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{service.uri()}/api/2.0/{path}", timeout=60,
                            headers={"Authorization": f"Bearer {service.token}"}, **kwargs)


def listed(service, path: str) -> list[str]:
    response = rest(service, "GET", "mlflow-artifacts/artifacts", params={"path": path})
    assert response.status_code == 200, response.text
    return [f["path"] for f in response.json().get("files", [])]


def test_models_named_with_percent_escapes_load_their_own_files(tracking):
    """`models:/zz%41x/1` is model `zz%41x`, never `zzAx`; `pct%2541` has its files too."""
    tail = suffix()
    names = {f"zz%41x-{tail}": 1, f"zzAx-{tail}": 2, f"pct%2541-{tail}": 3, f"50%off {tail}": 4}
    for name, n in names.items():
        with mlflow.start_run():
            log_pyfunc(n, registered_model_name=name)
    for name, n in names.items():
        assert [m.name for m in tracking.search_registered_models(f"name = '{name}'")] == [name]
        assert tracking.get_model_version(name, "1").name == name
        uri = tracking.get_model_version_download_uri(name, "1")
        # the model's id (no escapes), the semver, the create attempt
        assert re.fullmatch(r"mlflow-artifacts:/packages/[0-9a-f]{32}/1\.0\.0~[0-9a-f]{8}", uri)
        assert predict(f"models:/{name}/1") == [1 + n, 2 + n], name


def test_downloading_a_package_by_its_uri_gets_that_models_files(tracking, tmp_path):
    tail = suffix()
    for name in (f"pct%2541-{tail}", f"pctA-{tail}"):
        run = tracking.create_run(tracking.create_experiment(f"src {name}"))
        tracking.log_text(run.info.run_id, name, "model/whose.txt")
        tracking.create_registered_model(name)
        tracking.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    for name in (f"pct%2541-{tail}", f"pctA-{tail}"):
        out = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / suffix())))
        assert (out / "whose.txt").read_text() == name


def test_artifact_names_the_client_can_send_round_trip(tracking, tmp_path):
    """`%` not followed by two hex digits survives the client's URLs: stored, listed, downloaded."""
    run = tracking.create_run(tracking.create_experiment(f"pct-{suffix()}"))
    for name in ("50%off.txt", "rate 5%.csv", "100%"):
        (tmp_path / name).write_text(name)
        tracking.log_artifact(run.info.run_id, str(tmp_path / name), "d%zz")
    listed_names = sorted(f.path for f in tracking.list_artifacts(run.info.run_id, "d%zz"))
    assert listed_names == ["d%zz/100%", "d%zz/50%off.txt", "d%zz/rate 5%.csv"]
    (tmp_path / "out").mkdir()
    out = Path(tracking.download_artifacts(run.info.run_id, "d%zz", str(tmp_path / "out")))
    assert sorted(p.name for p in out.iterdir()) == ["100%", "50%off.txt", "rate 5%.csv"]
    assert (out / "50%off.txt").read_text() == "50%off.txt"


def test_escaped_url_paths_are_decoded_once(service, tracking):
    """A client that escapes its URL paths (as an HTTP client should) gets every name literally:
    `report%2541.txt` in the URL is the file `report%41.txt`, next to a distinct `reportA.txt`."""
    run = tracking.create_run(tracking.create_experiment(f"escaped-{suffix()}"))
    root = run.info.artifact_uri.split(":/", 1)[1]
    for name, body in (("report%41.txt", b"literal"), ("reportA.txt", b"plain"), ("sp ace%2F.txt", b"odd")):
        put = rest(service, "PUT", f"mlflow-artifacts/artifacts/{root}/{quote(name)}", data=body)
        assert put.status_code == 200, put.text
    assert listed(service, root) == ["report%41.txt", "reportA.txt", "sp ace%2F.txt"]
    for name, body in (("report%41.txt", b"literal"), ("reportA.txt", b"plain"), ("sp ace%2F.txt", b"odd")):
        assert rest(service, "GET", f"mlflow-artifacts/artifacts/{root}/{quote(name)}").content == body
    mlflow2_listing = rest(service, "GET", "mlflow/artifacts/list", params={"run_id": run.info.run_id}).json()
    assert [f["path"] for f in mlflow2_listing["files"]] == ["report%41.txt", "reportA.txt", "sp ace%2F.txt"]
    assert rest(service, "DELETE", f"mlflow-artifacts/artifacts/{root}/{quote('report%41.txt')}").status_code == 200
    assert listed(service, root) == ["reportA.txt", "sp ace%2F.txt"]


def test_names_sent_in_request_bodies_are_literal(service, tracking, monkeypatch, tmp_path):
    """Multipart uploads name the file in JSON, presigned uploads too: `weights%41.bin` stays so."""
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1024")
    run = tracking.create_run(tracking.create_experiment(f"bodies-{suffix()}"))
    root = run.info.artifact_uri.split(":/", 1)[1]
    big = tmp_path / "weights%41.bin"
    big.write_bytes(b"w" * 4096)
    tracking.log_artifact(run.info.run_id, str(big), "parts")
    up = rest(service, "POST", "mlflow/artifacts/presigned-upload-url",
              json={"run_id": run.info.run_id, "path": "direct/notes%2541.json"})
    assert up.status_code == 200, up.text
    assert requests.put(up.json()["presigned_url"], data=b"{}", headers=up.json()["headers"]).status_code == 200
    assert listed(service, f"{root}/parts") == ["weights%41.bin"]
    assert listed(service, f"{root}/direct") == ["notes%2541.json"]
    assert rest(service, "GET", f"mlflow-artifacts/artifacts/{root}/parts/{quote('weights%41.bin')}").content == \
        b"w" * 4096


@pytest.mark.parametrize("path", ["%252e%252e/x", "a%252F..%252F..%252Fb", "%25252e%25252e"])
def test_no_level_of_decoding_hides_a_traversal(service, path):
    """MLflow's clients decode listed names until stable: a name that would decode to `..` is refused."""
    run_root = "0/abc/artifacts"
    response = rest(service, "PUT", f"mlflow-artifacts/artifacts/{run_root}/{path}", data=b"x")
    assert response.status_code == 400 and response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert json.loads(rest(service, "GET", "mlflow-artifacts/artifacts", params={"path": path}).text)[
        "error_code"] == "INVALID_PARAMETER_VALUE"
