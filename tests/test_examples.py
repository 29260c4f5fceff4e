"""The runnable bots of examples/, as a user runs them, against a real server.

Each answers "!time" without waiting out its poll (it waits 30 s here: an answer that
waited for it would miss the test's deadline), and answers a "!time" said while a
server restart kept it away, once.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT, launch
from tests.wire import connect

BOTS = {"time_bot": "clock", "raw_bot": "rawclock"}
ANSWER_DEADLINE = 20.0  # well under the bots' 30 s wait; a busy machine needs far less


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(user, nick: str, timeout: float = ANSWER_DEADLINE) -> dict:
    return user.until("message", timeout=timeout, **{"from": nick, "notice": True})


@pytest.mark.parametrize("bot", sorted(BOTS))
def test_a_bot_answers_at_once_and_loses_no_command_said_during_a_restart(bot, tmp_path):
    port, db, nick = free_port(), tmp_path / "bots.db", BOTS[bot]
    servers = [launch(db, "--port", str(port), "--rate", "0")]
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / f"{bot}.py"), "--host",
                             "127.0.0.1", "--port", str(port), "--nick", nick, "--wait",
                             "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline() == f"in the chat as {nick}\n"
        ann = connect(port, "ann")
        ann.send(type="send", room="general", text="!time")
        reply = answers(ann, nick)
        assert reply["room"] == "general" and reply["text"].startswith("ann: it is ")
        ann.send(type="send", to=nick, text="!time")  # in a direct message too
        assert answers(ann, nick)["to"] == "ann"
        ann.send(type="send", room="general", text="not a command")
        # the server restarts; ann comes back first and asks while the bot is away
        assert servers[0].stop() == 0
        servers.append(launch(db, "--port", str(port), "--rate", "0"))
        ann = connect(port, "ann")
        ann.send(type="send", room="general", text="!time", ref="asked")
        asked = ann.until("message", ref="asked")
        reply = answers(ann, nick, timeout=60)  # once its backoff lets it back in
        assert reply["id"] > asked["id"] and reply["text"].startswith("ann: it is ")
        later = ann.barrier()  # nothing more came: one answer, not two
        assert [f for f in later if f.get("from") == nick] == []
    finally:
        proc.terminate()
        proc.wait(30)
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
        for server in servers:
            server.stop()
