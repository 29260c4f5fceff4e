"""Floods of cheap requests that ask for expensive answers, and crowds arriving or
leaving at once: during each, another client's pings are all answered, in order, and a
new client is welcomed. How fast is bench/floods.py's question (tests/flood.py notes the
figures for it); a test asserts only what happened."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time

from flood import (
    Attackers,
    Probe,
    Swarm,
    fill_history,
    raise_fd_limit,
    report,
    rss_mb,
    welcome_time,
)
from wire import Wire, connect, crowd

from chat.store import Store


def pipeline(port: int, count: int, hello: bytes, requests: bytes) -> list[socket.socket]:
    """``count`` clients that say hello, send ``requests`` in one write and never
    read what they are sent."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that stalls
        sock.sendall(hello + requests)
        socks.append(sock)
    return socks


def test_listing_100k_rooms_costs_the_asker_not_everyone(start_server, tmp_path):
    db = tmp_path / "chat.db"
    Store(str(db)).close()
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO rooms (key, name) VALUES (?, ?)",
                         ((f"room{i:06d}", f"room{i:06d}") for i in range(100_000)))
    server = start_server(db=db)
    probe = Probe(server.port)
    requests = b'{"type":"rooms"}\n' * 16
    flooders = []
    for i in range(5):
        flooders += pipeline(server.port, 1, b'{"type":"hello","nick":"f%d","proto":1}\n' % i,
                             requests)
    welcome = welcome_time(server.port, "newcomer")
    alice = connect(server.port, "alice", rooms=[])
    alice.send(type="rooms", after="room099800")
    page = alice.until("rooms")
    assert [r["name"] for r in page["rooms"]] == [f"room{i:06d}" for i in range(99801, 100000)]
    slowest = probe.stop()
    report("rooms", probe_max=slowest, welcome=welcome, rss_mb=rss_mb(server.proc.pid))
    assert rss_mb(server.proc.pid) < 200


def test_history_floods_that_are_never_read_stay_within_each_backlog(start_server, tmp_path):
    db = tmp_path / "chat.db"
    fill_history(db, "general", 250, "h" * 4000)
    server = start_server("--rate", "0", db=db)
    probe = Probe(server.port)
    requests = b"".join(b'{"type":"history","room":"general","limit":200,"ref":"%d"}\n' % i
                        for i in range(64))
    before = rss_mb(server.proc.pid)
    flooders = []
    for i in range(50):
        flooders += pipeline(server.port, 1, b'{"type":"hello","nick":"u%d","proto":1}\n' % i,
                             requests)
    welcome = welcome_time(server.port, "newcomer")
    reader = Wire(server.port)  # one that reads: every answer arrives, in order
    reader.hello("reader")
    reader.send_raw(requests)
    ends = [reader.until("history_end", timeout=30) for _ in range(64)]
    assert [e["ref"] for e in ends] == [str(i) for i in range(64)]
    growth = rss_mb(server.proc.pid) - before
    slowest = probe.stop()
    report("history", probe_max=slowest, welcome=welcome, rss_growth_mb=growth)
    assert growth < 50 * 1.0 + 40, growth  # about a MiB per stalled reader, not 8
    for sock in flooders:
        sock.close()


def test_a_rename_flood_reaches_the_room_a_few_times_only(start_server):
    server = start_server()
    others = crowd(server.port, *[f"member{i}" for i in range(49)])
    probe = Probe(server.port)
    flooder = Wire(server.port)
    flooder.hello("flooder")
    flooder.send_raw(b"".join(b'{"type":"nick","nick":"flood%d"}\n' % i for i in range(5000)))
    frames = flooder.closed(timeout=60)  # more than 20 refusals in a row close it
    assert sum(f["type"] == "renamed" for f in frames) <= 12
    welcome = welcome_time(server.port, "newcomer")
    seen = others[0].barrier()
    assert sum(f["type"] == "renamed" for f in seen) <= 12
    slowest = probe.stop()
    report("renames", probe_max=slowest, welcome=welcome)


def test_joins_with_since_zero_and_a_long_history(start_server, tmp_path):
    db = tmp_path / "chat.db"
    fill_history(db, "general", 10_000, "a message of an ordinary length, say this one")
    server = start_server("--rate", "0", "--history", "10000", db=db)
    probe = Probe(server.port)
    swarm = Swarm(server.port)
    for i in range(50):
        swarm.add(b'{"type":"hello","nick":"s%d","proto":1,"since":0}\n' % i)
    welcome = welcome_time(server.port, "newcomer")
    swarm.pump_until(lambda: len(swarm.welcomed) == 50, timeout=30)
    late = Wire(server.port)
    frames = late.hello("late", since=0)
    replayed = [f for f in frames if f["type"] == "message"]
    assert frames[-1].get("more") is True and replayed[-1]["text"].startswith("9999 ")
    slowest = probe.stop()
    report("since0", probe_max=slowest, welcome=welcome, replayed=len(replayed))
    swarm.close()


def test_a_storm_of_5000_hellos_then_5000_resets(start_server):
    raise_fd_limit(12_000)
    server = start_server("--rate", "0", "--max-clients", "10000", "--hello-timeout", "60")
    probe = Probe(server.port)
    swarm = Swarm(server.port)
    started = time.monotonic()
    for i in range(5000):
        swarm.add(b'{"type":"hello","nick":"n%d","proto":1}\n' % i)
        if i % 250 == 249:
            swarm.pump(0)
    swarm.pump_until(lambda: len(swarm.welcomed) + len(swarm.refused) == 5000, timeout=120)
    ended = time.monotonic()
    storm_s = ended - started
    assert len(swarm.welcomed) == 5000, (len(swarm.refused), storm_s)
    # the probe was served while the storm was being welcomed, not after it
    assert probe.answered_between(started, ended) >= 1
    alice = connect(server.port, "alice")
    alice.send(type="who", room="general")
    assert len(alice.until("users", timeout=30)["users"]) == 5001
    during_storm = probe.stop()
    probe = Probe(server.port)
    swarm.reset_all()
    welcome = welcome_time(server.port, "newcomer", rooms=[])
    alice.send(type="who", room="general", ref="w")
    deadline = time.monotonic() + 120
    while True:  # the 5000 `left` frames are worked off while others are served
        users = alice.until("users", timeout=30, ref="w")["users"]
        if users == ["alice"]:
            break
        assert time.monotonic() < deadline, len(users)
        alice.send(type="who", room="general", ref="w")
    after_resets = probe.stop()
    report("storm", storm_s=storm_s, probe_max_storm=during_storm,
           probe_max_resets=after_resets, welcome=welcome)
    swarm.close()


def sign_ins(port: int, times: int, every: float = 0.5) -> int:
    """How many of ``times`` sign-ins of the owner of `alice`, one every ``every``
    seconds at most (a person, not a script), are welcomed."""
    welcomed = 0
    pace = threading.Event()  # never set: its wait() paces the attempts
    for _ in range(times):
        pace.wait(every)
        wire = Wire(port)
        wire.send(type="hello", nick="alice", proto=1, rooms=[], nick_password="correct horse")
        frame = wire.next(timeout=60)
        if frame["type"] == "welcome":
            welcomed += 1
            wire.send(type="bye")
            wire.closed()
        wire.close()
    return welcomed


def registered_owner(port: int) -> None:
    owner = connect(port, "alice", rooms=[])
    owner.send(type="register", password="correct horse")
    owner.until("registered")
    owner.send(type="bye")
    owner.closed()


def test_the_owner_signs_in_during_a_guessing_flood(start_server):
    server = start_server()
    registered_owner(server.port)
    guess = b'{"type":"hello","nick":"alice","proto":1,"nick_password":"guess"}\n'
    attackers = Attackers(server.port, guess, [f"127.0.0.{i}" for i in range(2, 5)], 4)
    probe = Probe(server.port)
    welcomed = sign_ins(server.port, 15)
    guesses = attackers.stop()
    report("guessing", welcomed=welcomed, guesses=guesses)
    assert guesses > 30  # it was a flood
    assert welcomed >= 14, welcomed
    report("guessing_probe", probe_max=probe.stop())


def test_the_owner_signs_in_during_register_spam(start_server):
    server = start_server()
    registered_owner(server.port)
    spam = b'{"type":"register","password":"another password"}\n'
    attackers = Attackers(server.port, spam, ["127.0.0.1", "127.0.0.2", "127.0.0.3"], 3,
                          setup=b'{"type":"hello","nick":"spam{n}","proto":1,"rooms":[]}\n')
    welcomed = sign_ins(server.port, 15)
    spam = attackers.stop()
    report("register_spam", welcomed=welcomed, requests=spam)
    assert welcomed >= 14, welcomed
