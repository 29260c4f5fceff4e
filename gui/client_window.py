"""The chat window: a connect form, then conversations, rooms, users and the input.

``ChatClient.poll(0)`` runs from Tk's ``after()``; frames go into ``ChatState`` and
what changed is rendered once per tick (a bounded number of lines per view), so a
flood of messages never freezes typing or clicks. Drops reconnect with backoff and
resume from the last message id seen.
"""

from __future__ import annotations

import os
import time
import tkinter
from tkinter import filedialog
from typing import Any

import customtkinter as ctk

from chat.chatstate import OLDER_REF, TOPIC_REF, WHO_REF, ChatState, Line
from chat.client import ChatClient
from chat.commands import help_lines, parse_input
from chat.config import DEFAULT_PORT
from chat.discovery import Finder
from chat.errors import ChatError
from chat.netinfo import join_address
from chat.rules import parse_modes
from chat.transfers import Fetching, Sending
from gui.attention import ask_attention, attention_given
from gui.client_panels import ConnectForm, Sidebar, UsersPanel
from gui.common import POLL_MS, Settings, apply_appearance, cache_dir, is_dark
from gui.conversation import ConversationPanel
from gui.room_dialogs import ReasonDialog, RoomSettingsDialog
from gui.search_panel import SEARCH_REF, SearchDialog

BACKOFF_S = (1, 2, 4, 8, 15, 30)  # waits between reconnect attempts
# Refusals of a reconnect's hello that pass: tried again, not back to the form.
PASSING = ("nick_taken", "store_failed", "server_full")
THUMB_TYPES = ("image/png", "image/gif")  # what Tk shows without a library
THUMB_MAX = 2 * 1000 * 1000  # bytes of a picture fetched to be shown
THUMB_PX = 160
HEX = frozenset("0123456789abcdef")  # a picture is shrunk to at most this many pixels a side
SEEN_SERVERS = 32  # addresses remembered as connected to (the found list marks others)
OLDER_PAGE = 200  # messages asked for when the reader reaches the oldest held
REVEAL_PAGES = 5  # pages of 200 older messages loaded to reach a search result
# Room operators' commands: (mode, on) of the role ones; all need a room open
ROLE_COMMANDS = {"op": ("operator", True), "deop": ("operator", False),
                 "voice": ("voice", True), "devoice": ("voice", False)}
ROOM_COMMANDS = frozenset({"topic", "kick", "ban", "unban", "invite", "mode",
                           *ROLE_COMMANDS})
FIND_S = 0.5  # how often the form's list of servers on the network is brought up to date
TYPING_EVERY_S = 3.0  # send `typing` at most this often while the user types
HELLO_ERRORS = {
    "nick_taken": "That nickname is taken; choose another.",
    "bad_nick": "Nicknames are 1-24 letters, digits, '_', '-' or '.'.",
    "bad_proto": "This server speaks another protocol version.",
    "nick_registered": "That nickname is registered: type its password under "
                       "'Nickname password', or choose another nickname.",
    "tls_required": "This server encrypts its connections: tick 'Encrypt (TLS)' and "
                    "connect again.",
}  # other codes (auth_failed, banned, server_full...): the server's own sentence


class ClientWindow(ctk.CTk):
    def __init__(self, host: str | None = None, port: int | None = None,
                 nick: str | None = None, password: str | None = None,
                 nick_password: str | None = None, tls: bool = False,
                 cafile: str | None = None) -> None:
        self.settings = Settings("client")
        self.cafile = cafile
        self._tls_note: str | None = None  # shown once the first room is on screen
        self._registering: str | None = None  # the password of a /register under way
        self._signed_in = False  # to its nickname's account: read markers are kept
        self._marked_at = 0.0  # when the last read marker was sent
        appearance = apply_appearance(self.settings.get("appearance", "Light"))
        super().__init__()
        self.title("lanchat")
        self.geometry("1000x660")
        self.minsize(760, 480)
        self.client: ChatClient | None = None
        self.state_ = ChatState()
        self._typing_sent = 0.0
        self._attempt = 0
        self._tried = 1  # addresses of the chat the first connect went through
        self._retry_at: float | None = None  # an outage's next attempt, if one waits
        self._lost = ""  # why the connection was lost (the outage's status line)
        self._reconnect_id: str | None = None
        self._quitting = False
        self._kicked: str | None = None  # the operator's reason: do not reconnect
        self._outbox: list[tuple[Any, Any]] = []  # (command, conversation) typed offline
        self._alerted = 0  # state_.alerts already rung for
        self.tick_seconds: list[float] = []

        self.grid_columnconfigure(0, weight=1)
        self.grid_rowconfigure(0, weight=1)
        self.form = ConnectForm(self, self.connect_event)
        self.form.cancel_button.configure(command=self.cancel_connect_event)
        self.chat = ctk.CTkFrame(self, fg_color="transparent")
        self._build_chat(appearance)
        self.form.fill(host or self.settings.get("host", ""),
                       port or self.settings.get("port", DEFAULT_PORT),
                       nick or self.settings.get("nick", ""), password or "",
                       nick_password or "",
                       tls or bool(cafile) or bool(self.settings.get("tls", False)))
        self.show_form("")
        self.sendings: dict[str, Sending] = {}  # by ref: files going up
        self.fetchings: dict[str, Fetching] = {}  # by file id: files coming down
        # Transfers a lost connection cut: ("send", path, where) or ("get", file, path),
        # shown with a Resume button; the server (or the .part) keeps their bytes.
        self.cut: list[tuple[str, Any, Any]] = []
        self._transfer_refs = 0
        self.talk.on_files(self.attach_event, self.open_file_event)
        self.search_dialog: SearchDialog | None = None  # made at the first Ctrl+F
        self._revealing: tuple[str, int, int] | None = None  # (conversation, id, pages left)
        self.bind("<Control-f>", lambda _e: self.find_event())
        self.bind("<FocusIn>", lambda _e: self._focus(True))
        self.bind("<FocusOut>", lambda _e: self._focus(False))
        self.protocol("WM_DELETE_WINDOW", self.close_event)
        try:  # servers announcing themselves on the LAN, listed on the form
            self.finder: Finder | None = Finder(probe=False)
        except OSError:
            self.finder = None
        self._next_find = 0.0
        self._after_id = self.after(POLL_MS, self._poll)
        if host and nick:
            self.connect_event()

    # ------------------------------------------------------------ layout

    def _build_chat(self, appearance: str) -> None:
        chat = self.chat
        chat.grid_columnconfigure(1, weight=1)
        chat.grid_rowconfigure(0, weight=1)
        self.sidebar = Sidebar(chat, self.switch_event, self.join_event,
                               lambda: self.run_input("/list"), self.close_conversation_event)
        self.sidebar.grid(row=0, column=0, padx=(10, 5), pady=10, sticky="ns")
        self.talk = ConversationPanel(chat, self.run_input, self.older_event, self.typed_event)
        self.talk.grid(row=0, column=1, sticky="nsew")
        self.talk.on_messages(self.message_action)
        # The widgets people (and tests) look at, by the names they had before the panel.
        talk = self.talk
        self.header, self.older_button, self.view = talk.header, talk.older_button, talk.view
        self.typing_label, self.entry, self.send_button = (talk.typing_label, talk.entry,
                                                           talk.send_button)
        self.jump_button = talk.jump_button
        self.users = UsersPanel(chat, self.dm_event, self.person_event)
        self.users.grid(row=0, column=2, padx=(5, 10), pady=10, sticky="ns")
        status = ctk.CTkFrame(self, fg_color="transparent")
        status.grid(row=1, column=0, padx=10, pady=(0, 6), sticky="ew")
        status.grid_columnconfigure(0, weight=1)
        self.status_label = ctk.CTkLabel(status, text="", anchor="w", justify="left",
                                         wraplength=520)
        self.status_label.grid(row=0, column=0, sticky="ew")
        self.bell_switch = ctk.CTkSwitch(status, text="Bell on mentions", width=60,
                                         command=self.bell_event)
        if self.settings.get("bell", True):
            self.bell_switch.select()
        self.bell_switch.grid(row=0, column=1, padx=6)
        self.appearance = ctk.CTkSegmentedButton(status, values=["Light", "Dark"],
                                                 command=self.appearance_event)
        self.appearance.set(appearance)
        self.appearance.grid(row=0, column=2, padx=6)
        # an invitation to a room: joined with one click
        self.invite_button = ctk.CTkButton(status, text="", command=self.accept_invite_event)
        self.invite_button.grid(row=1, column=0, columnspan=5, pady=(4, 0), sticky="w")
        self.invite_button.grid_remove()
        self.room_dialog: RoomSettingsDialog | None = None
        self.reason_dialog: ReasonDialog | None = None
        self.reconnect_button = ctk.CTkButton(status, text="Try now", width=90,
                                              command=self.reconnect_now_event)
        self.reconnect_button.grid(row=0, column=3, padx=(0, 6))
        self.reconnect_button.grid_remove()  # shown during an outage only
        self.disconnect_button = ctk.CTkButton(status, text="Disconnect", width=100,
                                               command=self.disconnect_event)
        self.disconnect_button.grid(row=0, column=4)
        self._style_tags()

    def _style_tags(self) -> None:
        dark = is_dark()
        self.talk.style(dark)
        self.users.style(dark)

    def show_form(self, error: str) -> None:
        self.chat.grid_forget()
        self.form.grid(row=0, column=0, sticky="nsew")
        self.form.show_error(error)
        self.status_label.configure(text="")
        self.disconnect_button.grid_remove()  # nothing to disconnect on the form

    def show_chat(self) -> None:
        self.form.grid_forget()
        self.chat.grid(row=0, column=0, sticky="nsew")
        self.disconnect_button.grid()
        self.entry.focus_set()

    # ------------------------------------------------------------ connection

    def connect_event(self) -> None:
        values = self.form.values()
        if values is None:
            return
        # several servers of one chat are remembered as typed, the first one first
        host = ", ".join(join_address(h, p) for h, p in
                         [(values.host, values.port), *values.alternates]) \
            if values.alternates else values.host
        self.settings.update(host=host, port=values.port, nick=values.nick, tls=values.tls)
        self._cancel_reconnect()
        self._outbox = []
        self.client = ChatClient(values.host, values.port, values.nick,
                                 password=values.password or None,
                                 nick_password=values.nick_password or None,
                                 tls=values.tls, cafile=self.cafile)
        self.client.alternates = list(values.alternates)
        self.state_ = ChatState()
        self.state_.silenced = set(self.settings.get("muted", []))
        self.state_.focused = self._has_focus()
        self.client.connect()
        self._attempt = 0
        self._tried = 1
        self._retry_at = None
        self.form.busy(True)

    def cancel_connect_event(self) -> None:
        """The form's Cancel: stop connecting, the form stays as it was filled."""
        if self.client is not None and self.client.welcome is None:
            self.client.close()
            self.client = None
        self.form.busy(False)
        self.form.show_error("Not connected: cancelled.")

    def _reconnect(self) -> None:
        self._reconnect_id = None
        if self.client is not None:
            if self._attempt > 1:  # this server failed twice: the chat's next one
                self.client.next_server()
            self._retry_at = None
            self.client.connect()
            self._show_outage()

    def _cancel_reconnect(self) -> None:
        if self._reconnect_id is not None:
            self.after_cancel(self._reconnect_id)
            self._reconnect_id = None

    def _on_closed(self, error: str | None, fatal: bool = False) -> None:
        if self.sendings or self.fetchings:  # bytes so far stay: on the server, in .part
            self._cut_transfers()
        client = self.client
        if self._quitting:
            self.destroy()
            return
        if (client is not None and client.welcome is None and not fatal
                and self._tried <= len(client.alternates)):
            # The first connect goes through every address of the chat in turn.
            self._tried += 1
            client.next_server()
            client.connect()
            self.form.show_error(f"{error} Trying {client.host}:{client.port}…")
            return
        if client is None or client.welcome is None or self._kicked is not None or fatal:
            self.client = None  # never got in, or was sent away: back to the form
            self.form.busy(False)
            self.show_form(self._kicked or error or "The server closed the connection.")
            self._kicked = None
            return
        wait = BACKOFF_S[min(self._attempt, len(BACKOFF_S) - 1)]
        if self._attempt == 0:  # the outage starts: said once, not once per attempt
            self.state_.note("Connection lost; reconnecting… What you send meanwhile "
                             "goes out once the connection is back.", "error")
            self.state_.offline()
        self._attempt += 1
        self._lost = f"Connection lost ({(error or 'closed by the server').rstrip('.')})."
        self._retry_at = time.monotonic() + wait
        self._show_outage()
        self.reconnect_button.grid()
        self._reconnect_id = self.after(wait * 1000, self._reconnect)

    def _show_outage(self) -> None:
        """The outage's status line: why, and the countdown to the next attempt (or
        where that attempt is), refreshed by the poll."""
        client = self.client
        if self._retry_at is not None:
            left = max(1, round(self._retry_at - time.monotonic()))
            self._set_status(f"{self._lost} Trying again in {left} s…", error=True)
        elif client is not None and client.stage():
            waited = int(time.monotonic() - client.stage_since)
            self._set_status(f"{self._lost} {client.stage()}"
                             + (f" {waited} s" if waited else ""), error=True)

    def reconnect_now_event(self) -> None:
        """The "Reconnect now" button: try at once instead of waiting."""
        if self._reconnect_id is not None:
            self._cancel_reconnect()
            self._reconnect()

    def disconnect_event(self) -> None:
        self._cancel_reconnect()
        self._outbox = []
        self.reconnect_button.grid_remove()
        if self.client is not None:
            self.client.bye("left")
            self.client.poll(0)
            self.client.close()
            self.client = None
        self.form.busy(False)
        self.show_form("")

    def close_event(self) -> None:
        self.after_cancel(self._after_id)
        if self.finder is not None:
            self.finder.close()
        self._cancel_reconnect()
        if self.client is not None:
            self.client.bye()
            self.client.poll(0)  # one non-blocking try to say goodbye
            self.client.close()
        self.destroy()

    # ------------------------------------------------------------ the loop

    def _poll(self) -> None:
        started = time.perf_counter()
        client = self.client
        if client is not None:  # a closed one may still owe its local.closed event
            for frame in client.poll(0):
                self._handle(frame)
        if self.sendings or self.fetchings or self.cut:
            self._step_transfers()
        self._show_progress()
        self._render()
        if self.finder is not None and started >= self._next_find:
            self._next_find = started + FIND_S
            self.form.show_servers(self.finder.poll(),  # also while chatting: beacons drain
                                   frozenset(self._seen_servers()))
        self.tick_seconds.append(time.perf_counter() - started)
        del self.tick_seconds[:-2000]
        self._after_id = self.after(POLL_MS, self._poll)

    def _seen_servers(self) -> list[str]:
        """Addresses this window has been connected to (settings; newest first)."""
        value = self.settings.get("seen_servers", [])
        return [a for a in value if isinstance(a, str)] if isinstance(value, list) else []

    def _show_progress(self) -> None:
        """Connecting: the stage and the seconds waited on the form; an outage: its
        countdown in the status line."""
        client = self.client
        if client is None or client.ready:
            return
        if client.welcome is None:
            stage = client.stage()
            waited = int(time.monotonic() - client.stage_since)
            self.form.show_stage(f"{stage} {waited} s" if stage and waited else stage)
        elif self._attempt:
            self._show_outage()

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "local.closed":
            self._on_closed(frame["error"], frame.get("fatal", False))
            return
        if kind == "local.tls":
            self._on_tls(frame)
            return
        if kind in ("registered", "unregistered"):
            self._on_account(frame)
            return
        if kind == "history_end" and self._tls_note:
            self.state_.apply(frame)
            self.state_.note(self._tls_note, "notice")
            self._tls_note = None
            return
        if (kind == "error" and self.client is not None and self.client.state == "hello"
                and self._attempt and frame.get("code") in PASSING):
            # Coming back: the nickname may still be held for the connection that
            # dropped (until its server notices), or storage is away: try again.
            self.client.close()
            self._on_closed(str(frame.get("message", "")))
            return
        if kind == "error" and self.client is not None and self.client.state == "hello":
            message = HELLO_ERRORS.get(str(frame.get("code")), str(frame.get("message", "")))
            self.client.close()
            self.client = None
            self.form.busy(False)
            self.show_form(message)
            return
        if self._transfer_frame(frame):
            return
        if frame.get("ref") == SEARCH_REF and kind in ("search_results", "error"):
            if self.search_dialog is not None:
                if kind == "error":
                    self.search_dialog.show_error(str(frame.get("message", "")))
                else:
                    self.search_dialog.show_results(frame)
            return
        if kind == "kicked":
            self._kicked = f"You were removed from the server: {frame.get('reason', '')}"
        if kind == "welcome":
            self._signed_in = bool(frame.get("account"))  # read markers are kept for it
        if kind == "welcome" and self.client is not None:
            seen = self._seen_servers()
            here = join_address(self.client.host, self.client.port)
            if here not in seen:  # found on the network later: not marked "new"
                self.settings.update(seen_servers=[here, *seen][:SEEN_SERVERS])
            if self._attempt:
                self.state_.note("Reconnected.", "notice")
            self._attempt = 0
            self._retry_at = None
            self.reconnect_button.grid_remove()
            self.form.busy(False)
            self.show_chat()
            self._send_outbox()
        self.state_.apply(frame)
        if kind == "joined" and frame.get("nick") == self.state_.nick and \
                self.client is not None:
            self.client.room_info(frame["room"])  # its settings: who may speak, the key
        if kind == "invited":
            self._show_invitation()
        if kind == "history_end" and self._revealing is not None:
            self._reveal_more()
        if kind == "welcome" or (kind == "renamed" and frame.get("new") == self.state_.nick):
            self._connected_status()

    def _connected_status(self) -> None:
        client = self.client
        if client is None:
            return
        lock = "   ·   encrypted (TLS)" if client.tls else ""
        self._set_status(f"Connected to {self.state_.server} at {client.host}:"
                         f"{client.port} as {self.state_.nick}{lock}")

    def _on_tls(self, frame: dict[str, Any]) -> None:
        client = self.client
        assert client is not None
        if frame["status"] == "new":
            self._tls_note = (
                f"First encrypted connection to {client.host}:{client.port}. Its "
                f"certificate fingerprint is {frame['fingerprint']}: check that the "
                f"server window shows the same. You will be warned if it ever changes.")
        elif frame["status"] == "verified":
            self._tls_note = None

    def _on_account(self, frame: dict[str, Any]) -> None:
        client = self.client
        if frame["type"] == "registered":
            if client is not None and self._registering:
                client.nick_password = self._registering  # reconnects sign in with it
            self._signed_in = True
            self.state_.note(f"The nickname {frame['nick']} is registered: from now on "
                             f"it needs your password.", "notice")
        else:
            if client is not None:
                client.nick_password = None
            self.state_.note(f"The nickname {frame['nick']} is no longer registered.",
                             "notice")
        self._registering = None

    def _render(self) -> None:
        state = self.state_
        appended, redraw, prepended = state.take_changes()
        active = state.active_conversation()
        if active is not None:
            self.talk.show(active, appended.get(active.key), active.key in redraw,
                           prepended.get(active.key, 0))
        if state.list_changed:
            state.list_changed = False
            self.sidebar.show(state.conversations.values(), state.active)
        if state.roster_changed and active is not None:
            state.roster_changed = False
            room = active.kind == "room"
            self.users.show(active.users if room else [], state.nick,
                            active.operators if room else [], active.voiced if room else [],
                            state.is_operator(active))
            state.topic_changed = True  # (roles decide what the header shows)
        if state.topic_changed:
            state.topic_changed = False
            room_conv = active if active is not None and active.kind == "room" else None
            self.talk.can_delete_all = state.is_operator(room_conv)
            self.talk.show_room(room_conv.topic if room_conv else "",
                                room_conv.topic_by if room_conv else "",
                                state.is_operator(room_conv), state.muted(room_conv),
                                self.room_settings_event)
            self._show_invitation()
        self.talk.show_typing(state.typing_nicks(time.monotonic()))
        self._alert()
        self._update_title()
        self._mark_read()

    def _mark_read(self) -> None:
        """The open conversation is read up to its newest message: the server keeps it
        for this nickname's other devices (signed in to its account; once a second)."""
        client = self.client
        if client is None or not client.ready or not self._signed_in:
            return
        now = time.monotonic()
        if now - self._marked_at < 1.0 or not self.winfo_viewable():
            return
        mark = self.state_.to_mark()
        if mark is not None:
            conv, newest = mark
            self._marked_at = now
            conv.read_upto = newest
            if conv.kind == "room":
                client.mark_read(newest, room=conv.name)
            else:
                client.mark_read(newest, to=conv.name)

    def _update_title(self) -> None:
        state = self.state_
        active = state.active_conversation()
        title = "lanchat" + (f" — {active.label}" if active else "")
        if not state.focused and state.unseen:
            title = f"({state.unseen}{'!' if state.alerts else ''}) {title}"
        if self.title() != title:
            self.title(title)

    def _has_focus(self) -> bool:
        try:
            return self.focus_displayof() is not None
        except (KeyError, tkinter.TclError):
            return False

    def _focus(self, focused: bool) -> None:
        self.state_.focused = focused
        if focused:
            if self.state_.alerts:
                attention_given(self)
            self.state_.unseen = 0
            self.state_.alerts = self._alerted = 0

    def _alert(self) -> None:
        """A mention or a direct message while the window is in the background: the
        bell (unless switched off), and the title says so ("(3!)")."""
        if self.state_.alerts > self._alerted:
            self._alerted = self.state_.alerts
            if self.bell_switch.get():
                self.bell()
            ask_attention(self)  # the taskbar entry flashes until the window is used

    def mute(self, key: str, on: bool) -> None:
        """No bell and no flashing for the conversation ``key`` (kept for next time)."""
        state = self.state_
        (state.silenced.add if on else state.silenced.discard)(key)
        self.settings.update(muted=sorted(state.silenced))
        state.note("Muted: no bell or flashing for this conversation (/mute again to "
                   "undo)." if on else "Not muted any more.", "notice")

    def bell_event(self) -> None:
        self.settings.update(bell=bool(self.bell_switch.get()))

    def _set_status(self, text: str, error: bool = False) -> None:
        color = "#c0392b" if error else ("gray10", "gray90")
        self.status_label.configure(text=text, text_color=color)

    # ------------------------------------------------------------ input

    def typed_event(self) -> None:
        """A key in the input: tell the room the user is typing, now and then."""
        active = self.state_.active_conversation()
        if (self.client is None or not self.client.ready or active is None
                or active.kind != "room"):
            return
        now = time.monotonic()
        if now - self._typing_sent >= TYPING_EVERY_S:
            self._typing_sent = now
            self.client.typing(active.name)

    def send_event(self) -> None:
        self.talk.send_event()

    def run_input(self, text: str) -> None:
        """What the user typed: a message, or a slash command."""
        state, client = self.state_, self.client
        command = parse_input(text)
        if command.name == "help":
            for line in help_lines():
                state.note(line, "help")
            return
        if command.name == "error":
            state.note(command.args[0], "error")
            return
        active = state.active_conversation()
        if command.name == "mute":
            if active is not None:
                self.mute(active.key, active.key not in state.silenced)
            return
        if client is None or not client.ready:
            if client is not None and command.name in ("say", "me", "msg"):
                self._outbox.append((command, active))  # sent once reconnected
                state.note(f"Not sent yet (offline): {text.strip()}", "notice")
            else:
                state.note("Not connected; that needs the connection.", "error")
            return
        room = active.name if active and active.kind == "room" else None
        name, args = command
        if name in ("say", "me"):
            if active is None:
                state.note("Join a room first: /join ROOM", "error")
            elif active.kind == "dm":
                client.message(active.name, args[0], action=name == "me")
            else:
                client.say(active.name, args[0], action=name == "me")
            self._typing_sent = 0.0
        elif name == "msg":
            client.message(args[0], args[1])
            state.activate(state.conversation(args[0], "dm").key)
        elif name == "nick":
            client.rename(args[0], nick_password=args[1] if len(args) > 1 else None)
        elif name == "register":
            self._registering = args[0]
            client.register(args[0])
        elif name == "unregister":
            client.unregister()
        elif name == "join":
            self.join_event(args[0])
        elif name == "part":
            target = args[0] if args else room
            if target:
                client.part(target)
        elif name == "list":
            client.list_rooms()
        elif name == "who":
            target = args[0] if args else room
            if target:
                client.who(target, ref=WHO_REF)
        elif name == "quit":
            self._quitting = True
            client.bye(args[0] if args else None)
        elif room is None and name in ROOM_COMMANDS:
            state.note(f"/{name} works in a room: open one first.", "error")
        elif room is not None:
            self._room_command(name, args, room)

    # ------------------------------------------------------------ rooms with owners

    def _room_command(self, name: str, args: tuple[str, ...], room: str) -> None:
        """/topic, /op, /deop, /voice, /devoice, /kick, /ban, /unban, /invite, /mode."""
        client, state = self.client, self.state_
        assert client is not None
        if name == "topic":
            client.topic(room, args[0] if args else None, ref=None if args else TOPIC_REF)
        elif name in ROLE_COMMANDS:
            mode, on = ROLE_COMMANDS[name]
            client.mode(room, [(mode, on, args[0])])
        elif name == "kick":
            client.kick(room, args[0], args[1] if len(args) > 1 else "")
        elif name in ("ban", "unban"):
            client.mode(room, [("ban", name == "ban", args[0])])
        elif name == "invite":
            client.invite(room, args[0])
        elif name == "mode":
            changes, unknown = parse_modes(args[0].split()) if args else ([], [])
            if unknown or (args and not changes):
                state.note("Unknown mode: /mode +m (quiet), +i, +t, +s, +k KEY, +l LIMIT, "
                           "+o/+v NICK, +b MASK", "error")
            elif changes:
                client.mode(room, changes)
            else:
                conv = state.active_conversation()
                shown = ", ".join(k for k, v in (conv.settings if conv else {}).items() if v)
                state.note(f"{room}: {shown or 'no settings'}.")

    def person_event(self, what: str, nick: str) -> None:
        """An entry of a person's menu in the people list."""
        active = self.state_.active_conversation()
        client = self.client
        if active is None or active.kind != "room" or client is None or not client.ready:
            return
        room = active.name
        if what in ROLE_COMMANDS:
            mode, on = ROLE_COMMANDS[what]
            client.mode(room, [(mode, on, nick)])
            return
        if self.reason_dialog is not None and self.reason_dialog.winfo_exists():
            self.reason_dialog.destroy()

        def done(reason: str) -> None:
            if self.client is None:
                return
            if what == "ban":
                self.client.mode(room, [("ban", True, nick)])
            self.client.kick(room, nick, reason)

        self.reason_dialog = ReasonDialog(
            self, f"{'Ban' if what == 'ban' else 'Remove'} {nick} from {room}",
            "Ban" if what == "ban" else "Remove", done)

    def room_settings_event(self) -> None:
        active = self.state_.active_conversation()
        if active is None or active.kind != "room":
            return
        if self.room_dialog is not None and self.room_dialog.winfo_exists():
            self.room_dialog.destroy()
        room = active.name

        def save(topic: str | None, changes: list[tuple[str, bool, str | None]]) -> None:
            if self.client is None:
                return
            if topic is not None:
                self.client.topic(room, topic)
            if changes:
                self.client.mode(room, changes)

        self.room_dialog = RoomSettingsDialog(
            self, room, active.topic, active.settings, active.bans, save,
            lambda nick: self.client.invite(room, nick) if self.client else None)

    def _show_invitation(self) -> None:
        invitations = self.state_.invitations
        if invitations:
            room, by = invitations[-1]
            self.invite_button.configure(text=f"Join {room} ({by} invites you)")
            self.invite_button.grid()
        else:
            self.invite_button.grid_remove()

    def accept_invite_event(self) -> None:
        if self.state_.invitations:
            room, _ = self.state_.invitations.pop()
            self.join_event(room)
        self._show_invitation()

    def message_action(self, kind: str, line: Line, arg: str) -> None:
        """What the user chose in a message's menu (gui.conversation): "reply" with
        the text, "edit" with the new text, "delete", "react" with the emoji (again:
        taken back)."""
        state, client = self.state_, self.client
        active = state.active_conversation()
        if client is None or not client.ready or active is None or line.id is None:
            state.note("Not connected; that needs the connection.", "error")
            return
        if kind == "reply":
            if active.kind == "dm":
                client.message(active.name, arg, reply_to=line.id)
            else:
                client.say(active.name, arg, reply_to=line.id)
        elif kind == "edit":
            client.edit(line.id, arg)
        elif kind == "delete":
            client.delete(line.id)
        elif kind == "react":
            client.react(line.id, arg, on=state.nick not in line.reactions.get(arg, []))

    def _send_outbox(self) -> None:
        """What was typed during an outage, in order, now that the connection is back
        (the rooms of `hello` are joined before these frames are handled)."""
        outbox, self._outbox = self._outbox, []
        client = self.client
        assert client is not None
        for (name, args), conv in outbox:
            if name == "msg":
                client.message(args[0], args[1])
            elif conv is not None and conv.kind == "dm":
                client.message(conv.name, args[0], action=name == "me")
            elif conv is not None:
                client.say(conv.name, args[0], action=name == "me")

    # ------------------------------------------------------------ other events

    def switch_event(self, key: str) -> None:
        self.state_.activate(key)

    def join_event(self, room: str) -> None:
        if self.client is not None and self.client.ready and room.strip():
            conv = self.state_.conversation(room.strip())
            self.client.join(room.strip())
            self.state_.activate(conv.key)

    def close_conversation_event(self, key: str) -> None:
        """The × of a conversation: a room one is in is left first."""
        conv = self.state_.conversations.get(key)
        if conv is None:
            return
        if conv.kind == "room" and conv.joined and self.client is not None \
                and self.client.ready:
            self.client.part(conv.name)
        self.state_.close(key)

    def dm_event(self, nick: str) -> None:
        if nick != self.state_.nick:
            self.state_.activate(self.state_.conversation(nick, "dm").key)

    def older_event(self) -> None:
        active = self.state_.active_conversation()
        if (self.client is not None and self.client.ready and active is not None
                and active.kind == "room" and active.more and not active.loading):
            active.loading = True  # until the answer
            self.client.history(active.name, before=active.oldest_id, limit=OLDER_PAGE,
                                ref=OLDER_REF)

    # ------------------------------------------------------------ files

    def attach_event(self) -> None:
        """The File… button: choose a file, send it to the open conversation."""
        path = filedialog.askopenfilename(parent=self, title="Send a file")
        if path:
            self.send_file_event(path)

    def send_file_event(self, path: str) -> None:
        state = self.state_
        conv = state.active_conversation()
        if self.client is None or not self.client.ready or conv is None:
            return
        where = {"room": conv.name} if conv.kind == "room" else {"to": conv.name}
        self._send_file(path, where)

    def _send_file(self, path: str, where: dict[str, str]) -> None:
        assert self.client is not None
        self._transfer_refs += 1
        ref = f"file{self._transfer_refs}"
        try:
            self.sendings[ref] = Sending(self.client, path, ref, **where)
        except OSError as exc:
            self.state_.note(f"Cannot read {path}: {exc.strerror or exc}", "error")

    def open_file_event(self, file: dict[str, Any]) -> None:
        """A click on a file's line: choose where to save it."""
        path = filedialog.asksaveasfilename(parent=self, title="Save the file",
                                            initialfile=str(file.get("name", "file")))
        if path:
            self.save_file_event(file, path)

    def save_file_event(self, file: dict[str, Any], path: str) -> None:
        if self.client is None or not self.client.ready or file["id"] in self.fetchings:
            return
        self._transfer_refs += 1
        try:
            self.fetchings[file["id"]] = Fetching(self.client, file, path,
                                                  f"get{self._transfer_refs}")
        except OSError as exc:
            self.state_.note(f"Cannot save to {path}: {exc.strerror or exc}", "error")

    def _transfer_frame(self, frame: dict[str, Any]) -> bool:
        """Frames of files under way; True when nothing else is to see them."""
        kind, ref = frame["type"], frame.get("ref")
        sending = self.sendings.get(ref) if isinstance(ref, str) else None
        if sending is not None and kind in ("upload_ready", "message", "error"):
            sending.handle_frame(frame)
            if kind == "error":
                self.state_.note(f"{sending.name} was not sent: {sending.error}", "error")
            elif kind == "message" and isinstance(frame.get("file"), dict):
                self._thumbnail(frame["file"], sending.path)  # her own picture, from disk
            return kind == "upload_ready"
        if kind == "upload_progress":
            return True
        fetching = self.fetchings.get(str(frame.get("file")))
        if kind == "file_data" and fetching is not None:
            fetching.handle_frame(frame)
            return True
        if kind == "error" and ref is not None:
            for fetching in self.fetchings.values():
                if fetching.ref == ref:
                    fetching.handle_frame(frame)
                    self.state_.note(f"{fetching.name}: {fetching.error}", "error")
                    return True
        if kind == "message" and isinstance(frame.get("file"), dict):
            self._thumbnail(frame["file"])
        return False

    def _thumbnail(self, file: dict[str, Any], local: str | None = None) -> None:
        """A small PNG or GIF (what Tk shows by itself) comes down to be shown (the
        sender's own: from ``local``, the file she sent)."""
        file_id = str(file.get("id"))
        if file.get("type") not in THUMB_TYPES or int(file.get("size", 0)) > THUMB_MAX \
                or file_id in self.talk.thumbnails or len(file_id) != 64 \
                or not set(file_id) <= HEX:  # the id names a file in our cache: hex only
            return
        path = os.path.join(cache_dir(), file_id)
        if local is not None:
            self._show_thumbnail(file_id, local)
        elif os.path.exists(path):
            self._show_thumbnail(file_id, path)
        else:
            self.save_file_event(file, path)

    def _show_thumbnail(self, file_id: str, path: str) -> None:
        try:
            image = tkinter.PhotoImage(master=self, file=path)
        except tkinter.TclError:
            return  # not a picture Tk can show: the line stays as it is
        shrink = max(1, -(-max(image.width(), image.height()) // THUMB_PX))
        if shrink > 1:
            image = image.subsample(shrink)
        self.talk.thumbnails[file_id] = image
        self.talk.place_thumbnails()

    def _step_transfers(self) -> None:
        """A bounded step of each file under way, and the line that shows them."""
        for sending in list(self.sendings.values()):
            sending.step()
        for fetching in list(self.fetchings.values()):
            fetching.step()
        shown = ""
        progress: float | None = None
        for ref, sending in list(self.sendings.items()):
            if sending.finished:
                del self.sendings[ref]
                continue
            if sending.state == "hashing":
                shown = f"Preparing {sending.name}…"
            else:
                shown = f"Sending {sending.name}: {sending.rate.line(sending.sent, sending.size)}"
            progress = sending.progress
            break
        for file_id, fetching in list(self.fetchings.items()):
            if fetching.finished:
                del self.fetchings[file_id]
                if fetching.state == "done" and os.path.dirname(fetching.path) == cache_dir():
                    self._show_thumbnail(file_id, fetching.path)
                elif fetching.state == "done":
                    self.state_.note(f"Saved {fetching.name} to {fetching.path}", "notice")
                elif os.path.dirname(fetching.path) != cache_dir():
                    self.state_.note(f"{fetching.name} was not saved: {fetching.error}",
                                     "error")
                continue
            if not shown:
                shown = (f"Checking {fetching.name}…" if fetching.state == "checking" else
                         f"Receiving {fetching.name}: "
                         f"{fetching.rate.line(fetching.got, fetching.size)}")
                progress = fetching.progress
        if not shown and self.cut:
            self.talk.show_transfer(self._cut_text(), None, self.resume_transfers_event)
            return
        self.talk.show_transfer(shown, progress)

    def _cut_transfers(self) -> None:
        """The connection dropped: each transfer under way is cut, said so, and kept
        for the Resume button."""
        for sending in self.sendings.values():
            if not sending.finished:
                sending.cancel("connection lost")
                self.cut.append(("send", sending.path, sending.where))
                self.state_.note(f"{sending.name} not sent (connection lost): Resume "
                                 "sends the rest", "error")
        for fetching in self.fetchings.values():
            if not fetching.finished:
                fetching.cancel("connection lost")
                self.cut.append(("get", fetching.file, fetching.path))
                if os.path.dirname(fetching.path) != cache_dir():
                    self.state_.note(f"{fetching.name} not received (connection lost): "
                                     "Resume fetches the rest", "error")
        self.sendings.clear()
        self.fetchings.clear()
        if self.cut:
            self.talk.show_transfer(self._cut_text(), None, self.resume_transfers_event)
        else:
            self.talk.show_transfer("", None)

    def _cut_text(self) -> str:
        if len(self.cut) == 1:
            kind, what, _where = self.cut[0]
            name = os.path.basename(what) if kind == "send" else str(what.get("name"))
            return f"{name} not {'sent' if kind == 'send' else 'received'} (connection lost)"
        return f"{len(self.cut)} files not moved (connection lost)"

    def resume_transfers_event(self) -> None:
        """The Resume button: cut transfers go on from the bytes already there."""
        if self.client is None or not self.client.ready:
            self.state_.note("Not connected: Resume works once the chat is back.", "error")
            return
        cut, self.cut = self.cut, []
        for kind, what, where in cut:
            if kind == "send":
                self._send_file(what, where)
            else:
                self.save_file_event(what, where)
        self.talk.show_transfer("", None)

    # ------------------------------------------------------------ search (Ctrl+F)

    def find_event(self) -> str:
        if self.client is None or not self.client.ready:
            return "break"
        if self.search_dialog is None:
            self.search_dialog = SearchDialog(self, self.search_event, self.open_result_event)
        self.search_dialog.show()
        return "break"

    def search_event(self, query: str) -> None:
        if self.client is not None and self.client.ready:
            self.client.send({"type": "search", "query": query, "ref": SEARCH_REF})

    def open_result_event(self, found: dict[str, Any]) -> None:
        """Open a result's conversation; load older pages until the message is there
        (at most ``REVEAL_PAGES`` of 200), then show it in the middle of the view."""
        state = self.state_
        if "room" in found:
            conv = state.conversation(found["room"])
        else:
            other = found["to"] if found.get("from") == state.nick else found.get("from")
            conv = state.conversation(str(other), "dm")
        state.activate(conv.key)
        self._revealing = (conv.key, int(found["id"]), REVEAL_PAGES)
        self._reveal_more()

    def _reveal_more(self) -> None:
        assert self._revealing is not None
        key, msg_id, pages = self._revealing
        conv = self.state_.conversations.get(key)
        oldest = conv.oldest_id if conv is not None else None
        if (conv is None or msg_id in conv.ids or conv.kind != "room" or pages <= 0
                or oldest is None or oldest < msg_id or self.client is None):
            self._revealing = None
            self._render()  # the conversation as it is now, then the message in view
            self.after_idle(lambda: self.talk.reveal(msg_id))
            return
        self._revealing = (key, msg_id, pages - 1)
        self.client.history(conv.name, before=oldest, limit=200, ref=OLDER_REF)

    def appearance_event(self, mode: str) -> None:
        apply_appearance(mode)
        self.appearance.set(mode)
        self.settings.update(appearance=mode)
        self._style_tags()
        self.state_.list_changed = True


def run_client_window(host: str | None = None, port: int | None = None,
                      nick: str | None = None, password: str | None = None,
                      nick_password: str | None = None, tls: bool = False,
                      cafile: str | None = None) -> int:
    try:
        window = ClientWindow(host, port, nick, password, nick_password, tls, cafile)
    except tkinter.TclError as exc:
        raise ChatError(f"cannot open a window: {exc}") from None
    window.mainloop()
    return 0
