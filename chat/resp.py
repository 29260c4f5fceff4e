"""A Redis connection driven by the server's selectors loop (RESP, no blocking call).

``Redis`` owns one non-blocking socket. Commands are packed and queued with a callback;
replies are parsed by hiredis's ``Reader`` (a sans-I/O RESP parser: bytes in, replies
out) and handed to the callbacks in order. The loop calls ``events`` when the selector
reports the socket and ``tick`` at every timer pass (ten a second); neither waits. When
the connection breaks, every callback still waiting gets a ``Lost`` reply, ``on_lost``
is called, and a new connection is tried after a growing pause (0.25 s up to 2 s).

Every command has a deadline (``timeout``, 2 s unless the caller says otherwise): a
Redis that takes a command and does not answer it in time (stopped, swapping, stuck
on a disk) is treated as one that cannot be reached, so its callers hear at once
instead of waiting for TCP to notice. The deadline counts only time this process ran:
when the loop itself was held (suspended, the machine asleep), the replies that came
meanwhile are read before anything is given up.

The address is resolved once, before the loop runs (``resolve``): a name lookup is a
blocking call, so the loop only ever connects to addresses.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import hiredis

log = logging.getLogger("chat.server")

READ_SIZE = 1 << 18
CONNECT_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_S = 2.0  # a command unanswered this long: Redis is taken for unreachable
HELD_GAP_S = 0.5  # ticks further apart than this: the process was held, not Redis
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 2.0
DOWN, CONNECTING, READY = "down", "connecting", "ready"

Reply = Any
Callback = Callable[[Reply], None]


class Lost(Exception):
    """The reply of a command whose connection broke before it was answered (whether
    Redis ran it is unknown)."""


def is_error(reply: Reply) -> bool:
    return isinstance(reply, Exception)


def parse_url(url: str) -> tuple[str, int, int]:
    """``redis://[[USER]:PASSWORD@]HOST:PORT/DB`` as (host, port, db) (``credentials``
    reads the user and password); ``ValueError`` with a sentence."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"--redis wants redis://HOST:PORT/DB, not {url!r}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"--redis: the port in {url!r} is not a number") from None
    path = parts.path.strip("/") or "0"
    if not (path.isascii() and path.isdigit()) or int(path) > 1000:
        raise ValueError(f"--redis: the database in {url!r} is a number (0-1000)")
    return parts.hostname, port, int(path)


def credentials(url: str) -> tuple[str, ...]:
    """AUTH's arguments from the URL: (), (password,) or (user, password)."""
    parts = urlsplit(url)
    if parts.password is None:
        return ()
    password = unquote(parts.password)
    return (unquote(parts.username), password) if parts.username else (password,)


def shown_url(url: str) -> str:
    """The URL as logs and windows show it: a password becomes ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    """The first address of ``host`` (blocking: before the loop starts)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"--redis: cannot find {host}: {exc.strerror}") from None
    family, _, _, _, addr = infos[0]
    return family, addr


class Redis:
    """One RESP connection; see the module's text."""

    def __init__(self, selector: selectors.BaseSelector, clock: Callable[[], float],
                 address: tuple[socket.AddressFamily, tuple[Any, ...]], db: int, name: str,
                 on_ready: Callable[[], None], on_lost: Callable[[str], None],
                 auth: tuple[str, ...] = (),
                 timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.selector = selector
        self.clock = clock
        self.family, self.addr = address
        self.db = db
        self.auth = auth  # AUTH's arguments, () for none
        self.name = name  # CLIENT SETNAME: who this is in Redis's CLIENT LIST
        self.on_ready = on_ready
        self.on_lost = on_lost
        self.state = DOWN
        self.sock: socket.socket | None = None
        self.reader = hiredis.Reader()
        self.out = bytearray()
        self.waiting: deque[Callback | None] = deque()
        self.deadlines: deque[float] = deque()  # beside ``waiting``: answer by then
        self.timeout = timeout
        self.ticked = clock()
        self.retry_at = 0.0
        self.pause = RETRY_FIRST_S
        self.started = 0.0
        self.problem = "not connected yet"

    # ------------------------------------------------------------ commands

    @property
    def ready(self) -> bool:
        return self.state == READY

    def call(self, *args: Any, reply: Callback | None = None,
             timeout: float | None = None) -> None:
        """Queue one command; ``reply`` gets its answer (an exception object for an
        error reply or a lost connection). Only on a ready connection. ``timeout``:
        more than the connection's deadline, for a command that waits by design."""
        assert self.state == READY, "Redis.call on a connection that is not ready"
        self._send(args, reply, timeout)

    def _send(self, args: tuple[Any, ...], reply: Callback | None,
              timeout: float | None = None) -> None:
        self.out += hiredis.pack_command(args)
        self.waiting.append(reply)
        self.deadlines.append(self.clock() + (timeout or self.timeout))

    @property
    def wants_write(self) -> bool:
        return bool(self.out) or self.state == CONNECTING

    # ------------------------------------------------------------ the loop's side

    def tick(self) -> None:
        """At every timer pass: connect when it is time, give up a connect or a
        command that is not answered in time."""
        now = self.clock()
        held = now - self.ticked
        self.ticked = now
        if held > HELD_GAP_S:  # this process did not run: Redis was not the slow one
            self.started += held
            self.deadlines = deque(d + held for d in self.deadlines)
        if self.state == DOWN and now >= self.retry_at:
            self._connect()
        elif self.state == CONNECTING and now - self.started > CONNECT_TIMEOUT_S:
            self._lost("no answer within 2 s")
        elif self.state == READY and self.deadlines and now > self.deadlines[0]:
            self._read()  # what came meanwhile first: the loop may have been slow
            if self.sock is not None and self.deadlines and now > self.deadlines[0]:
                self._lost(f"no answer within {self.timeout:g} s")

    def _connect(self) -> None:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(self.addr)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            self._lost(errno.errorcode.get(code, str(code)))
            return
        self.sock, self.state, self.started = sock, CONNECTING, self.clock()
        self.reader = hiredis.Reader()
        # First in line, before anything a caller queues once it is ready.
        if self.auth:
            self._send(("AUTH", *self.auth), self._authenticated)
        self._send(("CLIENT", "SETNAME", self.name), None)
        self._send(("SELECT", self.db), self._selected)
        self.selector.register(sock, selectors.EVENT_WRITE, self)

    def _authenticated(self, reply: Reply) -> None:
        if is_error(reply) and not isinstance(reply, Lost):
            self._lost(f"Redis refused the password: {reply}")

    def _selected(self, reply: Reply) -> None:
        if isinstance(reply, Lost):
            return  # the connection is going already (and its owner is told once)
        if is_error(reply):
            self._lost(f"SELECT {self.db}: {reply}")
            return
        self.state = READY
        self.pause = RETRY_FIRST_S
        self.problem = ""
        self.on_ready()

    def events(self, mask: int) -> None:
        """The selector reported the socket: finish connecting, read, write."""
        if self.sock is None:
            return
        if mask & selectors.EVENT_WRITE and self.state == CONNECTING:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._lost(errno.errorcode.get(code, str(code)))
                return
        if mask & selectors.EVENT_READ:
            self._read()
        if self.sock is not None and self.out:
            self.flush()
        self._watch()

    def _read(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc.strerror or str(exc))
            return
        if not data:
            self._lost("Redis closed the connection")
            return
        self.reader.feed(data)
        while self.sock is not None:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self._lost(f"not RESP: {exc}")
                return
            if reply is False:
                return
            if not self.waiting:
                self._lost("a reply nobody asked for")
                return
            callback = self.waiting.popleft()
            self.deadlines.popleft()
            if callback is not None:
                callback(reply)

    def flush(self) -> None:
        """Write what is queued, as far as the socket takes it (never waits)."""
        if self.sock is None or not self.out or self.state == DOWN:
            return
        if self.state == CONNECTING and self.sock.getsockopt(socket.SOL_SOCKET,
                                                             socket.SO_ERROR):
            return  # `events` reports it
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            if exc.errno in (errno.ENOTCONN, errno.EAGAIN):
                return  # still connecting
            self._lost(exc.strerror or str(exc))
            return
        del self.out[:sent]
        self._watch()

    def _watch(self) -> None:
        if self.sock is None:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.wants_write else 0)
        try:
            if self.selector.get_key(self.sock).events != events:
                self.selector.modify(self.sock, events, self)
        except KeyError:
            self.selector.register(self.sock, events, self)

    def _lost(self, why: str) -> None:
        """The connection is gone: fail what waits, tell the owner, retry later."""
        self._drop_socket()
        was_ready = self.state == READY
        self.state = DOWN
        self.out.clear()
        waiting, self.waiting = self.waiting, deque()
        self.deadlines.clear()
        self.retry_at = self.clock() + self.pause
        self.pause = min(self.pause * 2, RETRY_MAX_S)
        first = why != self.problem
        self.problem = why
        for callback in waiting:
            if callback is not None:
                callback(Lost(why))
        if was_ready or first:
            self.on_lost(why)

    def drop(self, why: str) -> None:
        """Give up this connection (its owner cannot go on with it); a new one is
        made after the usual pause."""
        if self.state != DOWN:
            self._lost(why)

    def close(self) -> None:
        self._drop_socket()
        self.state = DOWN

    def _drop_socket(self) -> None:
        if self.sock is not None:
            try:
                self.selector.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.sock.close()
            self.sock = None
