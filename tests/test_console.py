"""The headless server's operator console (``--headless --console``)."""

from __future__ import annotations

import hashlib
import os
import selectors
import subprocess
import sys
import time

import pytest

from chat.console import MAX_LINE, Console, parse_duration
from tests.conftest import MAIN, ROOT
from tests.inproc import Harness
from tests.wire import connect


class Answers:
    """The console's standard output, read line by line with a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buffer = b""

    def command(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def until(self, text: str, timeout: float = 30.0) -> str:
        """Read lines until one holds ``text``; return it."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    if text in line.decode():
                        return line.decode()
                left = deadline - time.monotonic()
                assert left > 0, f"no line with {text!r} on the console"
                if sel.select(left):
                    chunk = os.read(self.fd, 65536)
                    assert chunk, f"the server ended before printing {text!r}"
                    self.buffer += chunk


def test_console_lists_speaks_bans_lifts_and_stops(start_server):
    server = start_server("--console", stdin=subprocess.PIPE)
    console = Answers(server.proc)
    alice = connect(server.port, "alice")
    console.command("who")
    line = console.until("alice")
    assert "127.0.0.1" in line and "general" in line

    console.command("say general Class ends at 3 today")
    said = alice.until("message", **{"from": "server"})
    assert said["text"] == "Class ends at 3 today"

    console.command("ban nick alice 1h spamming")
    assert "until" in console.until("banned nick alice")
    kicked = alice.until("kicked")
    assert "spamming" in kicked["reason"]
    console.command("bans")
    assert "spamming" in console.until("alice")
    again = connect(server.port)
    again.send(type="hello", nick="alice", proto=1)
    again.error("banned")

    console.command("unban nick alice")
    console.until("lifted the ban on nick alice")
    back = connect(server.port, "alice")

    console.command("kick nobody")
    console.until("error: nobody named 'nobody' is online")
    console.command("frobnicate")
    console.until("error: unknown command 'frobnicate'")
    console.command("stop")
    back.until("notice")
    assert server.proc.wait(10) == 0


def test_console_drops_the_account_of_a_forgotten_password(start_server):
    server = start_server("--console", stdin=subprocess.PIPE)
    console = Answers(server.proc)
    alice = connect(server.port, "alice")
    alice.send(type="register", password="correct horse")
    alice.until("registered")
    console.command("accounts")
    assert "registered" in console.until("alice")

    console.command("unregister alice")
    console.until("dropped the account of alice")
    assert "account" in alice.until("notice")["text"]
    alice.send(type="bye")
    alice.closed()  # the server has let the nickname go
    console.command("accounts")
    console.until("0 account(s)")
    again = connect(server.port)
    again.send(type="hello", nick="alice", proto=1)  # no password needed any more
    assert again.until("welcome")["nick"] == "alice"
    console.command("unregister alice")
    console.until("error: the nickname 'alice' has no account")


def test_console_needs_a_pipe_or_terminal_and_a_headless_server(tmp_path):
    base = [sys.executable, MAIN, "--server", "--port", "0", "--db", str(tmp_path / "c.db")]
    for args in (["--headless", "--console"], ["--console"]):
        done = subprocess.run(base + args, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, cwd=ROOT, timeout=30)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("main.py: error: --console"), lines


def test_console_takes_lines_split_anywhere_and_refuses_overlong_ones(tmp_path):
    harness = Harness(tmp_path / "chat.db")
    try:
        out: list[str] = []
        stopped: list[bool] = []
        console = Console(harness.operator, out.append, lambda: stopped.append(True))
        console.feed(b"ba")
        console.feed(b"n address 203.0.113.0/24 2d flooding\nba")
        assert len(out) == 1 and out[0].startswith("banned address 203.0.113.0/24 until ")
        console.feed(b"ns\n")
        assert "flooding" in out[-1] and "203.0.113.0/24" in out[-1]
        console.feed(b"bans " + b"x" * MAX_LINE)
        assert out[-1] == f"error: a command line is at most {MAX_LINE} bytes"
        console.feed(b"stop and the rest of that long line\nunban address 203.0.113.0/24\n")
        assert out[-1] == "lifted the ban on address 203.0.113.0/24" and not stopped
        console.feed(b"who " + b"y" * MAX_LINE + b"\n")  # too long, though complete
        assert out[-1] == f"error: a command line is at most {MAX_LINE} bytes"
        console.feed(b"ban nick not/a/nick\nstop\n")
        assert out[-2] == "error: 'not/a/nick' is not a valid nickname."
        assert stopped == [True]
    finally:
        harness.close()


@pytest.mark.parametrize("word, seconds", [("30s", 30), ("45m", 2700), ("2h", 7200),
                                           ("7d", 604800), ("1w", 604800),
                                           ("forever", None)])
def test_ban_durations(word, seconds):
    assert parse_duration(word) == seconds


@pytest.mark.parametrize("word", ["0h", "h", "2y", "1.5h", "-1d", "soon"])
def test_words_that_are_not_durations(word):
    with pytest.raises(ValueError):
        parse_duration(word)


def test_console_lists_files_and_deletes_one(start_server):
    from tests.test_files import download, upload
    server = start_server("--console", "--rate", "0", stdin=subprocess.PIPE)
    console = Answers(server.proc)
    alice = connect(server.port, "alice")
    echo = upload(alice, b"slides " * 1000, name="week1.pdf")
    sha = echo["file"]["id"]
    console.command("files")
    line = console.until("week1.pdf")
    assert line.startswith(sha[:12]) and "7,000 bytes" in line
    console.command("delete-file 1234")
    assert "at least 8 digits" in console.until("error")
    console.command(f"delete-file {sha[:10]}")
    assert console.until("deleted file").startswith(f"deleted file {sha[:12]}")
    alice.send(type="download", file=sha)
    assert alice.error("no_such_file")
    console.command("files")
    console.until("no files kept")
    again = upload(alice, b"slides " * 1000, name="week1.pdf", ref="again")  # sent anew
    assert download(alice, again["file"]["id"]) == b"slides " * 1000


def test_console_lists_unfinished_uploads_and_deletes_one(start_server, tmp_path):
    from tests.test_files import CHUNK, offer, send_chunks
    server = start_server("--console", "--rate", "0", stdin=subprocess.PIPE)
    console = Answers(server.proc)
    mover = connect(server.port, "mover")
    data = os.urandom(CHUNK * 4)
    ready = offer(mover, data)
    send_chunks(mover, ready["upload"], data, 0, CHUNK)
    mover.barrier()
    console.command("partials")
    line = console.until("being sent")
    sha = hashlib.sha256(data).hexdigest()
    assert line.startswith(sha[:12]) and f"{CHUNK:,} bytes" in line
    console.command("delete-partial 1234")
    assert "at least 8 digits" in console.until("error")
    console.command(f"delete-partial {sha[:10]}")
    assert console.until("deleted unfinished upload").endswith(sha[:12])
    assert mover.until("error")["code"] == "no_such_upload"  # its sender is told
    assert not any((tmp_path / "files" / "partial").iterdir())
    console.command("partials")
    console.until("no unfinished uploads")
    again = offer(mover, data, ref="again")  # sent anew, from its first byte
    assert again["type"] == "upload_ready" and again["offset"] == 0


def test_a_user_banned_during_an_upload_announces_nothing(start_server):
    from tests.test_files import offer, send_chunks
    server = start_server("--console", "--rate", "0", stdin=subprocess.PIPE)
    console = Answers(server.proc)
    watcher = connect(server.port, "watcher")
    mallory = connect(server.port, "mallory")
    data = os.urandom(300_000)
    ready = offer(mallory, data)
    send_chunks(mallory, ready["upload"], data, 0, 120_000)
    mallory.barrier()
    console.command("ban nick mallory 1h no files today")
    assert "no files today" in mallory.until("kicked")["reason"]
    watcher.until("left", nick="mallory")
    assert all(f["type"] != "message" for f in watcher.barrier())
    again = connect(server.port)
    again.send(type="hello", nick="mallory", proto=1)
    again.error("banned")  # and cannot come back to finish it
