"""Log-first durability: a pass's messages are in the message log (fdatasynced) before
anyone receives them; SQLite gets them in batches; a crash between the two loses
nothing (chat.journal, chat.store)."""

from __future__ import annotations

import marshal
import signal
import sqlite3
import struct
import zlib

import pytest
from wire import Wire, connect

from chat.errors import StoreError
from chat.journal import MAGIC
from chat.store import LOG_SUFFIX, Store


def in_sqlite(path) -> list[int]:
    """The message ids another program reads from the database file (committed only)."""
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT id FROM messages ORDER BY id")]


def add(store: Store, text: str) -> int:
    return store.add(1_700_000_000_000, "alice", text, room_key="general",
                     room_name="general")


def with_logged(tmp_path, count: int) -> tuple[str, Store, list[int]]:
    """A store whose room is in SQLite (id 1) and ``count`` messages in the log only."""
    path = str(tmp_path / "chat.db")
    store = Store(path)
    add(store, "room made")  # a new room: its pass commits to SQLite
    store.commit()
    ids = [add(store, f"m{i}") for i in range(count)]
    store.commit()
    return path, store, ids


def test_a_pass_of_messages_goes_to_the_log_and_sqlite_gets_them_in_a_batch(tmp_path):
    path = str(tmp_path / "chat.db")
    store = Store(path)
    add(store, "first")  # a new room: its pass commits to SQLite
    assert store.commit()
    ids = [add(store, f"m{i}") for i in range(5)]
    assert store.commit()
    ids += [add(store, "more")]
    assert store.commit()
    assert in_sqlite(path) == [1]  # the two passes are in the log only
    log = (tmp_path / ("chat.db" + LOG_SUFFIX)).read_bytes()
    assert log.startswith(MAGIC) and b"m4" in log and b"more" in log
    store.fill()
    assert store.commit()
    assert in_sqlite(path) == [1, *ids]
    assert (tmp_path / ("chat.db" + LOG_SUFFIX)).read_bytes() == MAGIC  # emptied
    store.close()


def test_reads_see_logged_messages_and_a_crash_replays_the_log_tail(tmp_path):
    path, store, ids = with_logged(tmp_path, 3)
    assert [r.text for r in store.latest("general", limit=10)[0]] == [
        "room made", "m0", "m1", "m2"]  # read through the open batch
    ids.append(add(store, "joined the batch"))
    store.commit()  # the read opened SQLite's batch: this pass commits it
    assert in_sqlite(path) == [1, *ids]
    logged = [add(store, "in the log"), add(store, "only")]
    store.commit()
    assert in_sqlite(path) == [1, *ids]
    ids += logged
    # a crash: the process is gone without closing; a new one opens the files
    again = Store(path)
    assert again.replayed == 2
    assert in_sqlite(path) == [1, *ids]
    assert again.last_id == ids[-1]
    assert add(again, "after") == ids[-1] + 1
    again.commit()
    again.close()
    assert in_sqlite(path) == [1, *ids, ids[-1] + 1]


def test_a_torn_append_is_ignored_and_written_over(tmp_path):
    path = str(tmp_path / "chat.db")
    store = Store(path)
    add(store, "room made")
    store.commit()
    kept = add(store, "kept")
    store.commit()
    log = tmp_path / ("chat.db" + LOG_SUFFIX)
    with open(log, "ab") as f:  # a record cut short by a crash in the middle of it
        f.write(struct.pack("<II", 500, 0) + b"[(99, 1, 'general'")
    again = Store(path)
    assert again.replayed == 1 and in_sqlite(path) == [1, kept]
    add(again, "next")
    again.commit()
    assert not log.read_bytes().endswith(b"'general'")  # no torn bytes after a reset
    again.close()
    third = Store(path)
    assert [r.text for r in third.latest("general", limit=9)[0]] == ["room made", "kept",
                                                                      "next"]
    third.close()


def test_a_file_that_is_not_a_log_is_refused_and_never_overwritten(tmp_path):
    log = tmp_path / ("chat.db" + LOG_SUFFIX)
    log.write_bytes(b"someone's notes\n")
    with pytest.raises(StoreError, match="not a lanchat message log"):
        Store(str(tmp_path / "chat.db"))
    assert log.read_bytes() == b"someone's notes\n"


def test_a_whole_record_that_does_not_load_is_refused_not_skipped(tmp_path):
    log = tmp_path / ("chat.db" + LOG_SUFFIX)
    body = marshal.dumps([(1, 2, [3])], 4)  # checksummed, but not rows
    log.write_bytes(MAGIC + struct.pack("<II", len(body), zlib.crc32(body)) + body)
    with pytest.raises(StoreError, match="cannot read"):
        Store(str(tmp_path / "chat.db"))
    assert log.read_bytes().endswith(body)  # kept for whoever can read it


def test_a_failed_sqlite_batch_keeps_the_logged_messages(tmp_path):
    path, store, logged = with_logged(tmp_path, 3)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    with pytest.raises(StoreError):
        store.fill()  # SQLite's batch cannot start: passes commit to SQLite meanwhile
    add(store, "refused")
    with pytest.raises(StoreError):
        store.commit()  # (so that nothing more waits in the log while SQLite fails)
    store.rollback()  # the pass is forgotten, the logged messages are not
    locker.execute("ROLLBACK")
    locker.close()
    store.fill()
    store.commit()
    assert in_sqlite(path) == [1, *logged]
    assert add(store, "next") == logged[-1] + 1  # the refused one's id is used again
    store.close()


def test_kill_9_between_the_log_and_the_sqlite_batch_loses_nothing(start_server, tmp_path):
    """The server is stopped (SIGSTOP) right after the echoes, checked to hold
    acknowledged messages in its log that SQLite does not have, then killed."""
    db = tmp_path / "crash.db"
    first = start_server("--rate", "0", db=db)
    a = connect(first.port, "alice")
    a.send(type="send", room="general", text="the room")
    acked = [a.until("message")["id"]]
    for attempt in range(20):  # SQLite's batch may land in between: send again
        for i in range(50):
            a.send(type="send", room="general", text=f"m{attempt}.{i}")
        acked += [a.until("message")["id"] for _ in range(50)]
        first.proc.send_signal(signal.SIGSTOP)
        if in_sqlite(db)[-1:] != acked[-1:]:
            break
        first.proc.send_signal(signal.SIGCONT)
    else:
        pytest.fail("SQLite had every message each time: no kill between the two")
    try:
        assert len(in_sqlite(db)) < len(acked)
        log = (tmp_path / ("crash.db" + LOG_SUFFIX)).read_bytes()
        assert f"m{attempt}.49".encode() in log  # on disk in the log only
    finally:
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(5)
    second = start_server("--rate", "0", "--history", "5000", db=db)
    assert in_sqlite(db) == acked  # replayed into SQLite before it listened
    b = Wire(second.port)
    frames = b.hello("bob", since=0)
    assert [f["id"] for f in frames if f["type"] == "message"] == acked
    b.send(type="send", room="general", text="after")
    assert b.until("message")["id"] == acked[-1] + 1


def test_rows_of_every_shape_reach_sqlite_as_they_were_added(tmp_path):
    """Room messages, direct messages, files and replies mixed in one batch, in runs
    of one and of many, longer than a statement's 100 rows: SQLite holds each row's
    every column as added (NULLs left to the column's default, never shifted into a
    neighbour's place)."""
    path = str(tmp_path / "chat.db")
    store = Store(path)
    add(store, "room made")
    store.commit()
    shapes = [
        dict(room_key="general", room_name="general"),
        dict(recipient="bob"),
        dict(room_key="general", room_name="general", file='{"id":"f1"}'),
        dict(recipient="bob", about=1),
        dict(room_key="general", room_name="general", about=1, file='{"id":"f2"}'),
        dict(recipient="bob", file='{"id":"f3"}', kind=1),
    ]
    runs = [1, 3, 150, 1, 2, 101, 1, 1, 64, 7, 1, 230]
    expected = []
    for n, run in enumerate(runs):
        shape = shapes[n % len(shapes)]
        for i in range(run):
            text = f"r{n}-{i}"
            msg_id = store.add(1_700_000_000_000 + n, f"s{n}", text, **shape)
            expected.append((msg_id, 1_700_000_000_000 + n, shape.get("room_key"), f"s{n}",
                             shape.get("recipient"), text, shape.get("kind", 0),
                             shape.get("file"), shape.get("about")))
    store.commit()
    store.fill()
    store.commit()
    store.close()
    with sqlite3.connect(path) as db:
        got = db.execute("SELECT id, ts, room, sender, recipient, text, action, file, "
                         "about FROM messages WHERE id > 1 ORDER BY id").fetchall()
    assert got == expected
