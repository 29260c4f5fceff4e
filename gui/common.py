"""Pieces both windows use: remembered settings, appearance, colours, a bounded text view.

Windows and panels only: nothing here touches a socket or SQL.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from typing import Any

import customtkinter as ctk

APPEARANCES = ("Light", "Dark")  # not "System": it polls the desktop many times a second
POLL_MS = 10  # how often a window drives its socket loop
FONT_MONO = ("DejaVu Sans Mono", 12)

# Nickname colours readable on both backgrounds (light value, dark value).
NICK_COLORS = [
    ("#b03a2e", "#f1948a"), ("#1f618d", "#85c1e9"), ("#117a65", "#76d7c4"),
    ("#7d3c98", "#c39bd3"), ("#b9770e", "#f8c471"), ("#2e4053", "#aeb6bf"),
    ("#a04000", "#f0b27a"), ("#196f3d", "#82e0aa"), ("#6c3483", "#d2b4de"),
    ("#1a5276", "#7fb3d5"),
]


def config_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"),
                                                              ".config")
    return os.path.join(base, "lanchat")


def cache_dir() -> str:
    """Where the window keeps pictures it fetched to show (made when asked for)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".cache")
    path = os.path.join(base, "lanchat", "pictures")
    os.makedirs(path, exist_ok=True)
    return path


class Settings:
    """A small JSON file of remembered values; a broken file is treated as empty."""

    def __init__(self, name: str) -> None:
        self.path = os.path.join(config_dir(), f"{name}.json")
        try:
            with open(self.path, encoding="utf-8") as fh:
                self.values: dict[str, Any] = json.load(fh)
            if not isinstance(self.values, dict):
                self.values = {}
        except (OSError, ValueError):
            self.values = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def update(self, **values: Any) -> None:
        self.values.update(values)
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self.values, fh, indent=1)
            os.replace(tmp, self.path)
        except OSError:
            pass  # settings are a convenience; never fail the window over them


def apply_appearance(mode: str) -> str:
    mode = mode if mode in APPEARANCES else "Light"
    ctk.set_appearance_mode(mode)
    return mode


def is_dark() -> bool:
    return ctk.get_appearance_mode() == "Dark"


def _preferred_color(nick: str) -> int:
    digest = hashlib.blake2s(nick.casefold().encode(), digest_size=2).digest()
    return int.from_bytes(digest, "big") % len(NICK_COLORS)


_colors: dict[str, int] = {}  # nick (casefolded) -> colour index, in this window


def nick_color_index(nick: str) -> int:
    """A colour per nickname: its own (from a hash) unless someone seen earlier has
    it, then the next free one, so the first ten people all differ; past ten, colours
    repeat. Kept for the life of the window, in the users list and the view alike."""
    key = nick.casefold()
    index = _colors.get(key)
    if index is None:
        preferred = _preferred_color(nick)
        used = set(_colors.values())
        index = next((i % len(NICK_COLORS) for i in range(preferred,
                                                          preferred + len(NICK_COLORS))
                      if i % len(NICK_COLORS) not in used), preferred)
        if len(_colors) < 10_000:  # bounded: a window does not meet more people
            _colors[key] = index
    return index


def clock_text(ts_ms: int | None) -> str:
    return time.strftime("%H:%M", time.localtime((ts_ms or 0) / 1000))


def day_text(ts_ms: int | None) -> str:
    """The day a line was written, in full ("Monday 23 November 2026"): separators
    say it once above that day's lines, so older lines are never taken for today's."""
    when = time.localtime((ts_ms or 0) / 1000)
    return f"{time.strftime('%A', when)} {when.tm_mday} {time.strftime('%B %Y', when)}"


class LineView(ctk.CTkTextbox):
    """A read-only text view that keeps at most ``max_lines`` lines.

    ``append`` inserts a batch of (text, tags) runs with one widget update and
    scrolls to the end only if the user was already there (so reading older lines
    is not interrupted; while it reads, up to twice the bound is kept, so the lines it
    reads do not go). ``CTkTextbox`` slows down past a few thousand lines; the bound
    keeps every insert cheap.
    """

    def __init__(self, master: Any, max_lines: int = 1000, **kwargs: Any) -> None:
        super().__init__(master, wrap="word", **kwargs)
        self.max_lines = max_lines
        self.configure(state="disabled")

    def at_bottom(self) -> bool:
        return self._textbox.yview()[1] >= 0.999

    def append(self, runs: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        follow = self.at_bottom()
        text = self._textbox
        text.configure(state="normal")
        for chunk, tags in runs:
            text.insert("end", chunk, tags)
        # A reader scrolled up keeps what it reads: the oldest lines go only past
        # twice the bound then, and back to the bound once it follows the end again.
        keep = self.max_lines if follow else 2 * self.max_lines
        lines = int(text.index("end-1c").split(".")[0])
        if keep and lines > keep:  # max_lines 0: the owner bounds it
            text.delete("1.0", f"{lines - keep + 1}.0")
        text.configure(state="disabled")
        if follow:
            text.see("end")

    def replace(self, runs: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        text = self._textbox
        text.configure(state="normal")
        text.delete("1.0", "end")
        text.configure(state="disabled")
        self.append(runs)
        text.see("end")

    def text(self) -> str:
        return self._textbox.get("1.0", "end-1c")

    def line_count(self) -> int:
        return int(self._textbox.index("end-1c").split(".")[0])
