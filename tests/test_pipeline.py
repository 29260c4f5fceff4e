"""One pipeline for every door: the loop charges a connection's input in one place.

A request is one unit of a connection's turn; so is each line, fragment or control
frame its door handles itself (an IRC MODE the door answers, a WebSocket fragment or
ping, a blank or bad line). That door work is also charged to the connection's own
bucket (``Peer.work``): past its rate the connection is not read for a while, so a
flood slows down (TCP pushes back) instead of taking the loop. These tests freeze the
server's clock, so a slowed connection stays slowed until the test moves time on.
"""

from __future__ import annotations

import socket

from chat.hub import DOOR_WORK_BURST
from chat.irc import LINES_PER_CALL
from chat.protocol import NEED_DATA
from chat.websocket import EVENTS_PER_CALL, WebSocketReader
from tests.inproc import Harness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def passing(self, seconds: float):
        """A condition's wrapper that moves time on each time it is checked."""
        def moved(condition):
            def check():
                self.now += seconds
                return condition()
            return check
        return moved


def raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def received(sock: socket.socket, into: bytearray) -> bytes:
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            into += data
    except BlockingIOError:
        pass
    return bytes(into)


def peer_of(h: Harness, nick: str):
    return next(p for p in h.hub.peers if p.nick == nick)


def test_blank_lines_are_door_work_a_flood_of_them_is_slowed_then_served(tmp_path):
    clock = Clock()
    h = Harness(tmp_path / "p.db", clock=clock)
    try:
        probe = h.client("probe")
        h.ready(probe)
        flood = raw(h.port)
        flood.sendall(b'{"type":"hello","proto":1,"nick":"flood","rooms":[]}\n')
        got = bytearray()
        h.until(lambda: b'"welcome"' in received(flood, got))
        blanks = DOOR_WORK_BURST * 3
        flood.sendall(b"\n" * blanks + b'{"type":"ping","token":"after"}\n')
        peer = peer_of(h, "flood")
        h.until(lambda: peer in h.server._slowed)  # its burst spent: not read now
        probe.send({"type": "ping", "token": "probe"})
        h.wait_event(probe, "pong", token="probe")  # everyone else is served
        for _ in range(20):
            h.step()
        assert b'"after"' not in received(flood, got)  # it waits: nothing was dropped
        assert peer.work.tokens < 1
        # as time passes it is read again at its rate, and everything it sent is handled
        h.until(clock.passing(0.5)(lambda: b'"token":"after"' in received(flood, got)))
        assert not peer.closing  # slowed, not refused
    finally:
        h.close()


def test_lines_an_irc_door_answers_itself_are_charged_like_any_door_work(tmp_path):
    clock = Clock()
    h = Harness(tmp_path / "i.db", clock=clock, irc_port=0)
    try:
        irc_port = h.server.irc_address[1]
        probe = h.client("probe")
        h.ready(probe)
        bot = raw(irc_port)
        bot.sendall(b"NICK bot\r\nUSER bot 0 * :bot\r\n")
        got = bytearray()
        h.until(lambda: b" 001 bot " in received(bot, got))
        modes = DOOR_WORK_BURST * 2
        bot.sendall(b"MODE bot\r\n" * modes + b"PING :after\r\n")
        peer = peer_of(h, "bot")
        h.until(lambda: peer in h.server._slowed)
        answered = received(bot, got).count(b" 221 ")  # MODE's answer, from the door
        # its burst (and the door turn that spent its last token), not the whole flood
        assert DOOR_WORK_BURST <= answered <= DOOR_WORK_BURST + LINES_PER_CALL
        probe.send({"type": "ping", "token": "probe"})
        h.wait_event(probe, "pong", token="probe")
        assert b"PONG" not in received(bot, got)
        h.until(clock.passing(0.5)(lambda: b":after" in received(bot, got)))
        assert received(bot, got).count(b" 221 ") == modes  # every line, in order
    finally:
        h.close()


def test_websocket_fragments_pings_and_blank_messages_count_as_door_work():
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import Message, Ping

    client = Connection(ConnectionType.CLIENT)
    wire = b""
    for _ in range(200):  # a message sent one-byte fragment by fragment, never finished
        wire += client.send(Message(data=" ", message_finished=False))
    wire += client.send(Message(data=" ", message_finished=True))  # (its end: blank)
    for _ in range(50):
        wire += client.send(Ping(b"x"))
    for _ in range(100):  # whitespace-only messages, each whole
        wire += client.send(Message(data="  ", message_finished=True))
    sent = []
    reader = WebSocketReader(b"", 16384, sent.append)
    reader.receive_data(wire)
    calls = 0
    while reader.has_frames and calls < 100:
        before = reader.work
        assert reader.next_event() is NEED_DATA
        assert reader.work - before <= EVENTS_PER_CALL  # a bounded turn
        calls += 1
    assert reader.work == 351  # every fragment, ping and blank message, each once
    assert len(sent) == 50  # the pings were answered
