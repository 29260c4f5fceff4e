"""Rooms with owners through the IRC door, with JSON clients in the same rooms:
MODE, TOPIC, KICK, INVITE, prefixes, WHO/WHOX, WHOIS, WHOWAS, LUSERS, OPER, CTCP,
IRC's special nickname characters, and a plain client on the TLS IRC port."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import launch
from tests.ircwire import IrcWire
from tests.wire import connect as plain_connect


def connect(port, nick=None, **fields):
    """A JSON client that asks for the frames of rooms with owners (`features`)."""
    return plain_connect(port, nick, features=["owners"], **fields) if nick else \
        plain_connect(port)


@pytest.fixture
def irc_server(tmp_path):
    srv = launch(tmp_path / "irc.db", "--irc-port", "0", "--rate", "0",
                 "--oper", "boss:operpassword")
    line = srv.proc.stdout.readline()
    srv.irc_port = int(line.rsplit(":", 1)[1])
    yield srv
    assert srv.stop() == 0


def in_room(port, nick, room="#lab"):
    irc = IrcWire(port)
    irc.register(nick)
    irc.send(f"JOIN {room}")
    irc.until("366", nick, room)
    return irc


def json_in(port, nick, room="lab"):
    wire = connect(port, nick, rooms=[])
    wire.send(type="join", room=room, ref="j")
    wire.until("history_end", room=room)
    return wire


def test_moderated_room_voiced_speaks_unvoiced_refused_in_both_doors(irc_server):
    op = in_room(irc_server.irc_port, "teacher")
    voiced, unvoiced = in_room(irc_server.irc_port, "ivy|away"), \
        json_in(irc_server.port, "jo")
    web_voiced = json_in(irc_server.port, "kim")
    op.send("MODE #lab +mvv ivy|away kim")
    assert op.until("MODE", "#lab")[3:] == ["+mvv", "ivy|away", "kim"]
    assert voiced.until("MODE", "#lab")[1].startswith("teacher!")
    change = unvoiced.until("mode", room="lab")
    assert change["by"] == "teacher" and {"mode": "moderated", "on": True} in change["changes"]
    voiced.send("PRIVMSG #lab :a voiced question")
    assert unvoiced.until("message", room="lab")["text"] == "a voiced question"
    web_voiced.send(type="send", room="lab", text="me as well", ref="k")
    web_voiced.until("message", ref="k")
    unvoiced.send(type="send", room="lab", text="and me?", ref="q")
    assert unvoiced.until("error", ref="q")["code"] == "moderated"
    quiet = in_room(irc_server.irc_port, "quiet")
    quiet.send("PRIVMSG #lab :can I?")
    assert quiet.until("404", "quiet", "#lab")
    op.send("NAMES #lab")
    names = set(op.until("353", "teacher", "=", "#lab")[-1].split())
    assert {"@teacher", "+ivy|away", "+kim", "jo", "quiet"} == names


def test_topic_set_from_irc_appears_in_json_and_on_join(irc_server):
    op = in_room(irc_server.irc_port, "teacher")
    watcher = json_in(irc_server.port, "watcher")
    op.send("TOPIC #lab :Lab 5: sockets, due Friday")
    assert op.until("TOPIC", "#lab")[-1] == "Lab 5: sockets, due Friday"
    topic = watcher.until("topic", room="lab")
    assert topic["topic"] == "Lab 5: sockets, due Friday" and topic["by"] == "teacher"
    late = IrcWire(irc_server.irc_port)
    late.register("late")
    late.send("JOIN #lab")
    assert late.until("332", "late", "#lab")[-1] == "Lab 5: sockets, due Friday"
    assert late.until("333", "late", "#lab")[4] == "teacher"
    late.send("TOPIC #lab :mine now")
    assert late.until("482", "late", "#lab")
    late.send("TOPIC #lab")
    assert late.until("332", "late", "#lab")[-1] == "Lab 5: sockets, due Friday"


def test_kick_invite_key_limit_and_ban_lists(irc_server):
    op = in_room(irc_server.irc_port, "teacher")
    rowdy = in_room(irc_server.irc_port, "rowdy")
    op.send("KICK #lab rowdy :take a break")
    kick = rowdy.until("KICK", "#lab", "rowdy")
    assert kick[1].startswith("teacher!") and kick[-1] == "take a break"
    op.until("KICK", "#lab", "rowdy")
    op.send("KICK #nowhere rowdy")
    op.until("403", "teacher", "#nowhere")
    op.send("MODE #lab +i")
    op.until("MODE", "#lab")
    rowdy.send("JOIN #lab")
    rowdy.until("473", "rowdy", "#lab")
    op.send("INVITE rowdy #lab")
    op.until("341", "teacher", "rowdy", "#lab")
    assert rowdy.until("INVITE", "rowdy", "#lab")[1].startswith("teacher!")
    rowdy.send("JOIN #lab")
    rowdy.until("366", "rowdy", "#lab")
    op.send("MODE #lab -i+kl s3cret 3", "MODE #lab")
    assert op.until("324", "teacher", "#lab")[4:] == ["+ntkl", "s3cret", "3"]
    rowdy.send("MODE #lab")
    assert rowdy.until("324", "rowdy", "#lab")[4:] == ["+ntkl", "*", "3"]
    guest = IrcWire(irc_server.irc_port)
    guest.register("guest")
    guest.send("JOIN #lab")
    guest.until("475", "guest", "#lab")
    guest.send("JOIN #lab s3cret")
    guest.until("366", "guest", "#lab")
    fourth = IrcWire(irc_server.irc_port)
    fourth.register("fourth")
    fourth.send("JOIN #lab s3cret")
    fourth.until("471", "fourth", "#lab")
    op.send("MODE #lab +b troll*", "MODE #lab +b")
    assert op.until("367", "teacher", "#lab")[4] == "troll*!*@*"
    op.until("368", "teacher", "#lab")
    op.send("MODE #lab +o nobody")
    op.until("401", "teacher", "nobody")  # nobody has that nickname
    op.send("MODE #lab +v fourth")
    op.until("441", "teacher", "fourth", "#lab")  # online, not in the room


def test_room_ban_set_in_the_json_door_keeps_an_irc_user_out(irc_server):
    owner = json_in(irc_server.port, "owner")
    owner.send(type="mode", room="lab", ref="b",
               changes=[{"mode": "ban", "on": True, "arg": "spam|bot"}])
    owner.until("mode", ref="b")
    bot = IrcWire(irc_server.irc_port)
    bot.register("spam|bot")
    bot.send("JOIN #lab")
    bot.until("474", "spam|bot", "#lab")


def test_who_whox_whois_whowas_lusers_and_ctcp(irc_server):
    ada = in_room(irc_server.irc_port, "ada")
    ada.send("WHO #lab %tcuhnfar,42")
    line = ada.until("354", "ada", "42")
    assert line[4:] == ["#lab", "ada", "lanchat", "ada", "H@", "0", "ada"]
    ada.until("315", "ada", "#lab")
    bob = IrcWire(irc_server.irc_port)
    bob.send("NICK bob", "USER bobby 0 * :Bob Builder")
    bob.until("001", "bob")
    ada.send("WHO bob")
    assert ada.until("352", "ada", "*")[4] == "bobby"
    ada.until("315", "ada", "bob")
    ada.send("WHOIS bob")
    whois = ada.until("311", "ada", "bob")
    assert whois[4] == "bobby" and whois[-1] == "Bob Builder"
    ada.send("PRIVMSG bob :\x01VERSION\x01")
    assert ada.until("NOTICE", "ada")[-1].startswith("\x01VERSION lanchat")
    bob.send("JOIN #lab", "QUIT :bye")
    ada.until("QUIT")  # gone
    ada.send("WHOWAS bob")
    was = ada.until("314", "ada", "bob")
    assert was[4] == "bobby" and was[-1] == "Bob Builder"
    ada.until("369", "ada", "bob")
    ada.send("LUSERS")
    assert "There are 1 users" in ada.until("251", "ada")[-1]
    ada.until("255", "ada")


def test_oper_kill_wallops_and_operator_powers(irc_server):
    boss = in_room(irc_server.irc_port, "boss", "#office")
    victim = in_room(irc_server.irc_port, "victim", "#lab")
    boss.send("OPER boss wrongpassword")
    boss.until("464", "boss")
    boss.send("KILL victim :spam")
    boss.until("481", "boss")
    boss.send("OPER boss operpassword")
    boss.until("381", "boss")
    assert boss.until("MODE", "boss")[-1] == "+o"
    boss.send("TOPIC #lab :set from outside by the operator")  # any room's operator
    assert victim.until("TOPIC", "#lab")[-1] == "set from outside by the operator"
    watcher = json_in(irc_server.port, "watcher", "lab")
    boss.send("WALLOPS :server restarts at noon")
    assert "server restarts at noon" in watcher.until("notice")["text"]
    boss.send("KILL victim :spam")
    assert "spam" in victim.until("ERROR")[-1]
    assert watcher.until("left", room="lab", nick="victim")["reason"] == "kicked"


def test_plain_text_client_on_the_tls_irc_port_is_told_in_irc(tmp_path):
    srv = launch(tmp_path / "ircs.db", "--tls", "--irc-tls-port", "0")
    port = int(srv.proc.stdout.readline().rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"NICK plain\r\nUSER plain 0 * :plain\r\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"ERROR :") and b"TLS" in answer
    assert b"HTTP" not in answer
    assert srv.stop() == 0


def test_nicknames_with_irc_special_characters_in_every_door(irc_server):
    for nick in ("ivy|away", "[bot]", "x^y", "a\\b", "q`", "{curly}"):
        wire = connect(irc_server.port, nick, rooms=[])
        wire.send(type="ping", token="p")
        wire.until("pong")
    refused = connect(irc_server.port)
    refused.send(type="hello", nick="no spaces", proto=1)
    assert refused.error("bad_nick")


def test_monitor_tells_when_followed_nicknames_come_and_go(irc_server):
    ada = IrcWire(irc_server.irc_port)
    ada.register("ada")
    ada.send("MONITOR + bob,*!x@y")
    ada.until("432", "ada", "*!x@y")
    assert ada.until("731", "ada")[-1] == "bob"
    bob = plain_connect(irc_server.port, "bob")  # a JSON client: every door counts
    assert ada.until("730", "ada")[-1] == "bob!bob@lanchat"
    bob.send(type="nick", nick="bobby", ref="n")
    bob.until("renamed", ref="n")
    assert ada.until("731", "ada")[-1] == "bob"
    ada.send("MONITOR L")
    assert ada.until("732", "ada")[-1] == "bob"
    ada.until("733", "ada")
    watcher = connect(irc_server.port, "watcher", rooms=[])
    watcher.send(type="monitor", add=["bobby", "nobody"], ref="m")
    status = watcher.until("presence", ref="m")
    assert status["online"] == ["bobby"] and status["offline"] == ["nobody"]
    assert watcher.until("monitor", ref="m")["nicks"] == ["bobby", "nobody"]
    bob.send(type="bye")
    assert watcher.until("presence")["offline"] == ["bobby"]
