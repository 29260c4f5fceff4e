"""The chat window's middle: the open conversation's lines, who is typing, the input.

The panel shows what ``ChatState`` says changed and hands what the user typed to the
window; it knows nothing of the connection. Up and Down recall earlier input, except
lines holding a password.
"""

from __future__ import annotations

import re
import tkinter
import webbrowser
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import customtkinter as ctk

from chat.chatstate import Conversation, Line
from chat.commands import is_secret
from chat.transfers import describe
from gui.common import NICK_COLORS, LineView, clock_text, day_text, nick_color_index

REACTS = ("👍", "❤️", "😂", "🎉", "😮", "✅")  # the reactions a message's menu offers
CONTINUATION = " " * 9  # indents the later lines of a multi-line message under its text
URL = re.compile(r"https?://[^\s<>\"']+")
TRAILING = ".,;:!?)]}"  # punctuation after an address is not part of it
VIEW_LINES = 1000  # conversation lines rendered at once (Tk slows past a few thousand)
PAGE = 200  # lines rendered above or below the window when the reader reaches its edge

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
                                          command=self.older_event)
        self.older_button.grid(row=0, column=2)
        # the room's topic under its name; its operators open the settings from here
        self.topic_label = ctk.CTkLabel(head, text="", anchor="w", justify="left",
                                        wraplength=520, text_color=("gray30", "gray70"))
        self.topic_label.grid(row=1, column=0, columnspan=2, sticky="w")
        self.settings_button = ctk.CTkButton(head, text="Room settings", width=110,
                                             command=lambda: self._settings())
        self._settings: Callable[[], None] = lambda: None
        self.view = LineView(self, max_lines=0, font=ctk.CTkFont(size=13))
        self.view.grid(row=1, column=0, padx=5, pady=5, sticky="nsew")
        # The view renders lines lo..hi (places in the conversation, see
        # Conversation.base) of the conversation `_shown_key`: text lines per line in
        # `_heights`, whether each starts with a day separator in `_seps`, and
        # whether "the beginning of #room" is shown above them.
        self._shown_key: str | None = None
        self._conv: Conversation | None = None
        self._lo = self._hi = 0
        self._heights: deque[int] = deque()
        self._seps: deque[bool] = deque()
        self._begin = False
        self._edge_pending = False
        scrollbar_set = self.view._textbox.cget("yscrollcommand")
        self.view._textbox.configure(yscrollcommand=lambda *a: self._view_moved(
            scrollbar_set, *a))
        # Shown over the view's bottom while the reader is scrolled up and new lines
        # arrived below: one click goes down to them.
        self.jump_button = ctk.CTkButton(self, text="", height=26, corner_radius=13,
                                         command=self.jump_event)
        self._unseen_below = 0
        self._jump_shown = 0  # the count the button shows
        text = self.view._textbox
        text.tag_bind("link", "<Button-1>", self.link_event)
        text.tag_bind("link", "<Enter>", lambda _e: text.configure(cursor="hand2"))
        text.tag_bind("link", "<Leave>", lambda _e: text.configure(cursor=""))
        self.typing_label = ctk.CTkLabel(self, text="", height=16,
                                         font=ctk.CTkFont(size=11, slant="italic"))
        self.typing_label.grid(row=2, column=0, padx=8, sticky="w")
        # why one may not speak here now (a quiet room), over the input
        self.speak_label = ctk.CTkLabel(self, text="", height=16, anchor="w",
                                        text_color=("gray30", "gray70"))
        # what the next send does, over the input: answer a message, or change one's own
        self.reply_label = ctk.CTkLabel(self, text="", height=16, anchor="w",
                                        text_color=("#2471a3", "#7fb3d5"))
        self.replying: Line | None = None
        self.editing: Line | None = None
        self._act: Callable[[str, Line, str], None] = lambda _k, _l, _a: None
        self.can_delete_all = False  # an operator of the open room deletes any message
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
        self.entry.bind("<Escape>", lambda _e: self.compose(None, None))
        text.bind("<Button-3>", self._message_menu)
        text.tag_bind("quote", "<Button-1>", self._quote_clicked)
        self.menu: tkinter.Menu | None = None
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
        view.tag_config("begin", foreground="#909497", justify="center")
        view.tag_config("unread", foreground="#c0392b" if not dark else "#f1948a",
                        justify="center")
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
        view.tag_config("quote", foreground="#909497")
        view.tag_config("gone", foreground="#909497")
        view.tag_config("reactions", foreground="#5d6d7e" if not dark else "#aab7b8")

    # ------------------------------------------------------------ showing

    def show(self, conv: Conversation, appended: list[Line] | None, redraw: bool,
             prepended: int = 0) -> None:
        """``conv`` is open: render it from scratch, or follow what it gained this
        tick (lines at the end, an older page in front)."""
        self._conv = conv
        if redraw or self._shown_key != conv.key or self._lo < conv.base:
            self._render_end(conv)
        else:
            if prepended and self._lo == conv.base + prepended:
                self._grow_up(conv)  # the reader is at the top: the page goes above
            elif prepended and self._begin:
                self._set_begin(conv)
            if appended:
                self._follow(conv, appended)
        if self._unseen_below and self.view.at_bottom() and \
                self._hi == conv.base + len(conv.lines):
            self._unseen_below = 0  # the reader scrolled down by itself
        self._show_jump()
        if self.header.cget("text") != conv.label:
            self.header.configure(text=conv.label)
        older = "normal" if (conv.more or self._lo > conv.base) else "disabled"
        if self.older_button.cget("state") != older:
            self.older_button.configure(state=older)

    # The rendered window: its lines' runs inserted and deleted by whole lines.

    def _runs(self, conv: Conversation, lines: Iterable[Line], day: str | None
              ) -> tuple[Runs, list[int], list[bool], str | None]:
        out: Runs = []
        heights, seps = [], []
        for line in lines:
            block, new_day = runs((line,), day)
            if line is conv.divider:
                block.insert(0, ("──────  new since you left  ──────\n", ("unread",)))
            out += block
            heights.append(sum(chunk.count("\n") for chunk, _tags in block))
            seps.append(new_day != day)
            day = new_day
        return out, heights, seps, day

    def _insert(self, index: str, shown: Runs) -> None:
        text = self.view._textbox
        text.mark_set("lanchat-at", index)
        text.mark_gravity("lanchat-at", "right")
        for chunk, tags in shown:
            text.insert("lanchat-at", chunk, tags)

    def _render_end(self, conv: Conversation) -> None:
        """The newest lines (or from the "new since you left" divider on)."""
        start = max(0, len(conv.lines) - VIEW_LINES)
        if conv.divider is not None:
            where = next((i for i, ln in enumerate(conv.lines) if ln is conv.divider), None)
            if where is not None:
                start = max(0, min(start, where - PAGE))
        self._render_from(conv, start)

    def _render_from(self, conv: Conversation, start: int) -> None:
        self._shown_key = conv.key
        lines = list(conv.lines)[start:start + VIEW_LINES]
        self._lo, self._hi = conv.base + start, conv.base + start + len(lines)
        shown, heights, seps, self._day = self._runs(conv, lines, None)
        text = self.view._textbox
        text.configure(state="normal")
        text.delete("1.0", "end")
        self._insert("1.0", shown)
        self._heights, self._seps, self._begin = deque(heights), deque(seps), False
        self._set_begin(conv, edit=False)
        text.configure(state="disabled")
        self._unseen_below = max(0, sum(ln.kind in ("message", "action")
                                        for ln in list(conv.lines)[start + len(lines):]))
        self._note_files(lines)
        if conv.divider is not None and text.tag_ranges("unread"):
            text.see("end")
            text.yview(text.tag_ranges("unread")[0])
        else:
            text.see("end")

    def _set_begin(self, conv: Conversation, edit: bool = True) -> None:
        """ "The beginning of #room" above the first line, when it is the room's first."""
        want = conv.kind == "room" and self._lo == conv.base and not conv.more
        if want == self._begin:
            return
        text = self.view._textbox
        top = text.index("@0,0")
        if edit:
            text.configure(state="normal")
        if want:
            self._insert("1.0", [(f"──────  the beginning of #{conv.name}  ──────\n",
                                  ("begin",))])
        else:
            text.delete("1.0", "2.0")
        if edit:
            text.configure(state="disabled")
        self._begin = want
        self._keep_top(top, 1 if want else -1)

    def _keep_top(self, top: str, moved: int) -> None:
        """Keep the line the reader looks at on top after ``moved`` text lines were
        put above it (or taken, when negative)."""
        line, column = top.split(".")
        if moved:
            self.view._textbox.yview(f"{max(1, int(line) + moved)}.{column}")

    def _grow_up(self, conv: Conversation) -> None:
        """Render up to PAGE lines above the window (from memory), dropping as many
        from the far end: what the reader looks at stays where it is."""
        first = self._lo - conv.base
        if first <= 0:
            self._set_begin(conv)
            return
        lines = list(conv.lines)[max(0, first - PAGE):first]
        shown, heights, seps, day = self._runs(conv, lines, None)
        text = self.view._textbox
        top = text.index("@0,0")
        header = self._begin + (self._seps[0] if self._seps else 0)
        if int(top.split(".")[0]) <= header:  # on a separator: keep the line under it
            top = f"{header + 1}.0"
        text.configure(state="normal")
        moved = 0
        if self._begin:
            text.delete("1.0", "2.0")
            self._begin, moved = False, -1
        # the first line already shown keeps its day separator only if the day changed
        old_first = self._conv_line(conv, self._lo)
        if old_first is not None:
            same = day == day_text(old_first.ts)
            if same and self._seps[0]:
                text.delete("1.0", "2.0")
                self._heights[0] -= 1
                self._seps[0], moved = False, moved - 1
            elif not same and not self._seps[0]:
                sep = f"──────  {day_text(old_first.ts)}  ──────\n"
                self._insert("1.0", [(sep, ("day",))])
                self._heights[0] += 1
                self._seps[0], moved = True, moved + 1
        self._insert("1.0", shown)
        moved += sum(heights)
        self._heights.extendleft(reversed(heights))
        self._seps.extendleft(reversed(seps))
        self._lo -= len(lines)
        self._trim_end(len(self._heights) - VIEW_LINES)
        last = self._conv_line(conv, self._hi - 1)
        self._day = day_text(last.ts) if last is not None else None
        text.configure(state="disabled")
        self._keep_top(top, moved)
        self._set_begin(conv)
        self._note_files(lines)

    def _grow_down(self, conv: Conversation) -> None:
        """Render up to PAGE lines below the window, dropping as many above it."""
        last = self._hi - conv.base
        lines = list(conv.lines)[last:last + PAGE]
        if not lines:
            return
        before = self._conv_line(conv, self._hi - 1)
        top, moved = self._add_below(conv, lines, day_text(before.ts) if before else None,
                                     trim=True)
        self._keep_top(top, -moved)
        if self._hi == conv.base + len(conv.lines):
            self._unseen_below = 0

    def _follow(self, conv: Conversation, appended: list[Line]) -> None:
        """Lines added at the conversation's end: rendered if the window reaches the
        end (bounded: the top goes while the reader follows, and nothing more is
        rendered past twice the bound while it reads above); else counted."""
        end = conv.base + len(conv.lines)
        messages = sum(ln.kind in ("message", "action") for ln in appended)
        follow = self.view.at_bottom()
        if self._hi != end - len(appended) or (not follow and
                                               len(self._heights) >= 2 * VIEW_LINES):
            self._unseen_below += messages
            return
        self._add_below(conv, appended, self._day, trim=follow)
        if follow:
            self.view._textbox.see("end")
        else:
            self._unseen_below += messages

    def _add_below(self, conv: Conversation, lines: list[Line], day: str | None, *,
                   trim: bool) -> tuple[str, int]:
        """Render ``lines`` after the window (``day``: the day of the line before
        them); with ``trim``, as many lines above go past the bound. Returns the top
        index before and the text lines taken above."""
        shown, heights, seps, self._day = self._runs(conv, lines, day)
        text = self.view._textbox
        top = text.index("@0,0")
        text.configure(state="normal")
        self._insert("end-1c", shown)
        self._heights.extend(heights)
        self._seps.extend(seps)
        self._hi += len(lines)
        moved = self._trim_start(len(self._heights) - VIEW_LINES) if trim else 0
        text.configure(state="disabled")
        self._note_files(lines)
        return top, moved

    def _trim_start(self, count: int) -> int:
        """Take ``count`` lines off the top; the text lines taken."""
        if count <= 0:
            return 0
        drop = sum(self._heights.popleft() for _ in range(count))
        for _ in range(count):
            self._seps.popleft()
        drop += self._begin
        self._begin = False
        self._lo += count
        self.view._textbox.delete("1.0", f"{drop + 1}.0")
        return drop

    def _trim_end(self, count: int) -> None:
        if count <= 0:
            return
        drop = sum(self._heights.pop() for _ in range(count))
        for _ in range(count):
            self._seps.pop()
        self._hi -= count
        self.view._textbox.delete(f"end-1c -{drop} lines", "end-1c")

    @staticmethod
    def _conv_line(conv: Conversation, place: int) -> Line | None:
        i = place - conv.base
        return conv.lines[i] if 0 <= i < len(conv.lines) else None

    def _view_moved(self, scrollbar_set: Any, first: str, last: str) -> None:
        """Every move of the view (wheel, keys, scrollbar, Ctrl+Home): at an edge of
        the window, the next page is rendered (or asked of the server)."""
        if scrollbar_set:
            self.view._textbox.tk.call(scrollbar_set, first, last)
        if not self._edge_pending and (float(first) <= 0.0 or float(last) >= 1.0):
            self._edge_pending = True
            self.after_idle(self._at_edge)

    def _at_edge(self) -> None:
        self._edge_pending = False
        conv = self._conv
        if conv is None or self._shown_key != conv.key:
            return
        first, last = self.view._textbox.yview()
        if first <= 0.0:
            if self._lo > conv.base:
                self._grow_up(conv)
            elif conv.more and not conv.loading:
                self._older()
        if last >= 1.0 and self._hi < conv.base + len(conv.lines):
            self._grow_down(conv)
        self._show_jump()

    def older_event(self) -> None:
        """The button: the page above, from memory or from the server."""
        conv = self._conv
        if conv is not None and self._lo > conv.base:
            self._grow_up(conv)
            self.view._textbox.yview("1.0")
        else:
            self._older()

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
        conv = self._conv
        if not where and conv is not None:  # held but not rendered: render around it
            place = next((i for i, ln in enumerate(conv.lines) if ln.id == msg_id), None)
            if place is not None:
                self._render_from(conv, max(0, place - PAGE))
                self._show_jump()
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
        conv = self._conv
        if conv is not None and self._hi < conv.base + len(conv.lines):
            conv.divider = None
            self._render_end(conv)
        self.view._textbox.see("end")
        self._unseen_below = 0
        self._show_jump()

    def show_room(self, topic: str, by: str, operator: bool, muted: str,
                  settings: Callable[[], None]) -> None:
        """The topic under the title, the settings button for operators, and why one
        may not speak (empty strings: nothing to show)."""
        self._settings = settings
        shown = f"Topic: {topic}" + (f"  (set by {by})" if by else "") if topic else \
            ("No topic yet: set one in Room settings." if operator else "")
        if self.topic_label.cget("text") != shown:
            self.topic_label.configure(text=shown)
        if operator != bool(self.settings_button.winfo_ismapped()):
            if operator:
                self.settings_button.grid(row=0, column=1, padx=(0, 6))
            else:
                self.settings_button.grid_remove()
        if self.speak_label.cget("text") != muted:
            self.speak_label.configure(text=muted)
            if muted:
                self.speak_label.grid(row=4, column=0, padx=8, pady=(0, 6), sticky="w")
            else:
                self.speak_label.grid_remove()

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
        replying, editing = self.replying, self.editing
        self.compose(None, None)
        if editing is not None:
            if text != editing.text:
                self._act("edit", editing, text)
        elif replying is not None and not text.startswith("/"):
            self._act("reply", replying, text)
        else:
            self._send(text)

    # ------------------------------------------------------------ a message's menu

    def on_messages(self, act: Callable[[str, Line, str], None]) -> None:
        """``act(kind, line, arg)`` does what the user chose for a message: "reply"
        (arg: the text), "edit" (the new text), "delete", "react" (the emoji)."""
        self._act = act

    def compose(self, reply: Line | None, edit: Line | None) -> None:
        """The next send answers ``reply``, or changes ``edit`` (None, None: neither)."""
        if self.editing is not None and edit is None:
            self.entry.delete("1.0", "end")
        self.replying, self.editing = reply, edit
        shown = reply or edit
        if shown is None:
            self.reply_label.grid_remove()
            return
        text = shown.text.replace("\n", " ")
        text = text[:80] + ("…" if len(text) > 80 else "")
        self.reply_label.configure(text=f"Replying to {shown.nick}: {text}   (Esc cancels)"
                                   if reply else "Editing your message   (Esc cancels)")
        self.reply_label.grid(row=2, column=0, padx=8, sticky="e")
        if edit is not None:
            self.entry.delete("1.0", "end")
            self.entry.insert("1.0", edit.text)
        self.entry.focus_set()

    def line_at(self, x: int, y: int) -> Line | None:
        """The message shown at (x, y) of the view (its line, its quote or its
        reactions), or None."""
        text = self.view._textbox
        start = text.index(f"@{x},{y} linestart")
        for tag in text.tag_names(start):
            if tag.startswith(("id", "of")) and tag[2:].isdigit() and self._conv is not None:
                msg_id = int(tag[2:])
                return next((ln for ln in self._conv.lines if ln.id == msg_id), None)
        return None

    def message_menu(self, line: Line) -> tkinter.Menu:
        """What can be done with ``line`` (posted at a right-click on it)."""
        menu = tkinter.Menu(self, tearoff=False)
        menu.add_command(label="Reply", command=lambda: self.compose(line, None))
        for emoji in REACTS:  # a second time takes it back
            menu.add_command(label=f"React {emoji}", command=partial(self._act, "react",
                                                                      line, emoji))
        if line.own and line.file is None:
            menu.add_command(label="Edit", command=lambda: self.compose(None, line))
        if line.own or self.can_delete_all:
            menu.add_command(label="Delete", command=lambda: self._act("delete", line, ""))
        self.menu = menu
        return menu

    def _message_menu(self, event: Any) -> str | None:
        line = self.line_at(event.x, event.y)
        if line is None or line.deleted:
            return None
        self.message_menu(line).tk_popup(event.x_root, event.y_root)
        return "break"

    def _quote_clicked(self, event: Any) -> None:
        line = self.line_at(event.x, event.y)
        if line is not None and line.reply_to is not None:
            self.reveal(line.reply_to)

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
        if line.quote:  # a reply: what it answers, above it
            out.append((f"{CONTINUATION}↪ {line.quote}\n", ("quote", f"of{line.id}")))
        # a message's first run carries its id: a search result is found by it
        out.append((clock_text(line.ts) + "  ", ("time", f"id{line.id}") if line.id else
                    ("time",)))
        extra = ("own",) if line.own else ("mention",) if line.mention else ()
        text = line.text.replace("\n", "\n" + CONTINUATION)
        if line.deleted:
            out.append((line.nick, (f"nick{nick_color_index(line.nick)}", *extra)))
            out.append((": ", extra))
            out.append(("message deleted\n", ("gone",)))
            continue
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
            out += linked(text, extra)
            out.append(("  (edited)\n" if line.edited else "\n", ("time",)))
        elif line.kind == "action":
            out.append((f"* {line.nick} ", (f"nick{nick_color_index(line.nick)}", *extra)))
            out += linked(text, extra)
            out.append(("  (edited)\n" if line.edited else "\n", ("time",)))
        else:
            out.append((text + "\n", (line.kind,)))
        if line.reactions:  # under the message: each emoji, how many
            shown = "   ".join(f"{emoji} {len(who)}" for emoji, who in line.reactions.items())
            out.append((f"{CONTINUATION}{shown}\n", ("reactions", f"of{line.id}")))
    return out, day
