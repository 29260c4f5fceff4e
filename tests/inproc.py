"""A real server in the test's own process, stepped by the test itself.

For operator actions (bans) that only the server window performs, and for fuzzing
where a new process per example would be too slow. The server listens on
127.0.0.1 port 0 and its clients are real sockets; ``until`` steps the server and
polls every client in turn, with a deadline, so no thread is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chat.client import ChatClient
from chat.config import ServerConfig
from chat.server import ChatServer


class Harness:
    def __init__(self, db: Path, clock: Callable[[], float] = time.monotonic,
                 **settings: Any) -> None:
        self.config = ServerConfig(host="127.0.0.1", port=0, db=str(db), **settings)
        self.server = ChatServer(self.config, clock=clock)
        self.port = self.server.listen()[1]
        self.hub = self.server.hub
        self.operator = self.server.operator
        self.clients: dict[ChatClient, list[dict[str, Any]]] = {}
        self.known_hosts = str(db.parent / "known_hosts")

    def client(self, nick: str, **options: Any) -> ChatClient:
        """A ChatClient, connecting; its events collect in ``events(client)``."""
        options.setdefault("known_hosts", self.known_hosts)
        client = ChatClient("127.0.0.1", self.port, nick, **options)
        client.connect()
        self.clients[client] = []
        return client

    def events(self, client: ChatClient) -> list[dict[str, Any]]:
        return self.clients[client]

    def step(self) -> None:
        self.server.step(0.002)
        for client, events in self.clients.items():
            events += client.poll(0)

    def until(self, condition: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            assert time.monotonic() < deadline, "condition not met in time"
            self.step()

    def ready(self, client: ChatClient, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``client`` is registered and every replay has ended."""
        def done():
            seen = self.events(client)
            return client.ready and sum(e["type"] == "history_end" for e in seen) >= \
                len(client.rooms)
        self.until(done, timeout)
        return self.events(client)

    def wait_event(self, client: ChatClient, kind: str, timeout: float = 30.0,
                   **fields: Any) -> dict[str, Any]:
        def found():
            return next((e for e in self.events(client) if e["type"] == kind and
                         all(e.get(k) == v for k, v in fields.items())), None)
        return self.until(found, timeout)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.server.close()
