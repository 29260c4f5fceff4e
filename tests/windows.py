"""Helpers for GUI tests: Xvfb, and windows run as separate processes."""

from __future__ import annotations

import itertools
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DRIVER = str(Path(__file__).with_name("gui_driver.py"))


def start_xvfb() -> subprocess.Popen:
    """Start Xvfb on a free display and point DISPLAY at it."""
    if shutil.which("Xvfb") is None:
        raise RuntimeError("GUI tests need Xvfb (apt-get install xvfb); .ci/run installs it")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp", "-noreset"], pass_fds=(write,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    answer = b""
    deadline = time.monotonic() + 30
    while not answer.endswith(b"\n"):  # Xvfb may write the number and "\n" apart,
        ready, _, _ = select.select([read], [], [], deadline - time.monotonic())
        chunk = os.read(read, 64) if ready else b""
        if not chunk:  # and dies if the pipe is closed in between
            proc.kill()
            raise RuntimeError("Xvfb did not start")
        answer += chunk
    os.close(read)
    display = answer.decode().strip()
    _wait_for_x_socket(display, proc)
    os.environ["DISPLAY"] = f":{display}"
    return proc


def _wait_for_x_socket(display: str, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait until the display accepts connections (with -noreset, a probe that
    connects and leaves does not make the server reset under the next client)."""
    path = f"/tmp/.X11-unix/X{display}"
    deadline = time.monotonic() + timeout
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Xvfb display :{display} is not accepting "
                                   "connections") from None
            select.select([], [], [], 0.05)  # a short pause between connection tries
        finally:
            probe.close()


class Window:
    """A window in its own process, driven through tests/gui_driver.py."""

    _ids = itertools.count(1)

    def __init__(self, kind: str, *args: str, env: dict[str, str],
                 prefix: tuple[str, ...] = ()) -> None:
        """``prefix``: a command that runs the window (``ip netns exec NS``)."""
        self.proc = subprocess.Popen([*prefix, sys.executable, DRIVER, kind, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.buf = b""
        self.lines: list[str] = []  # stdout lines that were not replies

    def _line(self, deadline: float) -> str:
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("window did not answer in time")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")
                    status = self.proc.wait(30)  # a negative status names the signal
                    raise AssertionError(f"window process ended with status {status}: "
                                         f"{err[-3000:]}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def wait_line(self, prefix: str, timeout: float = 60.0) -> str:
        """The next stdout line starting with ``prefix`` (seen earlier or to come)."""
        for i, line in enumerate(self.lines):
            if line.startswith(prefix):
                del self.lines[: i + 1]
                return line
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(deadline)
            if line.startswith(prefix):
                return line
            self.lines.append(line)

    def _call(self, key: str, code: str, timeout: float) -> Any:
        ident = next(self._ids)
        self.proc.stdin.write(json.dumps({"id": ident, key: code}).encode() + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(deadline)
            if not line.startswith("{"):
                self.lines.append(line)
                continue
            reply = json.loads(line)
            if reply.get("id") == ident:
                assert "error" not in reply, reply["error"]
                return reply["value"]

    def eval(self, expr: str, timeout: float = 60.0) -> Any:
        return self._call("eval", expr, timeout)

    def exec(self, code: str, timeout: float = 60.0) -> None:
        self._call("exec", code, timeout)

    def wait(self, expr: str, check: Callable[[Any], bool] = bool,
             timeout: float = 60.0) -> Any:
        """Evaluate ``expr`` in the window until ``check`` holds (with a deadline)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.eval(expr)
            if check(value):
                return value
        raise AssertionError(f"{expr!r} stayed {value!r}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()
