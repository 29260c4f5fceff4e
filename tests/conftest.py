"""Fixtures: a real headless server started as users start it, in a temp dir."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAIN = str(ROOT / "main.py")


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    db: Path
    args: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def launch(db: Path, *args: str, stdin: int | None = None, prelude: str = "",
           wrapper: tuple[str, ...] = ()) -> Server:
    """``prelude``: Python run in the server's process before main.py (a test's
    injected fault); ``wrapper``: a command that runs the server (setpriv ...)."""
    argv = ["--server", "--headless", "--host", "127.0.0.1", "--port", "0", "--db", str(db),
            "--quiet", *args]
    if prelude:
        code = (f"{prelude}\nimport runpy, sys\nsys.argv = {[MAIN, *argv]!r}\n"
                f"runpy.run_path({MAIN!r}, run_name='__main__')")
        cmd = [*wrapper, sys.executable, "-c", code]
    else:
        cmd = [*wrapper, sys.executable, MAIN, *argv]
    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    line = proc.stdout.readline()  # the server prints it once it accepts
    if not line.startswith("listening on "):
        proc.kill()
        raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()}")
    return Server(proc, int(line.rsplit(":", 1)[1]), db, list(args))


@pytest.fixture
def start_server(tmp_path):
    """Start servers on port 0 with a db in tmp_path; each must exit 0 on SIGTERM."""
    started: list[Server] = []

    def start(*args: str, db: Path | None = None, stdin: int | None = None,
              prelude: str = "", wrapper: tuple[str, ...] = ()) -> Server:
        server = launch(db or tmp_path / "chat.db", *args, stdin=stdin, prelude=prelude,
                        wrapper=wrapper)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.returncode is None:
            assert server.stop() == 0, server.proc.stderr.read()
        for pipe in (server.proc.stdin, server.proc.stdout, server.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def redis(tmp_path):
    """A real redis-server of the test's own (tests/redisproc.py), stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (python tests/prepare.py installs it)")
    from redisproc import RedisServer
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def node(start_server, redis, tmp_path):
    """Start a node of a cluster (tests/test_cluster*.py): its own database and
    data directory, the one Redis of the test."""
    count = [0]

    def start(*args: str):
        count[0] += 1
        home = tmp_path / f"node{count[0]}"  # each its own data directory (files)
        home.mkdir()
        return start_server("--rate", "0", "--redis", redis.url, *args,
                            db=home / "chat.db",
                            stdin=subprocess.PIPE if "--console" in args else None)
    return start


@pytest.fixture
def irc_server(tmp_path):
    """A server with its IRC door too (``irc_port``), no flood control, a MOTD."""
    srv = launch(tmp_path / "irc.db", "--irc-port", "0", "--rate", "0", "--motd", "Hi IRC")
    line = srv.proc.stdout.readline()
    assert line.startswith("irc listening on 127.0.0.1:")
    srv.irc_port = int(line.rsplit(":", 1)[1])
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def fast_server(start_server):
    """No flood control, for tests that send many messages."""
    return start_server("--rate", "0")


@pytest.fixture
def browsers():
    """Real Chromium pages (tests.browser), closed after the test."""
    from tests.browser import Browser

    opened: list[Browser] = []

    def make(**kwargs) -> Browser:
        browser = Browser(**kwargs)
        opened.append(browser)
        return browser

    yield make
    for browser in opened:
        browser.quit()
