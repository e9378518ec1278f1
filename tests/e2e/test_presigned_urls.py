"""The local S3 endpoint checks presigned URLs as S3 does: an edited method, key, query or expiry,
an expired URL, an unsigned or foreign-signed request are refused with S3's 403 error XML, and reach
nothing; the same endpoint's table takes only the emulator's own key. (The client flows that use
presigned URLs, multipart uploads, presigned downloads and 307 redirects, run with both client lines
in test_artifacts.py.)"""

from __future__ import annotations

import hashlib
import os
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import pytest
import requests
from botocore.config import Config

MiB = 1024 * 1024
pytestmark = pytest.mark.client_free  # raw HTTP to the URLs (the client only makes their run): once is enough


@pytest.fixture
def api(service):
    def call(method, route, **kwargs):
        return requests.request(method, f"{service.uri()}/api/2.0/{route}", timeout=60,
                                headers={"Authorization": f"Bearer {service.token}"}, **kwargs)
    return call


@pytest.fixture
def stored(api, tracking):
    """A run with one small artifact, and a presigned GET URL for it."""
    run = tracking.create_run(tracking.create_experiment(f"presigned-{time.time_ns()}"))
    root = run.info.artifact_uri.split(":/", 1)[1]
    assert api("PUT", f"mlflow-artifacts/artifacts/{root}/secret.txt", data=b"secret").status_code == 200
    url = api("POST", "mlflow/artifacts/presigned-download-url",
              json={"run_id": run.info.run_id, "path": "secret.txt"}).json()["presigned_url"]
    return run, root, url


def refused(response: requests.Response, code: str, status: int = 403) -> bool:
    return response.status_code == status and f"<Code>{code}</Code>" in response.text


def edited(url: str, path: str | None = None, **query: str) -> str:
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    params.update(query)
    return urlunsplit(parts._replace(path=path or parts.path, query=urlencode(params, safe="/")))


def test_the_url_as_given_works(stored):
    _, _, url = stored
    assert requests.get(url, timeout=30).content == b"secret"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST", "HEAD"])
def test_another_method_is_refused(stored, api, method):
    run, root, url = stored
    response = requests.request(method, url, data=b"overwritten" if method in ("PUT", "POST") else None, timeout=30)
    assert response.status_code == 403
    if method != "HEAD":
        assert refused(response, "SignatureDoesNotMatch")
    assert api("GET", f"mlflow-artifacts/artifacts/{root}/secret.txt").content == b"secret"


def test_another_key_or_a_listing_is_refused(stored):
    _, _, url = stored
    path = urlsplit(url).path
    bucket = path.split("/")[1]
    for other in (path.replace("secret.txt", "other.txt"), path.replace("/projects/default/", "/projects/other/"),
                  f"/{bucket}/projects/default/packages/m/1.0.0/MLmodel"):
        assert refused(requests.get(edited(url, path=other), timeout=30), "SignatureDoesNotMatch"), other
    listing = edited(url, path=f"/{bucket}", **{"list-type": "2", "prefix": "projects/"})
    assert refused(requests.get(listing, timeout=30), "SignatureDoesNotMatch")


def test_an_edited_expiry_or_query_is_refused(stored):
    _, _, url = stored
    assert refused(requests.get(edited(url, **{"X-Amz-Expires": "604800"}), timeout=30), "SignatureDoesNotMatch")
    assert refused(requests.get(edited(url, **{"response-content-type": "text/html"}), timeout=30),
                   "SignatureDoesNotMatch")
    assert refused(requests.get(edited(url, **{"X-Amz-Expires": "999999"}), timeout=30),
                   "AuthorizationQueryParametersError", 400)


def test_an_expired_url_is_refused(api, stored):
    run, _, _ = stored
    url = api("POST", "mlflow/artifacts/presigned-download-url",
              json={"run_id": run.info.run_id, "path": "secret.txt", "expiration": 1}).json()["presigned_url"]
    time.sleep(2.5)  # the URL's second has passed (its signing time is in whole seconds)
    response = requests.get(url, timeout=30)
    assert refused(response, "AccessDenied") and "Request has expired" in response.text


def test_unsigned_or_foreign_signed_requests_are_refused(stored, service):
    _, _, url = stored
    parts = urlsplit(url)
    bare = urlunsplit(parts._replace(query=""))
    assert refused(requests.get(bare, timeout=30), "AccessDenied")
    assert refused(requests.put(bare, data=b"x", timeout=30), "AccessDenied")
    bucket, key = parts.path.split("/", 2)[1:]
    endpoint = f"{parts.scheme}://{parts.netloc}"
    for key_id, secret in (("mlreg-local", "guessed"), ("local", "local")):
        forger = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                              region_name="us-east-1", config=Config(signature_version="s3v4",
                                                                     s3={"addressing_style": "path"}))
        forged = forger.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
        response = requests.get(forged, timeout=30)
        assert response.status_code == 403 and ("SignatureDoesNotMatch" in response.text
                                                or "InvalidAccessKeyId" in response.text)
        with pytest.raises(Exception, match="403|Forbidden|SignatureDoesNotMatch|InvalidAccessKeyId"):
            forger.put_object(Bucket=bucket, Key=key, Body=b"overwritten")
    sigv2 = f"{bare}?AWSAccessKeyId=mlreg-local&Expires={int(time.time()) + 60}&Signature=abc"
    assert refused(requests.get(sigv2, timeout=30), "AccessDenied")
    assert requests.get(url, timeout=30).content == b"secret"


def test_a_presigned_put_is_bound_to_its_key_and_content_type(api, stored):
    run, root, _ = stored
    up = api("POST", "mlflow/artifacts/presigned-upload-url", json={"run_id": run.info.run_id, "path": "up.json"})
    url, headers = up.json()["presigned_url"], up.json()["headers"]
    assert refused(requests.put(url, data=b"{}", headers={"Content-Type": "text/html"}, timeout=30),
                   "SignatureDoesNotMatch")
    assert refused(requests.put(edited(url, path=urlsplit(url).path.replace("up.json", "secret.txt")), data=b"{}",
                                headers=headers, timeout=30), "SignatureDoesNotMatch")
    assert requests.put(url, data=b"{}", headers=headers, timeout=30).status_code == 200
    assert api("GET", f"mlflow-artifacts/artifacts/{root}/up.json").content == b"{}"
    assert api("GET", f"mlflow-artifacts/artifacts/{root}/secret.txt").content == b"secret"


def test_a_part_url_is_bound_to_its_upload_and_part(api, stored):
    _, root, _ = stored
    created = api("POST", f"mlflow-artifacts/mpu/create/{root}", json={"path": "p.bin", "num_parts": 2}).json()
    first = created["credentials"][0]["url"]
    assert refused(requests.put(edited(first, partNumber="2"), data=b"x", timeout=30), "SignatureDoesNotMatch")
    assert refused(requests.put(edited(first, uploadId="other"), data=b"x", timeout=30), "SignatureDoesNotMatch")
    assert requests.put(first, data=b"x", timeout=30).status_code == 200


def test_a_part_put_answers_as_s3_whichever_way_it_is_served(api, stored):
    """A plain part PUT (answered beside moto's app: mlreg/part_puts.py) and one with a header it leaves
    to moto (CORS's Origin) both give S3's ETag, the part's MD5, with the same headers; the completed
    object is both parts; a part of an upload that is gone is NoSuchUpload."""
    _, root, _ = stored
    created = api("POST", f"mlflow-artifacts/mpu/create/{root}", json={"path": "both.bin", "num_parts": 2}).json()
    (first, second), parts = (c["url"] for c in created["credentials"]), (os.urandom(5 * MiB), os.urandom(1000))
    plain = requests.put(first, data=parts[0], timeout=30)
    by_moto = requests.put(second, data=parts[1], headers={"Origin": "http://localhost:3000"}, timeout=30)
    for answer, part in zip((plain, by_moto), parts):
        assert answer.status_code == 200 and answer.content == b""
        assert answer.headers["ETag"] == f'"{hashlib.md5(part).hexdigest()}"'
    assert {"etag", "last-modified", "x-amzn-requestid"} <= {name.lower() for name in plain.headers}
    completed = api("POST", f"mlflow-artifacts/mpu/complete/{root}", json={
        "path": "both.bin", "upload_id": created["upload_id"],
        "parts": [{"part_number": n, "etag": a.headers["ETag"]} for n, a in enumerate((plain, by_moto), 1)]})
    assert completed.status_code == 200
    assert api("GET", f"mlflow-artifacts/artifacts/{root}/both.bin").content == b"".join(parts)
    assert refused(requests.put(first, data=b"late", timeout=30), "NoSuchUpload", 404)


def test_motos_control_routes_are_not_served(stored):
    _, _, url = stored
    parts = urlsplit(url)
    reset = requests.post(f"{parts.scheme}://{parts.netloc}/moto-api/reset", timeout=30)
    assert refused(reset, "AccessDenied")
    assert requests.get(url, timeout=30).content == b"secret"  # nothing was reset


def test_the_emulators_table_takes_only_its_own_key(service):
    """The endpoint also serves the table (for `mlreg token ...`): tokens cannot be written beside it."""
    import json

    from botocore.exceptions import ClientError

    info = json.loads((service.data_dir / "endpoint.json").read_text())
    for key_id, secret in (("local", "local"), ("mlreg-local", "guessed")):
        ddb = boto3.client("dynamodb", endpoint_url=info["dynamodb_endpoint"], region_name=info["region"],
                           aws_access_key_id=key_id, aws_secret_access_key=secret)
        with pytest.raises(ClientError) as err:
            ddb.put_item(TableName=info["table"], Item={"pk": {"S": "P#default#T#forged"}, "sk": {"S": "#T"}})
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    unsigned = requests.post(info["dynamodb_endpoint"], data="{}", headers={
        "X-Amz-Target": "DynamoDB_20120810.ListTables", "Content-Type": "application/x-amz-json-1.0"}, timeout=30)
    assert unsigned.status_code == 403
