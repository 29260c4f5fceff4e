// Rendering of the page: the message log, the conversation lists, the people here.
// Every text from the network is inserted with textContent (or as a text node),
// never as HTML: a message is shown exactly as typed and can run nothing.

import { sizeText } from "./chat.js";

const LINK = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
const DAY = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });
const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const SHOWN = 500; // log rows in the page at once; older ones come back with "load older"

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

function row(entry, me, mentions, chat) {
  const ts = entry.ts ?? Date.now();
  const time = el("time", { class: "ts", text: TIME.format(new Date(ts)), dateTime: new Date(ts).toISOString() });
  if (entry.type !== "message") {
    return el("li", { class: `line ${entry.kind || "system"}${entry.error ? " error" : ""}` }, time,
      el("span", { class: "text", text: entry.text }));
  }
  const li = el("li", { class: "msg", "data-id": String(entry.id) });
  if (entry.from === me) li.classList.add("mine");
  if (entry.from !== me && mentions(entry.text)) li.classList.add("mention");
  const who = el("span", { class: "from", text: entry.from });
  who.style.setProperty("--hue", hue(entry.from));
  if (entry.action) {
    li.classList.add("action");
    li.append(time, el("span", { class: "star", text: "* " }), who, document.createTextNode(" "), richText(entry.text));
  } else if (entry.file) {
    li.classList.add("has-file");
    li.append(time, who, fileBox(entry.file, chat));
  } else {
    li.append(time, who, richText(entry.text));
  }
  return li;
}

// The log of one conversation: day separators, then rows; re-drawn on switch or on
// older history, appended to for live messages.
export class LogView {
  constructor(list, chat) {
    this.list = list;
    this.chat = chat;
    this.conv = null;
    this.lastDay = null;
    this.redraw = false; // a redraw is scheduled for the history just inserted
    this.target = null; // a found message to keep in view and marked
    this.targetTimer = null;
  }

  stuck() {
    const box = this.list;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  }

  scrollDown() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  // ``around``: a message id to show with what surrounds it, however far back.
  show(conv, keepPosition = false, around = null) {
    const box = this.list;
    const fromBottom = box.scrollHeight - box.scrollTop;
    this.conv = conv;
    this.lastDay = null;
    const rows = [];
    let shown = conv.messages.slice(-SHOWN);
    const at = around === null ? -1 : conv.messages.findIndex((m) => m.id === around);
    if (at >= 0 && at < conv.messages.length - SHOWN) {
      const start = Math.max(0, at - SHOWN / 2);
      shown = conv.messages.slice(start, start + SHOWN);
    }
    for (const entry of shown) rows.push(...this.rowsFor(entry));
    box.replaceChildren(...rows);
    if (keepPosition) box.scrollTop = box.scrollHeight - fromBottom;
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

  rowsFor(entry) {
    const rows = [];
    const ts = entry.ts ?? Date.now();
    const day = dayOf(ts);
    if (day !== this.lastDay) {
      rows.push(el("li", { class: "day", text: dayText(ts) }));
      this.lastDay = day;
    }
    rows.push(row(entry, this.chat.nick, (t) => this.chat.mentions(t), this.chat));
    return rows;
  }

  // A new entry of the shown conversation: appended when it is the newest, else
  // (history, by id) the log is drawn again in order. Returns whether the newest
  // line is in view afterwards (else the page offers "New messages").
  added(entry) {
    const list = this.conv.messages;
    const stuck = this.stuck();
    if (list.at(-1) !== entry) { // history: one redraw for the whole page of it
      if (!this.redraw) {
        this.redraw = true;
        requestAnimationFrame(() => {
          this.redraw = false;
          if (this.conv) this.show(this.conv, !this.stuck(), this.target);
        });
      }
      return stuck;
    }
    this.list.append(...this.rowsFor(entry));
    while (this.list.childElementCount > SHOWN * 1.2) this.list.firstElementChild.remove();
    if (stuck) this.scrollDown();
    return this.stuck();
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

export function userItem(nick, me, onOpen) {
  const b = el("button", { type: "button", class: "user", text: nick, title: nick === me ? "You" : `Message ${nick}` });
  b.style.setProperty("--hue", hue(nick));
  if (nick !== me) b.addEventListener("click", () => onOpen(nick));
  return el("li", {}, b);
}
