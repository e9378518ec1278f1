"""The emulator's reader/writer lock over moto's DynamoDB (mlreg.emulator.guard_dynamodb): reads run
together, writes take turns, and concurrent clients see what DynamoDB would show them: never half
of a transaction, never a lost conditional update, never moto's "dictionary changed size"."""

from __future__ import annotations

import os
import sys
import threading

import boto3
import pytest
from botocore.exceptions import ClientError

from mlreg import moto_speedups
from mlreg.emulator import ReadWriteLock, guard_dynamodb
from mlreg.journal import Journal

TABLE = os.environ["MLREG_TABLE"]


@pytest.fixture
def guarded(aws, tmp_path):
    """moto as `mlreg serve` runs it: patched, locked, journaled."""
    journal = Journal(tmp_path, ("pk", "sk"))
    journal.load()
    with moto_speedups.installed():
        undo = guard_dynamodb(journal, TABLE)
        try:
            yield boto3.client("dynamodb"), journal
        finally:
            undo()
            journal.close()


def run_all(*targets) -> list[BaseException]:
    """Runs the targets in threads that switch often (races show up in a few hundred requests)."""
    errors: list[BaseException] = []

    def guarded_target(target):
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded_target, args=(t,)) for t in targets]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    return errors


def pair(value: int) -> list[dict]:
    return [{"Put": {"TableName": TABLE, "Item": {"pk": {"S": "pair"}, "sk": {"S": side}, "n": {"N": str(value)},
                                                   "g1pk": {"S": "pairs"}, "g1sk": {"S": side}}}}
            for side in ("a", "b")]


def test_readers_never_see_half_a_transaction(guarded):
    ddb, _ = guarded
    ddb.transact_write_items(TransactItems=pair(0))
    done = threading.Event()
    keys = [{"pk": {"S": "pair"}, "sk": {"S": side}} for side in ("a", "b")]
    seen = []

    def writer():
        for value in range(1, 150):
            ddb.transact_write_items(TransactItems=pair(value))
        done.set()

    def reader():
        while not done.is_set():
            got = ddb.batch_get_item(RequestItems={TABLE: {"Keys": keys}})["Responses"][TABLE]
            by_query = ddb.query(TableName=TABLE, KeyConditionExpression="pk = :p",
                                 ExpressionAttributeValues={":p": {"S": "pair"}})["Items"]
            by_index = ddb.query(TableName=TABLE, IndexName="gsi1", KeyConditionExpression="g1pk = :p",
                                 ExpressionAttributeValues={":p": {"S": "pairs"}})["Items"]
            ddb.get_item(TableName=TABLE, Key={"pk": {"S": f"missing-{len(seen)}"}, "sk": {"S": "x"}})
            for items in (got, by_query, by_index):
                seen.append({i["n"]["N"] for i in items})

    assert run_all(writer, reader, reader, reader) == []
    assert seen and all(len(values) == 1 for values in seen), [v for v in seen if len(v) > 1][:5]


def test_conditional_increments_from_many_threads_are_never_lost(guarded):
    ddb, journal = guarded
    key = {"pk": {"S": "counter"}, "sk": {"S": "c"}}
    ddb.put_item(TableName=TABLE, Item={**key, "n": {"N": "0"}})

    def increment_50_times():
        done = 0
        while done < 50:
            current = ddb.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]["n"]["N"]
            try:
                ddb.update_item(TableName=TABLE, Key=key, UpdateExpression="SET n = :new",
                                ConditionExpression="n = :old", ExpressionAttributeValues={
                                    ":new": {"N": str(int(current) + 1)}, ":old": {"N": current}})
                done += 1
            except ClientError as err:
                assert err.response["Error"]["Code"] == "ConditionalCheckFailedException"

    assert run_all(*[increment_50_times] * 6) == []
    assert ddb.get_item(TableName=TABLE, Key=key)["Item"]["n"]["N"] == "300"
    journal.close()
    reloaded = Journal(journal.snapshot_path.parent, ("pk", "sk"))
    assert {reloaded.key(i): i["n"]["N"] for i in reloaded.load()}[("counter", "c")] == "300"
    reloaded.close()


def test_reads_run_together_and_a_waiting_writer_holds_back_new_readers():
    lock, order = ReadWriteLock(), []
    first_in, release_first = threading.Event(), threading.Event()

    def reader(name: str, hold: threading.Event | None = None):
        def read():
            with lock.reading():
                order.append(f"{name} in")
                if hold:
                    first_in.set()
                    hold.wait()
                order.append(f"{name} out")
        return read

    def writer():
        with lock.writing():
            order.append("writer in")

    def second_reader_while_the_first_holds():
        first_in.wait()
        reader("reader 2")()
        release_first.set()

    assert run_all(reader("reader 1", release_first), second_reader_while_the_first_holds) == []
    assert order.index("reader 2 out") < order.index("reader 1 out")  # they overlapped

    order.clear()
    first_in.clear()
    release_first.clear()
    holder = threading.Thread(target=reader("reader 1", release_first))
    holder.start()
    first_in.wait()
    queued = threading.Thread(target=writer)
    queued.start()
    while not lock._writers_waiting:  # the writer waits for the first reader
        threading.Event().wait(0.01)
    late = threading.Thread(target=reader("late reader"))
    late.start()
    release_first.set()
    for thread in (holder, queued, late):
        thread.join()
    assert order.index("reader 1 out") < order.index("writer in") < order.index("late reader in")


def test_stream_reader_hands_over_wanted_records_in_order_and_passes_over_the_rest(guarded, tmp_path):
    """The local consumers' view of the stream (mlreg.emulator.StreamReader): in order after a
    sequence number, only what the consumer wants, each as the Streams API gives it, and the
    position read up to moves past the records passed over."""
    from mlreg.emulator import DurableReads, StreamReader
    from shared import keys

    ddb, journal = guarded
    reader = StreamReader(DurableReads(journal), TABLE, os.environ["AWS_DEFAULT_REGION"])
    start = reader.latest()
    for pk in ("P#p#R#run1", "P#p#M#model1", "P#p#R#run2", "P#p#M#model2", "P#p#R#run3"):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": pk}, "sk": {"S": "#M"}, "n": {"N": "1"}})

    def wants(record):
        return keys.MODEL_PARTITION.match(record["dynamodb"]["Keys"]["pk"]["S"]) is not None

    first, after = reader.read(start, 1, wants)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in first] == ["P#p#M#model1"]
    assert first[0]["eventName"] == "INSERT" and first[0]["dynamodb"]["NewImage"]["n"] == {"N": "1"}
    rest, end = reader.read(after, 10, wants)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in rest] == ["P#p#M#model2"]
    assert end == reader.latest() and reader.read(end, 10, wants) == ([], end)
    rest[0]["dynamodb"]["NewImage"]["n"] = {"N": "2"}  # the consumer's copy: the stream keeps its own
    assert reader.read(after, 10, wants)[0][0]["dynamodb"]["NewImage"]["n"] == {"N": "1"}


def test_stream_reader_trims_what_every_follower_handled(guarded):
    """moto keeps every stream record in memory: trim() drops those all consumers are done with, and
    reading goes on after them, new records numbered on."""
    from types import SimpleNamespace

    from mlreg.emulator import DurableReads, StreamReader

    ddb, journal = guarded
    reader = StreamReader(DurableReads(journal), TABLE, os.environ["AWS_DEFAULT_REGION"])

    def put(n: int):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"P#p#M#m{n}"}, "sk": {"S": "#M"}})

    def everything(record):
        return True

    put(0)
    ahead, behind = SimpleNamespace(handled=None), SimpleNamespace(handled=None)
    reader.followers += [ahead, behind]
    assert reader.trim() == 0  # a follower that has read nothing yet holds everything
    for n in range(1, 4):
        put(n)
    records, last = reader.read(None, 10, everything)
    sequence = [r["dynamodb"]["SequenceNumber"] for r in records]
    ahead.handled, behind.handled = sequence[3], sequence[1]
    assert reader.trim() == 2  # up to the slower follower
    rest, _ = reader.read(behind.handled, 10, everything)
    assert [r["dynamodb"]["SequenceNumber"] for r in rest] == sequence[2:]
    put(4)
    newest, _ = reader.read(last, 10, everything)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in newest] == ["P#p#M#m4"]
    assert int(newest[0]["dynamodb"]["SequenceNumber"]) == int(last) + 1


def test_objects_that_survive_a_full_collection_are_frozen_until_the_emulator_stops():
    """mlreg.emulator.freeze_survivors: full collections walk only what is newer than the last
    one (the table's millions of objects made each take seconds); stopping gives everything back."""
    import gc

    from mlreg.emulator import freeze_survivors, thaw_survivors

    freeze_survivors()
    try:
        frozen = gc.get_freeze_count()
        kept = [[i] for i in range(1000)]  # long-lived containers, like the table's items
        gc.collect()
        assert gc.get_freeze_count() >= frozen + len(kept)
        assert not {id(k) for k in kept} & {id(o) for o in gc.get_objects(generation=2)}  # out of sight
    finally:
        thaw_survivors()
    assert gc.get_freeze_count() == 0


def test_a_cycle_that_dies_while_frozen_is_freed_by_the_next_reclaim():
    import gc
    import weakref

    from mlreg.emulator import freeze_survivors, reclaim_frozen, thaw_survivors

    class Node:
        pass

    freeze_survivors()
    try:
        node = Node()
        node.self = node  # a reference cycle: only a full collection frees it
        gone = weakref.ref(node)
        gc.collect()  # it survives, so it is frozen
        del node
        gc.collect()
        assert gone() is not None  # out of the collector's sight while frozen
        reclaim_frozen()
        assert gone() is None
    finally:
        thaw_survivors()


def test_a_write_is_journaled_only_after_the_objects_before_it_are_durable(aws, tmp_path):
    """`before_journal` (the emulator's ObjectFiles.flush) runs for every write that changes an item,
    before its journal record exists; never for reads or writes that changed nothing."""
    journal = Journal(tmp_path, ("pk", "sk"))
    journal.load()
    flushed_at = []
    with moto_speedups.installed():
        undo = guard_dynamodb(journal, TABLE, before_journal=lambda: flushed_at.append(journal.appended))
        try:
            ddb = boto3.client("dynamodb")
            ddb.put_item(TableName=TABLE, Item={"pk": {"S": "p"}, "sk": {"S": "s"}})
            ddb.get_item(TableName=TABLE, Key={"pk": {"S": "p"}, "sk": {"S": "s"}})
            with pytest.raises(ClientError):
                ddb.put_item(TableName=TABLE, Item={"pk": {"S": "p"}, "sk": {"S": "s"}},
                             ConditionExpression="attribute_not_exists(pk)")
            ddb.transact_write_items(TransactItems=pair(1))
            assert len(flushed_at) == 2 and flushed_at[1] > flushed_at[0]  # each before its own record
            assert journal.appended > flushed_at[1]
        finally:
            undo()
            journal.close()
