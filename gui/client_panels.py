"""Panels of the chat window: the connect form, the conversation list, the users list."""

from __future__ import annotations

import tkinter
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import customtkinter as ctk

from chat.client import MAX_ALTERNATES
from chat.config import DEFAULT_PORT
from chat.discovery import Found
from chat.netinfo import split_address
from gui.common import NICK_COLORS, nick_color_index

MAX_FOUND = 6  # servers listed on the form (a LAN rarely has more; the rest wait)


class Login(NamedTuple):
    host: str
    port: int
    nick: str
    password: str  # the server's, "" for none
    nick_password: str  # the nickname account's, "" for none
    tls: bool
    alternates: list[tuple[str, int]]  # other servers of the same chat, tried in turn


class ConnectForm(ctk.CTkFrame):
    """Server address, port, nickname, passwords and TLS; errors shown inline."""

    def __init__(self, master: Any, connect_command: Callable[[], None]) -> None:
        super().__init__(master, fg_color="transparent")
        self.grid_columnconfigure(0, weight=1)
        box = ctk.CTkFrame(self)
        box.grid(row=0, column=0, pady=80)
        ctk.CTkLabel(box, text="Join a chat", font=ctk.CTkFont(size=22, weight="bold")).grid(
            row=0, column=0, columnspan=2, padx=30, pady=(24, 16))
        self.entries: dict[str, ctk.CTkEntry] = {}
        fields = (("host", "Server address", "as the server window shows it"),
                  ("port", "Port", "7070 unless told otherwise"),
                  ("nick", "Nickname", "how others see you"),
                  ("nick_password", "Nickname password", "only if you registered it"),
                  ("password", "Server password", "only if the server has one"))
        self.hints = {key: hint for key, _, hint in fields}
        for row, (key, label, hint) in enumerate(fields, start=1):
            ctk.CTkLabel(box, text=label).grid(row=row, column=0, padx=(30, 10), pady=6,
                                               sticky="e")
            entry = ctk.CTkEntry(box, width=240, placeholder_text=hint,
                                 show="•" if "password" in key else "")
            entry.grid(row=row, column=1, padx=(0, 30), pady=6)
            entry.bind("<Return>", lambda _e: connect_command())
            entry.bind("<Control-a>", lambda _e, e=entry: self._select_all(e))
            self.entries[key] = entry
        self.tls_box = ctk.CTkCheckBox(box, text="Encrypt (TLS)")
        self.tls_box.grid(row=6, column=1, padx=(0, 30), pady=6, sticky="w")
        self.connect_button = ctk.CTkButton(box, text="Connect", command=connect_command)
        self.connect_button.grid(row=7, column=0, columnspan=2, pady=(14, 6))
        # While connecting: where it is ("Waiting for the server at ...  4 s") and a
        # way out.
        self.stage_label = ctk.CTkLabel(box, text="", wraplength=380)
        self.cancel_button = ctk.CTkButton(box, text="Cancel", width=100,
                                           fg_color="transparent", border_width=1,
                                           text_color=("gray10", "gray90"))
        self.error_label = ctk.CTkLabel(box, text="", text_color="#c0392b", wraplength=380)
        self.error_label.grid(row=10, column=0, columnspan=2, padx=30, pady=(0, 8))
        # Servers that announce themselves on this network (chat.discovery): a click
        # fills the form and connects when a nickname is there.
        self.found_title = ctk.CTkLabel(box, text="Servers on this network: looking…",
                                        font=ctk.CTkFont(weight="bold"))
        self.found_title.grid(row=11, column=0, columnspan=2, padx=30, pady=(4, 2), sticky="w")
        self.found_box = ctk.CTkFrame(box, fg_color="transparent")
        self.found_box.grid(row=12, column=0, columnspan=2, padx=30, pady=(0, 18), sticky="ew")
        self.found: list[Found] = []
        self.known: frozenset[str] = frozenset()  # addresses connected to before
        self.found_buttons: list[ctk.CTkButton] = []
        self._connect = connect_command

    def show_servers(self, found: list[Found], known: frozenset[str] = frozenset()) -> None:
        """The servers heard on the network now (redrawn only when they change): those
        this window has been connected to first (a flood of forged beacons cannot push
        them out of sight), the others marked "new"."""
        found = sorted(found, key=lambda f: f.address not in known)[:MAX_FOUND]
        if found == self.found and known == self.known:
            return
        self.known = known
        self.found = found
        for button in self.found_buttons:
            button.destroy()
        self.found_buttons = []
        self.found_title.configure(text="Servers on this network:" if found else
                                   "Servers on this network: none heard yet")
        for found_server in found:
            lock = "  (TLS)" if found_server.tls else ""
            if found_server.address not in known:
                lock += "  ·  new"
            button = ctk.CTkButton(
                self.found_box, anchor="w", fg_color="transparent", border_width=1,
                text_color=("#1a5276", "#85c1e9"),
                text=f"{found_server.name}  ·  {found_server.address}  ·  "
                     f"{found_server.users} online{lock}",
                command=lambda f=found_server: self.pick(f))
            button.pack(fill="x", pady=2)
            self.found_buttons.append(button)

    def pick(self, found: Found) -> None:
        """Fill the form with a found server; connect when a nickname is there."""
        self.set_entry("host", found.host)
        self.set_entry("port", str(found.port))
        if found.tls:
            self.tls_box.select()
        else:
            self.tls_box.deselect()
        if self.entries["nick"].get().strip():
            self._connect()
        else:
            self.entries["nick"].focus_set()

    def fill(self, host: str, port: int, nick: str, password: str, nick_password: str = "",
             tls: bool = False) -> None:
        for key, value in (("host", host), ("port", port), ("nick", nick),
                           ("password", password), ("nick_password", nick_password)):
            self.set_entry(key, str(value) if value else "")
        if tls:
            self.tls_box.select()
        else:
            self.tls_box.deselect()

    def set_entry(self, key: str, value: str) -> None:
        """Put ``value`` in a field; an empty one shows its hint again. (CTkEntry's
        own delete leaves an empty field with no hint: it thinks it has focus.)"""
        entry = self.entries[key]
        if entry.get():  # real text ("" while the hint shows)
            entry.delete(0, "end")
        if value:
            entry.insert(0, value)
        else:
            entry.configure(placeholder_text=self.hints[key])

    @staticmethod
    def _select_all(entry: ctk.CTkEntry) -> str:
        entry.select_range(0, "end")
        entry.icursor("end")
        return "break"  # not Tk's Ctrl+A (go to the start of the line)

    def values(self) -> Login | None:
        """The form's values, or None (with the reason shown) when one is wrong. The
        address may carry the port as the server window shows it (192.168.1.20:7070,
        [::1]:7070): the form then shows the two apart."""
        address = self.entries["host"].get().strip()
        nick = self.entries["nick"].get().strip()
        if not address:
            self.show_error("Type the server's address (the server window shows it).")
            return None
        try:
            port = int(self.entries["port"].get().strip() or DEFAULT_PORT)
            if not 1 <= port <= 65535:
                raise ValueError
        except ValueError:
            self.show_error("The port is a number from 1 to 65535.")
            return None
        # Several servers of one chat (a cluster), separated by commas or spaces:
        # the first is tried first, the others when it cannot be reached.
        servers = [a for a in address.replace(",", " ").split() if a]
        try:
            wheres = [split_address(a, port) for a in servers[:MAX_ALTERNATES + 1]]
        except ValueError as exc:
            self.show_error(str(exc))
            return None
        host, port = wheres[0]
        if len(wheres) == 1 and (host, str(port)) != (address,
                                                       self.entries["port"].get().strip()):
            self.set_entry("host", host)
            self.set_entry("port", str(port))
        if not nick:
            self.show_error("Choose a nickname.")
            return None
        return Login(host, port, nick, self.entries["password"].get(),
                     self.entries["nick_password"].get(), bool(self.tls_box.get()),
                     wheres[1:])

    def show_error(self, text: str) -> None:
        self.error_label.configure(text=text)

    def busy(self, busy: bool) -> None:
        self.connect_button.configure(state="disabled" if busy else "normal",
                                      text="Connecting…" if busy else "Connect")
        if busy:
            self.show_error("")
            self.stage_label.grid(row=8, column=0, columnspan=2, padx=30, pady=(0, 4))
            self.cancel_button.grid(row=9, column=0, columnspan=2, pady=(0, 8))
        else:
            self.show_stage("")
            self.stage_label.grid_remove()
            self.cancel_button.grid_remove()

    def show_stage(self, text: str) -> None:
        if self.stage_label.cget("text") != text:  # every tick: no Tk call unless new
            self.stage_label.configure(text=text)


class Sidebar(ctk.CTkFrame):
    """Rooms and direct messages with unread counts; a box to join a room."""

    def __init__(self, master: Any, switch_command: Callable[[str], None],
                 join_command: Callable[[str], None],
                 browse_command: Callable[[], None] | None = None,
                 close_command: Callable[[str], None] | None = None) -> None:
        super().__init__(master, width=190)
        self.grid_rowconfigure(2, weight=1)
        ctk.CTkLabel(self, text="Conversations", font=ctk.CTkFont(weight="bold")).grid(
            row=0, column=0, columnspan=2, padx=10, pady=(8, 2), sticky="w")
        # Where you were mentioned, above the list: seen however long the list is.
        self.mention_button = ctk.CTkButton(self, text="", height=26,
                                            fg_color=("#d35400", "#a04000"),
                                            command=self._to_mention)
        self.mention_button.grid(row=1, column=0, columnspan=2, padx=8, pady=(0, 4),
                                 sticky="ew")
        self.mention_button.grid_remove()
        self._mentioned: list[str] = []
        self.list = ctk.CTkScrollableFrame(self, width=170, fg_color="transparent")
        self.list.grid(row=2, column=0, columnspan=2, sticky="nsew")
        self.list.grid_columnconfigure(0, weight=1)
        self._close_command = close_command
        self.close_buttons: dict[str, ctk.CTkButton] = {}
        self._shown_active: str | None = None
        self.join_entry = ctk.CTkEntry(self, width=110, placeholder_text="room")
        self.join_entry.grid(row=3, column=0, padx=(8, 4), pady=8)
        self.join_entry.bind("<Return>", lambda _e: self._join())
        self.join_button = ctk.CTkButton(self, text="Join", width=56, command=self._join)
        self.join_button.grid(row=3, column=1, padx=(0, 8), pady=8)
        self.browse_button = ctk.CTkButton(self, text="Browse rooms", height=26,
                                           command=browse_command)
        self.browse_button.grid(row=4, column=0, columnspan=2, padx=8, pady=(0, 8),
                                sticky="ew")
        self._switch, self._join_command = switch_command, join_command
        self.buttons: dict[str, ctk.CTkButton] = {}

    def _join(self) -> None:
        room = self.join_entry.get().strip()
        if room:
            self.join_entry.delete(0, "end")
            self._join_command(room)

    def show(self, conversations: Iterable[Any], active: str | None) -> None:
        convs = list(conversations)
        if [c.key for c in convs] != list(self.buttons):
            for button in (*self.buttons.values(), *self.close_buttons.values()):
                button.destroy()
            self.buttons, self.close_buttons = {}, {}
            for row, conv in enumerate(convs):
                button = ctk.CTkButton(self.list, anchor="w", height=28,
                                       command=lambda k=conv.key: self._switch(k))
                button.grid(row=row, column=0, padx=2, pady=2, sticky="ew")
                self.buttons[conv.key] = button
                if self._close_command is not None:
                    close = ctk.CTkButton(self.list, text="×", width=24, height=28,
                                          fg_color="transparent",
                                          text_color=("gray30", "gray70"),
                                          command=lambda k=conv.key: self._close(k))
                    close.grid(row=row, column=1, padx=(0, 2), pady=2)
                    self.close_buttons[conv.key] = close
            self._shown_active = None
        for conv in convs:
            text = conv.label
            if conv.kind == "room" and not conv.joined:
                text += " (left)"
            if conv.unread:
                text += f"  ({conv.unread}{'!' if conv.mentions else ''})"
            selected = conv.key == active
            self.buttons[conv.key].configure(
                text=text, fg_color=("#3a7ebf", "#1f538d") if selected else "transparent",
                text_color=("white", "white") if selected else ("gray10", "gray90"))
        mentioned = [c for c in convs if c.mentions and c.key != active]
        self._mentioned = [c.key for c in mentioned]
        if mentioned:
            names = ", ".join(c.label for c in mentioned[:2])
            more = len(mentioned) - 2
            self.mention_button.configure(
                text=f"! Mentioned in {names}" + (f" and {more} more" if more > 0 else ""))
            self.mention_button.grid()
        else:
            self.mention_button.grid_remove()
        keys = [c.key for c in convs]
        if active in keys and active != self._shown_active:
            self._shown_active = active  # scroll the open conversation into view
            self.update_idletasks()
            self.list._parent_canvas.yview_moveto(max(0.0, (keys.index(active) - 1)
                                                       / max(1, len(keys))))

    def _to_mention(self) -> None:
        if self._mentioned:
            self._switch(self._mentioned[0])

    def _close(self, key: str) -> None:
        if self._close_command is not None:
            self._close_command(key)

    def labels(self) -> list[str]:
        return [b.cget("text") for b in self.buttons.values()]


class UsersPanel(ctk.CTkFrame):
    """Who is in the current room, with their role ("@" operator, "+" voice);
    double-click a name for a direct message; right-click (or the menu key) for a
    person's menu: a room's operators make operators, give voice, remove and ban."""

    def __init__(self, master: Any, dm_command: Callable[[str], None],
                 act_command: Callable[[str, str], None] | None = None) -> None:
        super().__init__(master, width=170)
        self._act = act_command or (lambda _what, _nick: None)
        self.operators: list[str] = []
        self.voiced: list[str] = []
        self.manage = False  # the viewer is an operator of the room
        self.grid_rowconfigure(1, weight=1)
        self.title_label = ctk.CTkLabel(self, text="Online", font=ctk.CTkFont(weight="bold"))
        self.title_label.grid(row=0, column=0, padx=10, pady=(8, 2), sticky="w")
        self.box = ctk.CTkTextbox(self, width=160, wrap="none", cursor="hand2")
        self.box.grid(row=1, column=0, padx=6, pady=(0, 8), sticky="nsew")
        self.box.configure(state="disabled")
        self.box.bind("<Double-Button-1>", self._double_click)
        self.box.bind("<Button-3>", self._right_click)
        self._dm = dm_command
        self.names: list[str] = []
        self.menu: tkinter.Menu | None = None

    def style(self, dark: bool) -> None:
        for i, colors in enumerate(NICK_COLORS):
            self.box.tag_config(f"nick{i}", foreground=colors[dark])

    def show(self, names: list[str], me: str, operators: list[str] | None = None,
             voiced: list[str] | None = None, manage: bool = False) -> None:
        self.names = list(names)
        self.operators, self.voiced = list(operators or []), list(voiced or [])
        self.manage = manage
        self.title_label.configure(text=f"Online ({len(names)})" if names else "Online")
        box = self.box
        box.configure(state="normal")
        box.delete("1.0", "end")
        for name in names:
            suffix = " (you)" if name == me else ""
            box.insert("end", self.mark(name) + name + suffix + "\n",
                       (f"nick{nick_color_index(name)}",))
        box.configure(state="disabled")

    def mark(self, name: str) -> str:
        return "@" if name in self.operators else "+" if name in self.voiced else " "

    def rows(self) -> list[str]:
        """The list as the user reads it, a line per person."""
        return self.box.get("1.0", "end-1c").splitlines()

    def person_menu(self, nick: str) -> tkinter.Menu:
        """The menu of what can be done with ``nick`` (posted at a right-click)."""
        menu = tkinter.Menu(self, tearoff=False)
        menu.add_command(label="Message", command=lambda: self._dm(nick))
        if self.manage:
            menu.add_separator()
            operator = nick in self.operators
            menu.add_command(label="Remove operator" if operator else "Make operator",
                             command=lambda: self._act("deop" if operator else "op", nick))
            voice = nick in self.voiced
            menu.add_command(label="Take voice" if voice else "Give voice",
                             command=lambda: self._act("devoice" if voice else "voice",
                                                       nick))
            menu.add_command(label="Remove from room", command=lambda: self._act("kick", nick))
            menu.add_command(label="Ban from room", command=lambda: self._act("ban", nick))
        self.menu = menu
        return menu

    def _right_click(self, event: Any) -> str:
        index = self.box._textbox.index(f"@{event.x},{event.y}")
        row = int(index.split(".")[0]) - 1
        if 0 <= row < len(self.names):
            self.person_menu(self.names[row]).tk_popup(event.x_root, event.y_root)
        return "break"

    def _double_click(self, event: Any) -> str:
        index = self.box._textbox.index(f"@{event.x},{event.y}")
        row = int(index.split(".")[0]) - 1
        if 0 <= row < len(self.names):
            self._dm(self.names[row])
        return "break"
