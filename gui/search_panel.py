"""The chat window's search (Ctrl+F): a query line and the results, matches marked.

A result is clicked to open its conversation; the window then shows the message
with what came before it (chat.chatstate loads it as older history).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import customtkinter as ctk

from gui.common import LineView

SEARCH_REF = "search"  # `ref` of the window's search requests


class SearchDialog(ctk.CTkToplevel):
    """Type words (and from:NICK, in:ROOM), press Enter; click a result."""

    def __init__(self, master: Any, search_command: Callable[[str], None],
                 open_command: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(master)
        self.title("Search messages")
        self.geometry("620x460")
        self.grid_columnconfigure(0, weight=1)
        self.grid_rowconfigure(2, weight=1)
        self.entry = ctk.CTkEntry(self, placeholder_text="words, from:nick, in:room")
        self.entry.grid(row=0, column=0, padx=(12, 6), pady=(12, 6), sticky="ew")
        self.entry.bind("<Return>", lambda _e: self.search_event())
        self.entry.bind("<Escape>", lambda _e: self.withdraw())
        self.button = ctk.CTkButton(self, text="Search", width=90, command=self.search_event)
        self.button.grid(row=0, column=1, padx=(0, 12), pady=(12, 6))
        self.summary = ctk.CTkLabel(self, text="Words match whole, accents and case aside.",
                                    anchor="w")
        self.summary.grid(row=1, column=0, columnspan=2, padx=12, sticky="ew")
        self.view = LineView(self, max_lines=400)
        self.view.grid(row=2, column=0, columnspan=2, padx=12, pady=(4, 12), sticky="nsew")
        text = self.view._textbox
        text.tag_config("meta", foreground="#808b96")
        text.tag_config("match", background="#f9e79f", foreground="#1b2631")
        text.tag_bind("result", "<Enter>", lambda _e: text.configure(cursor="hand2"))
        text.tag_bind("result", "<Leave>", lambda _e: text.configure(cursor=""))
        self.results: list[dict[str, Any]] = []
        self._search = search_command
        self._open = open_command
        self.protocol("WM_DELETE_WINDOW", self.withdraw)

    def show(self) -> None:
        self.deiconify()
        self.lift()
        self.entry.focus_set()
        self.entry.select_range(0, "end")

    def search_event(self) -> None:
        query = self.entry.get().strip()
        if query:
            self.summary.configure(text="Searching…")
            self._search(query)

    def show_results(self, frame: dict[str, Any]) -> None:
        self.results = list(frame.get("results", []))
        count = f"{len(self.results)}{'+' if frame.get('more') else ''}"
        plural = "" if len(self.results) == 1 else "s"
        self.summary.configure(text=f"{count} result{plural} for “{frame.get('query', '')}”"
                                    + ("" if self.results else ": nothing found."))
        text = self.view._textbox
        for tag in text.tag_names():
            if tag.startswith("result-"):
                text.tag_delete(tag)
        runs: list[tuple[str, tuple[str, ...]]] = []
        for n, found in enumerate(self.results):
            tag = f"result-{n}"
            where = f"#{found['room']}" if "room" in found else \
                f"{found.get('from')} → {found.get('to')}"
            when = time.strftime("%d %b %H:%M", time.localtime(found.get("ts", 0) / 1000))
            runs.append((f"{where} · {found.get('from')} · {when}\n", ("meta", "result", tag)))
            for piece, matched in found.get("snippet", []):
                runs.append((str(piece), ("match", "result", tag) if matched else
                             ("result", tag)))
            runs.append(("\n\n", ()))
            text.tag_bind(tag, "<Button-1>", lambda _e, f=found: self._open(f))
        self.view.replace(runs)
        text.see("1.0")

    def show_error(self, message: str) -> None:
        self.summary.configure(text=message)
