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
from typing import Any, Callable

import customtkinter as ctk

from chat.config import ServerConfig
from chat.errors import ChatError, ProtocolError
from chat.netinfo import addresses_to_show
from chat.server import ChatServer, raise_open_files_limit
from gui.common import POLL_MS, LineView, Settings, apply_appearance, is_dark

STEP_BUDGET_S = 0.020  # network work per tick; the rest of the tick is the GUI's
REFRESH_S = 0.25  # counters and the client list are redrawn this often
LOG_LINES = 2000  # lines kept in the log view
LOG_BATCH = 500  # log lines rendered per tick at most (the rest wait, bounded)
COLUMNS = (("nick", "Nickname", 110), ("address", "Address", 140), ("rooms", "Rooms", 110),
           ("since", "Connected", 90), ("sent", "Sent", 50))
BAN_COLUMNS = (("kind", "Ban on", 70), ("value", "Nick or address", 140),
               ("until", "Until", 110), ("reason", "Reason", 140))
DURATIONS = {"1 hour": 3600.0, "1 day": 86400.0, "1 week": 7 * 86400.0, "forever": None}


class _QueueHandler(logging.Handler):
    """Hands the server's log records to the window, which renders them in batches."""

    def __init__(self, sink: deque) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append((record.created, record.levelno, record.getMessage()))


def sync_tree(tree: ttk.Treeview, rows: dict[str, tuple]) -> None:
    """Make a list show exactly ``rows`` (iid -> values), touching only changes."""
    for iid in tree.get_children():
        if iid not in rows:
            tree.delete(iid)
    for iid, values in rows.items():
        if tree.exists(iid):
            if tuple(tree.item(iid, "values")) != tuple(str(v) for v in values):
                tree.item(iid, values=values)
        else:
            tree.insert("", "end", iid=iid, values=values)


class StatusPanel(ctk.CTkFrame):
    """What clients type, whether the server runs, uptime and live counters."""

    def __init__(self, master: Any) -> None:
        super().__init__(master)
        self.grid_columnconfigure(1, weight=1)
        self.state_label = ctk.CTkLabel(self, text="", font=ctk.CTkFont(size=15, weight="bold"))
        self.state_label.grid(row=0, column=0, padx=12, pady=(8, 0), sticky="w")
        self.address_label = ctk.CTkLabel(self, text="", font=ctk.CTkFont(size=20, weight="bold"))
        self.address_label.grid(row=0, column=1, padx=12, pady=(8, 0), sticky="w")
        self.counters_label = ctk.CTkLabel(self, text="")
        self.counters_label.grid(row=1, column=0, columnspan=2, padx=12, pady=0, sticky="w")
        self.tls_label = ctk.CTkLabel(self, text="", anchor="w",
                                      font=ctk.CTkFont(family="monospace", size=12))
        self.tls_label.grid(row=2, column=0, columnspan=2, padx=12, pady=(0, 8), sticky="w")

    def show(self, running: bool, addresses: str, counters: str, error: str = "",
             fingerprint: str | None = None) -> None:
        self.state_label.configure(text="● Running" if running else "● Stopped",
                                   text_color="#1e8449" if running else "#c0392b")
        self.address_label.configure(text=addresses if running else error)
        self.counters_label.configure(text=counters)
        if not running:
            tls = ""
        elif fingerprint:
            tls = f"TLS on. Certificate fingerprint, for clients to compare:  {fingerprint}"
        else:
            tls = "TLS is off: anyone on the network can read the chat (start with --tls)."
        self.tls_label.configure(text=tls)


class ClientsPanel(ctk.CTkFrame):
    """The live client list, with kick and ban for the selected row."""

    def __init__(self, master: Any, kick_command: Callable[[str, str], None],
                 ban_command: Callable[[str, str, str, float | None], None]) -> None:
        super().__init__(master)
        self.grid_rowconfigure(1, weight=1)
        self.grid_columnconfigure(0, weight=1)
        ctk.CTkLabel(self, text="Clients online").grid(row=0, column=0, padx=8, sticky="w")
        self.tree = ttk.Treeview(self, columns=[c[0] for c in COLUMNS], show="headings",
                                 selectmode="browse", style="Clients.Treeview")
        for key, title, width in COLUMNS:
            self.tree.heading(key, text=title)
            self.tree.column(key, width=width, stretch=key == "rooms")
        self.tree.grid(row=1, column=0, columnspan=4, padx=8, pady=4, sticky="nsew")
        self.reason_entry = ctk.CTkEntry(self, placeholder_text="Reason (optional)")
        self.reason_entry.grid(row=2, column=0, padx=(8, 4), pady=(0, 8), sticky="ew")
        self.kick_button = ctk.CTkButton(self, text="Kick", width=60,
                                         command=lambda: self._kick(kick_command))
        self.kick_button.grid(row=2, column=1, padx=4, pady=(0, 8))
        self.duration_menu = ctk.CTkOptionMenu(self, values=list(DURATIONS), width=90)
        self.duration_menu.set("1 day")
        self.duration_menu.grid(row=2, column=2, padx=4, pady=(0, 8))
        self.ban_menu = ctk.CTkOptionMenu(
            self, values=["Ban nickname", "Ban address"], width=120,
            fg_color="#a93226", button_color="#7b241c", button_hover_color="#641e16",
            command=lambda choice: self._ban(ban_command, choice))
        self.ban_menu.set("Ban…")
        self.ban_menu.grid(row=2, column=3, padx=(4, 8), pady=(0, 8))

    def _kick(self, command: Callable[[str, str], None]) -> None:
        selected = self.tree.selection()
        if selected:
            command(selected[0], self.reason_entry.get().strip())
            self.reason_entry.delete(0, "end")

    def _ban(self, command: Callable[[str, str, str, float | None], None],
             choice: str) -> None:
        self.ban_menu.set("Ban…")
        selected = self.tree.selection()
        if selected:
            kind = "nick" if choice == "Ban nickname" else "address"
            command(selected[0], kind, self.reason_entry.get().strip(),
                    DURATIONS[self.duration_menu.get()])
            self.reason_entry.delete(0, "end")

    def set_rows(self, rows: dict[str, tuple]) -> None:
        sync_tree(self.tree, rows)

    def rows(self) -> list[tuple[str, ...]]:
        return [tuple(self.tree.item(i, "values")) for i in self.tree.get_children()]


class BansPanel(ctk.CTkFrame):
    """Bans kept in the store: listed, added by hand, lifted."""

    def __init__(self, master: Any, add_command: Callable[[str, str, float | None], str],
                 lift_command: Callable[[str], None]) -> None:
        super().__init__(master)
        self.grid_rowconfigure(1, weight=1)
        self.grid_columnconfigure(1, weight=1)
        ctk.CTkLabel(self, text="Bans").grid(row=0, column=0, padx=8, sticky="w")
        self.error_label = ctk.CTkLabel(self, text="", text_color="#c0392b")
        self.error_label.grid(row=0, column=1, columnspan=3, padx=8, sticky="e")
        self.tree = ttk.Treeview(self, columns=[c[0] for c in BAN_COLUMNS], show="headings",
                                 selectmode="browse", style="Clients.Treeview", height=4)
        for key, title, width in BAN_COLUMNS:
            self.tree.heading(key, text=title)
            self.tree.column(key, width=width, stretch=key == "reason")
        self.tree.grid(row=1, column=0, columnspan=5, padx=8, pady=4, sticky="nsew")
        self.kind_menu = ctk.CTkOptionMenu(self, values=["address", "nick"], width=90)
        self.kind_menu.grid(row=2, column=0, padx=(8, 4), pady=(0, 8))
        self.value_entry = ctk.CTkEntry(self, placeholder_text="10.0.0.7, 10.0.0.0/24 or a nickname")
        self.value_entry.grid(row=2, column=1, padx=4, pady=(0, 8), sticky="ew")
        self.value_entry.bind("<Return>", lambda _e: self._add())
        self.duration_menu = ctk.CTkOptionMenu(self, values=list(DURATIONS), width=90)
        self.duration_menu.set("forever")
        self.duration_menu.grid(row=2, column=2, padx=4, pady=(0, 8))
        self._add_command, self._lift_command = add_command, lift_command
        self.add_button = ctk.CTkButton(self, text="Ban", width=60, fg_color="#a93226",
                                        hover_color="#7b241c", command=self._add)
        self.add_button.grid(row=2, column=3, padx=4, pady=(0, 8))
        self.lift_button = ctk.CTkButton(self, text="Lift", width=60, command=self._lift)
        self.lift_button.grid(row=2, column=4, padx=(4, 8), pady=(0, 8))

    def _add(self) -> None:
        value = self.value_entry.get().strip()
        if not value:
            return
        problem = self._add_command(self.kind_menu.get(), value,
                                    DURATIONS[self.duration_menu.get()])
        self.error_label.configure(text=problem)
        if not problem:
            self.value_entry.delete(0, "end")

    def _lift(self) -> None:
        selected = self.tree.selection()
        if selected:
            self._lift_command(selected[0])

    def set_rows(self, rows: dict[str, tuple]) -> None:
        sync_tree(self.tree, rows)

    def rows(self) -> list[tuple[str, ...]]:
        return [tuple(self.tree.item(i, "values")) for i in self.tree.get_children()]


class OperatorBar(ctk.CTkFrame):
    """The operator takes part: a message into a room as `server`, or a notice to all."""

    def __init__(self, master: Any, say_command: Callable[[str, str], None],
                 notice_command: Callable[[str], None]) -> None:
        super().__init__(master)
        self.grid_columnconfigure(2, weight=1)
        ctk.CTkLabel(self, text="Server >").grid(row=0, column=0, padx=(10, 4), pady=8)
        self.room_menu = ctk.CTkComboBox(self, values=["general"], width=140)
        self.room_menu.set("general")
        self.room_menu.grid(row=0, column=1, padx=4, pady=8)
        self.entry = ctk.CTkEntry(self, placeholder_text="Message to the room, or a notice to everyone")
        self.entry.grid(row=0, column=2, padx=4, pady=8, sticky="ew")
        self.entry.bind("<Return>", lambda _e: self._say())
        self._say_command, self._notice_command = say_command, notice_command
        self.say_button = ctk.CTkButton(self, text="Send", width=70, command=self._say)
        self.say_button.grid(row=0, column=3, padx=4, pady=8)
        self.notice_button = ctk.CTkButton(self, text="Notice to all", width=110,
                                           command=self._notice)
        self.notice_button.grid(row=0, column=4, padx=(4, 10), pady=8)

    def _take(self) -> str:
        text = self.entry.get()
        if text.strip():
            self.entry.delete(0, "end")
        return text

    def _say(self) -> None:
        text = self._take()
        if text.strip():
            self._say_command(self.room_menu.get(), text)

    def _notice(self) -> None:
        text = self._take()
        if text.strip():
            self._notice_command(text)

    def set_rooms(self, names: list[str]) -> None:
        if list(self.room_menu.cget("values")) != names:
            self.room_menu.configure(values=names or ["general"])


class ControlBar(ctk.CTkFrame):
    """Port and name, start/stop, appearance."""

    def __init__(self, master: Any, config: ServerConfig, toggle: Callable[[], None],
                 appearance: str, appearance_command: Callable[[str], None]) -> None:
        super().__init__(master, fg_color="transparent")
        ctk.CTkLabel(self, text="Port").grid(row=0, column=0, padx=(10, 4))
        self.port_entry = ctk.CTkEntry(self, width=80)
        self.port_entry.insert(0, str(config.port))
        self.port_entry.grid(row=0, column=1, padx=4)
        ctk.CTkLabel(self, text="Name").grid(row=0, column=2, padx=(12, 4))
        self.name_entry = ctk.CTkEntry(self, width=160)
        self.name_entry.insert(0, config.name)
        self.name_entry.grid(row=0, column=3, padx=4)
        self.toggle_button = ctk.CTkButton(self, text="Stop", width=90, command=toggle)
        self.toggle_button.grid(row=0, column=4, padx=12)
        self.appearance = ctk.CTkSegmentedButton(self, values=list(("Light", "Dark")),
                                                 command=appearance_command)
        self.appearance.set(appearance)
        self.appearance.grid(row=0, column=5, padx=10)


class ServerWindow(ctk.CTk):
    def __init__(self, config: ServerConfig) -> None:
        self.settings = Settings("server")
        appearance = apply_appearance(self.settings.get("appearance", "Light"))
        super().__init__()
        self.server_config = config
        self.server: ChatServer | None = None
        self.start_error = ""
        self.title("lanchat server")
        self.geometry("1100x760")
        self.minsize(900, 600)
        self.grid_columnconfigure(0, weight=1, uniform="halves")
        self.grid_columnconfigure(1, weight=1, uniform="halves")
        self.grid_rowconfigure(1, weight=3)
        self.grid_rowconfigure(2, weight=2)

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
        self.operator = OperatorBar(self, self.say_event, self.notice_event)
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
        if peer is not None:
            self.server.hub.kick(peer.nick, reason or "Kicked by the operator.")

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
            self.server.hub.ban(kind, value, reason or "Banned by the operator.", seconds)
        except ValueError as exc:
            return str(exc)
        self._refresh()
        return ""

    def lift_ban_event(self, iid: str) -> None:
        if self.server is not None:
            kind, _, key = iid.partition("|")
            self.server.hub.unban(kind, key)
            self._refresh()

    def say_event(self, room: str, text: str) -> None:
        if self.server is None:
            return
        try:
            self.server.hub.say(room, text)
        except ProtocolError as exc:
            logging.getLogger("chat.server").warning("not sent: %s", exc.message)

    def notice_event(self, text: str) -> None:
        if self.server is not None:
            self.server.hub.notice(text)
            logging.getLogger("chat.server").info("notice: %s", text)

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
        if server is not None:
            try:
                while server.step(0, STEP_BUDGET_S / 2):
                    busy = time.perf_counter() - started >= STEP_BUDGET_S
                    if busy:
                        break
            except ChatError as exc:  # the store failed: stop rather than lose messages
                self.server = None
                self._failed(f"server stopped: {exc}")
        self._drain_log()
        if time.monotonic() >= self._next_refresh:
            self._refresh()
        self.tick_seconds.append(time.perf_counter() - started)
        # Still busy: come back as soon as Tk has handled input and redrawn.
        self._after_id = self.after(1 if busy else POLL_MS, self._poll)

    def _drain_log(self) -> None:
        records = self.log_records
        if not records:
            return
        runs = []
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
            self.clients.set_rows({})
            self.bans.set_rows({})
            return
        hub = server.hub
        now = time.monotonic()
        mark_time, mark_count = self._rate_mark
        if now - mark_time >= 1.0:
            self.rate = (hub.messages - mark_count) / (now - mark_time)
            self._rate_mark = (now, hub.messages)
        host, port = server.address
        shown = "   ".join(f"{a}:{port}" for a in addresses_to_show(host))
        uptime = int(time.time() - server.started_at)
        counters = (f"{server.config.name}   ·   up {uptime // 3600}:{uptime // 60 % 60:02d}:"
                    f"{uptime % 60:02d}   ·   {len(hub.users)} online   ·   "
                    f"{hub.messages} messages   ·   {self.rate:.0f} msg/s")
        self.status.show(True, f"Clients connect to  {shown}", counters,
                         fingerprint=server.fingerprint)
        self.clients.set_rows({
            str(id(p)): (p.nick, f"{p.addr[0]}:{p.addr[1]}",
                         ", ".join(r.name for r in p.rooms.values()),
                         time.strftime("%H:%M:%S", time.localtime(p.connected_ts / 1000)),
                         p.sent)
            for p in hub.users.values()})
        self.operator.set_rooms(sorted((r.name for r in hub.rooms.values()), key=str.casefold))
        self.bans.set_rows({
            f"{b.kind}|{b.key}": (b.kind, b.value,
                                  "forever" if b.expires is None else
                                  time.strftime("%d %b %H:%M",
                                                time.localtime(b.expires / 1000)),
                                  b.reason)
            for b in hub.ban_list()})

    def _style_tree(self) -> None:
        dark = is_dark()
        style = ttk.Style(self)
        style.theme_use("default")
        bg, fg, sel = ("#2b2b2b", "#dce4ee", "#1f538d") if dark else ("#ffffff", "#1a1a1a", "#3a7ebf")
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
