"""Files over real sockets: offer, chunks, the message that carries the file,
download; sizes 0, 1 and 5 MB; limits, quota, a wrong hash; resume of a cut upload;
and a probe that keeps chatting while a big file goes up."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import zlib

from flood import report

from chat.files import chunk_size
from tests.wire import Wire, connect

CHUNK = chunk_size(16384)


def png(width: int, height: int) -> bytes:
    """A red image, as a real PNG file."""
    def part(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))
    rows = b"".join(b"\0" + b"\xff\x00\x00" * width for _ in range(height))
    head = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\0\0\0"
    return (b"\x89PNG\r\n\x1a\n" + part(b"IHDR", head) + part(b"IDAT", zlib.compress(rows))
            + part(b"IEND", b""))


def offer(wire: Wire, data: bytes, ref: str = "u", name: str = "notes.bin",
          mime: str = "application/pdf", **where) -> dict:
    wire.send(type="upload", name=name, size=len(data), mime=mime,
              sha256=hashlib.sha256(data).hexdigest(), ref=ref,
              **(where or {"room": "general"}))
    while True:
        frame = wire.next(10)
        if frame.get("ref") == ref or frame["type"] == "error":
            return frame


def send_chunks(wire: Wire, token: str, data: bytes, start: int = 0,
                stop: int | None = None) -> None:
    stop = len(data) if stop is None else stop
    frames = []
    if start == stop:  # nothing left to send (0 B, or all there): one empty chunk ends it
        frames.append(json.dumps({"type": "chunk", "upload": token, "offset": start,
                                  "data": ""}).encode() + b"\n")
    for offset in range(start, stop, CHUNK):
        piece = data[offset:min(offset + CHUNK, stop)]
        frames.append(json.dumps({"type": "chunk", "upload": token, "offset": offset,
                                  "data": base64.b64encode(piece).decode()}).encode() + b"\n")
    wire.send_raw(b"".join(frames))


def upload(wire: Wire, data: bytes, ref: str = "u", **fields) -> dict:
    """Send a whole file; return its message (the echo)."""
    ready = offer(wire, data, ref, **fields)
    if ready["type"] == "message":
        return ready
    assert ready["type"] == "upload_ready", ready
    send_chunks(wire, ready["upload"], data, ready["offset"])
    return wire.until("message", timeout=60, ref=ref)


def download(wire: Wire, file_id: str, offset: int = 0) -> bytes:
    wire.send(type="download", file=file_id, offset=offset, ref="d")
    got = bytearray()
    while True:
        frame = wire.until("file_data", timeout=30)
        assert frame["offset"] == offset + len(got)
        got += base64.b64decode(frame["data"])
        if frame.get("end"):
            assert frame["ref"] == "d"
            return bytes(got)


def test_files_of_0_1_and_5_mb_reach_the_room_and_come_back_whole(fast_server):
    alice = connect(fast_server.port, "alice")
    bob = connect(fast_server.port, "bob")
    for data in (b"", b"x", os.urandom(5 * 1000 * 1000)):
        echo = upload(alice, data)
        sha = hashlib.sha256(data).hexdigest()
        assert echo["file"] == {"id": sha, "name": "notes.bin", "size": len(data),
                                "type": "application/pdf"}
        assert echo["text"] == "notes.bin"  # what a client that knows no files shows
        seen = bob.until("message", id=echo["id"], timeout=30)
        assert seen["file"]["id"] == sha
        assert download(bob, sha) == data
    again = upload(alice, b"x", ref="again")  # stored once: announced at once
    assert again["file"]["id"] == hashlib.sha256(b"x").hexdigest()
    late = connect(fast_server.port, "late", rooms=["general"])
    replay = late.barrier()  # nothing live; the history came with hello
    del replay


def test_history_carries_the_file(fast_server):
    alice = connect(fast_server.port, "alice")
    echo = upload(alice, b"kept in history")
    frames = Wire(fast_server.port).hello("reader")
    found = [f for f in frames if f["type"] == "message" and f["id"] == echo["id"]]
    assert found and found[0]["history"] is True and found[0]["file"] == echo["file"]


def test_a_dm_carries_a_file_and_limits_are_refused_cleanly(start_server):
    srv = start_server("--rate", "0", "--max-file-size", "100000", "--files-quota", "150000")
    alice = connect(srv.port, "alice")
    bob = connect(srv.port, "bob")
    echo = upload(alice, b"for bob only", to="bob")
    assert echo["to"] == "bob" and bob.until("message", id=echo["id"])["file"]
    big = offer(alice, b"y" * 100001, ref="big")
    assert (big["type"], big["code"], big["ref"]) == ("error", "file_too_big", "big")
    first = upload(alice, os.urandom(90000), ref="first")
    assert first["file"]["size"] == 90000
    bob.until("message", id=first["id"])
    over = offer(alice, os.urandom(90000), ref="over")
    assert over["code"] == "over_quota"
    wrong = offer(alice, b"z" * 1000, ref="wrong")
    send_chunks(alice, wrong["upload"], b"Z" * 1000)
    error = alice.until("error")
    assert error["code"] == "hash_mismatch"
    assert all(f["type"] != "message" for f in bob.barrier())  # nothing was announced
    alice.send(type="chunk", upload="nope", offset=0, data="")
    assert alice.error("no_such_upload")
    alice.send(type="download", file="0" * 64)
    assert alice.error("no_such_file")
    alice.send(type="upload", name="x", size=1, sha256="not hex", room="general")
    assert alice.error("bad_field")


def test_a_cut_upload_resumes_where_it_stopped(fast_server, tmp_path):
    data = os.urandom(2 * 1000 * 1000)
    first = connect(fast_server.port, "mover")
    ready = offer(first, data)
    half = (len(data) // 2) // CHUNK * CHUNK
    send_chunks(first, ready["upload"], data, 0, half)
    first.barrier(timeout=30)  # the server has every chunk sent so far
    watcher = connect(fast_server.port, "watcher")
    first.close()
    watcher.until("left", nick="mover")
    other = connect(fast_server.port, "other")  # someone else's bytes are not theirs
    assert offer(other, data, ref="o")["offset"] == 0
    second = connect(fast_server.port, "mover")  # the sender again: goes on
    again = offer(second, data, ref="again")
    assert again["type"] == "upload_ready" and again["offset"] == half
    send_chunks(second, again["upload"], data, half)
    echo = second.until("message", timeout=30, ref="again")
    assert download(watcher, echo["file"]["id"]) == data
    tail = download(watcher, echo["file"]["id"], offset=len(data) - 1000)  # resumed too
    assert tail == data[-1000:]


def test_a_probe_chats_while_a_50_mb_file_goes_up(fast_server):
    """Chunks are handled between everyone else's frames: the probe's messages go round
    while the upload is under way (how fast: bench/run's upload row)."""
    data = os.urandom(50 * 1000 * 1000)
    mover = connect(fast_server.port, "mover")
    probe = connect(fast_server.port, "probe")
    ready = offer(mover, data)
    worst = 0.0
    done = threading.Event()

    def push() -> None:  # the test's client, not the server, uses a thread
        send_chunks(mover, ready["upload"], data)
        done.set()

    pusher = threading.Thread(target=push)
    pusher.start()
    sent = 0
    deadline = time.monotonic() + 120
    while not done.is_set() and time.monotonic() < deadline:
        started = time.monotonic()
        probe.send(type="send", room="general", text=f"still here {sent}", ref=str(sent))
        probe.until("message", ref=str(sent))
        worst = max(worst, time.monotonic() - started)
        sent += 1
    pusher.join(60)
    assert sent >= 5, "the probe got few turns while the upload went on"
    report("upload_probe", probe_max=worst, turns=sent)
    echo = mover.until("message", timeout=60, ref="u")
    assert echo["file"]["size"] == len(data)
