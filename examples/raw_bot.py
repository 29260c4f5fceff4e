#!/usr/bin/env python3
"""A bot written from docs/protocol.md alone: plain sockets, one JSON object per line.

    python examples/raw_bot.py --host 127.0.0.1 --port 7070 --nick rawclock

It answers "!time" (in its rooms and in direct messages) with a notice, reconnects
by itself with `since` (the newest message id it saw), and answers a "!time" said
while it was away: with `since`, every message with a greater id is new to it,
whatever its `history` flag (docs/protocol.md, "Telling a resume from old history").
Nothing here comes from lanchat's own code.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time

BACKOFF_S = (1, 2, 4, 8, 15, 30)
MAX_LINE = 1024 * 1024  # docs/protocol.md: a server frame is at most this long


class Bot:
    def __init__(self, host: str, port: int, nick: str, rooms: list[str]) -> None:
        self.where, self.nick, self.rooms = (host, port), nick, rooms
        self.last_id = 0  # the newest message id seen: where a reconnect resumes
        self.since = 0  # the `since` of this connection's hello (0: none)

    def session(self, wait: float) -> None:
        """One connection, until it ends (OSError or ConnectionError)."""
        sock = socket.create_connection(self.where, timeout=10)
        sock.settimeout(None)
        hello = {"type": "hello", "proto": 1, "nick": self.nick, "rooms": self.rooms,
                 "client": "raw_bot/1"}
        self.since = self.last_id
        if self.since:
            hello["since"] = self.since
        out = [hello]
        buffer = b""
        with sock:
            while True:
                if out:  # what to say goes out before any wait
                    sock.sendall(b"".join(json.dumps(f).encode() + b"\n" for f in out))
                    out = []
                if not select.select([sock], [], [], wait)[0]:
                    continue
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > MAX_LINE:
                    raise ConnectionError("a line longer than the protocol allows")
                for line in lines:
                    if line.strip():
                        out += self.handle(json.loads(line))

    def handle(self, frame: dict) -> list[dict]:
        kind = frame.get("type")
        if kind == "welcome":
            self.nick = frame["nick"]
            print(f"in the chat as {self.nick}", flush=True)
        elif kind == "ping":
            return [{"type": "pong", "token": frame.get("token", "")}]
        elif kind == "error" and frame.get("code") in ("nick_taken", "bad_nick"):
            raise ConnectionError(frame.get("message", "refused"))
        elif kind == "message":
            new = not frame.get("history") or (self.since and frame["id"] > self.since)
            self.last_id = max(self.last_id, frame["id"])
            if new and frame.get("from") != self.nick and not frame.get("notice") \
                    and frame.get("text", "").strip() == "!time":
                reply = {"type": "send", "notice": True,
                         "text": f"{frame['from']}: it is {time.strftime('%H:%M:%S')}"}
                if "room" in frame:
                    reply["room"] = frame["room"]
                else:
                    reply["to"] = frame["from"]
                return [reply]
        return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7070)
    parser.add_argument("--nick", default="rawclock")
    parser.add_argument("--room", action="append", dest="rooms",
                        help="a room to be in (again for more; default: general)")
    parser.add_argument("--wait", type=float, default=1.0,
                        help="seconds one wait for the network may last")
    args = parser.parse_args()
    bot = Bot(args.host, args.port, args.nick, args.rooms or ["general"])
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            bot.session(args.wait)
        except KeyboardInterrupt:
            return 0
        except (OSError, ConnectionError, ValueError) as exc:
            print(f"disconnected: {exc}", file=sys.stderr, flush=True)
        if time.monotonic() - started > 60:
            attempt = 0  # it had been up a while: start the backoff again
        time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
        attempt += 1


if __name__ == "__main__":
    sys.exit(main())
