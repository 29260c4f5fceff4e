"""Rooms with owners over real sockets: operators, voice, topics, moderation, kicks,
invitations, keys, limits and room bans, in the JSON door (the IRC door's are in
test_irc_owners.py)."""

from __future__ import annotations

import pytest

from chat.rules import Rules, mask_of
from tests.wire import connect as plain_connect


def connect(port, nick=None, **fields):
    """A JSON client that asks for the frames of rooms with owners (`features`)."""
    return plain_connect(port, nick, features=["owners"], **fields) if nick else \
        plain_connect(port)


def join(wire, room, **fields):
    wire.send(type="join", room=room, ref="j", **fields)
    users = wire.until("users", room=room)
    wire.until("history_end", room=room)
    return users


def change(wire, room, *changes, ref="m"):
    wire.send(type="mode", room=room, ref=ref,
              changes=[dict(zip(("mode", "on", "arg"), c)) if len(c) == 3 else
                       dict(zip(("mode", "on"), c)) for c in changes])


def test_the_first_one_in_is_operator_and_gives_voice_in_a_moderated_room(fast_server):
    teacher = connect(fast_server.port, "teacher", rooms=[])
    users = join(teacher, "lab")
    assert users["operators"] == ["teacher"]
    student, quiet = connect(fast_server.port, "student", rooms=[]), \
        connect(fast_server.port, "quiet", rooms=[])
    assert join(student, "lab")["operators"] == ["teacher"]
    join(quiet, "lab")
    change(teacher, "lab", ("moderated", True), ("voice", True, "student"))
    mode = student.until("mode", room="lab")
    assert mode["by"] == "teacher" and mode["changes"] == [
        {"mode": "moderated", "on": True}, {"mode": "voice", "on": True, "arg": "student"}]
    assert teacher.until("mode", ref="m")["changes"] == mode["changes"]
    student.send(type="send", room="lab", text="may I?", ref="s1")
    assert student.until("message", ref="s1")["text"] == "may I?"
    quiet.send(type="send", room="lab", text="me too", ref="q1")
    refused = quiet.until("error", ref="q1")
    assert refused["code"] == "moderated" and "quiet" in refused["message"]
    teacher.send(type="send", room="lab", text="thank you", ref="t1")
    teacher.until("message", ref="t1")
    # a non-operator may not change anything
    change(student, "lab", ("moderated", False), ref="x")
    assert student.until("error", ref="x")["code"] == "not_operator"
    teacher.send(type="who", room="lab", ref="w")
    who = teacher.until("users", ref="w")
    assert who["operators"] == ["teacher"] and who["voiced"] == ["student"]


def test_topic_set_by_an_operator_shown_on_join_and_locked_for_others(fast_server):
    teacher = connect(fast_server.port, "teacher", rooms=[])
    join(teacher, "lab")
    teacher.send(type="topic", room="lab", topic="Lab 5: sockets, due Friday", ref="t")
    set_ = teacher.until("topic", ref="t")
    assert set_["topic"] == "Lab 5: sockets, due Friday" and set_["by"] == "teacher"
    student = connect(fast_server.port, "student", rooms=[])
    student.send(type="join", room="lab", ref="j")
    shown = student.until("topic", room="lab")
    assert shown["topic"] == "Lab 5: sockets, due Friday" and shown["by"] == "teacher"
    student.send(type="topic", room="lab", topic="no homework", ref="x")
    assert student.until("error", ref="x")["code"] == "not_operator"
    change(teacher, "lab", ("topic_lock", False))
    teacher.until("mode", ref="m")  # made before the student tries again
    student.send(type="topic", room="lab", topic="no homework?", ref="y")
    assert teacher.until("topic", room="lab", by="student")["topic"] == "no homework?"
    student.send(type="topic", room="lab", ref="q")  # asked, not set
    assert student.until("topic", ref="q")["topic"] == "no homework?"
    student.send(type="room_info", room="lab", ref="i")
    info = student.until("room_info", ref="i")
    assert info["settings"]["topic_lock"] is False and info["topic"] == "no homework?"


def test_kick_from_a_room_keeps_the_user_on_the_server(fast_server):
    teacher = connect(fast_server.port, "teacher", rooms=[])
    join(teacher, "lab")
    rowdy = connect(fast_server.port, "rowdy", rooms=[])
    join(rowdy, "lab")
    join(rowdy, "general")
    teacher.send(type="kick", room="lab", nick="rowdy", reason="take a break", ref="k")
    left = teacher.until("left", ref="k")
    assert left["reason"] == "kicked" and left["by"] == "teacher"
    assert left["message"] == "take a break" and left["nick"] == "rowdy"
    theirs = rowdy.until("left", room="lab")
    assert theirs["by"] == "teacher" and theirs["message"] == "take a break"
    rowdy.send(type="send", room="general", text="still here", ref="s")
    rowdy.until("message", ref="s")  # on the server, in its other rooms
    rowdy.send(type="send", room="lab", text="hey", ref="s2")
    assert rowdy.until("error", ref="s2")["code"] == "not_in_room"
    rowdy.send(type="kick", room="general", nick="teacher", ref="k2")
    assert rowdy.until("error", ref="k2")["code"] in ("not_operator", "user_not_in_room")


def test_invite_only_room_joined_by_invitation_and_a_key_and_a_limit(fast_server):
    teacher = connect(fast_server.port, "teacher", rooms=[])
    join(teacher, "group1")
    change(teacher, "group1", ("invite_only", True))
    teacher.until("mode", ref="m")
    ana = connect(fast_server.port, "ana", rooms=[])
    ana.send(type="join", room="group1", ref="j1")
    assert ana.until("error", ref="j1")["code"] == "invite_only"
    teacher.send(type="invite", room="group1", nick="ana", ref="i")
    assert teacher.until("invited", ref="i")["nick"] == "ana"
    invited = ana.until("invited")
    assert invited["room"] == "group1" and invited["by"] == "teacher"
    assert join(ana, "group1")["users"] == ["ana", "teacher"]
    # a key, then a limit
    join(teacher, "exam")
    change(teacher, "exam", ("key", True, "s3cret"), ("limit", True, "2"))
    teacher.until("mode", ref="m")
    ben = connect(fast_server.port, "ben", rooms=[])
    ben.send(type="join", room="exam", ref="j2")
    assert ben.until("error", ref="j2")["code"] == "bad_key"
    join(ben, "exam", key="s3cret")
    cid = connect(fast_server.port, "cid", rooms=[])
    cid.send(type="join", room="exam", key="s3cret", ref="j3")
    assert cid.until("error", ref="j3")["code"] == "room_full"
    ben.send(type="room_info", room="exam", ref="r")
    assert ben.until("room_info", ref="r")["settings"]["key"] is True  # not the key
    teacher.send(type="room_info", room="exam", ref="r")
    assert teacher.until("room_info", ref="r")["settings"]["key"] == "s3cret"


def test_room_ban_by_nickname_and_by_address(fast_server):
    teacher = connect(fast_server.port, "teacher", rooms=[])
    join(teacher, "lab")
    change(teacher, "lab", ("ban", True, "troll"))
    assert teacher.until("mode", ref="m")["changes"] == [
        {"mode": "ban", "on": True, "arg": "troll!*@*"}]
    troll = connect(fast_server.port, "Troll", rooms=[])
    troll.send(type="join", room="lab", ref="j")
    assert troll.until("error", ref="j")["code"] == "banned_from_room"
    join(troll, "general")  # the server is still open to it
    change(teacher, "lab", ("ban", False, "troll"), ("ban", True, "127.0.0.1"))
    teacher.until("mode", ref="m")
    other = connect(fast_server.port, "other", rooms=[])
    other.send(type="join", room="lab", ref="j")
    assert other.until("error", ref="j")["code"] == "banned_from_room"


def test_roles_and_settings_survive_a_restart(start_server, tmp_path):
    first = start_server("--rate", "0")
    owner = connect(first.port, "owner", rooms=[])
    owner.send(type="register", password="correct horse", ref="r")
    owner.until("registered", ref="r")
    join(owner, "club")
    owner.send(type="topic", room="club", topic="Thursdays", ref="t")
    owner.until("topic", ref="t")
    change(owner, "club", ("moderated", True))
    owner.until("mode", ref="m")
    assert first.stop() == 0
    again = start_server("--rate", "0", db=first.db)
    early = connect(again.port, "early", rooms=[])
    users = join(early, "club")
    assert users.get("operators") is None  # the owner has an account: nobody else
    early.send(type="send", room="club", text="hello?", ref="s")
    assert early.until("error", ref="s")["code"] == "moderated"
    back = connect(again.port, "owner", rooms=[], nick_password="correct horse")
    back.send(type="join", room="club", ref="j")
    assert back.until("topic", room="club")["topic"] == "Thursdays"
    assert back.until("users", room="club")["operators"] == ["owner"]


def test_an_impostor_of_an_operators_nickname_is_not_operator():
    """A role of a nickname without an account is bound to its address: here every
    client is on 127.0.0.1, so the role is checked with the address from Rules."""
    rules = Rules(0)
    rules.give("operator", "ms_lee", "ms_lee", "10.0.0.5")
    assert rules.is_operator("ms_lee", "10.0.0.5", set())
    assert not rules.is_operator("ms_lee", "10.0.0.9", set())
    assert rules.is_operator("ms_lee", "10.0.0.9", {"ms_lee"})  # signed in: anywhere
    assert Rules.from_json(rules.to_json()).ops == rules.ops


@pytest.mark.parametrize("typed, mask", [
    ("bob", "bob!*@*"), ("10.0.0.7", "*!*@10.0.0.7"), ("*!*@10.0.*", "*!*@10.0.*"),
    ("bob!b", "bob!b@*"), ("b@host", "*!b@host"), ("::1", "*!*@::1")])
def test_ban_masks_from_what_is_typed(typed, mask):
    assert mask_of(typed) == mask
    rules = Rules(0)
    rules.ban(mask, "op", 0)
    assert rules.banned("bob", "b", "host") == (typed in ("bob", "bob!b", "b@host"))


def test_the_server_operator_overrides_from_the_console(start_server):
    import subprocess
    server = start_server("--rate", "0", "--console", stdin=subprocess.PIPE)
    teacher = connect(server.port, "teacher", rooms=[])
    join(teacher, "lab")
    student = connect(server.port, "student", rooms=[])
    join(student, "lab")
    server.proc.stdin.write("op lab student\n")
    server.proc.stdin.flush()
    mode = student.until("mode", room="lab")
    assert mode["by"] == "server" and mode["changes"][0]["arg"] == "student"
    server.proc.stdin.write("topic lab Quiet reading\nmode lab +m\n"
                            "kick-room lab teacher calm down\n")
    server.proc.stdin.flush()
    assert student.until("topic", room="lab")["by"] == "server"
    assert student.until("mode", room="lab")["changes"] == [{"mode": "moderated", "on": True}]
    left = student.until("left", room="lab", nick="teacher")
    assert left["by"] == "server" and left["message"] == "calm down"


def test_a_ban_set_while_a_member_is_in_keeps_it_from_speaking(fast_server):
    teacher = connect(fast_server.port, "teacher", rooms=[])
    join(teacher, "lab")
    spammer = connect(fast_server.port, "spammer", rooms=[])
    join(spammer, "lab")
    spammer.send(type="send", room="lab", text="buy now", ref="1")
    spammer.until("message", ref="1")
    change(teacher, "lab", ("ban", True, "spam*"))
    teacher.until("mode", ref="m")
    spammer.send(type="send", room="lab", text="buy again", ref="2")
    assert spammer.until("error", ref="2")["code"] == "banned_from_room"
    spammer.send(type="nick", nick="innocent", ref="n")  # a new name the mask misses
    spammer.until("renamed", ref="n")
    spammer.send(type="send", room="lab", text="hello", ref="3")
    spammer.until("message", ref="3")
    change(teacher, "lab", ("ban", False, "spam*"), ("ban", True, "*!*@127.0.0.1"))
    teacher.until("mode", ref="m")
    spammer.send(type="send", room="lab", text="and now?", ref="4")
    assert spammer.until("error", ref="4")["code"] == "banned_from_room"


def test_glob_matching_is_linear_not_exponential():
    from chat.rules import glob_match
    assert glob_match("a*b?d", "axxbcd") and not glob_match("a*b?d", "axxbd")
    assert glob_match("*", "") and glob_match("*!*@10.0.*", "bob!b@10.0.0.7")
    hostile = "*a" * 50 + "b"  # a regex of as many `.*a` backtracks for ever
    assert not glob_match(hostile, "a" * 120)


def test_clients_that_did_not_ask_get_no_new_frames_unasked(fast_server):
    """docs/protocol.md: a client that knows nothing of rooms with owners is sent none
    of their frames unasked: no `topic` on join, no `mode`; an invitation comes as a
    `notice`; `left` of a kick only gains fields."""
    owner = connect(fast_server.port, "owner", rooms=[])
    join(owner, "lab")
    owner.send(type="topic", room="lab", topic="Lab 5", ref="t")
    owner.until("topic", ref="t")
    old = plain_connect(fast_server.port, "old", rooms=[])
    old.send(type="join", room="lab", ref="j")
    seen = [old.next()["type"] for _ in range(3)]
    assert seen == ["joined", "users", "history_end"]
    change(owner, "lab", ("moderated", True))
    owner.until("mode", ref="m")
    join(owner, "club")
    owner.send(type="invite", room="club", nick="old", ref="i")
    owner.until("invited", ref="i")
    frames = old.barrier()
    assert [f["type"] for f in frames] == ["notice"]
    assert frames[0]["text"] == "owner invites you to #club."


def test_the_console_sets_the_operators_sign_in_and_kill_works_from_a_client(start_server):
    import subprocess

    from tests.test_console import Answers
    server = start_server("--rate", "0", "--console", stdin=subprocess.PIPE)
    console = Answers(server.proc)
    boss = connect(server.port, "boss", rooms=[])
    boss.send(type="oper", name="boss", password="hunter22!", ref="o")
    assert boss.until("error", ref="o")["code"] == "no_oper"
    boss.send(type="kill", nick="boss", ref="k0")
    assert boss.until("error", ref="k0")["code"] == "not_oper"
    console.command("oper-password boss:short")
    console.until("usage: oper-password")
    console.command("oper-password boss:hunter22!")
    console.until("the operator may sign in from a client as boss")
    boss.send(type="oper", name="boss", password="wrong-one", ref="o1")
    assert boss.until("error", ref="o1")["code"] == "bad_oper"
    boss.send(type="oper", name="boss", password="hunter22!", ref="o2")
    assert boss.until("oper", ref="o2")["name"] == "boss"
    victim = connect(server.port, "victim", rooms=["general"])
    boss.send(type="topic", room="general", topic="set by the operator from outside",
              ref="t")  # an operator of every room, even one it is not in
    assert boss.until("topic", ref="t")["by"] == "boss"
    assert victim.until("topic", room="general")["by"] == "boss"
    boss.send(type="kill", nick="victim", reason="spam", ref="k")
    assert "spam" in victim.until("kicked")["reason"]


def test_a_member_muted_by_a_ban_speaks_again_after_the_ban_is_lifted_and_it_rejoins(
        fast_server):
    teacher = connect(fast_server.port, "teacher", rooms=[])
    join(teacher, "lab")
    kid = connect(fast_server.port, "kid", rooms=[])
    join(kid, "lab")
    change(teacher, "lab", ("ban", True, "kid"))
    teacher.until("mode", ref="m")
    kid.send(type="part", room="lab", ref="p")
    kid.until("left", ref="p")
    change(teacher, "lab", ("ban", False, "kid"))  # lifted while it is out
    teacher.until("mode", ref="m")
    join(kid, "lab")
    kid.send(type="send", room="lab", text="back, and sorry", ref="s")
    assert kid.until("message", ref="s")["text"] == "back, and sorry"
