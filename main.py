"""One entry point: ``python main.py --server [--headless]`` or ``--client``.

Arguments are parsed here; windows are imported only when one is opened, so the
headless server and the core tests never need Tk.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import stat
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from chat.config import DEFAULT_PORT, ServerConfig
from chat.errors import ChatError
from chat.netinfo import addresses_to_show, join_address, split_address

if TYPE_CHECKING:
    from chat.server import ChatServer

# The page's files sit beside this file: web/ in a checkout; lanchat/web/ when installed
# (pyproject.toml puts main.py and web/ in the package `lanchat`).
WEB_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
DISCOVER_SECONDS = 2.0  # servers beacon every 2 s and answer a probe at once

# "main.py" run as a script, "lanchat" as the installed command
PROG = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "lanchat"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage plus a line
        sys.stderr.write(f"{PROG}: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="A group chat for one network: server and client.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--server", action="store_true", help="run the chat server")
    mode.add_argument("--client", action="store_true", help="open the chat window")
    mode.add_argument("--discover", action="store_true",
                      help="list the chat servers on this network (HOST:PORT first) and "
                           "exit: 0 if one answered, 1 if none")
    p.add_argument("--timeout", type=float, default=DISCOVER_SECONDS,
                   help=f"--discover: seconds to listen (default {DISCOVER_SECONDS:g})")
    p.add_argument("--headless", action="store_true",
                   help="server without a window (for machines with no display)")
    p.add_argument("--host", help="server: address to listen on (default 0.0.0.0); "
                                  "client: server to connect to")
    p.add_argument("--port", type=int, help=f"TCP port (default {DEFAULT_PORT}; "
                                            "server: 0 picks a free one)")
    p.add_argument("--password", help="server: password clients must give; "
                                      "client: the password to give")
    p.add_argument("--nick", help="client: nickname (with --host, connects at once)")
    p.add_argument("--tls", action="store_true",
                   help="server: TLS with a self-signed certificate made on first start "
                        "and kept beside the database; client: connect with TLS")
    p.add_argument("--nick-password", help="client: the password of a registered nickname")
    p.add_argument("--ca-file", help="client: check the server's certificate against "
                                     "this CA file (default: pin it on first use)")
    d = ServerConfig()
    s = p.add_argument_group("server options")
    s.add_argument("--db", help="SQLite history file (default: "
                                "~/.local/share/lanchat/history.db)")
    s.add_argument("--name", default=d.name, help="server name shown to clients")
    s.add_argument("--motd", default=d.motd, help="message of the day")
    s.add_argument("--max-clients", type=int, default=d.max_clients)
    s.add_argument("--rate", type=float, default=d.rate, help="messages/s per client (0: off)")
    s.add_argument("--burst", type=int, default=d.burst)
    s.add_argument("--max-frame", type=int, default=d.max_frame)
    s.add_argument("--max-text", type=int, default=d.max_text)
    s.add_argument("--max-backlog", type=int, default=d.max_backlog)
    s.add_argument("--oper", default="", metavar="NAME:PASSWORD",
                   help="lets the server's operator sign in from a client (IRC's OPER): "
                        "any room's operator, KILL and WALLOPS; also set from the console")
    s.add_argument("--history", type=int, default=d.history,
                   help="most messages replayed on join")
    s.add_argument("--hello-timeout", type=float, default=d.hello_timeout)
    s.add_argument("--ping-interval", type=float, default=d.ping_interval)
    s.add_argument("--ping-timeout", type=float, default=d.ping_timeout)
    s.add_argument("--tls-cert", help="TLS certificate chain (PEM), with --tls-key")
    s.add_argument("--tls-key", help="TLS private key (PEM)")
    s.add_argument("--tls-timeout", type=float, default=d.tls_timeout,
                   help="seconds a client has to finish the TLS handshake")
    s.add_argument("--max-per-address", type=int, default=d.max_per_address,
                   help="open connections per client address (0: no limit; "
                        "loopback is exempt unless --limit-loopback)")
    s.add_argument("--limit-loopback", action="store_true",
                   help="apply --max-per-address to 127.0.0.0/8 and ::1 too")
    s.add_argument("--irc-port", type=int, help="also speak IRC on this port (0 picks a "
                                                "free one; prints 'irc listening on ...')")
    s.add_argument("--irc-tls-port", type=int, help="also speak IRC over TLS on this port "
                                                    "(with --tls; prints 'ircs listening "
                                                    "on ...')")
    s.add_argument("--max-file-size", type=int, default=d.max_file_size,
                   help="bytes per file sent to a room or person (0: no files)")
    s.add_argument("--files-quota", type=int, default=d.files_quota,
                   help="bytes of all files kept (and uploads under way)")
    s.add_argument("--partial-idle", type=float, default=d.partial_idle, metavar="SECONDS",
                   help="remove an unfinished upload's bytes after this long without a "
                        "chunk (default: a day)")
    s.add_argument("--redis", metavar="URL",
                   help="redis://HOST:PORT/DB: be one node of a cluster sharing one chat "
                        "(rooms, nicknames, one message order) through Redis")
    s.add_argument("--no-announce", action="store_true",
                   help="do not announce the server on the LAN (discovery beacons)")
    s.add_argument("--console", action="store_true",
                   help="with --headless: take operator commands (who, say, kick, ban, "
                        "unban, bans, stop; 'help' lists them) on standard input")
    s.add_argument("--quiet", action="store_true", help="log warnings only")
    s.add_argument("--verbose", action="store_true", help="log every message too")
    return p


def server_config(args: argparse.Namespace) -> ServerConfig:
    config = ServerConfig(
        host=args.host or "0.0.0.0", port=DEFAULT_PORT if args.port is None else args.port,
        db=args.db or "", name=args.name, password=args.password, motd=args.motd,
        max_clients=args.max_clients, rate=args.rate, burst=args.burst,
        max_frame=args.max_frame, max_text=args.max_text, max_backlog=args.max_backlog,
        history=args.history, hello_timeout=args.hello_timeout,
        ping_interval=args.ping_interval, ping_timeout=args.ping_timeout,
        tls=args.tls, tls_cert=args.tls_cert, tls_key=args.tls_key,
        tls_timeout=args.tls_timeout, max_per_address=args.max_per_address,
        limit_loopback=args.limit_loopback, announce=not args.no_announce,
        max_file_size=args.max_file_size, files_quota=args.files_quota,
        partial_idle=args.partial_idle, oper=args.oper,
        irc_port=args.irc_port, irc_tls_port=args.irc_tls_port, redis=args.redis,
        web_root=WEB_ROOT)
    config.check()
    return config


def watch_console(server: ChatServer) -> None:
    """Take operator commands from standard input in the server's loop."""
    from chat.console import Console

    console = Console(server.operator, lambda text: print(text, flush=True), server.stop)
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
        if not (os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise ValueError("neither")  # a file or /dev/null: nothing to wait for
        server.watch_input(fd, console.feed)
    except (OSError, ValueError):
        raise ChatError("--console reads commands from a terminal or a pipe; "
                        "standard input is neither") from None


def discover(timeout: float) -> int:
    """Probe, listen ``timeout`` seconds, print each server found once (HOST:PORT
    first). Blocking is fine here: this is a command, not the server's loop."""
    import selectors
    import time

    from chat.discovery import Finder

    if not 0 < timeout <= 600:
        raise ChatError("--timeout must be more than 0 and at most 600 seconds")
    try:
        finder = Finder()
    except OSError as exc:
        raise ChatError(f"cannot listen for servers: {exc.strerror or exc}") from None
    printed: set[str] = set()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for sock in (finder.listen, finder.asker):
            if sock is not None:
                selector.register(sock, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            selector.select(left)
            for found in finder.poll():
                if found.tls and found.address not in printed:  # at once
                    printed.add(found.address)
                    print(found.line(), flush=True)
        # Plain servers at the end: one heard before a TLS server of its name (a twin
        # passing for it) is dropped by then, never printed.
        for found in finder.poll():
            if found.address not in printed:
                printed.add(found.address)
                print(found.line(), flush=True)
    finder.close()
    if finder.dropped:
        sys.stderr.write(f"{PROG}: {finder.dropped} beacon(s) not listed: more servers "
                         "than a list holds, or a plain server passing for a TLS one\n")
    if not printed:
        sys.stderr.write(f"{PROG}: no server answered within {timeout:g} s (is one running "
                         "on this network, and does its firewall let UDP port 7071 in?)\n")
    return 0 if printed else 1


def run_headless(config: ServerConfig, console: bool = False) -> int:
    from chat.platforms import on_stop_signals, raise_open_files_limit
    from chat.server import ChatServer

    raise_open_files_limit()
    server = ChatServer(config)
    try:
        if console:
            watch_console(server)
        host, port = server.listen()
    except ChatError:
        server.store.close()
        raise
    on_stop_signals(server.stop)
    print(f"listening on {host}:{port}", flush=True)
    if server.irc_address is not None:
        print(f"irc listening on {server.irc_address[0]}:{server.irc_address[1]}", flush=True)
    if server.irc_tls_address is not None:
        print("ircs listening on {}:{}".format(*server.irc_tls_address), flush=True)
    # What to give out: every address of this machine people can type, and the page.
    scheme = "https" if server.tls is not None else "http"
    for address in addresses_to_show(host):
        where = join_address(address, port)
        print(f"join at {where} (the chat window) or {scheme}://{where}/ (a browser)",
              flush=True)
    server.serve_forever()
    return 0


def load_window(module: str, name: str, *, server: bool) -> Any:
    """A window's entry point; where there is no Tk, or no display to open a window
    on, one sentence saying what to do instead."""
    instead = ("run the server without a window: python main.py --server --headless"
               if server else "join from a browser at the server's address instead")
    if not sys.platform.startswith(("win", "darwin")) and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ChatError(f"cannot open a window: no display (DISPLAY is not set); {instead}")
    try:
        loaded = importlib.import_module(f"gui.{module}")
    except ImportError as exc:
        raise ChatError(f"the windows need Tk and customtkinter ({exc}): install Tk "
                        "(Debian and Ubuntu: sudo apt-get install python3-tk) and "
                        f"'pip install -r requirements.txt', or {instead}") from None
    return getattr(loaded, name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.discover:
            return discover(args.timeout)
        if args.server:
            config = server_config(args)
            if args.headless:
                return run_headless(config, args.console)
            if args.console:
                raise ChatError("--console goes with --headless (the window has its "
                                "own controls)")
            run_server_window = load_window("server_window", "run_server_window", server=True)
            return run_server_window(config)
        if args.headless:
            raise ChatError("--headless is a server option")
        host, port = args.host, args.port
        if host is not None:  # as the server window shows it: 192.168.1.20:7070
            servers = host.replace(",", " ").split() or [host]  # or a cluster's servers
            try:
                wheres = [split_address(s, port or DEFAULT_PORT) for s in servers]
            except ValueError as exc:
                raise ChatError(f"--host: {exc}") from None
            if len(wheres) == 1:
                host, port = wheres[0]  # else the form reads the list as typed
        run_client_window = load_window("client_window", "run_client_window", server=False)
        return run_client_window(host=host, port=port, nick=args.nick,
                                 password=args.password, nick_password=args.nick_password,
                                 tls=args.tls, cafile=args.ca_file)
    except ChatError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
