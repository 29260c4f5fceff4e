"""docs/protocol.md is the whole contract, in the repository: every request the server
parses, every frame it sends and every error code it gives are written there, and the
page's own examples, sent as they stand to a live server, get only documented answers."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from conftest import ROOT
from wire import Wire, connect

from chat.errors import ProtocolError
from chat.protocol import PARSERS, parse_request

DOC = (ROOT / "docs" / "protocol.md").read_text()


def section(title: str) -> str:
    start = DOC.index(f"\n## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end > 0 else len(DOC)]


def table_codes(text: str) -> set[str]:
    """The `code` spans of a table's first column (several per cell allowed)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            first = line.split(" | ")[0]
            names |= set(re.findall(r"`([a-z_]+)", first))
    return names


def examples() -> list[dict]:
    """Every code span of the page that is a JSON object with a `type`."""
    found = []
    for span in re.findall(r"`(\{[^`]*\})`", DOC):
        try:
            frame = json.loads(span)
        except ValueError:
            continue  # a sketch with placeholders (ROOM, ...)
        if isinstance(frame, dict) and isinstance(frame.get("type"), str):
            found.append(frame)
    return found


DOCUMENTED_ERRORS = table_codes(section("Errors"))
SERVER_FRAMES = table_codes(section("Server frames"))


def codes_in_source() -> set[str]:
    """Error codes the server can send: every ProtocolError("code", ...) in chat/."""
    codes = set()
    for path in (ROOT / "chat").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ProtocolError" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                codes.add(node.args[0].value)
    return codes


def test_the_contract_is_in_the_repository():
    for path in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        assert "shared/PROTOCOL" not in path.read_text(), path


def test_every_error_code_the_server_sends_is_documented():
    assert codes_in_source() - DOCUMENTED_ERRORS == set()
    assert DOCUMENTED_ERRORS - codes_in_source() == set()  # and none that does not exist


def test_every_request_type_has_an_example_the_parser_takes():
    parsed = set()
    for frame in examples():
        if frame["type"] in PARSERS and frame["type"] != "hello":
            try:
                parse_request(frame)
            except ProtocolError as exc:
                raise AssertionError(f"{frame}: {exc.code}") from None
            parsed.add(frame["type"])
    assert set(PARSERS) - {"hello"} - parsed == set()
    assert parse_request(next(f for f in examples() if f["type"] == "hello"))


def test_the_pages_examples_sent_to_a_server_get_documented_answers(fast_server):
    """A client that knows only the page: its examples, in order, after a hello; each
    answer's type is in the page's table of server frames, each error code in its
    table of errors."""
    bob = connect(fast_server.port, "bob")
    alice = Wire(fast_server.port)
    seen = alice.hello("alice", rooms=["general", "dev"])
    for frame in examples():
        if frame["type"] not in PARSERS or frame["type"] in ("hello", "bye"):
            continue  # requests only; the session's own ends are tested elsewhere
        alice.send(**{**frame, "ref": frame.get("ref", "doc")})
        seen += alice.barrier()
    seen += bob.barrier()
    assert {f["type"] for f in seen} - SERVER_FRAMES == set(), seen
    codes = {f["code"] for f in seen if f["type"] == "error"}
    assert codes - DOCUMENTED_ERRORS == set(), codes
    assert {"message", "joined", "users", "history_end", "rooms", "pong"} <= \
        {f["type"] for f in seen}  # the examples did reach the chat


def test_every_section_the_contents_name_exists():
    contents = DOC[DOC.index("Contents:"):DOC.index("## Conventions")]
    headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", DOC, re.M)}
    for anchor in re.findall(r"\]\(#([^)]+)\)", contents):
        assert anchor in headings, anchor
    assert Path(ROOT / "docs" / "protocol.md").stat().st_size > 30_000  # the whole of it


def test_every_client_call_docs_bots_names_exists():
    import re

    from chat.client import ChatClient
    from chat.transfers import Fetching, Sending

    text = (ROOT / "docs" / "bots.md").read_text()
    called = set(re.findall(r"`(?:client\.)?([a-z_]+)\(", text))
    cell = "`ready`" + text.split("| `ready`", 1)[1].split(" | ", 1)[0]  # the first cell
    attributes = set(re.findall(r"`([a-z_]+)`", cell))
    assert {"connect", "poll", "say", "message", "join", "close", "history"} <= called
    for name in called - {"ChatClient", "Sending", "Fetching"}:
        assert any(hasattr(cls, name) for cls in (ChatClient, Sending, Fetching)), name
    client = ChatClient("127.0.0.1", 1, "x")
    for name in attributes | {"ready", "state", "last_id"}:
        assert hasattr(client, name), name
