"""A presigned part's PUT (what MLflow's client sends for every part of a big artifact), answered
without moto's web app: the same part in moto's upload, the same ETag (S3's: the part's MD5), its file
made durable meanwhile (ObjectFiles.put_part). moto's Flask routing, request parsing and response
building were 2-3 ms of a 5 MB part's 20, on the two cores the part's MD5 and the client share.

Only the plain form is answered here: a signed URL's PUT with no header S3 would act on (a checksum,
Content-MD5, encryption keys, a copy source, CORS). Anything else, or an upload moto does not know,
goes on to moto, which answers it (or refuses it) as before."""

from __future__ import annotations

import secrets
from ipaddress import ip_address
from urllib.parse import parse_qs, urlsplit

from mlreg.objects import ObjectFiles, moto_s3

MAX_PART_NUMBER = 10000
PLAIN_HEADERS = {"HTTP_HOST", "HTTP_USER_AGENT", "HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING", "HTTP_CONNECTION",
                 "HTTP_EXPECT", "CONTENT_LENGTH", "CONTENT_TYPE"}  # none of them changes what S3 does


def answering_parts(app, files: ObjectFiles):
    """moto server's WSGI app (behind the signature check: signatures.checked), with the plain part PUT
    answered here."""
    from moto.s3.exceptions import S3ClientError

    def serve(environ, start_response):
        part = _plain_part(environ)
        if part is None:
            return app(environ, start_response)
        bucket, upload_id, number = part
        body = environ["wsgi.input"].getvalue()  # the bytes the signature check read (not a copy)
        try:
            _, headers, _ = files.put_part(lambda: _answer(bucket, upload_id, number, body), lambda: bucket,
                                           upload_id, number, body)
        except S3ClientError:  # the upload went meanwhile (completed, aborted): moto says so
            return app(environ, start_response)
        start_response("200 OK", list(headers.items()))
        return [b""]

    return serve


def _plain_part(environ: dict) -> tuple[str, str, int] | None:
    """(bucket, upload id, part number) of a presigned part PUT this module answers; None otherwise."""
    if environ["REQUEST_METHOD"] != "PUT" or "partNumber=" not in environ.get("QUERY_STRING", ""):
        return None
    if any(name.startswith("HTTP_") and name not in PLAIN_HEADERS for name in environ):
        return None
    if not hasattr(environ["wsgi.input"], "getvalue") or not _path_style(environ.get("HTTP_HOST", "")):
        return None  # the body was not read whole by the signature check (chunked), or a bucket's host name
    part, bucket = part_in(environ["QUERY_STRING"]), environ.get("PATH_INFO", "").lstrip("/").split("/", 1)[0]
    if part is None or "X-Amz-Signature=" not in environ["QUERY_STRING"] or not 1 <= part[1] <= MAX_PART_NUMBER:
        return None
    backend = moto_s3()
    if bucket not in backend.buckets or part[0] not in backend.buckets[bucket].multiparts:
        return None  # moto's NoSuchBucket, NoSuchUpload
    return bucket, *part


def part_in(query: str) -> tuple[str, int] | None:
    """(upload id, part number) a part's PUT names in its query; None for any other query."""
    params = parse_qs(query)
    upload_id, number = params.get("uploadId", [""])[0], params.get("partNumber", [""])[0]
    return (upload_id, int(number)) if upload_id and number.isdigit() else None


def _path_style(host: str) -> bool:
    """The request names its bucket in the path: the emulator's endpoint is an address (a bucket named
    in the host would be a name under a domain)."""
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        ip_address(name)
        return True
    except ValueError:
        return False


def _answer(bucket: str, upload_id: str, number: int, body: bytes) -> tuple[int, dict, str]:
    """moto's UploadPart with its answer's headers: the part as moto's own route stores it."""
    part = moto_s3().upload_part(bucket, upload_id, number, body)
    headers = {**part.response_dict, "content-length": "0",
               "x-amzn-requestid": secrets.token_urlsafe(39)[:52], "Access-Control-Allow-Origin": "*"}
    return 200, headers, ""
