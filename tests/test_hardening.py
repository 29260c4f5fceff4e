"""A server no client can break: faults, damaged or failing storage, costly requests.

Floods (many clients at once) are in tests/test_floods.py.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import MAIN, ROOT
from flood import Probe, report
from wire import Wire, connect, crowd

from chat.protocol import MAX_ID, normal_nick
from chat.store import Store

HUGE = [2 ** 63, 2 ** 64, 10 ** 30, -1, -(2 ** 70)]
# Every integer a request carries (docs/protocol.md adds the history ranges and files).
HISTORY_NUMBERS = ("before", "after", "around", "before_ts", "after_ts", "around_ts", "limit")

BOOM = '''
import chat.dispatch as dispatch
real_who = dispatch.HANDLERS["who"]
def who(hub, peer, req, ref):
    if req.room == "boom":
        raise ZeroDivisionError("injected fault")
    return real_who(hub, peer, req, ref)
dispatch.HANDLERS["who"] = who
'''


def texts_in(db) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT text FROM messages ORDER BY id")]


# ---------------------------------------------------------------- numbers


def test_out_of_range_integers_are_bad_field_and_the_server_lives(server):
    wire = Wire(server.port)
    for value in HUGE:  # before `hello`: the store never sees them
        wire.send(type="hello", nick="alice", proto=1, since=value, ref="h")
        assert wire.error("bad_field")["ref"] == "h"
    wire.hello("alice", since=MAX_ID)  # the largest id: valid, nothing to replay
    wire.send(type="register", password="correct horse")
    wire.until("registered")
    sha = "ab" * 32
    numeric = [({"type": "history", "room": "general"}, name) for name in HISTORY_NUMBERS]
    numeric += [({"type": "history", "with": "alice"}, name) for name in HISTORY_NUMBERS]
    numeric += [({"type": "upload", "room": "general", "name": "f", "sha256": sha}, "size"),
                ({"type": "chunk", "upload": "u1", "data": ""}, "offset"),
                ({"type": "download", "file": sha}, "offset")]
    for request, field in numeric:
        for value in HUGE:
            wire.send(**request, ref="q", **{field: value})
            assert wire.error("bad_field")["ref"] == "q", (request, field, value)
        if field != "limit":  # the largest valid value is answered, not a fault
            wire.send(**request, ref="ok", **{field: MAX_ID})
            answer = wire.next()
            assert answer["ref"] == "ok" and answer.get("code") != "internal_error", answer
        wire.barrier()  # a pong between: docs/protocol.md closes after 20 errors in a row
    wire.send(type="history", room="general", before=MAX_ID, ref="ok")
    assert wire.next() == {"type": "history_end", "room": "general", "ref": "ok"}
    other = Wire(server.port)  # docs/protocol.md: an integer `proto` other than 1
    other.send(type="hello", nick="bob", proto=2 ** 64)
    other.error("bad_proto")
    other.closed()
    assert connect(server.port, "carol").barrier() == []


# ---------------------------------------------------------------- faults


def test_a_handler_that_raises_closes_only_its_connection(start_server):
    server = start_server("--rate", "0", prelude=BOOM)
    alice, bob, carol = crowd(server.port, "alice", "bob", "carol")
    carol.send(type="who", room="boom", ref="1")
    frames = carol.closed()
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "internal_error"
    assert bob.until("left", nick="carol")["reason"] == "disconnected"
    alice.send(type="send", room="general", text="still here")
    assert bob.until("message")["text"] == "still here"
    dave = connect(server.port, "dave")
    dave.send(type="who", room="general")
    assert dave.until("users")["users"] == ["alice", "bob", "dave"]
    assert server.stop() == 0
    log = server.proc.stderr.read()
    assert log.count("Traceback") == 1 and "injected fault" in log, log


# ---------------------------------------------------------------- storage


def test_a_damaged_database_is_refused_at_start_in_one_line(tmp_path):
    db = tmp_path / "chat.db"
    store = Store(str(db))
    for i in range(3000):
        store.add(1, "alice", f"message {i} " + "x" * 200, room_key="general",
                  room_name="general")
    store.close()
    data = bytearray(db.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle:middle + 3 * 4096] = b"\xa5" * (3 * 4096)  # three message pages
    db.write_bytes(bytes(data))
    result = subprocess.run([sys.executable, MAIN, "--server", "--headless", "--port", "0",
                             "--db", str(db)], capture_output=True, text=True, timeout=30,
                            cwd=ROOT)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged" in lines[0] and "Traceback" not in result.stderr


def test_the_store_never_waits_for_a_lock(tmp_path):
    """A database another program holds is refused at once (store_failed), never
    waited for: SQLite's busy timeout would hold the whole loop."""
    store = Store(str(tmp_path / "chat.db"))
    try:
        assert store._db.execute("PRAGMA busy_timeout").fetchone() == (0,)
        store._reopen()
        assert store._db.execute("PRAGMA busy_timeout").fetchone() == (0,)
    finally:
        store.close()


def test_a_database_locked_by_another_program(start_server, tmp_path):
    """Messages are durable in the message log before SQLite has them: those sent
    before the server's next SQLite batch finds the lock are acknowledged (and
    reach SQLite once the lock goes); from then on, sends are refused."""
    server = start_server("--rate", "0")
    alice, bob = crowd(server.port, "alice", "bob")
    probe = Probe(server.port)
    alice.send(type="send", room="general", text="before", ref="0")
    assert alice.until("message")["ref"] == "0"
    locker = sqlite3.connect(server.db, isolation_level=None, timeout=10)
    locker.execute("BEGIN EXCLUSIVE")
    acked, refused = ["before"], []
    try:
        # the batch finds the lock within a second, and at most LOG_ROWS wait for it
        deadline = time.monotonic() + 60
        for i in range(1, 25_000):
            assert time.monotonic() < deadline
            alice.send(type="send", room="general", text=f"locked {i}", ref=str(i))
            frame = alice.next()
            if frame["type"] == "message":
                acked.append(frame["text"])
                continue
            assert (frame["type"], frame["code"], frame["ref"]) == ("error", "store_failed",
                                                                    str(i))
            refused.append(f"locked {i}")
            if len(refused) == 3:
                break
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert len(refused) == 3
    alice.send(type="send", room="general", text="after", ref="9")
    assert alice.until("message")["ref"] == "9"
    seen = [f["text"] for f in bob.barrier() if f["type"] == "message"]
    assert seen == [*acked, "after"]  # nothing unstored was delivered
    report("store_fault_probe", probe_max=probe.stop())  # every ping answered, in order
    assert server.stop() == 0
    assert texts_in(server.db) == [*acked, "after"]


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB filesystem of the test's own (tmpfs), removed afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                            capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path) -> None:
    with open(path, "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass


def test_a_full_disk_refuses_messages_and_recovers_by_itself(start_server, small_disk):
    db = small_disk / "chat.db"
    server = start_server("--rate", "0", db=db)
    alice, bob = crowd(server.port, "alice", "bob")
    probe = Probe(server.port)
    fill(small_disk / "filler")
    echoed, refused = [], 0
    text = "disk " + "y" * 3000
    for i in range(300):  # until the pages SQLite already had are used up
        alice.send(type="send", room="general", text=f"{i} {text}", ref=str(i))
        frame = alice.next()
        if frame["type"] == "error":
            assert (frame["code"], frame["ref"]) == ("store_failed", str(i))
            refused += 1
            if refused == 3:
                break
        else:
            assert frame["ref"] == str(i)
            echoed.append(frame["text"])
    assert refused == 3
    received = [f["text"] for f in bob.barrier() if f["type"] == "message"]
    assert received == echoed  # what was refused reached nobody
    (small_disk / "filler").unlink()
    alice.send(type="send", room="general", text="space again", ref="ok")
    assert alice.until("message")["ref"] == "ok"
    assert bob.until("message")["text"] == "space again"
    report("store_fault_probe", probe_max=probe.stop())  # every ping answered, in order
    assert server.stop() == 0
    assert texts_in(db) == [*echoed, "space again"]  # every echoed message is stored


def test_a_read_only_database_refuses_messages_until_it_is_writable(start_server, tmp_path):
    if subprocess.run(["setpriv", "--version"], capture_output=True).returncode != 0:
        pytest.skip("needs setpriv (util-linux)")
    db = tmp_path / "chat.db"
    Store(str(db)).close()
    files = [db, db.with_name("chat.db-wal"), db.with_name("chat.db-shm")]
    for path in files:
        path.touch()
        path.chmod(0o444)
    # Root writes read-only files anyway: the server runs without that capability,
    # as an ordinary user would.
    drop = ("setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search")
    server = start_server("--rate", "0", db=db, wrapper=drop)
    alice, bob = crowd(server.port, "alice", "bob")
    probe = Probe(server.port)
    alice.send(type="send", room="general", text="read-only", ref="1")
    assert alice.error("store_failed")["ref"] == "1"
    for path in files:
        path.chmod(0o644)
    deadline = time.monotonic() + 60
    while True:  # the server reopens the file at most once a second
        alice.send(type="send", room="general", text="writable", ref="2")
        frame = alice.next()
        if frame["type"] == "message":
            break
        assert frame["code"] == "store_failed" and time.monotonic() < deadline
        alice.barrier(timeout=30)  # one round trip before trying again
    assert [f["text"] for f in bob.barrier() if f["type"] == "message"] == ["writable"]
    report("store_fault_probe", probe_max=probe.stop())  # every ping answered, in order
    assert server.stop() == 0
    assert texts_in(db) == ["writable"]


# ---------------------------------------------------------------- costs


def test_rooms_are_listed_a_page_at_a_time(start_server, tmp_path):
    db = tmp_path / "chat.db"
    with sqlite3.connect(db) as conn:
        Store(str(db)).close()
        conn.executemany("INSERT INTO rooms (key, name) VALUES (?, ?)",
                         [(f"r{i:04d}", f"R{i:04d}") for i in range(1200)])
    server = start_server(db=db)
    alice = connect(server.port, "alice")
    names: list[str] = []
    after = None
    for _ in range(5):
        alice.send(type="rooms", ref="p", **({} if after is None else {"after": after}))
        page = alice.until("rooms")
        names += [r["name"] for r in page["rooms"]]
        if not page.get("more"):
            break
        assert len(page["rooms"]) == 500
        after = page["rooms"][-1]["name"]
    assert names == sorted(names, key=str.casefold) and len(names) == 1201  # + general
    assert "general" in names and len(set(names)) == len(names)


def test_nick_join_and_part_are_rate_limited_without_breaking_the_rules(server):
    alice, bob = crowd(server.port, "alice", "bob")
    codes = []
    for i in range(12):
        alice.send(type="nick", nick=f"alice{i}", ref=str(i))
        frame = alice.next()
        codes.append(frame.get("code", frame["type"]))
    assert codes[:10] == ["renamed"] * 10 and codes[10:] == ["rate_limited"] * 2
    renamed = [f for f in bob.barrier() if f["type"] == "renamed"]
    assert len(renamed) == 10  # the refused ones reached nobody
    alice.send(type="join", room="general", ref="again")  # already in: free, as before
    assert [alice.next()["type"] for _ in range(2)] == ["users", "history_end"]
    alice.send(type="part", room="general", ref="p")
    assert alice.error("rate_limited")["ref"] == "p"
    alice.send(type="send", room="general", text="still a member")  # sends unaffected
    assert alice.until("message")["text"] == "still a member"


def test_a_history_answer_fits_in_the_askers_backlog(start_server, tmp_path):
    server = start_server("--rate", "0", "--max-backlog", "65536", "--history", "200")
    alice = connect(server.port, "alice")
    text = "z" * 3900
    for i in range(40):
        alice.send(type="send", room="general", text=f"{i} {text}")
    ids = [alice.until("message")["id"] for _ in range(40)]
    alice.send(type="history", room="general", limit=40, ref="h")
    frames = []
    while True:
        frame = alice.next()
        if frame["type"] == "history_end":
            break
        frames.append(frame)
    assert frame == {"type": "history_end", "room": "general", "more": True, "ref": "h"}
    got = [f["id"] for f in frames]
    assert got == ids[-len(got):] and 0 < len(got) < 40  # the newest, oldest left out
    assert sum(len(f["text"]) for f in frames) <= 65536 // 2
    alice.send(type="history", room="general", before=got[0], limit=40, ref="older")
    older = [f["id"] for f in [alice.next() for _ in range(3)] if f["type"] == "message"]
    assert older and older[-1] < got[0]  # asking again with `before` goes on


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("nick", ["ｓｅｒｖｅｒ", "ѕerver", "ｓｙｓｔｅｍ", "SERVER", "Ѕеrvеr",
                                  "ꜱʏꜱᴛᴇᴍ", "𝐬𝐲𝐬𝐭𝐞𝐦", "systern", "ᏚᎬᎡᏙᎬᎡ", "sуstem"])
def test_look_alikes_of_reserved_names_are_bad_nick(server, nick):
    assert normal_nick(nick) is None
    wire = Wire(server.port)
    wire.send(type="hello", nick=nick, proto=1)
    wire.error("bad_nick")
    wire.hello("fine")
    wire.send(type="nick", nick=nick, ref="n")
    assert wire.error("bad_nick")["ref"] == "n"


@pytest.mark.parametrize("nick", ["servers", "Σerver", "observer", "сервер", "systemic"])
def test_names_that_only_resemble_are_allowed(nick):
    assert normal_nick(nick) == nick


def test_a_crowd_joining_shares_one_replay_until_the_room_changes(start_server):
    server = start_server("--rate", "0")
    alice = connect(server.port, "alice")
    alice.send(type="send", room="general", text="first")
    alice.until("message")
    early = [f["text"] for f in Wire(server.port).hello("bob") if f["type"] == "message"]
    same = [f["text"] for f in Wire(server.port).hello("carol") if f["type"] == "message"]
    alice.send(type="send", room="general", text="second")
    alice.until("message", text="second")
    late = [f["text"] for f in Wire(server.port).hello("dave") if f["type"] == "message"]
    assert early == same == ["first"] and late == ["first", "second"]


def test_a_full_disk_refuses_a_file_cleanly_and_chat_goes_on(start_server, small_disk):
    import os

    from test_files import offer, send_chunks
    srv = start_server("--rate", "0", db=small_disk / "chat.db")
    alice = connect(srv.port, "alice")
    bob = connect(srv.port, "bob")
    data = os.urandom(4 * 1000 * 1000)  # more than the 3 MB disk holds
    ready = offer(alice, data)
    send_chunks(alice, ready["upload"], data)
    error = alice.until("error", timeout=30)
    assert error["code"] == "store_failed" and "space" in error["message"].lower()
    assert all(f["type"] != "message" for f in bob.barrier())  # nothing announced
    assert alice.barrier(timeout=30) == []  # the chunks on their way: dropped quietly
    for path in (small_disk / "files" / "partial").iterdir():
        path.unlink()  # the operator makes room
    alice.send(type="send", room="general", text="still chatting", ref="s")
    assert alice.until("message", ref="s")["text"] == "still chatting"
