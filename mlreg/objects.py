"""Durability of the emulated bucket: every object and every part of a multipart upload is a file in
the data directory, fsync'ed before S3's answer goes out, whichever way the request came (the
handlers' in-process calls, or a client's presigned URL on the moto server). moto keeps serving
them from memory; on start they are loaded back.

In the data directory:
  s3/objects/<h[:2]>/<h>   one object (h: sha256 of bucket and key): a JSON line (bucket, key, etag,
                           metadata, last modified), then the bytes; or, for an object a multipart
                           upload completed, the JSON line alone, naming its part files (`parts`)
  s3/objects/<h[:2]>/<h>.<upload id>.<n>
                           those part files: hard links to the upload's, which were fsync'ed when
                           each part was answered. Completing an upload writes no byte again (S3's
                           completion does not copy the bytes either); a crash between the links and
                           the JSON line leaves unnamed part files, removed at the next start.
  s3/uploads/<upload id>/  a multipart upload in progress: upload.json, and part-<n> per part

An older mlreg mirrored objects every few seconds into objects/<key> with an objects.json manifest:
that layout is read once and rewritten in this one."""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import shutil
import threading
import xml.etree.ElementTree as ElementTree
from datetime import datetime
from pathlib import Path
from typing import Iterator

from mlreg.journal import atomic_write, ensure_dir, fsync_dir

COPY_CHUNK = 1024 * 1024
GONE = ".gone"
LOCK_STRIPES = 64


class ObjectFiles:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.objects, self.uploads = data_dir / "s3" / "objects", data_dir / "s3" / "uploads"
        # One write of a key (or a part) at a time: each saves what moto holds *after* its request,
        # so whichever saves last saves the latest state.
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def _backend(self):
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def _lock(self, *names: str) -> threading.Lock:
        return self._locks[hash(names) % LOCK_STRIPES]

    def _object_path(self, bucket: str, key: str) -> Path:
        digest = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()
        return self.objects / digest[:2] / digest

    # -- after each S3 request moto answered with success --
    def key_request(self, method: str, bucket: str, key: str, query: dict, response_body, request_body=b"") -> None:
        upload_id = (query.get("uploadId") or [None])[0]
        if method == "PUT" and upload_id and "partNumber" in query:
            self._save_part(bucket, upload_id, int(query["partNumber"][0]))
        elif method == "POST" and "uploads" in query:
            self._save_upload(bucket, _upload_id_in(response_body))
        elif method == "POST" and upload_id:  # completed: the object, then the upload is gone
            self._save_completed(bucket, key, upload_id, _part_numbers_in(request_body))
            self._drop_upload(upload_id)
        elif method == "DELETE" and upload_id:
            self._drop_upload(upload_id)
        elif method in ("PUT", "DELETE"):  # put, copy, delete (tags and ACLs are not kept)
            self.save_object(bucket, key)

    def bucket_request(self, method: str, bucket: str, query: dict, request_body) -> None:
        if method == "POST" and "delete" in query:
            for key in _keys_in(request_body):
                self.save_object(bucket, key)
        elif method == "POST" and "key" in query:  # a browser-style form upload
            self.save_object(bucket, query["key"][0])

    def save_object(self, bucket: str, key: str) -> None:
        """The object as moto holds it now, or its absence."""
        path = self._object_path(bucket, key)
        with self._lock(bucket, key):
            obj = self._backend().get_object(bucket, key) if bucket in self._backend().buckets else None
            if obj is None:
                if path.exists():
                    path.unlink()
                    fsync_dir(path.parent)
                self._drop_part_files(path)
                return
            ensure_dir(path.parent)
            atomic_write(path, _with_header(_header(bucket, key, obj), obj))
            self._drop_part_files(path)

    def _save_completed(self, bucket: str, key: str, upload_id: str, numbers: list[int]) -> None:
        """The object a multipart upload completed: its part files linked beside a header naming them.
        Falls back to writing the bytes when the upload's part files are not all there (cannot happen
        unless a part came in before this process saved uploads)."""
        path, folder = self._object_path(bucket, key), self.uploads / upload_id
        parts = [folder / f"part-{n}" for n in numbers]
        with self._lock(bucket, key):
            obj = self._backend().get_object(bucket, key) if bucket in self._backend().buckets else None
            if obj is None or not parts or not all(p.exists() for p in parts) or \
                    sum(p.stat().st_size for p in parts) != obj.size:
                complete = False
            else:
                ensure_dir(path.parent)
                names = [f"{path.name}.{upload_id}.{n}" for n in numbers]
                for part, name in zip(parts, names):
                    if not (path.parent / name).exists():
                        os.link(part, path.parent / name)
                atomic_write(path, json.dumps({**_header(bucket, key, obj), "parts": names}).encode() + b"\n",
                             entries_first=True)  # the links are durable before the header names them
                self._drop_part_files(path, keep=set(names))
                complete = True
        if not complete:
            self.save_object(bucket, key)

    def _drop_part_files(self, path: Path, keep: set[str] = frozenset()) -> None:
        """Part files of an object's earlier versions (or of a completion a crash cut short)."""
        stale = [p for p in _part_files(path) if p.name not in keep]
        for part in stale:
            part.unlink()
        if stale:
            fsync_dir(path.parent)

    def _save_upload(self, bucket: str, upload_id: str) -> None:
        upload = self._backend().get_bucket(bucket).multiparts[upload_id]
        folder = self.uploads / upload_id
        ensure_dir(self.uploads)
        folder.mkdir(exist_ok=True)  # its entry is made durable last, with upload.json's (fewer disk commits)
        atomic_write(folder / "upload.json", json.dumps({"bucket": bucket, "key": upload.key_name,
                                                         "metadata": dict(upload.metadata)}).encode())
        fsync_dir(self.uploads)

    def _save_part(self, bucket: str, upload_id: str, number: int) -> None:
        with self._lock(upload_id, str(number)):
            upload = self._backend().get_bucket(bucket).multiparts.get(upload_id)
            part = upload.parts.get(number) if upload else None
            if part is not None and (self.uploads / upload_id).exists():
                atomic_write(self.uploads / upload_id / f"part-{number}", _chunks(part))

    def _drop_upload(self, upload_id: str) -> None:
        """Renamed away first: a crash halfway through deleting must not leave an upload missing parts."""
        folder, gone = self.uploads / upload_id, self.uploads / f"{upload_id}{GONE}"
        if folder.exists():
            os.replace(folder, gone)
            fsync_dir(self.uploads)
            shutil.rmtree(gone)

    # -- start --
    def load(self) -> None:
        """Every saved object and upload back into moto, as it was answered."""
        backend = self._backend()
        for path in sorted(self.objects.glob("*/*")) if self.objects.exists() else []:
            if path.name.endswith(".tmp"):
                path.unlink()
                continue
            if "." in path.name:  # a part file: read with its object's header
                continue
            with open(path, "rb") as f:
                header = json.loads(f.readline())
                body = b"".join(_read(path.parent / name) for name in header["parts"]) if "parts" in header else f.read()
            obj = backend.put_object(header["bucket"], header["key"], body, etag=header["etag"])
            obj.set_metadata(header["metadata"])
            obj.last_modified = datetime.fromisoformat(header["last_modified"])
            self._drop_part_files(path, keep=set(header.get("parts", ())))
        for part in self.objects.glob("*/*.*.*") if self.objects.exists() else []:
            if not part.with_name(part.name.split(".", 1)[0]).exists():  # a crash before its header
                part.unlink()
        for folder in sorted(self.uploads.iterdir()) if self.uploads.exists() else []:
            self._load_upload(backend, folder)
        self._upgrade_mirror(backend)

    def _load_upload(self, backend, folder: Path) -> None:
        if folder.name.endswith(GONE) or not (folder / "upload.json").exists():  # completed, aborted, never answered
            shutil.rmtree(folder)
            return
        saved = json.loads((folder / "upload.json").read_text())
        upload = backend.create_multipart_upload(saved["bucket"], saved["key"], saved["metadata"], "STANDARD",
                                                 {}, None, None, None)
        bucket = backend.get_bucket(saved["bucket"])
        del bucket.multiparts[upload.id]
        upload.id = folder.name  # the id the client holds
        bucket.multiparts[upload.id] = upload
        for part in folder.glob("part-*"):
            if not part.name.endswith(".tmp"):
                upload.set_part(int(part.name.removeprefix("part-")), part.read_bytes())

    def _upgrade_mirror(self, backend) -> None:
        manifest = self.data_dir / "objects.json"
        if not manifest.exists():
            return
        bucket = next(iter(backend.buckets))
        for key in json.loads(manifest.read_text()):
            path = self.data_dir / "objects" / key
            if path.is_file():
                obj = backend.put_object(bucket, key, path.read_bytes())
                obj.set_metadata({"Content-Type": mimetypes.guess_type(key)[0] or "binary/octet-stream"})
                self.save_object(bucket, key)
        manifest.unlink()
        shutil.rmtree(self.data_dir / "objects", ignore_errors=True)
        fsync_dir(self.data_dir)


def patch_moto_s3():
    """moto's S3 closer to S3's answers and costs. Returns the undo (tests).
    - A part or a completion for an unknown upload id is NoSuchUpload (404), not a KeyError (500):
      a client retrying a completion whose answer was lost relies on it.
    - A completed multipart upload gets no full-object checksum unless the upload asked for one
      (moto computes a CRC64 in Python over a copy of every byte), and its parts' bytes are copied
      once into the object, not five times.
    - moto reloads its S3 URL module (importlib.reload) on every in-process S3 request, to read
      MOTO_S3_CUSTOM_ENDPOINTS again; `mlreg serve` sets that once, before this: loaded once here."""
    from moto.s3 import models
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML, NoSuchUpload

    def known_upload(method):
        def call(self, bucket_name, multipart_id, *args, **kwargs):
            if multipart_id not in self.get_bucket(bucket_name).multiparts:
                raise NoSuchUpload(upload_id=multipart_id)
            return method(self, bucket_name, multipart_id, *args, **kwargs)
        return call

    moto_complete = models.FakeMultipart.complete

    def complete(self, body):
        """S3's rules for a completion, as moto checks them, with each part's bytes read once and
        joined once (moto copies every byte five times); an upload that asked for a checksum goes to
        moto's own."""
        if self.metadata.get("x-amz-checksum-algorithm"):
            return moto_complete(self, body)
        parts = []
        for number, etag in body:
            part = self.parts.get(number)
            if part is None or part.etag.strip('"') != etag.strip('"'):
                raise InvalidPart()
            if parts and parts[-1].contentsize < models.S3_UPLOAD_PART_MIN_SIZE:
                raise EntityTooSmall()
            parts.append(part)
        if not parts:
            raise MalformedXML()
        digests = b"".join(bytes.fromhex(p.etag.strip('"')) for p in parts)
        etag = f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"
        return b"".join(p.value for p in parts), etag, None

    patched = {(models.S3Backend, name): known_upload(getattr(models.S3Backend, name))
               for name in ("complete_multipart_upload", "upload_part", "upload_part_copy")}
    patched[(models.FakeMultipart, "complete")] = complete
    urls = models.S3Backend._url_module.fget(None)  # reloaded now, with the endpoints as set
    patched[(models.S3Backend, "_url_module")] = property(lambda self: urls)
    originals = {(owner, name): getattr(owner, name) for owner, name in patched}
    for (owner, name), value in patched.items():
        setattr(owner, name, value)
    return lambda: [setattr(owner, name, value) for (owner, name), value in originals.items()]


def _chunks(fake_key) -> Iterator[bytes]:
    """A moto object's bytes, read from its buffer piece by piece (no copy of the whole)."""
    with fake_key.lock:
        buffer = fake_key._value_buffer
        buffer.seek(0)
        while chunk := buffer.read(COPY_CHUNK):
            yield chunk


def _header(bucket: str, key: str, fake_key) -> dict:
    return {"bucket": bucket, "key": key, "etag": fake_key.etag.strip('"'), "metadata": dict(fake_key.metadata),
            "last_modified": fake_key.last_modified.isoformat()}


def _part_files(path: Path) -> list[Path]:
    return [p for p in path.parent.glob(f"{path.name}.*") if not p.name.endswith(".tmp")] if path.parent.exists() else []


def _read(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _part_numbers_in(request_body) -> list[int]:
    """The part numbers a CompleteMultipartUpload request names, in its order."""
    if not request_body:
        return []
    root = ElementTree.fromstring(request_body)
    return [int(e.text or 0) for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "PartNumber"]


def _with_header(header: dict, fake_key) -> Iterator[bytes]:
    yield json.dumps(header).encode() + b"\n"
    yield from _chunks(fake_key)


def _upload_id_in(response_body) -> str:
    text = response_body.decode() if isinstance(response_body, bytes) else response_body
    return text.split("<UploadId>", 1)[1].split("</UploadId>", 1)[0]


def _keys_in(request_body) -> list[str]:
    """The keys a DeleteObjects request names."""
    root = ElementTree.fromstring(request_body)
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Key"]
