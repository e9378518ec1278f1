"""The emulator's in-process answers to the handlers' S3 calls (mlreg/s3_in_process.py) change cost,
not results: the same calls give the same answers, objects and saved files as moto's own way, and
whatever they do not take (other parameters, errors) still gets moto's answer."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from mlreg import s3_in_process
from mlreg.emulator import save_s3_writes
from mlreg.objects import ObjectFiles, patch_moto_s3

ENDPOINT = "https://s3.us-east-1.amazonaws.com"  # moto answers it in-process, as the emulator's own
BUCKET = "in-process"
MiB = 1024 * 1024
NAMES = ["model/MLmodel", "model/a b/c%41.txt", "model/\u00e9\U0001F600", "model/sub/deep/x", "model-other/y"]


def _client(session):
    return session.client("s3", region_name="us-east-1", endpoint_url=ENDPOINT,
                          config=Config(s3={"addressing_style": "path"}))


def _stamp(found: dict) -> dict:
    """An answer without its request's metadata, its times checked as botocore parses them (UTC)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("ResponseMetadata", "LastModified")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    def times(value):
        if isinstance(value, dict):
            if "LastModified" in value:
                assert value["LastModified"].utcoffset().total_seconds() == 0
            for v in value.values():
                times(v)
        elif isinstance(value, list):
            for v in value:
                times(v)

    times(found)
    return strip(found)


def _exercise(s3, files: ObjectFiles) -> list:
    """Puts (with and without a content type; with metadata, which goes moto's way; one of 400 KB,
    whose file is written before its ETag is asked), listings (pages, folders, prefixes that match
    nothing, names that need encoding) and copies (with and without a checksum asked for, from a
    source with its own), each object as read back, and what the data directory holds for it."""
    seen = []
    s3.create_bucket(Bucket=BUCKET)
    for i, name in enumerate(NAMES):
        kind = [{"ContentType": "text/plain"}, {}, {"Metadata": {"k": "v"}}][i % 3]
        body = name.encode() * i * (8000 if i == len(NAMES) - 1 else 1)  # the last 400 KB
        seen.append(_stamp(s3.put_object(Bucket=BUCKET, Key=name, Body=body, **kind)))
        seen.append(_read_back(s3, files, name))
    for kwargs in [{"Prefix": "model/"}, {"Prefix": "model"}, {"Prefix": "model/", "MaxKeys": 2},
                   {"Prefix": "model/", "Delimiter": "/"}, {"Prefix": "none/"}, {}, {"Prefix": "model/\u00e9"}]:
        seen.append(_stamp(s3.list_objects_v2(Bucket=BUCKET, **kwargs)))
    for kwargs in [{"Prefix": "model/"}, {"Prefix": "model/", "Delimiter": "/"}]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, PaginationConfig={"PageSize": 2}, **kwargs)
        seen.append([_stamp(page) for page in pages])
    for i, name in enumerate(NAMES):
        target = f"package~{i}/{name}"
        checksum = {"ChecksumAlgorithm": "SHA256"} if i % 2 == 0 else {}
        seen.append(_stamp(s3.copy_object(Bucket=BUCKET, Key=target, CopySource={"Bucket": BUCKET, "Key": name},
                                          **checksum)))
        seen.append(_read_back(s3, files, target))
    for n, key in enumerate(["big/a b.bin", "big/\u00e9.bin"]):  # multipart uploads, as the artifact routes make them
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)
        files.flush()  # as the gateway before it answers: the upload's file is durable
        seen.append((_stamp({k: v for k, v in upload.items() if k != "UploadId"}),
                     sorted(p.name for p in (files.uploads / upload["UploadId"]).iterdir())))
        etags = [s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=i + 1,
                                Body=body)["ETag"] for i, body in enumerate([b"a" * 5 * MiB, b"b" * (n + 1)])]
        seen.append(_stamp(s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": etag} for i, etag in enumerate(etags)]})))
        files.drain()  # the upload's folder dropped in the background
        seen.append(((files.uploads / upload["UploadId"]).exists(), _read_back(s3, files, key)))
    return seen


def _read_back(s3, files: ObjectFiles, key: str) -> tuple:
    """An object as a client reads it, and as the data directory holds it: its bytes after its header,
    and how many part files the header names (a completed multipart upload's)."""
    head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    header, saved = files._object_path(BUCKET, key).read_bytes().split(b"\n", 1)
    return (_stamp(head), s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), saved,
            len(json.loads(header).get("parts", [])))


def _moto_calls(monkeypatch) -> list[str]:
    """The S3 actions moto's HTTP-shaped handler answered (S3Response.key_response / bucket_response)."""
    from moto.s3.responses import S3Response

    calls = []
    for name in ("key_response", "bucket_response"):
        original = getattr(S3Response, name)
        monkeypatch.setattr(S3Response, name, lambda self, request, *a, _o=original, **k:
                            calls.append(request.method) or _o(self, request, *a, **k))
    return calls


def test_answers_in_process_equal_motos(tmp_path, monkeypatch):
    with mock_aws():
        files = ObjectFiles(tmp_path / "plain")
        undo, undo_uploads = save_s3_writes(files), patch_moto_s3()
        try:
            plain = _exercise(_client(boto3.session.Session()), files)
        finally:
            undo_uploads()
            undo()
    with mock_aws():
        files, session = ObjectFiles(tmp_path / "answered"), boto3.session.Session()
        undo, undo_uploads = save_s3_writes(files), patch_moto_s3()
        undo_answers = s3_in_process.install(session.events, ENDPOINT, files)
        try:
            calls = _moto_calls(monkeypatch)
            answered = _exercise(_client(session), files)
        finally:
            undo_answers()
            undo_uploads()
            undo()
    assert answered == plain
    listed = plain[2 * len(NAMES):]
    assert len(listed) == 9 + 2 * len(NAMES) + 6 and listed[2]["IsTruncated"] and listed[3]["CommonPrefixes"]
    assert [upload[1] for upload in plain[-6::3]] == [["upload.json"]] * 2  # saved when created, gone when completed
    assert plain[-1][0] is False and plain[-1][1][3] == 2
    # moto's way: the bucket, the put with metadata, the parts and the reads back (head, get); no
    # other put, no listing, no copy, no upload created or completed
    assert [c for c in calls if c != "PUT"] == ["HEAD", "GET"] * (2 * len(NAMES) + 2)
    assert calls.count("PUT") == 1 + len([i for i in range(len(NAMES)) if i % 3 == 2]) + 4


def test_what_it_does_not_take_gets_motos_answer(tmp_path, monkeypatch):
    with mock_aws():
        files, session = ObjectFiles(tmp_path), boto3.session.Session()
        undo, undo_uploads = save_s3_writes(files), patch_moto_s3()
        undo_answers = s3_in_process.install(session.events, ENDPOINT, files)
        try:
            s3 = _client(session)
            s3.create_bucket(Bucket=BUCKET)
            s3.put_object(Bucket=BUCKET, Key="a", Body=b"x")
            upload = s3.create_multipart_upload(Bucket=BUCKET, Key="big")["UploadId"]
            etag = s3.upload_part(Bucket=BUCKET, Key="big", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]

            def complete(upload_id: str, etag: str):
                return s3.complete_multipart_upload(Bucket=BUCKET, Key="big", UploadId=upload_id,
                                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})

            calls = _moto_calls(monkeypatch)
            for call, code in [
                (lambda: s3.copy_object(Bucket=BUCKET, Key="b", CopySource={"Bucket": BUCKET, "Key": "missing"}),
                 "NoSuchKey"),
                (lambda: s3.copy_object(Bucket="no-bucket", Key="b", CopySource={"Bucket": BUCKET, "Key": "a"}),
                 "NoSuchBucket"),
                (lambda: s3.copy_object(Bucket=BUCKET, Key="a", CopySource={"Bucket": BUCKET, "Key": "a"}),
                 "InvalidRequest"),  # a copy onto itself that changes nothing
                (lambda: s3.list_objects_v2(Bucket="no-bucket"), "NoSuchBucket"),
                (lambda: complete(upload, '"0123456789abcdef0123456789abcdef"'), "InvalidPart"),
                (lambda: complete("made-up", etag), "NoSuchUpload"),
            ]:
                with pytest.raises(ClientError) as refused:
                    call()
                assert refused.value.response["Error"]["Code"] == code
            assert len(calls) == 6
            assert complete(upload, etag)["ETag"] == complete(upload, etag)["ETag"]  # a retried completion: moto's
            assert s3.get_object(Bucket=BUCKET, Key="big")["Body"].read() == b"part"
            assert len(calls) == 8
            s3.list_objects_v2(Bucket=BUCKET, StartAfter="a")  # a parameter it does not take
            s3.copy_object(Bucket=BUCKET, Key="c", CopySource={"Bucket": BUCKET, "Key": "a"}, MetadataDirective="COPY")
            elsewhere = session.client("s3", region_name="us-east-1")  # another endpoint (--s3-endpoint)
            elsewhere.list_objects_v2(Bucket=BUCKET)
            assert len(calls) == 11
        finally:
            undo_answers()
            undo_uploads()
            undo()
