"""chat.resp's deadlines, against a loopback peer that takes commands and answers only
when the test says so (a Redis that hangs: stopped, swapping, stuck on its disk).

The clock is the test's: time passes when the test says, so nothing here waits for a
deadline and nothing depends on how fast the machine is.
"""

from __future__ import annotations

import select
import selectors
import socket
import time

import pytest

from chat.resp import CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S, Lost, Redis


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Hung:
    """A listener on 127.0.0.1:0 whose one connection is answered by hand."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = (socket.AF_INET, self.listener.getsockname())
        self.conn: socket.socket | None = None
        self.received = b""

    def accept(self) -> None:
        self.listener.settimeout(10)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(10)

    def read_commands(self, count: int) -> None:
        """Read until ``count`` commands have come (each starts with ``*``)."""
        assert self.conn is not None
        deadline = time.monotonic() + 10
        while self.received.count(b"*") < count:
            assert time.monotonic() < deadline, self.received
            self.received += self.conn.recv(4096)

    def answer(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def close(self) -> None:
        for sock in (self.conn, self.listener):
            if sock is not None:
                sock.close()


@pytest.fixture
def hung():
    peer = Hung()
    yield peer
    peer.close()


def drive(selector: selectors.BaseSelector, until, what: str) -> None:
    """Run the loop's side (events, never a tick) until ``until()``; 10 s at most."""
    deadline = time.monotonic() + 10
    while not until():
        assert time.monotonic() < deadline, f"no {what}"
        for key, mask in selector.select(0.05):
            key.data.events(mask)


def ready_connection(hung: Hung, clock: Clock, lost: list[str]):
    selector = selectors.DefaultSelector()
    redis = Redis(selector, clock, hung.address, 0, "test", lambda: None, lost.append)
    redis.tick()  # connects
    hung.accept()
    drive(selector, lambda: not redis.out, "the connection's first commands sent")
    hung.read_commands(2)  # CLIENT SETNAME, SELECT
    hung.answer(b"+OK\r\n+OK\r\n")
    drive(selector, lambda: redis.ready, "ready connection")
    return selector, redis


def pinged(hung: Hung):
    """A ready connection whose PING the peer has read (and not answered)."""
    clock, lost, replies = Clock(), [], []
    selector, redis = ready_connection(hung, clock, lost)
    redis.call("PING", reply=replies.append)
    redis.flush()
    hung.read_commands(3)
    return clock, lost, replies, selector, redis


def ticks(redis: Redis, clock: Clock, count: int) -> None:
    """``count`` timer passes, a tenth of a second apart (the server's rhythm)."""
    for _ in range(count):
        clock.now += 0.1
        redis.tick()


def test_a_command_unanswered_past_its_deadline_is_lost_and_told(hung):
    clock, lost, replies, selector, redis = pinged(hung)
    ticks(redis, clock, round(REQUEST_TIMEOUT_S * 10) - 1)  # not yet
    assert redis.ready and replies == [] and lost == []
    ticks(redis, clock, 2)
    assert not redis.ready
    assert len(replies) == 1 and isinstance(replies[0], Lost)
    assert lost == [f"no answer within {REQUEST_TIMEOUT_S:g} s"]


def test_a_command_answered_in_time_is_not_lost(hung):
    clock, lost, replies, selector, redis = pinged(hung)
    hung.answer(b"+PONG\r\n")
    drive(selector, lambda: replies, "the answer")
    ticks(redis, clock, 600)
    assert redis.ready and replies == [b"PONG"] and lost == []


def test_an_answer_waiting_in_the_socket_is_read_before_anything_is_given_up(hung):
    """The loop was slow to read (Redis answered in time): the answer counts."""
    clock, lost, replies, selector, redis = pinged(hung)
    hung.answer(b"+PONG\r\n")
    assert select.select([redis.sock], [], [], 10)[0]  # the bytes crossed loopback
    ticks(redis, clock, round(REQUEST_TIMEOUT_S * 10) + 1)  # no events: past it
    assert redis.ready and replies == [b"PONG"] and lost == []


def test_a_held_process_does_not_blame_redis_for_its_own_pause(hung):
    """Held with no answer yet: the deadline counts the time this process ran."""
    clock, lost, replies, selector, redis = pinged(hung)
    clock.now += 30
    redis.tick()
    assert redis.ready and lost == []  # the pause was ours
    hung.answer(b"+PONG\r\n")
    drive(selector, lambda: replies, "the answer")
    assert replies == [b"PONG"]


def test_a_connect_that_is_taken_but_never_answered_is_given_up(hung):
    clock, lost = Clock(), []
    selector = selectors.DefaultSelector()
    redis = Redis(selector, clock, hung.address, 0, "test", lambda: None, lost.append)
    redis.tick()
    hung.accept()  # the kernel took it; nobody answers SELECT
    ticks(redis, clock, round(CONNECT_TIMEOUT_S * 10) + 2)
    assert not redis.ready and lost == ["no answer within 2 s"]
