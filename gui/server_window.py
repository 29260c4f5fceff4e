"""The server monitor: addresses, live counters, client list, log, operator controls.

The window drives ``ChatServer.step(0)`` from Tk's ``after()``: each tick runs
passes until the loop is idle or a time budget is spent, then updates the widgets,
so the GUI and the network share one thread without freezing either.
"""

from __future__ import annotations

import logging
import time
import tkinter
from collections import deque
from dataclasses import replace
from tkinter import ttk
from typing import Any

import customtkinter as ctk

from chat.config import ServerConfig
from chat.console import Console
from chat.errors import ChatError, ProtocolError
from chat.netinfo import addresses_to_show
from chat.platforms import raise_open_files_limit
from chat.server import ChatServer
from gui.common import POLL_MS, LineView, Settings, apply_appearance, is_dark
from gui.server_panels import BansPanel, ClientsPanel, ControlBar, OperatorBar, StatusPanel

STEP_BUDGET_S = 0.020  # network work per tick; the rest of the tick is the GUI's
REFRESH_S = 0.25  # counters and the client list are redrawn this often
LOG_LINES = 2000  # lines kept in the log view
LOG_BATCH = 500  # log lines rendered per tick at most (the rest wait, bounded)
MENU_ROOMS = 200  # rooms offered in the operator's room menu (in name order)
MIN_SIZE = (900, 680)  # every field readable (fits a 1366x768 laptop screen)

log = logging.getLogger("chat.server")

class _QueueHandler(logging.Handler):
    """Hands the server's log records to the window, which renders them in batches."""

    def __init__(self, sink: deque) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:  # the full traceback
            exc = record.exc_info[1]  # goes to stderr; the view shows what it was
            text += f" ({type(exc).__name__}: {exc})"
        self.sink.append((record.created, record.levelno, text))


class ServerWindow(ctk.CTk):
    def __init__(self, config: ServerConfig) -> None:
        self.settings = Settings("server")
        appearance = apply_appearance(self.settings.get("appearance", "Light"))
        super().__init__()
        self.server_config = config
        self.server: ChatServer | None = None
        self.start_error = ""
        self.addresses: list[str] = []
        self.title("lanchat server")
        self.geometry("1100x760")
        self.minsize(*MIN_SIZE)
        self.grid_columnconfigure(0, weight=1, uniform="halves")
        self.grid_columnconfigure(1, weight=1, uniform="halves")
        self.grid_rowconfigure(1, weight=3, minsize=220)
        self.grid_rowconfigure(2, weight=2, minsize=170)

        self.status = StatusPanel(self)
        self.status.grid(row=0, column=0, columnspan=2, padx=10, pady=(10, 5), sticky="ew")
        self.clients = ClientsPanel(self, self.kick_event, self.ban_event)
        self.clients.grid(row=1, column=0, padx=(10, 5), pady=5, sticky="nsew")
        self.bans = BansPanel(self, self.add_ban_event, self.lift_ban_event)
        self.bans.grid(row=2, column=0, padx=(10, 5), pady=5, sticky="nsew")
        self.log_view = LineView(self, max_lines=LOG_LINES, font=ctk.CTkFont(size=12))
        self.log_view.grid(row=1, column=1, rowspan=2, padx=(5, 10), pady=5, sticky="nsew")
        self.log_view.tag_config("warning", foreground="#d35400")
        self.log_view.tag_config("time", foreground="#808b96")
        self.operator = OperatorBar(self, self.say_event, self.notice_event,
                                    self.console_event)
        self.operator.grid(row=3, column=0, columnspan=2, padx=10, pady=5, sticky="ew")
        self.controls = ControlBar(self, config, self.toggle_event, appearance,
                                   self.appearance_event)
        self.controls.grid(row=4, column=0, columnspan=2, padx=10, pady=(0, 10), sticky="ew")
        self._style_tree()

        self.log_records: deque = deque(maxlen=LOG_LINES)
        self._log_handler = _QueueHandler(self.log_records)
        logger = logging.getLogger("chat.server")
        logger.addHandler(self._log_handler)
        logger.setLevel(logging.DEBUG)  # the log shows messages too...
        logger.propagate = False  # ...in the window, not on the terminal
        self._next_refresh = 0.0
        self._rate_mark = (time.monotonic(), 0)
        self.rate = 0.0
        self.tick_seconds: deque[float] = deque(maxlen=2000)  # for the responsiveness bench
        self.protocol("WM_DELETE_WINDOW", self.close_event)
        raise_open_files_limit()
        self.start_server()
        self._after_id = self.after(POLL_MS, self._poll)

    # ------------------------------------------------------------ server control

    def start_server(self) -> None:
        try:
            port = int(self.controls.port_entry.get())
        except ValueError:
            port = -1
        config = replace(self.server_config, port=port,
                         name=self.controls.name_entry.get().strip())
        try:
            config.check()
            server = ChatServer(config)
        except ChatError as exc:
            self._failed(str(exc))
            return
        try:
            host, port = server.listen()
        except ChatError as exc:
            server.store.close()
            self._failed(str(exc))
            return
        self.server, self.server_config, self.start_error = server, config, ""
        self.addresses = addresses_to_show(host)  # looked up once: a lookup may wait
        self.controls.port_entry.delete(0, "end")
        self.controls.port_entry.insert(0, str(port))  # the real one when 0 was asked
        print(f"listening on {host}:{port}", flush=True)
        self.controls.toggle_button.configure(text="Stop")
        self._refresh()

    def _failed(self, message: str) -> None:
        self.start_error = message
        logging.getLogger("chat.server").warning("%s", message)
        self.controls.toggle_button.configure(text="Start")
        self._refresh()

    def stop_server(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.close()
            logging.getLogger("chat.server").info("server stopped")
        self.controls.toggle_button.configure(text="Start")
        self._refresh()

    def toggle_event(self) -> None:
        if self.server is None:
            self.start_server()
        else:
            self.stop_server()

    def close_event(self) -> None:
        self.after_cancel(self._after_id)
        self.stop_server()
        logging.getLogger("chat.server").removeHandler(self._log_handler)
        self.destroy()

    # ------------------------------------------------------------ operator

    def _peer(self, iid: str) -> Any:
        if self.server is None:
            return None
        return next((p for p in self.server.hub.users.values() if str(id(p)) == iid), None)

    def kick_event(self, iid: str, reason: str) -> None:
        peer = self._peer(iid)
        if peer is not None and self.server is not None:
            self.server.operator.kick(peer.nick, reason or "Kicked by the operator.")

    def ban_event(self, iid: str, kind: str, reason: str, seconds: float | None) -> None:
        """Ban the selected client's nickname or address."""
        peer = self._peer(iid)
        if peer is not None:
            value = peer.nick if kind == "nick" else peer.host
            self.add_ban_event(kind, value, seconds, reason)

    def add_ban_event(self, kind: str, value: str, seconds: float | None,
                      reason: str = "") -> str:
        """Ban by hand; returns what is wrong with the input ("" when banned)."""
        if self.server is None:
            return "Start the server first."
        try:
            self.server.operator.ban(kind, value, reason or "Banned by the operator.", seconds)
        except ValueError as exc:
            return str(exc)
        self._refresh()
        return ""

    def lift_ban_event(self, iid: str) -> None:
        if self.server is not None:
            kind, _, key = iid.partition("|")
            self.server.operator.unban(kind, key)
            self._refresh()

    def say_event(self, room: str, text: str) -> None:
        if self.server is None:
            return
        try:
            self.server.operator.say(room, text)
        except ProtocolError as exc:
            logging.getLogger("chat.server").warning("not sent: %s", exc.message)

    def notice_event(self, text: str) -> None:
        if self.server is not None:
            self.server.operator.notice(text)

    def console_event(self, line: str) -> None:
        """A console command typed after '/', answered in the log."""
        if self.server is None:
            self._console_write("error: the server is not running")
            return
        Console(self.server.operator, self._console_write, self.stop_server, "/").run(line)
        self._refresh()  # a ban or an unban shows at once

    def _console_write(self, text: str) -> None:
        for line in text.splitlines():
            self.log_records.append((time.time(), logging.INFO, line))

    def appearance_event(self, mode: str) -> None:
        apply_appearance(mode)
        self.controls.appearance.set(mode)
        self.settings.update(appearance=mode)
        self._style_tree()

    # ------------------------------------------------------------ the loop

    def _poll(self) -> None:
        started = time.perf_counter()
        server = self.server
        busy = False
        try:
            if server is not None:
                # step() survives errors in handlers and storage; this catches a
                # bug anywhere else, so that the window never stops serving silently.
                while server.step(0, STEP_BUDGET_S / 2):
                    busy = time.perf_counter() - started >= STEP_BUDGET_S
                    if busy:
                        break
            self._drain_log()
            if time.monotonic() >= self._next_refresh:
                self._refresh()
        except Exception:
            log.exception("internal error in the server window; it goes on")
        finally:
            self.tick_seconds.append(time.perf_counter() - started)
            # Still busy: come back as soon as Tk has handled input and redrawn.
            self._after_id = self.after(1 if busy else POLL_MS, self._poll)

    def _drain_log(self) -> None:
        records = self.log_records
        if not records:
            return
        runs: list[tuple[str, tuple[str, ...]]] = []
        for _ in range(min(LOG_BATCH, len(records))):
            created, level, text = records.popleft()
            stamp = time.strftime("%H:%M:%S ", time.localtime(created))
            runs.append((stamp, ("time",)))
            text = text.replace("\n", " ↵ ")  # one entry, one line
            runs.append((text + "\n", ("warning",) if level >= logging.WARNING else ()))
        self.log_view.append(runs)

    def _refresh(self) -> None:
        self._next_refresh = time.monotonic() + REFRESH_S
        server = self.server
        if server is None:
            self.status.show(False, "", "Not serving.", self.start_error)
            self.status.show_web("")
            self.status.show_cluster("", [])
            self.clients.set_rows({})
            self.bans.set_rows({})
            return
        hub = server.hub
        now = time.monotonic()
        mark_time, mark_count = self._rate_mark
        if now - mark_time >= 1.0:
            self.rate = (hub.messages - mark_count) / (now - mark_time)
            self._rate_mark = (now, hub.messages)
        assert server.address is not None
        port = server.address[1]
        shown = "   ".join(f"{a}:{port}" for a in self.addresses)
        uptime = int(time.time() - server.started_at)
        counters = (f"{server.config.name}   ·   up {uptime // 3600}:{uptime // 60 % 60:02d}:"
                    f"{uptime % 60:02d}   ·   {len(hub.users)} online   ·   "
                    f"{hub.messages} message{'' if hub.messages == 1 else 's'}   ·   "
                    f"{self.rate:.0f} msg/s")
        self.status.show(True, f"Clients connect to  {shown}", counters,
                         fingerprint=server.fingerprint, problem=hub.storage_problem or (
                             hub.sequencer.problem and
                             f"Redis unreachable ({hub.sequencer.problem})") or None)
        self.status.show_cluster(hub.sequencer.url, hub.sequencer.members(),
                                 hub.sequencer.converging)
        scheme = "https" if server.tls is not None else "http"
        first = self.addresses[0]
        self.status.show_web(f"{scheme}://{'[' + first + ']' if ':' in first else first}:{port}/")
        self.clients.set_rows({
            str(id(p)): (p.nick, f"{p.addr[0]}:{p.addr[1]}" + (" web" if p.door == "web" else ""),
                         ", ".join(r.name for r in p.rooms.values()),
                         time.strftime("%H:%M:%S", time.localtime(p.connected_ts / 1000)),
                         p.sent)
            for p in hub.users.values()})
        self.operator.set_rooms([hub.rooms[k].name for k in hub.room_order[:MENU_ROOMS]])
        self.bans.set_rows({
            f"{b.kind}|{b.key}": (b.kind, b.value,
                                  "forever" if b.expires is None else
                                  time.strftime("%d %b %H:%M",
                                                time.localtime(b.expires / 1000)),
                                  b.reason)
            for b in server.operator.ban_list()})

    def _style_tree(self) -> None:
        dark = is_dark()
        style = ttk.Style(self)
        style.theme_use("default")
        bg, fg, sel = (("#2b2b2b", "#dce4ee", "#1f538d") if dark
                       else ("#ffffff", "#1a1a1a", "#3a7ebf"))
        style.configure("Clients.Treeview", background=bg, foreground=fg, fieldbackground=bg,
                        rowheight=24, borderwidth=0)
        style.map("Clients.Treeview", background=[("selected", sel)],
                  foreground=[("selected", "#ffffff")])
        style.configure("Clients.Treeview.Heading", background="#565b5e" if dark else "#dbdbdb",
                        foreground=fg, relief="flat")


def run_server_window(config: ServerConfig) -> int:
    try:
        window = ServerWindow(config)
    except tkinter.TclError as exc:
        raise ChatError(f"cannot open a window: {exc}") from None
    window.mainloop()
    return 0
