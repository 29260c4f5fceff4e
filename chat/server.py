"""The single-threaded server: one ``selectors`` loop over non-blocking sockets.

``ChatServer.step(timeout)`` is one bounded pass: accept, read (a bounded number of
frames per peer), timers, one commit of the pass's messages, then one ``send`` per
peer with output. ``serve_forever`` loops it for ``--headless``; the server window
calls ``step(0)`` from Tk's ``after()``. Chat semantics live in ``chat.hub``.
"""

from __future__ import annotations

import errno
import logging
import resource
import selectors
import os
import socket
import ssl
import time
from typing import Callable

from chat.config import ServerConfig
from chat.errors import ConfigError, Later, ProtocolError
from chat.hub import Hub
from chat.operator import Operator
from chat.model import FRESH, HANDSHAKE, READY, SNIFF, Peer
from chat.protocol import NEED_DATA, CLOSED, FrameDecoder, encode
from chat.store import Store
from chat.tls import file_fingerprint, self_signed, server_context

RECV_SIZE = 64 * 1024  # one recv per readable peer per pass keeps a pass short
TLS_READS = 4  # a TLS recv returns one record (16 KiB at most): up to 4 per pass
TLS_HELLO = b"\x16\x03"  # the first bytes of a TLS ClientHello record
TLS_REQUIRED = ("This server speaks TLS only: turn on TLS in your client "
                "(python main.py --client --tls).")
FRAMES_PER_PASS = 256  # frames handled per peer per pass; the rest wait their turn
PASS_BUDGET_S = 0.05  # a pass takes no new frames after this long (timers, fairness)
BUDGET_CHECK_EVERY = 16  # frames between clock reads
INPUT_READ = 4096  # bytes read from a watched input (the operator console) per pass
ACCEPT_BATCH = 256  # connections accepted per pass
TICK_SECONDS = 0.1  # how often timers (hello, ping, close deadlines) are checked
ACCEPT_PAUSE_SECONDS = 0.1  # out of file descriptors: stop accepting this long
SHUTDOWN_FLUSH_SECONDS = 2.0  # PROTOCOL.md: queued output is flushed, briefly
LISTEN_BACKLOG = 1024

log = logging.getLogger("chat.server")


def raise_open_files_limit() -> int:
    """Lift the soft open-files limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class ChatServer:
    """Owns the selector, the listening socket and the sockets of every ``Peer``."""

    def __init__(self, config: ServerConfig, store: Store | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        config.check()
        self.config = config
        self.tls: ssl.SSLContext | None = None
        self.fingerprint: str | None = None  # of the TLS certificate, for the operator
        if config.uses_tls:
            if config.tls_cert is not None and config.tls_key is not None:
                cert, key = config.tls_cert, config.tls_key
            else:
                names = [config.host] if config.host not in ("0.0.0.0", "::", "") else []
                cert, key = self_signed(os.path.join(config.data_dir, "tls"), names)
            self.tls = server_context(cert, key)
            self.fingerprint = file_fingerprint(cert)
        self.store = store if store is not None else Store(config.db_path)
        self.hub = Hub(config, self.store, clock)
        self.operator = Operator(self.hub)  # what the server window's controls call
        self.clock = clock
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.address: tuple[str, int] | None = None
        self.started_at = 0.0
        self._next_tick = 0.0
        self._accept_paused_until = 0.0
        self._pending: dict[Peer, None] = {}  # peers with frames left for next pass
        self._pass_deadline = 0.0
        self._stopping = False

    # ------------------------------------------------------------ lifecycle

    def listen(self) -> tuple[str, int]:
        """Bind and listen; return (host, port) with the real port."""
        host, port = self.config.host, self.config.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family,
                                        backlog=LISTEN_BACKLOG)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, None)
        self.listener = sock
        self.address = (host, sock.getsockname()[1])
        self.started_at = time.time()
        log.info("listening on %s:%d%s", *self.address, " (TLS)" if self.tls else "")
        if self.fingerprint:
            log.info("TLS certificate fingerprint (SHA-256): %s", self.fingerprint)
        return self.address

    def stop(self) -> None:
        """Ask ``serve_forever`` to return (safe to call from a signal handler)."""
        self._stopping = True

    def serve_forever(self) -> None:
        while not self._stopping:
            self.step(TICK_SECONDS)
        self.close()

    def close(self, notice: str = "The server is shutting down.") -> None:
        """Tell everyone, flush queued output for a short while, close everything."""
        hub = self.hub
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None
        hub.notice(notice)
        hub.close_all()
        self.store.commit()
        deadline = self.clock() + SHUTDOWN_FLUSH_SECONDS
        while hub.peers and self.clock() < deadline:
            self._flush()
            self._finish_closing(self.clock())
            if hub.peers:
                self.selector.select(0.05)
        for peer in list(hub.peers):
            self._drop(peer)
        self.selector.close()
        self.store.close()

    # ------------------------------------------------------------ one pass

    def step(self, timeout: float = 0.0, budget: float = PASS_BUDGET_S) -> int:
        """One bounded pass of the loop; waits at most ``timeout`` for I/O.

        Frames are taken for at most ``budget`` seconds; what is left waits for the
        next pass (a window passes a small budget to stay responsive). Returns how
        many sockets had work (0: the pass found nothing to do).
        """
        hub = self.hub
        self._pass_deadline = time.perf_counter() + budget
        hub.gate.new_pass()
        pending, self._pending = self._pending, {}
        for peer in pending:
            self._handle_frames(peer)
        if self._pending or hub.dirty:
            timeout = 0.0
        ready = self.selector.select(timeout)
        for key, mask in ready:
            peer = key.data
            if peer is None:
                self._accept()
                continue
            if not isinstance(peer, Peer):
                self._read_input(key.fd, peer)
                continue
            if peer.phase >= SNIFF:
                self._tls_step(peer)
                continue
            if (mask & selectors.EVENT_READ and not peer.closing and peer not in pending
                    and peer not in self._pending):
                if time.perf_counter() < self._pass_deadline:
                    self._read(peer)  # else it stays readable for the next pass
            if mask & selectors.EVENT_WRITE:
                hub.dirty.add(peer)
        now = self.clock()
        if now >= self._next_tick:
            self._next_tick = now + TICK_SECONDS
            hub.tick()
            self._resume_accepting(now)
        hub.deliver()
        self.store.commit()  # PROTOCOL.md: stored before anyone receives it
        self._flush()
        self._finish_closing(now)
        return len(ready) + len(pending)

    def watch_input(self, fd: int, feed: Callable[[bytes], None]) -> None:
        """Read ``fd`` (a terminal or a pipe: the operator console) in the loop and
        hand each chunk to ``feed``; at its end, stop watching it. ``OSError`` when
        the selector cannot watch it (a regular file, /dev/null)."""
        self.selector.register(fd, selectors.EVENT_READ, feed)

    def _read_input(self, fd: int, feed: Callable[[bytes], None]) -> None:
        try:
            data = os.read(fd, INPUT_READ)  # it is readable: this does not wait
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(fd)
            return
        feed(data)

    def _accept(self) -> None:
        assert self.listener is not None
        hub = self.hub
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept: %s; pausing", exc.strerror)
                    self._pause_accepting()
                return  # ECONNABORTED and the like: that one client is gone
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hub.unregistered >= self.config.max_clients:
                self._refuse(sock)
                continue
            peer = hub.open(addr)
            peer.sock = sock
            peer.decoder = FrameDecoder(self.config.max_frame)
            peer.events = selectors.EVENT_READ
            self.selector.register(sock, selectors.EVENT_READ, peer)
            log.info("connection from %s", peer.host)
            if self.tls is not None:
                peer.phase = SNIFF  # admission is checked once TLS can carry the answer
                continue
            peer.phase = FRESH
            self._admit(peer)

    def _admit(self, peer: Peer) -> None:
        """Refuse a connection from a banned address or one over its limit."""
        refusal = self.hub.admission(peer)
        if refusal is not None:
            log.info("refused %s: %s", peer.host, refusal.message)
            self.hub.error(peer, refusal, None)

    # ------------------------------------------------------------ TLS

    def _tls_step(self, peer: Peer) -> None:
        """Move a connection's TLS handshake on, never waiting for the peer."""
        if peer.closing:
            return
        if peer.phase == SNIFF and not self._sniff(peer):
            return
        try:
            peer.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._handshake_wants(peer, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._handshake_wants(peer, selectors.EVENT_WRITE)
            return
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            log.info("TLS handshake with %s failed: %s", peer.host, reason)
            self.hub.lost(peer)
            return
        peer.phase = READY
        self._watch(peer)
        self._admit(peer)
        if not peer.closing:
            self._read(peer)  # the hello may have come with the handshake's last flight

    def _sniff(self, peer: Peer) -> bool:
        """Look at the first byte: a TLS record starts the handshake; anything else
        is a plain-text client, told in plain text that TLS is needed."""
        try:
            head = peer.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self.hub.lost(peer)
            return False
        if not head:
            self.hub.close(peer, "disconnected", flush=False)
            return False
        if head != TLS_HELLO[:1]:
            peer.phase = READY
            log.info("plain-text client %s on the TLS port: told to use TLS", peer.host)
            try:  # read what it sent, so that closing does not reset the connection
                peer.sock.recv(RECV_SIZE)  # and throw away the answer with it
            except OSError:
                pass
            self.hub.error(peer, ProtocolError("tls_required", TLS_REQUIRED), None)
            return False
        assert self.tls is not None
        self.selector.unregister(peer.sock)
        raw = peer.sock
        try:
            peer.sock = self.tls.wrap_socket(raw, server_side=True,
                                             do_handshake_on_connect=False)
        except (ssl.SSLError, OSError):
            raw.close()
            peer.sock = None
            self.hub.lost(peer)
            return False
        self.selector.register(peer.sock, selectors.EVENT_READ, peer)
        peer.events = selectors.EVENT_READ
        peer.phase = HANDSHAKE
        return True

    def _handshake_wants(self, peer: Peer, events: int) -> None:
        if events != peer.events:
            self.selector.modify(peer.sock, events, peer)
            peer.events = events

    @staticmethod
    def _refuse(sock: socket.socket) -> None:
        """Too many connections still before `hello`: say so and close."""
        try:
            sock.send(encode({"type": "error", "code": "server_full",
                              "message": "Too many connections; try again later."}))
        except OSError:
            pass
        sock.close()

    def _pause_accepting(self) -> None:
        if self.listener is not None and self._accept_paused_until == 0.0:
            self.selector.unregister(self.listener)
            self._accept_paused_until = self.clock() + ACCEPT_PAUSE_SECONDS

    def _resume_accepting(self, now: float) -> None:
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            if self.listener is not None:
                self.selector.register(self.listener, selectors.EVENT_READ, None)

    def _read(self, peer: Peer) -> None:
        decoder = peer.decoder
        for _ in range(TLS_READS if self.tls is not None else 1):
            try:
                data = peer.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):
                break
            except OSError:
                self.hub.lost(peer)
                return
            if not data:
                # EOF: a half-closed peer may still read what it asked for.
                self.hub.close(peer, "disconnected")
                return
            if peer.phase == FRESH:
                peer.phase = READY
                if data.startswith(TLS_HELLO):  # a TLS client: it cannot read our errors
                    log.info("TLS client %s on the plain-text port: closed", peer.host)
                    self.hub.lost(peer)
                    return
            decoder.receive_data(data)
        self._handle_frames(peer)

    def _handle_frames(self, peer: Peer) -> None:
        hub, decoder = self.hub, peer.decoder
        for count in range(FRAMES_PER_PASS):
            if peer.closing:
                return
            if (count % BUDGET_CHECK_EVERY == BUDGET_CHECK_EVERY - 1
                    and time.perf_counter() > self._pass_deadline):
                break
            frame, peer.held = peer.held, None
            if frame is None:
                try:
                    frame = decoder.next_event()
                except ProtocolError as exc:
                    hub.reject(peer, exc)
                    continue
                if frame is NEED_DATA or frame is CLOSED:
                    return
            try:
                hub.receive(peer, frame)
            except Later:  # its turn for slow work comes next pass, in order
                peer.held = frame
                break
        if peer.held is not None or decoder.has_frames:
            self._pending[peer] = None  # not read again until these are handled

    # ------------------------------------------------------------ output

    def _flush(self) -> None:
        """One ``send`` per peer with output; cut off peers past the backlog cap."""
        hub = self.hub
        dirty = list(hub.dirty)
        hub.dirty.clear()
        max_backlog = self.config.max_backlog
        for peer in dirty:
            out = peer.out
            if out and peer.sock is not None:
                try:
                    sent = peer.sock.send(out)
                except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                        ssl.SSLWantReadError):
                    sent = 0
                except OSError:  # the peer is gone: nothing queued can reach it
                    hub.close(peer, "disconnected", flush=False)
                    out.clear()
                    sent = 0
                if sent:
                    del out[:sent]
                if len(out) > max_backlog and not peer.closing:
                    log.info("%s is not reading: closed at %d bytes of backlog",
                             peer.nick or peer.host, len(out))
                    hub.close(peer, "disconnected", flush=False)
            self._watch(peer)

    def _watch(self, peer: Peer) -> None:
        """Watch for writability only while output waits (asyncio's pattern)."""
        if peer.sock is None or peer.phase >= SNIFF:
            return  # a TLS handshake watches what it needs itself
        events = 0 if peer.closing else selectors.EVENT_READ
        if peer.out:
            events |= selectors.EVENT_WRITE
        if events and events != peer.events:
            self.selector.modify(peer.sock, events, peer)
            peer.events = events

    def _finish_closing(self, now: float) -> None:
        """Close the sockets of closing peers whose output is out (or overdue)."""
        for peer in list(self.hub.closing):
            if not peer.out or now >= peer.close_deadline or peer.sock is None:
                self._drop(peer)
            else:
                self._watch(peer)

    def _drop(self, peer: Peer) -> None:
        if peer.sock is not None:
            self.selector.unregister(peer.sock)
            peer.sock.close()
            peer.sock = None
        self._pending.pop(peer, None)
        self.hub.forget(peer)
