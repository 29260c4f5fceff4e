// The page's chat core: one WebSocket to the server that served the page, the
// protocol of docs/protocol.md (one JSON frame per text message), and what the user sees
// as conversations. No DOM here: the view listens to the events this emits.
//
// Resume: the core remembers the newest message id it has seen and the rooms it is
// in; after a drop it says `hello` again with `since`, so the server replays exactly
// what was missed (no gap), and every message is kept once by id (no duplicate).

import { hashBlob, Sha256 } from "./sha256.js";

export const ROOM = "room";
export const DM = "dm";
const OLDER_PAGE = 200; // messages asked for when the reader reaches the oldest held
const KEEP = 20000; // messages held per conversation (older ones are asked for again)
const BACKOFF = [1, 2, 4, 8, 15]; // seconds between reconnection attempts
const REVEAL_PAGES = 5; // pages of 200 loaded to reach a found message, at most
const UPLOAD_AHEAD = 1 << 20; // bytes queued on the socket while sending a file
const RESUME_TRIES = 10; // hellos tried, a second apart, after moving to another node
// How fast a transfer goes over the last few seconds, and the time that leaves.
export class Rate {
  constructor() {
    this.samples = [];
  }

  line(done, size) {
    const now = Date.now();
    this.samples.push([now, done]);
    while (this.samples.length > 2 && now - this.samples[1][0] >= 5000) this.samples.shift();
    let text = `${sizeText(done)} of ${sizeText(size)}`;
    const [t0, d0] = this.samples[0];
    if (now - t0 >= 500 && done > d0) {
      const speed = ((done - d0) * 1000) / (now - t0);
      const left = (size - done) / speed;
      text += `, ${sizeText(speed)}/s, ${left < 90 ? `${Math.round(left)} s` : `${Math.round(left / 60)} min`} left`;
    }
    return text;
  }
}

export function sizeText(bytes) {
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(bytes < 1e4 ? 1 : 0)} KB`;
  return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;
}

const PREVIEW_MAX = 2 * 1000 * 1000; // images up to this size are fetched to be shown
const TYPING_SHOWN_MS = 6000; // how long "x is typing" stays without another signal
const FINAL = new Set(["auth_failed", "banned", "bad_proto", "tls_required"]);
const HELLO_FAILS = new Set(["bad_nick", "nick_taken", "nick_registered", "bad_field",
  "bad_room", "server_full", "auth_failed", "banned", "bad_proto", "tls_required",
  "rate_limited"]);

export function fold(name) {
  return name.normalize("NFC").toLowerCase();
}

// A `mode` change as a sentence for the log (docs/protocol.md, "Rooms with owners").
function modeSentence(by, { mode, on, arg }) {
  switch (mode) {
    case "operator": return on ? `${by} made ${arg} an operator` : `${by} took operator from ${arg}`;
    case "voice": return on ? `${by} gave voice to ${arg}` : `${by} took voice from ${arg}`;
    case "moderated": return on ? `${by} made the room quiet: only operators and voiced people speak`
      : `${by} let everyone speak again`;
    case "topic_lock": return on ? `${by} let only operators set the topic` : `${by} let anyone set the topic`;
    case "invite_only": return on ? `${by} made the room invitation only` : `${by} opened the room to all`;
    case "secret": return on ? `${by} hid the room from the list` : `${by} listed the room again`;
    case "key": return on ? `${by} set a key on the room` : `${by} removed the room's key`;
    case "limit": return on ? `${by} limited the room to ${arg} people` : `${by} removed the room's limit`;
    case "ban": return on ? `${by} banned ${arg} from the room` : `${by} lifted the ban on ${arg}`;
    default: return "";
  }
}

class Conversation {
  constructor(kind, name) {
    this.kind = kind;
    this.name = name;
    this.messages = []; // message frames and local lines, by id where they have one
    this.ids = new Set();
    this.unread = 0;
    this.mentions = 0;
    this.users = [];
    // Rooms with owners (docs/protocol.md): roles among the people here, the topic,
    // the room's settings (from `room_info`, kept up by `mode`)
    this.operators = [];
    this.voiced = [];
    this.topic = "";
    this.topicBy = "";
    this.settings = {};
    this.typing = new Map(); // nick -> until (ms)
    this.more = false; // older messages exist on the server
    this.joined = kind === DM;
  }

  get key() {
    return (this.kind === ROOM ? "#" : "@") + fold(this.name);
  }

  // Insert a message in id order; false when it was there already.
  add(msg) {
    if (msg.id !== undefined) {
      if (this.ids.has(msg.id)) return false;
      this.ids.add(msg.id);
      const list = this.messages;
      let at = list.length;
      while (at > 0 && (list[at - 1].id === undefined ? list[at - 1].after : list[at - 1].id) > msg.id) at--;
      list.splice(at, 0, msg);
    } else {
      if (msg.after === undefined) {
        const last = this.messages.at(-1);
        msg.after = last ? (last.id ?? last.after ?? 0) : 0;
      }
      this.messages.push(msg);
    }
    // Live lines push the oldest out past KEEP; older pages, asked for, are kept whole.
    if (this.messages.length > KEEP && this.messages.at(-1) === msg) {
      for (const gone of this.messages.splice(0, this.messages.length - KEEP)) {
        if (gone.id !== undefined) this.ids.delete(gone.id);
      }
      this.more = true;
    }
    return true;
  }

  get oldestId() {
    const first = this.messages.find((m) => m.id !== undefined);
    return first ? first.id : null;
  }
}

export class Chat extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.nick = null;
    this.login = null; // {nick, password, nickPassword}
    this.conversations = new Map();
    this.lastId = 0; // the newest message id seen: `since` of the next hello
    this.online = false;
    this.welcomed = false;
    this.stopped = false; // no more reconnecting (bye, kicked, banned)
    this.stopReason = ""; // why, in words
    this.attempt = 0;
    this.retryTimer = null;
    this.retryAt = 0;
    this.outbox = []; // sends typed while offline, sent after the next welcome
    this.refs = 0;
    this.olderAsked = new Map(); // ref -> conversation key
    this.revealAsked = new Map(); // ref -> {key, id}: history asked to show a found message
    this.limits = { max_text: 4000 };
    this.transfers = new Map(); // ref -> upload under way {name, size, sent, phase, ...}
    this.fetches = new Map(); // file id -> download under way {parts, got, hasher, ...}
    this.fetched = new Map(); // file id -> object URL of a downloaded file
    this.cut = new Map(); // file id -> a download the connection cut, kept for Resume
    this.serverName = "";
    this.nodes = []; // the chat's other servers (a cluster's welcome): where to move
    this.resumeRooms = null; // rooms to join again after moving here from another node
    this.resumeTries = 0;
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  conversation(kind, name, create = true) {
    const key = (kind === ROOM ? "#" : "@") + fold(name);
    let conv = this.conversations.get(key);
    if (!conv && create) {
      conv = new Conversation(kind, name);
      this.conversations.set(key, conv);
      this.emit("conversations");
    }
    return conv;
  }

  get rooms() {
    return [...this.conversations.values()].filter((c) => c.kind === ROOM && c.joined);
  }

  // ------------------------------------------------------------ connection

  start(login) {
    this.login = login;
    this.stopped = false;
    this.open();
  }

  open() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.emit("status", { text: "Connecting…" });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.dropped(`cannot connect (${err.message})`);
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.hello();
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame.type === "string") this.receive(frame);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.online = false;
      this.dropped("connection lost");
    };
  }

  hello() {
    const { nick, password, nickPassword } = this.login;
    // "owners": rooms' `topic`, `mode` and `invited` frames as they happen
    const frame = { type: "hello", nick: this.nick || nick, proto: 1, client: "lanchat-web/1",
      features: ["owners", "edits", "read_markers"] };
    if (password) frame.password = password;
    if (nickPassword) frame.nick_password = nickPassword;
    const rooms = this.rooms.map((c) => c.name);
    if (this.welcomed) {
      frame.rooms = rooms;
      if (this.lastId) frame.since = this.lastId;
    } else if (this.resumeRooms) {
      frame.rooms = this.resumeRooms;
    }
    this.send(frame);
  }

  dropped(why) {
    this.cutTransfers();
    const wasWelcomed = this.welcomed;
    if (this.stopped) {
      this.emit("status", { text: this.stopReason || "Disconnected.", offline: true, stopped: true });
      return;
    }
    if (!wasWelcomed && this.resumeRooms && this.resumeTries < RESUME_TRIES) {
      this.resumeTries += 1;
      this.retryTimer = setTimeout(() => this.open(), 1000);
      this.emit("status", { text: "Moving to another server of the chat…", offline: true });
      return;
    }
    if (!wasWelcomed) {
      this.emit("failed", { message: "Cannot reach the chat server. Is it still running?" });
      this.stop("");
      return;
    }
    if (this.attempt >= 2 && this.nodes.length) {
      // This server failed twice: the chat goes on at another one (a cluster). The
      // page moves there if it answers (it serves the same page), else waits here.
      const node = this.nodes[(this.attempt - 2) % this.nodes.length];
      this.emit("move", { node, nick: this.nick, rooms: this.rooms.map((c) => c.name) });
    }
    const wait = BACKOFF[Math.min(this.attempt, BACKOFF.length - 1)];
    this.attempt += 1;
    this.retryAt = Date.now() + wait * 1000;
    this.retryTimer = setTimeout(() => this.open(), wait * 1000);
    this.emit("status", { text: `Offline (${why}).`, offline: true, retryAt: this.retryAt });
  }

  reconnectNow() {
    if (this.ws || this.stopped) return;
    this.attempt = 0;
    this.open();
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  request(frame) {
    frame.ref = `r${++this.refs}`;
    return this.send(frame) ? frame.ref : null;
  }

  quit() {
    this.stop("You left the chat.");
    this.send({ type: "bye" });
    if (this.ws) this.ws.close(1000);
  }

  // ------------------------------------------------------------ what the user does

  say(conv, text, action = false, replyTo = null) {
    const frame = { type: "send", text };
    if (conv.kind === ROOM) frame.room = conv.name;
    else frame.to = conv.name;
    if (action) frame.action = true;
    if (replyTo !== null) frame.reply_to = replyTo;
    if (!this.online) {
      if (this.stopped) { // no promise: nothing will send it
        this.emit("notice", { text: `Not sent: ${this.stopReason || "you are not in the chat."} Use “Join again” first.`, error: true });
        return false;
      }
      // Shown in the log as "not sent yet", sent once after the next welcome.
      const entry = { type: "pending", from: this.nick, text, action, ts: Date.now() };
      this.line(conv, entry);
      this.outbox.push({ frame, conv, entry });
      this.emit("outbox", { count: this.outbox.length });
      return true;
    }
    return Boolean(this.request(frame));
  }

  // The chat stopped for good (quit, kick, ban): what waited is not sent, and says so.
  stop(reason) {
    this.stopped = true;
    this.stopReason = reason;
    for (const { conv, entry } of this.outbox.splice(0)) {
      entry.failed = true;
      this.emit("changed", { conv, entry });
    }
    this.emit("outbox", { count: 0 });
  }

  // "Join again" after a quit, a kick or a ban: the same nickname, rooms and resume.
  rejoin() {
    if (this.ws) return;
    this.stopped = false;
    this.stopReason = "";
    this.attempt = 0;
    this.open();
  }

  typing(conv) {
    if (conv.kind === ROOM && this.online) this.send({ type: "typing", room: conv.name });
  }

  older(conv) {
    if (conv.kind !== ROOM || !this.online || conv.loading) return;
    const before = conv.oldestId;
    const frame = { type: "history", room: conv.name, limit: OLDER_PAGE };
    if (before !== null) frame.before = before;
    const ref = this.request(frame);
    if (ref) {
      this.olderAsked.set(ref, conv.key);
      conv.loading = true;
    }
  }

  search(query) {
    return this.request({ type: "search", query });
  }

  // Open a message in its conversation with what came before it: when it is not
  // loaded, ask for it and the 29 before it; "reveal" follows either way.
  // Pages of 200 older messages are asked for until it is loaded (nothing missing
  // between); when it lies further back than REVEAL_PAGES of them, it and the 29
  // before it (the rest comes with "load older").
  reveal(conv, id, pages = 0) {
    if (conv.ids.has(id) || conv.kind !== ROOM) {
      this.emit("reveal", { conv, id });
      return;
    }
    const oldest = conv.oldestId;
    const near = pages < REVEAL_PAGES && oldest !== null && oldest > id;
    const frame = near ? { type: "history", room: conv.name, before: oldest, limit: 200 }
      : { type: "history", room: conv.name, before: id + 1, limit: 30 };
    const ref = this.request(frame);
    if (ref) this.revealAsked.set(ref, { key: conv.key, id, pages: near ? pages + 1 : -1 });
  }

  // ------------------------------------------------------------ files

  get chunkSize() {
    const frame = (this.limits && this.limits.max_frame) || 16384;
    return Math.max(256, Math.floor(((frame - 200) * 3) / 4 / 3) * 3);
  }

  // Offer a file: hash it (a megabyte at a time), then send it in chunks as the
  // server asks (from where an earlier, dropped try stopped).
  async sendFile(conv, file, again = null) {
    const name = file.name || `pasted-${Date.now()}.${(file.type.split("/")[1] || "bin")}`;
    const entry = again || { name, size: file.size, sent: 0, phase: "hashing", conv, file,
      kind: "send", rate: new Rate() };
    entry.phase = entry.sha256 ? "offered" : "hashing";
    entry.error = "";
    const local = `f${++this.refs}`;
    this.transfers.set(local, entry);
    this.emit("transfer", { entry });
    const sha256 = entry.sha256 || await hashBlob(file, (done) => {
      entry.sent = done * file.size;
      this.emit("transfer", { entry });
    });
    entry.sha256 = sha256;
    const frame = { type: "upload", name, size: file.size, sha256,
      mime: file.type || "application/octet-stream" };
    if (conv.kind === ROOM) frame.room = conv.name;
    else frame.to = conv.name;
    this.transfers.delete(local);
    const ref = this.request(frame);
    if (!ref) {
      entry.phase = "cut";
      entry.error = "connection lost";
      this.emit("transfer", { entry });
      return;
    }
    entry.phase = "offered";
    entry.sent = 0;
    this.transfers.set(ref, entry);
    entry.ref = ref;
    this.emit("transfer", { entry });
  }

  on_upload_ready(frame) {
    const entry = this.transfers.get(frame.ref);
    if (!entry) return;
    entry.phase = "sending";
    entry.token = frame.upload;
    entry.sent = frame.offset;
    this.pushChunks(entry);
  }

  async pushChunks(entry) {
    const step = this.chunkSize;
    const send = (offset, bytes) => {
      let binary = "";
      for (let i = 0; i < bytes.length; i += 0x8000) {
        binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      }
      return this.send({ type: "chunk", upload: entry.token, offset, data: btoa(binary),
        ref: entry.ref });
    };
    if (entry.sent >= entry.size) {
      send(entry.sent, new Uint8Array(0)); // nothing (left) to send: an empty chunk ends it
      return;
    }
    while (entry.sent < entry.size && entry.phase === "sending") {
      while (this.ws && this.ws.bufferedAmount > UPLOAD_AHEAD) {
        await new Promise((resolve) => setTimeout(resolve, 15));
      }
      const bytes = new Uint8Array(await entry.file.slice(entry.sent, entry.sent + step).arrayBuffer());
      if (!send(entry.sent, bytes)) {
        entry.phase = "cut";
        entry.error = "connection lost";
        this.emit("transfer", { entry });
        break;
      }
      entry.sent += bytes.length;
      this.emit("transfer", { entry });
    }
  }

  // A download goes on from the bytes a cut one kept (``this.cut``); what it gives
  // is checked against the file's id (its SHA-256) before anyone sees it.
  fetchFile(file, save = true) {
    if (this.fetched.has(file.id)) {
      this.emit("fetched", { file, url: this.fetched.get(file.id), save });
      return;
    }
    if (this.fetches.has(file.id)) return;
    const kept = this.cut.get(file.id);
    const fetch = kept || { file, parts: [], got: 0, save, hasher: new Sha256(), kind: "get",
      name: file.name, size: file.size, rate: new Rate() };
    fetch.save = fetch.save || save;
    const ref = this.request({ type: "download", file: file.id, offset: fetch.got });
    if (!ref) return;
    this.cut.delete(file.id);
    fetch.phase = "fetching";
    fetch.error = "";
    fetch.resumedFrom = fetch.got;
    this.fetches.set(file.id, fetch);
    this.emit("fetching", { file, got: fetch.got, entry: fetch });
  }

  on_file_data(frame) {
    const fetch = this.fetches.get(frame.file);
    if (!fetch || frame.offset !== fetch.got) return;
    const binary = atob(frame.data);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    fetch.parts.push(bytes);
    fetch.hasher.update(bytes);
    fetch.got += bytes.length;
    this.emit("fetching", { file: fetch.file, got: fetch.got, entry: fetch });
    if (frame.end) {
      this.fetches.delete(frame.file);
      if (fetch.hasher.hex() !== fetch.file.id) {
        fetch.phase = "failed";
        fetch.error = "it arrived damaged (its SHA-256 is not the file's); try again";
        this.emit("fetchfailed", { file: fetch.file, entry: fetch });
        return;
      }
      fetch.phase = "done";
      const url = URL.createObjectURL(new Blob(fetch.parts, { type: fetch.file.type }));
      this.fetched.set(frame.file, url);
      this.emit("fetched", { file: fetch.file, url, save: fetch.save, entry: fetch });
    }
  }

  // The connection dropped: uploads and downloads under way are cut. Their bytes
  // stay (on the server, in memory) and Resume takes them up from there.
  cutTransfers() {
    for (const [ref, entry] of this.transfers) {
      if (entry.phase === "sending" || entry.phase === "offered") {
        entry.phase = "cut";
        entry.error = "connection lost";
        this.transfers.delete(ref);
        this.emit("transfer", { entry });
      }
    }
    for (const [id, fetch] of this.fetches) {
      fetch.phase = "cut";
      fetch.error = "connection lost";
      this.cut.set(id, fetch);
      this.emit("transfer", { entry: fetch });
    }
    this.fetches.clear();
  }

  // Resume: a cut upload is offered again (the server answers with where its bytes
  // end), a cut download asks for the rest.
  resume(entry) {
    if (!this.online) return false;
    if (entry.kind === "get") this.fetchFile(entry.file, entry.save);
    else this.sendFile(entry.conv, entry.file, entry);
    return true;
  }

  // The echo (done) or an error (failed) that answers an upload, by its ref.
  endTransfer(ref, phase, error = "") {
    const entry = ref !== undefined && this.transfers.get(ref);
    if (!entry) return;
    entry.phase = phase;
    entry.error = error;
    if (phase === "done") {
      entry.sent = entry.size;
      // the sender's own picture is shown from her file, not fetched back
      if (entry.sha256 && !this.fetched.has(entry.sha256)) {
        this.fetched.set(entry.sha256, URL.createObjectURL(entry.file));
      }
    }
    this.transfers.delete(ref);
    this.emit("transfer", { entry });
  }

  on_upload_progress() {} // the page counts what it sent; the echo says it is stored

  wantsPreview(file) {
    return /^image\/(png|jpeg|gif|webp)$/.test(file.type) && file.size <= PREVIEW_MAX;
  }

  // ------------------------------------------------------------ what the server says

  on_search_results(frame) {
    this.emit("search", frame);
  }

  receive(frame) {
    const handler = this[`on_${frame.type}`];
    if (handler) handler.call(this, frame);
  }

  on_welcome(frame) {
    const first = !this.welcomed;
    this.nick = frame.nick;
    this.account = Boolean(frame.account); // read markers are kept for it
    this.serverName = frame.server;
    this.limits = frame.limits || this.limits;
    this.online = true;
    this.welcomed = true;
    this.attempt = 0;
    this.olderAsked.clear(); // pages asked of the last connection never come
    for (const conv of this.conversations.values()) conv.loading = false;
    if (Array.isArray(frame.nodes)) {
      // HOST:PORT only: the page navigates there, so nothing else is taken
      this.nodes = frame.nodes.filter((n) => typeof n === "string" &&
                                      /^[\w.\-]+:\d+$|^\[[\w:.%]+\]:\d+$/.test(n)).slice(0, 16);
    }
    this.emit("welcome", { first, motd: frame.motd || "" });
    this.emit("status", { text: "" });
    const waiting = this.outbox.splice(0);
    for (const { frame, conv, entry } of waiting) { // its own echo takes its place
      const at = conv.messages.indexOf(entry);
      if (at >= 0) conv.messages.splice(at, 1);
      this.emit("unline", { conv, entry });
      this.request(frame);
    }
    if (waiting.length) this.emit("outbox", { count: 0 });
    for (const fetch of [...this.cut.values()]) {
      if (!fetch.save) this.fetchFile(fetch.file, false); // a picture's preview goes on
    }
  }

  on_message(frame) {
    if (frame.id > this.lastId) this.lastId = frame.id;
    this.endTransfer(frame.ref, "done");
    let conv;
    if (frame.room !== undefined) conv = this.conversation(ROOM, frame.room);
    else conv = this.conversation(DM, frame.from === this.nick ? frame.to : frame.from);
    if (!conv.add(frame)) return;
    const mine = frame.from === this.nick;
    const mention = !mine && !frame.history && this.mentions(frame.text);
    conv.typing.delete(frame.from);
    this.emit("message", { conv, frame, mine, mention });
  }

  // ------------------------------------------------------------ replies, reactions, edits

  // A message of ``conv`` held in the page, by id (null when it is not loaded).
  findMessage(conv, id) {
    return conv.messages.find((m) => m.type === "message" && m.id === id) || null;
  }

  edit(entry, text) { return Boolean(this.request({ type: "edit", id: entry.id, text })); }

  remove(entry) { return Boolean(this.request({ type: "delete", id: entry.id })); }

  // Toggles one's own reaction ``emoji`` on ``entry``.
  react(entry, emoji) {
    const mine = ((entry.reactions || {})[emoji] || []).includes(this.nick);
    return Boolean(this.request({ type: "react", id: entry.id, emoji, on: !mine }));
  }

  // A change to a message (docs/protocol.md, "Replies, reactions, edits and deletes"):
  // applied to the message if the page holds it; ``actor`` made it.
  changeOf(frame, actor, apply) {
    if (frame.id > this.lastId) this.lastId = frame.id;
    const other = actor === this.nick ? frame.to : actor;
    const conv = frame.room !== undefined ? this.conversation(ROOM, frame.room)
      : this.conversation(DM, other);
    const entry = this.findMessage(conv, frame.target);
    if (!entry) return;
    apply(entry);
    this.emit("changed", { conv, entry });
  }

  on_edited(frame) {
    this.changeOf(frame, frame.by, (m) => { m.text = frame.text; m.edited = frame.ts; });
  }

  on_deleted(frame) {
    this.changeOf(frame, frame.by, (m) => {
      m.deleted = true;
      m.text = "";
      delete m.file;
      delete m.reactions;
    });
  }

  on_reaction(frame) {
    this.changeOf(frame, frame.nick, (m) => {
      const all = m.reactions || (m.reactions = {});
      const who = all[frame.emoji] || [];
      if (frame.on && !who.includes(frame.nick)) all[frame.emoji] = [...who, frame.nick];
      if (!frame.on && who.includes(frame.nick)) {
        const rest = who.filter((n) => n !== frame.nick);
        if (rest.length) all[frame.emoji] = rest;
        else delete all[frame.emoji];
      }
    });
  }

  // ------------------------------------------------------------ read markers

  // How far this nickname read ``conv`` on any of its devices: what came after is new.
  on_read(frame) {
    const conv = frame.room !== undefined ? this.conversation(ROOM, frame.room)
      : this.conversation(DM, frame.to);
    if (frame.id <= (conv.readUpTo || 0)) return;
    conv.readUpTo = frame.id;
    if (!conv.replaying) this.recount(conv);
  }

  recount(conv) {
    conv.unread = conv.messages.filter((m) => m.type === "message" && m.id > conv.readUpTo &&
                                        m.from !== this.nick).length;
    this.emit("read", { conv });
  }

  // The reader sees ``conv`` up to its newest message: kept for its other devices
  // (signed in to an account only; at most one request a second per conversation).
  markRead(conv) {
    if (!this.account || !this.online) return;
    const newest = conv.messages.reduce((top, m) => (m.type === "message" && m.id > top ? m.id : top), 0);
    if (newest <= (conv.readUpTo || 0)) return;
    clearTimeout(conv.markTimer);
    const wait = Math.max(0, (conv.markedAt || 0) + 1000 - Date.now());
    conv.markTimer = setTimeout(() => {
      conv.markedAt = Date.now();
      conv.readUpTo = Math.max(conv.readUpTo || 0, newest);
      const frame = { type: "mark_read", id: newest };
      if (conv.kind === ROOM) frame.room = conv.name;
      else frame.to = conv.name;
      this.request(frame);
    }, wait);
  }

  mentions(text) {
    if (!this.nick) return false;
    // (with the u flag, "-" outside a class must not be escaped: "\-" is an error)
    const escaped = this.nick.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp(`(^|[^\\p{L}\\p{N}_])${escaped}($|[^\\p{L}\\p{N}_])`, "iu").test(text);
  }

  on_history_end(frame) {
    const conv = this.conversation(ROOM, frame.room);
    const revealing = frame.ref !== undefined && this.revealAsked.get(frame.ref);
    if (revealing) {
      this.revealAsked.delete(frame.ref);
      if (revealing.pages > 0) conv.more = Boolean(frame.more);
      this.emit("history", { conv, older: true });
      if (revealing.pages > 0 && frame.more && !conv.ids.has(revealing.id)) {
        this.reveal(conv, revealing.id, revealing.pages);
      } else {
        this.emit("reveal", { conv, id: revealing.id });
      }
      return;
    }
    const asked = frame.ref !== undefined && this.olderAsked.delete(frame.ref);
    if (asked) conv.loading = false;
    if (asked || conv.oldestId === null || !conv.historyDone) conv.more = Boolean(frame.more);
    conv.historyDone = true;
    if (conv.replaying) {
      conv.replaying = false;
      const newest = conv.messages.reduce((top, m) => (m.id > top ? m.id : top), 0);
      for (const m of conv.messages) if (m.after === Infinity) m.after = newest;
    }
    this.emit("history", { conv, older: asked });
    if (!asked && conv.readUpTo) this.recount(conv);
  }

  on_joined(frame) {
    const conv = this.conversation(ROOM, frame.room);
    if (frame.nick === this.nick) {
      const again = conv.joined;
      conv.joined = true;
      if (!again) conv.replaying = true; // lines until history_end go after the replay
      conv.name = frame.room;
      this.emit("conversations");
      if (!again && frame.ref !== undefined) this.emit("open", { conv });
      if (again) return; // a resume: the room did not change for the user
    }
    if (frame.nick === this.nick) this.request({ type: "room_info", room: conv.name });
    if (!conv.users.includes(frame.nick)) conv.users.push(frame.nick);
    this.line(conv, { kind: "presence", text: `${frame.nick} joined`, ts: frame.ts });
    this.emit("users", { conv });
  }

  // ------------------------------------------------------------ rooms with owners

  isOperator(conv) {
    return Boolean(conv && conv.kind === ROOM && conv.operators.includes(this.nick));
  }

  // Why one may not speak in ``conv`` now, or "".
  muted(conv) {
    if (!conv || conv.kind !== ROOM || !conv.settings.moderated) return "";
    if (conv.operators.includes(this.nick) || conv.voiced.includes(this.nick)) return "";
    return `#${conv.name} is quiet for now: only its operators and the people they give voice to may speak.`;
  }

  setTopic(conv, topic) {
    return this.request({ type: "topic", room: conv.name, topic });
  }

  setModes(conv, changes) {
    return this.request({ type: "mode", room: conv.name, changes });
  }

  kickFromRoom(conv, nick, reason) {
    const frame = { type: "kick", room: conv.name, nick };
    if (reason) frame.reason = reason;
    return this.request(frame);
  }

  invite(conv, nick) {
    return this.request({ type: "invite", room: conv.name, nick });
  }

  on_topic(frame) {
    const conv = this.conversation(ROOM, frame.room, false);
    if (!conv) return;
    const changed = conv.topic !== frame.topic;
    conv.topic = frame.topic;
    conv.topicBy = frame.by || "";
    if (changed && frame.ts && conv.historyDone) { // a change, not the topic on joining
      this.line(conv, { kind: "system", ts: frame.ts, text: frame.topic
        ? `${frame.by} set the topic: ${frame.topic}` : `${frame.by} cleared the topic` });
    }
    this.emit("topic", { conv });
  }

  on_room_info(frame) {
    const conv = this.conversation(ROOM, frame.room, false);
    if (!conv) return;
    conv.settings = frame.settings || {};
    conv.bans = Array.isArray(frame.bans) ? frame.bans : [];
    if (typeof frame.topic === "string") conv.topic = frame.topic;
    this.emit("topic", { conv });
    this.emit("room_info", { conv });
  }

  on_mode(frame) {
    const conv = this.conversation(ROOM, frame.room, false);
    if (!conv || !Array.isArray(frame.changes)) return;
    for (const change of frame.changes) {
      const { mode, on, arg } = change;
      const role = mode === "operator" ? conv.operators : mode === "voice" ? conv.voiced : null;
      if (role) {
        const at = role.indexOf(arg);
        if (on && at < 0) role.push(arg);
        if (!on && at >= 0) role.splice(at, 1);
      } else if (mode === "key") {
        conv.settings.key = on ? (arg || true) : false;
      } else if (mode === "limit") {
        conv.settings.limit = on ? Number(arg) : null;
      } else if (mode !== "ban") {
        conv.settings[mode] = Boolean(on);
      }
      const said = modeSentence(frame.by, change);
      if (said) this.line(conv, { kind: "system", ts: frame.ts, text: said });
    }
    this.emit("users", { conv });
    this.emit("topic", { conv });
  }

  on_invited(frame) {
    if (frame.ref !== undefined) {
      const conv = this.conversation(ROOM, frame.room, false);
      if (conv) this.line(conv, { kind: "system", text: `You invited ${frame.nick} to #${frame.room}.` });
      return;
    }
    this.emit("invited", { room: frame.room, by: frame.by });
  }

  on_left(frame) {
    const conv = this.conversation(ROOM, frame.room, false);
    if (!conv) return;
    if (frame.nick === this.nick) {
      conv.joined = false;
      this.conversations.delete(conv.key);
      this.emit("conversations");
      this.emit("closed", { conv });
      if (frame.reason === "kicked" && frame.by) {
        this.emit("notice", { error: true, text: `${frame.by} removed you from #${frame.room}` +
          (frame.message && frame.message !== frame.by ? `: ${frame.message}` : ".") });
      }
      return;
    }
    conv.users = conv.users.filter((n) => n !== frame.nick);
    conv.typing.delete(frame.nick);
    const why = { part: "left", quit: "quit", disconnected: "disconnected",
      timeout: "timed out", kicked: "was kicked", banned: "was banned" }[frame.reason] || "left";
    const by = frame.reason === "kicked" && frame.by ? ` by ${frame.by}` : "";
    const extra = (frame.message && frame.message !== frame.by ? ` (${frame.message})` : "") ;
    if (by) {
      this.line(conv, { kind: "presence", text: `${frame.nick} was removed${by}${extra}`, ts: frame.ts });
      this.emit("users", { conv });
      return;
    }
    this.line(conv, { kind: "presence", text: `${frame.nick} ${why}${extra}`, ts: frame.ts });
    this.emit("users", { conv });
  }

  on_renamed(frame) {
    if (frame.old === this.nick) {
      this.nick = frame.new;
      this.emit("me");
    }
    for (const conv of this.conversations.values()) {
      const at = conv.users.indexOf(frame.old);
      if (at >= 0) {
        conv.users[at] = frame.new;
        this.line(conv, { kind: "presence", text: `${frame.old} is now ${frame.new}`, ts: frame.ts });
        this.emit("users", { conv });
      }
      if (conv.kind === DM && fold(conv.name) === fold(frame.old)) {
        this.conversations.delete(conv.key);
        conv.name = frame.new;
        this.conversations.set(conv.key, conv);
        this.emit("conversations");
      }
    }
  }

  on_users(frame) {
    const conv = this.conversation(ROOM, frame.room, false);
    if (conv) {
      conv.users = [...frame.users];
      conv.operators = Array.isArray(frame.operators) ? [...frame.operators] : [];
      conv.voiced = Array.isArray(frame.voiced) ? [...frame.voiced] : [];
      this.emit("users", { conv });
    } else {
      this.emit("who", { room: frame.room, users: frame.users });
    }
  }

  on_typing(frame) {
    const conv = this.conversation(ROOM, frame.room, false);
    if (!conv || frame.nick === this.nick) return;
    conv.typing.set(frame.nick, Date.now() + TYPING_SHOWN_MS);
    this.emit("typing", { conv });
  }

  on_rooms(frame) {
    this.emit("rooms", { rooms: frame.rooms, more: Boolean(frame.more) });
  }

  on_notice(frame) {
    this.emit("notice", { text: frame.text, ts: frame.ts });
  }

  on_kicked(frame) {
    this.stop(`You were removed from the chat: ${frame.reason}`);
    this.emit("notice", { text: `You were removed from the chat: ${frame.reason}`, error: true });
  }

  on_ping(frame) {
    this.send({ type: "pong", token: frame.token });
  }

  on_registered(frame) {
    this.account = true; // signed in to it from now on: read markers are kept
    this.emit("notice", { text: `The nickname ${frame.nick} is now yours: next time, give its password.` });
  }

  on_unregistered(frame) {
    this.emit("notice", { text: `The nickname ${frame.nick} is no longer registered.` });
  }

  on_error(frame) {
    this.endTransfer(frame.ref, "failed", frame.message);
    const older = frame.ref !== undefined && this.olderAsked.get(frame.ref);
    if (older) { // an older page refused: it may be asked again
      this.olderAsked.delete(frame.ref);
      const conv = this.conversations.get(older);
      if (conv) conv.loading = false;
    }
    if (!this.online && frame.code === "nick_taken" && this.resumeRooms && this.ws &&
        this.resumeTries < RESUME_TRIES) {
      this.ws.close(1000); // moved here: the dead node still holds the nickname a moment
      return;
    }
    if (!this.online && HELLO_FAILS.has(frame.code) && !this.welcomed) {
      this.stopped = true;
      this.emit("failed", { message: frame.message, code: frame.code });
      if (this.ws) this.ws.close(1000);
      return;
    }
    if (!this.online && frame.code === "nick_taken" && this.ws) {
      this.ws.close(1000); // our old connection still holds the nickname: try again soon
      return;
    }
    if (FINAL.has(frame.code)) this.stop(frame.message);
    this.emit("notice", { text: frame.message, error: true, code: frame.code });
  }

  line(conv, entry) {
    if (conv.replaying) entry.after = Infinity; // shown below the history being replayed
    conv.add(entry);
    this.emit("line", { conv, entry });
  }
}
