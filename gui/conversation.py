"""The chat window's middle: the open conversation's lines, who is typing, the input.

The panel shows what ``ChatState`` says changed and hands what the user typed to the
window; it knows nothing of the connection. Up and Down recall earlier input, except
lines holding a password.
"""

from __future__ import annotations

import re
import tkinter
import webbrowser
from collections.abc import Callable, Iterable
from typing import Any

import customtkinter as ctk

from chat.chatstate import MAX_LINES, Conversation, Line
from chat.commands import is_secret
from chat.transfers import describe
from gui.common import NICK_COLORS, LineView, clock_text, day_text, nick_color_index

CONTINUATION = " " * 9  # indents the later lines of a multi-line message under its text
URL = re.compile(r"https?://[^\s<>\"']+")
TRAILING = ".,;:!?)]}"  # punctuation after an address is not part of it

Runs = list[tuple[str, tuple[str, ...]]]


class ConversationPanel(ctk.CTkFrame):
    """``send`` gets each input (Return or the Send button), ``older`` asks for
    earlier messages (the button, or scrolling to the top), ``typed`` hears every
    other key press."""

    def __init__(self, master: Any, send: Callable[[str], None], older: Callable[[], None],
                 typed: Callable[[], None]) -> None:
        super().__init__(master, fg_color="transparent")
        self._send, self._older, self._typed = send, older, typed
        self.sent_lines: list[str] = []
        self._recall = 0
        self._shown_typing = ""
        self._day: str | None = None  # the day of the last line shown
        self.grid_columnconfigure(0, weight=1)
        self.grid_rowconfigure(1, weight=1)
        head = ctk.CTkFrame(self, fg_color="transparent")
        head.grid(row=0, column=0, padx=5, pady=(10, 0), sticky="ew")
        head.grid_columnconfigure(0, weight=1)
        self.header = ctk.CTkLabel(head, text="", font=ctk.CTkFont(size=16, weight="bold"))
        self.header.grid(row=0, column=0, sticky="w")
        self.older_button = ctk.CTkButton(head, text="Load older messages", width=150,
                                          command=older)
        self.older_button.grid(row=0, column=1)
        self.view = LineView(self, max_lines=MAX_LINES, font=ctk.CTkFont(size=13))
        self.view.grid(row=1, column=0, padx=5, pady=5, sticky="nsew")
        # Shown over the view's bottom while the reader is scrolled up and new lines
        # arrived below: one click goes down to them.
        self.jump_button = ctk.CTkButton(self, text="", height=26, corner_radius=13,
                                         command=self.jump_event)
        self._unseen_below = 0
        self._jump_shown = 0  # the count the button shows
        for widget in (self.view, self.view._textbox):
            widget.bind("<Button-4>", self._scrolled, add=True)
            widget.bind("<MouseWheel>", self._scrolled, add=True)
        text = self.view._textbox
        text.tag_bind("link", "<Button-1>", self.link_event)
        text.tag_bind("link", "<Enter>", lambda _e: text.configure(cursor="hand2"))
        text.tag_bind("link", "<Leave>", lambda _e: text.configure(cursor=""))
        self.typing_label = ctk.CTkLabel(self, text="", height=16,
                                         font=ctk.CTkFont(size=11, slant="italic"))
        self.typing_label.grid(row=2, column=0, padx=8, sticky="w")
        bottom = ctk.CTkFrame(self, fg_color="transparent")
        bottom.grid(row=3, column=0, padx=5, pady=(0, 10), sticky="ew")
        bottom.grid_columnconfigure(0, weight=1)
        self.entry = ctk.CTkTextbox(bottom, height=56, wrap="word", font=ctk.CTkFont(size=13))
        self.entry.grid(row=0, column=0, sticky="ew")
        self.entry.bind("<Return>", self._return_key)
        self.entry.bind("<Shift-Return>", lambda _e: None)  # the default: a new line
        self.entry.bind("<Up>", lambda _e: self.recall_key(-1))
        self.entry.bind("<Down>", lambda _e: self.recall_key(1))
        self.entry.bind("<KeyPress>", self._key, add=True)
        self.send_button = ctk.CTkButton(bottom, text="Send", width=70,
                                         command=self.send_event)
        self.send_button.grid(row=0, column=1, padx=(6, 0))
        self.attach_button = ctk.CTkButton(bottom, text="File…", width=60,
                                           command=lambda: self._attach())
        self.attach_button.grid(row=0, column=2, padx=(6, 0))
        # Files on their way up or down: one line and a bar (the first under way).
        self.transfer_row = ctk.CTkFrame(self, fg_color="transparent")
        self.transfer_row.grid_columnconfigure(0, weight=1)
        self.transfer_label = ctk.CTkLabel(self.transfer_row, text="", height=16, anchor="w")
        self.transfer_label.grid(row=0, column=0, sticky="ew")
        self.resume_button = ctk.CTkButton(self.transfer_row, text="Resume", width=80,
                                           height=24)
        self.transfer_bar = ctk.CTkProgressBar(self, height=10)
        self.transfer_bar.set(0)
        text.tag_bind("filelink", "<Button-1>", self._file_clicked)
        text.tag_bind("filelink", "<Enter>", lambda _e: text.configure(cursor="hand2"))
        text.tag_bind("filelink", "<Leave>", lambda _e: text.configure(cursor=""))
        self.files: dict[str, dict[str, Any]] = {}  # file id -> file, for clicks
        self.thumbnails: dict[str, tkinter.PhotoImage] = {}  # file id -> its picture
        self._attach: Callable[[], None] = lambda: None
        self._open_file: Callable[[dict[str, Any]], None] = lambda _f: None

    def style(self, dark: bool) -> None:
        view = self.view
        for i, colors in enumerate(NICK_COLORS):
            view.tag_config(f"nick{i}", foreground=colors[dark])
        view.tag_config("time", foreground="#909497")
        view.tag_config("day", foreground="#909497", justify="center")
        view.tag_config("link", foreground="#2471a3" if not dark else "#7fb3d5",
                        underline=True)
        # help and /list lines: "what<TAB>meaning", the second column at one tab stop
        view.tag_config("help", tabs=("300",), lmargin2=300)
        view.tag_config("system", foreground="#909497")
        view.tag_config("notice", foreground="#2471a3" if not dark else "#7fb3d5")
        view.tag_config("error", foreground="#c0392b" if not dark else "#f1948a")
        view.tag_config("own", background="#eef3f8" if not dark else "#253240")
        view.tag_config("mention", background="#fdebd0" if not dark else "#5b4417")
        view.tag_config("found", background="#aed6f1" if not dark else "#1f618d")
        view.tag_config("filelink", foreground="#1a5276" if not dark else "#85c1e9",
                        underline=True)

    # ------------------------------------------------------------ showing

    def show(self, conv: Conversation, appended: list[Line] | None, redraw: bool) -> None:
        """``conv`` is open: redraw it, or add the lines it gained this tick."""
        if redraw:
            shown, self._day = runs(conv.lines, None)
            self.view.replace(shown)
            self._unseen_below = 0
            self._note_files(conv.lines)
        elif appended:
            shown, self._day = runs(appended, self._day)
            self.view.append(shown)
            self._note_files(appended)
            if not self.view.at_bottom():
                self._unseen_below += sum(ln.kind in ("message", "action") for ln in appended)
        if self._unseen_below and self.view.at_bottom():
            self._unseen_below = 0  # the reader scrolled down by itself
        self._show_jump()
        if self.header.cget("text") != conv.label:
            self.header.configure(text=conv.label)
        older = "normal" if conv.more else "disabled"
        if self.older_button.cget("state") != older:
            self.older_button.configure(state=older)

    def on_files(self, attach: Callable[[], None],
                 open_file: Callable[[dict[str, Any]], None]) -> None:
        """``attach``: the File… button; ``open_file``: a click on a file's line."""
        self._attach, self._open_file = attach, open_file

    def _note_files(self, lines: Iterable[Line]) -> None:
        found = False
        for line in lines:
            if line.file is not None:
                self.files[str(line.file["id"])] = line.file
                found = True
        if found and self.thumbnails:
            self.place_thumbnails()

    def _file_clicked(self, event: Any) -> None:
        text = self.view._textbox
        for tag in text.tag_names(f"@{event.x},{event.y}"):
            if tag.startswith("file-") and tag[5:] in self.files:
                self._open_file(self.files[tag[5:]])
                return

    def show_transfer(self, what: str, progress: float | None,
                      resume: Callable[[], None] | None = None) -> None:
        """A file under way ("" and None: none); with ``resume``, transfers that were
        cut, and the button that takes them up again."""
        if not what:
            self.transfer_row.grid_remove()
            self.transfer_bar.grid_remove()
            return
        if self.transfer_label.cget("text") != what:
            self.transfer_label.configure(text=what)
        self.transfer_row.grid(row=4, column=0, padx=8, sticky="ew")
        if resume is None:
            self.resume_button.grid_remove()
        else:
            self.resume_button.configure(command=resume)
            self.resume_button.grid(row=0, column=1, padx=(8, 0), pady=2)
        if progress is None:
            self.transfer_bar.grid_remove()
        else:
            self.transfer_bar.set(progress)
            self.transfer_bar.grid(row=5, column=0, padx=8, pady=(0, 8), sticky="ew")

    def place_thumbnails(self) -> None:
        """Show each picture after its file's line (where the view has one)."""
        text = self.view._textbox
        text.configure(state="normal")
        for file_id, image in self.thumbnails.items():
            spans = text.tag_ranges(f"thumb-{file_id}")
            for start in spans[::2]:
                # the picture goes just before the tagged character: shown there already?
                if not text.dump(f"{start} -1c", start, image=True):
                    text.image_create(start, image=image, padx=4, pady=4)
        text.configure(state="disabled")

    def reveal(self, msg_id: int) -> bool:
        """Bring message ``msg_id`` into the middle of the view and mark it a while;
        whether it is shown."""
        text = self.view._textbox
        where = text.tag_ranges(f"id{msg_id}")
        if not where:
            return False
        text.tag_remove("found", "1.0", "end")
        text.tag_add("found", where[0], f"{where[0]} lineend")
        text.see(where[0])
        self.after(4000, lambda: text.tag_remove("found", "1.0", "end"))
        return True

    def link_event(self, event: Any) -> None:
        """A click on a web address opens it in the browser."""
        text = self.view._textbox
        span = text.tag_prevrange("link", f"@{event.x},{event.y} + 1c")
        if span:
            webbrowser.open(text.get(*span))

    def _show_jump(self) -> None:
        count = self._unseen_below
        if count == self._jump_shown:  # every tick: no Tk call unless it changed
            return
        self._jump_shown = count
        text = f"↓  {count} new message{'' if count == 1 else 's'}" if count else ""
        self.jump_button.configure(text=text)
        if count:
            self.jump_button.place(in_=self.view, relx=0.5, rely=1.0, y=-8, anchor="s")
        else:
            self.jump_button.place_forget()

    def jump_event(self) -> None:
        """Down to the newest lines."""
        self.view._textbox.see("end")
        self._unseen_below = 0
        self._show_jump()

    def show_typing(self, nicks: list[str]) -> None:
        shown = "" if not nicks else (
            f"{nicks[0]} is typing…" if len(nicks) == 1 else
            f"{', '.join(nicks[:3])} are typing…")
        if shown != self._shown_typing:
            self._shown_typing = shown
            self.typing_label.configure(text=shown)

    # ------------------------------------------------------------ input

    def send_event(self) -> None:
        text = self.entry.get("1.0", "end-1c")
        if not text.strip():
            return
        self.entry.delete("1.0", "end")
        if not is_secret(text):  # a password is never recalled with Up
            self.sent_lines.append(text)
        self._recall = len(self.sent_lines)
        self._send(text)

    def recall_key(self, step: int) -> str | None:
        """Up on the input's first line, Down on its last, recall what was sent;
        elsewhere in a multi-line input they move the cursor as usual."""
        here = int(self.entry.index("insert").split(".")[0])
        last = int(self.entry.index("end-1c").split(".")[0])
        if not self.sent_lines or (step < 0 and here != 1) or (step > 0 and here != last):
            return None
        self._recall = max(0, min(len(self.sent_lines), self._recall + step))
        text = self.sent_lines[self._recall] if self._recall < len(self.sent_lines) else ""
        self.entry.delete("1.0", "end")
        self.entry.insert("1.0", text)
        return "break"

    def _return_key(self, _event: Any) -> str:
        self.send_event()
        return "break"

    def _key(self, event: Any) -> None:
        if event.keysym not in ("Return", "Up", "Down"):
            self._typed()

    def _scrolled(self, _event: Any) -> None:
        if self.view._textbox.yview()[0] <= 0.0:
            self._older()


def linked(text: str, tags: tuple[str, ...]) -> Runs:
    """``text`` as runs, its web addresses tagged ``link`` (clicked: opened)."""
    out: Runs = []
    start = 0
    for match in URL.finditer(text):
        url_end = match.end()
        while url_end > match.start() and text[url_end - 1] in TRAILING:
            url_end -= 1  # "see https://example.org." ends before the full stop
        if match.start() > start:
            out.append((text[start:match.start()], tags))
        out.append((text[match.start():url_end], (*tags, "link")))
        start = url_end
    out.append((text[start:], tags))
    return out


def runs(lines: Iterable[Line], day: str | None) -> tuple[Runs, str | None]:
    """Text runs with their tags: a separator where the day changes (after ``day``,
    the day of the line shown before these), then time, coloured nick, text indented
    under itself. Returns the runs and the day of the last line."""
    out: Runs = []
    for line in lines:
        line_day = day_text(line.ts)
        if line_day != day:
            day = line_day
            out.append((f"──────  {line_day}  ──────\n", ("day",)))
        # a message's first run carries its id: a search result is found by it
        out.append((clock_text(line.ts) + "  ", ("time", f"id{line.id}") if line.id else
                    ("time",)))
        extra = ("own",) if line.own else ("mention",) if line.mention else ()
        text = line.text.replace("\n", "\n" + CONTINUATION)
        if line.kind == "message" and line.file is not None:
            out.append((line.nick, (f"nick{nick_color_index(line.nick)}", *extra)))
            out.append((": ", extra))
            file_id = str(line.file["id"])
            out.append((f"[file] {describe(line.file)}", ("filelink", f"file-{file_id}",
                                                          *extra)))
            out.append(("  (click to save)", ("time",)))
            out.append(("\n", (f"thumb-{file_id}",)))
        elif line.kind == "message":
            out.append((line.nick, (f"nick{nick_color_index(line.nick)}", *extra)))
            out.append((": ", extra))
            out += linked(text + "\n", extra)
        elif line.kind == "action":
            out.append((f"* {line.nick} ", (f"nick{nick_color_index(line.nick)}", *extra)))
            out += linked(text + "\n", extra)
        else:
            out.append((text + "\n", (line.kind,)))
    return out, day
