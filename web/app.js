// The page: the connect form, then the chat. Wires the chat core (chat.js) to the
// view (view.js): conversations with unread counts and mentions, the people here,
// slash commands, typing, older history, notifications, the theme.

import { Chat, DM, ROOM, fold } from "./chat.js";
import { LogView, convItem, el, userItem } from "./view.js";

const $ = (id) => document.getElementById(id);
const TYPING_EVERY_MS = 4000; // a `typing` costs a rate token: at most one per 4 s
const HELP = [
  ["/join ROOM", "join or create a room"],
  ["/part [ROOM]", "leave this room (or ROOM)"],
  ["/nick NAME", "change your nickname"],
  ["/me TEXT", "an action: * you TEXT"],
  ["/msg NICK TEXT", "a direct message"],
  ["/query NICK", "open a direct conversation"],
  ["/list", "browse the rooms of this server"],
  ["/who", "who is in this room"],
  ["/register PASSWORD", "make your nickname yours (8+ characters)"],
  ["/quit", "leave the chat"],
  ["Enter / Shift+Enter", "send / new line"],
];

const wsUrl = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
const chat = new Chat(wsUrl);
const log = new LogView($("log"), chat);
let active = null; // the conversation shown
let lastTyping = 0;
let roomsAfter = null;

// ------------------------------------------------------------ theme

function applyTheme() {
  const theme = localStorage.getItem("lanchat.theme");
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

$("theme-button").addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  localStorage.setItem("lanchat.theme", dark ? "light" : "dark");
  applyTheme();
});
applyTheme();

// ------------------------------------------------------------ connecting

$("nick").value = localStorage.getItem("lanchat.nick") || "";
$("connect-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const nick = $("nick").value.trim();
  if (!nick) return;
  localStorage.setItem("lanchat.nick", nick);
  $("connect-error").hidden = true;
  $("connect-button").disabled = true;
  $("connect-button").textContent = "Joining…";
  chat.start({ nick, password: $("password").value, nickPassword: $("nick-password").value });
});

// A cluster: when this server is gone, the page moves to another of the chat's servers
// (it serves the same page) if that one answers, and carries on there as the same user.
chat.addEventListener("move", ({ detail }) => {
  const base = `${location.protocol}//${detail.node}/`;
  const resume = encodeURIComponent(JSON.stringify({ nick: detail.nick, rooms: detail.rooms }));
  fetch(base, { mode: "no-cors", cache: "no-store" })
    .then(() => location.replace(`${base}#resume=${resume}`))
    .catch(() => {}); // not answering either: keep trying here, then the next one
});

function resumeFromMove() {
  if (!location.hash.startsWith("#resume=")) return;
  let resume;
  try {
    resume = JSON.parse(decodeURIComponent(location.hash.slice(8)));
  } catch {
    return;
  }
  history.replaceState(null, "", location.pathname); // not kept in the address bar
  if (!resume || typeof resume.nick !== "string" || !Array.isArray(resume.rooms)) return;
  $("nick").value = resume.nick;
  chat.resumeRooms = resume.rooms.filter((r) => typeof r === "string").slice(0, 100);
  $("connect-button").disabled = true;
  $("connect-button").textContent = "Joining…";
  chat.start({ nick: resume.nick, password: "", nickPassword: "" });
}

chat.addEventListener("failed", ({ detail }) => {
  $("chat").hidden = true;
  $("connect").hidden = false;
  $("connect-button").disabled = false;
  $("connect-button").textContent = "Join the chat";
  const error = $("connect-error");
  error.textContent = detail.message;
  error.hidden = false;
  if (detail.code === "auth_failed" || detail.code === "nick_registered") $("more-fields").open = true;
  chat.welcomed = false;
  chat.conversations.clear();
});

chat.addEventListener("welcome", ({ detail }) => {
  $("connect").hidden = true;
  $("chat").hidden = false;
  $("me").textContent = chat.nick;
  document.title = `${chat.serverName} · lanchat`;
  if (detail.first) {
    const general = chat.conversation(ROOM, "general");
    general.replaying = true; // the welcome line goes below general's history
    open(general);
    if (detail.motd) chat.line(general, { kind: "notice", text: detail.motd, ts: Date.now() });
  }
  if (restoring) {
    for (const nick of restoring.dms) chat.conversation(DM, nick);
    drawLists();
  }
  showStatus();
  $("input").maxLength = chat.limits.max_text || 4000;
  $("input").focus();
});
chat.addEventListener("conversations", () => { // the restored session's open conversation
  if (restoring && restoring.active && chat.conversations.has(restoring.active)) {
    open(chat.conversations.get(restoring.active));
    restoring = null;
  }
});

// The status line: the connection's state, and while it is not online, what waits in
// the outbox (kept through every "Connecting…" and "Reconnecting in N s" that follows).
// It sits in a strip of its own under the bar (it wraps: a phone shows all of it), with
// "Try now" during an outage and "Join again" once the chat stopped (quit, kick, ban).
const statusLine = { text: "", waiting: 0, retryAt: 0 };
function showStatus() {
  const stopped = chat.stopped;
  const waiting = statusLine.waiting && !chat.online && !stopped
    ? `${statusLine.waiting} message(s) will be sent when the chat is back.` : "";
  const left = Math.round((statusLine.retryAt - Date.now()) / 1000);
  const retry = statusLine.retryAt && !chat.online && !stopped && !chat.ws
    ? (left > 0 ? `Reconnecting in ${left} s…` : "Reconnecting…") : "";
  const text = [statusLine.text, retry, waiting].filter(Boolean).join(" ");
  const stuck = log.stuck(); // the strip's height takes from the log's: keep its end in view
  if ($("status").textContent !== text) $("status").textContent = text;
  $("status-strip").hidden = !text;
  if (stuck) log.scrollDown();
  $("reconnect-button").hidden = !(statusLine.offline && !stopped);
  $("rejoin-button").hidden = !(stopped && chat.welcomed && !$("chat").hidden);
}
setInterval(() => { if (statusLine.retryAt && !chat.online) showStatus(); }, 1000);

chat.addEventListener("status", ({ detail }) => {
  statusLine.text = detail.text;
  statusLine.offline = Boolean(detail.offline);
  statusLine.retryAt = detail.retryAt || 0;
  $("status").classList.toggle("offline", Boolean(detail.offline));
  showStatus();
});
$("reconnect-button").addEventListener("click", () => chat.reconnectNow());
$("rejoin-button").addEventListener("click", () => chat.rejoin());

chat.addEventListener("outbox", ({ detail }) => {
  statusLine.waiting = detail.count;
  showStatus();
});

// ------------------------------------------------------------ conversations

function open(conv) {
  if (active !== conv) composing(null, null);
  active = conv;
  drawMute();
  chat.markRead(conv);
  const divider = conv.unread ? firstUnread(conv) : null;
  conv.unread = 0;
  conv.mentions = 0;
  $("title").textContent = conv.kind === ROOM ? `#${conv.name}` : conv.name;
  drawTopic();
  log.show(conv, false, null, divider);
  drawOlder();
  drawLists();
  drawUsers();
  drawTyping();
  updateTitle();
  closePanels();
  $("input").focus();
}

// The oldest of the messages from others that came since the conversation was open.
function firstUnread(conv) {
  let left = conv.unread;
  for (let i = conv.messages.length - 1; i >= 0; i--) {
    const m = conv.messages[i];
    if (m.from !== undefined && m.from !== chat.nick && --left === 0) return m;
  }
  return null;
}

function drawOlder() {
  $("older-button").hidden = !(active && active.kind === ROOM && (active.more || log.first !== active.messages[0]));
}

function drawLists() {
  const key = active ? active.key : null;
  const convs = [...chat.conversations.values()];
  const rooms = convs.filter((c) => c.kind === ROOM && c.joined).sort((a, b) => fold(a.name).localeCompare(fold(b.name)));
  const dms = convs.filter((c) => c.kind === DM);
  $("rooms").replaceChildren(...rooms.map((c) => convItem(c, key, open, closeConv)));
  $("dms").replaceChildren(...dms.map((c) => convItem(c, key, open, closeConv)));
  // On a phone the list is hidden: its button carries a dot for news elsewhere.
  const news = convs.filter((c) => c !== active && c.unread);
  const mention = news.some((c) => c.mentions);
  const menu = $("menu-button");
  menu.classList.toggle("dot", news.length > 0);
  menu.classList.toggle("mention", mention);
  menu.setAttribute("aria-label", news.length
    ? `Conversations (${mention ? "you were mentioned" : "new messages"})` : "Conversations");
  saveSession();
}

// ------------------------------------------------------------ a reload keeps the rooms

// The rooms and direct messages this tab had (never a password): a reload joins them
// again under the same nickname. Kept for the tab (sessionStorage); /quit forgets it.
const SESSION = "lanchat.session";
function saveSession() {
  if (!chat.welcomed || chat.stopped) return;
  const convs = [...chat.conversations.values()];
  const session = {
    nick: chat.nick,
    rooms: convs.filter((c) => c.kind === ROOM && c.joined).map((c) => c.name).slice(0, 100),
    dms: convs.filter((c) => c.kind === DM).map((c) => c.name).slice(0, 100),
    active: active ? active.key : null,
  };
  try { sessionStorage.setItem(SESSION, JSON.stringify(session)); } catch { /* private mode */ }
}

let restoring = null; // the session being restored: {dms, active}
function restoreSession() {
  if (location.hash.startsWith("#resume=")) return;
  let session;
  try {
    session = JSON.parse(sessionStorage.getItem(SESSION) || "null");
  } catch {
    return;
  }
  if (!session || typeof session.nick !== "string" || !Array.isArray(session.rooms)) return;
  const names = (list) => (Array.isArray(list) ? list : []).filter((r) => typeof r === "string").slice(0, 100);
  restoring = { dms: names(session.dms), active: typeof session.active === "string" ? session.active : null };
  $("nick").value = session.nick;
  chat.resumeRooms = names(session.rooms);
  $("connect-button").disabled = true;
  $("connect-button").textContent = "Joining…";
  chat.start({ nick: session.nick, password: "", nickPassword: "" });
}

function drawUsers() {
  const room = active && active.kind === ROOM ? active : null;
  const users = room ? [...room.users] : active ? [chat.nick, active.name] : [];
  users.sort((a, b) => fold(a).localeCompare(fold(b)));
  $("users-title").textContent = room ? `Here (${users.length})` : "Conversation";
  const operator = chat.isOperator(room);
  const role = (n) => (!room ? "" : room.operators.includes(n) ? "@" : room.voiced.includes(n) ? "+" : "");
  $("users").replaceChildren(...users.map((n) => userItem(n, chat.nick,
    (nick) => open(chat.conversation(DM, nick)), role(n),
    operator && n !== chat.nick ? openPerson : null)));
  drawTopic();
}

// ------------------------------------------------------------ rooms with owners
// The topic under the title (operators open the room's settings from it), a line over
// the message box when one may not speak and why, a person's menu, the settings dialog
// and invitations.

function drawTopic() {
  const room = active && active.kind === ROOM ? active : null;
  const operator = chat.isOperator(room);
  $("topic-strip").hidden = !room || (!room.topic && !operator);
  $("topic").textContent = room ? (room.topic || "No topic yet") : "";
  $("topic").title = room && room.topicBy ? `Set by ${room.topicBy}` : "";
  $("room-settings-button").hidden = !operator;
  const muted = chat.muted(room);
  $("speak-note").hidden = !muted;
  $("speak-note").textContent = muted;
}
chat.addEventListener("topic", ({ detail }) => { if (detail.conv === active) drawTopic(); });

// ------------------------------------------------------------ replies, reactions, edits

const REACTS = ["👍", "❤️", "😂", "🎉", "😮", "✅"];
let picked = null; // the message whose menu is open
let replying = null; // the message the next one answers
let editing = null; // one's own message whose text the box now holds

// The strip over the box: what the next send does (answer a message, change one's own).
function composing(reply, edit) {
  replying = reply;
  if (editing && !edit) $("input").value = "";
  editing = edit;
  const shown = reply || edit;
  $("reply-strip").hidden = !shown;
  if (!shown) return;
  const text = shown.text.length > 80 ? `${shown.text.slice(0, 80)}…` : shown.text;
  $("reply-text").textContent = reply ? `Replying to ${reply.from}: ${text}` : "Editing your message (Enter saves, Escape cancels)";
  if (edit) { $("input").value = edit.text; grow(); }
  $("input").focus();
}
$("reply-cancel").addEventListener("click", () => composing(null, null));

for (const emoji of REACTS) {
  const button = el("button", { type: "button", class: "react-pick", text: emoji });
  button.setAttribute("aria-label", `React with ${emoji}`);
  button.addEventListener("click", () => { chat.react(picked, emoji); $("message-dialog").close(); });
  $("message-reacts").append(button);
}
chat.addEventListener("message-menu", ({ detail }) => {
  picked = detail.entry;
  const mine = picked.from === chat.nick;
  $("message-title").textContent = `${mine ? "Your message" : `${picked.from}'s message`}`;
  $("message-edit").hidden = !mine || Boolean(picked.file);
  $("message-delete").hidden = !mine && !chat.isOperator(active);
  $("message-dialog").showModal();
});
$("message-reply").addEventListener("click", () => { $("message-dialog").close(); composing(picked, null); });
$("message-edit").addEventListener("click", () => { $("message-dialog").close(); composing(null, picked); });
$("message-delete").addEventListener("click", () => {
  $("message-dialog").close();
  if (confirm(picked.from === chat.nick ? "Delete your message for everyone?" : `Delete ${picked.from}'s message for everyone?`)) {
    chat.remove(picked);
  }
});

let person = "";
function openPerson(nick) {
  person = nick;
  const room = active;
  $("person-title").textContent = `${nick} in #${room.name}`;
  $("person-op").textContent = room.operators.includes(nick) ? "Remove operator" : "Make operator";
  $("person-voice").textContent = room.voiced.includes(nick) ? "Take voice" : "Give voice";
  $("person-reason").value = "";
  $("person-dialog").showModal();
}
function personDone() { $("person-dialog").close(); }
$("person-message").addEventListener("click", () => { personDone(); open(chat.conversation(DM, person)); });
$("person-op").addEventListener("click", () => {
  chat.setModes(active, [{ mode: "operator", on: !active.operators.includes(person), arg: person }]);
  personDone();
});
$("person-voice").addEventListener("click", () => {
  chat.setModes(active, [{ mode: "voice", on: !active.voiced.includes(person), arg: person }]);
  personDone();
});
$("person-kick").addEventListener("click", () => {
  chat.kickFromRoom(active, person, $("person-reason").value.trim());
  personDone();
});
$("person-ban").addEventListener("click", () => {
  chat.setModes(active, [{ mode: "ban", on: true, arg: person }]);
  chat.kickFromRoom(active, person, $("person-reason").value.trim());
  personDone();
});

$("room-settings-button").addEventListener("click", () => {
  const room = active;
  const s = room.settings || {};
  $("room-dialog-title").textContent = `#${room.name}: settings`;
  $("room-topic").value = room.topic || "";
  $("room-moderated").checked = Boolean(s.moderated);
  $("room-topic-lock").checked = s.topic_lock !== false;
  $("room-invite-only").checked = Boolean(s.invite_only);
  $("room-secret").checked = Boolean(s.secret);
  $("room-key").value = typeof s.key === "string" ? s.key : "";
  $("room-limit").value = s.limit || "";
  $("room-invite").value = "";
  const bans = room.bans || [];
  $("room-bans").textContent = bans.length ? `Banned: ${bans.map((b) => b.mask).join(", ")}` : "";
  $("room-dialog").showModal();
});
$("room-save").addEventListener("click", () => {
  const room = active;
  const s = room.settings || {};
  const topic = $("room-topic").value.trim();
  if (topic !== (room.topic || "")) chat.setTopic(room, topic);
  const changes = [];
  for (const [mode, id] of [["moderated", "room-moderated"], ["topic_lock", "room-topic-lock"],
    ["invite_only", "room-invite-only"], ["secret", "room-secret"]]) {
    const want = $(id).checked;
    if (want !== Boolean(mode === "topic_lock" ? s.topic_lock !== false : s[mode])) changes.push({ mode, on: want });
  }
  const key = $("room-key").value.trim();
  if (key !== (typeof s.key === "string" ? s.key : "")) changes.push(key ? { mode: "key", on: true, arg: key } : { mode: "key", on: false });
  const limit = $("room-limit").value.trim();
  if (limit !== String(s.limit || "")) changes.push(limit ? { mode: "limit", on: true, arg: limit } : { mode: "limit", on: false });
  if (changes.length) chat.setModes(room, changes);
  $("room-dialog").close();
});
$("room-invite-button").addEventListener("click", () => {
  const nick = $("room-invite").value.trim();
  if (nick) chat.invite(active, nick);
  $("room-invite").value = "";
});

let invitedTo = "";
chat.addEventListener("invited", ({ detail }) => {
  invitedTo = detail.room;
  $("invite-text").textContent = `${detail.by} invites you to #${detail.room}.`;
  $("invite-strip").hidden = false;
});
$("invite-accept").addEventListener("click", () => {
  $("invite-strip").hidden = true;
  if (invitedTo) joinRoom(invitedTo);
  $("input").focus();
});
$("invite-dismiss").addEventListener("click", () => { $("invite-strip").hidden = true; $("input").focus(); });

function drawTyping() {
  const now = Date.now();
  const names = active ? [...active.typing].filter(([, until]) => until > now).map(([n]) => n) : [];
  $("typing").textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…`
    : names.length < 4 ? `${names.join(", ")} are typing…` : "Several people are typing…";
}
setInterval(drawTyping, 1000);

function closeConv(conv) {
  if (conv.kind === ROOM) chat.request({ type: "part", room: conv.name });
  else {
    chat.conversations.delete(conv.key);
    if (active === conv) open(chat.conversation(ROOM, "general"));
    else drawLists();
  }
}

function updateTitle() {
  let unread = 0;
  for (const conv of chat.conversations.values()) unread += conv.unread;
  const base = `${chat.serverName || "lanchat"} · lanchat`;
  document.title = unread ? `(${unread}) ${base}` : base;
}

// Conversations whose messages never notify (the Mute button), kept in this browser.
const silenced = new Set(JSON.parse(localStorage.getItem("lanchat.muted") || "[]"));
function drawMute() {
  const button = $("mute-button");
  button.hidden = !active;
  if (!active) return;
  const on = silenced.has(active.key);
  button.textContent = on ? "Muted" : "Mute";
  button.setAttribute("aria-pressed", String(on));
  button.classList.toggle("on", on);
}
$("mute-button").addEventListener("click", () => {
  if (!active) return;
  if (!silenced.delete(active.key)) silenced.add(active.key);
  localStorage.setItem("lanchat.muted", JSON.stringify([...silenced]));
  drawMute();
});

function notify(conv, frame) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  if (silenced.has(conv.key)) return;
  const where = conv.kind === ROOM ? `#${conv.name}` : "a direct message";
  const note = new Notification(`${frame.from} in ${where}`, { body: frame.text.slice(0, 200), tag: conv.key });
  note.onclick = () => { window.focus(); open(conv); note.close(); };
}

chat.addEventListener("message", ({ detail }) => {
  const { conv, frame, mine } = detail;
  let { mention } = detail;
  if (!mine && frame.reply_to !== undefined) { // an answer to one's own message
    const answered = chat.findMessage(conv, frame.reply_to);
    mention = mention || Boolean(answered && answered.from === chat.nick);
  }
  const seen = conv === active && !document.hidden;
  if (conv === active) {
    if (log.added(frame) && !mine) $("jump-button").hidden = false;
    else if (mine && !frame.history) jumpDown(); // what you send, you see
  }
  if (!seen && !mine && !frame.history) {
    conv.unread += 1;
    if (mention || conv.kind === DM) conv.mentions += 1;
    drawLists();
    updateTitle();
  }
  if ((mention || (conv.kind === DM && !mine && !frame.history)) && (document.hidden || conv !== active)) notify(conv, frame);
  if (conv === active) drawTyping();
  if (seen) chat.markRead(conv);
});

chat.addEventListener("line", ({ detail }) => {
  if (detail.conv !== active) return;
  log.added(detail.entry); // the client's own lines: no "New messages" for them
  if (detail.entry.type === "pending") jumpDown(); // typed offline: shown where typed
});
chat.addEventListener("unline", ({ detail }) => { if (detail.conv === active) log.remove(detail.entry); });
chat.addEventListener("changed", ({ detail }) => { if (detail.conv === active) log.changed(detail.entry); });
chat.addEventListener("history", ({ detail }) => {
  if (detail.conv !== active) return;
  if (detail.older) log.older();
  drawOlder();
});
chat.addEventListener("conversations", drawLists);
chat.addEventListener("open", ({ detail }) => open(detail.conv));
chat.addEventListener("closed", ({ detail }) => {
  if (active === detail.conv) open(chat.conversation(ROOM, "general"));
  else drawLists();
});
chat.addEventListener("users", ({ detail }) => { if (detail.conv === active) drawUsers(); });
chat.addEventListener("typing", ({ detail }) => { if (detail.conv === active) drawTyping(); });
chat.addEventListener("me", () => { $("me").textContent = chat.nick; drawUsers(); });
chat.addEventListener("notice", ({ detail }) => {
  const conv = active || chat.conversation(ROOM, "general");
  chat.line(conv, { kind: detail.error ? "system" : "notice", text: detail.text, error: detail.error, ts: detail.ts || Date.now() });
});
chat.addEventListener("who", ({ detail }) => {
  chat.line(active, { kind: "system", text: `In #${detail.room}: ${detail.users.join(", ") || "nobody"}` });
});
chat.addEventListener("rooms", ({ detail }) => {
  const list = $("room-list");
  if (roomsAfter === null) list.replaceChildren();
  for (const room of detail.rooms) {
    const join = el("button", { type: "button", text: `#${room.name}` });
    join.addEventListener("click", () => { $("rooms-dialog").close(); joinRoom(room.name); });
    list.append(el("li", {}, join, el("span", { class: "count", text: ` ${room.users} here` })));
  }
  roomsAfter = detail.rooms.length ? detail.rooms.at(-1).name : null;
  $("more-rooms").hidden = !detail.more;
  if (!$("rooms-dialog").open) $("rooms-dialog").showModal();
});

$("older-button").addEventListener("click", () => {
  if (!active) return;
  if (log.growUp()) log.list.scrollTop = 0;
  else {
    log.asked = true;
    chat.older(active);
  }
});
log.onEdge = (conv) => chat.older(conv);
function jumpDown() {
  log.jump();
  $("jump-button").hidden = true;
}
$("jump-button").addEventListener("click", jumpDown);
$("log").addEventListener("scroll", () => { // after the log drew what the edge brought
  if (log.stuck() && log.atEnd()) $("jump-button").hidden = true;
  drawOlder();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && active) {
    active.unread = 0;
    active.mentions = 0;
    drawLists();
    updateTitle();
    chat.markRead(active);
  }
});
// Read on another device: what is new is what came after; the shown one gets its
// divider there, and counts as read now.
chat.addEventListener("read", ({ detail }) => {
  const { conv } = detail;
  if (conv === active && conv.unread) {
    log.show(conv, false, null, firstUnread(conv));
    if (!document.hidden) { conv.unread = 0; conv.mentions = 0; chat.markRead(conv); }
  }
  drawLists();
  updateTitle();
});

// ------------------------------------------------------------ commands

function joinRoom(name, key = "") {
  const existing = chat.conversation(ROOM, name, false);
  if (existing && existing.joined) { open(existing); return; }
  chat.request(key ? { type: "join", room: name, key } : { type: "join", room: name });
}

function listRooms(after = null) {
  roomsAfter = after;
  const frame = { type: "rooms" };
  if (after) frame.after = after;
  chat.request(frame);
}
$("browse-button").addEventListener("click", () => listRooms());
$("more-rooms").addEventListener("click", () => listRooms(roomsAfter));

function system(text) {
  chat.line(active, { kind: "system", text, ts: Date.now() });
}

function command(text) {
  const [word, ...rest] = text.slice(1).split(" ");
  const arg = rest.join(" ").trim();
  const first = arg.split(/\s+/)[0] || "";
  switch (word.toLowerCase()) {
    case "join": if (first) joinRoom(first.replace(/^#/, "")); else system("Usage: /join ROOM"); break;
    case "part": case "leave": {
      const room = first ? first.replace(/^#/, "") : active.kind === ROOM ? active.name : "";
      if (room) chat.request({ type: "part", room }); else system("Usage: /part ROOM");
      break;
    }
    case "nick": if (first) chat.request({ type: "nick", nick: first }); else system("Usage: /nick NAME"); break;
    case "me": if (arg) chat.say(active, arg, true); else system("Usage: /me TEXT"); break;
    case "msg": {
      const body = arg.slice(first.length).trim();
      if (!first || !body) { system("Usage: /msg NICK TEXT"); break; }
      const conv = chat.conversation(DM, first);
      chat.say(conv, body);
      open(conv);
      break;
    }
    case "query": if (first) open(chat.conversation(DM, first)); else system("Usage: /query NICK"); break;
    case "list": listRooms(); break;
    case "who": if (active.kind === ROOM) chat.request({ type: "who", room: first || active.name }); break;
    case "register": if (arg) chat.request({ type: "register", password: arg }); else system("Usage: /register PASSWORD"); break;
    case "quit": sessionStorage.removeItem(SESSION); chat.quit(); break;
    case "help": for (const [cmd, what] of HELP) system(`${cmd.padEnd(22, "\u00a0")}${what}`); break;
    default: system(`Unknown command /${word}. Type /help for the list.`);
  }
}

function submit() {
  const input = $("input");
  const text = input.value;
  if (!text.trim() || !active) return;
  if (editing) {
    if (text !== editing.text && !chat.edit(editing, text)) return; // kept in the box
    composing(null, null);
  } else if (text.startsWith("/") && !text.startsWith("//")) command(text.trim());
  else if (!chat.say(active, text.startsWith("//") ? text.slice(1) : text, false,
                     replying ? replying.id : null)) return; // kept in the box
  composing(null, null);
  input.value = "";
  grow();
}

function grow() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = `${Math.max(42, Math.min(input.scrollHeight + 2, 160))}px`;
  input.style.overflowY = input.scrollHeight > 160 ? "auto" : "hidden";
}

$("composer").addEventListener("submit", (event) => { event.preventDefault(); submit(); });
$("input").addEventListener("keydown", (event) => {
  if (event.key === "Escape" && (replying || editing)) {
    event.preventDefault();
    composing(null, null);
    return;
  }
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});
$("input").addEventListener("input", () => {
  grow();
  const now = Date.now();
  if (active && !$("input").value.startsWith("/") && now - lastTyping > TYPING_EVERY_MS) {
    lastTyping = now;
    chat.typing(active);
  }
});
$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const [name, key] = $("join-room").value.trim().replace(/^#/, "").split(/\s+/);
  if (name) joinRoom(name, key);
  $("join-room").value = "";
});

// ------------------------------------------------------------ files

// Files going up and (asked for) coming down: what each is doing, how fast, the time
// left; one the connection cut says so, with a Resume button.
function drawTransfers() {
  const rows = [];
  for (const entry of transfers) {
    const get = entry.kind === "get";
    const done = get ? entry.got : entry.sent;
    let text;
    if (entry.phase === "cut") {
      text = `${entry.name} not ${get ? "received" : "sent"} (connection lost)`;
    } else {
      const what = get
        ? { fetching: "Receiving", done: "Saved", failed: "Not saved" }[entry.phase]
        : { hashing: "Preparing", offered: "Sending", sending: "Sending", done: "Sent",
          failed: "Not sent" }[entry.phase];
      text = `${what} ${entry.name}${entry.error ? `: ${entry.error}` : ""}`;
      if (entry.phase === "sending" || entry.phase === "fetching") {
        text += ` · ${entry.rate.line(done, entry.size)}`;
      }
    }
    const li = el("li", { class: entry.phase }, el("span", { text }));
    if (get) li.dataset.resumedFrom = String(entry.resumedFrom || 0);
    if (entry.phase === "cut") {
      const button = el("button", { type: "button", class: "resume", text: "Resume" });
      button.addEventListener("click", () => {
        if (chat.resume(entry)) {
          transfers.delete(entry);
          if (get) transfers.add(entry); // (back at the end, as it goes on)
          drawTransfers();
        }
      });
      li.append(button);
    } else if (entry.phase !== "failed" && entry.phase !== "done") {
      li.append(el("progress", { max: Math.max(1, entry.size), value: done }));
    }
    rows.push(li);
  }
  $("transfers").replaceChildren(...rows);
}

const transfers = new Set();
function showTransfer(entry) {
  transfers.add(entry);
  drawTransfers();
  if (entry.phase === "done" || entry.phase === "failed") {
    setTimeout(() => {
      if (entry.phase === "done" || entry.phase === "failed") transfers.delete(entry);
      drawTransfers();
    }, entry.phase === "done" ? 1500 : 8000);
  }
}
chat.addEventListener("transfer", ({ detail }) => {
  if (detail.entry.kind === "get" && !detail.entry.save) return; // a preview: not listed
  showTransfer(detail.entry);
});

function sendFiles(files) {
  if (!active) return;
  for (const file of files) chat.sendFile(active, file);
}

$("attach-button").addEventListener("click", () => $("file-input").click());
$("file-input").addEventListener("change", () => {
  sendFiles([...$("file-input").files]);
  $("file-input").value = "";
});
const dropZone = document.querySelector(".conversation");
dropZone.addEventListener("dragover", (event) => {
  if ([...event.dataTransfer.types].includes("Files")) {
    event.preventDefault();
    dropZone.classList.add("dropping");
  }
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dropping"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dropping");
  sendFiles([...event.dataTransfer.files]);
});
$("input").addEventListener("paste", (event) => {
  const files = [...(event.clipboardData ? event.clipboardData.files : [])];
  if (files.length) {
    event.preventDefault(); // a pasted image is sent as a file
    sendFiles(files);
  }
});

// A picture that arrives below the fold pushes the newest lines down: follow them
// when the reader was at the bottom (load events do not bubble: caught on the way down).
$("log").addEventListener("load", (event) => {
  const box = $("log");
  const picture = event.target.offsetHeight || 0;
  if (box.scrollHeight - box.scrollTop - box.clientHeight - picture < 60) log.scrollDown();
}, true);

function fileBoxes(id) {
  return $("log").querySelectorAll(`.file[data-file="${id}"]`);
}

chat.addEventListener("fetching", ({ detail }) => {
  for (const box of fileBoxes(detail.file.id)) {
    const bar = box.querySelector("progress");
    bar.hidden = false;
    bar.value = detail.got;
  }
  if (detail.entry && detail.entry.save) showTransfer(detail.entry);
});

chat.addEventListener("fetchfailed", ({ detail }) => {
  for (const box of fileBoxes(detail.file.id)) box.querySelector("progress").hidden = true;
  if (detail.entry.save) showTransfer(detail.entry);
});

chat.addEventListener("fetched", ({ detail }) => {
  if (detail.entry && detail.entry.save) showTransfer(detail.entry);
  for (const box of fileBoxes(detail.file.id)) {
    box.querySelector("progress").hidden = true;
    const img = box.querySelector("img.preview");
    if (img) img.src = detail.url;
  }
  if (detail.save) {
    const link = el("a", { href: detail.url, download: detail.file.name });
    document.body.append(link);
    link.click();
    link.remove();
  }
});

// ------------------------------------------------------------ search

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = $("search-input").value.trim();
  if (query) chat.search(query);
});
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "f" && !$("chat").hidden) {
    event.preventDefault(); // the chat's search, not the page's
    $("search-input").focus();
    $("search-input").select();
  }
});

function resultItem(found) {
  const conv = found.room !== undefined ? chat.conversation(ROOM, found.room)
    : chat.conversation(DM, found.from === chat.nick ? found.to : found.from);
  const where = found.room !== undefined ? `#${found.room}` : `${found.from} → ${found.to}`;
  const when = new Date(found.ts).toLocaleString();
  const text = el("span", { class: "snippet" });
  for (const [piece, matched] of found.snippet) {
    text.append(matched ? el("mark", { text: piece }) : document.createTextNode(piece));
  }
  const button = el("button", { type: "button", class: "result" },
    el("span", { class: "meta", text: `${where} · ${found.from} · ${when}` }), text);
  button.addEventListener("click", () => {
    $("search-dialog").close();
    open(conv);
    chat.reveal(conv, found.id);
  });
  return el("li", {}, button);
}

chat.addEventListener("search", ({ detail }) => {
  const list = $("search-results");
  list.replaceChildren(...detail.results.map(resultItem));
  if (!detail.results.length) list.append(el("li", { class: "none", text: "Nothing found." }));
  const count = detail.results.length + (detail.more ? "+" : "");
  $("search-title").textContent = `${count} result${detail.results.length === 1 ? "" : "s"} for “${detail.query}”`;
  if (!$("search-dialog").open) $("search-dialog").showModal();
});

chat.addEventListener("reveal", ({ detail }) => {
  if (detail.conv !== active) open(detail.conv);
  log.reveal(detail.conv, detail.id);
});

// ------------------------------------------------------------ narrow screens, notifications

// The slide-in panels: out of the Tab order (inert) while slid away, Escape closes them.
const NARROW = matchMedia("(max-width: 720px)");
function syncPanels() {
  const body = document.body.classList;
  $("sidebar").inert = NARROW.matches && !body.contains("show-sidebar");
  $("users-panel").inert = NARROW.matches && !body.contains("show-users");
  $("scrim").hidden = !(body.contains("show-sidebar") || body.contains("show-users"));
}
function closePanels() {
  document.body.classList.remove("show-sidebar", "show-users");
  syncPanels();
}
function togglePanel(name, first) {
  const shown = document.body.classList.toggle(name);
  document.body.classList.remove(name === "show-sidebar" ? "show-users" : "show-sidebar");
  syncPanels();
  if (shown) first().focus();
}
NARROW.addEventListener("change", syncPanels);
syncPanels();
$("menu-button").addEventListener("click", () => togglePanel("show-sidebar",
  () => $("sidebar").querySelector("button.conv") || $("join-room")));
$("users-button").addEventListener("click", () => togglePanel("show-users",
  () => $("users").querySelector("button") || $("users-panel")));
$("scrim").addEventListener("click", closePanels);
document.addEventListener("keydown", (event) => {
  const body = document.body.classList;
  if (event.key === "Escape" && (body.contains("show-sidebar") || body.contains("show-users"))) {
    event.preventDefault();
    closePanels();
    $("input").focus();
  }
});
for (const dialog of [$("search-dialog"), $("rooms-dialog")]) { // back to typing
  dialog.addEventListener("close", () => { if (!$("chat").hidden) $("input").focus(); });
}

function drawNotify() {
  const button = $("notify-button");
  const can = "Notification" in window;
  button.hidden = !can || Notification.permission === "denied";
  button.classList.toggle("on", can && Notification.permission === "granted");
}
$("notify-button").addEventListener("click", async () => {
  if ("Notification" in window && Notification.permission === "default") await Notification.requestPermission();
  drawNotify();
});
drawNotify();
drawMute();

resumeFromMove();
restoreSession();
window.lanchat = chat; // for people who want to look inside from the console
