"""A controller for progval/irctest: each test case gets its own lanchat server.

irctest (fetched, not part of lanchat) starts servers through controllers; this one
runs ``main.py --server --headless`` with the IRC port irctest chose, the server
password it asks for, and a fresh database; nickname accounts ("services") are made
over the JSON-lines port with `register`. Run it (README, "IRC"):

    PYTHONPATH=/path/to/lanchat LANCHAT_PYTHON=python3 python -m pytest \
        --controller tests.irctest_lanchat irctest/server_tests/chathistory.py
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from irctest.basecontrollers import (  # type: ignore[import-not-found]
    BaseServerController,
    BaseServicesController,
    DirectoryBasedController,
)
from irctest.runner import NotImplementedByController  # type: ignore[import-not-found]

MAIN = Path(__file__).resolve().parent.parent / "main.py"
# the Python that has lanchat's requirements (irctest may run from its own venv)
PYTHON = os.environ.get("LANCHAT_PYTHON", "python3")


class LanchatAccounts(BaseServicesController):  # type: ignore[misc]
    """Nickname accounts, made as a lanchat user makes them."""

    software_name = "lanchat accounts"

    def run(self, protocol: str, server_hostname: str, server_port: int) -> None:
        self.services_up = True

    def wait_for_services(self) -> None:
        self.services_up = True

    def registerUser(self, case: Any, username: str, password: str | None = None) -> None:
        server = self.server_controller
        with socket.create_connection(("127.0.0.1", server.json_port), 10) as sock:
            reader = sock.makefile("rb")

            def ask(frame: dict[str, Any], answer: str) -> None:
                sock.sendall(json.dumps(frame).encode() + b"\n")
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    got = json.loads(reader.readline())
                    if got["type"] == answer:
                        return
                    if got["type"] == "error":
                        raise RuntimeError(f"cannot register {username}: {got}")
                raise RuntimeError(f"no {answer} for {username}")

            ask({"type": "hello", "nick": username, "proto": 1, "rooms": [],
                 "password": server.password or ""}, "welcome")
            ask({"type": "register", "password": password or ""}, "registered")
            sock.sendall(b'{"type":"bye"}\n')


class LanchatController(BaseServerController, DirectoryBasedController):  # type: ignore[misc]
    software_name = "lanchat"
    supported_sasl_mechanisms = frozenset({"PLAIN"})
    supports_sts = False
    services_controller_class = LanchatAccounts

    def run(self, hostname: str, port: int, *, password: str | None, ssl: bool,
            run_services: bool, faketime: str | None, websocket_hostname: str | None,
            websocket_port: int | None) -> None:
        if ssl or websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("TLS and WebSocket tests")
        assert self.proc is None
        self.create_config()
        assert self.directory is not None
        self.hostname, self.port, self.password = hostname, port, password
        _, self.json_port = self.get_hostname_and_port()
        command = [PYTHON, str(MAIN), "--server", "--headless",
                   # loopback only, whatever irctest picked (it binds "" to find a
                   # port, and says 0.0.0.0): no beacons, nothing on the network
                   "--host", "127.0.0.1", "--no-announce", "--port", str(self.json_port),
                   "--irc-port", str(port), "--db", str(self.directory / "chat.db"),
                   "--rate", "0", "--name", "My.Little.Server", "--quiet",
                   "--oper", "operuser:operpassword"]
        if password:
            command += ["--password", password]
        self.proc = self.execute(command)
        if run_services:
            self.wait_for_port()
            self.services_controller = LanchatAccounts(self.test_config, self)
            self.services_controller.run("lanchat", hostname, port)


def get_irctest_controller_class() -> type[LanchatController]:
    return LanchatController
