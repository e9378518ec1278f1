"""Durability of the emulated table: a write-ahead log of the item images every committed write
leaves, fsync'ed before the write is answered, and folded into a snapshot now and then.

In the data directory:
  table.json       the snapshot: {"generation": G, "items": [...]} (items in DynamoDB's JSON wire
                   format, binary values base64; an older mlreg wrote a bare list: generation 0)
  wal/<G>.log      one record per committed write after that snapshot began: `<crc32> <json>\\n`,
                   json = [[key, item or null], ...] (null: the item is gone); or an object's
                   record (mlreg/objects.py): {"object": header, "body": bytes} for a small object a
                   handler wrote, whose log record is its only copy until a fold writes its file, or
                   {"object": {"bucket", "key"}} once its file holds its state again

Loading takes the snapshot, then every log from its generation on, in order. A record cut short by
a crash (no newline, or a checksum that does not match) ends its log: its write was never answered,
because an answer waits for the fsync that covers its record and every record before it.

Group commit: writers append under the table's write lock, then wait outside it until an fsync
covers them, so concurrent writers share fsyncs. Readers wait the same way for every write they
could have seen: nothing is shown that a crash could take back."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Iterator

SNAPSHOT = "table.json"
LOGS = "wal"
_LOG_NAME = re.compile(r"^(\d{8})\.log$")


def _b64(value) -> str:
    """Binary values as DynamoDB's wire format has them: base64 text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot save {type(value).__name__}")


def _legacy_b64(obj: dict):
    """Binary values as an older mlreg saved them: {"__b64__": ...} in place of the value."""
    return base64.b64decode(obj["__b64__"]) if len(obj) == 1 and "__b64__" in obj else obj


def dumps(value) -> str:
    return json.dumps(value, default=_b64, separators=(",", ":"))


def loads(data: bytes):
    return json.loads(data, object_hook=_legacy_b64 if b'"__b64__"' in data else None)


def fsync_dir(path: Path) -> None:
    """A rename or unlink is durable once its directory is."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """A directory that will still be there after a crash: created with any missing parents, each
    new entry fsync'ed into its parent."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        fsync_dir(directory.parent)


def drop_cached(fd: int) -> None:
    """A file's pages out of the page cache, once it is on disk: nothing reads them back but a start
    or a fold (moto holds plain objects in memory), and a page just freed is cheap to write into
    again, where a page never touched costs a fault on the host of a VM that hands freed memory back
    (ours do: 1 MB took 2.6 ms to write into new pages, 0.1 ms into freed ones)."""
    if hasattr(os, "posix_fadvise"):  # not on macOS
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def atomic_write(path: Path, chunks: Iterator[bytes] | bytes, entries_first: bool = False) -> None:
    """Write-to-temp, fsync, rename, fsync the directory: the file is the old one or the new one.
    `entries_first`: the directory's entries made just before (files the new one names) are made
    durable before it appears (one more directory fsync; on ext4 it rides on the file's own commit)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
        drop_cached(f.fileno())
    if entries_first:
        fsync_dir(path.parent)
    os.replace(tmp, path)
    fsync_dir(path.parent)


class Journal:
    def __init__(self, data_dir: Path, key_names: tuple[str, ...]):
        self.snapshot_path, self.log_dir = data_dir / SNAPSHOT, data_dir / LOGS
        self.key_names = key_names
        self.generation = 0  # of the log being appended to
        self.appended = 0  # records written (under the table's write lock)
        self._durable = 0  # records an fsync has covered
        self._fd: int | None = None
        self._sync = threading.Lock()
        self._append = threading.Lock()  # objects' records come from S3 requests, outside the table's lock
        self.object_records: list[tuple[int, dict]] = []  # after load: (log generation, record), in order

    def key(self, item: dict) -> tuple:
        return tuple(next(iter(item[name].values())) for name in self.key_names)

    # -- loading --
    def load(self) -> list[dict]:
        """Every item as of the last answered write; then opens a fresh log to append to."""
        generation, items = self._snapshot()
        by_key = {self.key(item): item for item in items}
        last = generation
        for log_generation, path in self._logs():
            if log_generation >= generation:
                self._replay(path, by_key, log_generation)
                last = log_generation
        self._open(last + 1)
        return list(by_key.values())

    def _snapshot(self) -> tuple[int, list[dict]]:
        if not self.snapshot_path.exists():
            return 0, []
        data = self.snapshot_path.read_bytes()
        if b'"__b64__"' not in data and (parsed := _items_one_by_one(data.decode())):
            return parsed
        saved = loads(data)
        return (0, saved) if isinstance(saved, list) else (saved["generation"], saved["items"])

    def _logs(self) -> list[tuple[int, Path]]:
        if not self.log_dir.exists():
            return []
        found = ((_LOG_NAME.match(p.name), p) for p in self.log_dir.iterdir())
        return sorted((int(m.group(1)), p) for m, p in found if m)

    def _replay(self, path: Path, by_key: dict, generation: int | None = None) -> None:
        """The table's records into `by_key`; objects' records into `object_records` when loading
        (`generation`: the log's), skipped by a fold (the objects' files were written before it)."""
        for record in records(path):
            if isinstance(record, dict):
                if generation is not None:
                    self.object_records.append((generation, record))
                continue
            for key, item in record:
                if item is None:
                    by_key.pop(self.key(key), None)
                else:
                    by_key[self.key(key)] = item

    # -- appending --
    def _open(self, generation: int) -> None:
        ensure_dir(self.log_dir)
        self._fd = os.open(self.log_dir / f"{generation:08d}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.generation = generation
        fsync_dir(self.log_dir)

    def append(self, changes: list[tuple[dict, dict | None]]) -> int:
        """Called under the table's write lock, in commit order; returns the record's number."""
        return self._write(dumps(changes).encode())[0]

    def append_object(self, record: dict) -> tuple[int, int]:
        """An object's record (mlreg/objects.py); returns its number and its log's generation."""
        return self._write(dumps(record).encode())

    def _write(self, line: bytes) -> tuple[int, int]:
        data = b"%08x %s\n" % (zlib.crc32(line), line)
        with self._append:
            while data:
                data = data[os.write(self._fd, data):]
            self.appended += 1
            return self.appended, self.generation

    def wait(self, record: int) -> None:
        """Returns once an fsync covers `record` and everything before it (one fsync for all waiting)."""
        if self._durable >= record:
            return
        with self._sync:
            if self._durable >= record:
                return
            covered = self.appended  # written before this fsync starts, so covered by it
            os.fsync(self._fd)
            self._durable = covered

    def close(self) -> None:
        with self._sync, self._append:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._durable, self._fd = self.appended, None

    # -- compaction --
    def log_bytes(self) -> int:
        return sum(p.stat().st_size for _, p in self._logs())

    def snapshot_bytes(self) -> int:
        return self.snapshot_path.stat().st_size if self.snapshot_path.exists() else 0

    def rotate(self) -> int:
        """Start the next log; call under the table's write lock. Returns the new generation: every
        record before it is in an older log, fsync'ed."""
        with self._sync, self._append:
            os.fsync(self._fd)
            os.close(self._fd)
            self._durable = self.appended
            self._open(self.generation + 1)
        return self.generation

    def fold(self, generation: int) -> None:
        """Snapshot + the logs before `generation` -> a new snapshot of that generation; those logs go.
        Reads files only, so the table keeps serving meanwhile."""
        old_generation, items = self._snapshot()
        by_key = {self.key(item): item for item in items}
        done = [(g, p) for g, p in self._logs() if g < generation]
        for log_generation, path in done:
            if log_generation >= old_generation:
                self._replay(path, by_key)
        atomic_write(self.snapshot_path, _snapshot_chunks(generation, by_key.values()))
        for _, path in done:
            path.unlink()
        fsync_dir(self.log_dir)


    def fold_aside(self, generation: int) -> None:
        """`fold(generation)` in a child process on Linux: its parse and dump of the whole table (1-5 s
        of CPU at 5,000 runs) take another core, at the lowest priority, instead of this process's
        GIL, which the requests need. The child dies with this process (the parent-death signal, set
        before it reads a file; it follows the thread that started it, which waits for it here), so
        it cannot replace the snapshot under a service started after this one. Elsewhere, or if the
        child cannot run, the fold runs here."""
        if sys.platform == "linux":
            command = [sys.executable, "-m", "mlreg.journal", str(self.snapshot_path.parent), str(generation),
                       str(os.getpid()), *self.key_names]
            if subprocess.run(command, stdin=subprocess.DEVNULL).returncode == 0:
                return
        self.fold(generation)


PR_SET_PDEATHSIG = 1  # linux/prctl.h
FOLD_NICENESS = 19  # the lowest CPU priority


def _fold_as_child(data_dir: str, generation: str, parent: str, *key_names: str) -> int:
    """The child of `fold_aside`: killed when its parent dies; gone at once if that already happened."""
    import ctypes
    import signal

    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() != int(parent):
        return 1
    os.nice(FOLD_NICENESS)  # upkeep: the CPU goes to the requests (and their clients) first
    Journal(Path(data_dir), key_names).fold(int(generation))
    return 0


_SNAPSHOT_ITEMS = re.compile(r'\{"generation":(\d+),"items":\[')


def _items_one_by_one(text: str) -> tuple[int, list[dict]] | None:
    """A snapshot as _snapshot_chunks writes it, parsed item by item (None: not in that shape): one
    json.loads of the whole holds the GIL throughout (2.1 s for 30 MB), and a fold runs beside the
    requests it would stall (longest stall measured: 461 ms whole, 65 ms item by item)."""
    head = _SNAPSHOT_ITEMS.match(text)
    if head is None:
        return None
    decoder, items, at = json.JSONDecoder(), [], head.end()
    while text[at] != "]":
        item, at = decoder.raw_decode(text, at)
        items.append(item)
        at += text[at] == ","
    return int(head.group(1)), items


def _snapshot_chunks(generation: int, items) -> Iterator[bytes]:
    yield b'{"generation":%d,"items":[' % generation
    for i, item in enumerate(items):
        yield (b"," if i else b"") + dumps(item).encode()
    yield b"]}"


def records(path: Path) -> Iterator[list]:
    """The whole records of a log, in order; stops at the first torn one."""
    with open(path, "rb") as f:
        for line in f:
            checksum, _, body = line.partition(b" ")
            if not line.endswith(b"\n") or checksum != b"%08x" % zlib.crc32(body[:-1]):
                return
            yield loads(body)


if __name__ == "__main__":
    sys.exit(_fold_as_child(*sys.argv[1:]))
