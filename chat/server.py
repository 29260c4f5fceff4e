"""The single-threaded server: one ``selectors`` loop over non-blocking sockets.

``ChatServer.step(timeout)`` is one bounded pass: accept and read every readable
socket, handle frames peer after peer within a time and delivery budget, at most one
password check, close connections that ended, timers, one commit of the pass's
messages, then one ``send`` per peer with output. A peer whose input waits (frames
beyond the budget, a password check, its own unread output) is not read meanwhile,
so TCP pushes back on it alone. ``serve_forever`` loops it for ``--headless``; the
server window calls ``step(0)`` from Tk's ``after()``. Chat semantics live in
``chat.hub``.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from chat.config import ServerConfig
from chat.discovery import DISCOVERY_PORT, Announcer
from chat.dispatch import receive, reject
from chat.errors import ConfigError, Later, ProtocolError
from chat.events import Error
from chat.hub import Hub
from chat.irc import IrcCodec, IrcDoor
from chat.model import FRESH, HANDSHAKE, READY, SNIFF, Peer
from chat.netinfo import addresses_to_show, join_address
from chat.operator import Operator
from chat.platforms import RESERVED_SOCKETS, WINDOWS, PolledInput, selector_capacity
from chat.protocol import CLOSED, NEED_DATA, FrameDecoder
from chat.resp import Redis
from chat.store import Store
from chat.tls import file_fingerprint, self_signed, server_context
from chat.web import HTTP_REFUSAL, WEB_ROOT, Site, WebDoor, looks_like_http

RECV_SIZE = 64 * 1024  # one recv per readable peer per pass keeps a pass short
TLS_READS = 4  # a TLS recv returns one record (16 KiB at most): up to 4 per pass
TLS_HELLO = b"\x16\x03"  # the first bytes of a TLS ClientHello record
INTERNAL_ERROR = ("The server failed while handling your connection; it is closed. "
                  "Please reconnect.")
TLS_REQUIRED = ("This server speaks TLS only: turn on TLS in your client "
                "(python main.py --client --tls).")
IRC_LISTENER = "irc"  # the selector's data for the IRC listening sockets
IRC_TLS_LISTENER = "ircs"
HTTPS_REQUIRED = "This chat server speaks TLS only: open its address with https:// instead."
# A connection's turn in a pass: this much of its input at most (a request is one unit,
# and so is each line, fragment or control frame its door handles itself); the rest
# waits for its next turn
TURN_WORK = 256
# ... of which its door's own work (lines it answers itself, fragments, control frames,
# blank and bad lines) at most this much: a flood of it waits behind everyone's turn
DOOR_WORK_PER_TURN = 64
PASS_BUDGET_S = 0.05  # a pass takes no new frames after this long (timers, fairness)
MIN_WORK_S = 0.005  # however long reading took, a pass handles frames this long
HELD_WAKE_S = 0.02  # while password checks wait for their turn, wake up this often
MIN_HIGH_WATER = 16 * 1024
# Frames queued on members per pass (a broadcast to a room of 5,000 counts 5,000):
# past this, frames and closes wait for the next pass, so a storm of joins or of
# leaves in a big room (quadratic by nature) is worked off over many short passes.
COST_PER_PASS = 200_000
CLOSES_PER_PASS = 16  # closes done in a pass whatever it cost, so they always move on
REGISTERED_SHARE = 0.7  # of the frame budget, for registered users before new arrivals
# Connections handled in a pass however long the pass's work took: one registered user
# and two new arrivals, so that registered users whose requests cost a whole pass (a
# password hash each, on a slow machine) cannot hold a newcomer's hello back until its
# hello timeout runs out.
PASS_FLOOR = 1
ARRIVALS_FLOOR = 2
POLLED_INPUT_S = 0.1  # how long a pass may wait while an input is read by polling
INPUT_READ = 4096  # bytes read from a watched input (the operator console) per pass
ACCEPT_BATCH = 256  # connections accepted per pass
TICK_SECONDS = 0.1  # how often timers (hello, ping, close deadlines) are checked
ACCEPT_PAUSE_SECONDS = 0.1  # out of file descriptors: stop accepting this long
SHUTDOWN_FLUSH_SECONDS = 2.0  # docs/protocol.md: queued output is flushed, briefly
LISTEN_BACKLOG = 1024

log = logging.getLogger("chat.server")


def listen_problem(exc: OSError, host: str, port: int) -> str:
    """Why a port cannot be listened on, in words an operator acts on."""
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} is in use by another program; choose another port "
                "(or stop that program)")
    if exc.errno == errno.EACCES:
        return f"port {port} needs administrator rights here; choose one above 1024"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine"
    return (exc.strerror or str(exc)).split(" (while attempting")[0]


def _loopback_only(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "" (every address) or a name
        return False


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
        if self.store.replayed:
            log.warning("%d message(s) stored in the message log before a crash were put "
                        "into the database", self.store.replayed)
        self.hub = Hub(config, self.store, clock)
        self.operator = Operator(self.hub)  # what the server window's controls call
        self.site = Site(config.web_root or WEB_ROOT)  # the page, on the chat port (chat.web)
        # the IRC server's name in its own lines: --name, as one word of IRC
        self.irc_name = "".join(c if c.isalnum() or c in ".-_" else "-"
                                for c in config.name)[:63] or "lanchat"
        self.clock = clock
        self.selector = selectors.DefaultSelector()
        # select() (Windows) holds a fixed number of sockets: more clients are refused
        capacity = selector_capacity(self.selector)
        self.socket_cap = None if capacity is None else capacity - RESERVED_SOCKETS
        self._polled: list[tuple[PolledInput, Callable[[bytes], None]]] = []
        if config.redis is not None:  # a node of a cluster (chat.cluster)
            from chat.cluster import Cluster
            try:
                self.hub.sequencer = Cluster(self.hub, config.redis, self.selector, clock,
                                             self._node_info)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            self.site.peers = self.hub.sequencer.addresses  # the page may move there
        self.listener: socket.socket | None = None
        # --irc-port and --irc-tls-port (chat.irc), by their selector data
        self.irc_listeners: dict[str, socket.socket] = {}
        self.irc_address: tuple[str, int] | None = None
        self.irc_tls_address: tuple[str, int] | None = None
        self.announcer: Announcer | None = None  # LAN beacons, once listening
        self.address: tuple[str, int] | None = None
        self.started_at = 0.0
        self._next_tick = 0.0
        self._accept_paused_until = 0.0
        # Peers whose input waits, each in the order it came (their sockets are not
        # read meanwhile, so TCP pushes back on them and nobody else):
        self._pending: dict[Peer, None] = {}  # frames to handle (registered users)
        self._arriving: dict[Peer, None] = {}  # frames to handle (before `hello`)
        self._dying: dict[Peer, bool] = {}  # the connection ended: close (flush?)
        self._held: dict[Peer, None] = {}  # a request waiting for its password check
        self._paused: dict[Peer, None] = {}  # until its output drains below high water
        self._slowed: dict[Peer, float] = {}  # past its door work rate: not read until
        # A peer's frames wait while this much of its output is unsent: what it asks
        # for is made only when it reads (asyncio's high-water mark, on the asker).
        self.high_water = max(config.max_backlog // 4, MIN_HIGH_WATER)
        self._pass_deadline = 0.0
        self._stopping = False
        self._advertised: str | None = None  # HOST:PORT clients of a cluster are given

    # ------------------------------------------------------------ lifecycle

    def listen(self) -> tuple[str, int]:
        """Bind and listen; return (host, port) with the real port."""
        host, port = self.config.host, self.config.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family,
                                        backlog=LISTEN_BACKLOG)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: "
                              f"{listen_problem(exc, host, port)}") from None
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, None)
        self.listener = sock
        self.address = (host, sock.getsockname()[1])
        self.started_at = time.time()
        log.info("listening on %s:%d%s", *self.address, " (TLS)" if self.tls else "")
        if self.config.irc_port is not None:
            self.irc_address = self._listen_irc(family, self.config.irc_port, IRC_LISTENER)
        if self.config.irc_tls_port is not None:
            self.irc_tls_address = self._listen_irc(family, self.config.irc_tls_port,
                                                    IRC_TLS_LISTENER)
        self._announce()
        if self.config.redis is not None:  # where the other nodes' clients may come here:
            # worked out now, before serving (finding the LAN address asks the system)
            self._advertised = join_address(addresses_to_show(host)[0], self.address[1])
        if self.fingerprint:
            log.info("TLS certificate fingerprint (SHA-256): %s", self.fingerprint)
        if self.socket_cap is not None:  # select() (Windows): said once it is serving
            log.info("this platform's select() watches at most %d sockets: at most %d "
                     "connections at once", self.socket_cap + RESERVED_SOCKETS,
                     self.socket_cap)
        return self.address

    def _listen_irc(self, family: socket.AddressFamily, port: int, kind: str
                    ) -> tuple[str, int]:
        host = self.config.host
        try:
            sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
        except OSError as exc:
            self._close_listeners()
            raise ConfigError(f"cannot listen for IRC on {host}:{port}: "
                              f"{listen_problem(exc, host, port)}") from None
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, kind)
        self.irc_listeners[kind] = sock
        address = (host, sock.getsockname()[1])
        log.info("IRC%s listening on %s:%d", " (TLS)" if kind == IRC_TLS_LISTENER else "",
                 *address)
        return address

    def _close_listeners(self) -> None:
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None
        for sock in self.irc_listeners.values():
            self.selector.unregister(sock)
            sock.close()
        self.irc_listeners.clear()

    def _announce(self) -> None:
        """Start the LAN beacons (chat.discovery), unless asked not to or the server
        listens on loopback only (nobody else could reach it)."""
        if not self.config.announce or _loopback_only(self.config.host):
            return
        try:
            self.announcer = Announcer(self._describe, self.clock)
        except OSError as exc:
            log.warning("not announced on the LAN: UDP port %d: %s", DISCOVERY_PORT,
                        exc.strerror or exc)
            return
        self.selector.register(self.announcer.sock, selectors.EVENT_READ, self.announcer)
        log.info("announced on the LAN (UDP port %d)", DISCOVERY_PORT)

    def _describe(self) -> dict[str, Any]:
        assert self.address is not None
        return {"name": self.config.name, "port": self.address[1], "tls": self.tls is not None,
                "fingerprint": self.fingerprint or "", "users": len(self.hub.users)}

    def _node_info(self) -> dict[str, Any]:
        """What other nodes of the cluster (and their windows and clients) know of this
        one: where its clients reach it (``listen`` works it out)."""
        return {"name": self.config.name, "address": self._advertised or "",
                "started": int(self.started_at)}

    def stop(self) -> None:
        """Ask ``serve_forever`` to return (safe to call from a signal handler)."""
        self._stopping = True

    def serve_forever(self) -> None:
        while not self._stopping:
            self.step(TICK_SECONDS)
        self.close()

    def step(self, timeout: float = 0.0, budget: float = PASS_BUDGET_S) -> int:
        """One bounded pass of the loop; waits at most ``timeout`` for I/O.

        Every readable socket is read (unless its own earlier input still waits);
        then frames are handled, peer after peer in the order their input came, for
        at most ``budget`` seconds (a window passes a small one to stay responsive);
        then at most one password check, timers, the commit and the sends. An
        unexpected error while serving one connection closes that connection and is
        logged with its traceback; the loop goes on. Returns how many sockets and
        peers had work (0: the pass found nothing to do).
        """
        try:
            return self._step(timeout, budget)
        except Exception:  # a bug outside any one connection: logged, the loop goes on
            log.exception("internal error in the server loop")
            return 1

    def close(self, notice: str = "The server is shutting down.") -> None:
        """Tell everyone, flush queued output for a short while, close everything."""
        hub = self.hub
        self._close_listeners()
        if self.announcer is not None:
            self.selector.unregister(self.announcer.sock)
            self.announcer.close()
            self.announcer = None
        hub.notice(notice)
        hub.close_all()
        hub.commit()
        hub.sequencer.close()
        for peer in self._dying:  # their connections ended: nothing more can reach them
            peer.out.clear()
            peer.borrowed = None
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

    def _step(self, timeout: float, budget: float) -> int:
        hub = self.hub
        self._pass_deadline = time.perf_counter() + budget
        hub.gate.new_pass(self._held)
        hub.cost = 0
        hub.searched = False
        if self._pending or self._arriving or self._dying or hub.dirty or hub.pumping \
                or hub.gate.hashing:
            timeout = 0.0
        elif self._held:
            timeout = min(timeout, HELD_WAKE_S)
        if self._slowed:
            timeout = min(timeout, max(0.0, min(self._slowed.values()) - self.clock()))
        if self._polled:  # read by polling: a pass at least this often
            timeout = min(timeout, POLLED_INPUT_S)
            self._poll_inputs()
        ready = self.selector.select(timeout)
        for key, mask in ready:
            try:
                self._ready(key.data, key.fd, mask)
            except Exception:
                self._crashed(key.data)
        worked = self._work()
        if hub.hashing or hub.downloading:
            try:
                hub.pump()  # file transfers: bounded per pass
            except Exception:
                log.exception("internal error while moving files")
        worked += self._retry_held()
        worked += self._bury()
        now = self.clock()
        if self._slowed:
            self._wake_slowed(now)
        if now >= self._next_tick:
            self._next_tick = now + TICK_SECONDS
            try:
                hub.tick()
            except Exception:
                log.exception("internal error in the server's timers")
            self._resume_accepting(now)
            if self.announcer is not None:
                self.announcer.tick()
            hub.sequencer.tick()
        hub.commit()  # docs/protocol.md: stored before anyone receives it
        self._flush()
        hub.sequencer.flush()
        self._finish_closing(now)
        return len(ready) + worked

    def _ready(self, peer: Any, fd: int, mask: int) -> None:
        if peer is None:
            self._accept()
        elif peer in (IRC_LISTENER, IRC_TLS_LISTENER):
            self._accept(irc=peer)
        elif isinstance(peer, Announcer):
            peer.readable()
        elif isinstance(peer, Redis):
            peer.events(mask)
        elif not isinstance(peer, Peer):
            self._read_input(fd, peer)
        elif peer.phase >= SNIFF:
            self._tls_step(peer)
        else:
            if mask & selectors.EVENT_WRITE:
                self.hub.dirty.setdefault(peer, len(peer.out))
            if mask & selectors.EVENT_READ and not peer.closing and not self._waiting(peer):
                self._read(peer)

    def _waiting(self, peer: Peer) -> bool:
        """Whether input of ``peer`` waits to be handled (so it is not read now)."""
        return (peer in self._pending or peer in self._arriving or peer in self._held
                or peer in self._paused or peer in self._dying or peer in self._slowed)

    def _wake_slowed(self, now: float) -> None:
        """Slowed connections whose door work rate allows them more are read again."""
        for peer, wake in list(self._slowed.items()):
            if now >= wake:
                del self._slowed[peer]
                self._resume(peer)

    def _queue(self, peer: Peer) -> None:
        """``peer`` has frames to handle: to the back of its line."""
        (self._pending if peer.nick is not None else self._arriving)[peer] = None

    def _over_budget(self) -> bool:
        return (time.perf_counter() >= self._pass_deadline
                or self.hub.cost >= COST_PER_PASS)

    def _work(self) -> int:
        """Handle waiting frames, peer after peer in order, within the pass's budget:
        registered users first (most of the budget), then connections still saying
        `hello`, then registered users again with what is left."""
        if not self._pending and not self._arriving:
            return 0
        now = time.perf_counter()
        deadline = max(self._pass_deadline, now + MIN_WORK_S)
        self._pass_deadline = now + (deadline - now) * REGISTERED_SHARE
        worked = self._serve(self._pending, PASS_FLOOR)
        self._pass_deadline = deadline
        worked += self._serve(self._arriving, ARRIVALS_FLOOR)
        worked += self._serve(self._pending)
        return worked

    def _serve(self, queue: dict[Peer, None], floor: int = 0) -> int:
        """Handle peers of ``queue`` in order until the budget is spent (``floor`` of
        them whatever it costs)."""
        worked = 0
        for peer in list(queue):
            if worked >= floor and self._over_budget():
                break
            del queue[peer]
            worked += 1
            try:
                self._handle_frames(peer)
            except Exception:
                self._crashed(peer)
        return worked

    def _bury(self) -> int:
        """Close connections that ended (EOF, reset), as many as the pass's budget
        allows: a crowd leaving at once is told to the rest over several passes."""
        dying = self._dying
        done = 0
        for peer in list(dying):
            if done >= CLOSES_PER_PASS and self.hub.cost >= COST_PER_PASS:
                break
            flush = dying.pop(peer)
            done += 1
            try:
                self.hub.close(peer, "disconnected", flush=flush)
            except Exception:
                self._crashed(peer)
        return done

    def _retry_held(self) -> int:
        """Requests waiting for a password check are tried again (the gate lets the
        one whose turn it is through), after everyone else's frames."""
        worked = 0
        gate = self.hub.gate
        for peer in list(self._held):
            frame = peer.held
            if peer.closing or frame is None:
                del self._held[peer]
                continue
            if gate.blocked(peer):
                continue
            peer.held = None
            try:
                receive(self.hub, peer, frame)
            except Later:
                peer.held = frame
                continue
            except Exception:
                del self._held[peer]
                self._crashed(peer)
                continue
            worked += 1
            del self._held[peer]
            self._resume(peer)
        return worked

    def _resume(self, peer: Peer) -> None:
        """``peer``'s waiting is over: handle what it sent next, or read again."""
        if peer.closing:
            return
        if peer.decoder is not None and peer.decoder.has_frames:
            self._queue(peer)
        self._watch(peer)

    def _crashed(self, peer: Any) -> None:
        """An unexpected error while serving ``peer``: log it once, with its
        traceback, and close that one connection; everyone else goes on."""
        who = peer.nick or peer.host if isinstance(peer, Peer) else repr(peer)
        log.exception("internal error while serving %s; its connection is closed", who)
        if not isinstance(peer, Peer):
            return
        for waiting in (self._pending, self._arriving, self._held, self._paused,
                        self._dying, self._slowed):
            waiting.pop(peer, None)
        try:
            self.hub.error(peer, ProtocolError("internal_error", INTERNAL_ERROR), None)
            self.hub.close(peer, "disconnected")
        except Exception:
            log.exception("could not close %s cleanly; dropped", who)
            self.hub.evict(peer)
            self._drop(peer)

    def watch_input(self, fd: int, feed: Callable[[bytes], None]) -> None:
        """Read ``fd`` (a terminal or a pipe: the operator console) in the loop and
        hand each chunk to ``feed``; at its end, stop watching it. ``OSError`` when
        the selector cannot watch it (a regular file, /dev/null)."""
        try:
            self.selector.register(fd, selectors.EVENT_READ, feed)
        except (OSError, ValueError):
            if not WINDOWS:
                raise
            self._polled.append((PolledInput(fd), feed))  # select() takes sockets only

    def _poll_inputs(self) -> None:
        """Inputs the selector cannot watch (chat.platforms): read without waiting."""
        for source in list(self._polled):
            polled, feed = source
            try:
                data = polled.read()
            except OSError:
                data = b""
            if data == b"":
                self._polled.remove(source)
            elif data is not None:
                feed(data)

    def _read_input(self, fd: int, feed: Callable[[bytes], None]) -> None:
        try:
            data = os.read(fd, INPUT_READ)  # it is readable: this does not wait
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(fd)
            return
        feed(data)

    def _accept(self, irc: str | None = None) -> None:
        listener = self.irc_listeners[irc] if irc is not None else self.listener
        assert listener is not None
        hub = self.hub
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept: %s; pausing", exc.strerror)
                    self._pause_accepting()
                return  # ECONNABORTED and the like: that one client is gone
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hub.unregistered >= self.config.max_clients or (
                    self.socket_cap is not None and len(hub.peers) >= self.socket_cap):
                self._refuse(sock)
                continue
            peer = hub.open(addr)
            peer.sock = sock
            peer.decoder = FrameDecoder(self.config.max_frame)
            peer.events = selectors.EVENT_READ
            self.selector.register(sock, selectors.EVENT_READ, peer)
            log.info("connection from %s%s", peer.host, " (IRC)" if irc is not None else "")
            if irc is not None:  # an IRC port speaks IRC from the first byte (chat.irc)
                codec = IrcCodec(self.irc_name)
                peer.codec = codec
                peer.decoder = IrcDoor(peer, codec, say=partial(hub.to_peer, peer))
                if irc == IRC_TLS_LISTENER:
                    peer.phase = SNIFF  # the TLS handshake first, then IRC inside it
                else:
                    self._admit_now(peer)
                continue
            # Admission is checked at the first bytes, in the language they speak
            # (inside TLS once its handshake is done).
            peer.phase = SNIFF if self.tls is not None else FRESH

    def _admit_now(self, peer: Peer) -> bool:
        """Refuse a connection from a banned address or one over its limit, in its
        own language; whether it may stay."""
        refusal = self.hub.admission(peer)
        if refusal is not None:
            log.info("refused %s: %s", peer.host, refusal.message)
            self.hub.error(peer, refusal, None)
            return False
        return True

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
        peer.phase = FRESH
        self._watch(peer)
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
            told = TLS_REQUIRED
            if looks_like_http(head) and peer.door != "irc":  # a browser asked for http://
                peer.codec, told = HTTP_REFUSAL, HTTPS_REQUIRED
            self.hub.error(peer, ProtocolError("tls_required", told), None)
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
            sock.send(Error("server_full", "Too many connections; try again later.").data)
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
                self._ended(peer, broken=True)
                return
            if not data:
                self._ended(peer, broken=False)
                return
            if peer.phase == FRESH:
                peer.phase = READY
                if not self._first_bytes(peer, data):
                    return
                decoder = peer.decoder
            decoder.receive_data(data)
        if decoder.has_frames:
            self._queue(peer)  # handled in this pass's turn, in order
            self._watch(peer)

    def _ended(self, peer: Peer, broken: bool) -> None:
        """``peer``'s connection ended (EOF, or broken): what it said before the end
        (bytes read in this pass too: a TLS read may bring data, then EOF) is handled
        first, and its door's end then buries it; with nothing left, at once. A
        half-closed peer may still read what it asked for; a broken one reads no more."""
        decoder = peer.decoder
        decoder.receive_data(b"")
        if decoder.has_frames:
            self._queue(peer)  # its frames, then the door's CLOSED: buried then
            self._watch(peer)
        elif broken:
            self._doomed(peer)
        else:
            self._dying[peer] = True
            self._watch(peer)

    def _first_bytes(self, peer: Peer, data: bytes) -> bool:
        """Tell the front door by the first bytes (JSON lines, or HTTP: the page and
        its WebSocket), then admit or refuse the connection in its own language.
        Returns whether its bytes are to be read as its door's input."""
        if peer.door == "irc":  # an IRC port (after its TLS handshake): IRC it is
            return self._admit_now(peer)
        if self.tls is None and data.startswith(TLS_HELLO):
            log.info("TLS client %s on the plain-text port: closed", peer.host)
            self.hub.lost(peer)  # a TLS client cannot read a plain-text error
            return False
        if looks_like_http(data):
            peer.decoder = WebDoor(peer, self.site, self.config.max_frame, self.clock)
            peer.codec = HTTP_REFUSAL  # until it is a WebSocket, errors are statuses
        return self._admit_now(peer)

    def _handle_frames(self, peer: Peer) -> None:
        """Up to ``TURN_WORK`` units of ``peer``'s input (the first whatever the pass
        cost so far), while the pass has time and the peer reads what it is sent;
        then it waits its next turn. This is the one place input is charged: requests
        to the turn (and to their own buckets, in chat.dispatch), the door's own work
        to the turn and to ``peer.work``: past that rate it is not read for a while."""
        hub, decoder, work = self.hub, peer.decoder, peer.work
        done = door = 0
        while done < TURN_WORK and door < DOOR_WORK_PER_TURN:
            if peer.closing:
                return
            if peer.unsent > self.high_water:
                self._paused[peer] = None  # resumed when it has read its output
                self._watch(peer)
                return
            if done and self._over_budget():
                break
            if work.tokens < 1 and not work.ready(now := self.clock()):
                self._slowed[peer] = now + work.wait(now)  # read again when it may
                self._watch(peer)
                return
            before = decoder.work
            try:
                frame = decoder.next_event()
            except ProtocolError as exc:
                spent = decoder.work - before + 1  # a bad line is the door's work too
                work.spend(spent, self.clock())
                done += spent
                door += spent
                reject(hub, peer, exc)
                continue
            spent = decoder.work - before
            if spent:
                work.spend(spent, self.clock())
                done += spent
                door += spent
            if frame is NEED_DATA:
                if spent and decoder.has_frames:
                    continue  # a bounded door turn: more of its input is waiting
                break  # all handled (a door may still hold bytes: then it queues again)
            if frame is CLOSED:
                if not peer.closing:  # a door's end (a WebSocket close, an HTTP error)
                    self._dying[peer] = True
                self._watch(peer)
                return
            done += 1
            try:
                receive(hub, peer, frame)
            except Later:  # waits for its password check; the rest waits behind it
                peer.held = frame
                self._held[peer] = None
                return
        if decoder.has_frames:
            self._queue(peer)  # the back of the line
        self._watch(peer)

    # ------------------------------------------------------------ output

    def _flush(self) -> None:
        """One ``send`` per peer with output; cut off peers past the backlog cap."""
        hub = self.hub
        dirty = list(hub.dirty)
        hub.dirty.clear()
        max_backlog = self.config.max_backlog
        for peer in dirty:
            out = peer.out
            data: bytes | bytearray | None = peer.borrowed  # a room's batch, shared:
            #                                                  sent from the one copy
            if data is not None:
                peer.borrowed = None
                if out:
                    out += data
                    data = out
            elif out:
                data = out
            if data is not None and peer.sock is not None and peer not in self._dying:
                try:
                    sent = peer.sock.send(data)
                except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                        ssl.SSLWantReadError):
                    sent = 0
                except OSError:  # the peer is gone: nothing queued can reach it
                    self._doomed(peer)
                    continue
                if data is out:
                    if sent:
                        del out[:sent]
                elif sent < len(data):
                    out += memoryview(data)[sent:]  # the rest is its own to keep
                if len(out) > max_backlog and not peer.closing:
                    log.info("%s is not reading: closed at %d bytes of backlog",
                             peer.nick or peer.host, len(out))
                    self._doomed(peer)
                    continue
            elif data is not None and data is not out:
                out += data  # (not sent now: kept in order with the rest)
            if peer in self._paused and len(out) <= self.high_water:
                del self._paused[peer]
                self._resume(peer)
            else:
                self._watch(peer)

    def _doomed(self, peer: Peer) -> None:
        """Its connection broke or it is cut off: closed in a coming pass, within
        the pass's budget (a crowd of them is told to the rest a part at a time);
        nothing more is sent to it."""
        if not peer.closing:
            self._dying[peer] = False
        peer.out.clear()
        peer.borrowed = None
        self._watch(peer)

    def _watch(self, peer: Peer) -> None:
        """Watch for writability only while output waits (asyncio's pattern), and
        for readability only while none of the peer's input waits."""
        if peer.sock is None or peer.phase >= SNIFF:
            return  # a TLS handshake watches what it needs itself
        events = 0
        if not peer.closing and not self._waiting(peer):
            events = selectors.EVENT_READ
        if peer.out:
            events |= selectors.EVENT_WRITE
        if events == peer.events:
            return
        if not events:
            self.selector.unregister(peer.sock)
        elif not peer.events:
            self.selector.register(peer.sock, events, peer)
        else:
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
            farewell = peer.codec.farewell if peer.codec is not None else b""
            if farewell and not peer.out:  # a WebSocket's close frame: a few bytes
                try:
                    peer.sock.send(farewell)
                except OSError:
                    pass
            if peer.events:
                self.selector.unregister(peer.sock)
                peer.events = 0
            peer.sock.close()
            peer.sock = None
        for waiting in (self._pending, self._arriving, self._held, self._paused,
                        self._dying, self._slowed):
            waiting.pop(peer, None)
        self.hub.forget(peer)
