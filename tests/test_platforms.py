"""Where classrooms are: the platform-specific parts (chat/platforms.py), and the core
run as on Windows: no fcntl, resource or termios, and selectors on select()."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys

from conftest import ROOT

from chat import platforms
from tests.inproc import Harness

NO_POSIX = str(ROOT / "tests" / "no_posix")  # its sitecustomize blocks them
# the core: protocol, hub, client core, server (with its console) and the bots
CORE = ["tests/test_protocol.py", "tests/test_hub.py", "tests/test_client.py",
        "tests/test_server.py", "tests/test_console.py", "tests/test_examples.py"]


def without_posix(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([NO_POSIX, str(ROOT)])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def test_the_program_imports_without_posix_only_modules():
    probe = without_posix("-c", "import selectors, sys\n"
                          "for name in ('fcntl', 'resource', 'termios'):\n"
                          "    try:\n"
                          "        __import__(name)\n"
                          "    except ImportError:\n"
                          "        pass\n"
                          "    else:\n"
                          "        sys.exit(name + ' imported')\n"
                          "assert selectors.DefaultSelector is selectors.SelectSelector\n"
                          "import chat.server, chat.discovery, gui.client_window, "
                          "gui.server_window, main\n"
                          "print('ok')")
    assert (probe.returncode, probe.stdout, probe.stderr) == (0, "ok\n", "")


def test_the_core_tests_pass_without_posix_only_modules_and_with_select():
    run = without_posix("-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_a_select_loop_states_and_enforces_what_it_can_hold(tmp_path, monkeypatch):
    monkeypatch.setattr(platforms, "WINDOWS", True)
    with selectors.SelectSelector() as chosen:
        assert platforms.selector_capacity(chosen) == platforms.SELECT_SOCKETS
        assert platforms.connection_limit(chosen, 1000) == \
            platforms.SELECT_SOCKETS - platforms.RESERVED_SOCKETS
    monkeypatch.setattr(platforms, "WINDOWS", False)
    with selectors.DefaultSelector() as native:
        assert platforms.connection_limit(native, 1000) == 1000  # epoll: no fixed bound
    harness = Harness(tmp_path / "cap.db")
    try:
        harness.server.socket_cap = 2  # as select() would impose, made small
        first, second = harness.client("ann"), harness.client("bob")
        harness.ready(first)
        harness.ready(second)
        third = harness.client("cid")
        refused = harness.wait_event(third, "error")
        assert refused["code"] == "server_full"
        assert harness.wait_event(third, "local.closed")
        assert len(harness.hub.peers) == 2  # the others carry on
    finally:
        harness.close()


def test_interfaces_and_signals_have_fallbacks(monkeypatch):
    found = platforms.broadcast_addresses()
    assert found and all(address.count(".") == 3 for address in found)
    monkeypatch.setitem(sys.modules, "psutil", None)  # not importable
    assert platforms.broadcast_addresses() == ["255.255.255.255"]
    import signal
    monkeypatch.setattr(platforms, "WINDOWS", True)
    monkeypatch.setattr(signal, "SIGBREAK", 21, raising=False)
    assert platforms.stop_signals() == [signal.SIGINT, 21]
    monkeypatch.setattr(platforms, "WINDOWS", False)
    assert platforms.stop_signals() == [signal.SIGINT, signal.SIGTERM]
    assert platforms.raise_open_files_limit() >= 256
    monkeypatch.setattr(platforms, "resource", None)
    assert platforms.raise_open_files_limit() == platforms.SELECT_SOCKETS
