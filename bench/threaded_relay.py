#!/usr/bin/env python3
"""Baseline: a classic thread-per-client relay of the same frames, for comparison.

This is how most Python chat servers are written: one thread per client, blocking
``recv``, and each message sent with ``sendall`` to every client from the sender's
thread under a lock. It speaks just enough of the protocol for the load generator
(`hello` -> `welcome`, `joined`, `users`, `history_end`; `send` -> `message` to all,
the sender's copy with its `ref`) and stores nothing. Benchmark use only.

    python bench/threaded_relay.py [PORT]     (prints "listening on HOST:PORT")
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

clients: dict[socket.socket, str] = {}
lock = threading.Lock()
next_id = 0


def broadcast(data: bytes, sender: socket.socket | None = None,
              own: bytes | None = None) -> None:
    with lock:
        for sock in list(clients):
            try:
                sock.sendall(own if sock is sender and own is not None else data)
            except OSError:
                clients.pop(sock, None)


def serve(sock: socket.socket) -> None:
    global next_id
    buf = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            *lines, buf = (buf + data).split(b"\n")
            for line in lines:
                frame = json.loads(line)
                ts = int(time.time() * 1000)
                if frame["type"] == "hello":
                    nick = frame["nick"]
                    sock.sendall(json.dumps({"type": "welcome", "nick": nick}).encode() + b"\n")
                    with lock:
                        clients[sock] = nick
                    for room in frame.get("rooms", ["general"]):
                        broadcast(json.dumps({"type": "joined", "room": room, "nick": nick,
                                              "ts": ts}).encode() + b"\n")
                        sock.sendall(json.dumps({"type": "users", "room": room,
                                                 "users": []}).encode() + b"\n"
                                     + json.dumps({"type": "history_end",
                                                   "room": room}).encode() + b"\n")
                elif frame["type"] == "send":
                    with lock:
                        next_id += 1
                        msg = {"type": "message", "id": next_id, "ts": ts,
                               "room": frame["room"], "from": clients.get(sock, "?"),
                               "text": frame["text"]}
                    data = json.dumps(msg).encode() + b"\n"
                    own = None
                    if "ref" in frame:
                        own = json.dumps({**msg, "ref": frame["ref"]}).encode() + b"\n"
                    broadcast(data, sock, own)
    except (OSError, ValueError):
        pass
    finally:
        with lock:
            clients.pop(sock, None)
        sock.close()


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
