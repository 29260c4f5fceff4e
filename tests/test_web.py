"""The web front door over real sockets: the page over HTTP, the protocol over /ws.

A WebSocket client (wsproto) speaks every docs/protocol.md request next to a JSON-lines
client in the same rooms; hostile HTTP and WebSocket input gets its documented answer
(docs/protocol.md, "The web door") and disturbs nobody else.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import Message, Request, TextMessage
from wsproto.frame_protocol import CloseReason

from chat.errors import ProtocolError
from chat.model import Peer, Room, TokenBucket
from chat.protocol import CLOSED, NEED_DATA
from chat.web import Site, WebDoor
from chat.websocket import WEBSOCKET, frame_text
from tests.conftest import MAIN, ROOT
from tests.test_fuzz import fuzz_settings
from tests.webwire import WebWire, http_get, open_socket, parse_response, read_all
from tests.wire import connect

WEB = Path(__file__).resolve().parent.parent / "web"


# ---------------------------------------------------------------- the page

def test_page_and_its_files_are_served_with_a_strict_policy(server):
    status, headers, body = http_get(server.port, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert body == (WEB / "index.html").read_bytes()
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    for src in re.findall(rb'(?:src|href)="(/[^"]*)"', body):
        status, headers, data = http_get(server.port, src.decode())
        assert status == 200, src
        assert data == (WEB / src.decode().lstrip("/")).read_bytes()
    status, headers, _ = http_get(server.port, "/app.js")
    assert headers["content-type"].startswith("text/javascript")


def test_page_has_no_inline_script_and_inserts_no_html():
    html = (WEB / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # every script is a file
    assert not re.search(r"\son[a-z]+=", html)  # no inline handlers
    for js in WEB.glob("*.js"):
        code = js.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code, (js.name, sink)


def test_http_answers_head_304_404_405(server):
    status, headers, body = http_get(server.port, "/", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    _, first, _ = http_get(server.port, "/style.css")
    status, _, body = http_get(server.port, "/style.css", {"If-None-Match": first["etag"]})
    assert status == 304 and body == b""
    assert http_get(server.port, "/../../etc/passwd")[0] == 404
    assert http_get(server.port, "/nothing")[0] == 404
    status, headers, _ = http_get(server.port, "/", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert http_get(server.port, "/ws")[0] == 426  # a plain GET of the socket's address


def test_keep_alive_serves_several_requests_on_one_connection(server):
    sock = open_socket(server.port)
    request = f"GET /icon.svg HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    sock.sendall(request * 3)  # pipelined
    icon = (WEB / "icon.svg").read_bytes()
    data = b""
    deadline = time.monotonic() + 30
    while data.count(icon) < 3 and time.monotonic() < deadline:
        data += sock.recv(65536)
    assert data.count(b"HTTP/1.1 200") == 3 and data.count(icon) == 3
    sock.close()


# ---------------------------------------------------------------- the protocol over /ws

def test_every_request_works_over_websocket_next_to_json_lines(fast_server):
    port = fast_server.port
    web = WebWire(port)
    frames = web.hello("webby", client="test-web")
    assert frames[0]["type"] == "welcome" and frames[0]["nick"] == "webby"
    plain = connect(port, "plain")
    assert web.until("joined", nick="plain")["room"] == "general"
    web.send(type="send", room="general", text="hello <b>all</b> ☕", ref="s1")
    echo = web.until("message", ref="s1")
    got = plain.until("message", id=echo["id"])
    assert got["text"] == "hello <b>all</b> ☕" and got["from"] == "webby"
    plain.send(type="send", room="general", text="hi web", action=True)
    assert web.until("message", **{"from": "plain"})["action"] is True
    web.send(type="send", to="plain", text="psst", ref="d")
    assert web.until("message", ref="d")["to"] == "plain"
    assert plain.until("message", text="psst")["from"] == "webby"
    web.send(type="join", room="dev", ref="j")
    assert web.until("joined", room="dev")["ref"] == "j"
    assert web.until("history_end", room="dev")["ref"] == "j"
    web.send(type="who", room="general", ref="w")
    assert sorted(web.until("users", ref="w")["users"]) == ["plain", "webby"]
    web.send(type="rooms", ref="r")
    names = {r["name"] for r in web.until("rooms", ref="r")["rooms"]}
    assert {"general", "dev"} <= names
    web.send(type="history", room="general", limit=5, ref="h")
    assert web.until("history_end", ref="h")["room"] == "general"
    web.send(type="typing", room="general")
    assert plain.until("typing")["nick"] == "webby"
    web.send(type="ping", token="t1")
    assert web.until("pong")["token"] == "t1"
    web.send(type="pong", token="unasked")  # an answer to no ping: accepted, no reply
    assert web.barrier() == []
    web.send(type="nick", nick="webster", ref="n")
    assert web.until("renamed", ref="n")["new"] == "webster"
    assert plain.until("renamed")["old"] == "webby"
    web.send(type="part", room="dev", ref="p")
    assert web.until("left", ref="p")["reason"] == "part"
    web.send(type="frobnicate")
    assert web.until("error")["code"] == "unknown_type"
    web.send_text("not json")
    assert web.until("error")["code"] == "bad_frame"
    web.send(type="bye", reason="done")
    web.closed()
    left = plain.until("left", nick="webster")
    assert left["reason"] == "quit" and left["message"] == "done"
    assert web.close_code == 1000


def test_resume_over_websocket_has_no_gap_and_no_duplicate(fast_server):
    port = fast_server.port
    web = WebWire(port)
    web.hello("reader")
    talker = connect(port, "talker")
    ids = []
    for i in range(3):
        talker.send(type="send", room="general", text=f"m{i}", ref=str(i))
        ids.append(talker.until("message", ref=str(i))["id"])
    assert [web.until("message", id=i)["id"] for i in ids] == ids
    web.close()
    talker.barrier()
    missed = []
    for i in range(3, 6):
        talker.send(type="send", room="general", text=f"m{i}", ref=str(i))
        missed.append(talker.until("message", ref=str(i))["id"])
    again = WebWire(port)
    frames = again.hello("reader", since=ids[-1])
    replayed = [f["id"] for f in frames if f["type"] == "message"]
    assert replayed == missed


def test_a_slow_head_is_closed_by_the_hello_timeout_and_others_go_on(start_server):
    srv = start_server("--hello-timeout", "1")
    slow = open_socket(srv.port)
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    alice = connect(srv.port, "alice")
    for i in range(5):
        alice.send(type="send", room="general", text=f"still here {i}", ref=str(i))
        alice.until("message", ref=str(i))
    assert read_all(slow, timeout=30) == b""  # closed, no answer to half a request
    alice.barrier()


def test_a_huge_head_gets_431_and_others_go_on(server):
    sock = open_socket(server.port)
    alice = connect(server.port, "alice")
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 40000 + b"\r\n\r\n"
    try:
        sock.sendall(head)
    except OSError:
        pass  # the server may close before it has read it all
    status, headers, body = parse_response(read_all(sock))
    assert status == 431
    alice.send(type="send", room="general", text="fine", ref="a")
    assert alice.until("message", ref="a")["text"] == "fine"


def test_origin_must_be_the_servers_own_address(server):
    port = server.port
    evil = WebWire(port, origin="http://evil.example")
    assert evil.rejected == 403
    ok = WebWire(port, origin=f"http://127.0.0.1:{port}")
    assert ok.accepted
    ok.hello("sameorigin")
    assert WebWire(port).accepted  # no Origin: not a browser, nothing to protect


def test_a_message_over_max_frame_is_refused_and_the_socket_kept(start_server):
    srv = start_server("--max-frame", "1024")
    web = WebWire(srv.port)
    web.hello("big")
    web.send(type="send", room="general", text="x" * 2000, ref="x")
    assert web.until("error")["code"] == "frame_too_long"
    web.send(type="send", room="general", text="small", ref="s")
    assert web.until("message", ref="s")["text"] == "small"


def test_a_binary_message_closes_with_1003(server):
    web = WebWire(server.port)
    web.hello("bin")
    other = connect(server.port, "other")
    web.send_raw(web.ws.send(Message(data=b"\x00\x01")))
    web.closed()
    assert web.close_code == CloseReason.UNSUPPORTED_DATA
    assert other.until("left", nick="bin")["reason"] == "disconnected"
    other.barrier()


def test_garbage_after_the_upgrade_closes_with_1002(server):
    web = WebWire(server.port)
    web.hello("junk")
    other = connect(server.port, "other")
    web.send_raw(b"\x81\x05hello")  # unmasked: a client must mask (RFC 6455 5.1)
    web.closed()
    assert web.close_code == CloseReason.PROTOCOL_ERROR
    assert other.until("left", nick="junk")["reason"] == "disconnected"
    other.send(type="send", room="general", text="unharmed", ref="u")
    assert other.until("message", ref="u")["text"] == "unharmed"


def test_a_websocket_that_does_not_read_is_cut_at_the_backlog_cap(start_server):
    srv = start_server("--rate", "0", "--max-backlog", "65536")
    lazy = WebWire(srv.port)
    lazy.hello("lazy")
    lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    talker = connect(srv.port, "talker")
    text = "y" * 3000
    deadline = time.monotonic() + 20
    while True:
        talker.send(type="send", room="general", text=text)
        frame = talker.next()
        if frame["type"] == "left" and frame["nick"] == "lazy":
            break
        assert time.monotonic() < deadline
    assert frame["reason"] == "disconnected"


def test_a_banned_address_gets_a_403_page(start_server):
    srv = start_server("--limit-loopback", "--max-per-address", "1")
    holder = connect(srv.port, "holder")
    status, _, body = http_get(srv.port, "/")
    assert status == 503 and b"address" in body
    holder.barrier()


def test_https_and_wss_on_the_tls_port(start_server):
    srv = start_server("--tls")
    status, headers, body = http_get(srv.port, "/", tls=True)
    assert status == 200 and b"<html" in body
    web = WebWire(srv.port, tls=True)
    web.hello("secure")
    web.send(type="send", room="general", text="over wss", ref="w")
    assert web.until("message", ref="w")["text"] == "over wss"
    status, _, body = http_get(srv.port, "/")  # http:// on the TLS port
    assert status == 400 and b"https://" in body


def test_web_clients_are_named_in_the_log(tmp_path):
    cmd = [sys.executable, MAIN, "--server", "--headless", "--host", "127.0.0.1",
           "--port", "0", "--db", str(tmp_path / "chat.db")]  # logging (no --quiet)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        WebWire(port).hello("browser")
        connect(port, "desktop").barrier()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "browser registered from 127.0.0.1 (web)" in err
    assert re.search(r"desktop registered from 127\.0\.0\.1$", err, re.M)


# ---------------------------------------------------------------- the codec

def test_websocket_frames_round_trip_through_wsproto():
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import TextMessage

    from chat.events import Message, Notice, Replay
    events = [Notice("a" * n, n) for n in (1, 200, 70000)]
    events.append(Replay([Message(id=n, ts=1, room="g", to=None, sender="x",
                                  text="y" * n, history=True) for n in (1, 2)]))
    lines = b"".join(e.data for e in events)
    pieces = WEBSOCKET.render(events)
    assert len(pieces) == len(events)  # one piece per event, a replay's lines in one
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(b"".join(pieces))
    got = [e.data.encode() + b"\n" for e in client.events() if isinstance(e, TextMessage)]
    assert len(got) == 5 and b"".join(got) == lines
    assert frame_text(b"") == b"\x81\x00"


class CountingCodec:
    farewell = b""

    def __init__(self):
        self.calls = 0
        self.share_key = self

    marks = False

    def render(self, events):
        self.calls += 1
        return WEBSOCKET.render(events)

    def pieces(self, wired):
        return WEBSOCKET.pieces(wired)


def test_a_broadcast_is_encoded_once_per_codec_not_per_member():
    codec = CountingCodec()
    dirty: dict = {}

    def make_peer(nick):  # a socketless peer
        peer = Peer(("127.0.0.1", 1), 0.0, 0, TokenBucket(0, 1, 0.0), TokenBucket(0, 1, 0.0),
                    dirty)
        peer.nick = nick
        return peer

    room = Room("general", "general")
    members = [make_peer(f"u{i}") for i in range(50)]
    for i, peer in enumerate(members):
        if i % 2:
            peer.codec = codec
        room.add(peer)
    room.fresh.clear()
    from chat.events import Message
    events = [Message(id=n, ts=1, room="general", to=None, sender="x", text="hi")
              for n in range(3)]
    for event in events:
        room.pending.append((event, None, None))
    room.deliver()
    assert codec.calls == 1
    plain, web = members[0], members[1]
    plain.settle()  # (the shared batch, kept by reference: chat.model)
    web.settle()
    assert bytes(plain.out) == b"".join(e.data for e in events)
    assert bytes(web.out) == b"".join(WEBSOCKET.render(events))
    assert members[3].borrowed is members[5].borrowed  # one copy for all


# ---------------------------------------------------------------- fuzzing, sans-I/O

def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if data[a:b]]


def drive(door: WebDoor, chunks: list[bytes]) -> list:
    """Feed ``chunks`` as the server does; return what came out (frames, errors)."""
    out = []
    for chunk in chunks:
        door.receive_data(chunk)
        for _ in range(10_000):  # bounded: each call consumes input or ends
            try:
                event = door.next_event()
            except ProtocolError as exc:
                out.append(exc.code)
                continue
            if event is NEED_DATA and door.has_frames:
                continue  # an answered request; more may be buffered
            if event is NEED_DATA or event is CLOSED:
                break
            out.append(event)
        else:
            raise AssertionError("the door never ran out of work")
        if event is CLOSED:
            break
    return out


def socketless_peer() -> Peer:
    return Peer(("127.0.0.1", 1), 0.0, 0, TokenBucket(0, 1, 0.0), TokenBucket(0, 1, 0.0), {})


UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


@fuzz_settings(300)
@given(st.sampled_from([b"GET / HTTP/1.1\r\n", b"GET ", b"POST /x HTTP/1.1\r\n", b"G"]),
       st.binary(max_size=3000), st.lists(st.integers(0, 10**6), max_size=6))
def test_any_http_bytes_get_http_answers_and_nothing_else(start, tail, cuts):
    peer = socketless_peer()
    door = WebDoor(peer, Site(), 16384, lambda: 0.0)
    drive(door, split(start + tail, cuts))
    answer = bytes(peer.out)
    if peer.codec is None:  # still HTTP: every answer is an HTTP response
        assert not answer or answer.startswith(b"HTTP/1.1 ")
        assert len(answer) <= 64 * 1024 * 8


@fuzz_settings(300)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 10**6), max_size=6))
def test_any_bytes_after_the_upgrade_give_frames_errors_or_a_close(tail, cuts):
    peer = socketless_peer()
    door = WebDoor(peer, Site(), 1024, lambda: 0.0)
    out = drive(door, split(UPGRADE + tail, cuts))
    assert bytes(peer.out).startswith(b"HTTP/1.1 101 ")
    for item in out:
        assert (isinstance(item, dict) and isinstance(item["type"], str)) or item in (
            "bad_frame", "frame_too_long")


@fuzz_settings(100)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=5),
       st.lists(st.integers(0, 10**6), max_size=6))
def test_masked_text_messages_split_anywhere_come_out_whole(texts, cuts):
    from wsproto.connection import Connection, ConnectionType
    client = Connection(ConnectionType.CLIENT)
    wire = b"".join(client.send(Message(data=json.dumps({"type": "x", "t": t})))
                    for t in texts)
    door = WebDoor(socketless_peer(), Site(), 16384, lambda: 0.0)
    out = drive(door, split(UPGRADE + wire, cuts))
    assert [f["t"] for f in out] == texts


def test_head_size_is_counted_however_the_bytes_are_split():
    def answer(chunks):
        peer = socketless_peer()
        drive(WebDoor(peer, Site(), 16384, lambda: 0.0), chunks)
        return bytes(peer.out).split(b"\r\n", 1)[0]

    ok = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 15000 + b"\r\n\r\n"
    big = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 17000 + b"\r\n\r\n"
    for size in (1, 7, 4096, 100000):
        assert answer([ok[i:i + size] for i in range(0, len(ok), size)]) == b"HTTP/1.1 200 OK"
        assert answer([big[i:i + size] for i in range(0, len(big), size)]) \
            == b"HTTP/1.1 431 Request Header Fields Too Large"
    small = b"GET /icon.svg HTTP/1.1\r\nHost: h\r\n\r\n"  # many small ones are fine
    peer = socketless_peer()
    drive(WebDoor(peer, Site(), 16384, lambda: 0.0), [small * 400])
    assert bytes(peer.out).count(b"HTTP/1.1 200 OK") == 400


def test_a_malformed_request_gets_400(server):
    sock = open_socket(server.port)
    sock.sendall(b"GET / HTTP/1.1\r\nthis is no header\r\n\r\n")
    status, headers, _ = parse_response(read_all(sock))
    assert status == 400 and headers["connection"] == "close"


def quiet_for(sock, seconds: float) -> bytes:
    """Read for ``seconds`` (the wait is the point: a timer must or must not fire)."""
    return read_all(sock, seconds, mark_eof=True)


def test_the_upgrade_restarts_the_hello_timer(start_server):
    srv = start_server("--hello-timeout", "1.5")
    sock = open_socket(srv.port)  # one keep-alive connection: the page, then the socket
    sock.sendall(f"GET /icon.svg HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
    first = quiet_for(sock, 1.0)
    assert first.startswith(b"HTTP/1.1 200 OK") and not first.endswith(b"<EOF>")
    client = WSConnection(ConnectionType.CLIENT)
    sock.sendall(client.send(Request(host=f"127.0.0.1:{srv.port}", target="/ws")))
    upgraded = quiet_for(sock, 1.0)  # 2 s after the start, 1 s after the upgrade
    assert upgraded.startswith(b"HTTP/1.1 101 ") and not upgraded.endswith(b"<EOF>")
    client.receive_data(upgraded)
    list(client.events())  # the handshake's answer
    sock.sendall(client.send(Message(data='{"type":"hello","nick":"late","proto":1}')))
    client.receive_data(quiet_for(sock, 1.0))
    texts = [e.data for e in client.events() if isinstance(e, TextMessage)]
    assert json.loads(texts[0])["type"] == "welcome"
    idle = open_socket(srv.port)  # an upgrade that never says hello is closed in time
    idle.sendall(b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: "
                 b"Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert quiet_for(idle, 4).endswith(b"\x88\x02\x03\xe8<EOF>")  # close 1000, then EOF


def test_a_turn_reads_a_bounded_number_of_websocket_events():
    """9,000 one-byte fragments (whitespace) make no frame until the last: each
    next_event reads at most EVENTS_PER_CALL of them and says there is more, so one
    connection's turn in a pass is bounded (the rest wait for its next turn)."""
    from wsproto.connection import Connection

    from chat.websocket import EVENTS_PER_CALL, WebSocketReader

    client = Connection(ConnectionType.CLIENT)
    wire = b"".join(client.send(Message(data=" ", message_finished=False))
                    for _ in range(9000))
    wire += client.send(Message(data='{"type":"ping","token":"t"}', message_finished=True))
    reader = WebSocketReader(b"", 16384, lambda data: None)
    reader.receive_data(wire)
    calls = 0
    while (frame := reader.next_event()) is NEED_DATA:
        assert reader.has_frames  # not done: its next turn goes on
        calls += 1
        assert calls < 10_000
    assert frame == {"type": "ping", "token": "t"}
    assert calls >= 9000 // EVENTS_PER_CALL
