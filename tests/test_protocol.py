"""Byte-level tests of the sans-I/O protocol module: no sockets."""

from __future__ import annotations

import json

import pytest

from chat.errors import ProtocolError
from chat.protocol import (
    CLOSED,
    NEED_DATA,
    FrameDecoder,
    Send,
    check_ref,
    check_text,
    decode_frame,
    encode,
    name_key,
    normal_nick,
    normal_room,
    parse_request,
)


def events(decoder: FrameDecoder) -> list:
    """Drain a decoder: frames as dicts, errors as their codes."""
    out = []
    while True:
        try:
            event = decoder.next_event()
        except ProtocolError as exc:
            out.append(exc.code)
            continue
        if event is NEED_DATA or event is CLOSED:
            return out
        out.append(event)


STREAM = (b'{"type":"hello","nick":"al","proto":1}\n'
          b'{"type":"send","room":"general","text":"a\\nb \xe2\x98\x83"}\r\n'
          b'\n'
          b'nope\n'
          b'{"type":"ping","token":"t"}\n')
EXPECTED = [{"type": "hello", "nick": "al", "proto": 1},
            {"type": "send", "room": "general", "text": "a\nb \u2603"},
            "bad_frame",
            {"type": "ping", "token": "t"}]


def test_whole_stream_at_once():
    d = FrameDecoder()
    d.receive_data(STREAM)
    assert events(d) == EXPECTED


def test_split_at_every_byte():
    for cut in range(len(STREAM) + 1):
        d = FrameDecoder()
        got = []
        for part in (STREAM[:cut], STREAM[cut:]):
            if part:
                d.receive_data(part)
            got += events(d)
        assert got == EXPECTED, cut


def test_one_byte_at_a_time():
    d = FrameDecoder()
    got = []
    for i in range(len(STREAM)):
        d.receive_data(STREAM[i:i + 1])
        got += events(d)
    assert got == EXPECTED


def test_need_data_then_closed_at_eof():
    d = FrameDecoder()
    d.receive_data(b'{"type":"ping"')
    assert d.next_event() is NEED_DATA
    d.receive_data(b"")
    assert d.next_event() is CLOSED  # a half-written frame at EOF is dropped


def test_frame_exactly_max_is_accepted_one_more_is_too_long():
    limit = 64
    body = b'{"type":"x","pad":"' + b"a" * (limit - 22) + b'"}'
    assert len(body) + 1 == limit
    d = FrameDecoder(limit)
    d.receive_data(body + b"\n")
    assert events(d) == [{"type": "x", "pad": "a" * (limit - 22)}]
    d.receive_data(body[:-2] + b'a"}\n')  # one byte longer
    assert events(d) == ["frame_too_long"]


def test_carriage_return_counts_toward_max_frame():
    limit = 64
    body = b'{"type":"x","pad":"' + b"a" * (limit - 22) + b'"}'
    d = FrameDecoder(limit)
    d.receive_data(body + b"\r\n")
    assert events(d) == ["frame_too_long"]


def test_oversized_frame_reported_once_and_discarded_up_to_newline():
    d = FrameDecoder(100)
    d.receive_data(b"x" * 150)
    assert events(d) == ["frame_too_long"]
    d.receive_data(b"y" * 1000)
    assert events(d) == []
    assert d.buffered == 0
    d.receive_data(b'zzz\n{"type":"ok"}\n')
    assert events(d) == [{"type": "ok"}]


def test_oversized_frame_split_at_every_byte_is_one_error():
    stream = b'{"type":"a"}\n' + b"q" * 300 + b'\n{"type":"b"}\n'
    for cut in range(len(stream) + 1):
        d = FrameDecoder(100)
        got = []
        for part in (stream[:cut], stream[cut:]):
            if part:
                d.receive_data(part)
            got += events(d)
        assert got == [{"type": "a"}, "frame_too_long", {"type": "b"}], cut


def test_unfinished_line_memory_is_bounded():
    d = FrameDecoder(1000)
    for _ in range(100):
        d.receive_data(b"a" * 999)
        assert d.buffered < 1000


@pytest.mark.parametrize("line", [
    b"nope", b"[1,2]", b'"str"', b"42", b"null", b'{"no":"type"}', b'{"type":5}',
    b'{"type":null}', b'{"type":"x","v":NaN}', b'{"type":"x","v":Infinity}',
    b'{"type":"x","v":-Infinity}', b'{"type":"\xff"}', b'\xef\xbb\xbf{"type":"x"}',
    b'{"type":"x"', b'{"type":"x"} {}', b"[" * 5000 + b"]" * 5000,
    b'{"type":"x","n":' + b"9" * 5000 + b"}", b"   ",
    b'{"type":"x"}}', b'{"type":"x"}garbage', b'{"type":"x",}', b"{", b'{"type":"x"} 1',
    b'{"type":"x","a":' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"type":"x","v":nul}',
])
def test_bad_frames(line):
    with pytest.raises(ProtocolError) as info:
        decode_frame(line)
    assert info.value.code == "bad_frame"


@pytest.mark.parametrize("line", [
    b'{"type":"a"}', b' {"type":"a"}', b'{"type":"a"}  ', b'\t{ "type" : "a" }\t',
    b'{"type":"a","n":1.5e3,"l":[1,{"b":null}],"s":"\\u00e9\\ud83d\\ude00\\n"}',
    b'{"type":"a","type":"b"}',
])
def test_good_frames_read_as_json_reads_them(line):
    """Whitespace around the object, escapes, nesting, a repeated key: the same
    object as json.loads makes (the last of a repeated key wins)."""
    assert decode_frame(line) == json.loads(line)


def test_empty_lines_are_ignored():
    d = FrameDecoder()
    d.receive_data(b'\n\r\n\n{"type":"a"}\n\n')
    assert events(d) == [{"type": "a"}]


def test_encode_is_one_line_of_utf8_json():
    data = encode({"type": "message", "text": "l1\nl2 \u2603 \U0001F600"})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert "\u2603".encode() in data
    assert json.loads(data) == {"type": "message", "text": "l1\nl2 \u2603 \U0001F600"}


# ------------------------------------------------------------------ names

@pytest.mark.parametrize("nick", ["alice", "Bob_2", "a.b-c", "Zoë", "田中", "x" * 24, "١٢٣"])
def test_valid_nicks(nick):
    assert normal_nick(nick) is not None


@pytest.mark.parametrize("nick", ["", "x" * 25, "a b", "a\tb", "a\x00", "a!", "server",
                                  "System", "SERVER", "a\u200db"])
def test_invalid_nicks(nick):
    assert normal_nick(nick) is None


def test_names_are_nfc_normalised_and_counted_in_code_points():
    decomposed = "Zoe\u0308"  # e + combining diaeresis
    assert normal_nick(decomposed) == "Zo\u00eb"
    assert name_key("ZOË") == name_key("zoe\u0308")
    assert normal_room("e\u0301" * 32) == "\u00e9" * 32  # 64 code points before NFC


def test_room_names():
    assert normal_room("general") == "general"
    assert normal_room("server") == "server"  # only nicknames are reserved
    assert normal_room("x" * 33) is None
    assert normal_room("#dev") is None


# ------------------------------------------------------------------ text and ref

@pytest.mark.parametrize("text,code", [
    ("", "bad_text"), ("   \n\t ", "bad_text"), ("a\rb", "bad_text"),
    ("a\x00", "bad_text"), ("a\x7f", "bad_text"), ("a\x85", "bad_text"),
    ("\ud800", "bad_text"), ("x" * 4001, "text_too_long"),
])
def test_bad_texts(text, code):
    with pytest.raises(ProtocolError) as info:
        check_text(text, 4000)
    assert info.value.code == code


@pytest.mark.parametrize("text", ["hi", "a\nb\tc", " " * 10 + "x" * 4000 + " " * 10,
                                  "\U0001F468\u200d\U0001F469", "\u00ad"])
def test_good_texts(text):
    check_text(text, 4000)


@pytest.mark.parametrize("ref", [5, None, True, "x" * 65, "\ud800", ["a"]])
def test_bad_refs(ref):
    with pytest.raises(ProtocolError) as info:
        check_ref({"type": "ping", "ref": ref})
    assert info.value.code == "bad_field"


def test_good_refs():
    assert check_ref({"type": "ping"}) is None
    assert check_ref({"type": "ping", "ref": "x" * 64}) == "x" * 64


# ------------------------------------------------------------------ requests

def code_of(frame: dict) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_request(frame)
    return info.value.code


def test_hello_rules():
    assert code_of({"type": "hello", "nick": "a"}) == "bad_field"
    assert code_of({"type": "hello", "nick": "a", "proto": "1"}) == "bad_field"
    assert code_of({"type": "hello", "nick": "a", "proto": True}) == "bad_field"
    assert code_of({"type": "hello", "proto": 1}) == "bad_field"
    assert code_of({"type": "hello", "nick": 3, "proto": 1}) == "bad_field"
    assert code_of({"type": "hello", "nick": "a", "proto": 2}) == "bad_proto"
    assert code_of({"type": "hello", "nick": "a b", "proto": 1}) == "bad_nick"
    assert code_of({"type": "hello", "nick": "a", "proto": 1, "rooms": "x"}) == "bad_field"
    assert code_of({"type": "hello", "nick": "a", "proto": 1, "rooms": [1]}) == "bad_field"
    assert code_of({"type": "hello", "nick": "a", "proto": 1, "rooms": ["a b"]}) == "bad_room"
    assert code_of({"type": "hello", "nick": "a", "proto": 1, "since": "3"}) == "bad_field"
    assert code_of({"type": "hello", "nick": "a", "proto": 1, "since": -1}) == "bad_field"
    assert code_of({"type": "hello", "nick": "\ud800", "proto": 1}) == "bad_field"
    ok = parse_request({"type": "hello", "nick": "a", "proto": 1, "rooms": ["X", "x", "y"]})
    assert ok.rooms == ["X", "y"]
    assert parse_request({"type": "hello", "nick": "a", "proto": 1}).rooms == ["general"]
    assert parse_request({"type": "hello", "nick": "a", "proto": 1, "rooms": []}).rooms == []


def test_send_rules():
    assert code_of({"type": "send", "room": "g"}) == "bad_field"
    assert code_of({"type": "send", "text": "x"}) == "bad_field"
    assert code_of({"type": "send", "room": "g", "to": "b", "text": "x"}) == "bad_field"
    assert code_of({"type": "send", "room": "g", "text": 5}) == "bad_field"
    assert code_of({"type": "send", "room": "g", "text": "x", "action": 1}) == "bad_field"
    assert code_of({"type": "send", "room": "a b", "text": "x"}) == "bad_room"
    assert code_of({"type": "send", "room": 7, "text": "x"}) == "bad_field"
    assert code_of({"type": "send", "room": "\ud800", "text": "x"}) == "bad_field"
    assert code_of({"type": "send", "to": "a b", "text": "x"}) == "bad_nick"
    assert code_of({"type": "send", "room": "g", "text": "\ud800"}) == "bad_text"
    assert code_of({"type": "send", "room": "g", "text": " "}) == "bad_text"
    ok = parse_request({"type": "send", "room": "g", "text": " x ", "action": True})
    assert ok == Send(room="g", to=None, text=" x ", action=True, notice=False, tags=None)


def test_history_rules():
    assert code_of({"type": "history", "room": "g", "limit": 0}) == "bad_field"
    assert code_of({"type": "history", "room": "g", "limit": 201}) == "bad_field"
    assert code_of({"type": "history", "room": "g", "before": "1"}) == "bad_field"
    assert parse_request({"type": "history", "room": "g"}).limit == 50
    assert parse_request({"type": "history", "room": "g", "limit": 200}).limit == 200


def test_unknown_type():
    assert code_of({"type": "dance"}) == "unknown_type"


def test_other_requests_need_their_fields():
    assert code_of({"type": "join"}) == "bad_field"
    assert code_of({"type": "join", "room": "#x"}) == "bad_room"
    assert code_of({"type": "nick", "nick": "server"}) == "bad_nick"
    assert code_of({"type": "ping", "token": 5}) == "bad_field"
    assert code_of({"type": "typing"}) == "bad_field"
    assert code_of({"type": "bye", "reason": 5}) == "bad_field"
