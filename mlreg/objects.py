"""Durability of the emulated bucket: every object and every part of a multipart upload is a file in
the data directory, fsync'ed before S3's answer goes out, whichever way the request came (the
handlers' in-process calls, or a client's presigned URL on the moto server). A new key a handler
writes in-process is made durable before any table write or answer can name it (ObjectFiles.flush),
not before its own answer, which reaches only the handler: up to LOGGED_MAX bytes as a record in the
table's write-ahead log (mlreg/journal.py), which the table write naming it follows, so one fsync
covers both (a model version's package copy and manifest, then its transaction: one disk commit,
not five); a bigger one as its file, fsync'ed in the background. moto serves a plain object from
memory, loaded back at start, and a multipart object from its part files (JoinedParts), as S3 keeps
the parts a completion names.

A logged object's record is its only copy until the log is folded: a fold first writes the files of
the objects logged before it (ObjectFiles.file_logged). Any other save of such a key (overwrite,
delete) writes its file, then logs that the file holds the key's state again, before it is answered:
a restart replays a key's last record, so an older record can never bring back what a delete took.

In the data directory:
  s3/objects/<h[:2]>/<h>   one object (h: sha256 of bucket and key): a JSON line (bucket, key, etag
                           if computed by then, metadata, last modified, size), then the bytes; or, for
                           an object a multipart upload completed, the JSON line alone, naming its part
                           files (`parts`)
  s3/objects/<h[:2]>/<h>.<upload id>.<n>
                           those part files: hard links to the upload's, which were fsync'ed when
                           each part was answered. Completing an upload writes no byte again (S3's
                           completion does not copy the bytes either); a crash between the links and
                           the JSON line leaves unnamed part files, removed at the next start.
  s3/uploads/<upload id>/  a multipart upload in progress: upload.json, and part-<n> per part (a
                           part's PUT writes part-<n>.<random>.tmp while moto takes the part, and
                           renames it once both are done: ObjectFiles.put_part). A start drops the
                           folder of an upload an object's JSON line names parts of (completed; a
                           handler's completion drops it in the background)

An older mlreg mirrored objects every few seconds into objects/<key> with an objects.json manifest:
that layout is read once and rewritten in this one."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import mimetypes
import mmap
import os
import shutil
import tempfile
import threading
import uuid
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from mlreg.journal import Journal, atomic_write, drop_cached, ensure_dir, fsync_dir

COPY_CHUNK = 1024 * 1024
GONE = ".gone"
LOCK_STRIPES = 64
PART_WRITES = 8  # parts written at once while moto takes them (ObjectFiles.put_part)
_PART_WRITES = ThreadPoolExecutor(max_workers=PART_WRITES, thread_name_prefix="part-writes")
DIRECT_CHUNK = 8 * 1024 * 1024  # a part is written with O_DIRECT through a buffer this big (each part-writes thread's)
DIRECT_BLOCK = 4096  # what O_DIRECT writes are aligned to (the largest logical block size of common disks)
_DIRECT_BUFFERS = threading.local()
_SYNCS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="object-syncs")  # side by side: one disk commit
SYNCING_MAX = 256  # deferred writes awaiting their fsync (each holds its file open) before a writer waits
LOGGED_MAX = 64 * 1024  # a handler's new key this small goes through the table's log (its manifests, small files)


def moto_s3():
    """moto's S3 backend in this process (the account and partition mlreg's buckets live in)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


class JoinedParts:
    """A completed multipart object's bytes where they already are, as S3 keeps them (a completion
    copies no byte): its parts' buffers, then, once saved, its part files. It is the file-like moto's
    FakeKey keeps its value in (seek, read, close); moto itself joined every byte into one new buffer,
    spilled to a temporary file past 16 MB."""

    def __init__(self, name: str, sources: list, sizes: list[int]):
        self.name, self._sources, self._sizes = name, sources, sizes  # a source: a buffer or a Path
        self.size, self._at, self._lock = sum(sizes), 0, threading.Lock()

    @classmethod
    def of_files(cls, name: str, paths: list[Path]) -> "JoinedParts":
        """A saved multipart object, read from its part files when asked (not read at start)."""
        return cls(name, paths, [p.stat().st_size for p in paths])

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._at = offset + {os.SEEK_SET: 0, os.SEEK_CUR: self._at, os.SEEK_END: self.size}[whence]
        return self._at

    def tell(self) -> int:
        return self._at

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._at + size)
        pieces, offset = [], 0
        with self._lock:
            if self._sources is None:  # the key was deleted or overwritten (moto disposed of it)
                self._gone()
            for source, length in zip(self._sources, self._sizes):
                start, stop = max(self._at, offset), min(end, offset + length)
                if start < stop:
                    pieces.append(self._read(source, start - offset, stop - start))
                offset += length
        self._at = max(self._at, end)
        return b"".join(pieces)

    def _read(self, source, offset: int, length: int) -> bytes:
        if not isinstance(source, Path):
            source.seek(offset)
            return source.read(length)
        try:
            with open(source, "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:  # overwritten or deleted since this read began
            self._gone()

    def _gone(self):
        """S3's answer to a read of a key that is no longer there."""
        from moto.s3.exceptions import MissingKey

        raise MissingKey(key=self.name) from None

    def use_files(self, paths: list[Path] | None) -> None:
        """The part files now hold the bytes durably: read from them, and free the parts' memory."""
        with self._lock:
            buffers, self._sources = self._sources or [], paths and list(paths)
        for buffer in buffers:
            if not isinstance(buffer, Path):
                buffer.close()

    def close(self) -> None:
        self.use_files(None)


@dataclass
class Logged:
    """An object whose last saved state is its record in the table's log (not its file, or not yet)."""
    generation: int  # of the log it is in
    header: dict
    body: bytes
    filed: bool = False  # its file was written since (a fold is under way)


class ObjectFiles:
    def __init__(self, data_dir: Path, journal: Journal | None = None):
        """`journal`: the table's log, for small objects (none: every object is a file)."""
        self.data_dir, self.journal = data_dir, journal
        self._logged: dict[tuple[str, str], Logged] = {}
        self._last_logged = 0  # the last object's record: flush waits for the log to cover it
        self.objects, self.uploads = data_dir / "s3" / "objects", data_dir / "s3" / "uploads"
        # One write of a key (or a part) at a time: each saves what moto holds *after* its request,
        # so whichever saves last saves the latest state.
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._syncing: list = []  # deferred writes' fsyncs under way (save_object(deferred=True))
        self._syncing_lock = threading.Lock()
        self._dropping: list = []  # completed uploads' folders being dropped (upload_completed(deferred=True))
        self._make_folders()

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
            self.upload_created(bucket, _upload_id_in(response_body))
        elif method == "POST" and upload_id:
            self.upload_completed(bucket, key, upload_id, _part_numbers_in(request_body))
        elif method == "DELETE" and upload_id:
            self._drop_upload(upload_id)
        elif method in ("PUT", "DELETE"):  # put, copy, delete (tags and ACLs are not kept)
            self.save_object(bucket, key)

    def upload_completed(self, bucket: str, key: str, upload_id: str, numbers: list[int],
                         deferred: bool = False) -> None:
        """The object a completion made (`numbers`: its parts, in the request's order), then the upload
        is gone: dropped now, or `deferred`: in the background (once the object's header names its
        parts, a start drops the upload's folder anyway: load)."""
        self._save_completed(bucket, key, upload_id, numbers)
        if not deferred:
            self._drop_upload(upload_id)
            return
        dropping = _SYNCS.submit(self._drop_upload, upload_id)
        with self._syncing_lock:
            self._dropping = [future for future in self._dropping if not future.done()] + [dropping]

    def bucket_request(self, method: str, bucket: str, query: dict, request_body) -> None:
        if method == "POST" and "delete" in query:
            for key in _keys_in(request_body):
                self.save_object(bucket, key)
        elif method == "POST" and "key" in query:  # a browser-style form upload
            self.save_object(bucket, query["key"][0])

    def save_object(self, bucket: str, key: str, deferred: bool = False) -> None:
        """The object as moto holds it now, or its absence. `deferred`: a new key is made durable in
        the background, and `flush` waits for it (the handlers' in-process writes, whose answer
        reaches only the handler: the table write that names the object, and the response, flush
        first): a small one as a record in the table's log, another as its file, whose fsyncs then
        run beside the handler's next steps instead of before them."""
        path = self._object_path(bucket, key)
        with self._lock(bucket, key):
            obj = moto_s3().get_object(bucket, key) if bucket in moto_s3().buckets else None
            if obj is None:
                if path.exists():
                    path.unlink()
                    fsync_dir(path.parent)
                self._drop_part_files(path)
                self._filed(bucket, key)
                return
            header = _header(bucket, key, obj)
            if deferred and not path.exists():  # no earlier version a crash could take, nor its part files
                if self.journal is not None and obj.size <= LOGGED_MAX:
                    self._log(header, b"".join(_chunks(obj)))
                    return
                if (bucket, key) not in self._logged:  # else its file must be durable before the log says so
                    self._write_deferred(path, _with_header(header, obj))
                    return
            atomic_write(path, _with_header(header, obj))  # its folder: _make_folders
            self._drop_part_files(path)
            self._filed(bucket, key)

    def _log(self, header: dict, body: bytes) -> None:
        """A small object's record in the table's log (under its key's lock)."""
        number, generation = self.journal.append_object({"object": header, "body": body})
        self._logged[header["bucket"], header["key"]] = Logged(generation, header, body)
        with self._syncing_lock:  # writers of other keys race here: the highest number stays
            self._last_logged = max(self._last_logged, number)

    def _filed(self, bucket: str, key: str) -> None:
        """After a key's file (or its absence) was made durable: if the log held its last state, the
        log now says the file does, before the write is answered (under the key's lock)."""
        if self._logged.pop((bucket, key), None) is not None:
            self.journal.wait(self.journal.append_object({"object": {"bucket": bucket, "key": key}})[0])

    def _write_deferred(self, path: Path, chunks: Iterator[bytes]) -> None:
        """Written in place, fsync'ed by a background thread. A crash before that may leave the file
        short (its header's size says so: `load` drops it); nothing named the object yet."""
        if len(self._syncing) >= SYNCING_MAX:  # a burst (a big package's copy): bounded open files
            self.files_synced()
        f = open(path, "wb")  # kept open for its fsync, whatever becomes of the name meanwhile
        try:
            f.writelines(chunks)
            f.flush()
        except BaseException:
            f.close()
            raise

        def sync() -> None:
            with f:
                os.fsync(f.fileno())
                drop_cached(f.fileno())
            fsync_dir(path.parent)

        self._in_background(sync)

    def _in_background(self, commit: Callable[[], None]) -> None:
        """A disk commit run beside what follows; `flush` waits for it."""
        with self._syncing_lock:
            self._syncing.append(_SYNCS.submit(commit))

    def flush(self) -> None:
        """Every deferred write made so far is durable."""
        self.files_synced()
        if self._last_logged:
            self.journal.wait(self._last_logged)

    def drain(self) -> None:
        """Everything begun in the background is done: the deferred commits, and the completed uploads'
        folders dropped (a clean stop leaves none behind)."""
        self.flush()
        with self._syncing_lock:
            dropping, self._dropping = self._dropping, []
        for future in dropping:
            future.result()

    def files_synced(self) -> None:
        """Every deferred write made so far as a file is durable (what a table write waits for before
        its record follows the objects' records in the log)."""
        with self._syncing_lock:
            syncing = list(self._syncing)
        for future in syncing:
            future.result()
        with self._syncing_lock:
            self._syncing = [future for future in self._syncing if not future.done()]

    # -- folds of the table's log --
    def file_logged(self, before: int | None = None) -> None:
        """The file of every object whose last state is a record in a log older than generation
        `before` (every log: None), written and made durable, so a fold can drop those logs. Each
        stays logged (another save of it logs that its file holds it) until `forget_filed`."""
        for lock in self._locks:  # a record appended before the log turned, and not in _logged yet
            with lock:
                pass
        for name, logged in list(self._logged.items()):
            if before is None or logged.generation < before:
                with self._lock(*name):
                    if self._logged.get(name) is logged:
                        path = self._object_path(*name)
                        atomic_write(path, [_header_line(logged.header), logged.body])
                        self._drop_part_files(path)
                        logged.filed = True

    def forget_filed(self, before: int | None = None) -> None:
        """The fold dropped the logs before generation `before`: their objects are their files."""
        for name, logged in list(self._logged.items()):
            if logged.filed and (before is None or logged.generation < before):
                with self._lock(*name):
                    if self._logged.get(name) is logged:
                        del self._logged[name]

    def _save_completed(self, bucket: str, key: str, upload_id: str, numbers: list[int]) -> None:
        """The object a multipart upload completed: its part files linked beside a header naming them.
        Nothing when they are linked already: a retried completion (its first answer lost), which S3
        and moto answer from the object the first one made. Falls back to writing the bytes when the
        upload's part files are not all there (cannot happen unless a part came in before this process
        saved uploads)."""
        path, folder = self._object_path(bucket, key), self.uploads / upload_id
        parts = [folder / f"part-{n}" for n in numbers]
        names = [_linked_part_name(path.name, upload_id, n) for n in numbers]
        with self._lock(bucket, key):
            obj = moto_s3().get_object(bucket, key) if bucket in moto_s3().buckets else None
            if obj is not None and getattr(obj.multipart, "id", None) == upload_id and names and not folder.exists() \
                    and all((path.parent / name).exists() for name in names):
                return  # saved by the first completion: rewriting it would drop the part files it reads
            if obj is None or not parts or not all(p.exists() for p in parts) or \
                    sum(p.stat().st_size for p in parts) != obj.size:
                complete = False
            else:
                for part, name in zip(parts, names):
                    if not (path.parent / name).exists():
                        os.link(part, path.parent / name)
                atomic_write(path, json.dumps({**_header(bucket, key, obj), "parts": names}).encode() + b"\n",
                             entries_first=True)  # the links are durable before the header names them
                self._drop_part_files(path, keep=set(names))
                if isinstance(obj._value_buffer, JoinedParts) and getattr(obj.multipart, "id", None) == upload_id:
                    obj._value_buffer.use_files([path.parent / name for name in names])
                self._filed(bucket, key)
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

    def upload_created(self, bucket: str, upload_id: str, deferred: bool = False) -> None:
        """The upload's folder (its parts' PUTs look for it) and its upload.json, made durable now, or
        `deferred`: in the background, and `flush` waits for it (save_object)."""
        upload = moto_s3().get_bucket(bucket).multiparts[upload_id]
        folder = self.uploads / upload_id
        ensure_dir(self.uploads)
        folder.mkdir(exist_ok=True)  # its entry is made durable last, with upload.json's (fewer disk commits)
        saved = json.dumps({"bucket": bucket, "key": upload.key_name, "metadata": dict(upload.metadata)}).encode()

        def save() -> None:
            atomic_write(folder / "upload.json", saved)
            fsync_dir(self.uploads)

        if deferred:
            self._in_background(save)
        else:
            save()

    def put_part(self, answer, bucket_of, upload_id: str, number: int, body: bytes):
        """A part's PUT as moto answers it (`answer()`), with the part's bytes written and fsync'ed
        meanwhile (moto's MD5 of the part is most of its time; both let go of the GIL). The file takes
        the part's name only if moto holds these very bytes by then; if another PUT of the same part
        won, what moto holds is written instead. `bucket_of()`: the request's bucket, once answered."""
        folder = self.uploads / upload_id
        if not folder.exists():  # not an upload this process saved (moto answers NoSuchUpload)
            return answer()
        written = folder / f"part-{number}.{uuid.uuid4().hex}.tmp"
        writing = _PART_WRITES.submit(_write_synced, written, body)
        try:
            response = answer()
        except BaseException:  # moto's refusal (NoSuchUpload, ...): nothing to keep
            writing.exception()
            written.unlink(missing_ok=True)
            raise
        failed = writing.exception()
        if response[0] >= 300:
            written.unlink(missing_ok=True)
            return response
        with self._lock(upload_id, str(number)):
            upload = moto_s3().get_bucket(bucket_of()).multiparts.get(upload_id)
            part = upload.parts.get(number) if upload else None
            if part is not None and failed is None and _holds(part, body):
                os.replace(written, folder / f"part-{number}")
                fsync_dir(folder)
                return response
        written.unlink(missing_ok=True)
        self._save_part(bucket_of(), upload_id, number)
        return response

    def _save_part(self, bucket: str, upload_id: str, number: int) -> None:
        with self._lock(upload_id, str(number)):
            upload = moto_s3().get_bucket(bucket).multiparts.get(upload_id)
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
        """Every saved object and upload back into moto, as it was answered (with patch_moto_s3 in
        place: a multipart object's value is its part files)."""
        backend, completed = moto_s3(), set()  # the uploads whose parts an object's header names
        for path in sorted(self.objects.glob("*/*")) if self.objects.exists() else []:
            if path.name.endswith(".tmp"):
                path.unlink()
                continue
            if "." in path.name:  # a part file: read with its object's header
                continue
            with open(path, "rb") as f:
                header = _header_in(f.readline())
                body = JoinedParts.of_files(header["key"], [path.parent / n for n in header["parts"]]) \
                    if header and "parts" in header else f.read()
            if header is None or ("parts" not in header and len(body) != header.get("size", len(body))):
                path.unlink()  # a deferred write a crash cut short: nothing named its object yet
                continue
            _loaded(backend, header, body)
            self._drop_part_files(path, keep=set(header.get("parts", ())))
            completed.update(_upload_id_of(path.name, name) for name in header.get("parts", ()))
        for part in self.objects.glob("*/*.*.*") if self.objects.exists() else []:
            if not part.with_name(part.name.split(".", 1)[0]).exists():  # a crash before its header
                part.unlink()
        for (bucket, key), (generation, record) in self._last_logged_states().items():
            body = base64.b64decode(record["body"])  # the log's last state of the key: newer than its file
            _loaded(backend, record["object"], body)
            self._logged[bucket, key] = Logged(generation, record["object"], body)
        for folder in sorted(self.uploads.iterdir()) if self.uploads.exists() else []:
            if folder.name in completed:  # a crash before its drop (upload_completed)
                self._drop_upload(folder.name)
            else:
                self._load_upload(backend, folder)
        self._upgrade_mirror(backend)

    def _last_logged_states(self) -> dict[tuple[str, str], tuple[int, dict]]:
        """The keys whose last record in the loaded logs holds bytes (a later one says its file holds
        it); the records are let go."""
        states: dict[tuple[str, str], tuple[int, dict]] = {}
        for generation, record in self.journal.object_records if self.journal else []:
            name = (record["object"]["bucket"], record["object"]["key"])
            states.pop(name, None)
            if "body" in record:
                states[name] = (generation, record)
        if self.journal:
            self.journal.object_records = []
        return states

    def _make_folders(self) -> None:
        """All 256 object folders and the uploads folder, made durable once, at start, rather than by
        the first write into each (a directory fsync on that write's path)."""
        ensure_dir(self.uploads)
        missing = [self.objects / f"{n:02x}" for n in range(256) if not (self.objects / f"{n:02x}").exists()]
        ensure_dir(self.objects)
        for folder in missing:
            folder.mkdir()
        if missing:
            fsync_dir(self.objects)

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
            if part.name.endswith(".tmp"):  # written while a part was answered, which never was
                part.unlink()
            else:
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
      (moto computes a CRC64 in Python over a copy of every byte), and its parts' bytes are not
      copied at all (moto copied them five times): the object reads them where they are (JoinedParts).
    - moto reloads its S3 URL module (importlib.reload) on every in-process S3 request, to read
      MOTO_S3_CUSTOM_ENDPOINTS again; `mlreg serve` sets that once, before this: loaded once here.
    - moto's server lists its own package folder (a stat per service) for every request it serves,
      under a lock all requests share (a presigned part's PUT waited on the others'): listed once."""
    from moto import backends
    from moto.s3 import models
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, InvalidPartOrder, MalformedXML, NoSuchUpload

    def known_upload(method):
        def call(self, bucket_name, multipart_id, *args, **kwargs):
            if multipart_id not in self.get_bucket(bucket_name).multiparts:
                raise NoSuchUpload(upload_id=multipart_id)
            return method(self, bucket_name, multipart_id, *args, **kwargs)
        return call

    moto_complete = models.FakeMultipart.complete

    def complete(self, body):
        """S3's rules for a completion, as moto checks them, with no byte copied; an upload that asked
        for a checksum goes to moto's own."""
        if self.metadata.get("x-amz-checksum-algorithm"):
            return moto_complete(self, body)
        parts, numbers = [], []
        for number, etag in body:
            part = self.parts.get(number)
            if part is None or part.etag.strip('"') != etag.strip('"'):
                raise InvalidPart()
            if numbers and number <= numbers[-1]:  # as S3 (each part's buffer goes to the object once)
                raise InvalidPartOrder()
            numbers.append(number)
            if parts and parts[-1].contentsize < models.S3_UPLOAD_PART_MIN_SIZE:
                raise EntityTooSmall()
            parts.append(part)
        if not parts:
            raise MalformedXML()
        digests = b"".join(bytes.fromhex(p.etag.strip('"')) for p in parts)
        etag = f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"
        buffers = []
        for part in parts:  # moto disposes of the upload's parts next: their buffers go to the object
            with part.lock:
                buffers.append(part._value_buffer)
                part._value_buffer = tempfile.SpooledTemporaryFile()
        return JoinedParts(self.key_name, buffers, [p.contentsize for p in parts]), etag, None

    moto_value = models.FakeKey.value

    def set_value(self, value):
        """A completion's parts as they are; bytes that fit in memory in a BytesIO that shares them
        (moto's SpooledTemporaryFile copies them, and copies them again for the ETag and each read)."""
        if isinstance(value, JoinedParts):
            buffer, size = value, value.size
        elif type(value) is bytes and len(value) <= self._max_buffer_size:
            buffer, size = io.BytesIO(value), len(value)
        else:
            return moto_value.fset(self, value)
        self._value_buffer.close()
        self._value_buffer, self.contentsize = buffer, size

    patched = {(models.S3Backend, name): known_upload(getattr(models.S3Backend, name))
               for name in ("complete_multipart_upload", "upload_part", "upload_part_copy")}
    patched[(models.FakeMultipart, "complete")] = complete
    patched[(models.FakeKey, "value")] = moto_value.setter(set_value)
    urls = models.S3Backend._url_module.fget(None)  # reloaded now, with the endpoints as set
    patched[(models.S3Backend, "_url_module")] = property(lambda self: urls)
    services = tuple(backends.list_of_moto_modules())
    patched[(backends, "list_of_moto_modules")] = lambda: services
    originals = {(owner, name): getattr(owner, name) for owner, name in patched}
    for (owner, name), value in patched.items():
        setattr(owner, name, value)
    return lambda: [setattr(owner, name, value) for (owner, name), value in originals.items()]


def _chunks(fake_key) -> Iterator[bytes]:
    """A moto object's bytes: in memory, as they are; otherwise read piece by piece (no copy of the
    whole)."""
    with fake_key.lock:
        buffer = fake_key._value_buffer
        if isinstance(buffer, io.BytesIO):
            yield buffer.getvalue()  # the bytes it shares, not a copy
            return
        buffer.seek(0)
        while chunk := buffer.read(COPY_CHUNK):
            yield chunk


def _header(bucket: str, key: str, fake_key) -> dict:
    """The object's ETag only if moto has it already: a plain object's is the MD5 of its bytes, which
    moto takes when first asked (a load without it leaves it so), and a handler's put asks for it
    after the file is written, while its fsync runs (1 MB: 1.2 ms off the upload's path)."""
    header = {"bucket": bucket, "key": key, "metadata": dict(fake_key.metadata),
              "last_modified": fake_key.last_modified.isoformat(), "size": fake_key.size}
    return {**header, "etag": fake_key._etag.strip('"')} if fake_key._etag is not None else header


def _header_line(header: dict) -> bytes:
    return json.dumps(header).encode() + b"\n"


def _loaded(backend, header: dict, body) -> None:
    """A saved object back into moto, as it was answered."""
    obj = backend.put_object(header["bucket"], header["key"], body, etag=header.get("etag"))
    obj.set_metadata(header["metadata"])
    obj.last_modified = datetime.fromisoformat(header["last_modified"])


def _header_in(line: bytes) -> dict | None:
    """A saved object's header line; None for one a crash cut short."""
    try:
        return json.loads(line) if line.endswith(b"\n") else None
    except ValueError:
        return None


def _part_files(path: Path) -> list[Path]:
    """The part files named after an object's file (a plain listing: a glob compiles a pattern per name)."""
    if not path.parent.exists():
        return []
    prefix = path.name + "."
    return [path.parent / name for name in os.listdir(path.parent)
            if name.startswith(prefix) and not name.endswith(".tmp")]


def _linked_part_name(object_name: str, upload_id: str, number: int) -> str:
    """The name of a completed object's part file, beside the object's own file."""
    return f"{object_name}.{upload_id}.{number}"


def _upload_id_of(object_name: str, part_name: str) -> str:
    """The upload a completed object's part file came from (_linked_part_name, read back)."""
    return part_name.removeprefix(f"{object_name}.").rsplit(".", 1)[0]


def _write_synced(path: Path, body: bytes) -> None:
    """A part's file, durable, and not in the page cache (moto holds the part's bytes until the
    upload completes; a download after completion reads the part files from disk: 10 MB, +8 ms).
    Written around the page cache where the filesystem allows it (`_write_direct`), else through it
    and dropped from it once `fsync`'ed (journal.drop_cached)."""
    if _write_direct(path, body):
        return
    with open(path, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
        drop_cached(f.fileno())


def _write_direct(path: Path, body: bytes) -> bool:
    """`body` written to `path` with O_DIRECT and `fsync`'ed; False where the filesystem (tmpfs) or
    the system (macOS) has no direct I/O. The bytes go to disk from a buffer this thread keeps, not
    through new page-cache pages: on the team's VMs one part write in ten took 7-12 ms of CPU faulting
    in pages the host had taken back (1.5 ms otherwise), on the cores the part's MD5 needs."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    except (AttributeError, OSError):  # no os.O_DIRECT here; EINVAL: not on this filesystem
        return False
    try:
        buffer = _direct_buffer()
        for start in range(0, len(body), DIRECT_CHUNK):
            piece = memoryview(body)[start:start + DIRECT_CHUNK]
            padded = -(-len(piece) // DIRECT_BLOCK) * DIRECT_BLOCK  # whole blocks; the file is cut to size below
            buffer[:len(piece)] = piece
            buffer[len(piece):padded] = bytes(padded - len(piece))
            with memoryview(buffer)[:padded] as aligned:
                written = 0
                while written < padded:
                    written += os.write(fd, aligned[written:])
        os.ftruncate(fd, len(body))
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _direct_buffer() -> mmap.mmap:
    """This thread's page-aligned buffer for direct writes, kept (its pages stay in place)."""
    if not hasattr(_DIRECT_BUFFERS, "buffer"):
        _DIRECT_BUFFERS.buffer = mmap.mmap(-1, DIRECT_CHUNK)
    return _DIRECT_BUFFERS.buffer


def _holds(fake_key, body: bytes) -> bool:
    """moto's part holds these very bytes (its value shares them: patch_moto_s3)."""
    buffer = fake_key._value_buffer
    return isinstance(buffer, io.BytesIO) and buffer.getvalue() is body


def _part_numbers_in(request_body) -> list[int]:
    """The part numbers a CompleteMultipartUpload request names, in its order."""
    if not request_body:
        return []
    root = ElementTree.fromstring(request_body)
    return [int(e.text or 0) for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "PartNumber"]


def _with_header(header: dict, fake_key) -> Iterator[bytes]:
    yield _header_line(header)
    yield from _chunks(fake_key)


def _upload_id_in(response_body) -> str:
    text = response_body.decode() if isinstance(response_body, bytes) else response_body
    return text.split("<UploadId>", 1)[1].split("</UploadId>", 1)[0]


def _keys_in(request_body) -> list[str]:
    """The keys a DeleteObjects request names."""
    root = ElementTree.fromstring(request_body)
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Key"]
