"""Files people can trust, over real sockets: a kept file cannot be rewritten by an
upload left open on its SHA-256 (the swap, the poison), the quota is a bound under
concurrent offers, abandoned uploads expire, and a file is reachable only through a
conversation that carries it."""

from __future__ import annotations

import hashlib
import os
import time

from tests.test_files import CHUNK, download, offer, send_chunks, upload
from tests.wire import connect


def kept_bytes(tmp_path) -> int:
    folder = tmp_path / "files"
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def on_disk(tmp_path) -> int:
    """Bytes of kept files and partial uploads."""
    return kept_bytes(tmp_path) + sum(p.stat().st_size
                                      for p in (tmp_path / "files" / "partial").iterdir())


def test_an_upload_left_open_cannot_rewrite_the_kept_file(fast_server, tmp_path):
    """The swap: mallory opens an upload of alice's file, alice's upload completes and
    is kept, then mallory's chunks go on. Carol still gets alice's bytes."""
    handout = os.urandom(300_000)
    sha = hashlib.sha256(handout).hexdigest()
    mallory = connect(fast_server.port, "mallory")
    alice = connect(fast_server.port, "alice")
    carol = connect(fast_server.port, "carol")
    ready = offer(mallory, handout, ref="m")
    assert ready["type"] == "upload_ready" and ready["offset"] == 0
    forged = os.urandom(len(handout))
    send_chunks(mallory, ready["upload"], forged, 0, CHUNK * 4)
    mallory.barrier()
    echo = upload(alice, handout, ref="a", name="handout.pdf")
    assert echo["file"]["id"] == sha
    send_chunks(mallory, ready["upload"], forged, CHUNK * 4)  # the rest, into... her own
    assert mallory.until("error")["code"] == "hash_mismatch"
    assert (tmp_path / "files" / sha).read_bytes() == handout
    assert download(carol, sha) == handout


def test_a_poisoned_upload_never_becomes_what_others_download(fast_server, tmp_path):
    """The poison: with one connection's upload of a well-known file left open, the
    same file is completed from another nickname in a room nobody else is in. Later
    alice shares it: the server asks her for the bytes (it says nothing of a file she
    cannot see), and what carol downloads is alice's file."""
    known = os.urandom(200_000)
    sha = hashlib.sha256(known).hexdigest()
    mallory = connect(fast_server.port, "mallory", rooms=["junk"])
    accomplice = connect(fast_server.port, "mallory2", rooms=["junk"])
    ready = offer(mallory, known, ref="m", room="junk")
    send_chunks(mallory, ready["upload"], os.urandom(CHUNK * 2), 0)
    mallory.barrier()
    upload(accomplice, known, ref="x", room="junk")  # kept now, in junk
    send_chunks(mallory, ready["upload"], os.urandom(len(known)), CHUNK * 2)
    assert mallory.until("error")["code"] == "hash_mismatch"
    alice = connect(fast_server.port, "alice")
    carol = connect(fast_server.port, "carol")
    asked = offer(alice, known, ref="a")
    assert asked["type"] == "upload_ready" and asked["offset"] == 0  # bytes, please
    send_chunks(alice, asked["upload"], known)
    echo = alice.until("message", ref="a")
    assert echo["file"] == {"id": sha, "name": "notes.bin", "size": len(known),
                            "type": "application/pdf"}
    assert download(carol, sha) == known
    assert (tmp_path / "files" / sha).read_bytes() == known
    assert not any((tmp_path / "files" / "partial").iterdir())  # nothing left open


def test_the_quota_bounds_concurrent_offers(start_server, tmp_path):
    """20 offers of 900 KB from 5 connections against a 1 MB quota: one is accepted,
    every other is over_quota, and at most 1 MB is ever stored."""
    server = start_server("--rate", "0", "--files-quota", "1000000")
    senders = [connect(server.port, f"s{i}") for i in range(5)]
    files = [os.urandom(900_000) for _ in range(20)]
    answers = []
    for i, data in enumerate(files):
        answers.append((senders[i % 5], data, offer(senders[i % 5], data, ref=f"f{i}")))
    accepted = [(w, d, a) for w, d, a in answers if a["type"] == "upload_ready"]
    refused = [a for _, _, a in answers if a["type"] == "error"]
    assert len(accepted) == 1
    assert {a["code"] for a in refused} == {"over_quota"} and len(refused) == 19
    for wire, data, ready in answers:
        if ready["type"] == "upload_ready":
            send_chunks(wire, ready["upload"], data)
            wire.until("message", ref=ready["ref"])
        else:  # chunks for a refused offer land nowhere
            send_chunks(wire, "f" * 16, data[:CHUNK * 3])
    assert on_disk(tmp_path) <= 1_000_000
    chat = connect(server.port, "chat")  # chat goes on
    chat.send(type="send", room="general", text="still here", ref="c")
    assert chat.until("message", ref="c")["text"] == "still here"


def test_an_abandoned_upload_gives_its_reservation_back(start_server, tmp_path):
    server = start_server("--rate", "0", "--files-quota", "1000000")
    first = connect(server.port, "first")
    watcher = connect(server.port, "watcher")
    big = os.urandom(600_000)
    ready = offer(first, big)
    assert ready["type"] == "upload_ready"
    send_chunks(first, ready["upload"], big, 0, CHUNK * 2)
    first.barrier()
    other = os.urandom(600_000)
    assert offer(watcher, other, ref="w")["code"] == "over_quota"  # 600 KB reserved
    first.close()
    watcher.until("left", nick="first")
    # its partial's bytes still count, its reservation does not
    assert offer(watcher, other, ref="w2")["type"] == "upload_ready"


def test_abandoned_uploads_expire_and_the_quota_is_free_again(start_server, tmp_path):
    """1,000 partial uploads left from an earlier run (10 MB) fill the quota; after
    --partial-idle without a chunk they are gone, and a new file fits. A stale one is
    removed at start."""
    from chat.files import owner_tag
    partial = tmp_path / "files" / "partial"
    partial.mkdir(parents=True)
    later = time.time() + 15  # last written "in 15 s": the server starts well before
    for i in range(1000):
        left = partial / f"{i:064x}.{owner_tag(f'u{i}')}"
        left.write_bytes(b"x" * 10_000)
        os.utime(left, (later, later))
    stale = partial / f"{'f' * 64}.{owner_tag('old')}"
    stale.write_bytes(b"y" * 5000)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    server = start_server("--rate", "0", "--files-quota", "10500000",
                          "--partial-idle", "1")
    assert not stale.exists()
    alice = connect(server.port, "alice")
    data = os.urandom(1_000_000)
    assert offer(alice, data, ref="early")["code"] == "over_quota"
    deadline = time.monotonic() + 60
    while any(partial.iterdir()):
        assert time.monotonic() < deadline, "the partials did not expire"
        alice.send(type="ping")  # (the test waits on the files, not on a timer)
        alice.until("pong")
    echo = upload(alice, data, ref="later")
    assert echo["file"]["size"] == len(data)


def test_a_live_abandoned_upload_expires_too(start_server, tmp_path):
    server = start_server("--rate", "0", "--partial-idle", "1")
    mover = connect(server.port, "mover")
    data = os.urandom(100_000)
    ready = offer(mover, data)
    send_chunks(mover, ready["upload"], data, 0, CHUNK)
    mover.barrier()
    partial = tmp_path / "files" / "partial"
    assert len(list(partial.iterdir())) == 1
    mover.close()
    watcher = connect(server.port, "watcher")
    deadline = time.monotonic() + 60
    while any(partial.iterdir()):
        assert time.monotonic() < deadline, "the partial did not expire"
        watcher.send(type="ping")
        watcher.until("pong")


def test_an_upload_being_sent_does_not_expire(start_server, tmp_path):
    """Idle time counts from the last chunk, and an upload open on its partial is
    never removed under its sender."""
    server = start_server("--rate", "0", "--partial-idle", "1")
    mover = connect(server.port, "mover")
    data = os.urandom(CHUNK * 3)
    ready = offer(mover, data)
    send_chunks(mover, ready["upload"], data, 0, CHUNK)
    mover.barrier()
    waited = time.monotonic()
    while time.monotonic() - waited < 2.5:  # more than the idle time, upload open
        mover.send(type="ping")
        mover.until("pong")
    send_chunks(mover, ready["upload"], data, CHUNK)
    assert mover.until("message", ref="u")["file"]["size"] == len(data)


def test_a_file_is_reachable_only_through_its_conversation(fast_server):
    """Download or re-post by SHA-256 needs a message that carries the file: in a room
    you are in, or your direct conversation. Everyone else hears what they would for
    a file that does not exist."""
    alice = connect(fast_server.port, "alice", rooms=["staff"])
    bob = connect(fast_server.port, "bob", rooms=["staff"])
    eve = connect(fast_server.port, "eve", rooms=["general"])
    secret = os.urandom(50_000)
    note = os.urandom(20_000)
    room_sha = upload(alice, secret, ref="r", room="staff")["file"]["id"]
    dm_sha = upload(alice, note, ref="d", to="bob")["file"]["id"]
    assert download(bob, room_sha) == secret
    assert download(bob, dm_sha) == note
    missing = {}
    for sha in (room_sha, dm_sha, "0" * 64):
        eve.send(type="download", file=sha, ref="e")
        missing[sha] = eve.error("no_such_file")["message"]
    assert len(set(missing.values())) == 1  # the same answer for all three
    # re-posting by hash: eve must send the bytes (no announce at once, nothing learnt)
    asked = offer(eve, note, ref="p", room="general")
    assert asked["type"] == "upload_ready" and asked["offset"] == 0
    # a member re-posts at once, with the file's real size only
    bob.send(type="upload", name="again.bin", size=len(secret) + 5, mime="x/y",
             sha256=room_sha, ref="b1", room="staff")
    assert bob.error("bad_field")["ref"] == "b1"
    again = offer(bob, secret, ref="b2", room="staff")
    assert again["type"] == "message" and again["file"]["size"] == len(secret)
    # leaving the room ends access
    bob.send(type="part", room="staff")
    bob.until("left", nick="bob")
    bob.send(type="download", file=room_sha, ref="x")
    assert bob.error("no_such_file")["ref"] == "x"


def test_a_second_connection_of_the_sender_takes_the_upload_over(fast_server):
    """A sender whose old connection is still open (not noticed gone yet) resumes from
    her new one; the old one is told, and its late chunks change nothing."""
    data = os.urandom(CHUNK * 6)
    old = connect(fast_server.port, "mover")
    ready = offer(old, data)
    send_chunks(old, ready["upload"], data, 0, CHUNK * 2)
    old.barrier()
    old.send(type="nick", nick="mover-old")  # frees the nickname; the upload stays open
    old.until("renamed")
    new = connect(fast_server.port, "mover")
    again = offer(new, data, ref="n")
    assert again["type"] == "upload_ready" and again["offset"] == CHUNK * 2
    assert old.until("error")["code"] == "no_such_upload"
    send_chunks(old, ready["upload"], os.urandom(len(data)), CHUNK * 2)  # too late
    send_chunks(new, again["upload"], data, CHUNK * 2)
    echo = new.until("message", ref="n")
    assert download(old, echo["file"]["id"]) == data
