"""Finding servers without typing an address: beacons between two network namespaces.

The server runs in one namespace, the finder in another, joined by a veth pair the
test makes and removes (tests/netns.py): the beacons cross a real (virtual) network
and reach nothing else. The parsing and the rate limit are tested on loopback.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from chat.config import ServerConfig
from chat.discovery import (
    ANSWER_BURST,
    SERVERS_PER_HOST,
    Announcer,
    Found,
    decode,
    encode,
    parse_beacon,
)
from chat.server import ChatServer
from tests.conftest import MAIN, ROOT
from tests.netns import LanPair, available

needs_netns = pytest.mark.skipif(not available(), reason="needs root and iproute2 (ip netns)")


@pytest.fixture
def lan():
    pair = LanPair()
    yield pair
    pair.remove()


def start_in(lan: LanPair, tmp_path, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([*lan.run_in(0), sys.executable, MAIN, "--server", "--headless",
                             "--host", "0.0.0.0", "--port", "0", "--db",
                             str(tmp_path / f"d{time.monotonic_ns()}.db"), "--quiet",
                             "--name", "Room 9", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    assert line.startswith("listening on "), proc.stderr.read()
    proc.port = int(line.rsplit(":", 1)[1])  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    assert proc.wait(10) == 0
    for pipe in (proc.stdout, proc.stderr):
        pipe.close()


def discover(lan: LanPair, timeout: float) -> subprocess.Popen:
    return subprocess.Popen([*lan.run_in(1), sys.executable, MAIN, "--discover", "--timeout",
                             str(timeout)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)


@needs_netns
def test_a_finder_in_another_namespace_finds_the_server_then_none(lan, tmp_path):
    server = start_in(lan, tmp_path)
    finders = [discover(lan, 4.0), discover(lan, 4.0)]  # two on one machine: both hear it
    for finder in finders:
        first = finder.stdout.readline()  # within the finder's 4 s, or an empty line
        assert first.startswith(f"{lan.addresses[0]}:{server.port}  Room 9  (0 online, no TLS)")
    for finder in finders:
        assert finder.wait(30) == 0
        assert finder.stdout.read() == ""  # each server once
        finder.stdout.close()
        finder.stderr.close()
    stop(server)
    none = discover(lan, 1.0)
    out, err = none.communicate(timeout=30)
    assert (none.returncode, out) == (1, "")  # and says so, in one line
    assert len(err.splitlines()) == 1 and err.endswith(
        ": no server answered within 1 s (is one running on this network, and does its "
        "firewall let UDP port 7071 in?)\n")


@needs_netns
def test_beacons_carry_users_and_the_tls_fingerprint_and_can_be_turned_off(lan, tmp_path):
    server = start_in(lan, tmp_path, "--tls")
    fingerprint = None
    hush = start_in(lan, tmp_path, "--no-announce")
    try:
        proc = discover(lan, 2.5)
        out, _ = proc.communicate(timeout=30)
        lines = out.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{lan.addresses[0]}:{server.port} ")
        fingerprint = lines[0].split("TLS ", 1)[1].rstrip(")")
        assert len(fingerprint.split()) == 16  # SHA-256 in groups of four hex digits
        assert str(hush.port) not in out
    finally:
        stop(server)
        stop(hush)


def test_datagrams_that_are_not_beacons_are_ignored():
    assert decode(b"\xff\xfe") is None and decode(b"[]") is None
    assert decode(b'{"lanchat": 2, "type": "beacon"}') is None  # another version
    assert decode(b"{" + b" " * 2000 + b"}") is None  # too long to be ours
    beacon = decode(encode("beacon", name="x", port=7070, tls=False, users=3))
    assert beacon is not None
    assert parse_beacon(beacon, "10.0.0.1").address == "10.0.0.1:7070"
    for bad in ({"port": 0}, {"port": "7070"}, {"port": 70000}, {"name": 5},
                {"users": "many"}, {"type": "probe"}):
        assert parse_beacon({**beacon, **bad}, "h") is None, bad


def test_probe_answers_are_rate_limited(tmp_path):
    """A probe is cheap to spoof: the server answers at most a burst, then ten a second."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    clock = [100.0]
    announcer = Announcer(lambda: {"name": "n", "port": 1, "tls": False, "fingerprint": "",
                                   "users": 0}, lambda: clock[0], port=port)
    asker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    asker.bind(("127.0.0.1", 0))
    asker.settimeout(2)
    try:
        for _ in range(ANSWER_BURST + 10):
            asker.sendto(encode("probe"), ("127.0.0.1", port))
        asker.sendto(b"not a probe", ("127.0.0.1", port))
        deadline = time.monotonic() + 30
        answered = 0
        while time.monotonic() < deadline and answered < ANSWER_BURST:
            announcer.readable()
            asker.settimeout(0.05)
            try:
                while True:
                    data, _ = asker.recvfrom(2048)
                    assert json.loads(data)["type"] == "beacon"
                    answered += 1
            except TimeoutError:
                pass
        announcer.readable()
        with pytest.raises(TimeoutError):
            asker.recvfrom(2048)  # the rest went unanswered
        assert answered == ANSWER_BURST
    finally:
        asker.close()
        announcer.close()


def test_a_loopback_server_and_no_announce_send_no_beacons(tmp_path):
    for n, (host, announce) in enumerate([("127.0.0.1", True), ("0.0.0.0", False)]):
        server = ChatServer(ServerConfig(host=host, port=0, db=str(tmp_path / f"{n}.db"),
                                         announce=announce))
        server.listen()
        try:
            assert server.announcer is None  # nobody else could reach it / asked not to
        finally:
            server.close()


def test_a_beacon_cannot_forge_a_line_an_escape_or_a_plain_twin():
    from chat.discovery import MAX_SERVERS, Finder, clean_name
    assert clean_name("Room 9\n10.0.0.66:7070  Fake") == "Room 9 10.0.0.66:7070 Fake"
    assert clean_name("\x1b]0;owned\x07Evil\x1b[2J") == "]0;owned Evil [2J"
    assert clean_name("abc\u202edef") == "abc def" and clean_name("\t\n") == "(no name)"
    assert len(clean_name("x" * 5000)) == 64
    tls = {"type": "beacon", "name": "Room 9", "port": 7070, "tls": True, "users": 1,
           "fingerprint": " ".join(["ABCD"] * 16)}
    assert parse_beacon({**tls, "fingerprint": "AB\nCD"}, "h") is None
    finder = Finder(port=0, probe=False)
    try:
        plain_first = parse_beacon({**tls, "tls": False, "port": 7071}, "10.0.0.9")
        finder._heard(plain_first, 0.0)  # a plain "Room 9" heard before the real one
        finder._heard(parse_beacon(tls, "10.0.0.5"), 0.0)
        finder._heard(parse_beacon({**tls, "tls": False}, "10.0.0.5"), 0.0)  # same address
        finder._heard(parse_beacon({**tls, "tls": False, "name": "ROOM 9 "}, "10.0.0.7"), 0.0)
        assert [(f.address, f.tls) for f, _ in finder.servers.values()] == [
            ("10.0.0.5:7070", True)]
        for port in range(1, 1000):  # a flood from one address: a few kept
            finder._heard(parse_beacon({**tls, "tls": False, "name": f"f{port}",
                                        "port": port}, "10.0.0.66"), 0.0)
        assert sum(f.host == "10.0.0.66" for f, _ in finder.servers.values()) == \
            SERVERS_PER_HOST
        for n in range(1000):  # from many addresses: the list stays bounded
            finder._heard(parse_beacon({**tls, "tls": False, "name": f"g{n}"},
                                       f"10.1.{n // 250}.{n % 250}"), 0.0)
        assert len(finder.servers) == MAX_SERVERS and finder.dropped > 1900
    finally:
        finder.close()


FORGER = """
import json, socket, sys, time
target, source = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((source, 0))  # an address of its own beside the real server's
def beacon(**fields):
    return json.dumps({"lanchat": 1, "type": "beacon", "port": 7070, "users": 0,
                       "tls": False, **fields}).encode()
forged = [beacon(name="Room 9\\n" + target + ":7070  Fake (0 online, no TLS)", port=7001),
          beacon(name="\\u001b]0;owned\\u0007Evil\\u001b[2J", port=7002),
          beacon(name="Room 9", port=7003)]  # a plain twin of the TLS server
flood = [beacon(name=f"flood {n}", port=10000 + n) for n in range(20000)]
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    for data in forged + flood:
        try:
            sock.sendto(data, (target, 7071))
        except OSError:
            pass
"""


@needs_netns
def test_forged_and_flooding_beacons_do_not_reach_discover_output(lan, tmp_path):
    server = start_in(lan, tmp_path, "--tls")
    forged_from = lan.addresses[0].rsplit(".", 1)[0] + ".3"  # another host on that side
    subprocess.run(["ip", "-n", lan.names[0], "addr", "add", f"{forged_from}/24", "dev",
                    lan.links[0]], check=True)
    forger = subprocess.Popen([*lan.run_in(0), sys.executable, "-c", FORGER, lan.addresses[1],
                               forged_from, "6"], cwd=ROOT)
    try:
        proc = discover(lan, 3.0)
        out, err = proc.communicate(timeout=120)  # it ends by itself, with its timeout
        lines = out.splitlines()
        assert proc.returncode == 0 and lines
        assert "\x1b" not in out and "\x07" not in out
        hosts = (f"{lan.addresses[0]}:", f"{forged_from}:")
        assert all(line.startswith(hosts) for line in lines)  # no forged line
        real = [line for line in lines if line.startswith(f"{lan.addresses[0]}:{server.port} ")]
        assert len(real) == 1 and "TLS " in real[0]
        assert not any(" Room 9  " in line and "no TLS" in line for line in lines)  # no twin
        assert len(lines) <= 1 + SERVERS_PER_HOST  # the flood's address: a few lines
        assert "not listed" in err
    finally:
        forger.terminate()
        forger.wait(30)
        stop(server)


def test_discover_prints_a_plain_server_only_at_the_end_so_a_twin_heard_first_is_not_shown(
        monkeypatch, capsys):
    """A plain "Room 9" heard before the TLS "Room 9" passes for it until the TLS one is
    heard: --discover prints TLS servers at once and plain ones only at the end, by
    which time the Finder has dropped the twin."""
    import chat.discovery
    import main

    twin = Found("10.0.0.3", 7003, "Room 9", False, "", 0)
    real = Found("10.0.0.2", 7070, "Room 9", True, "ABCD " * 15 + "ABCD", 3)
    other = Found("10.0.0.4", 7070, "Lab", False, "", 1)

    class Heard:
        """A Finder that hears the twin first, then the real server."""

        def __init__(self) -> None:
            self.listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.listen.bind(("127.0.0.1", 0))
            self.asker = None
            self.dropped = 0
            self.polls = 0

        def poll(self):
            self.polls += 1
            if self.polls == 1:
                return [other, twin]
            self.dropped = 1
            return [other, real]  # the twin was dropped when the real one was heard

        def close(self) -> None:
            self.listen.close()

    monkeypatch.setattr(chat.discovery, "Finder", Heard)
    assert main.discover(0.3) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[0] for line in out) == ["10.0.0.2:7070", "10.0.0.4:7070"]
    assert not any(line.startswith("10.0.0.3:") for line in out)
