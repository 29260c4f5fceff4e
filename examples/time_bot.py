#!/usr/bin/env python3
"""A bot on lanchat's client core: answers "!time" in its rooms and in direct messages.

    python examples/time_bot.py --host 127.0.0.1 --port 7070 --nick clock

It reconnects by itself (waiting 1, 2, 4 ... 30 s between tries) and resumes where it
stopped: a "!time" said while it was away comes back as a missed message and is
answered then; old backlog is not. Its answers are notices, which other bots do not
answer. The API it uses: docs/bots.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chat.client import ChatClient

BACKOFF_S = (1, 2, 4, 8, 15, 30)


def answer(client: ChatClient, frame: dict) -> None:
    """Answer a "!time" that is new to the bot (live, or missed while it was away)."""
    if frame.get("history") and not frame.get("missed"):
        return  # backlog it has seen, or said before it first came
    if frame.get("from") == client.nick or frame.get("notice"):
        return
    if frame.get("text", "").strip() != "!time":
        return
    reply = f"{frame['from']}: it is {time.strftime('%H:%M:%S')}"
    if "room" in frame:
        client.say(frame["room"], reply, notice=True)
    else:
        client.message(frame["from"], reply, notice=True)


def run(host: str, port: int, nick: str, rooms: list[str], wait: float) -> int:
    client = ChatClient(host, port, nick, rooms=rooms, client_name="time_bot/1")
    client.connect()
    attempt, retry_at = 0, None
    while True:
        if retry_at is not None:
            time.sleep(max(0.0, retry_at - time.monotonic()))  # a bot may sleep
            retry_at = None
            client.connect()
        for frame in client.poll(wait):
            kind = frame["type"]
            if kind == "welcome":
                attempt = 0
                print(f"in the chat as {frame['nick']}", flush=True)
            elif kind == "message":
                answer(client, frame)
            elif kind == "error" and client.state == "hello":
                # e.g. nick_taken: the connection it lost may still hold the name
                print(f"refused: {frame.get('message')}", file=sys.stderr, flush=True)
                client.close()
                frame = {"type": "local.closed", "error": None, "fatal": False}
            if frame["type"] == "local.closed":
                if frame["fatal"]:
                    print(f"giving up: {frame['error']}", file=sys.stderr)
                    return 1
                retry_at = time.monotonic() + BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                attempt += 1
                break


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7070)
    parser.add_argument("--nick", default="clock")
    parser.add_argument("--room", action="append", dest="rooms",
                        help="a room to be in (again for more; default: general)")
    parser.add_argument("--wait", type=float, default=1.0,
                        help="seconds one poll may wait for the network (answers do not "
                             "wait for it)")
    args = parser.parse_args()
    try:
        return run(args.host, args.port, args.nick, args.rooms or ["general"], args.wait)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
