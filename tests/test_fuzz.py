"""Fuzzing the frame parser and the server's handling of arbitrary byte streams.

Property-based (hypothesis). In CI the examples are derandomised and bounded, so a
run is repeatable and short; ``LANCHAT_FUZZ_EXAMPLES=N`` runs N random examples per
property instead (the long run quoted in the README).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sqlite3
import time
from dataclasses import is_dataclass

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from chat.errors import ProtocolError
from chat.protocol import FrameDecoder, parse_request
from tests.inproc import Harness
from tests.test_protocol import events

LONG = int(os.environ.get("LANCHAT_FUZZ_EXAMPLES", "0"))


def fuzz_settings(ci_examples: int):
    return settings(max_examples=LONG or ci_examples, derandomize=not LONG, deadline=None,
                    database=None, suppress_health_check=list(HealthCheck))


# The error codes of docs/protocol.md plus the README's additive ones.
PROTOCOL_CODES = {
    "bad_frame", "frame_too_long", "unknown_type", "bad_field", "not_registered",
    "already_registered", "bad_proto", "bad_nick", "nick_taken", "auth_failed",
    "server_full", "banned", "bad_room", "not_in_room", "no_such_user", "bad_text",
    "text_too_long", "rate_limited"}
CODES = PROTOCOL_CODES | {"tls_required", "nick_registered", "bad_password", "no_account",
                          "too_broad", "file_too_big", "over_quota", "hash_mismatch",
                          "no_such_file", "bad_offset", "no_such_upload", "store_failed"}
CLOSING = {"auth_failed", "server_full", "banned", "bad_proto", "tls_required"}
SERVER_TYPES = {"welcome", "message", "joined", "left", "renamed", "users", "notice",
                "kicked", "ping", "pong", "error", "rooms", "history_end", "typing",
                "registered", "unregistered", "search_results", "upload_ready",
                "upload_progress", "file_data"}
CLIENT_TYPES = ["hello", "send", "join", "part", "nick", "who", "rooms", "history",
                "typing", "ping", "pong", "bye", "register", "unregister", "search",
                "upload", "chunk", "download"]
FIELDS = ["room", "to", "text", "nick", "proto", "rooms", "since", "before", "limit",
          "token", "reason", "ref", "action", "password", "nick_password", "client",
          "query", "name", "size", "sha256", "mime", "upload", "offset", "data", "file"]

def json_tree(floats):
    return st.recursive(
        st.none() | st.booleans() | st.integers(-2**70, 2**70) | floats
        | st.text(max_size=40),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                    inner, max_size=4),
        max_leaves=12)


json_values = json_tree(st.floats(allow_nan=False))  # json.dumps writes inf as Infinity
strict_json_values = json_tree(st.floats(allow_nan=False, allow_infinity=False))
names = st.sampled_from(["general", "dev", "alice", "bob", "Ωmega", "a b", "", "x" * 40,
                         "server", "\u0000", "\ud800"])
field_values = json_values | names
frames = st.fixed_dictionaries(
    {"type": st.sampled_from(CLIENT_TYPES) | st.text(max_size=10)},
    optional={name: field_values for name in FIELDS})


def frame_bytes(frame) -> bytes:
    return json.dumps(frame).encode() + b"\n"


lines = st.one_of(
    frames.map(frame_bytes),
    st.binary(max_size=200),  # anything, newlines or not
    st.binary(max_size=60).map(lambda b: b + b"\n"),
    json_values.map(lambda v: json.dumps(v).encode() + b"\n"),
    st.sampled_from([b"\r\n", b"\n", b"{\"type\":\"ping\"}\r\n", b"NaN\n",
                     b"{\"type\":\"send\",\"text\":\"\\ud800\"}\n", b"\xff\xfe\n",
                     b"x" * 20000 + b"\n", b"{\"type\":1}\n", b"[1,2]\n",
                     b'{"type":"send","room":"general","text":"fuzz says hi"}\n']),
)
streams = st.lists(lines, max_size=12).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def decode_all(chunks: list[bytes]) -> list:
    """Every event of a stream: frames, or the ProtocolError codes, in order."""
    decoder, out = FrameDecoder(16384), []
    for chunk in [*chunks, b""]:
        decoder.receive_data(chunk)
        out += events(decoder)
    return out


# ---------------------------------------------------------------- the parser

@fuzz_settings(600)
@given(streams, st.lists(st.integers(0, 10**6), max_size=8))
def test_decoder_never_raises_anything_else_and_ignores_how_bytes_are_split(data, cuts):
    whole = decode_all([data])
    assert decode_all(split(data, cuts)) == whole
    assert decode_all([data[i:i + 1] for i in range(len(data))]) == whole
    for item in whole:
        assert (isinstance(item, dict) and isinstance(item["type"], str)) or \
            item in {"bad_frame", "frame_too_long"}


@fuzz_settings(500)
@given(frames)
def test_every_request_is_parsed_or_refused_with_a_documented_code(frame):
    try:
        request = parse_request(frame)
    except ProtocolError as exc:
        assert exc.code in CODES and exc.message
        if exc.code == "unknown_type":
            assert frame["type"] not in CLIENT_TYPES
        return
    assert frame["type"] in CLIENT_TYPES and is_dataclass(request)


# ---------------------------------------------------------------- the server

@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    h = Harness(tmp_path_factory.mktemp("fuzz") / "chat.db", rate=0)
    observer = h.client("observer")
    h.ready(observer)
    yield h, observer
    h.close()


def read_frames(sock, buf: bytearray) -> tuple[list[dict], bool]:
    """Whatever has arrived, without blocking; and whether the server closed."""
    eof = False
    while True:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            break
        except ConnectionResetError:
            eof = True
            break
        if not data:
            eof = True
            break
        buf += data
    *done, rest = bytes(buf).split(b"\n")
    buf[:] = rest
    return [json.loads(line) for line in done if line], eof


@fuzz_settings(250)
@given(st.booleans(), streams, st.lists(st.integers(0, 10**6), max_size=6))
def test_server_survives_any_byte_stream_and_loses_no_message(fuzz_server, register,
                                                              data, cuts):
    h, observer = fuzz_server
    if not register and data[:1].isupper():  # that would be HTTP (tests/test_web.py)
        data = b"\n" + data  # an empty line first: the JSON-lines door, fuzzed here
    sock = socket.create_connection(("127.0.0.1", h.port))
    sock.setblocking(False)
    buf, got, eof = bytearray(), [], False
    if register:
        sock.send(frame_bytes({"type": "hello", "nick": f"fz{time.monotonic_ns()}",
                               "proto": 1}))
    for chunk in split(data, cuts):
        view = memoryview(chunk)
        deadline = time.monotonic() + 30
        while view and not eof:  # send it all, stepping the server meanwhile
            try:
                view = view[sock.send(view):]
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                eof = True
            h.step()
            frames_, eof_ = read_frames(sock, buf)
            got += frames_
            eof = eof or eof_
            assert time.monotonic() < deadline
    if not eof:  # end any half line, then ask for a pong: every reply before it is in
        try:
            sock.send(b"\n" + frame_bytes({"type": "ping", "token": "end"}))
        except OSError:
            eof = True
    def settled():
        nonlocal eof
        frames_, eof_ = read_frames(sock, buf)
        got.extend(frames_)
        eof = eof or eof_
        return eof or {"type": "pong", "token": "end"} in got
    h.until(settled)
    sock.close()

    for frame in got:
        assert frame["type"] in SERVER_TYPES, frame
        if frame["type"] == "error":
            assert frame["code"] in CODES and frame["message"], frame
    errors = [f for f in got if f["type"] == "error"]
    event("connection closed" if eof else "connection kept")
    event(f"error frames: {'none' if not errors else '1-20' if len(errors) <= 20 else '>20'}")
    if eof:  # closed: by bye, a closing error, too many errors, or as a TLS client
        sent_bye = b'"bye"' in data
        tls_hello = not register and data.startswith(b"\x16\x03")  # README: closed at once
        assert sent_bye or tls_hello or (
            errors and (errors[-1]["code"] in CLOSING or len(errors) > 20)), got
    # Every message echoed to the fuzzer is stored, and the observer saw those in its room.
    ids = [f["id"] for f in got if f["type"] == "message" and f.get("from", "").startswith("fz")]
    event("messages stored and checked" if ids else "no message stored")
    if ids:
        h.server.store.fill()  # (the logged messages into SQLite, as its timer does)
        h.server.store.commit()
        db = sqlite3.connect(h.config.db_path)
        stored = {row[0] for row in db.execute(
            f"SELECT id FROM messages WHERE id IN ({','.join('?' * len(ids))})", ids)}
        db.close()
        assert stored == set(ids)
    # The server still serves everyone else.
    observer.say("general", "still here", ref="alive")
    h.wait_event(observer, "message", ref="alive")
    h.events(observer).clear()


# Lines whose answer docs/protocol.md fixes, for a user registered in no room (so nothing
# else reaches it): each gets exactly its error, in order, however the bytes are split.
KNOWN_BAD = st.one_of(
    st.binary(max_size=40).filter(lambda b: b"\n" not in b and b.strip(b"\r")).map(
        lambda b: (b"\x00" + b + b"\n", "bad_frame")),
    st.sampled_from([b"\xff\xfe\n", b"NaN\n", b"[1]\n", b"\"type\"\n", b"{\"type\":7}\n",
                     b"{}\n", b"{\"type\":\"x\",}\n"]).map(lambda b: (b, "bad_frame")),
    st.text(min_size=1, max_size=12).filter(lambda t: t not in CLIENT_TYPES).map(
        lambda t: (frame_bytes({"type": t}), "unknown_type")),
    st.just((b"{\"type\":\"ping\"}" + b" " * 17000 + b"\n", "frame_too_long")),
    strict_json_values.filter(lambda v: not isinstance(v, str)).map(
        lambda v: (frame_bytes({"type": "send", "room": "general", "text": v}),
                   "bad_field")),
    st.text(min_size=1, max_size=20).filter(lambda t: "\ud800" not in t).map(
        lambda t: (frame_bytes({"type": "send", "room": "general", "text": t + "\x07"}),
                   "bad_text")),
    st.sampled_from(["a b", "x" * 33, "", "no/slash"]).map(
        lambda r: (frame_bytes({"type": "join", "room": r}), "bad_room")),
    st.sampled_from(["general", "dev", "Ωmega"]).map(
        lambda r: (frame_bytes({"type": "send", "room": r, "text": "hi"}), "not_in_room")),
    st.integers().filter(lambda n: not 1 <= n <= 200).map(
        lambda n: (frame_bytes({"type": "history", "room": "general", "limit": n}),
                   "bad_field")),
    st.sampled_from(["", "server", "a b", "x" * 25]).map(
        lambda n: (frame_bytes({"type": "nick", "nick": n}), "bad_nick")),
    st.just((frame_bytes({"type": "hello", "nick": "again", "proto": 1}),
             "already_registered")),
    st.text(max_size=7).map(
        lambda p: (frame_bytes({"type": "register", "password": p}), "bad_password")),
)


@fuzz_settings(120)
@given(st.lists(KNOWN_BAD, min_size=1, max_size=15), st.lists(st.integers(0, 10**6),
                                                             max_size=8))
def test_every_bad_frame_gets_its_documented_error(fuzz_server, cases, cuts):
    h, observer = fuzz_server
    sock = socket.create_connection(("127.0.0.1", h.port))
    sock.setblocking(False)
    nick = f"fz{time.monotonic_ns()}"
    data = frame_bytes({"type": "hello", "nick": nick, "proto": 1, "rooms": []})
    expected = []
    for i, (line, code) in enumerate(cases):
        data += line
        expected.append(code)
        if i % 10 == 9:  # a success now and then: "more than 20 errors in a row" closes
            data += frame_bytes({"type": "ping", "token": str(i)})
            expected.append("pong")
    data += frame_bytes({"type": "ping", "token": "end"})
    buf, got = bytearray(), []
    deadline = time.monotonic() + 30
    for chunk in split(data, cuts):
        view = memoryview(chunk)
        while view:
            try:
                view = view[sock.send(view):]
            except BlockingIOError:
                pass
            h.step()
            assert time.monotonic() < deadline
    def done():
        frames_, eof = read_frames(sock, buf)
        got.extend(frames_)
        assert not eof, got
        return {"type": "pong", "token": "end"} in got
    h.until(done)
    sock.close()
    assert got[0]["type"] == "welcome"
    answers = [f["code"] if f["type"] == "error" else f["type"] for f in got[1:-1]]
    assert answers == expected


# Strings as the server keeps them: valid Unicode (no lone surrogates), any characters.
clean_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(msg_id=st.integers(1, 2 ** 63 - 1), ts=st.integers(0, 2 ** 53),
       place=st.sampled_from(["room", "to"]), where=clean_text, sender=clean_text,
       text=clean_text, ref=clean_text)
def test_the_message_template_and_the_spliced_ref_write_what_encode_writes(
        msg_id, ts, place, where, sender, text, ref):
    from chat.protocol import encode, encode_message, with_ref

    frame = {"type": "message", "id": msg_id, "ts": ts, place: where, "from": sender,
             "text": text}
    data = encode_message(msg_id, ts, place, where, sender, text)
    assert data == encode(frame)
    assert with_ref(data, ref) == encode({**frame, "ref": ref})


# ---------------------------------------------------------------- the IRC door

IRC_COMMANDS = ["PRIVMSG", "NOTICE", "TAGMSG", "JOIN", "PART", "NICK", "USER", "PASS",
                "CAP", "AUTHENTICATE", "CHATHISTORY", "WHOIS", "ISON", "WHO", "NAMES",
                "LIST", "MODE", "TOPIC", "AWAY", "PING", "PONG", "MOTD", "KICK", "QUIT"]
IRC_WORDS = ["LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN", "LS", "REQ", "END", "302",
             "PLAIN", "*", "+", "#general", "#x", "ada", "cy", "ada,cy,#general", "msgid=1",
             "msgid=99999999999999999", "timestamp=2026-11-30T12:00:00.000Z",
             "timestamp=9999-99-99T99:99:99Z", "labeled-response batch",
             "echo-message message-tags server-time draft/chathistory sasl",
             "YWRhAGFkYQBwYXNzd29yZDE=", "0", "-1", "200", "201", ",", ",,#a,", "b", "+o"]
no_line_end = st.text(max_size=12).filter(lambda t: "\r" not in t and "\n" not in t)
irc_line = st.builds(
    lambda tags, command, words, trailing: (tags + " " if tags else "") + command +
    "".join(" " + w for w in words if w and not w.startswith(":")) +
    (" :" + trailing if trailing is not None else ""),
    st.sampled_from(["", "", "@label=L1", "@label=x;+draft/react=:)", "@+typing=active",
                     "@" + "a" * 5000, "@;=;"]),
    st.one_of(st.sampled_from(IRC_COMMANDS), no_line_end.filter(lambda t: " " not in t)),
    st.lists(st.one_of(st.sampled_from(IRC_WORDS), no_line_end.filter(
        lambda t: " " not in t)), max_size=5),
    st.one_of(st.none(), st.just(""), st.text(max_size=40).filter(
        lambda t: "\r" not in t and "\n" not in t)))


@fuzz_settings(300)
@given(st.lists(irc_line, min_size=1, max_size=25), st.sampled_from([False, False, True]))
@example(["PRIVMSG ada :", "PRIVMSG #general :\x01", "NOTICE , :x", "PRIVMSG a,b,c,d,e :x",
          "TAGMSG #general", "@+x= TAGMSG ada", "@label=a PING", "@label=b PONG",
          "@label=c JOIN ,#,#general", "PART", "NICK", "NICK ada"], False)
@example(["CHATHISTORY", "CHATHISTORY LATEST", "CHATHISTORY LATEST #general * abc",
          "CHATHISTORY BETWEEN #general msgid=5 timestamp=2026-01-01T00:00:00Z 5",
          "CHATHISTORY AROUND #general msgid=0 0", "CHATHISTORY AFTER ada msgid=1 9",
          "CHATHISTORY BEFORE #general timestamp=2026-13-45T99:99:99.9999Z 3"], False)
@example(["CAP LS 302", "CAP REQ :sasl labeled-response", "AUTHENTICATE PLAIN",
          "AUTHENTICATE !!!!", "AUTHENTICATE PLAIN", "AUTHENTICATE " + "A" * 400,
          "AUTHENTICATE *", "CAP END", "USER a", "NICK zed", "USER z 0 * :z"], True)
@example(["CAP LS \u00b2", "CHATHISTORY LATEST #general * \u00b2",  # digits int() refuses
          "CHATHISTORY BEFORE #general msgid=\u0661\u0662 5", "CAP LS 3" + "0" * 400], True)
@example(["WHOIS", "WHOIS ,", "ISON", "AWAY :" + "x" * 300, "AWAY", "MODE", "MODE #general",
          "TOPIC", "KICK", "NAMES", "WHO", "LIST", "MOTD", "QUIT :bye", "PING x"], False)
def test_the_irc_door_answers_any_lines_and_breaks_nothing(tmp_path_factory, lines, early):
    from chat.config import ServerConfig
    from chat.dispatch import receive
    from chat.errors import ProtocolError
    from chat.hub import Hub
    from chat.irc import IrcCodec, IrcDoor
    from chat.protocol import CLOSED, NEED_DATA
    from chat.store import Store

    hub = Hub(ServerConfig(rate=0), Store(str(tmp_path_factory.mktemp("irc") / "i.db")))
    peers = []
    for n, nick in enumerate(("ada", "cy")):
        peer = hub.open(("127.0.0.1", n))
        peer.codec = IrcCodec("lanchat")
        peer.decoder = IrcDoor(peer, peer.codec, say=lambda data, p=peer: hub.to_peer(p, data))
        peers.append(peer)
        if not early or n:
            peer.decoder.receive_data(f"CAP LS 302\r\nCAP REQ :message-tags echo-message "
                                      f"batch labeled-response\r\nNICK {nick}\r\n"
                                      f"USER {nick} 0 * :{nick}\r\nCAP END\r\n"
                                      "JOIN #general\r\n".encode())
    fuzzed = peers[0]
    fuzzed.decoder.receive_data("".join(f"{line}\r\n" for line in lines).encode("utf-8",
                                                                               "replace"))
    for _ in range(200):  # bounded: every line makes a few frames at most
        busy = False
        for peer in peers:
            if peer.closing:
                continue
            try:
                frame = peer.decoder.next_event()
            except ProtocolError:
                continue
            if frame is NEED_DATA or frame is CLOSED:
                busy = busy or peer.decoder.has_frames  # a bounded turn: more to read
                continue
            receive(hub, peer, frame)
            busy = True
        hub.commit()
        if not busy:
            break
    else:
        raise AssertionError("the door kept making frames")
    other = peers[1]
    assert other.nick == "cy" and not other.closing  # the bystander is untouched
    for peer in peers:
        peer.settle()
        text = bytes(peer.out).decode("utf-8")
        assert text == "" or text.endswith("\r\n")
    hub.store.close()
