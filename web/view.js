// Rendering of the page: the message log, the conversation lists, the people here.
// Every text from the network is inserted with textContent (or as a text node),
// never as HTML: a message is shown exactly as typed and can run nothing.

import { sizeText } from "./chat.js";

const LINK = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
const DAY = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });
const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const SHOWN = 500; // messages drawn in the page at once (a window over those held)
const PAGE = 100; // messages drawn above or below the window when the reader reaches its edge
const EDGE = 300; // px from the top or the bottom that count as reaching it

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

export function dayOf(ts) {
  const date = new Date(ts);
  return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;
}

export function dayText(ts, now = Date.now()) {
  const day = dayOf(ts);
  if (day === dayOf(now)) return "Today";
  if (day === dayOf(now - 86400000)) return "Yesterday";
  return DAY.format(new Date(ts));
}

// A colour per nickname, as the desktop window does: its own (from a hash) unless
// someone met earlier has it, then the next free one, so the first ten people differ.
const HUES = [5, 205, 165, 280, 38, 215, 22, 140, 300, 195];
const hues = new Map(); // folded nick -> index into HUES
export function hue(nick) {
  const key = nick.toLowerCase();
  let index = hues.get(key);
  if (index === undefined) {
    let h = 2166136261; // FNV-1a
    for (const ch of key) h = Math.imul(h ^ ch.codePointAt(0), 16777619) >>> 0;
    const used = new Set(hues.values());
    index = h % HUES.length;
    for (let i = 0; i < HUES.length && used.has(index); i++) index = (index + 1) % HUES.length;
    if (hues.size < 10000) hues.set(key, index); // bounded: a page does not meet more
  }
  return HUES[index];
}

// Text with its links clickable: http(s) only, opened in a new tab, no referrer.
export function richText(text) {
  const span = el("span", { class: "text" });
  let last = 0;
  for (const match of text.matchAll(LINK)) {
    span.append(document.createTextNode(text.slice(last, match.index)));
    const a = el("a", { href: match[0], text: match[0], target: "_blank", rel: "noopener noreferrer" });
    span.append(a);
    last = match.index + match[0].length;
  }
  span.append(document.createTextNode(text.slice(last)));
  return span;
}


// A file a message carries: its name and size to click (saves it), a progress bar
// while it comes, and for a small image the image itself.
function fileBox(file, chat) {
  const box = el("span", { class: "file", "data-file": file.id });
  const button = el("button", { type: "button", class: "file-link", title: "Save this file" },
    el("span", { class: "file-name", text: file.name }),
    el("span", { class: "file-size", text: ` · ${sizeText(file.size)} · save` }));
  button.addEventListener("click", () => chat.fetchFile(file, true));
  box.append(button, el("progress", { class: "file-progress", max: Math.max(1, file.size), value: 0, hidden: true }));
  if (chat.wantsPreview(file)) {
    const img = el("img", { class: "preview", alt: file.name });
    const url = chat.fetched.get(file.id);
    if (url) img.src = url;
    else queueMicrotask(() => chat.fetchFile(file, false));
    box.append(img);
  }
  return box;
}

// The line a reply shows above it: who said what it answers (a click goes there).
function quoteOf(entry, chat, conv) {
  const answered = conv ? chat.findMessage(conv, entry.reply_to) : null;
  const said = !answered ? "an earlier message" : answered.deleted ? `${answered.from}: message deleted`
    : `${answered.from}: ${answered.text.length > 80 ? `${answered.text.slice(0, 80)}…` : answered.text}`;
  const quote = el("button", { type: "button", class: "quote", text: `↪ ${said}`,
    title: "Show the message this answers" });
  quote.setAttribute("aria-label", `In reply to ${said}. Show it`);
  quote.addEventListener("click", () => { if (conv) chat.reveal(conv, entry.reply_to); });
  return quote;
}

// Reactions under a message: each emoji with how many, pressed when one's own.
function reactionsOf(entry, me, chat) {
  const bar = el("div", { class: "reactions" });
  for (const [emoji, who] of Object.entries(entry.reactions || {})) {
    const mine = who.includes(me);
    const button = el("button", { type: "button", class: `reaction${mine ? " mine" : ""}`,
      text: `${emoji} ${who.length}`, title: who.join(", ") });
    button.setAttribute("aria-pressed", String(mine));
    button.setAttribute("aria-label", `${emoji} from ${who.join(", ")}${mine ? " (click to take yours back)" : ""}`);
    button.addEventListener("click", () => chat.react(entry, emoji));
    bar.append(button);
  }
  return bar;
}

function row(entry, me, mentions, chat, conv = null) {
  const ts = entry.ts ?? Date.now();
  const time = el("time", { class: "ts", text: TIME.format(new Date(ts)), dateTime: new Date(ts).toISOString() });
  if (entry.type === "pending") { // typed offline: not sent yet (or never, if the chat stopped)
    const li = el("li", { class: `msg mine pending${entry.failed ? " failed" : ""}` }, time);
    const who = el("span", { class: "from", text: entry.from || me });
    who.style.setProperty("--hue", hue(entry.from || me));
    li.append(who, el("span", { class: "text", text: entry.text }),
      el("span", { class: "pending-tag", text: entry.failed ? "not sent" : "not sent yet" }));
    return li;
  }
  if (entry.type !== "message") {
    return el("li", { class: `line ${entry.kind || "system"}${entry.error ? " error" : ""}` }, time,
      el("span", { class: "text", text: entry.text }));
  }
  const li = el("li", { class: "msg", "data-id": String(entry.id) });
  if (entry.from === me) li.classList.add("mine");
  if (entry.from !== me && mentions(entry.text)) li.classList.add("mention");
  const who = el("span", { class: "from", text: entry.from });
  who.style.setProperty("--hue", hue(entry.from));
  if (entry.reply_to !== undefined) li.append(quoteOf(entry, chat, conv));
  if (entry.deleted) {
    li.classList.add("deleted");
    li.append(time, who, el("span", { class: "text gone", text: "message deleted" }));
    return li;
  }
  if (entry.action) {
    li.classList.add("action");
    li.append(time, el("span", { class: "star", text: "* " }), who, document.createTextNode(" "), richText(entry.text));
  } else if (entry.file) {
    li.classList.add("has-file");
    li.append(time, who, fileBox(entry.file, chat));
  } else {
    li.append(time, who, richText(entry.text));
  }
  if (entry.edited) li.append(el("span", { class: "edited", text: " (edited)", title: `edited ${TIME.format(new Date(entry.edited))}` }));
  // (its "⋯" is drawn by the style sheet: the message's text stays the message's)
  const more = el("button", { type: "button", class: "msg-menu", title: "Reply, react, edit or delete" });
  more.setAttribute("aria-label", `Actions for ${entry.from}'s message`);
  more.addEventListener("click", () => chat.emit("message-menu", { entry, conv }));
  li.append(more);
  if (entry.reactions && Object.keys(entry.reactions).length) li.append(reactionsOf(entry, me, chat));
  return li;
}

// The log of one conversation: a window of at most SHOWN of the messages held,
// with day separators. Reaching its top draws the page above (from memory, else
// the server's next older page, see Chat.older) without moving what the reader
// looks at; the far end goes, and is drawn again when scrolled to.
export class LogView {
  constructor(list, chat) {
    this.list = list;
    this.chat = chat;
    this.conv = null;
    this.first = null; // the oldest entry drawn
    this.last = null; // the newest entry drawn
    this.rows = new Map(); // entry -> its row
    this.begin = null; // the "beginning of #room" row, when shown
    this.divider = null; // the entry "new since you left" goes above
    this.redraw = false; // a redraw is scheduled for the history just inserted
    this.target = null; // a found message to keep in view and marked
    this.targetTimer = null;
    this.onEdge = () => {}; // the top reached with nothing above in memory
    this.asked = false; // "Load older" pressed: the page it brings is drawn above
    list.addEventListener("scroll", () => this.scrolled());
  }

  stuck() {
    const box = this.list;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  }

  // Whether the newest entry held is drawn.
  atEnd() {
    return this.conv !== null && this.last === (this.conv.messages.at(-1) ?? null);
  }

  scrollDown() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  // The newest entries (from ``divider`` on, if given); ``around``: a message id to
  // show with what surrounds it, however far back.
  show(conv, keepPosition = false, around = null, divider = null) {
    const box = this.list;
    const fromBottom = box.scrollHeight - box.scrollTop;
    if (conv !== this.conv || divider !== null) this.divider = divider;
    this.conv = conv;
    const list = conv.messages;
    let start = Math.max(0, list.length - SHOWN);
    const at = around === null ? -1 : list.findIndex((m) => m.id === around);
    const mark = this.divider === null ? -1 : list.indexOf(this.divider);
    if (at >= 0 && at < start) start = Math.max(0, at - SHOWN / 2);
    else if (mark >= 0 && mark < start + 20) start = Math.max(0, mark - 20);
    const shown = list.slice(start, start + SHOWN);
    this.rows = new Map();
    box.replaceChildren(...this.rowsFor(shown, null));
    this.first = shown[0] ?? null;
    this.last = shown.at(-1) ?? null;
    this.begin = null;
    this.beginning();
    const unread = this.divider && box.querySelector("li.unread");
    if (keepPosition) box.scrollTop = box.scrollHeight - fromBottom;
    else if (unread) unread.scrollIntoView({ block: "start" });
    else this.scrollDown();
    const target = this.target !== null && box.querySelector(`li[data-id="${this.target}"]`);
    if (target) {
      target.classList.add("found");
      target.scrollIntoView({ block: "center" });
    }
  }

  // A found message: shown in the middle, marked a few seconds (also across the
  // redraws that the history loaded for it causes).
  reveal(conv, id) {
    this.target = id;
    this.show(conv, true, id);
    clearTimeout(this.targetTimer);
    this.targetTimer = setTimeout(() => {
      this.target = null;
      for (const row of this.list.querySelectorAll("li.found")) row.classList.remove("found");
    }, 4000);
  }

  // Rows for entries in order: a day separator where the day changes after ``day``.
  rowsFor(entries, day) {
    const rows = [];
    for (const entry of entries) {
      const ts = entry.ts ?? Date.now();
      if (dayOf(ts) !== day) {
        day = dayOf(ts);
        rows.push(el("li", { class: "day", text: dayText(ts), "data-day": day }));
      }
      if (entry === this.divider) rows.push(el("li", { class: "unread", text: "New since you left" }));
      const li = row(entry, this.chat.nick, (t) => this.chat.mentions(t), this.chat, this.conv);
      this.rows.set(entry, li);
      rows.push(li);
    }
    return rows;
  }

  // "The beginning of #room" above the first message, when it is the room's first.
  beginning() {
    const conv = this.conv;
    const want = conv.kind === "room" && !conv.more && this.first === (conv.messages[0] ?? null);
    if (want && !this.begin) {
      this.begin = el("li", { class: "day begin", text: `This is the beginning of #${conv.name}.` });
      this.list.prepend(this.begin);
    } else if (!want && this.begin) {
      this.begin.remove();
      this.begin = null;
    }
  }

  // Keep ``anchor`` where the reader sees it while rows change around it.
  keeping(anchor, change) {
    const box = this.list;
    const offset = anchor ? anchor.offsetTop - box.scrollTop : 0;
    change();
    if (anchor) box.scrollTop = anchor.offsetTop - offset;
  }

  // Draw up to PAGE held entries above the window; false when none are held there.
  growUp() {
    const list = this.conv.messages;
    const at = list.indexOf(this.first);
    if (at <= 0) {
      this.beginning();
      return false;
    }
    const entries = list.slice(Math.max(0, at - PAGE), at);
    this.keeping(this.rows.get(this.first), () => {
      if (this.begin) { this.begin.remove(); this.begin = null; }
      const old = this.list.firstElementChild;
      const rows = this.rowsFor(entries, null);
      const lastDay = dayOf(entries.at(-1).ts ?? Date.now());
      if (old && old.classList.contains("day") && old.dataset.day === lastDay) old.remove();
      else if (old && !old.classList.contains("day")) {
        const ts = this.first.ts ?? Date.now();
        if (dayOf(ts) !== lastDay) rows.push(el("li", { class: "day", text: dayText(ts), "data-day": dayOf(ts) }));
      }
      this.list.prepend(...rows);
      this.first = entries[0];
      this.trimEnd(list);
      this.beginning();
    });
    return true;
  }

  // Draw up to PAGE held entries below the window.
  growDown() {
    const list = this.conv.messages;
    const at = list.indexOf(this.last);
    const entries = list.slice(at + 1, at + 1 + PAGE);
    if (!entries.length) return;
    this.keeping(this.rows.get(this.last), () => {
      this.list.append(...this.rowsFor(entries, dayOf(this.last.ts ?? Date.now())));
      this.last = entries.at(-1);
      this.trimStart(list, SHOWN);
    });
  }

  // Take the newest drawn entries off until SHOWN are left (with their rows).
  trimEnd(list) {
    while (this.rows.size > SHOWN) {
      const gone = this.last;
      this.rows.get(gone).remove();
      this.rows.delete(gone);
      this.last = list[list.indexOf(gone) - 1];
      const keep = this.rows.get(this.last);
      while (keep && keep.nextElementSibling) keep.nextElementSibling.remove();
    }
  }

  trimStart(list, keep) {
    let removed = false;
    while (this.rows.size > keep) {
      const gone = this.first;
      const li = this.rows.get(gone);
      this.rows.delete(gone);
      this.first = list[list.indexOf(gone) + 1];
      const next = this.rows.get(this.first);
      while (this.list.firstElementChild && this.list.firstElementChild !== next) this.list.firstElementChild.remove();
      if (li) li.remove();
      removed = true;
    }
    if (removed) {
      this.begin = null;
      const next = this.rows.get(this.first);
      const ts = this.first.ts ?? Date.now();
      if (next) next.before(el("li", { class: "day", text: dayText(ts), "data-day": dayOf(ts) }));
    }
  }

  scrolled() {
    if (!this.conv) return;
    const box = this.list;
    if (box.scrollTop < EDGE && !this.growUp() && this.conv.more) this.onEdge(this.conv);
    if (box.scrollHeight - box.scrollTop - box.clientHeight < EDGE && !this.atEnd()) this.growDown();
  }

  // An older page arrived: drawn above when the reader is at the top (it asked).
  older() {
    if (this.list.scrollTop < EDGE || this.asked) {
      if (this.growUp() && this.asked) this.list.scrollTop = 0;
    } else this.beginning();
    this.asked = false;
  }

  // A new entry of the shown conversation. Returns whether the reader should be
  // offered "New messages": only for a new newest entry it does not see.
  added(entry) {
    const list = this.conv.messages;
    if (list.at(-1) !== entry) {
      // history: an older page is drawn by older(); else one redraw for a replay
      if (this.conv.loading && list.indexOf(entry) < list.indexOf(this.first)) return false;
      if (!this.redraw) {
        this.redraw = true;
        requestAnimationFrame(() => {
          this.redraw = false;
          if (this.conv) this.show(this.conv, !this.stuck(), this.target);
        });
      }
      return false;
    }
    const stuck = this.stuck();
    if (this.last !== (list.at(-2) ?? null)) return true; // the window is not at the end
    this.list.append(...this.rowsFor([entry], this.last ? dayOf(this.last.ts ?? Date.now()) : null));
    this.last = entry;
    if (this.first === null) this.first = entry;
    if (stuck) {
      this.trimStart(list, SHOWN);
      this.scrollDown();
    } else if (this.rows.size > 2 * SHOWN) {
      this.keeping(this.rows.get(this.last), () => this.trimStart(list, 2 * SHOWN));
    }
    return !this.stuck();
  }

  // An entry taken out of the conversation (a message typed offline, now sent).
  remove(entry) {
    const li = this.rows.get(entry);
    if (!li) return;
    if (entry === this.first || entry === this.last) {
      this.show(this.conv, !this.stuck());
      return;
    }
    li.remove();
    this.rows.delete(entry);
  }

  // An entry that changed (a message typed offline that will not be sent): drawn again.
  changed(entry) {
    const li = this.rows.get(entry);
    if (!li) return;
    const fresh = row(entry, this.chat.nick, (t) => this.chat.mentions(t), this.chat, this.conv);
    li.replaceWith(fresh);
    this.rows.set(entry, fresh);
  }

  // Down to the newest: drawn again when the window does not reach it.
  jump() {
    if (!this.atEnd()) this.show(this.conv);
    this.scrollDown();
  }
}

export function convItem(conv, active, onOpen, onClose) {
  const label = conv.kind === "room" ? `#${conv.name}` : conv.name;
  const li = el("li", { class: conv.key === active ? "active" : "" });
  const open = el("button", { type: "button", class: "conv", title: label },
    el("span", { class: "name", text: label }));
  open.dataset.key = conv.key;
  if (conv.unread) {
    const badge = el("span", { class: conv.mentions ? "badge mention" : "badge", text: String(conv.unread) });
    badge.setAttribute("aria-label", `${conv.unread} unread${conv.mentions ? ", you were mentioned" : ""}`);
    open.append(badge);
  }
  open.addEventListener("click", () => onOpen(conv));
  li.append(open);
  if (!(conv.kind === "room" && conv.key === "#general")) {
    const close = el("button", { type: "button", class: "close", text: "×", title: conv.kind === "room" ? "Leave room" : "Close" });
    close.setAttribute("aria-label", `${conv.kind === "room" ? "Leave" : "Close"} ${label}`);
    close.addEventListener("click", () => onClose(conv));
    li.append(close);
  }
  return li;
}

// A person in the people list: their name (a click opens a conversation), their role
// in the room ("@" operator, "+" voice) and, for a room's operators, a menu of actions.
export function userItem(nick, me, onOpen, role = "", onMenu = null) {
  const b = el("button", { type: "button", class: "user", text: nick, title: nick === me ? "You" : `Message ${nick}` });
  b.style.setProperty("--hue", hue(nick));
  if (nick !== me) b.addEventListener("click", () => onOpen(nick));
  const li = el("li", {});
  if (role) {
    li.append(el("span", { class: `role role-${role === "@" ? "op" : "voice"}`, text: role,
      title: role === "@" ? "operator" : "has voice" }));
  }
  li.append(b);
  if (onMenu) {
    const menu = el("button", { type: "button", class: "person-menu", text: "⋯",
      ariaLabel: `Actions for ${nick}`, title: `Actions for ${nick}` });
    menu.addEventListener("click", () => onMenu(nick));
    li.append(menu);
  }
  return li;
}
