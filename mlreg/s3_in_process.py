"""The handlers' hottest S3 calls answered from moto's S3 backend, without the HTTP shapes between.

moto answers an in-process S3 call as it would an HTTP request: botocore serialises and signs it,
moto rebuilds it as a werkzeug request, finds its handler, answers XML through a generic serializer
that walks the API's shape model, and botocore parses that XML and its timestamps back. For a small
object that is ~1.5 ms of CPU around ~0.1 ms of work, and a model version's creation makes three
such calls (the source's listing, its copy, the manifest). Here botocore's `before-call` event
answers ListObjectsV2, CopyObject, PutObject and the artifact routes' CreateMultipartUpload and
CompleteMultipartUpload, in the shapes mlreg's handlers send, from moto's backend with the answer
botocore would have parsed (tests/unit/test_s3_in_process.py compares the two ways); anything else
(another parameter, a missing key, a versioned bucket, a retried completion: every error) goes the
usual way, so moto says what S3 would. Writes are saved as every S3 write is
(mlreg.objects.ObjectFiles) before the answer, a new key's durability deferred (a small one as a
record in the table's log, another's fsync in the background): the answer reaches only the handler,
and every table write and every answer of the gateway waits for it (ObjectFiles.flush). Local only
(`mlreg serve`, the bench)."""

from __future__ import annotations

import io
from typing import Any, Callable
from urllib.parse import unquote

from dateutil.tz import tzutc

from mlreg.objects import ObjectFiles, moto_s3

PARAMS = "mlreg_api_params"  # the call's parameters, kept in botocore's request context
LIST_PARAMS = {"Bucket", "Prefix", "MaxKeys", "ContinuationToken", "Delimiter", "EncodingType"}
COPY_PARAMS = {"Bucket", "Key", "CopySource", "ChecksumAlgorithm"}
PUT_PARAMS = {"Bucket", "Key", "Body", "ContentType"}
CREATE_UPLOAD_PARAMS = {"Bucket", "Key"}
COMPLETE_UPLOAD_PARAMS = {"Bucket", "Key", "UploadId", "MultipartUpload"}


def _timestamp(when) -> Any:
    """A key's last-modified time as botocore parses moto's (whole seconds, UTC)."""
    return when.replace(microsecond=0, tzinfo=tzutc())


class _Answered:
    """The HTTP response botocore's after-call handlers and error check read (a success)."""
    status_code = 200
    headers: dict = {}
    content = b""


def _plain_bucket(name: str):
    """The bucket, if none of its settings (versions, locks, default encryption) changes an answer."""
    bucket = moto_s3().buckets.get(name)
    plain = bucket is not None and not (bucket.is_versioned or bucket.object_lock_enabled or bucket.encryption)
    return bucket if plain else None


def _list_objects_v2(params: dict, context: dict, files: ObjectFiles) -> dict | None:
    backend, bucket, token = moto_s3(), _plain_bucket(params["Bucket"]), params.get("ContinuationToken")
    if bucket is None or token == "" or (token and token not in backend._pagination_tokens):
        return None
    prefix, delimiter, max_keys = params.get("Prefix"), params.get("Delimiter"), params.get("MaxKeys", 1000)
    found, truncated, next_token = backend.list_objects_v2(bucket=bucket, prefix=prefix, delimiter=delimiter,
                                                           continuation_token=token, start_after=None,
                                                           max_keys=max_keys)
    keys = [k for k in found if not isinstance(k, str)]
    folders = [k for k in found if isinstance(k, str)]
    result: dict[str, Any] = {"IsTruncated": truncated, "Name": bucket.name, "Prefix": prefix or "",
                              "MaxKeys": max_keys, "KeyCount": len(found)}
    if keys:
        result["Contents"] = [_listed(key) for key in keys]
    if delimiter:
        result["Delimiter"] = delimiter
        if folders:
            result["CommonPrefixes"] = [{"Prefix": folder} for folder in folders]
    if params.get("EncodingType"):
        result["EncodingType"] = params["EncodingType"]
    if next_token:
        result["NextContinuationToken"] = next_token
    return result


def _listed(key) -> dict:
    entry = {"Key": key.name, "LastModified": _timestamp(key.last_modified), "ETag": key.etag, "Size": key.size,
             "StorageClass": key.storage_class}
    if key.checksum_algorithm:
        entry["ChecksumAlgorithm"] = [key.checksum_algorithm]
    return entry


def _copy_object(params: dict, context: dict, files: ObjectFiles) -> dict | None:
    from moto.s3.utils import compute_checksum

    source = params["CopySource"]
    if not isinstance(source, str) or "?" in source:  # a version of the source: moto's way
        return None
    backend = moto_s3()
    source_bucket, _, source_key = unquote(source).lstrip("/").partition("/")
    original = backend.get_object(source_bucket, source_key) if source_bucket in backend.buckets else None
    bucket = _plain_bucket(params["Bucket"])
    if original is None or bucket is None or original.storage_class != "STANDARD" \
            or (source_bucket, source_key) == (params["Bucket"], params["Key"]):
        return None
    backend.copy_object(original, bucket.name, params["Key"], metadata={})
    copied = backend.get_object(bucket.name, params["Key"])
    if bucket.acl is not None:
        copied.set_acl(bucket.acl)
    algorithm = params.get("ChecksumAlgorithm")
    if algorithm:
        copied.checksum_algorithm = algorithm
        copied.checksum_value = compute_checksum(copied.value, algorithm=algorithm).decode("utf-8")
    files.save_object(bucket.name, copied.name, deferred=True)
    result = {"ETag": copied.etag, "LastModified": _timestamp(copied.last_modified)}
    if copied.checksum_value:
        result[f"Checksum{copied.checksum_algorithm}"] = copied.checksum_value
    return {"CopyObjectResult": result}


def _put_object(params: dict, context: dict, files: ObjectFiles) -> dict | None:
    from moto.s3.utils import compute_checksum

    body, bucket, backend = params.get("Body", b""), _plain_bucket(params["Bucket"]), moto_s3()
    if type(body) is io.BytesIO and body.tell() == 0:  # bytes as botocore wraps them
        body = body.getvalue()
    if type(body) is not bytes or bucket is None:
        return None
    # the checksum botocore adds to every upload (CRC32 unless asked otherwise), which moto keeps
    algorithm = (context.get("checksum", {}).get("request_algorithm") or {}).get("algorithm", "").upper()
    checksum = compute_checksum(body, algorithm=algorithm).decode("utf-8") if algorithm else None
    put = backend.put_object(bucket.name, params["Key"], body, storage="STANDARD", checksum_value=checksum)
    put.set_metadata({"content-type": params["ContentType"]} if "ContentType" in params else {})
    put.set_acl(bucket.acl)
    put.website_redirect_location = None
    if algorithm:
        put.checksum_algorithm = algorithm
    backend.put_object_tagging(put, {})
    files.save_object(bucket.name, put.name, deferred=True)  # before the ETag: its fsync runs beside the MD5
    return {"ETag": put.etag, **({f"Checksum{algorithm}": checksum} if algorithm else {})}


def _create_multipart_upload(params: dict, context: dict, files: ObjectFiles) -> dict | None:
    from moto.s3.utils import metadata_from_headers

    bucket = _plain_bucket(params["Bucket"])
    if bucket is None or context.get("checksum", {}).get("request_algorithm"):
        return None
    upload = moto_s3().create_multipart_upload(bucket.name, params["Key"], metadata_from_headers({}), "STANDARD", {},
                                                None, None, None)
    files.upload_created(bucket.name, upload.id, deferred=True)
    return {"Bucket": bucket.name, "Key": params["Key"], "UploadId": upload.id}


def _complete_multipart_upload(params: dict, context: dict, files: ObjectFiles) -> dict | None:
    from moto.s3.exceptions import S3ClientError

    bucket, upload_id = _plain_bucket(params["Bucket"]), params["UploadId"]
    upload = bucket.multiparts.get(upload_id) if bucket is not None else None
    named = params["MultipartUpload"].get("Parts", [])
    parts = [(part["PartNumber"], part["ETag"]) for part in named if part.keys() == {"PartNumber", "ETag"}]
    if upload is None or upload.key_name != params["Key"] or len(parts) != len(named):
        return None  # an upload gone (a retried completion) or never there, other part fields: moto's way
    try:
        key = moto_s3().complete_multipart_upload(bucket.name, upload_id, parts)
    except S3ClientError:  # a part missing or out of order: refused before anything changed, so moto's
        return None        # way gives the same refusal as S3 words it
    if key is None:
        return None
    files.upload_completed(bucket.name, key.name, upload_id, [number for number, _ in parts], deferred=True)
    done = {"Location": f"http://{bucket.name}.s3.amazonaws.com/{key.name}", "Bucket": bucket.name, "Key": key.name,
            "ETag": key.etag}
    return {**done, "VersionId": key.version_id} if key.version_id else done


ANSWERS: dict[str, tuple[set[str], Callable[[dict, dict, ObjectFiles], dict | None]]] = {
    "ListObjectsV2": (LIST_PARAMS, _list_objects_v2),
    "CopyObject": (COPY_PARAMS, _copy_object),
    "PutObject": (PUT_PARAMS, _put_object),
    "CreateMultipartUpload": (CREATE_UPLOAD_PARAMS, _create_multipart_upload),
    "CompleteMultipartUpload": (COMPLETE_UPLOAD_PARAMS, _complete_multipart_upload),
}


def _plain_names(params: dict, context: dict) -> bool:
    """No URL-encoding of names asked for, but the one botocore adds to every listing by itself."""
    return "EncodingType" not in params or context.get("encoding_type_auto_set", False)


def install(events, endpoint: str, files: ObjectFiles) -> Callable[[], None]:
    """Answer the calls to `endpoint` (the emulator's; `mlreg serve --s3-endpoint` sends them
    elsewhere) of every client made from `events`' session from now on. Returns the undo."""

    def keep_params(params: dict, context: dict, **_) -> None:
        context[PARAMS] = params

    def answer(model, params: dict, context: dict, **_):
        handled, given = ANSWERS.get(model.name), context.get(PARAMS)
        if handled is None or given is None or not params["url"].startswith(endpoint + "/") \
                or not given.keys() <= handled[0] or not _plain_names(given, context):
            return None
        parsed = handled[1](given, context, files)
        if parsed is None:
            return None
        context.pop("encoding_type_auto_set", None)  # the names are given as they are, not URL-encoded
        parsed["ResponseMetadata"] = {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0}
        return _Answered(), parsed

    events.register("before-parameter-build.s3", keep_params)
    events.register("before-call.s3", answer)
    return lambda: (events.unregister("before-parameter-build.s3", keep_params),
                    events.unregister("before-call.s3", answer))
