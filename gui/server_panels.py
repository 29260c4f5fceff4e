"""Panels of the server monitor: status, clients, bans, the operator's bar, controls."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import Any

import customtkinter as ctk
import segno

from chat.config import ServerConfig

# Widths that fit the window at its minimum size; Rooms (and Reason) take what is left.
COLUMNS = (("nick", "Nickname", 100), ("address", "Address", 125), ("rooms", "Rooms", 60),
           ("since", "Since", 70), ("sent", "Sent", 42))
BAN_COLUMNS = (("kind", "Ban on", 70), ("value", "Nick or address", 140),
               ("until", "Until", 110), ("reason", "Reason", 140))
QR_SCALE = 3  # pixels per module: a 33-module code is about 110 px, scannable off a screen
DURATIONS = {"1 hour": 3600.0, "1 day": 86400.0, "1 week": 7 * 86400.0, "forever": None}


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
        # Made once: the address is shown big, an error (longer) smaller.
        self._fonts = {True: ctk.CTkFont(size=20, weight="bold"),
                       False: ctk.CTkFont(size=14, weight="bold")}
        self.address_label = ctk.CTkLabel(self, text="", font=self._fonts[True],
                                          justify="left")
        self.address_label.grid(row=0, column=1, padx=12, pady=(8, 0), sticky="w")
        self.counters_label = ctk.CTkLabel(self, text="")
        self.counters_label.grid(row=1, column=0, columnspan=2, padx=12, pady=0, sticky="w")
        self.tls_label = ctk.CTkLabel(self, text="", anchor="w", justify="left",
                                      font=ctk.CTkFont(family="monospace", size=12))
        self.tls_label.grid(row=2, column=0, columnspan=2, padx=12, pady=(0, 4), sticky="w")
        self.web_label = ctk.CTkLabel(self, text="", anchor="w", justify="left",
                                      font=ctk.CTkFont(size=14))
        self.web_label.grid(row=3, column=0, columnspan=2, padx=12, pady=(0, 8), sticky="w")
        # --redis: the nodes of the cluster and their users (hidden otherwise)
        self.cluster_label = ctk.CTkLabel(self, text="", anchor="w", justify="left")
        self.cluster_label.grid(row=4, column=0, columnspan=3, padx=12, pady=(0, 8), sticky="w")
        self.cluster_label.grid_remove()
        # The QR code of the web address: phones scan it and are in the chat. Dark
        # modules on white whatever the theme (scanners want that contrast).
        self.qr_label = tk.Label(self, bd=0, background="white")
        self.qr_label.grid(row=0, column=2, rowspan=4, padx=(4, 10), pady=8, sticky="ne")
        self.qr_url = ""
        self._qr_image: tk.PhotoImage | None = None
        # Long lines wrap to the window's width, however narrow: the fingerprint and a
        # start error are read in full.
        self.bind("<Configure>", self._fit, add=True)

    def _fit(self, event: Any) -> None:
        self._fit_to(event.width)

    def _fit_to(self, panel_width: int) -> None:
        qr = self.qr_label.winfo_reqwidth() + 20 if self.qr_url else 0  # its column
        width = max(200, panel_width - 40 - qr)
        for label in (self.tls_label, self.counters_label, self.web_label, self.cluster_label):
            label.configure(wraplength=width)
        self.address_label.configure(wraplength=max(200, width - 160))

    def show_web(self, url: str) -> None:
        """The address browsers open, in words and as a QR code ("" hides both)."""
        if url == self.qr_url:
            return
        self.qr_url = url
        if not url:
            self.web_label.configure(text="")
            self.qr_label.configure(image="")
            self.qr_label.grid_remove()
            self._qr_image = None
            self._fit_to(self.winfo_width())
            return
        self.web_label.configure(text=f"In a browser or on a phone:  {url}   (or scan the code)")
        code = segno.make(url, error="m")
        png = code.png_data_uri(scale=QR_SCALE, border=2).split(",", 1)[1]
        self._qr_image = tk.PhotoImage(data=png)
        self.qr_label.configure(image=self._qr_image)
        self.qr_label.grid()
        self._fit_to(self.winfo_width())  # the code takes a column: wrap the lines anew

    def show_cluster(self, url: str, nodes: list[tuple[str, str, int, bool]],
                     converging: bool = False) -> None:
        """One line on the cluster: Redis's address, every node and its users
        (``url`` "": not a cluster, the line is hidden); ``converging``: the nodes
        are settling who is where after a gap."""
        if not url:
            self.cluster_label.grid_remove()
            return
        total = sum(users for _, _, users, _ in nodes)
        each = "   ·   ".join(f"{address}{' (this one)' if me else ''}: {users}"
                              for _, address, users, me in nodes)
        self.cluster_label.configure(
            text=f"Cluster of {len(nodes)} node{'' if len(nodes) == 1 else 's'} through "
                 f"{url}, {total} online in all:   {each}"
                 + ("   ·   converging after a gap" if converging else ""))
        self.cluster_label.grid()

    def show(self, running: bool, addresses: str, counters: str, error: str = "",
             fingerprint: str | None = None, problem: str | None = None) -> None:
        """``problem``: why messages cannot be stored now (they are refused)."""
        if running and problem:
            self.state_label.configure(text="● Not storing", text_color="#d35400")
            counters += f"   ·   messages refused: {problem}"
        else:
            self.state_label.configure(text="● Running" if running else "● Stopped",
                                       text_color="#1e8449" if running else "#c0392b")
        text = addresses if running else error
        if self.address_label.cget("text") != text:
            self.address_label.configure(text=text, font=self._fonts[running])
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
        self.filter_entry = ctk.CTkEntry(self, width=150, placeholder_text="Filter")
        self.filter_entry.grid(row=0, column=1, columnspan=3, padx=8, pady=(6, 0),
                               sticky="e")
        self.filter_entry.bind("<KeyRelease>", lambda _e: self._apply_filter())
        box = ctk.CTkFrame(self, fg_color="transparent")
        box.grid(row=1, column=0, columnspan=4, padx=8, pady=4, sticky="nsew")
        box.grid_rowconfigure(0, weight=1)
        box.grid_columnconfigure(0, weight=1)
        self.tree = ttk.Treeview(box, columns=[c[0] for c in COLUMNS], show="headings",
                                 selectmode="browse", style="Clients.Treeview", height=4)
        for key, title, width in COLUMNS:
            self.tree.heading(key, text=title)
            self.tree.column(key, width=width, minwidth=40, stretch=key == "rooms")
        self.tree.grid(row=0, column=0, sticky="nsew")
        scroll = ttk.Scrollbar(box, orient="vertical", command=self.tree.yview)
        scroll.grid(row=0, column=1, sticky="ns")
        self.tree.configure(yscrollcommand=scroll.set)
        self._rows: dict[str, tuple] = {}
        self.note_label = ctk.CTkLabel(self, text="", anchor="w", text_color="#c0392b")
        self.note_label.grid(row=3, column=0, columnspan=4, padx=8, pady=(0, 4), sticky="ew")
        self.note_label.grid_remove()
        self._pending_ban: tuple[str, str] | None = None  # (iid, kind) to confirm
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

    def say(self, text: str) -> None:
        """A line under the list (why nothing happened, what to confirm)."""
        self.note_label.configure(text=text)
        if text:
            self.note_label.grid()
        else:
            self.note_label.grid_remove()

    def _selected(self, what: str) -> str | None:
        selected = self.tree.selection()
        if not selected:
            self.say(f"Select a client in the list first, then {what}.")
            return None
        return selected[0]

    def _kick(self, command: Callable[[str, str], None]) -> None:
        iid = self._selected("press Kick")
        if iid is not None:
            self.say("")
            command(iid, self.reason_entry.get().strip())
            self.reason_entry.delete(0, "end")

    def _ban(self, command: Callable[[str, str, str, float | None], None],
             choice: str) -> None:
        """Choosing a ban asks once more: the same choice again within the note's life
        bans (a ban closes a connection and outlasts restarts)."""
        self.ban_menu.set("Ban…")
        iid = self._selected("choose Ban")
        if iid is None:
            return
        kind = "nick" if choice == "Ban nickname" else "address"
        if self._pending_ban != (iid, kind):
            self._pending_ban = (iid, kind)
            row = self._rows.get(iid, ("?", "?"))
            target = row[0] if kind == "nick" else str(row[1]).rsplit(":", 1)[0]
            self.say(f"Ban the {'nickname' if kind == 'nick' else 'address'} {target} for "
                     f"{self.duration_menu.get()}? Choose '{choice}' again to confirm.")
            return
        self._pending_ban = None
        self.say("")
        command(iid, kind, self.reason_entry.get().strip(), DURATIONS[self.duration_menu.get()])
        self.reason_entry.delete(0, "end")

    def _apply_filter(self) -> None:
        sync_tree(self.tree, self._visible())

    def _visible(self) -> dict[str, tuple]:
        needle = self.filter_entry.get().strip().casefold()
        if not needle:
            return self._rows
        return {iid: row for iid, row in self._rows.items()
                if any(needle in str(v).casefold() for v in row[:3])}

    def set_rows(self, rows: dict[str, tuple]) -> None:
        self._rows = rows
        sync_tree(self.tree, self._visible())

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
        self.value_entry = ctk.CTkEntry(self, placeholder_text="10.0.0.7, 10.0.0.0/24 or nick")
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
    """The operator takes part: a message into a room as `server`, a notice to all, or
    a console command (a line starting with '/': /help lists them)."""

    def __init__(self, master: Any, say_command: Callable[[str, str], None],
                 notice_command: Callable[[str], None],
                 console_command: Callable[[str], None]) -> None:
        super().__init__(master)
        self.grid_columnconfigure(2, weight=1)
        ctk.CTkLabel(self, text="Server >").grid(row=0, column=0, padx=(10, 4), pady=8)
        self.room_menu = ctk.CTkComboBox(self, values=["general"], width=140)
        self.room_menu.set("general")
        self.room_menu.grid(row=0, column=1, padx=4, pady=8)
        self.entry = ctk.CTkEntry(self, placeholder_text="Message to the room, a notice to "
                                  "everyone, or /help for commands")
        self.entry.grid(row=0, column=2, padx=4, pady=8, sticky="ew")
        self.entry.bind("<Return>", lambda _e: self._say())
        self._say_command, self._notice_command = say_command, notice_command
        self._console_command = console_command
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
        if text.startswith("/"):
            self._console_command(text[1:])
        elif text.strip().lower() == "help":  # asked for help, not a message to the room
            self._console_command("help")
        elif text.strip():
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
