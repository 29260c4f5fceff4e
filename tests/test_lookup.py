"""Finding a server by name without waiting (chat.lookup), against a DNS server of
the test's own on 127.0.0.1 (a UDP socket it answers from, between polls)."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from test_client import pump, types

import chat.lookup
from chat.client import ChatClient
from chat.lookup import AAAA, Lookup, answers, question

NXDOMAIN = 3


class FakeDns:
    """Answers questions from ``records`` (name -> IPv4 addresses): NXDOMAIN for other
    names, nothing at all when ``silent``. Also sends a stranger's answer first."""

    def __init__(self, records: dict[str, list[str]], silent: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self.records = records
        self.silent = silent
        self.asked: list[tuple[str, int]] = []
        self.ids: set[int] = set()  # every question's id so far
        self.classes: list[int] = []  # each question's class (0x8001: reply by unicast)

    def serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except BlockingIOError:
                return
            query_id = struct.unpack_from("!H", data)[0]
            self.ids.add(query_id)
            at, labels = 12, []
            while data[at]:
                labels.append(data[at + 1:at + 1 + data[at]].decode())
                at += 1 + data[at]
            name, kind, klass = ".".join(labels), *struct.unpack_from("!2H", data, at + 1)
            self.asked.append((name, kind))
            self.classes.append(klass)
            if self.silent:
                continue
            self.sock.sendto(b"not dns at all", peer)  # ignored
            stranger = next(i for i in range(1 << 16) if i not in self.ids)  # asked by none
            self.sock.sendto(self.reply(stranger, data[12:at + 5], ["127.9.9.9"]), peer)
            addresses = self.records.get(name)
            if addresses is None:
                self.sock.sendto(self.reply(query_id, data[12:at + 5], [], NXDOMAIN), peer)
            else:
                self.sock.sendto(self.reply(query_id, data[12:at + 5],
                                            addresses if kind == 1 else []), peer)

    @staticmethod
    def reply(query_id: int, asked: bytes, addresses: list[str], rcode: int = 0) -> bytes:
        head = struct.pack("!6H", query_id, 0x8180 | rcode, 1, len(addresses), 0, 0)
        records = b"".join(b"\xc0\x0c" + struct.pack("!2HIH", 1, 1, 60, 4) +
                           socket.inet_aton(a) for a in addresses)
        return head + asked + records

    def close(self) -> None:
        self.sock.close()


def run(lookup: Lookup, dns: FakeDns, timeout: float = 30.0) -> list:
    """Poll as the window does, answering between polls; each poll must not wait: the
    test's DNS server answers only between polls (in this thread), and the lookup's
    sockets never block."""
    deadline = time.monotonic() + timeout
    while True:
        found = lookup.poll()
        assert all(sock.gettimeout() == 0.0 for sock in lookup.socks)
        if found is not None:
            return found
        assert time.monotonic() < deadline, "the lookup never ended"
        dns.serve()
        time.sleep(0.005)  # the window's next tick


@pytest.fixture
def dns():
    server = FakeDns({"teacher-pc.lab.example": ["127.1.2.3"], "chat.example": ["127.4.5.6"]})
    yield server
    server.close()


def test_addresses_and_the_hosts_file_need_no_question(tmp_path, dns):
    hosts = tmp_path / "hosts"
    hosts.write_text("# comment\n127.7.7.7  Lab-Server  lab # the lab's\n::1 localhost\n")
    assert Lookup("127.0.2.7", servers=[dns.address]).poll() == [(socket.AF_INET,
                                                                   "127.0.2.7")]
    assert Lookup("::1", servers=[dns.address]).poll() == [(socket.AF_INET6, "::1")]
    assert Lookup("lab-server", servers=[dns.address], hosts_file=str(hosts)).poll() == \
        [(socket.AF_INET, "127.7.7.7")]
    dns.serve()
    assert dns.asked == []


def test_a_name_is_asked_of_the_dns_server_with_the_search_domains(dns):
    found = run(Lookup("chat.example", servers=[dns.address], search=["lab.example"]), dns)
    assert found == [(socket.AF_INET, "127.4.5.6")]
    # a name without a dot: as given first (no such name), then in each search domain
    found = run(Lookup("teacher-pc", servers=[dns.address],
                       search=["other.example", "lab.example"]), dns)
    assert found == [(socket.AF_INET, "127.1.2.3")]
    asked = [name for name, _ in dns.asked]
    assert asked.index("teacher-pc") < asked.index("teacher-pc.other.example") < \
        asked.index("teacher-pc.lab.example")
    assert {kind for _, kind in dns.asked} == {1, AAAA}


def test_an_unknown_name_is_not_found_and_a_silent_server_costs_no_wait(dns):
    assert run(Lookup("nowhere.example", servers=[dns.address], search=[]), dns) == []
    silent = FakeDns({}, silent=True)
    try:
        started = time.monotonic()
        assert run(Lookup("slow.example", servers=[silent.address], search=[],
                          timeout=1.2), silent) == []
        assert time.monotonic() - started >= 1.2  # asked until its own deadline
        assert len(silent.asked) >= 4  # asked again after a second without an answer
    finally:
        silent.close()


def test_a_local_name_is_asked_by_multicast_dns_for_a_unicast_reply():
    lan = FakeDns({"teacher-pc.local": ["127.1.2.3"]})  # standing in for the LAN
    try:
        assert run(Lookup("teacher-pc.local", servers=[lan.address]), lan) == [
            (socket.AF_INET, "127.1.2.3")]
        assert set(lan.classes) == {0x8001}  # RFC 6762: a legacy query, answer to me
    finally:
        lan.close()


def test_dns_messages_are_read_strictly():
    query = question(7, "chat.example", 1)
    assert answers(query) is None  # a question, not an answer
    assert answers(b"\x00\x07\x81") is None  # cut short
    reply = FakeDns.reply(7, query[12:], ["127.4.5.6"])
    assert answers(reply) == (7, 0, [(socket.AF_INET, "127.4.5.6")])
    assert answers(reply[:-2]) is None


def test_the_client_finds_a_server_by_name_without_blocking(fast_server, monkeypatch):
    names = FakeDns({"chatserver.example": ["127.0.0.1"]})
    monkeypatch.setattr(chat.lookup, "resolv_conf", lambda: ([names.address], []))
    try:
        alice = ChatClient("chatserver.example", fast_server.port, "alice")
        alice.connect()  # returns before the answer, which comes only in pump() below
        assert alice.state == "resolving"
        got = pump([alice], lambda ev: (names.serve(), alice.ready)[1])
        assert types(got[alice])[:2] == ["local.connected", "welcome"]
        lost = ChatClient("nobody.example", fast_server.port, "bob")
        lost.connect()
        got = pump([lost], lambda ev: (names.serve(), "local.closed" in types(ev[lost]))[1])
        assert "No server called 'nobody.example' was found" in got[lost][-1]["error"]
    finally:
        names.close()
