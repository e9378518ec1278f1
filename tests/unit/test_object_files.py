"""The emulated bucket on disk (mlreg/objects.py): what an S3 request wrote is a file before S3
answers, and loads back as it was answered (bytes, content type, ETag, multipart uploads in flight)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from mlreg.emulator import save_s3_writes
from mlreg.journal import Journal, records
from mlreg.objects import LOGGED_MAX, JoinedParts, ObjectFiles, _write_synced, moto_s3, patch_moto_s3

BUCKET = os.environ["MLREG_BUCKET"]
MiB = 1024 * 1024


def saving(files: ObjectFiles):
    """Every S3 write saved through `files`, moto patched as the emulator patches it."""
    undo_saves, undo_uploads = save_s3_writes(files), patch_moto_s3()
    try:
        yield boto3.client("s3"), files
    finally:
        undo_saves()
        undo_uploads()


@pytest.fixture
def s3(aws, tmp_path):
    yield from saving(ObjectFiles(tmp_path))


def restart(files: ObjectFiles) -> None:
    """moto loses everything (as a killed process does); the bucket is created and the files loaded."""
    moto_s3().reset()
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    files.load()


def test_objects_load_back_with_their_type_and_etag(s3):
    client, files = s3
    client.put_object(Bucket=BUCKET, Key="a/report%41.txt", Body=b"hello", ContentType="text/plain")
    client.put_object(Bucket=BUCKET, Key="a/gone", Body=b"x")
    client.copy_object(Bucket=BUCKET, Key="b/copy", CopySource={"Bucket": BUCKET, "Key": "a/report%41.txt"})
    client.delete_object(Bucket=BUCKET, Key="a/gone")
    before = client.head_object(Bucket=BUCKET, Key="a/report%41.txt")
    restart(files)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["a/report%41.txt", "b/copy"]
    after = client.get_object(Bucket=BUCKET, Key="a/report%41.txt")
    assert after["Body"].read() == b"hello"
    assert (after["ContentType"], after["ETag"]) == ("text/plain", before["ETag"])
    assert client.get_object(Bucket=BUCKET, Key="b/copy")["Body"].read() == b"hello"


def test_a_multipart_upload_in_flight_survives_and_completes(s3):
    client, files = s3
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="big.bin", ContentType="application/x-weights")
    first, second = os.urandom(5 * MiB), os.urandom(1000)
    etags = [client.upload_part(Bucket=BUCKET, Key="big.bin", UploadId=upload["UploadId"], PartNumber=n,
                                Body=body)["ETag"] for n, body in ((1, first), (2, second))]
    restart(files)
    client.complete_multipart_upload(Bucket=BUCKET, Key="big.bin", UploadId=upload["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, 1)]})
    etag = client.head_object(Bucket=BUCKET, Key="big.bin")["ETag"]
    assert etag.strip('"').endswith("-2")
    assert not any((files.uploads).iterdir())  # the upload's files are gone with it
    restart(files)
    got = client.get_object(Bucket=BUCKET, Key="big.bin")
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(first + second).digest()
    assert (got["ETag"], got["ContentType"]) == (etag, "application/x-weights")


def test_a_retried_completion_keeps_the_object(s3):
    """A client whose completion's answer was lost completes again: S3 (and moto) answer it from the
    object the first completion made, which stays readable, before and after a restart."""
    client, files = s3
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="again.bin")
    body = os.urandom(5 * MiB) + b"tail"
    etags = [client.upload_part(Bucket=BUCKET, Key="again.bin", UploadId=upload["UploadId"], PartNumber=n,
                                Body=part)["ETag"] for n, part in ((1, body[:5 * MiB]), (2, body[5 * MiB:]))]
    parts = {"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, 1)]}
    first, again = (client.complete_multipart_upload(Bucket=BUCKET, Key="again.bin", UploadId=upload["UploadId"],
                                                     MultipartUpload=parts) for _ in range(2))
    assert first["ETag"] == again["ETag"]
    assert client.get_object(Bucket=BUCKET, Key="again.bin")["Body"].read() == body
    restart(files)
    assert client.get_object(Bucket=BUCKET, Key="again.bin")["Body"].read() == body


def test_a_completed_upload_is_its_part_files_not_a_second_copy(s3):
    """Completing links the parts' files under the object (their bytes are written once, when each part
    is answered); the object loads back from them; a later write of the key, or a crash before the
    object's header, leaves no part file behind."""
    client, files = s3
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="w.bin")
    first, second, unused = os.urandom(5 * MiB), os.urandom(1000), os.urandom(10)
    etags = {n: client.upload_part(Bucket=BUCKET, Key="w.bin", UploadId=upload["UploadId"], PartNumber=n,
                                   Body=body)["ETag"] for n, body in ((1, first), (3, second), (2, unused))}
    client.complete_multipart_upload(Bucket=BUCKET, Key="w.bin", UploadId=upload["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 3)]})  # S3 completes with any parts, in order
    path = files._object_path(BUCKET, "w.bin")
    header = json.loads(path.read_bytes())  # the header line alone
    assert header["parts"] == [f"{path.name}.{upload['UploadId']}.{n}" for n in (1, 3)]
    assert (path.parent / header["parts"][0]).stat().st_nlink == 1  # the upload's own names are gone
    restart(files)
    assert client.get_object(Bucket=BUCKET, Key="w.bin")["Body"].read() == first + second
    orphan = path.with_name(f"{path.name}.cut.1")
    orphan.write_bytes(b"from a completion a crash cut short")
    client.put_object(Bucket=BUCKET, Key="w.bin", Body=b"small")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    lost = files._object_path(BUCKET, "never")
    lost.parent.mkdir(parents=True, exist_ok=True)
    lost.with_name(f"{lost.name}.cut.1").write_bytes(b"x")  # linked, then a crash before the header
    restart(files)
    assert client.get_object(Bucket=BUCKET, Key="w.bin")["Body"].read() == b"small"
    assert not lost.with_name(f"{lost.name}.cut.1").exists()


def test_a_completed_object_reads_its_part_files_and_keeps_no_copy(s3):
    """As S3, completing copies no byte: the object moto holds reads its parts where they are (their
    buffers, then the part files once saved), also after a restart; ranges cross parts."""
    client, files = s3
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="j.bin")
    first, second = os.urandom(5 * MiB), os.urandom(1000)
    etags = [client.upload_part(Bucket=BUCKET, Key="j.bin", UploadId=upload["UploadId"], PartNumber=n,
                                Body=body)["ETag"] for n, body in ((1, first), (2, second))]
    client.complete_multipart_upload(Bucket=BUCKET, Key="j.bin", UploadId=upload["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, 1)]})
    for _ in range(2):
        value = moto_s3().get_object(BUCKET, "j.bin")._value_buffer
        assert isinstance(value, JoinedParts) and [p.stat().st_size for p in value._sources] == [5 * MiB, 1000]
        across = client.get_object(Bucket=BUCKET, Key="j.bin", Range=f"bytes={5 * MiB - 10}-{5 * MiB + 9}")
        assert across["Body"].read() == (first + second)[5 * MiB - 10:5 * MiB + 10]
        assert client.get_object(Bucket=BUCKET, Key="j.bin")["Body"].read() == first + second
        restart(files)


def test_a_part_written_while_moto_takes_it_ends_as_what_moto_holds(s3):
    """put_part writes the request's bytes beside moto's own work; the file is named the part only if
    moto holds those very bytes after: when a concurrent PUT of the part won, its bytes are saved."""
    client, files = s3
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key="p.bin")["UploadId"]
    backend, folder = moto_s3(), files.uploads / upload_id
    ours, theirs = os.urandom(MiB), os.urandom(MiB)

    def answer(*winners: bytes):
        for body in winners:
            backend.upload_part(BUCKET, upload_id, 1, body)
        return 200, {}, ""

    rewrites, rewrite = [], files._save_part
    files._save_part = lambda *args: (rewrites.append(args[2]), rewrite(*args))
    for winners, saved, rewritten in (((ours,), ours, []), ((ours, theirs), theirs, [1])):
        assert files.put_part(lambda: answer(*winners), lambda: BUCKET, upload_id, 1, ours)[0] == 200
        assert (folder / "part-1").read_bytes() == saved and rewrites == rewritten
        assert sorted(p.name for p in folder.iterdir()) == ["part-1", "upload.json"]  # no .tmp left


@pytest.mark.parametrize("size", [0, 1, 4097, 8 * MiB + 1])
def test_a_part_file_is_exactly_its_bytes_with_direct_io_or_without(tmp_path, monkeypatch, size):
    """A part is written around the page cache in whole blocks and cut to its size, or, on a
    filesystem without direct I/O, through the page cache: either way the file is the part's bytes."""
    body = os.urandom(size)
    _write_synced(tmp_path / "direct", body)
    real_open = os.open

    def no_direct_io(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_direct_io)
    _write_synced(tmp_path / "buffered", body)
    assert (tmp_path / "direct").read_bytes() == (tmp_path / "buffered").read_bytes() == body


def test_a_completion_naming_parts_out_of_order_is_refused_as_by_s3(s3):
    client, _ = s3
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="o.bin")
    etags = {n: client.upload_part(Bucket=BUCKET, Key="o.bin", UploadId=upload["UploadId"], PartNumber=n,
                                   Body=os.urandom(5 * MiB))["ETag"] for n in (1, 2)}
    for order in ((2, 1), (1, 1)):
        with pytest.raises(ClientError) as err:
            client.complete_multipart_upload(Bucket=BUCKET, Key="o.bin", UploadId=upload["UploadId"],
                                             MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]}
                                                                        for n in order]})
        assert err.value.response["Error"]["Code"] == "InvalidPartOrder"


def test_a_read_of_a_completed_object_deleted_meanwhile_is_no_such_key(s3):
    client, files = s3
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="d.bin")
    etag = client.upload_part(Bucket=BUCKET, Key="d.bin", UploadId=upload["UploadId"], PartNumber=1,
                              Body=b"bytes")["ETag"]
    client.complete_multipart_upload(Bucket=BUCKET, Key="d.bin", UploadId=upload["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})
    value = moto_s3().get_object(BUCKET, "d.bin")._value_buffer
    client.delete_object(Bucket=BUCKET, Key="d.bin")  # its part files go; a read that began before fails as S3's
    from moto.s3.exceptions import MissingKey

    with pytest.raises(MissingKey):
        value.read()


def test_aborted_uploads_and_deleted_objects_stay_gone(s3):
    client, files = s3
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="x.bin")
    client.upload_part(Bucket=BUCKET, Key="x.bin", UploadId=upload["UploadId"], PartNumber=1, Body=b"p")
    client.abort_multipart_upload(Bucket=BUCKET, Key="x.bin", UploadId=upload["UploadId"])
    for n in range(3):
        client.put_object(Bucket=BUCKET, Key=f"d/{n}", Body=b"d")
    client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "d/0"}, {"Key": "d/2"}]})
    restart(files)
    assert [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["d/1"]
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_an_unknown_upload_is_no_such_upload_as_in_s3(s3):
    client, _ = s3
    for call in (lambda: client.complete_multipart_upload(Bucket=BUCKET, Key="k", UploadId="nope", MultipartUpload={
                     "Parts": [{"PartNumber": 1, "ETag": '"x"'}]}),
                 lambda: client.upload_part(Bucket=BUCKET, Key="k", UploadId="nope", PartNumber=1, Body=b"x")):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "NoSuchUpload"


def test_a_crash_while_dropping_an_upload_leaves_no_half_upload(s3):
    """Completing renames the upload away before deleting it: what a crash leaves is not loaded."""
    client, files = s3
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="y.bin")
    client.upload_part(Bucket=BUCKET, Key="y.bin", UploadId=upload["UploadId"], PartNumber=1, Body=b"p")
    folder = files.uploads / upload["UploadId"]
    os.replace(folder, folder.with_name(folder.name + ".gone"))  # as _drop_upload does, then "crash"
    (folder.with_name(folder.name + ".gone") / "part-1").unlink()
    restart(files)
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert list(files.uploads.iterdir()) == []


def test_an_upload_whose_object_is_complete_is_dropped_at_start(s3):
    """A handler's completion drops the upload's folder in the background (upload_completed): a crash
    before that leaves it beside the object whose header names its parts, and a start drops it."""
    client, files = s3
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="z.bin")
    body = os.urandom(5 * MiB)
    etag = client.upload_part(Bucket=BUCKET, Key="z.bin", UploadId=upload["UploadId"], PartNumber=1,
                              Body=body)["ETag"]
    drop, files._drop_upload = files._drop_upload, lambda upload_id: None  # the "crash" before it
    try:
        client.complete_multipart_upload(Bucket=BUCKET, Key="z.bin", UploadId=upload["UploadId"],
                                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    finally:
        files._drop_upload = drop
    assert [p.name for p in files.uploads.iterdir()] == [upload["UploadId"]]
    restart(files)
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert list(files.uploads.iterdir()) == []
    assert client.get_object(Bucket=BUCKET, Key="z.bin")["Body"].read() == body


def test_the_mirror_of_an_older_mlreg_is_read_once(s3, tmp_path):
    client, files = s3
    (tmp_path / "objects" / "projects" / "p").mkdir(parents=True)
    (tmp_path / "objects" / "projects" / "p" / "model.json").write_bytes(b"{}")
    (tmp_path / "objects.json").write_text(json.dumps({"projects/p/model.json": '"etag"', "projects/p/lost": '"x"'}))
    restart(files)
    got = client.get_object(Bucket=BUCKET, Key="projects/p/model.json")
    assert (got["Body"].read(), got["ContentType"]) == (b"{}", "application/json")
    assert not (tmp_path / "objects.json").exists() and not (tmp_path / "objects").exists()
    restart(files)  # now from the new layout
    assert client.get_object(Bucket=BUCKET, Key="projects/p/model.json")["Body"].read() == b"{}"


def _fsyncs(monkeypatch) -> list[str]:
    """The paths os.fsync makes durable, in order, each as it returns (a slow disk's 50 ms later)."""
    synced, real = [], os.fsync

    def fsync(fd: int) -> None:
        real(fd)
        time.sleep(0.05)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_a_deferred_write_is_durable_after_flush_and_never_replaces_in_place(s3, monkeypatch):
    """The handlers' in-process writes of new keys: written at once, fsync'ed (file, then folder) in
    the background, all of it done when flush returns; a key that has a file already is replaced
    whole (write aside, rename), so a crash keeps its earlier version."""
    client, files = s3
    client.put_object(Bucket=BUCKET, Key="old", Body=b"v1")
    synced = _fsyncs(monkeypatch)
    for key, body in (("old", b"v2"), ("new", b"fresh")):
        moto_s3().put_object(BUCKET, key, body)
        files.save_object(BUCKET, key, deferred=True)
    files.flush()
    new, old = (str(files._object_path(BUCKET, key)) for key in ("new", "old"))
    assert synced.index(new) < synced.index(os.path.dirname(new))
    assert old + ".tmp" in synced and old not in synced  # the replacement: written aside, then renamed
    assert files._syncing == []
    restart(files)
    assert [client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in ("new", "old")] == [b"fresh", b"v2"]


def test_an_etag_not_taken_yet_is_left_to_moto_and_loads_back_the_same(s3):
    """A handler's put saves the object before its answer asks for the ETag (whose MD5 then runs beside
    the file's fsync): its header holds none, and after a restart the ETag is still the MD5 of its
    bytes. One moto took already (its answer named it) is kept in the header."""
    client, files = s3
    body = os.urandom(MiB)
    moto_s3().put_object(BUCKET, "fresh", body)
    files.save_object(BUCKET, "fresh", deferred=True)
    files.flush()
    client.put_object(Bucket=BUCKET, Key="answered", Body=b"x")
    headers = {key: json.loads(files._object_path(BUCKET, key).read_bytes().split(b"\n", 1)[0])
               for key in ("fresh", "answered")}
    assert "etag" not in headers["fresh"] and moto_s3().get_object(BUCKET, "fresh")._etag is None
    assert headers["answered"]["etag"] == hashlib.md5(b"x").hexdigest()
    restart(files)
    assert client.head_object(Bucket=BUCKET, Key="fresh")["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert client.get_object(Bucket=BUCKET, Key="fresh")["Body"].read() == body


def test_a_deferred_write_a_crash_cut_short_is_dropped_at_load(s3):
    """Nothing named such an object yet (the table write naming it, and the answer, flush first): a
    file whose header or bytes are short is removed; complete ones load."""
    client, files = s3
    for key in ("whole", "short body", "short header", "empty"):
        client.put_object(Bucket=BUCKET, Key=key, Body=b"0123456789")
    for key, keep in (("short body", -3), ("short header", 20), ("empty", 0)):
        path = files._object_path(BUCKET, key)
        path.write_bytes(path.read_bytes()[:keep])
    restart(files)
    assert [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["whole"]
    assert not files._object_path(BUCKET, "empty").exists()


def test_a_burst_of_deferred_writes_holds_a_bounded_number_of_files_open(s3, monkeypatch):
    client, files = s3
    monkeypatch.setattr("mlreg.objects.SYNCING_MAX", 3)
    _fsyncs(monkeypatch)  # 50 ms each: the burst outruns them
    most = 0
    for i in range(8):
        moto_s3().put_object(BUCKET, f"burst/{i}", b"x")
        files.save_object(BUCKET, f"burst/{i}", deferred=True)
        most = max(most, len(files._syncing))
    files.flush()
    assert most == 3 and files._syncing == []
    restart(files)
    assert len(client.list_objects_v2(Bucket=BUCKET, Prefix="burst/")["Contents"]) == 8


# ---- small objects through the table's log (the emulator's ObjectFiles) ---------------------------------

@pytest.fixture
def logged(aws, tmp_path):
    """Objects saved as the emulator saves them: a handler's small new key as a record in the log."""
    yield from saving(ObjectFiles(tmp_path, loaded_journal(tmp_path)))


def loaded_journal(data_dir) -> Journal:
    journal = Journal(data_dir, ("pk", "sk"))
    journal.load()
    return journal


def handler_put(files: ObjectFiles, key: str, body: bytes) -> None:
    moto_s3().put_object(BUCKET, key, body).set_metadata({"content-type": "text/plain"})
    files.save_object(BUCKET, key, deferred=True)


def crashed(files: ObjectFiles) -> ObjectFiles:
    """A kill -9 after everything was written: moto's state and this process's are gone; the next
    start loads the table's log, then the objects."""
    files.flush()
    again = ObjectFiles(files.data_dir, loaded_journal(files.data_dir))
    restart(again)
    return again


def test_a_small_new_key_is_its_log_record_until_a_fold_writes_its_file(logged):
    client, files = logged
    handler_put(files, "small", b"flavors: {}")
    handler_put(files, "big", b"x" * (LOGGED_MAX + 1))
    files.flush()
    assert not files._object_path(BUCKET, "small").exists() and files._object_path(BUCKET, "big").exists()
    assert files.journal._durable >= files._last_logged > 0  # flush waited for the log to cover it
    files = crashed(files)
    small = client.get_object(Bucket=BUCKET, Key="small")
    assert (small["Body"].read(), small["ContentType"]) == (b"flavors: {}", "text/plain")
    assert small["ETag"] == f'"{hashlib.md5(b"flavors: {}").hexdigest()}"'
    assert client.get_object(Bucket=BUCKET, Key="big")["Body"].read() == b"x" * (LOGGED_MAX + 1)

    generation = files.journal.rotate()  # the emulator's fold
    files.file_logged(before=generation)
    files.journal.fold(generation)
    files.forget_filed(before=generation)
    assert files._logged == {} and files._object_path(BUCKET, "small").exists()
    assert not any("object" in json.dumps(r) for _, log in files.journal._logs() for r in records(log))
    crashed(files)
    assert client.get_object(Bucket=BUCKET, Key="small")["Body"].read() == b"flavors: {}"


def test_a_logged_key_overwritten_or_deleted_stays_so_after_a_restart(logged):
    """The log holds a logged key's last state; a save that writes its file (or takes it away)
    logs that the file holds it again, or a restart would replay the older record."""
    client, files = logged
    for key in ("overwritten", "deleted", "filed then deleted", "logged twice"):
        handler_put(files, key, b"first")
    client.put_object(Bucket=BUCKET, Key="overwritten", Body=b"second")  # a presigned PUT: its file
    client.delete_object(Bucket=BUCKET, Key="deleted")
    handler_put(files, "logged twice", b"second")
    generation = files.journal.rotate()  # a fold that wrote the files, not yet done dropping the log
    files.file_logged(before=generation)
    client.delete_object(Bucket=BUCKET, Key="filed then deleted")
    files = crashed(files)
    assert [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["logged twice", "overwritten"]
    assert [client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in ("logged twice", "overwritten")] == \
        [b"second", b"second"]
