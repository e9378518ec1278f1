"""The signature check of the emulator's AWS endpoint (mlreg/signatures.py) on header-signed
requests, as botocore signs them; presigned URLs are exercised end to end in
tests/e2e/test_presigned_urls.py."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mlreg.signatures import Refused, Signature, _read_payload

KEY_ID, SECRET = "mlreg-local", "s3cr3t"


def signed_environ(method: str, url: str, body: bytes, secret: str = SECRET) -> dict:
    request = AWSRequest(method=method, url=url, data=body,
                         headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
    S3SigV4Auth(Credentials(KEY_ID, secret), "s3", "us-east-1").add_auth(request)
    path = url.split("127.0.0.1:9000", 1)[1]
    environ = {"REQUEST_METHOD": method, "RAW_URI": path, "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body))}
    environ.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in request.headers.items()})
    environ["HTTP_HOST"] = "127.0.0.1:9000"
    return environ


def check(environ: dict) -> None:
    signature = Signature(environ)
    _read_payload(environ, signature)
    signature.check(KEY_ID, SECRET, time.time())


def test_a_header_signed_put_passes_and_its_body_stays_readable():
    environ = signed_environ("PUT", "http://127.0.0.1:9000/bucket/a%20b/report%2541.txt?tagging=", b"hello")
    check(environ)
    assert environ["wsgi.input"].read() == b"hello"


@pytest.mark.parametrize("change, code", [
    (lambda e: e.update({"wsgi.input": io.BytesIO(b"HELLO")}), "XAmzContentSHA256Mismatch"),
    (lambda e: e.update({"REQUEST_METHOD": "DELETE"}), "SignatureDoesNotMatch"),
    (lambda e: e.update({"RAW_URI": "/bucket/other.txt"}), "SignatureDoesNotMatch"),
    (lambda e: e.update({"HTTP_X_AMZ_DATE": "20200101T000000Z"}), "RequestTimeTooSkewed"),
    (lambda e: e.pop("HTTP_AUTHORIZATION"), "AccessDenied"),
])
def test_an_edited_header_signed_request_is_refused(change, code):
    environ = signed_environ("PUT", "http://127.0.0.1:9000/bucket/key.txt", b"hello")
    change(environ)
    with pytest.raises(Refused) as refused:
        check(environ)
    assert refused.value.code == code


def test_another_secret_is_refused():
    with pytest.raises(Refused) as refused:
        check(signed_environ("GET", "http://127.0.0.1:9000/bucket/key.txt", b"", secret="guessed"))
    assert refused.value.code == "SignatureDoesNotMatch"


def test_the_emulators_dynamodb_calls_go_unsigned_and_presigned_urls_signed():
    """moto answers the handlers' DynamoDB calls in-process and checks no signature: they skip
    SigV4. A presigned URL (which a client follows to the moto server, which checks it) is signed."""
    import boto3
    import botocore

    from mlreg.emulator import unsigned_in_process

    session = boto3.session.Session(aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name="us-east-1")
    session.events.register("choose-signer", unsigned_in_process)
    assert unsigned_in_process(signature_version="s3v4-query") is None
    ddb = session.client("dynamodb", endpoint_url="http://127.0.0.1:9000")
    url = ddb.generate_presigned_url("describe_table", Params={"TableName": "t"}, ExpiresIn=60)
    assert "X-Amz-Signature=" in url and f"X-Amz-Credential={KEY_ID}" in url
    sent = []

    class Captured(Exception):
        """The request, stopped before it leaves."""

    def capture(request, **_):
        sent.append(request)
        raise Captured

    ddb.meta.events.register("before-send", capture)
    with pytest.raises(Captured):
        ddb.describe_table(TableName="t")
    assert sent and "Authorization" not in sent[0].headers and unsigned_in_process(signature_version="v4") is botocore.UNSIGNED
