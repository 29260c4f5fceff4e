"""main.py as a user runs it: options, startup errors, clean stops."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys

import pytest
from conftest import MAIN, ROOT
from wire import connect


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, MAIN, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("args,needle", [
    (["--server", "--headless", "--port", "banana"], "--port"),
    (["--server", "--client"], "not allowed"),
    ([], "one of the arguments"),
    (["--server", "--headless", "--port", "70000"], "--port"),
    (["--server", "--headless", "--max-frame", "10"], "--max-frame"),
    (["--server", "--headless", "--rate", "-1"], "--rate"),
    (["--server", "--headless", "--burst", "0"], "--burst"),
    (["--client", "--headless"], "--headless"),
    (["--server", "--headless", "--bogus"], "--bogus"),
    (["--server", "--headless", "--max-file-size", "-5"], "--max-file-size"),
    (["--server", "--headless", "--files-quota", "-1"], "--files-quota"),
    (["--discover", "--timeout", "0"], "--timeout"),  # rejected before any probe
    (["--discover", "--server"], "not allowed"),
    (["--server", "--headless", "--redis", "http://127.0.0.1:6379"], "redis://HOST:PORT/DB"),
    (["--client", "--host", "127.0.0.1:7070, 127.0.0.1:x"], "--host"),
    (["--server", "--headless", "--redis", "redis://127.0.0.1:99999/0"], "--redis"),
    (["--server", "--headless", "--redis", "redis://127.0.0.1:6379/x"], "--redis"),
])
def test_bad_options_give_one_line_and_nonzero_exit(args, needle, tmp_path):
    result = run(*args, "--db", str(tmp_path / "x.db")) if args else run()
    assert result.returncode != 0
    assert needle in one_error_line(result)


def test_port_in_use(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    result = run("--server", "--headless", "--host", "127.0.0.1", "--port", str(port),
                 "--db", str(tmp_path / "x.db"))
    taken.close()
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in one_error_line(result)


def test_unwritable_db_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run("--server", "--headless", "--port", "0", "--db", str(blocker / "h.db"))
    assert result.returncode == 1
    assert "cannot open database" in one_error_line(result)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    result = run("--server", "--headless", "--port", "0", "--db", str(ro / "h.db"))
    assert result.returncode == 1 and "cannot open database" in one_error_line(result)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_listening_line_and_clean_stop(start_server, sig):
    server = start_server()
    a = connect(server.port, "alice")
    a.send(type="send", room="general", text="x")
    a.until("message")
    assert server.stop(sig) == 0
    assert "Traceback" not in server.proc.stderr.read()
    frames = a.closed()
    assert frames[-1]["type"] == "notice"


# Connections that ended stay unclosed (a crowd leaving is closed over several passes:
# the stop must come while some still wait for their turn).
# The flush a stop gives readers is made long (300 s), so that waiting it out cannot
# pass for a quick stop on a busy machine.
NO_BURIALS = """
import chat.server
chat.server.ChatServer._bury = lambda self: 0
chat.server.SHUTDOWN_FLUSH_SECONDS = 300.0
"""


def test_a_stop_right_after_clients_vanished_does_not_wait_for_them(start_server):
    server = start_server(prelude=NO_BURIALS)
    gone = [connect(server.port, f"u{i}") for i in range(10)]
    probe = connect(server.port, "probe")
    for wire in gone:  # reset, not closed: their ends are gone at once
        wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wire.close()
    probe.barrier()  # the server has read the resets
    # nothing can reach them, so the flush the shutdown gives readers is not waited
    # out: the stop ends well inside it (a deadline of 60 s against a flush of 300 s)
    assert server.stop(timeout=60) == 0
    assert probe.closed()[-1]["type"] == "notice"  # a reader that lives was told


def test_help_lists_protocol_options():
    result = run("--help")
    assert result.returncode == 0
    for option in ("--name", "--password", "--max-clients", "--rate", "--burst",
                   "--max-frame", "--max-text", "--max-backlog", "--motd",
                   "--hello-timeout", "--ping-interval", "--ping-timeout", "--db"):
        assert option in result.stdout


def test_the_installed_lanchat_command_runs_the_server(tmp_path):
    """tests/prepare.py installs the project (pip install -e .[test]): `lanchat` is
    the same entry point as main.py."""
    command = shutil.which("lanchat", path=os.path.dirname(sys.executable)) or \
        shutil.which("lanchat")
    if command is None:
        pytest.skip("the project is not installed (python tests/prepare.py installs it)")
    proc = subprocess.Popen([command, "--server", "--headless", "--host", "127.0.0.1",
                             "--port", "0", "--db", str(tmp_path / "c.db"), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), proc.stderr.read()
        assert connect(int(line.rsplit(":", 1)[1]), "alice").barrier() == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        proc.stdout.close()
        proc.stderr.close()
    bad = subprocess.run([command, "--bogus"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("lanchat: error:")


def test_split_address_takes_what_the_server_window_shows():
    from chat.netinfo import split_address

    assert split_address("192.0.2.10:7070", 1) == ("192.0.2.10", 7070)
    assert split_address(" 198.51.100.5 ", 7070) == ("198.51.100.5", 7070)
    assert split_address("[::1]:7071", 7070) == ("::1", 7071)
    assert split_address("fe80::1", 7070) == ("fe80::1", 7070)
    for bad in ("", "host:0", "host:http", "[::1", "a b", "http://x", "host:\u00b2",
                "host:" + "7" * 5000):
        with pytest.raises(ValueError):
            split_address(bad, 7070)


def test_no_display_names_headless_and_no_tk_names_what_to_install(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    for kind, hint in (("--server", "python main.py --server --headless"),
                       ("--client", "join from a browser")):
        result = subprocess.run([sys.executable, MAIN, kind], capture_output=True,
                                text=True, timeout=60, env=env)
        assert result.returncode == 1 and result.stdout == ""
        line = one_error_line(result)
        assert "no display" in line and hint in line
    # Tk missing (blocked here): one sentence, no traceback
    blocked = ("import sys; sys.modules['tkinter'] = None; import runpy; "
               f"sys.argv = [{MAIN!r}, '--client']; runpy.run_path({MAIN!r}, "
               "run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True,
                            text=True, timeout=60, env={**env, "DISPLAY": ":9"})
    line = one_error_line(result)
    assert result.returncode == 1 and "python3-tk" in line and "Traceback" not in line


def test_a_headless_start_prints_the_addresses_to_give_out(start_server):
    server = start_server()
    assert server.proc.stdout.readline() == (
        f"join at 127.0.0.1:{server.port} (the chat window) or "
        f"http://127.0.0.1:{server.port}/ (a browser)\n")
