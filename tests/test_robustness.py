"""The server under crowds, crashes, slow readers and hostile bytes."""

from __future__ import annotations

import json
import signal
import socket
import struct
import time

from wire import HELLO, Crowd, Wire, connect, crowd


def test_two_hundred_clients_see_twenty_senders_in_one_order(fast_server):
    nicks = [f"u{i}" for i in range(200)]
    room = Crowd(fast_server.port, nicks)
    try:
        room.one_order(nicks[:20], per_sender=25)  # 20 senders, all writing at once
    finally:
        room.close()


def test_kill_9_loses_no_acknowledged_message(start_server, tmp_path):
    db = tmp_path / "crash.db"
    first = start_server("--rate", "0", db=db)
    a = connect(first.port, "alice")
    for i in range(200):
        a.send(type="send", room="general", text=f"m{i}")
    acked = [a.until("message")["id"] for _ in range(200)]  # echoes are the acks
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(5)
    second = start_server("--rate", "0", "--history", "500", db=db)
    b = Wire(second.port)
    frames = b.hello("bob", since=0)
    assert [f["id"] for f in frames if f["type"] == "message"] == acked
    b.send(type="send", room="general", text="after")
    assert b.until("message")["id"] > acked[-1]


def test_resume_under_traffic_has_no_gap_and_no_duplicate(fast_server):
    writer, watcher, reader = crowd(fast_server.port, "writer", "watcher", "reader")
    for i in range(30):
        writer.send(type="send", room="general", text=f"a{i}")
    seen = [reader.until("message")["id"] for _ in range(30)]
    reader.close()  # drops while traffic goes on
    for i in range(40):
        writer.send(type="send", room="general", text=f"b{i}")
    resumed = Wire(fast_server.port)
    resumed.send(type="hello", nick="reader", proto=1, since=seen[-1])
    for i in range(30):
        writer.send(type="send", room="general", text=f"c{i}")
    got = []
    while len(seen) + len(got) < 100:
        frame = resumed.next()
        if frame["type"] == "message":
            got.append(frame["id"])
    everything = [f["id"] for f in watcher.barrier() if f["type"] == "message"]
    assert len(everything) == 100
    assert seen + got == everything


def test_a_reader_that_never_reads_is_cut_off_and_others_keep_up(start_server):
    server = start_server("--rate", "0", "--max-backlog", "65536")
    writer, reader = crowd(server.port, "writer", "reader")
    sloth = socket.socket()
    sloth.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sloth.connect(("127.0.0.1", server.port))
    sloth.sendall(HELLO % b"sloth" + b'{"type":"send","room":"general","text":"zzz"}\n')
    assert reader.until("message")["text"] == "zzz"  # what it sent reaches the others
    writer.barrier()
    text = "x" * 3000
    count = 2000  # ~6 MB: far past kernel buffers plus the 64 KiB cap
    got, left = 0, None
    deadline = time.monotonic() + 60
    for i in range(count):
        writer.send(type="send", room="general", text=text)
        if i % 50 == 49:  # the writer and the reader keep reading; the sloth never does
            writer.barrier()
            while got < i + 1 and time.monotonic() < deadline:
                frame = reader.next()
                if frame["type"] == "message":
                    got += 1
                elif frame["type"] == "left":
                    left = frame
    assert got == count
    assert left == {"type": "left", "room": "general", "nick": "sloth",
                    "reason": "disconnected", "ts": left["ts"]}
    sloth.close()


def test_a_reader_behind_gets_every_shared_batch_once_and_in_order(start_server):
    """A room's batch is sent to each member from one shared copy; a member whose
    socket takes only part of it keeps the rest, and later batches queue behind it."""
    server = start_server("--rate", "0", "--max-backlog", str(16 << 20))
    writer, others = crowd(server.port, "writer", "other")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # partial sends, often
    slow.connect(("127.0.0.1", server.port))
    slow.sendall(HELLO % b"slow")
    got, buf = [], b""

    def take(data: bytes) -> bool:
        """Add what arrived; whether the welcome's replay has ended."""
        nonlocal buf
        buf += data
        *lines, buf = buf.split(b"\n")
        frames = [json.loads(line) for line in lines]
        got.extend(f["id"] for f in frames if f["type"] == "message")
        return any(f["type"] == "history_end" for f in frames)

    slow.settimeout(30)
    while not take(slow.recv(65536)):  # in the room before anything is said
        pass
    # ~5 MB: within the (raised) backlog cap, far past what the kernel buffers
    count, text = 8000, "y" * 500
    for i in range(count):
        writer.send(type="send", room="general", text=f"{i} {text}")
        if i % 100 == 99:
            writer.barrier()  # many passes, each with its own batch
    ids = [f["id"] for f in others.barrier() if f["type"] == "message"]
    assert len(ids) == count
    while len(got) < count:  # bounded: each recv waits at most 30 s
        chunk = slow.recv(65536)
        assert chunk, "the server closed the slow reader"
        take(chunk)
    slow.close()
    assert got == ids  # each once, in the one order


def test_hostile_bytes_leave_everyone_else_served(fast_server):
    port = fast_server.port
    alice, bob = crowd(port, "alice", "bob")
    sent = []

    def chat(n: int) -> None:
        alice.send(type="send", room="general", text=f"ok{n}")
        sent.append(f"ok{n}")

    attackers = []
    for payload in (bytes(range(256)) * 40, b"\xff\xfe\xc0\x80" * 1000 + b"\n",
                    b"{" * 100000 + b"\n", b'{"type":"hello","nick":"half'):
        raw = socket.create_connection(("127.0.0.1", port))
        raw.sendall(payload)
        attackers.append(raw)
        chat(len(sent))
    big = socket.create_connection(("127.0.0.1", port))
    big.sendall(HELLO % b"big")
    big.sendall(b'{"type":"send","room":"general","text":"' + b"A" * (1 << 20) + b'"}\n')
    chat(len(sent))
    reg = Wire(port)
    reg.hello("mallory")
    reg.send_raw(b'{"type":"send","room":"general","te')  # half a frame, then gone
    reg.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    reg.close()
    chat(len(sent))
    for raw in attackers:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
    chat(len(sent))
    got = []
    while len(got) < len(sent):
        frame = bob.next()
        if frame["type"] == "message":
            got.append(frame["text"])
    assert got == sent
    big_frames = []
    big.settimeout(5)
    data = b""
    while b"frame_too_long" not in data:
        chunk = big.recv(65536)
        assert chunk, "server closed the big sender instead of answering"
        data += chunk
    big_frames.append(data)
    newcomer = Wire(port)
    replay = [f["text"] for f in newcomer.hello("newcomer", since=0)
              if f["type"] == "message"]
    assert replay == sent  # nothing lost, nothing of the attackers stored
