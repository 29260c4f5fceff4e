"""Slash-command parsing (no GUI)."""

from chat.commands import Command, help_lines, parse_input


def test_plain_text_and_escaped_slash():
    assert parse_input("hello") == Command("say", ("hello",))
    assert parse_input("//not a command") == Command("say", ("/not a command",))


def test_commands():
    assert parse_input("/me waves") == Command("me", ("waves",))
    assert parse_input("/msg bob hi there") == Command("msg", ("bob", "hi there"))
    assert parse_input("/NICK rob") == Command("nick", ("rob",))
    assert parse_input("/join dev") == Command("join", ("dev",))
    assert parse_input("/part") == Command("part", ())
    assert parse_input("/who lab") == Command("who", ("lab",))
    assert parse_input("/quit bye all") == Command("quit", ("bye all",))
    assert parse_input("/help") == Command("help", ())


def test_errors_name_the_usage():
    assert parse_input("/msg bob") == Command("error", ("Usage: /msg NICK TEXT",))
    assert parse_input("/join") == Command("error", ("Usage: /join ROOM",))
    assert parse_input("/dance")[0] == "error"


def test_help_lists_every_command():
    text = "\n".join(help_lines())
    for name in ("/nick", "/me", "/msg", "/join", "/part", "/who", "/help", "/quit"):
        assert name in text
