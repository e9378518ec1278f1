"""The emulator's AWS endpoint (moto's server: S3 for presigned URLs, DynamoDB for the `mlreg`
command) checks every request as AWS does: a Signature Version 4 signature, in a presigned URL's
query or an Authorization header, made with this installation's key, over the method, the path, the
query, the signed headers and the body, and not expired. Anything else is refused with S3's error
XML, so an edited or expired presigned URL, or a request from someone who cannot read the data
directory, reads and writes nothing. (moto checks none of this.)

The key is the emulator's own: `mlreg serve` creates it in the data directory and signs with it
(presigned URLs included), `mlreg token|project` read it there. The handlers' own calls are answered
in-process and never reach this server. moto's control routes (`/moto-api`, which can reset every
service) are refused."""

from __future__ import annotations


import hashlib
import hmac
import io
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote

from botocore.utils import normalize_url_path

KEY_ID = "mlreg-local"
KEY_FILE = "emulator-key"  # in the data directory: the secret of KEY_ID
ALGORITHM = "AWS4-HMAC-SHA256"


def credentials(data_dir: Path) -> dict[str, str]:
    """What a local tool (`mlreg token|project`, `mlreg smoke`) signs the emulator's requests with."""
    return {"aws_access_key_id": KEY_ID, "aws_secret_access_key": (data_dir / KEY_FILE).read_text().strip()}
MAX_EXPIRES = 604800  # a week: S3's limit for presigned URLs
CLOCK_SKEW = 900  # seconds S3 allows between a signed request's time and its own
SIGNATURE_MISMATCH = ("SignatureDoesNotMatch", "The request signature we calculated does not match the signature "
                      "you provided. Check your key and signing method.")


class Refused(Exception):
    def __init__(self, code: str, message: str, status: int = 403):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _headers(environ: dict) -> dict[str, str]:
    found = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            found[name.replace("_", "-").lower()] = environ[name]
    return found


def _authorization(header: str) -> dict[str, str]:
    """`AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...` as a dict."""
    fields = header[len(ALGORITHM):].split(",")
    return dict(f.strip().split("=", 1) for f in fields if "=" in f)


class Signature:
    """The parts of a SigV4 signature, from a presigned URL's query or an Authorization header."""

    def __init__(self, environ: dict):
        self.method = environ["REQUEST_METHOD"]
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        self.path, _, query = raw.partition("?")
        self.pairs = parse_qsl(query, keep_blank_values=True)
        self.headers = _headers(environ)
        params = dict(self.pairs)
        header = self.headers.get("authorization", "")
        if "X-Amz-Signature" in params:
            if params.get("X-Amz-Algorithm") != ALGORITHM:
                raise Refused("AuthorizationQueryParametersError", "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
                              400)
            self.credential, self.signature = params.get("X-Amz-Credential", ""), params["X-Amz-Signature"]
            self.signed_headers, self.when = params.get("X-Amz-SignedHeaders", ""), params.get("X-Amz-Date", "")
            self.expires: int | None = _expires(params.get("X-Amz-Expires"))
            self.payload = "UNSIGNED-PAYLOAD"
            self.pairs = [(k, v) for k, v in self.pairs if k != "X-Amz-Signature"]
        elif header.startswith(ALGORITHM):
            fields = _authorization(header)
            self.credential, self.signature = fields.get("Credential", ""), fields.get("Signature", "")
            self.signed_headers, self.when = fields.get("SignedHeaders", ""), self.headers.get("x-amz-date", "")
            self.expires = None
            self.payload = self.headers.get("x-amz-content-sha256", "")
        elif "Signature" in params or header.startswith("AWS "):
            raise Refused("AccessDenied", "Signature Version 2 is not accepted here; sign with Signature Version 4")
        else:
            raise Refused("AccessDenied", "Access Denied")
        self.key_id, self.date, self.region, self.service, *_ = self.credential.split("/") + [""] * 5

    def canonical_request(self) -> str:
        names = self.signed_headers.split(";")
        if "host" not in names:
            raise Refused("AccessDenied", "There were headers present in the request which were not signed")
        canonical_headers = "".join(f"{name}:{' '.join(self.headers.get(name, '').split())}\n" for name in names)
        query = "&".join(f"{k}={v}" for k, v in sorted((_encode(k), _encode(v)) for k, v in self.pairs))
        # S3 signs the path as sent; every other service its normalised path, encoded once more.
        path = quote(unquote(self.path) if self.service == "s3" else normalize_url_path(self.path), safe="/~")
        return "\n".join([self.method, path, query, canonical_headers, self.signed_headers, self.payload])

    def check(self, key_id: str, secret: str, now: float) -> None:
        if self.key_id != key_id:
            raise Refused("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        try:
            signed_at = datetime.strptime(self.when, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            raise Refused("AccessDenied", "The request has no valid X-Amz-Date") from None
        if self.expires is not None and now > signed_at + self.expires:
            raise Refused("AccessDenied", "Request has expired")
        if self.expires is None and abs(now - signed_at) > CLOCK_SKEW:
            raise Refused("RequestTimeTooSkewed", "The difference between the request time and the current time "
                                                  "is too large.")
        scope = "/".join([self.date, self.region, self.service, "aws4_request"])
        digest = hashlib.sha256(self.canonical_request().encode()).hexdigest()
        to_sign = "\n".join([ALGORITHM, self.when, scope, digest])
        expected = hmac.new(_signing_key(secret, self.date, self.region, self.service), to_sign.encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.signature):
            raise Refused(*SIGNATURE_MISMATCH)


def _expires(value: str | None) -> int:
    if value is None or not value.isdigit():
        raise Refused("AuthorizationQueryParametersError", "X-Amz-Expires should be a number", 400)
    if int(value) > MAX_EXPIRES:
        raise Refused("AuthorizationQueryParametersError", "X-Amz-Expires must be less than a week (in seconds) "
                      f"that is; {MAX_EXPIRES}", 400)
    return int(value)


def _refusal(start_response, refused: Refused) -> list[bytes]:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{refused.code}</Code>'
            f"<Message>{refused.message}</Message><RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId>"
            f"</Error>").encode()
    start_response(f"{refused.status} {'Forbidden' if refused.status == 403 else 'Bad Request'}",
                   [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    return [body]


def checked(app, key_id: str, secret: str):
    """moto server's WSGI app, behind the signature check."""

    def check_then_serve(environ, start_response):
        try:
            if environ.get("PATH_INFO", "").startswith("/moto-api"):
                raise Refused("AccessDenied", "moto's control routes are not served here")
            signature = Signature(environ)
            _read_payload(environ, signature)
            signature.check(key_id, secret, time.time())
        except Refused as refused:
            return _refusal(start_response, refused)
        return app(environ, start_response)

    return check_then_serve


def _read_payload(environ: dict, signature: Signature) -> None:
    """The body, read here in one piece and handed on whole (werkzeug reads it in 64 KB pieces and
    copies it twice more; a BytesIO made from bytes shares them); and its sha256, where the signature
    covers it: S3 requests that declare it (S3 checks it), and every request to another service
    (signed over its body)."""
    unsigned = signature.service == "s3" and len(signature.payload) != 64  # UNSIGNED-PAYLOAD, a streaming form
    if unsigned and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"], environ["wsgi.input_terminated"] = io.BytesIO(body), True
    if unsigned:
        return
    digest = hashlib.sha256(body).hexdigest()
    if signature.service != "s3":
        signature.payload = digest
    elif digest != signature.payload:
        raise Refused("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what "
                      "was computed.", 400)
