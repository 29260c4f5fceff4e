"""Nothing said before a close is lost: on every door, over TLS or not, the lines a
client sends just before it closes (or half-closes) reach the room, all of them, in
order, before the others see it leave."""

from __future__ import annotations

import json
import socket

import pytest
from ircwire import IrcWire
from webwire import WebWire
from wire import Wire
from wsproto.events import Message

LINES = 20


def door_server(start_server, tls: bool):
    args = ["--rate", "0", "--tls", "--irc-tls-port", "0"] if tls else \
        ["--rate", "0", "--irc-port", "0"]
    server = start_server(*args)
    server.irc_port = int(server.proc.stdout.readline().rsplit(":", 1)[1])
    return server


def say_and_go(door: str, server, tls: bool, texts: list[str]) -> socket.socket:
    """Register on ``door``, then send ``texts`` to #general in one write; return the
    socket, not yet closed."""
    if door == "json":
        wire = Wire(server.port, tls=tls)
        wire.hello("leaver")
        wire.send_raw(b"".join(b'{"type":"send","room":"general","text":"%s"}\n'
                               % t.encode() for t in texts))
        return wire.sock
    if door == "web":
        web = WebWire(server.port, tls=tls)
        web.hello("leaver")
        web.sock.sendall(b"".join(
            web.ws.send(Message(data=json.dumps({"type": "send", "room": "general",
                                                  "text": t}))) for t in texts))
        return web.sock
    irc = IrcWire(server.irc_port, tls=tls)
    irc.register("leaver")
    irc.send("JOIN #general", *[f"PRIVMSG #general :{t}" for t in texts], "QUIT :bye")
    return irc.sock


@pytest.mark.parametrize("ending", ["close", "half-close"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("door", ["json", "web", "irc"])
def test_every_line_sent_before_a_close_is_delivered(start_server, door, tls, ending):
    server = door_server(start_server, tls)
    watcher = Wire(server.port, tls=tls)
    watcher.hello("watcher")
    texts = [f"last words {i}" for i in range(LINES)]
    sock = say_and_go(door, server, tls, texts)
    if ending == "half-close":
        sock.shutdown(socket.SHUT_WR)  # a FIN, and over TLS no close_notify either
    else:
        sock.close()
    got = []
    while True:
        frame = watcher.next()
        if frame["type"] == "message":
            got.append(frame["text"])
        elif frame["type"] == "left" and frame["nick"] == "leaver":
            break
    assert got == texts
    if ending == "half-close":
        sock.close()
