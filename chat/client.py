"""The non-blocking client core used by the chat window, tests, benchmarks and bots.

``ChatClient.connect()`` starts a non-blocking connect and sends `hello` once it is
up; ``poll(timeout)`` does the pending I/O and returns the frames that arrived, plus
local events of its own: ``{"type": "local.connected"}``, ``{"type": "local.tls",
"fingerprint", "status", "version"}`` (status ``new``: pinned now, ``known``: as
pinned before, ``verified``: checked against the CA file) and ``{"type":
"local.closed", "error": str | None, "fatal": bool}`` (fatal: retrying cannot help,
e.g. the server's certificate changed). Requests are queued by methods
(``say``, ``join``, ...) and written by the next ``poll``, before it waits. After a
reconnect, a history message said while this client was away carries ``"missed":
true`` (set here, from the `since` it sent; old backlog has none). Tk-free; no
threads. The API, for bots: docs/bots.md.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import ssl
import time
from typing import Any

from chat.errors import ProtocolError
from chat.lookup import Lookup
from chat.netinfo import split_address
from chat.protocol import CLIENT_MAX_FRAME, CLOSED, DEFAULT_ROOM, NEED_DATA, FrameDecoder, encode
from chat.tls import KnownHosts, client_context, default_known_hosts, fingerprint

RECV_SIZE = 256 * 1024
READS_PER_POLL = 16  # bounds one poll's work so a GUI tick stays short
CLIENT_NAME = "lanchat/1"
CONNECT_TIMEOUT = 10.0  # seconds for the TCP connect and the TLS handshake together
ANSWER_TIMEOUT = 15.0  # seconds from `hello` to the server's `welcome` (or error)
MAX_ALTERNATES = 16  # other servers of the chat kept to fail over to

Frame = dict[str, Any]


class ChatClient:
    """One connection to a chat server, driven by ``poll()``."""

    def __init__(self, host: str, port: int, nick: str, *, password: str | None = None,
                 rooms: list[str] | None = None, client_name: str = CLIENT_NAME,
                 nick_password: str | None = None, tls: bool = False,
                 cafile: str | None = None, known_hosts: str | None = None) -> None:
        self.host = host
        self.port = port
        self.nick = nick
        self.password = password
        self.nick_password = nick_password  # the nickname account's, if it has one
        self.tls = tls or bool(cafile)
        self.cafile = cafile
        self.known_hosts = KnownHosts(known_hosts or default_known_hosts())
        self.fingerprint: str | None = None  # of the server's certificate, under TLS
        self.rooms: list[str] = list(rooms) if rooms is not None else [DEFAULT_ROOM]
        self.client_name = client_name
        # Other servers of the same chat (a cluster: chat.cluster), tried in turn when
        # this one cannot be reached: given by the user, and by the server's welcome.
        self.alternates: list[tuple[str, int]] = []
        self.state = "idle"  # idle -> resolving -> connecting -> hello -> ready -> closed
        self.last_id = 0  # highest message id seen: where a reconnect resumes
        self.resumed_from = 0  # the `since` of the last hello (0: none)
        self.welcome: Frame | None = None
        self.sock: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._decoder = FrameDecoder(CLIENT_MAX_FRAME)
        self._out = bytearray()
        self._events = 0
        self._pending_close: str | None = None  # a connect that failed at once
        self._lookup: Lookup | None = None  # the server's address, while it is found
        self._deadline = 0.0  # the connect and handshake must be done by then
        self.stage_since = time.monotonic()  # when the present state began

    # ------------------------------------------------------------ connection

    def connect(self) -> None:
        """Start connecting (again); `hello` resumes from ``last_id`` if any. A name
        is looked up without waiting (chat.lookup): ``poll`` carries it on."""
        self.close()
        self._pending_close = None
        self._lookup = Lookup(self.host)
        self.state = "resolving"
        self.stage_since = time.monotonic()
        found = self._lookup.poll()
        if found is not None:
            self._open(found)

    def _open(self, found: list[tuple[socket.AddressFamily, str]]) -> None:
        """The lookup is done: connect to its first address (none: say so)."""
        self._lookup = None
        try:
            if not found:
                raise OSError("not found")
            family, address = found[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            self._pending_close = (f"No server called '{self.host}' was found. Check the "
                                   "address: the server window shows it, for example "
                                   "192.168.1.20:7070.")
            self.state = "closed"
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex((address, self.port))
        self.sock = sock
        self._decoder = FrameDecoder(CLIENT_MAX_FRAME)
        self._out = bytearray()
        self._selector = selectors.DefaultSelector()
        self._events = selectors.EVENT_READ | selectors.EVENT_WRITE
        self._selector.register(sock, self._events)
        self.state = "connecting"
        self.stage_since = time.monotonic()
        self._deadline = self.stage_since + CONNECT_TIMEOUT
        self._pending_close = None
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._pending_close = self._cannot_connect(err)

    def _learn(self, nodes: Any) -> None:
        """The welcome's `nodes` (docs/protocol.md): where else this chat is served."""
        if not isinstance(nodes, list):
            return
        for text in nodes[:MAX_ALTERNATES]:
            if not isinstance(text, str):
                continue
            try:
                where = split_address(text, self.port)
            except ValueError:
                continue
            if where != (self.host, self.port) and where not in self.alternates:
                self.alternates.append(where)
        del self.alternates[MAX_ALTERNATES:]

    def next_server(self) -> None:
        """Move on to the next server of the chat (after this one failed): the
        resume (``last_id``) goes with it."""
        if self.alternates:
            self.alternates.append((self.host, self.port))
            self.host, self.port = self.alternates.pop(0)

    def close(self) -> None:
        """Close the socket at once (without `bye`)."""
        if self._lookup is not None:
            self._lookup.close_sockets()
            self._lookup = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.state != "idle":
            self.state = "closed"

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def stage(self) -> str:
        """Where connecting is, in words ("" when not connecting)."""
        where = f"{self.host}:{self.port}"
        return {"resolving": f"Looking up {self.host}…",
                "connecting": f"Connecting to {where}…",
                "handshake": f"Securing the connection to {where}…",
                "hello": f"Waiting for the server at {where}…"}.get(self.state, "")

    def _hello(self) -> None:
        # "owners": rooms' `topic`, `mode` and `invited` frames as they happen
        hello: Frame = {"type": "hello", "nick": self.nick, "proto": 1,
                        "rooms": self.rooms, "client": self.client_name,
                        "features": ["owners", "edits", "read_markers"]}
        if self.password:
            hello["password"] = self.password
        if self.nick_password:
            hello["nick_password"] = self.nick_password
        if self.last_id:
            hello["since"] = self.last_id
        self.resumed_from = self.last_id
        self.send(hello)

    # ------------------------------------------------------------ I/O

    def poll(self, timeout: float = 0.0) -> list[Frame]:
        """Do pending I/O (waiting up to ``timeout``) and return what arrived."""
        events: list[Frame] = []
        if self._lookup is not None:  # finding the server's address: never waits
            found = self._lookup.poll()
            if found is None:
                return events
            self._open(found)
        if self._pending_close_event(events) or self._selector is None:
            return events
        if self.state in ("connecting", "handshake", "hello") and \
                time.monotonic() > self._deadline:
            where = f"{self.host}:{self.port}"
            if self.state == "hello":
                why = (f"{where} accepted the connection but did not answer within "
                       f"{ANSWER_TIMEOUT:.0f} s: it may be another program, or a server "
                       "that is stuck.")
            else:
                what = "TLS handshake" if self.state == "handshake" else "connection"
                why = f"The {what} to {where} took too long. Check the address and your network."
            self._closed(events, why)
            return events
        if isinstance(self.sock, ssl.SSLSocket) and self.state != "handshake" and \
                self.sock.pending():
            timeout = 0.0  # decrypted bytes wait inside the TLS layer
            if not self._read(events):
                return events
        if self._out:  # what was asked since the last poll goes out before any wait
            self._write(events)
            if self.sock is None:
                return events
        for _, mask in self._selector.select(timeout):
            if self.state == "connecting":
                if mask & selectors.EVENT_WRITE and not self._finish_connect(events):
                    return events
                continue
            if self.state == "handshake":
                if not self._handshake(events):
                    return events
                continue
            if mask & selectors.EVENT_READ and not self._read(events):
                return events
        self._write(events)
        return events

    def _pending_close_event(self, events: list[Frame]) -> bool:
        reason = self._pending_close
        if reason is None:
            return False
        self._pending_close = None
        self._closed(events, reason)
        return True

    def _closed(self, events: list[Frame], error: str | None, *,
                fatal: bool = False) -> None:
        self.close()
        events.append({"type": "local.closed", "error": error, "fatal": fatal})

    def _finish_connect(self, events: list[Frame]) -> bool:
        assert self.sock is not None
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._closed(events, self._cannot_connect(err))
            return False
        if not self.tls:
            self._registering(events)
            return True
        assert self._selector is not None
        self._selector.unregister(self.sock)
        try:
            ctx = client_context(self.cafile)
            self.sock = ctx.wrap_socket(self.sock, server_hostname=self.host,
                                        do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:  # a CA file that cannot be read or parsed
            self.sock = None
            self._closed(events, str(exc), fatal=True)
            return False
        self._events = selectors.EVENT_READ | selectors.EVENT_WRITE
        self._selector.register(self.sock, self._events)
        self.state = "handshake"
        self.stage_since = time.monotonic()
        return self._handshake(events)

    def _cannot_connect(self, err: int) -> str:
        """Why a connect failed, in words for people (not ECONNREFUSED)."""
        where = f"{self.host}:{self.port}"
        if err == errno.ECONNREFUSED:
            return (f"Nothing answers at {where}. Is the server running, and is the port "
                    "the one its window shows?")
        if err in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return (f"{self.host} cannot be reached from this machine. Are you on the same "
                    "network as the server?")
        if err == errno.ETIMEDOUT:
            return f"{where} did not answer. Check the address and your network."
        return f"Cannot connect to {where}: {os.strerror(err)}."

    def _registering(self, events: list[Frame]) -> None:
        self.state = "hello"
        self.stage_since = time.monotonic()
        self._deadline = self.stage_since + ANSWER_TIMEOUT
        events.append({"type": "local.connected"})
        self._hello()

    def _handshake(self, events: list[Frame]) -> bool:
        """One non-blocking step of the TLS handshake, then the certificate check."""
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket) and self._selector is not None
        try:
            sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
            wanted = selectors.EVENT_READ
            if isinstance(exc, ssl.SSLWantWriteError):
                wanted |= selectors.EVENT_WRITE
            if wanted != self._events:
                self._selector.modify(sock, wanted)
                self._events = wanted
            return True
        except ssl.SSLCertVerificationError as exc:
            self._closed(events, f"the server's certificate is not trusted: "
                                 f"{exc.verify_message}", fatal=True)
            return False
        except (ssl.SSLError, OSError):
            self._closed(events, f"The encrypted connection to {self.host}:{self.port} "
                                 "could not be set up: this server may not use TLS "
                                 "(untick 'Encrypt (TLS)'), or it closed the connection.")
            return False
        der = sock.getpeercert(binary_form=True) or b""
        self.fingerprint = fingerprint(der)
        if self.cafile:
            status = "verified"
        else:
            pinned = self.known_hosts.get(self.host, self.port)
            if pinned is None:
                self.known_hosts.pin(self.host, self.port, self.fingerprint)
                status = "new"
            elif pinned == self.fingerprint:
                status = "known"
            else:
                self._closed(events, self._changed_warning(pinned), fatal=True)
                return False
        events.append({"type": "local.tls", "fingerprint": self.fingerprint,
                       "status": status, "version": sock.version()})
        self._registering(events)
        return True

    def _changed_warning(self, pinned: str) -> str:
        return (f"THE SERVER'S CERTIFICATE HAS CHANGED. {self.host}:{self.port} now shows "
                f"{self.fingerprint}, not {pinned} as before. Someone may be "
                f"intercepting the connection. If the operator made a new certificate, "
                f"compare fingerprints with them, then remove the line of "
                f"{self.host}:{self.port} from {self.known_hosts.path}.")

    def _read(self, events: list[Frame]) -> bool:
        assert self.sock is not None
        for _ in range(READS_PER_POLL):
            try:
                data = self.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):
                break
            except OSError as exc:
                self._drain(events)
                self._closed(events, "the connection was lost"
                                     + (f" ({exc.strerror.lower()})" if exc.strerror else ""))
                return False
            if not data:
                self._drain(events)
                self._closed(events, None)
                return False
            self._decoder.receive_data(data)
            if len(data) < RECV_SIZE and not self.tls:  # TLS reads one record at a time
                break
        self._drain(events)
        return True

    def _drain(self, events: list[Frame]) -> None:
        while True:
            try:
                frame = self._decoder.next_event()
            except ProtocolError:
                continue  # a server frame we cannot read: skip it, keep the rest
            if frame is NEED_DATA or frame is CLOSED:
                return
            self._track(frame)
            events.append(frame)

    def _track(self, frame: Frame) -> None:
        kind = frame["type"]
        if kind == "message":
            msg_id = frame.get("id")
            if isinstance(msg_id, int):
                if frame.get("history") and self.resumed_from and msg_id > self.resumed_from:
                    frame["missed"] = True  # said while this client was away: new to it
                if msg_id > self.last_id:
                    self.last_id = msg_id
        elif kind == "welcome":
            self.state = "ready"
            self.welcome = frame
            self.nick = frame.get("nick", self.nick)
            self._learn(frame.get("nodes"))
        elif kind == "joined" and frame.get("nick") == self.nick:
            if frame["room"] not in self.rooms:
                self.rooms.append(frame["room"])
        elif kind == "left" and frame.get("nick") == self.nick:
            self.rooms = [r for r in self.rooms if r != frame.get("room")]
        elif kind == "renamed" and frame.get("old") == self.nick:
            self.nick = frame["new"]
        elif kind == "ping":
            self.send({"type": "pong", "token": frame.get("token", "")})

    def _write(self, events: list[Frame]) -> None:
        if self.sock is None or self.state in ("connecting", "handshake"):
            return
        if self._out:
            try:
                sent = self.sock.send(self._out)
                del self._out[:sent]
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                    ssl.SSLWantReadError):
                pass
            except OSError as exc:
                self._closed(events, "the connection was lost"
                                     + (f" ({exc.strerror.lower()})" if exc.strerror else ""))
                return
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._out else 0)
        if wanted != self._events and self._selector is not None:
            self._selector.modify(self.sock, wanted)
            self._events = wanted

    @property
    def pending_output(self) -> int:
        return len(self._out)

    # ------------------------------------------------------------ requests

    def send(self, frame: Frame) -> None:
        """Queue any frame; the next ``poll`` writes it."""
        self._out += encode(frame)

    def _request(self, kind: str, ref: str | None, **fields: Any) -> None:
        frame = {"type": kind, **{k: v for k, v in fields.items() if v is not None}}
        if ref is not None:
            frame["ref"] = ref
        self.send(frame)

    def say(self, room: str, text: str, *, action: bool = False, notice: bool = False,
            ref: str | None = None, reply_to: int | None = None) -> None:
        """A message to ``room``; ``notice``: one that nobody should answer (a bot's);
        ``reply_to``: the id of the message it answers."""
        self._request("send", ref, room=room, text=text, action=action or None,
                      notice=notice or None, reply_to=reply_to)

    def message(self, to: str, text: str, *, action: bool = False, notice: bool = False,
                ref: str | None = None, reply_to: int | None = None) -> None:
        self._request("send", ref, to=to, text=text, action=action or None,
                      notice=notice or None, reply_to=reply_to)

    def mark_read(self, msg_id: int, *, room: str | None = None, to: str | None = None,
                  ref: str | None = None) -> None:
        """Read ``room`` (or the conversation with ``to``) up to ``msg_id``: kept for
        this nickname's other devices (signed in to its account only)."""
        self._request("mark_read", ref, room=room, to=to, id=msg_id)

    def edit(self, msg_id: int, text: str, ref: str | None = None) -> None:
        """Change the text of one's own message (`edited` comes back)."""
        self._request("edit", ref, id=msg_id, text=text)

    def delete(self, msg_id: int, ref: str | None = None) -> None:
        """Take a message back (one's own; anyone's in a room one is operator of)."""
        self._request("delete", ref, id=msg_id)

    def react(self, msg_id: int, emoji: str, on: bool = True, ref: str | None = None) -> None:
        """React to a message with ``emoji`` (``on=False``: take it back)."""
        self._request("react", ref, id=msg_id, emoji=emoji, on=on)

    def join(self, room: str, ref: str | None = None, key: str | None = None) -> None:
        self._request("join", ref, room=room, key=key)

    def part(self, room: str, ref: str | None = None) -> None:
        self._request("part", ref, room=room)

    def rename(self, nick: str, ref: str | None = None,
               nick_password: str | None = None) -> None:
        self._request("nick", ref, nick=nick, nick_password=nick_password)

    def register(self, password: str, ref: str | None = None) -> None:
        """Make the nickname held an account with ``password`` (or change it)."""
        self._request("register", ref, password=password)

    def unregister(self, ref: str | None = None) -> None:
        self._request("unregister", ref)

    def who(self, room: str, ref: str | None = None) -> None:
        self._request("who", ref, room=room)

    def list_rooms(self, after: str | None = None, ref: str | None = None) -> None:
        """Ask for the rooms there are (a page of them after the room ``after``)."""
        self._request("rooms", ref, after=after)

    def history(self, room: str, before: int | None = None, limit: int | None = None,
                ref: str | None = None) -> None:
        self._request("history", ref, room=room, before=before, limit=limit)

    # Rooms with owners (docs/protocol.md)

    def topic(self, room: str, topic: str | None, ref: str | None = None) -> None:
        """Set a room's topic ("" clears it); None asks for it."""
        self._request("topic", ref, room=room, topic=topic)

    def mode(self, room: str, changes: list[tuple[str, bool, str | None]],
             ref: str | None = None) -> None:
        """Change a room's roles and settings: (mode, on, arg) each, as `mode` has."""
        self._request("mode", ref, room=room, changes=[
            {"mode": m, "on": on, **({"arg": a} if a is not None else {})}
            for m, on, a in changes])

    def kick(self, room: str, nick: str, reason: str = "", ref: str | None = None) -> None:
        """Out of a room (not off the server), for its operators."""
        self._request("kick", ref, room=room, nick=nick, reason=reason or None)

    def invite(self, room: str, nick: str, ref: str | None = None) -> None:
        self._request("invite", ref, room=room, nick=nick)

    def room_info(self, room: str, ref: str | None = None) -> None:
        self._request("room_info", ref, room=room)

    def typing(self, room: str) -> None:
        self._request("typing", None, room=room)

    def ping(self, token: str, ref: str | None = None) -> None:
        self._request("ping", ref, token=token)

    def bye(self, reason: str | None = None) -> None:
        self._request("bye", None, reason=reason)
