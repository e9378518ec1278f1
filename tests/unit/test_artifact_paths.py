"""Artifact route paths -> S3 keys: only plain relative paths, always inside the caller's project;
and, through the local gateway in-process, a token of one project cannot reach another's objects."""

from __future__ import annotations

import json
from urllib.parse import unquote, urlparse

import pytest

from shared.artifacts.paths import file_name, folder_prefix, listed_folder, object_key, package_uri_path, safe_path
from shared.errors import MlflowError

UNSAFE = [
    "", "..", "../x", "a/../../x", "a/..", "./a", "a/./b", "a//b", "a/", "/etc/passwd", "//x",
    "a\\b", "..\\x", "C:/x", "c:x", "a\x00b", "a\nb", "a#b",
    "%2e%2e/x", "%2E%2E%2Fx", "a%2F..%2F..%2Fx", "%252e%252e/x", "%25252e%25252e/x", "%2fetc", "a%5cb", "a%00b",
    "x/" + "y" * 1100,
]


@pytest.mark.parametrize("path", UNSAFE)
def test_unsafe_paths_are_invalid_parameter_values(path):
    with pytest.raises(MlflowError) as err:
        object_key("p", path)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert err.value.status == 400


SAFE = ["a", "0/abc/artifacts/model/MLmodel", "a b/c-d_e.f", "x/y:z", "ü/名前.txt", "a..b/c.."]


@pytest.mark.parametrize("path", SAFE)
def test_plain_paths_map_below_the_project(path):
    assert object_key("proj-1", path) == f"projects/proj-1/artifacts/{path}"


def test_paths_are_literal_once_the_transport_decoded_them():
    assert safe_path("a%20b/c%2541") == "a%20b/c%2541"
    assert object_key("p", "dir%2Ffile") == "projects/p/artifacts/dir%2Ffile"
    assert object_key("p", "50%off") == "projects/p/artifacts/50%off"


def test_package_uris_escape_the_model_name_and_listings_read_it_back():
    for model in ["plain", "zz%41x", "pct%2541", "a b?c#d", "ü"]:
        uri_path = package_uri_path(model, "1.0.0")
        assert urlparse(f"mlflow-artifacts:/{uri_path}").path == f"/{uri_path}"  # nothing read as query or fragment
        assert unquote(uri_path) == f"packages/{model}/1.0.0"
        assert listed_folder(uri_path) == f"packages/{model}/1.0.0"
        assert listed_folder(uri_path + "/data") == f"packages/{model}/1.0.0/data"
    assert package_uri_path("zz%41x", "1.0.0") == "packages/zz%2541x/1.0.0"
    assert listed_folder("packages") == "packages"
    assert listed_folder("0/r/artifacts/a%41") == "0/r/artifacts/a%41"  # run roots have no escapes


def test_path_parameters_are_decoded_once():
    from shared.http import path_parameters

    event = {"pathParameters": {"project": "p", "path": "0/r/artifacts/report%2541.txt", "tag_key": "a%20b"}}
    assert path_parameters(event) == {"project": "p", "path": "0/r/artifacts/report%41.txt", "tag_key": "a b"}
    assert path_parameters({"pathParameters": None}) == {}


def test_packages_are_read_only_and_live_beside_artifacts():
    assert object_key("p", "packages/m/1.0.0/MLmodel") == "projects/p/packages/m/1.0.0/MLmodel"
    assert folder_prefix("p", "packages") == "projects/p/packages/"
    assert folder_prefix("p", "packages/m/") == "projects/p/packages/m/"
    for path in ["packages/m/1.0.0/MLmodel", "packages/x"]:
        with pytest.raises(MlflowError) as err:
            object_key("p", path, write=True)
        assert err.value.error_code == "PERMISSION_DENIED"
    assert object_key("p", "packagesX/a", write=True) == "projects/p/artifacts/packagesX/a"


def test_folder_prefixes():
    assert folder_prefix("p", None) == "projects/p/artifacts/"
    assert folder_prefix("p", "") == "projects/p/artifacts/"
    assert folder_prefix("p", "0/r/artifacts/") == "projects/p/artifacts/0/r/artifacts/"
    for bad in ["0/../..", ["a", "b"], "a//b/"]:
        with pytest.raises(MlflowError) as err:
            folder_prefix("p", bad)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_project_must_be_a_project_id():
    for project in ["", "../x", "a/b", "A"]:
        with pytest.raises(MlflowError):
            object_key(project, "x")


def test_multipart_file_name_is_the_local_basename():
    assert file_name("/home/me/data/model.bin") == "model.bin"
    assert file_name("C:\\Users\\me\\model.bin") == "model.bin"
    for bad in ["", "/tmp/", "/tmp/..", "x%2F..%2F.."]:
        with pytest.raises(MlflowError):
            object_key("p", f"0/r/artifacts/{file_name(bad)}")


# ---- through the gateway, in-process, with two real projects and their tokens ----------------

@pytest.fixture
def gateway(aws, monkeypatch):
    from mlreg import gateway
    from shared import projects
    from shared.artifacts import store
    from shared.routes import Role

    monkeypatch.delenv("MLREG_S3_ENDPOINT", raising=False)
    store.client.cache_clear()
    tokens = {}
    for p in ("alpha", "beta"):
        projects.create_project(p)
        tokens[p] = projects.create_token(p, Role.ADMIN)

    def call(method, project, path, token_of, body=b""):
        response = gateway.handle(method, f"/projects/{project}/api/2.0/mlflow-artifacts/{path}",
                                  {"Authorization": f"Bearer {tokens[token_of]}", "Host": "localhost"}, body)
        return response["statusCode"], response

    yield call
    store.client.cache_clear()


def test_a_token_of_one_project_cannot_touch_another(gateway):
    assert gateway("PUT", "beta", "artifacts/0/r/artifacts/secret.txt", "beta", b"beta's")[0] == 200
    assert gateway("GET", "beta", "artifacts/0/r/artifacts/secret.txt", "beta")[0] == 200
    for method, path in [("GET", "artifacts/0/r/artifacts/secret.txt"), ("PUT", "artifacts/0/r/artifacts/x"),
                         ("DELETE", "artifacts/0/r/artifacts/secret.txt"),
                         ("GET", "presigned/0/r/artifacts/secret.txt"),
                         ("GET", "artifacts?path=0")]:
        assert gateway(method, "beta", path, "alpha", b"x" if method == "PUT" else b"")[0] == 403
    # Alpha's own routes only reach alpha's keys: the same path there is simply not found.
    status, response = gateway("GET", "alpha", "artifacts/0/r/artifacts/secret.txt", "alpha")
    assert status == 404 and json.loads(response["body"])["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    for sneaky in ["artifacts/../../beta/artifacts/0/r/artifacts/secret.txt",
                   "artifacts/%2e%2e/%2e%2e/beta/artifacts/0/r/artifacts/secret.txt"]:
        assert gateway("GET", "alpha", sneaky, "alpha")[0] == 400
    assert gateway("GET", "beta", "artifacts/0/r/artifacts/secret.txt", "beta")[0] == 200


def test_empty_objects_and_inline_reads(gateway):
    """S3 refuses a ranged GET of an empty object; the download still answers (empty body)."""
    import base64

    assert gateway("PUT", "alpha", "artifacts/e/empty", "alpha")[0] == 200
    status, response = gateway("GET", "alpha", "artifacts/e/empty", "alpha")
    assert status == 200 and base64.b64decode(response["body"]) == b""
    assert gateway("PUT", "alpha", "artifacts/e/data.bin", "alpha", b"\x00\xffabc")[0] == 200
    status, response = gateway("GET", "alpha", "artifacts/e/data.bin", "alpha")
    assert base64.b64decode(response["body"]) == b"\x00\xffabc"
    status, response = gateway("GET", "alpha", "artifacts?path=e", "alpha")
    assert json.loads(response["body"]) == {"files": [{"path": "data.bin", "is_dir": False, "file_size": 5},
                                                      {"path": "empty", "is_dir": False}]}


def test_a_presigned_download_names_the_size_only_above_one_default_range(gateway, monkeypatch):
    """The 3.x client downloads in ranges when the answer has the size, each range read whole into
    memory first: for a file within one range the size is left out, and the client streams the GET."""
    from shared.artifacts import proxy, store

    assert gateway("PUT", "alpha", "artifacts/p/model.bin", "alpha", b"weights")[0] == 200
    status, response = gateway("GET", "alpha", "presigned/p/model.bin", "alpha")
    answer = json.loads(response["body"])
    assert status == 200 and "file_size" not in answer and "/p/model.bin?" in answer["url"]
    monkeypatch.setattr(store, "size_of", lambda key: proxy.RANGED_DOWNLOAD_MIN_BYTES + 1)
    answer = json.loads(gateway("GET", "alpha", "presigned/p/model.bin", "alpha")[1]["body"])
    assert answer["file_size"] == proxy.RANGED_DOWNLOAD_MIN_BYTES + 1
