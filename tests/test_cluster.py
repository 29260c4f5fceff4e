"""Many server processes, one chat (--redis): nodes over a real redis-server.

Each test starts its own redis-server on a free loopback port, with its files in the
test's temp dir (append-only file, fsync on every write, as README advises), and
nodes that are real headless servers.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

from wire import Crowd, Wire


def joined(port: int, nick: str, deadline_s: float = 60.0, **fields) -> Wire:
    """Connect once the cluster is up (a node refuses hellos until Redis answered)."""
    deadline = time.monotonic() + deadline_s
    while True:
        wire = Wire(port)
        wire.send(type="hello", nick=nick, proto=1, **fields)
        first = wire.next()
        if first["type"] == "welcome":
            wire.replayed = []  # type: ignore[attr-defined]
            while (frame := wire.next())["type"] != "history_end":
                wire.replayed.append(frame)  # type: ignore[attr-defined]
            return wire
        wire.close()
        assert time.monotonic() < deadline, first
        time.sleep(0.05)


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.02)


def send_once_back(wire: Wire, text: str, timeout: float = 60.0) -> dict:
    """Send ``text`` again (a second apart) while it is refused with `store_failed`
    (Redis away); its echo once it is accepted."""
    deadline = time.monotonic() + timeout
    while True:
        wire.send(type="send", room="general", text=text, ref="again")
        frame = wire.next()
        while frame.get("ref") != "again":
            frame = wire.next()
        if frame["type"] == "message":
            return frame
        assert frame["code"] == "store_failed", frame
        wire.barrier()  # a ping answered: docs/protocol.md closes after 20 errors in a row
        assert time.monotonic() < deadline, "Redis is back but sends are still refused"
        time.sleep(0.1)


def stored(db: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, sender, text FROM messages ORDER BY id").fetchall()


def messages(frames) -> list[tuple[int, str, str]]:
    return [(f["id"], f["from"], f["text"]) for f in frames if f["type"] == "message"]


# ---------------------------------------------------------------- order and ids


def test_every_script_compiles_in_redis(redis):
    from chat.cluster import SCRIPTS
    for name, text in SCRIPTS.items():
        with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
            sock.sendall(b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$%d\r\n%s\r\n"
                         % (len(text.encode()), text.encode()))
            answer = sock.recv(4096)
        assert answer.startswith(b"$40\r\n"), (name, answer)


def test_two_nodes_deliver_the_same_messages_in_one_order_with_the_same_ids(node):
    a, b = node(), node()
    alice, bob = joined(a.port, "alice"), joined(b.port, "bob")
    assert alice.until("joined")["nick"] == "bob"  # told across nodes
    assert who(alice) == who(bob) == ["alice", "bob"]
    alice.send(type="ison", nicks=["BOB", "nobody", "alice"], ref="i")
    assert alice.until("ison")["nicks"] == ["bob", "alice"]
    alice.send(type="whois", nick="bob", ref="w")
    assert alice.until("whois")["door"] == "cluster"
    for i in range(30):  # both at once, interleaved by Redis
        alice.send(type="send", room="general", text=f"a{i}", ref=f"a{i}")
        bob.send(type="send", room="general", text=f"b{i}", ref=f"b{i}")
    seen = {}
    for wire, nick in ((alice, "alice"), (bob, "bob")):
        frames = []
        while len(messages(frames)) < 60:
            frames.append(wire.next())
        assert [f for f in frames if f["type"] == "error"] == []
        frames = [f for f in frames if f["type"] == "message"]
        seen[nick] = messages(frames)
        assert {f["ref"] for f in frames if "ref" in f} == {
            f"{nick[0]}{i}" for i in range(30)}  # each sender's copy, and only its own
        assert all(f["from"] == nick for f in frames if "ref" in f)
    assert seen["alice"] == seen["bob"]
    ids = [m[0] for m in seen["alice"]]
    assert ids == list(range(ids[0], ids[0] + 60))
    # typing and a direct message, from one node to a user of the other
    bob.send(type="typing", room="general")
    assert alice.until("typing") == {"type": "typing", "room": "general", "nick": "bob"}
    alice.send(type="send", to="bob", text="psst", ref="dm")
    assert bob.until("message")["text"] == "psst"
    assert alice.until("message")["ref"] == "dm"
    # both copies hold the same history; a newcomer on either node replays it all
    carol = Wire(b.port)
    frames = carol.hello("carol", since=0)
    assert messages(frames)[-60:] == seen["alice"]
    assert wait_for(lambda: stored(a.db) == stored(b.db) and len(stored(a.db)) == 61)


def test_a_nickname_online_on_one_node_is_taken_on_the_other(node):
    a, b = node(), node()
    alice = joined(a.port, "alice")
    other = Wire(b.port)
    other.send(type="hello", nick="ALICE", proto=1)
    assert other.error("nick_taken")
    bob = joined(b.port, "bob")
    bob.send(type="nick", nick="Alice", ref="n")
    assert bob.error("nick_taken")["ref"] == "n"
    # two hellos for one nickname at once, one on each node: exactly one is welcome
    first, second = Wire(a.port), Wire(b.port)
    first.send(type="hello", nick="dora", proto=1)
    second.send(type="hello", nick="dora", proto=1)
    answers = sorted(w.next()["type"] for w in (first, second))
    assert answers == ["error", "welcome"]
    # a nickname given up is free everywhere at once
    alice.send(type="bye")
    alice.closed()
    joined(b.port, "alice", deadline_s=60)


# ---------------------------------------------------------------- crowds


def test_two_nodes_of_a_hundred_with_twenty_senders_see_one_order(node):
    a, b = node(), node()
    nicks = [f"u{i}" for i in range(200)]
    ports = {nick: (a.port if i % 2 else b.port) for i, nick in enumerate(nicks)}
    joined(a.port, "probe").close()  # the cluster is up
    room = Crowd(ports, nicks)
    try:
        room.one_order(nicks[:20], per_sender=25)  # 10 senders on each node, all at once
    finally:
        room.close()


# ---------------------------------------------------------------- failures


def test_sigkill_of_a_node_loses_no_echoed_message_and_its_clients_resume(node):
    a, b = node(), node()
    writer = joined(a.port, "writer")
    reader = joined(b.port, "reader")
    for i in range(100):
        writer.send(type="send", room="general", text=f"m{i}", ref=str(i))
    echoed = []
    while not echoed or echoed[-1][1] != "99":  # the first hundred echoed
        frame = writer.until("message")
        echoed.append((frame["id"], frame.get("ref")))
    for i in range(100, 300):  # under load: the node dies with sends on the way
        if i == 120:
            a.stop(signal.SIGKILL)
        try:
            writer.send(type="send", room="general", text=f"m{i}", ref=str(i))
        except OSError:
            break
    frames = writer.closed(timeout=30)
    echoed = [i for i, _ in echoed] + [f["id"] for f in frames if f["type"] == "message"]
    # the writer resumes on the other node with `since` (its nickname is freed once the
    # dead node stops beating): no gap, no duplicate
    last = echoed[-1]
    resumed = joined(b.port, "writer", deadline_s=60, since=last)
    resumed.send(type="send", room="general", text="after", ref="x")
    after = resumed.until("message")
    assert after["text"] == "after" and after["ref"] == "x"
    # (a copy's SQLite file has what the node holds within its next batch: chat.store)
    every = wait_for(lambda: [m[0] for m in stored(b.db)] if after["id"] in
                     {m[0] for m in stored(b.db)} else None, what="the survivor's copy")
    assert set(echoed) <= set(every)  # every echoed message is in the survivor's copy
    # what the writer has: its echoes, then the replay from `since`: all, once each
    mine = echoed + [m[0] for m in messages(resumed.replayed)] + [after["id"]]
    assert mine == [i for i in every if i >= echoed[0]]
    seen = []
    while not seen or seen[-1].get("id") != after["id"]:
        seen.append(reader.next())
    read = [f["id"] for f in seen if f["type"] == "message"]
    assert read == every  # the other node's reader: everything, in order, once
    left = [f for f in seen if f["type"] == "left"]
    assert [(f["nick"], f["reason"]) for f in left] == [("writer", "disconnected")]


def test_redis_restarted_under_load_loses_no_echoed_message(node, redis):
    a, b = node(), node()
    alice, bob = joined(a.port, "alice"), joined(b.port, "bob")
    echoed, refused = [], 0
    for i in range(300):
        if i == 100:
            redis.kill()
        if i == 200:
            redis.start()
        alice.send(type="send", room="general", text=f"m{i}", ref=str(i))
        frame = alice.next()
        while frame["type"] not in ("message", "error") or frame.get("ref") != str(i):
            frame = alice.next()
        if frame["type"] == "message":
            echoed.append(frame["id"])
        else:
            assert frame["code"] == "store_failed"
            refused += 1
            alice.barrier()  # a ping answered: docs/protocol.md closes after 20 errors in a row
        time.sleep(0.005)  # a steady sender, not a burst
    assert refused > 0 and len(echoed) >= 100
    # the nodes catch up by themselves: every echoed message is in both copies, and the
    # other node's user got them in order
    wait_for(lambda: set(echoed) <= {m[0] for m in stored(b.db)}, what="catch-up")
    wait_for(lambda: set(echoed) <= {m[0] for m in stored(a.db)}, what="a's copy")
    got = []
    while len(got) < len(echoed):
        got.append(bob.until("message")["id"])
    assert got == echoed
    # and it works again without a restart: a send is echoed within seconds
    send_once_back(alice, "all good")
    assert bob.until("message")["text"] == "all good"


def test_a_node_started_later_catches_up(node):
    a = node()
    alice = joined(a.port, "alice")
    for i in range(20):
        alice.send(type="send", room="general", text=f"early {i}")
    wait_for(lambda: len(stored(a.db)) == 20, what="20 stored")
    c = node()
    wait_for(lambda: stored(c.db) == stored(a.db), what="the new node's copy")
    carol = joined(c.port, "carol", since=0)
    carol.send(type="history", room="general", limit=50, ref="h")
    frames = []
    while not frames or frames[-1]["type"] != "history_end":
        frames.append(carol.next())
    assert [m[2] for m in messages(frames)] == [f"early {i}" for i in range(20)]
    assert who(carol) == ["alice", "carol"]  # and who is where, from Redis


def who(wire: Wire, room: str = "general") -> list[str]:
    wire.send(type="who", room=room, ref="who")
    return wire.until("users")["users"]


def test_a_node_whose_copy_cannot_write_holds_back_and_catches_up(node):
    a, b = node(), node()
    alice, bob = joined(a.port, "alice"), joined(b.port, "bob")
    locker = sqlite3.connect(b.db, isolation_level=None, timeout=10)
    locker.execute("BEGIN EXCLUSIVE")  # b's copy is locked by another program
    try:
        for i in range(5):
            alice.send(type="send", room="general", text=f"m{i}", ref=str(i))
            assert alice.until("message")["ref"] == str(i)  # stored in the cluster
        bob.send(type="send", room="general", text="from b", ref="b")
        assert bob.barrier() == []  # b delivers nothing its copy does not hold
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    frames = []
    while len(messages(frames)) < 6:
        frames.append(bob.next())
    assert [m[2] for m in messages(frames)] == [f"m{i}" for i in range(5)] + ["from b"]
    assert [f.get("ref") for f in frames if f["type"] == "message"][-1] == "b"
    wait_for(lambda: stored(a.db) == stored(b.db), what="the same copies")


# ---------------------------------------------------------------- accounts and bans


def test_accounts_and_bans_hold_on_every_node(node, redis):
    a, b = node("--console"), node()
    ada = joined(a.port, "ada")
    ada.send(type="register", password="correct horse", ref="r")
    assert ada.until("registered")["ref"] == "r"
    ada.send(type="bye")
    ada.closed()
    # the account made on one node guards the nickname on the other
    other = Wire(b.port)
    other.send(type="hello", nick="ada", proto=1)
    assert other.error("nick_registered")
    ada = joined(b.port, "ada", nick_password="correct horse")
    # a ban made on one node closes the user on the other, and holds for newcomers
    mallory = joined(b.port, "mallory")
    a.proc.stdin.write("ban nick mallory spam\n")
    a.proc.stdin.flush()
    assert mallory.until("kicked")["reason"].startswith("You are banned")
    again = Wire(b.port)
    again.send(type="hello", nick="mallory", proto=1)
    assert again.error("banned")
    a.proc.stdin.write("unban nick mallory\n")
    a.proc.stdin.flush()
    joined(b.port, "mallory")
    # a node started later has them too
    ada.send(type="bye")
    ada.closed()
    c = node()
    late = Wire(c.port)
    late.send(type="hello", nick="ADA", proto=1)
    assert late.error("nick_registered")


def test_redis_losing_its_data_gives_no_id_twice_and_keeps_accounts(node, redis, tmp_path):
    a, b = node(), node()
    alice = joined(a.port, "alice")
    alice.send(type="register", password="correct horse")
    alice.until("registered")
    for i in range(5):
        alice.send(type="send", room="general", text=f"kept {i}", ref=str(i))
        alice.until("message", ref=str(i))
    before = wait_for(lambda: [m for m in stored(a.db) if m[2].startswith("kept")][4:] and
                      stored(a.db), what="a's copy")
    wait_for(lambda: stored(b.db) == before, what="b's copy")
    redis.kill()
    redis.dir = tmp_path / "empty"  # Redis comes back with nothing: no persistence
    redis.dir.mkdir()
    redis.start()
    frame = send_once_back(alice, "after")  # refused until the nodes are on the new Redis
    assert frame["id"] > before[-1][0]  # past every id the copies hold
    assert wait_for(lambda: stored(b.db)[-1:] == stored(a.db)[-1:] == [
        (frame["id"], "alice", "after")], what="the new message in both copies")
    assert stored(a.db)[:-1] == before  # nothing overwritten
    alice.send(type="bye")
    alice.closed()
    other = Wire(b.port)  # the account was offered to the new Redis again
    other.send(type="hello", nick="alice", proto=1)
    assert other.error("nick_registered")


# ---------------------------------------------------------------- files


def test_a_file_sent_on_one_node_is_downloaded_whole_on_the_other(node):
    from test_files import download, upload
    a, b = node(), node()
    alice, bob = joined(a.port, "alice"), joined(b.port, "bob")
    data = os.urandom(3 * 1000 * 1000 + 7)
    sent = upload(alice, data, ref="f")
    announced = bob.until("message", **{"from": "alice"})
    sha = hashlib.sha256(data).hexdigest()
    assert announced["file"]["id"] == sent["file"]["id"] == sha
    kept_on_b = b.db.parent / "files" / sha
    assert not kept_on_b.exists()  # each node has its own files
    assert download(bob, announced["file"]["id"]) == data  # copied from a, then sent
    assert kept_on_b.read_bytes() == data
    assert download(bob, announced["file"]["id"], offset=1000) == data[1000:]  # kept on b
    carol = joined(b.port, "carol")
    carol.send(type="download", file="ab" * 32, ref="x")  # on no node
    assert carol.error("no_such_file")["ref"] == "x"
    # downloads waiting for a copy count as the asker's: no pile of them to serve later
    other = upload(alice, os.urandom(1000), ref="g")["file"]["id"]
    carol.send_raw(b"".join(b'{"type":"download","file":"%s","ref":"%d"}\n'
                            % (other.encode(), i) for i in range(5)))
    refused = carol.until("error")
    assert (refused["code"], refused["ref"]) == ("rate_limited", "4")
    done = set()
    while len(done) < 4:  # the other four are served once the copy is here
        frame = carol.until("file_data")
        if frame.get("end"):
            done.add(frame["ref"])
    assert done == {"0", "1", "2", "3"}


def test_a_redis_with_a_password_and_the_consoles_nodes_command(start_server, tmp_path):
    from redisproc import RedisServer
    redis = RedisServer(tmp_path, password="s3cret pass")
    try:
        url = redis.url.replace("s3cret pass", "s3cret%20pass")
        a = start_server("--redis", url, "--console", db=tmp_path / "a.db",
                         stdin=subprocess.PIPE)
        start_server("--redis", url, db=tmp_path / "b.db")
        alice = joined(a.port, "alice")

        def nodes() -> list[str]:
            a.proc.stdin.write("nodes\n")
            a.proc.stdin.flush()
            head = a.proc.stdout.readline()
            while head.startswith("join at "):  # the addresses printed at the start
                head = a.proc.stdout.readline()
            count = int(head.split()[0])
            return [head, *(a.proc.stdout.readline() for _ in range(count))]
        lines = wait_for(lambda: (lambda got: got if got[0].startswith("2 ") else None)(
            nodes()), what="both nodes listed")  # the list is refreshed every second
        assert "2 node(s) through redis://:***@127.0.0.1:" in lines[0], lines
        assert "1 online in all; Redis up" in lines[0] and "s3cret" not in "".join(lines)
        assert [line.endswith("(this one)\n") for line in lines[1:]] == [True, False]
        alice.close()
        # a wrong password: the node says why, and refuses what needs Redis
        wrong = start_server("--redis", redis.url.replace("s3cret pass", "nope"),
                             db=tmp_path / "c.db")
        late = Wire(wrong.port)
        late.send(type="hello", nick="zed", proto=1)
        assert late.error("store_failed", timeout=30)
        assert wrong.stop() == 0
        assert "Redis refused the password" in wrong.proc.stderr.read()
    finally:
        redis.stop()


def test_room_roles_topic_and_kicks_hold_across_two_nodes(node):
    """Rooms with owners on a cluster: a topic, voice in a quiet room, a room ban and
    a kick made on one node hold on the other, and for a node that starts later."""
    a, b = node(), node()
    # the first one in: its operator
    teacher = joined(a.port, "teacher", rooms=["lab"], features=["owners"])
    student = joined(b.port, "student", rooms=["lab"], features=["owners"])
    quiet = joined(b.port, "quiet", rooms=["lab"], features=["owners"])
    teacher.send(type="topic", room="lab", topic="Lab 5", ref="t")
    teacher.until("topic", ref="t")
    assert student.until("topic", room="lab")["topic"] == "Lab 5"
    teacher.send(type="mode", room="lab", ref="m", changes=[
        {"mode": "moderated", "on": True}, {"mode": "voice", "on": True, "arg": "student"},
        {"mode": "ban", "on": True, "arg": "troll"}])
    teacher.until("mode", ref="m")
    assert student.until("mode", room="lab")["by"] == "teacher"
    student.send(type="send", room="lab", text="voiced on node b", ref="s")
    student.until("message", ref="s")
    assert teacher.until("message", room="lab")["text"] == "voiced on node b"
    quiet.send(type="send", room="lab", text="me?", ref="q")
    assert quiet.until("error", ref="q")["code"] == "moderated"
    troll = joined(b.port, "troll", rooms=["hall"], features=["owners"])
    troll.send(type="join", room="lab", ref="j")
    assert troll.until("error", ref="j")["code"] == "banned_from_room"
    teacher.send(type="kick", room="lab", nick="quiet", reason="later", ref="k")
    left = quiet.until("left", room="lab", nick="quiet")
    assert left["by"] == "teacher" and left["message"] == "later"
    assert teacher.until("left", room="lab", nick="quiet")["by"] == "teacher"
    c = node()  # a node that starts now reads the rooms' settings from Redis
    late = joined(c.port, "late", rooms=["hall"], features=["owners"])
    late.send(type="join", room="lab", ref="j")
    assert late.until("topic", room="lab")["topic"] == "Lab 5"
    late.send(type="send", room="lab", text="can I?", ref="x")
    assert late.until("error", ref="x")["code"] == "moderated"
