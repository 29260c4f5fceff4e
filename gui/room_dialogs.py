"""Small windows of a room's operator: the room's settings, and the reason of a removal.

Neither waits on its own (no ``wait_window``): each calls back with what the operator
chose, and the chat window turns that into requests (``chat.client``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import customtkinter as ctk

FLAGS = (("moderated", "Quiet: only operators and people with voice speak"),
         ("topic_lock", "Only operators set the topic"),
         ("invite_only", "By invitation only"),
         ("secret", "Hidden from the list of rooms"))

Change = tuple[str, bool, "str | None"]


class RoomSettingsDialog(ctk.CTkToplevel):
    """A room's topic, flags, key and limit, and an invitation; Save sends what
    changed (``save(topic or None, changes)``), ``invite(nick)`` at once."""

    def __init__(self, master: Any, room: str, topic: str, settings: dict[str, Any],
                 bans: list[dict[str, Any]], save: Callable[[str | None, list[Change]], None],
                 invite: Callable[[str], None]) -> None:
        super().__init__(master)
        self.title(f"#{room}: settings")
        self.resizable(False, False)
        self._save, self._invite = save, invite
        self._topic, self._settings = topic, settings
        self.grid_columnconfigure(0, weight=1)
        row = 0

        def place(widget: Any, **grid: Any) -> None:
            nonlocal row
            widget.grid(row=row, column=0, padx=14, pady=(6, 0), sticky="ew", **grid)
            row += 1

        place(ctk.CTkLabel(self, text="Topic", anchor="w"))
        self.topic_entry = ctk.CTkEntry(self, width=360)
        self.topic_entry.insert(0, topic)
        place(self.topic_entry)
        self.flags: dict[str, ctk.CTkCheckBox] = {}
        for name, text in FLAGS:
            box = ctk.CTkCheckBox(self, text=text)
            if settings.get(name, name == "topic_lock"):
                box.select()
            self.flags[name] = box
            place(box)
        place(ctk.CTkLabel(self, text="Key to join (empty: none)", anchor="w"))
        self.key_entry = ctk.CTkEntry(self)
        key = settings.get("key")
        if isinstance(key, str):
            self.key_entry.insert(0, key)
        place(self.key_entry)
        place(ctk.CTkLabel(self, text="Most people (empty: no limit)", anchor="w"))
        self.limit_entry = ctk.CTkEntry(self)
        if settings.get("limit"):
            self.limit_entry.insert(0, str(settings["limit"]))
        place(self.limit_entry)
        invite_row = ctk.CTkFrame(self, fg_color="transparent")
        invite_row.grid_columnconfigure(0, weight=1)
        self.invite_entry = ctk.CTkEntry(invite_row, placeholder_text="Invite someone")
        self.invite_entry.grid(row=0, column=0, sticky="ew")
        ctk.CTkButton(invite_row, text="Invite", width=70,
                      command=self.invite_event).grid(row=0, column=1, padx=(6, 0))
        place(invite_row)
        if bans:
            place(ctk.CTkLabel(self, text="Banned: " + ", ".join(b["mask"] for b in bans),
                               anchor="w", wraplength=360, justify="left"))
        self.error_label = ctk.CTkLabel(self, text="", text_color=("#b42318", "#ff8a80"))
        place(self.error_label)
        buttons = ctk.CTkFrame(self, fg_color="transparent")
        self.save_button = ctk.CTkButton(buttons, text="Save", width=90,
                                         command=self.save_event)
        self.save_button.grid(row=0, column=0, padx=(0, 6))
        ctk.CTkButton(buttons, text="Close", width=90,
                      command=self.destroy).grid(row=0, column=1)
        place(buttons, ipady=4)
        self.bind("<Escape>", lambda _e: self.destroy())

    def changes(self) -> tuple[str | None, list[Change]]:
        """(the new topic or None when unchanged, the mode changes)."""
        topic = self.topic_entry.get().strip()
        out: list[Change] = []
        for name, box in self.flags.items():
            want = bool(box.get())
            if want != bool(self._settings.get(name, name == "topic_lock")):
                out.append((name, want, None))
        key, had = self.key_entry.get().strip(), self._settings.get("key")
        if key != (had if isinstance(had, str) else ""):
            out.append(("key", True, key) if key else ("key", False, None))
        limit = self.limit_entry.get().strip()
        if limit != str(self._settings.get("limit") or ""):
            out.append(("limit", True, limit) if limit else ("limit", False, None))
        return (topic if topic != self._topic else None), out

    def save_event(self) -> None:
        limit = self.limit_entry.get().strip()
        if limit and not (limit.isdigit() and int(limit) > 0):
            self.error_label.configure(text="The most people is a number, 1 or more.")
            return
        topic, changes = self.changes()
        self._save(topic, changes)
        self.destroy()

    def invite_event(self) -> None:
        nick = self.invite_entry.get().strip()
        if nick:
            self._invite(nick)
            self.invite_entry.delete(0, "end")


class ReasonDialog(ctk.CTkToplevel):
    """Asks why (shown to everyone) before removing or banning someone from a room."""

    def __init__(self, master: Any, title: str, action: str,
                 done: Callable[[str], None]) -> None:
        super().__init__(master)
        self.title(title)
        self.resizable(False, False)
        self._done = done
        ctk.CTkLabel(self, text="Reason (shown to everyone, may be empty)").grid(
            row=0, column=0, columnspan=2, padx=14, pady=(12, 4), sticky="w")
        self.entry = ctk.CTkEntry(self, width=320)
        self.entry.grid(row=1, column=0, columnspan=2, padx=14, sticky="ew")
        self.entry.bind("<Return>", lambda _e: self.confirm_event())
        self.confirm_button = ctk.CTkButton(self, text=action, command=self.confirm_event)
        self.confirm_button.grid(row=2, column=0, padx=(14, 6), pady=12, sticky="e")
        ctk.CTkButton(self, text="Cancel", command=self.destroy).grid(
            row=2, column=1, padx=(0, 14), pady=12, sticky="w")
        self.after(50, self.entry.focus_set)

    def confirm_event(self) -> None:
        reason = self.entry.get().strip()
        self.destroy()
        self._done(reason)
