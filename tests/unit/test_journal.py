"""The emulator's write-ahead log (mlreg/journal.py): what it loads after a crash at any point of
appending or folding, and the snapshots of an older mlreg."""

from __future__ import annotations

import json
import threading

from mlreg.journal import Journal, records

KEY = ("pk", "sk")


def item(pk: str, sk: str, **attrs) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}, **{k: {"S": v} for k, v in attrs.items()}}


def key_of(full: dict) -> dict:
    return {k: full[k] for k in KEY}


def write(journal: Journal, *changes) -> None:
    journal.wait(journal.append(list(changes)))


def reopened(data_dir) -> dict:
    journal = Journal(data_dir, KEY)
    loaded = {journal.key(i): i for i in journal.load()}
    journal.close()
    return loaded


def test_every_written_image_is_loaded_in_order(tmp_path):
    journal = Journal(tmp_path, KEY)
    assert journal.load() == []
    write(journal, (key_of(item("a", "1")), item("a", "1", v="one")), (key_of(item("a", "2")), item("a", "2")))
    write(journal, (key_of(item("a", "1")), item("a", "1", v="two")))
    write(journal, (key_of(item("a", "2")), None))
    write(journal, (key_of(item("b", "1")), {**item("b", "1"), "bin": {"B": b"\x00\xff"}}))
    # no close: a crash
    assert reopened(tmp_path) == {("a", "1"): item("a", "1", v="two"),  # binary as on the wire: base64
                                  ("b", "1"): {**item("b", "1"), "bin": {"B": "AP8="}}}


def test_a_record_cut_short_by_a_crash_ends_its_log(tmp_path):
    journal = Journal(tmp_path, KEY)
    journal.load()
    write(journal, (key_of(item("a", "1")), item("a", "1", v="kept")))
    write(journal, (key_of(item("a", "2")), item("a", "2")))
    log = tmp_path / "wal" / f"{journal.generation:08d}.log"
    whole = log.read_bytes()
    for cut in (len(whole) - 1, len(whole) - 10):  # the last record without its newline, or half of it
        log.write_bytes(whole[:cut])
        assert reopened(tmp_path) == {("a", "1"): item("a", "1", v="kept")}
    corrupted = whole.replace(b'"kept"', b'"kep!"')
    log.write_bytes(corrupted)
    assert reopened(tmp_path) == {}  # a record that fails its checksum, and everything after it in that log
    assert len(list(records(log))) == 0


def test_logs_after_a_torn_one_still_load(tmp_path):
    """A restart after a crash appends to a new log: the torn tail of the old one stays behind it."""
    journal = Journal(tmp_path, KEY)
    journal.load()
    write(journal, (key_of(item("a", "1")), item("a", "1")))
    with open(tmp_path / "wal" / f"{journal.generation:08d}.log", "ab") as log:
        log.write(b"0000 {half")
    again = Journal(tmp_path, KEY)
    again.load()
    write(again, (key_of(item("a", "2")), item("a", "2")))
    assert set(reopened(tmp_path)) == {("a", "1"), ("a", "2")}


def test_folding_keeps_every_item_whenever_it_is_interrupted(tmp_path, monkeypatch):
    journal = Journal(tmp_path, KEY)
    journal.load()
    for i in range(50):
        write(journal, (key_of(item("p", f"{i:03d}")), item("p", f"{i:03d}", v=str(i))))
    expected = reopened(tmp_path)
    generation = journal.rotate()
    write(journal, (key_of(item("p", "000")), None))  # in the new log, after the rotation
    expected.pop(("p", "000"))

    # Crash after the new snapshot is in place, before the old logs are removed: they are skipped.
    from mlreg import journal as module

    original_unlink = module.Path.unlink
    monkeypatch.setattr(module.Path, "unlink", lambda self, *a, **k: (_ for _ in ()).throw(OSError("crash")))
    try:
        journal.fold(generation)
    except OSError:
        pass
    monkeypatch.setattr(module.Path, "unlink", original_unlink)
    assert json.loads((tmp_path / "table.json").read_text())["generation"] == generation
    assert reopened(tmp_path) == expected

    journal.fold(generation)  # the next fold finishes the job
    assert min(int(p.stem) for p in (tmp_path / "wal").iterdir()) == generation
    assert reopened(tmp_path) == expected


def test_a_fold_that_never_wrote_its_snapshot_changes_nothing(tmp_path, monkeypatch):
    journal = Journal(tmp_path, KEY)
    journal.load()
    write(journal, (key_of(item("a", "1")), item("a", "1")))
    generation = journal.rotate()
    from mlreg import journal as module

    monkeypatch.setattr(module.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("crash")))
    try:
        journal.fold(generation)
    except OSError:
        pass
    monkeypatch.undo()
    assert reopened(tmp_path) == {("a", "1"): item("a", "1")}


def test_a_snapshot_of_an_older_mlreg_is_generation_zero(tmp_path):
    (tmp_path / "table.json").write_text(json.dumps([item("old", "1"), {**item("old", "2"),
                                                                         "b": {"B": {"__b64__": "AP8="}}}]))
    journal = Journal(tmp_path, KEY)
    assert {journal.key(i): i for i in journal.load()} == {
        ("old", "1"): item("old", "1"), ("old", "2"): {**item("old", "2"), "b": {"B": b"\x00\xff"}}}
    write(journal, (key_of(item("old", "1")), None))
    journal.close()
    assert set(reopened(tmp_path)) == {("old", "2")}


def test_concurrent_writers_all_land(tmp_path):
    """Group commit: each waits for an fsync that covers its record, whoever runs it."""
    journal = Journal(tmp_path, KEY)
    journal.load()
    lock = threading.Lock()  # the table's write lock: appends in commit order

    def writer(n: int) -> None:
        for i in range(50):
            with lock:
                record = journal.append([(key_of(item(f"w{n}", f"{i:03d}")), item(f"w{n}", f"{i:03d}"))])
            journal.wait(record)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reopened(tmp_path)) == 400
    assert journal.appended == 400


def test_a_snapshot_loads_item_by_item_with_awkward_text(tmp_path):
    """The snapshot is parsed one item at a time (a fold must not hold the GIL for seconds): items
    whose text holds brackets, commas, quotes and the snapshot's own head load as written."""
    journal = Journal(tmp_path, KEY)
    journal.load()
    tricky = ['],[', '{"generation":1,"items":[', '"\\,', "ünï ]}"]
    written = [item("p", str(n), v=text) for n, text in enumerate(tricky)] + \
              [{**item("p", "b"), "blob": {"B": b"\x00]"}}, {**item("p", "n"), "m": {"M": {"a": {"L": []}}}}]
    write(journal, *[(key_of(i), i) for i in written])
    journal.fold(journal.rotate())
    journal.close()
    assert (tmp_path / "table.json").read_bytes().startswith(b'{"generation":')
    loaded = reopened(tmp_path)
    assert loaded == {Journal(tmp_path, KEY).key(i): {**i, **({"blob": {"B": "AF0="}} if "blob" in i else {})}
                      for i in written}


def test_a_fold_aside_runs_in_a_child_that_lives_only_as_long_as_its_parent(tmp_path, monkeypatch):
    """The fold's CPU goes to another process (Linux); a child whose parent is not the one that
    started the fold (it died: a new service may own the files now) touches nothing."""
    import os
    import subprocess
    import sys

    journal = Journal(tmp_path, KEY)
    journal.load()
    for i in range(20):
        write(journal, (key_of(item("p", f"{i:02d}")), item("p", f"{i:02d}", v=str(i))))
    expected, generation = reopened(tmp_path), journal.rotate()
    if sys.platform == "linux":
        orphan = [sys.executable, "-m", "mlreg.journal", str(tmp_path), str(generation), str(os.getpid() + 1), *KEY]
        assert subprocess.run(orphan, cwd=tmp_path).returncode == 1
        assert not (tmp_path / "table.json").exists()
        monkeypatch.setattr(Journal, "fold", lambda *_: (_ for _ in ()).throw(AssertionError("folded here")))
    journal.fold_aside(generation)
    assert json.loads((tmp_path / "table.json").read_text())["generation"] == generation
    assert min(int(p.stem) for p in (tmp_path / "wal").iterdir()) == generation
    monkeypatch.undo()
    assert reopened(tmp_path) == expected
