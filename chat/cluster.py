"""Many server processes, one chat: the shared state in Redis (``--redis``).

Each server is a node. What must be one across nodes lives in Redis:

* ``lanchat:seq``: the last message id given out (INCR; ids stay below 2**53).
* ``lanchat:log``: a stream, the one order of everything said. A message is the
  entry ``<id>-0``; a change of who is where (joined, left, renamed, online, offline)
  is ``<last id>-<n>``, between the messages it came between.
* ``lanchat:nicks``: nickname key -> "node\\tnick", the one holder of each nickname.
* ``lanchat:members``: "room key\\nnick key" -> [room, nick, node], who is where.
* ``lanchat:nodes``: node -> what the server window shows of it; ``lanchat:beats``:
  node -> its last heartbeat on Redis's clock (``lanchat:clock`` says when Redis last
  went unbeaten: see CLOCK); ``lanchat:own:<node>`` lists what it holds, so that
  whoever finds it dead takes it all back in one script.

Every write is one Lua script, so Redis runs it whole and alone: two nodes that race
for a nickname or post at once are put in an order by Redis, and everyone reads that
order from the stream. A node never delivers a message when Redis answers its post:
it delivers what it reads from the stream, in the stream's order, after writing it
to its own SQLite file (the copy that replays and history read). So every node, and
every client of every node, sees the same messages with the same ids in the same
order, and a client that resumes on another node with ``since`` finds every id it
may have missed in that node's copy (README, "Many servers, one chat").

The node talks to Redis over connections driven by the server's selectors loop
(chat.resp): ``cmd`` for scripts and heartbeats, ``feed`` for the blocking XREAD
(Redis blocks, our socket does not), and ``bulk`` for files copied between nodes
(``lanchat:file:<sha256>`` says which nodes keep a file; its chunks travel in the
list ``lanchat:fx:<node>:<sha256>``), so megabytes never queue before a message.

A cluster heals from any pause (README, "When things fail"): every Redis request has a
deadline (chat.resp), so a hung Redis is told at once (``store_failed``); a node is
taken for dead only on Redis's clock, after Redis has been running long enough for it
to beat; a node that finds itself taken for dead claims its users again (a user whose
nickname went to someone else meanwhile is told ``nick_taken`` and closed), hands back
what it no longer holds, and reads who is where again; leaves made while Redis was
away are told, in order, when it is back.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import secrets
import selectors
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from chat.accounts import Account
from chat.bans import Ban
from chat.errors import Later, ProtocolError, StoreError
from chat.events import Event, Joined, Left, Message, Typing
from chat.files import Download, Upload
from chat.model import Elsewhere, Peer, Room
from chat.protocol import name_key
from chat.resp import (
    HELD_GAP_S,
    REQUEST_TIMEOUT_S,
    Lost,
    Redis,
    credentials,
    is_error,
    parse_url,
    resolve,
    shown_url,
)
from chat.store import ACTION, NOTICE, PLAIN

if TYPE_CHECKING:
    from chat.hub import Hub

log = logging.getLogger("chat.server")

SEQ, LOG, NICKS, MEMBERS, NODES = ("lanchat:seq", "lanchat:log", "lanchat:nicks",
                                   "lanchat:members", "lanchat:nodes")
ACCOUNTS, BANS = "lanchat:accounts", "lanchat:bans"  # nick key / "kind\nkey" -> JSON
ROOMS = "lanchat:rooms"  # room key -> its roles and settings (chat.rules, JSON)
READ = "lanchat:read"  # "nick key\nconversation" -> [last id read, ts] (read markers)
BEATS, CLOCK_KEY = "lanchat:beats", "lanchat:clock"  # heartbeats on Redis's clock
WHO_IS_WHERE = frozenset("uxjlr")  # the kinds of change a view (VIEW) holds
BEAT_S = 1.0  # how often a node says it lives
DEAD_AFTER_MS = 3000  # a node silent this long is dead: what it held is taken back
GAP_MS = 2000  # no node beat for this long: Redis (or everyone) was held; nobody is
#               taken for dead until all have had DEAD_AFTER_MS to beat again
POST_FENCE_S = 1.5  # a message Redis runs later than this after it was sent is refused
#                     (the node gives up at 2 s: chat.resp's REQUEST_TIMEOUT_S)
REVIEW_S = 60.0  # who is where is read again from Redis this often (and after a gap)
BACKLOG = 10_000  # leaves kept while Redis is away, told in order when it is back
MAX_LOG = 1_000_000  # the stream keeps about this many entries (a node further behind
#                      than that cannot catch up from it; it logs so)
READ_COUNT = 2000  # entries per XREAD
MAX_NODES_TOLD = 16  # addresses of other nodes in a welcome
REWIND_WAIT_S = 1.0  # this node's copy failed to write: read again after this long
FETCH_CHUNK = 256 * 1024  # bytes per list item of a file on its way between nodes
FETCH_ITEMS = 32  # items moved per tick each way (8 MB: 80 MB/s at 10 ticks a second)
FETCH_TIMEOUT_S = 15.0  # a copy that makes no progress this long is given up
FETCH_KEEP_S = 60  # a file's list in Redis lapses this long after its last chunk
STARTUP_WAIT_S = 5.0  # a starting node holds hellos this long while it reaches Redis
UNAVAILABLE = ("The chat's shared store (Redis) cannot be reached; your message was "
               "not sent. Try again in a moment.")

# Each script is run whole by Redis, alone: the ordering argument rests on that.
#
# Who lives is judged on Redis's clock (TIME), never on a node's: a node beats into
# lanchat:beats (its last beat, in Redis's milliseconds); lanchat:clock holds `last`
# (the latest beat of any node) and `calm` (when Redis last saw nobody beat for
# GAP_MS: Redis itself was stopped, or every node was). A node is dead when it has not
# beaten for DEAD_MS *and* Redis has been beaten to for DEAD_MS: after a pause of
# Redis every heartbeat looks old, and everyone gets DEAD_MS to beat again.
CLOCK = """
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function alive(node, now)
  local beat = tonumber(redis.call('HGET', 'lanchat:beats', node) or '-1')
  if beat < 0 then return false end
  if now - beat <= DEAD_MS then return true end
  return now - tonumber(redis.call('HGET', 'lanchat:clock', 'calm') or '0') <= DEAD_MS
end
"""
# A message: refused when Redis runs it after the node stopped waiting for the answer
# (ARGV[5], Redis's milliseconds: the sender was told it was not sent, and it is not)
# or when its sender does not hold its nickname (ARGV[3] -> ARGV[4]: its node was taken
# for dead meanwhile, or someone else has it now).
POST = CLOCK + """
if ARGV[5] ~= '0' and clock() > tonumber(ARGV[5]) then
  return redis.error_reply('LATE answered after the node gave up')
end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[3], ARGV[3]) ~= ARGV[4] then
  return redis.error_reply('UNHELD the sender does not hold its nickname')
end
local id = redis.call('INCR', KEYS[1])
if id >= 9007199254740992 then return redis.error_reply('ERR ids exhausted') end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id .. '-0', 'e', ARGV[1])
return id
"""
# A change of who is where: only from the holder of the nickname it is about (ARGV[3]
# -> ARGV[4], '' for none); a membership is dropped only by the node that holds it.
EVENT = """
if ARGV[3] ~= '' and redis.call('HGET', KEYS[5], ARGV[3]) ~= ARGV[4] then return 0 end
local seq = redis.call('GET', KEYS[1]) or '0'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-*', 'e', ARGV[1])
local mine = '"' .. ARGV[5] .. '"]'
for i = 6, #ARGV, 3 do
  if ARGV[i] == 's' then
    redis.call('HSET', KEYS[3], ARGV[i + 1], ARGV[i + 2])
    redis.call('SADD', KEYS[4], 'm\\n' .. ARGV[i + 1])
  else
    local value = redis.call('HGET', KEYS[3], ARGV[i + 1])
    if value and string.sub(value, -#mine) == mine then
      redis.call('HDEL', KEYS[3], ARGV[i + 1])
    end
    redis.call('SREM', KEYS[4], 'm\\n' .. ARGV[i + 1])
  end
end
return 1
"""
# Take back what a node held (its nicknames and memberships), each told in the
# stream; shared by REAP, CLAIM (a nickname of a dead node is taken over at once) and
# RECONCILE (a node hands back what it no longer holds).
REAP_NODE = """
local function drop_item(node, item, maxlen, seq)
  local kind, field = string.sub(item, 1, 1), string.sub(item, 3)
  if kind == 'n' then
    local holder = redis.call('HGET', 'lanchat:nicks', field)
    if holder and string.match(holder, '^[^\\t]*') == node then
      redis.call('HDEL', 'lanchat:nicks', field)
      redis.call('XADD', 'lanchat:log', 'MAXLEN', '~', maxlen, seq .. '-*', 'e',
                 cjson.encode({k = 'x', nick = string.match(holder, '\\t(.*)$'), o = node}))
    end
  else
    local value = redis.call('HGET', 'lanchat:members', field)
    if value then
      local member = cjson.decode(value)
      if member[3] == node then
        redis.call('HDEL', 'lanchat:members', field)
        redis.call('XADD', 'lanchat:log', 'MAXLEN', '~', maxlen, seq .. '-*', 'e',
                   cjson.encode({k = 'l', room = member[1], nick = member[2], o = node,
                                 reason = 'disconnected'}))
      end
    end
  end
end
local function reap_node(node, maxlen)
  local seq = redis.call('GET', 'lanchat:seq') or '0'
  local own = 'lanchat:own:' .. node
  for _, item in ipairs(redis.call('SMEMBERS', own)) do
    drop_item(node, item, maxlen, seq)
  end
  redis.call('DEL', own)
  redis.call('HDEL', 'lanchat:nodes', node)
  redis.call('HDEL', 'lanchat:beats', node)
end
"""
# -1: this node was taken for dead and has not beaten since (it registers first);
# 0: a live node holds the nickname; else the stream id of the claim.
CLAIM = CLOCK + REAP_NODE + """
local now = clock()
if redis.call('HEXISTS', 'lanchat:beats', ARGV[2]) == 0 then return -1 end
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder then
  local node = string.match(holder, '^[^\\t]*')
  if node ~= ARGV[2] then
    if alive(node, now) then return 0 end
    reap_node(node, ARGV[5])  -- its holder's node is dead: everything it held goes
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\\t' .. ARGV[3])
redis.call('SADD', KEYS[2], 'n\\n' .. ARGV[1])
local seq = redis.call('GET', KEYS[3]) or '0'
return redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], seq .. '-*', 'e', ARGV[4])
"""
RELEASE = """
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and string.match(holder, '^[^\\t]*') == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  local seq = redis.call('GET', KEYS[3]) or '0'
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], seq .. '-*', 'e', ARGV[3])
end
redis.call('SREM', KEYS[2], 'n\\n' .. ARGV[1])
return 1
"""
# A node's heartbeat (ARGV[3] '1': it registered on this connection already; if it is
# gone from lanchat:beats, it was taken for dead: {0, now} and nothing is written, and
# the node claims its users again). Otherwise {1, now}.
BEAT = CLOCK + """
local now = clock()
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {0, now} end
local last = tonumber(redis.call('HGET', KEYS[3], 'last') or '0')
if now - last > GAP_MS then redis.call('HSET', KEYS[3], 'calm', now) end
redis.call('HSET', KEYS[3], 'last', now)
redis.call('HSET', KEYS[1], ARGV[1], now)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return {1, now}
"""
# Every node, every second: the dead nodes' holdings go (ARGV[2]: a node to end even
# though it beats, when it shuts down; ARGV[3]: the node asking, never taken for dead).
REAP = CLOCK + REAP_NODE + """
local now = clock()
local reaped = {}
for _, node in ipairs(redis.call('HKEYS', KEYS[1])) do
  if node == ARGV[2] or (node ~= ARGV[3] and not alive(node, now)) then
    reap_node(node, ARGV[1])
    table.insert(reaped, node)
  end
end
return reaped
"""
# After a gap: a node hands back whatever Redis says it holds that it no longer does
# (ARGV[3..]: what it holds now, as lanchat:own:<node> lists it).
RECONCILE = REAP_NODE + """
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local seq = redis.call('GET', 'lanchat:seq') or '0'
local own = 'lanchat:own:' .. ARGV[1]
local dropped = 0
for _, item in ipairs(redis.call('SMEMBERS', own)) do
  if not keep[item] then
    drop_item(ARGV[1], item, ARGV[2], seq)
    redis.call('SREM', own, item)
    dropped = dropped + 1
  end
end
return dropped
"""
# An account or a ban stored by a node: kept for nodes to come, told to those running
# (ARGV[3]: the field, ARGV[4]: its JSON, "" to drop it).
SHARE = """
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[3], ARGV[3])
else
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
end
local seq = redis.call('GET', KEYS[1]) or '0'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-*', 'e', ARGV[1])
return 1
"""
# The next id must pass every id this node's copy or the stream holds (after Redis
# lost its data, the copies still hold the ids given out).
SEED = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[1])
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then
  local top = tonumber(string.match(last[1][1], '^(%d+)'))
  if top > want then want = top end
end
if want > seq then redis.call('SET', KEYS[1], want); seq = want end
return seq
"""
# What a node reads once before following the stream: everyone's places, and the
# stream's last entry (everything after it is news).
SNAPSHOT = """
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), id,
        redis.call('HGETALL', KEYS[4]), redis.call('HGETALL', KEYS[5]),
        redis.call('HGETALL', KEYS[6]), redis.call('HGETALL', KEYS[7])}
"""
# Who is where, again (after a gap, and once a minute): a node rebuilds its view of
# the others from it; stream entries up to its last are in it.
VIEW = """
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), id}
"""
SCRIPTS = {name: text.replace("DEAD_MS", str(DEAD_AFTER_MS)).replace("GAP_MS", str(GAP_MS))
           for name, text in {"post": POST, "event": EVENT, "claim": CLAIM,
                              "release": RELEASE, "beat": BEAT, "reap": REAP,
                              "reconcile": RECONCILE, "seed": SEED, "snapshot": SNAPSHOT,
                              "view": VIEW, "share": SHARE}.items()}


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def account_json(account: Account) -> str:
    return json.dumps([account.key, account.nick, account.salt.hex(), account.hash.hex(),
                       account.params, account.created])


def account_of(value: Any) -> Account:
    key, nick, salt, hashed, params, created = json.loads(value)
    return Account(key, nick, bytes.fromhex(salt), bytes.fromhex(hashed), params, created)


def ban_of(value: Any) -> Ban:
    return Ban(*json.loads(value))


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def message_of(event: dict[str, Any]) -> Message:
    """A message as the stream carries it, on its way to ``Hub.arrived``."""
    kind = event.get("kind", PLAIN)
    return Message(0, event["ts"], event.get("room"), event.get("to"), event["from"],
                   event["text"], kind == ACTION, kind == NOTICE, event.get("file"),
                   event.get("tags"), about=event.get("about"),
                   change=event.get("change", 0), about_from=event.get("af"))


@dataclass(eq=False)
class Fetch:
    """A file this node copies from another node, for people waiting to download it."""

    sha256: str
    upload: Upload
    waiters: list[tuple[Peer, int, str | None]]  # (peer, offset, ref)
    heard: float  # when a chunk last came (or the copy was asked for)
    popping: bool = False  # an LPOP is on its way


@dataclass(eq=False)
class Push:
    """A file this node sends to another node (through a Redis list)."""

    key: str
    download: Download


class Cluster:
    """This node's side of the cluster; see the module's text."""

    def __init__(self, hub: Hub, url: str, selector: selectors.BaseSelector,
                 clock: Callable[[], float], describe: Callable[[], dict[str, Any]]) -> None:
        host, port, db = parse_url(url)
        address = resolve(host, port)
        self.url = shown_url(url)  # as the log and the window show it
        self.hub = hub
        self.clock = clock
        self.describe = describe  # what the nodes list shows of this node
        self.node = secrets.token_hex(4)
        self.shas = {name: _sha(text) for name, text in SCRIPTS.items()}
        auth = credentials(url)
        self.cmd = Redis(selector, clock, address, db, f"lanchat-{self.node}",
                         self._cmd_ready, self._lost, auth)
        self.feed = Redis(selector, clock, address, db, f"lanchat-{self.node}-feed",
                          self._feed_ready, self._lost, auth)
        # Files between nodes go over a connection of their own, so that megabytes
        # on their way never stand in line before a message.
        self.bulk = Redis(selector, clock, address, db, f"lanchat-{self.node}-files",
                          lambda: None, lambda why: None, auth, timeout=FETCH_TIMEOUT_S)
        hub.gate.shared = self.shared  # accounts and bans stored here go to every node
        self.seeded = False  # the id sequence is past this node's copy
        self.following = False  # the stream is being read
        self.position = "0-0"  # the last stream entry applied
        self.settled = "0-0"  # entries up to here are before the snapshot: messages only
        self.viewed = "0-0"  # who-is-where entries up to here are in the last view
        self.viewing = False  # a VIEW is on its way
        self._next_review = 0.0
        self.registered = False  # this node beat on the current connection
        self.resyncs = 0  # how many times it claimed its users again (beats before
        #                   the last one cannot say it was taken for dead)
        self.offset: float | None = None  # Redis's clock minus ours, in seconds
        self.reconciling = 0  # answers of a resync still to come
        self.calm_until = 0.0  # after a gap, others may still be claiming their users
        self.gap = False  # Redis was away, or this node was taken for dead
        self.backlog: deque[list[Any]] = deque(maxlen=BACKLOG)  # EVENT arguments
        self.quiet_refusals = 0  # messages refused as too late or not held (logged once)
        self._ticked = clock()
        self.nodes: dict[str, dict[str, Any]] = {}  # node -> its description
        # peer -> (nick key, "wait", "ok STREAM-ID", "taken" or "failed")
        self.claims: dict[Peer, tuple[str, str]] = {}
        self.posts: dict[int, tuple[Peer | None, str | None]] = {}  # token -> sender
        self._tokens = itertools.count(1)
        self.releases: dict[str, str] = {}  # nicknames to hand back at the pass's end
        self.applied: list[int] = []  # tokens of this node's posts applied this pass
        self.generation = 0  # of the reads: a rewind ignores the answers to older ones
        self.reading = False  # an XREAD is on its way
        self.resume_at = 0.0  # after a rewind, reading starts again at this time
        self._next_beat = 0.0
        self.problem: str | None = "connecting to Redis"
        self.ever_up = False
        self.warned_gap = False
        self.seeded_at = 0.0  # when the id sequence was last set up (a connection)
        self.offered = False  # this node's accounts and bans were offered to Redis
        self.snapshotting = False  # the feed's first read is on its way
        self.patience = clock() + STARTUP_WAIT_S  # hellos wait this long for a first Redis
        self.fetches: dict[str, Fetch] = {}  # files being copied here, by SHA-256
        self.looking: dict[Peer, int] = {}  # downloads asking Redis who keeps a file
        self.pushes: list[Push] = []  # files being sent to other nodes
        log.info("cluster node %s, Redis at %s", self.node, self.url)

    # ------------------------------------------------------------ state

    @property
    def up(self) -> bool:
        """New messages, nicknames and changes can be written now."""
        return self.cmd.ready and self.seeded

    @property
    def converging(self) -> bool:
        """This node's view of who is where may still change without anyone joining
        or leaving: it (or Redis) was away, and it, or the others, are claiming their
        users again (a few seconds)."""
        return (not self.up or not self.following or self.reconciling > 0
                or self.viewing or self.clock() < self.calm_until)

    @property
    def state(self) -> str:
        """One line for the console's and the window's node list."""
        if self.problem:
            return f"not storing: Redis unreachable ({self.problem})"
        if self.converging:
            return "converging: reading who is where again after a gap"
        return "Redis up"

    def addresses(self) -> list[str]:
        """Where the other live nodes are reached (a welcome's `nodes`)."""
        return sorted(str(info["address"]) for node, info in self.nodes.items()
                      if node != self.node and info.get("address"))[:MAX_NODES_TOLD]

    def members(self) -> list[tuple[str, str, int, bool]]:
        """The nodes as the server window lists them: (node, address, users, this
        one?), this node first, then the others by address."""
        mine = (self.node, self.describe().get("address", ""), len(self.hub.users), True)
        others = [(node, str(info.get("address", "?")), int(info.get("users", 0)), False)
                  for node, info in self.nodes.items() if node != self.node]
        return [mine, *sorted(others, key=lambda n: n[1])]

    def _call(self, script: str, keys: list[str], args: list[Any],
              reply: Callable[[Any], None] | None = None) -> None:
        self.cmd.call("EVALSHA", self.shas[script], len(keys), *keys, *args, reply=reply)

    # ------------------------------------------------------------ the loop's side

    def tick(self) -> None:
        now = self.clock()
        if now - self._ticked > HELD_GAP_S:  # this process was held: taken for dead?
            self._next_beat = 0.0  # ask at once
        self._ticked = now
        for conn in (self.cmd, self.feed):
            conn.tick()
        if self.following and not self.reading and now >= self.resume_at:
            self._read()
        if self.up and now >= self._next_beat:
            self._next_beat = now + BEAT_S
            self._beat()
        if self.following and now >= self._next_review:
            self._review()
        if self.fetches or self.pushes:
            self._move_files(now)

    def flush(self) -> None:
        if self.releases:
            self._release_unused()
        for conn in (self.cmd, self.feed, self.bulk):
            if conn.out:
                conn.flush()

    def _beat(self) -> None:
        """Say this node lives (on Redis's clock); learn whether it was taken for
        dead meanwhile, the clocks' offset, the other nodes; take back what dead
        nodes held."""
        info = {**self.describe(), "users": len(self.hub.users)}
        known = "1" if self.registered else "0"
        self.registered = True
        self._call("beat", [BEATS, NODES, CLOCK_KEY], [self.node, json.dumps(info), known],
                   reply=partial(self._beaten, self.clock(), self.resyncs))
        self.cmd.call("HGETALL", NODES, reply=self._nodes)
        # Back from an outage, the others get a beat's time to say they live before
        # anyone is taken for dead (Redis judges it on its clock as well: CLOCK).
        if self.clock() - self.seeded_at > DEAD_AFTER_MS / 1000 + BEAT_S:
            self._call("reap", [NODES, NICKS, MEMBERS, SEQ, LOG], [MAX_LOG, "", self.node],
                       reply=self._reaped)

    def _beaten(self, sent: float, resyncs: int, reply: Any) -> None:
        if is_error(reply):
            self._checked("a heartbeat", reply)
            return
        alive, redis_ms = int(reply[0]), int(reply[1])
        now = self.clock()
        if now - sent < 0.2:  # a prompt answer: Redis's clock is known to 0.1 s
            self.offset = redis_ms / 1000 - (sent + now) / 2
        if not alive and self.up and resyncs == self.resyncs:
            log.warning("cluster: this node was taken for dead by the others (it did not "
                        "beat for %d s: held, suspended or cut off); claiming its users "
                        "again", DEAD_AFTER_MS // 1000)
            self.gap = True
            self._resync()
            self._review()

    def _nodes(self, reply: Any) -> None:
        if is_error(reply):
            return
        nodes = {}
        for name, value in zip(reply[::2], reply[1::2], strict=True):
            try:
                nodes[_text(name)] = json.loads(value)
            except ValueError:
                continue
        self.nodes = nodes

    def _reaped(self, reply: Any) -> None:
        if not is_error(reply) and reply:
            log.warning("cluster: node(s) %s stopped answering; their users were taken "
                        "out", ", ".join(_text(n) for n in reply))

    def close(self) -> None:
        """Shutdown: hand back everything this node holds (best effort, no wait)."""
        if self.cmd.ready:
            self._call("reap", [NODES, NICKS, MEMBERS, SEQ, LOG],
                       [MAX_LOG, self.node, self.node])
            self.cmd.flush()
        for conn in (self.cmd, self.feed, self.bulk):
            conn.close()

    # ------------------------------------------------------------ connections

    def _cmd_ready(self) -> None:
        self._load_scripts()
        self._call("seed", [SEQ, LOG], [self.hub.store.last_id], reply=self._seeded)

    def _seeded(self, reply: Any) -> None:
        if is_error(reply):
            log.warning("cluster: Redis refused the id sequence: %s", reply)
            return
        self._offer()
        self.seeded = True
        self.seeded_at = self.clock()
        self._resync()
        self._next_beat = 0.0
        if self.following:
            self._working_again()

    def _resync(self) -> None:
        """After a gap (Redis away, or this node taken for dead): register, tell the
        leaves made meanwhile in order, claim every user's nickname and rooms again,
        and hand back whatever Redis says this node holds that it no longer does. One
        pipeline: nothing else this node says comes between."""
        hub = self.hub
        self.registered = False
        self.resyncs += 1
        self._beat()
        backlog, self.backlog = self.backlog, deque(maxlen=BACKLOG)
        for args in backlog:
            self._call("event", self._event_keys(), args,
                       reply=partial(self._published, args))
        keep: list[str] = []
        for peer in list(hub.users.values()):
            assert peer.key is not None and peer.nick is not None
            self.reconciling += 1
            self._call("claim", [NICKS, f"lanchat:own:{self.node}", SEQ, LOG],
                       [peer.key, self.node, peer.nick, self._event("u", nick=peer.nick),
                        MAX_LOG], reply=partial(self._reclaimed, peer))
            keep.append(f"n\n{peer.key}")
            for room in peer.rooms.values():
                self._publish({"k": "j", "room": room.name, "nick": peer.nick}, peer,
                              sets=[self._member(room, peer)])
                keep.append(f"m\n{room.key}\n{peer.key}")
        self.reconciling += 1
        self._call("reconcile", [], [self.node, MAX_LOG, *keep], reply=self._reconciled)

    def _reclaimed(self, peer: Peer, reply: Any) -> None:
        self.reconciling = max(0, self.reconciling - 1)
        if reply == 0 and not peer.closing:  # someone took it on another node meanwhile
            nick = peer.nick
            self.hub.error(peer, ProtocolError(
                "nick_taken", f"The nickname '{nick}' was taken by someone on another "
                "server of this chat while this one was cut off; connect again with "
                "another nickname."), None)
            self.hub.kick(peer, f"Your nickname '{nick}' is someone else's now: this "
                          "server was cut off from the others.", "disconnected")

    def _reconciled(self, reply: Any) -> None:
        self.reconciling = max(0, self.reconciling - 1)
        if self.gap:
            self.gap = False
            self.calm_until = self.clock() + DEAD_AFTER_MS / 1000 + BEAT_S
        if not is_error(reply) and reply:
            log.info("cluster: handed back %d nickname(s) and place(s) this node no "
                     "longer holds", reply)

    def _feed_ready(self) -> None:
        if not self.offered:
            return  # this node's own accounts and bans go to Redis first (`_offered`)
        self.snapshotting = True
        self.feed.call("EVAL", SNAPSHOT, 7, MEMBERS, NICKS, LOG, ACCOUNTS, BANS, ROOMS, READ,
                       reply=self._snapshot)

    def _snapshot(self, reply: Any) -> None:
        self.snapshotting = False
        if is_error(reply):
            return
        members, nicks, last, accounts, bans, rooms, markers = reply
        hub = self.hub
        try:
            self._mirror_all(accounts, bans)
            for field, data in zip(markers[::2], markers[1::2], strict=True):
                nick_key, _, conv = _text(field).partition("\n")
                last_id, ts = json.loads(data)
                hub.store.put_read(nick_key, conv, last_id, ts)  # (forward only)
            for key, data in zip(rooms[::2], rooms[1::2], strict=True):
                if hub.owners.rules.get(_text(key)) is None or \
                        hub.owners.rules[_text(key)].to_json() != _text(data):
                    hub.owners.mirror_key(_text(key), _text(data))
        except StoreError as exc:  # this node's copy cannot write: start over later
            hub.write_failed(exc)
            self.feed.drop(f"this node's database: {exc.reason}")
            return
        self._rebuild(members, nicks)
        self.settled = self.viewed = _text(last)
        if self.position == "0-0" or not self.following:
            self.position = f"{hub.store.last_id}-0"  # the copy has everything before
        self.following = True
        self._next_review = self.clock() + REVIEW_S
        if not self.reading:
            self._read()
        if self.seeded:
            self._working_again()

    def _review(self) -> None:
        """Read who is where again (after a gap, and every REVIEW_S): whatever this
        node missed or misread is put right, and its users are told the difference."""
        self._next_review = self.clock() + REVIEW_S
        if self.feed.ready and self.following and not self.viewing:
            self.viewing = True
            self.feed.call("EVAL", VIEW, 3, MEMBERS, NICKS, LOG, reply=self._viewed)

    def _viewed(self, reply: Any) -> None:
        self.viewing = False
        if is_error(reply) or not self.following:
            return
        members, nicks, last = reply
        self._rebuild(members, nicks)
        if _stream_id(_text(last)) > _stream_id(self.viewed):
            self.viewed = _text(last)

    def _rebuild(self, members: list[Any], nicks: list[Any]) -> None:
        """This node's view of the others' users is made Redis's: who is online
        elsewhere (``hub.elsewhere``) and in which rooms (``Room.remote``). Users here
        are told of each difference as a `joined` or `left` (and those following a
        nickname, of each one gone or come)."""
        hub = self.hub
        now = hub.now_ms()
        before = {key: gone.nick for key, gone in hub.elsewhere.items()}
        hub.elsewhere.clear()
        for key, value in zip(nicks[::2], nicks[1::2], strict=True):
            node, _, nick = _text(value).partition("\t")
            if node != self.node:
                hub.elsewhere[_text(key)] = Elsewhere(nick, _text(key), node)
        places: dict[str, dict[str, str]] = {}  # room key -> nick key -> nick
        names: dict[str, str] = {}
        for value in members[1::2]:
            room_name, nick, node = json.loads(value)
            if node != self.node:
                room_key = name_key(room_name)
                names[room_key] = room_name
                places.setdefault(room_key, {})[name_key(nick)] = nick
        for room_key, name in names.items():
            hub.room(name, room_key)
        for room in list(hub.rooms.values()):
            now_there = places.get(room.key, {})
            gone = [nick for key, nick in room.remote.items() if key not in now_there]
            came = [nick for key, nick in now_there.items() if key not in room.remote]
            for nick in gone:
                room.remove_remote(nick)
                if room.members:
                    hub.to_room(room, Left(room.name, nick, "disconnected", now))
            for nick in came:
                room.add_remote(nick)
                if room.members:
                    hub.to_room(room, Joined(room.name, nick, now))
            hub.drop_if_dead(room)  # rooms only people elsewhere kept alive
        for key, nick in before.items():
            if key not in hub.elsewhere:
                hub.presence(nick, False)
        for key, there in hub.elsewhere.items():
            if key not in before:
                hub.presence(there.nick, True)

    def _mirror_all(self, accounts: list[Any], bans: list[Any]) -> None:
        """Make this node's accounts and bans those of the cluster (its own were
        offered to it first: `_offer`)."""
        gate, store = self.hub.gate, self.hub.store
        theirs = {_text(k): account_of(v) for k, v in zip(accounts[::2], accounts[1::2],
                                                          strict=True)}
        mine = {account.key: account for account in store.account_rows()}
        for key in mine.keys() - theirs.keys():
            gate.mirror_account(None, key)
        for key, account in theirs.items():
            if mine.get(key) != account:
                gate.mirror_account(account, key)
        shared = {(b.kind, b.key): b for b in map(ban_of, bans[1::2])}
        for ban in store.bans():
            if (ban.kind, ban.key) not in shared:
                gate.mirror_lift(ban.kind, ban.key)
        for ban in shared.values():
            gate.mirror_ban(ban)
            self.hub.enforce(ban)

    def _offer(self) -> None:
        """A node's accounts and bans from before it joined the cluster are offered
        to it (HSETNX: what the cluster has wins)."""
        store = self.hub.store
        for account in store.account_rows():
            self.cmd.call("HSETNX", ACCOUNTS, account.key, account_json(account))
        for ban in store.bans():
            self.cmd.call("HSETNX", BANS, f"{ban.kind}\n{ban.key}", json.dumps(ban))
        for key, data in store.room_rules():
            self.cmd.call("HSETNX", ROOMS, key, data)
        self.cmd.call("PING", reply=self._offered)

    def _offered(self, reply: Any) -> None:
        if is_error(reply):
            return
        self.offered = True
        if self.feed.ready and not self.following and not self.snapshotting:
            self._feed_ready()

    def shared(self, what: str, value: Any) -> None:
        """This node stored an account or a ban (chat.gate): every node gets it."""
        if what == "account":
            field, data = value.key, account_json(value)
            event = {"k": "a", "key": value.key, "account": data}
        elif what == "drop":
            field, data, event = value, "", {"k": "a", "key": value}
        elif what == "ban":
            field, data = f"{value.kind}\n{value.key}", json.dumps(value)
            event = {"k": "b", "ban": data}
        else:
            kind, key = value
            field, data, event = f"{kind}\n{key}", "", {"k": "b", "lift": [kind, key]}
        if not self.cmd.ready:
            log.warning("cluster: Redis is away: this %s is not shared with the other "
                        "nodes", "ban" if what in ("ban", "lift") else "account")
            return
        table = ACCOUNTS if what in ("account", "drop") else BANS
        self._call("share", [SEQ, LOG, table], [self._event(event.pop("k"), **event), MAX_LOG,
                                                field, data],
                   reply=partial(self._checked, "an account or a ban"))

    def _read(self) -> None:
        self.reading = True
        self.feed.call("XREAD", "COUNT", READ_COUNT, "BLOCK", 1000, "STREAMS", LOG,
                       self.position, reply=partial(self._entries, self.generation),
                       timeout=1.0 + REQUEST_TIMEOUT_S)  # Redis answers after 1 s at most

    def _entries(self, generation: int, reply: Any) -> None:
        if generation != self.generation:
            return  # asked before a rewind: read again from the rewound position
        self.reading = False
        if is_error(reply):
            return  # the connection broke: `_feed_ready` starts over
        if reply:
            for _, entries in reply:
                self._apply(entries)
        if self.clock() >= self.resume_at:
            self._read()

    def committed(self) -> None:
        """This node's copy holds what was applied: the senders' refs are spent."""
        for token in self.applied:
            self.posts.pop(token, None)
        self.applied.clear()

    def rewind(self) -> bool:
        """This node's copy could not take what was applied (its output was taken
        back): read it again from the last committed id in a second. The senders keep
        their refs; changes of who is where come again, and are idempotent."""
        self.applied.clear()
        self.position = f"{self.hub.store.last_id}-0"
        self.generation += 1
        self.reading = False
        self.resume_at = self.clock() + REWIND_WAIT_S
        return True

    def _lost(self, why: str) -> None:
        self.reading = self.reading and self.feed.ready
        self.snapshotting = self.snapshotting and self.feed.ready
        self.offered = self.offered and self.cmd.ready
        self.seeded = self.seeded and self.cmd.ready
        self.following = self.following and self.feed.ready
        self.registered = self.registered and self.cmd.ready
        self.gap = self.gap or self.ever_up
        self.viewing = self.viewing and self.feed.ready
        if self.problem is None:
            log.warning("cluster: lost Redis (%s); not storing: messages are refused "
                        "until it is back", why)
        elif why != self.problem:  # never reached, or failing another way: said once
            log.warning("cluster: cannot reach Redis at %s (%s); not storing: messages "
                        "are refused until it answers", self.url, why)
        if not self.ever_up:
            self.patience = 0.0  # the first try failed: hellos are told, not held
        self.problem = why
        for token in list(self.posts):
            self._refused(token)

    def _working_again(self) -> None:
        if self.up and self.following and self.problem is not None:
            if self.ever_up:
                late = (f" ({self.quiet_refusals} refused meanwhile: Redis ran them too "
                        "late, or their nickname was being claimed again)"
                        if self.quiet_refusals else "")
                log.warning("cluster: Redis is back; messages are stored and delivered%s",
                            late)
                self.quiet_refusals = 0
            else:
                log.info("cluster: connected to Redis")
            self.problem = None
            self.ever_up = True

    # ------------------------------------------------------------ what arrives

    def _apply(self, entries: list[Any]) -> None:
        hub = self.hub
        settled, viewed = _stream_id(self.settled), _stream_id(self.viewed)
        for entry_id, fields in entries:
            position = _text(entry_id)
            ms, seq = _stream_id(position)
            self.position = position
            try:
                event = json.loads(fields[1])
            except (ValueError, IndexError):
                continue
            if seq == 0:
                if ms > hub.store.last_id + 1 and not self.warned_gap:
                    self.warned_gap = True  # ids are given one by one: these were trimmed
                    log.warning("cluster: this node's copy misses messages %d to %d: they "
                                "were trimmed from Redis's stream before it read them",
                                hub.store.last_id + 1, ms - 1)
                    self._review()  # what changed meanwhile was trimmed as well
                if ms > hub.store.last_id:
                    try:
                        self._message(ms, event)
                    except StoreError as exc:  # this node's copy cannot write now
                        hub.write_failed(exc)  # takes back the pass's, and rewinds
                        return
            elif (ms, seq) > settled and event.get("o") != self.node and not (
                    (ms, seq) <= viewed and event.get("k") in WHO_IS_WHERE):
                try:
                    self._change(event)
                except StoreError as exc:  # an account or a ban this copy cannot keep
                    hub.write_failed(exc)
                    return

    def _message(self, msg_id: int, event: dict[str, Any]) -> None:
        sender, ref = None, None
        if event.get("o") == self.node:
            token = event.get("p", 0)
            sender, ref = self.posts.get(token, (None, None))
            self.applied.append(token)
            if sender is not None and sender.closing:
                sender, ref = None, None
        self.hub.arrived(msg_id, message_of(event), sender, ref)

    def _change(self, event: dict[str, Any]) -> None:
        hub = self.hub
        kind, nick = event.get("k"), event.get("nick", "")
        if kind == "u":
            key = name_key(nick)
            fresh = key not in self.hub.elsewhere
            self.hub.elsewhere[key] = Elsewhere(nick, key, event.get("o", ""))
            if fresh:
                hub.presence(nick, True)
        elif kind == "x":
            gone = self.hub.elsewhere.get(name_key(nick))
            if gone is not None and gone.node == event.get("o"):
                del self.hub.elsewhere[gone.key]
                hub.presence(gone.nick, False)
        elif kind == "t":
            room = hub.rooms.get(name_key(event.get("room", "")))
            if room is not None and room.members:
                hub.to_room(room, Typing(room.name, nick))
        elif kind == "j":
            hub.remote_joined(event["room"], nick, event.get("ts", hub.now_ms()))
        elif kind == "l":
            hub.remote_left(event["room"], nick, event.get("reason", "part"),
                            event.get("message"), event.get("ts", hub.now_ms()),
                            event.get("by"))
        elif kind == "g":  # a room's roles and settings changed on another node
            hub.owners.mirror(event["room"], event["rules"], event.get("ev"))
        elif kind == "kk":  # another node's operator kicks someone out of a room
            hub.owners.kicked_here(event["room"], nick, event.get("by", ""),
                                   event.get("reason", ""))
        elif kind == "rd":  # a registered nickname read further on another node
            hub.store.put_read(event["key"], event["conv"], event["id"], event["at"])
        elif kind == "fq":  # a node asks for a file this one keeps
            if event.get("to") == self.node:
                self._push_file(event.get("sha", ""), event.get("o", ""))
        elif kind == "a":  # an account made, changed or dropped on another node
            key = event.get("key", "")
            account = account_of(event["account"]) if "account" in event else None
            hub.gate.mirror_account(account, key)
            if account is None:
                for peer in hub.peers:
                    peer.accounts.discard(key)
        elif kind == "b":  # a ban made or lifted on another node
            if "ban" in event:
                ban = ban_of(event["ban"])
                hub.gate.mirror_ban(ban)
                hub.enforce(ban)
            else:
                hub.gate.mirror_lift(*event["lift"])
        elif kind == "r":
            old, new = event["old"], event["new"]
            moved = self.hub.elsewhere.pop(name_key(old), None)
            if moved is not None:
                self.hub.elsewhere[name_key(new)] = Elsewhere(new, name_key(new), moved.node)
                if name_key(old) != name_key(new):
                    hub.presence(old, False)
                    hub.presence(new, True)
            hub.remote_renamed(old, new, event.get("rooms", []), event.get("ts", 0))

    # ------------------------------------------------------------ what this node says

    def post(self, sender: Peer | None, message: Message, ref: str | None) -> int:
        """Send a message to Redis for its id and place; it arrives when it comes
        back through the stream (0: its id is not known yet). ``ProtocolError`` when
        Redis is away."""
        if not self.up:
            raise ProtocolError("store_failed", UNAVAILABLE)
        token = next(self._tokens)
        self.posts[token] = (sender, ref)
        kind = NOTICE if message.notice else ACTION if message.action else PLAIN
        event: dict[str, Any] = {"k": "m", "ts": message.ts, "from": message.sender,
                                 "text": message.text, "kind": kind,
                                 "o": self.node, "p": token}
        if message.room is not None:
            event["room"] = message.room
        else:
            event["to"] = message.to
        if message.file is not None:
            event["file"] = message.file
        if message.tags:
            event["tags"] = message.tags
        if message.about is not None:  # the id it answers, or (a change) changes
            event["about"] = message.about
        if message.about_from is not None:
            event["af"] = message.about_from
        if message.change:
            event["change"] = message.change
        # Redis takes it only while this node still waits for the answer (its clock
        # against Redis's is known from the heartbeats) and from the nickname's holder.
        by = 0 if self.offset is None else int(
            (self.clock() + self.offset + POST_FENCE_S) * 1000)
        key, holder = ("", "") if sender is None or sender.key is None else (
            sender.key, f"{self.node}\t{sender.nick}")
        self._call("post", [SEQ, LOG, NICKS], [json.dumps(event, separators=(",", ":")),
                                               MAX_LOG, key, holder, by],
                   reply=partial(self._posted, token, self.hub.store.last_id))
        return 0

    def _posted(self, token: int, floor: int, reply: Any) -> None:
        """Redis's answer to a post; ``floor``: this node's newest id when it was sent
        (Redis's sequence was past it then, so a working Redis answers above it)."""
        if is_error(reply):
            if str(reply).startswith(("LATE", "UNHELD")):
                self.quiet_refusals += 1  # said once, when Redis is back
                if str(reply).startswith("UNHELD"):
                    self._next_beat = 0.0  # was this node taken for dead? ask now
            else:
                self._checked("a message", reply)
            self._refused(token)
        elif reply <= floor:
            # Redis gave an id this node's copy holds already: it lost its data while
            # connected (FLUSHALL, a replica promoted). Nobody delivers that one (every
            # copy has the id): its sender is told, and the sequence is set past ours.
            log.warning("cluster: Redis's id sequence went back (to %d); setting it past "
                        "this node's messages again", reply)
            self._refused(token)
            if self.seeded:
                self.seeded = False
                self._call("seed", [SEQ, LOG], [self.hub.store.last_id], reply=self._seeded)

    def _checked(self, what: str, reply: Any) -> None:
        if is_error(reply) and not isinstance(reply, Lost):
            log.warning("cluster: Redis refused %s: %s", what, reply)
            if str(reply).startswith("NOSCRIPT"):
                self._load_scripts()  # its script cache was emptied (SCRIPT FLUSH)

    def _load_scripts(self) -> None:
        for name, text in SCRIPTS.items():
            self.cmd.call("SCRIPT", "LOAD", text, reply=partial(self._checked, name))

    def _refused(self, token: int) -> None:
        sender, ref = self.posts.pop(token, (None, None))
        if sender is not None and not sender.closing:
            self.hub.refuse_post(sender, ref, UNAVAILABLE)

    def _event(self, kind: str, **fields: Any) -> str:
        return json.dumps({"k": kind, "o": self.node, "ts": self.hub.now_ms(), **fields},
                          separators=(",", ":"))

    def _member(self, room: Room, peer: Peer) -> tuple[str, str]:
        assert peer.key is not None
        return (f"{room.key}\n{peer.key}", json.dumps([room.name, peer.nick, self.node]))

    def _event_keys(self) -> list[str]:
        return [SEQ, LOG, MEMBERS, f"lanchat:own:{self.node}", NICKS]

    def _event_args(self, event: dict[str, Any], peer: Peer | None) -> list[Any]:
        """EVENT's arguments up to its sets and drops: about ``peer``, it is told only
        while ``peer`` holds its nickname (None: about nobody's nickname)."""
        key, holder = ("", "") if peer is None else (peer.key, f"{self.node}\t{peer.nick}")
        return [self._event(event.pop("k"), **event), MAX_LOG, key, holder, self.node]

    def _publish(self, event: dict[str, Any], peer: Peer, *,
                 sets: Sequence[tuple[str, str]] = (), drops: Sequence[str] = ()) -> None:
        kind = event["k"]
        args = self._event_args(event, peer)
        for field, value in sets:
            args += ["s", field, value]
        for field in drops:
            args += ["d", field, ""]
        if not self.cmd.ready:
            if kind == "l":  # told in order once Redis is back (joins: by `_resync`)
                self.backlog.append(args)
            return
        self._call("event", self._event_keys(), args, reply=partial(self._published, args))

    def _published(self, args: list[Any], reply: Any) -> None:
        if isinstance(reply, Lost) and '"k":"l"' in args[0]:
            self.backlog.append(args)  # maybe not run: told again (leaves are idempotent)
        else:
            self._checked("a change", reply)

    def typing(self, peer: Peer, room: Room) -> None:
        """`typing` for the members of ``room`` on other nodes (not kept anywhere)."""
        if self.cmd.ready:
            self._call("event", self._event_keys(), self._event_args(
                {"k": "t", "room": room.name, "nick": peer.nick}, peer))

    def joined(self, peer: Peer, room: Room) -> None:
        self._publish({"k": "j", "room": room.name, "nick": peer.nick}, peer,
                      sets=[self._member(room, peer)])

    def left(self, peer: Peer, room: Room, reason: str, message: str | None,
             by: str | None = None) -> None:
        event: dict[str, Any] = {"k": "l", "room": room.name, "nick": peer.nick,
                                 "reason": reason}
        if message:
            event["message"] = message
        if by:
            event["by"] = by
        self._publish(event, peer, drops=[f"{room.key}\n{peer.key}"])

    def rules_changed(self, room: Room, data: str, event: Event | None) -> None:
        """A room's rules changed here: kept in ``lanchat:rooms`` for nodes to come,
        told to those running (with what its members here were told)."""
        if not self.cmd.ready:
            log.warning("cluster: Redis is away: this change of %s is not shared with "
                        "the other nodes", room.name)
            return
        fields: dict[str, Any] = {"room": room.name, "rules": data}
        if event is not None:
            fields["ev"] = event.fields()
        self._call("share", [SEQ, LOG, ROOMS], [self._event("g", **fields), MAX_LOG,
                                                room.key, data],
                   reply=partial(self._checked, "a room's settings"))

    def kick(self, room: Room, nick: str, by: str, reason: str) -> None:
        if self.cmd.ready:
            self._call("event", self._event_keys(), self._event_args(
                {"k": "kk", "room": room.name, "nick": nick, "by": by, "reason": reason},
                None), reply=partial(self._checked, "a kick"))

    def renamed(self, peer: Peer, old: str, old_key: str) -> None:
        rooms = list(peer.rooms.values())
        self._publish({"k": "r", "old": old, "new": peer.nick, "rooms": [r.name for r in rooms]},
                      peer, sets=[self._member(room, peer) for room in rooms],
                      drops=[f"{room.key}\n{old_key}" for room in rooms])
        self.release(old_key, old)

    # ------------------------------------------------------------ nicknames

    def claim(self, peer: Peer, key: str, nick: str) -> None:
        """Hold ``nick`` for ``peer`` across the cluster. Raises ``Later`` until Redis
        answers, then ``nick_taken`` if a live node holds it; returns once it is
        ``peer``'s (ask again after ``Later``: the request is handled again)."""
        held = self.claims.get(peer)
        if held is not None and held[0] == key:
            if held[1] == "wait":
                raise Later()
            if held[1].startswith("ok "):
                # Held once this node has read the stream up to the claim: the accounts
                # and bans it checks (before this) are then those of that moment.
                if _stream_id(self.position) < _stream_id(held[1][3:]):
                    raise Later()
                del self.claims[peer]
                return
            del self.claims[peer]
            if held[1] == "taken":
                raise ProtocolError("nick_taken", f"The nickname '{nick}' is taken.")
            raise ProtocolError("store_failed", "The chat's shared store (Redis) did not "
                                "answer; try again in a moment.")
        if not self.up:
            if not self.ever_up and self.clock() < self.patience:
                raise Later()  # the node is starting: its first hellos wait for Redis
            raise ProtocolError("store_failed", "The chat's shared store (Redis) cannot "
                                "be reached; try again in a moment.")
        self.claims[peer] = (key, "wait")
        self._call("claim", [NICKS, f"lanchat:own:{self.node}", SEQ, LOG],
                   [key, self.node, nick, self._event("u", nick=nick), MAX_LOG],
                   reply=partial(self._claimed, peer, key, nick))
        raise Later()

    def _claimed(self, peer: Peer, key: str, nick: str, reply: Any) -> None:
        if self.claims.get(peer, ("",))[0] != key:  # it went meanwhile
            if reply and not is_error(reply):
                self.release(key, nick)
            return
        if is_error(reply):
            if not isinstance(reply, Lost):
                log.warning("cluster: Redis refused a nickname claim: %s", reply)
            self.claims[peer] = (key, "failed")
            return
        if reply == -1:  # this node was taken for dead and has not claimed again yet
            self._next_beat = 0.0
            self.claims[peer] = (key, "failed")
            return
        self.claims[peer] = (key, f"ok {_text(reply)}" if reply else "taken")

    def release(self, key: str, nick: str) -> None:
        """``nick`` is no longer used here: handed back at the end of the pass, unless
        someone here took it meanwhile (an account's owner reclaiming it)."""
        self.releases[key] = nick

    def _release_unused(self) -> None:
        if not self.cmd.ready:
            return  # kept until Redis is back (and `_resync` hands them back too)
        releases, self.releases = self.releases, {}
        for key, nick in releases.items():
            if key not in self.hub.users:
                self._call("release", [NICKS, f"lanchat:own:{self.node}", SEQ, LOG],
                           [key, self.node, self._event("x", nick=nick), MAX_LOG])

    def read_marker(self, nick_key: str, conv: str, last_id: int, ts: int) -> None:
        """A read marker moved here: kept in ``lanchat:read`` and told to the others."""
        if self.cmd.ready:
            field = f"{nick_key}\n{conv}"
            self._call("share", [SEQ, LOG, READ], [
                self._event("rd", key=nick_key, conv=conv, id=last_id, at=ts), MAX_LOG,
                field, json.dumps([last_id, ts])],
                reply=partial(self._checked, "a read marker"))

    def forget(self, peer: Peer) -> None:
        self.claims.pop(peer, None)
        self.looking.pop(peer, None)

    # ------------------------------------------------------------ files

    def kept_file(self, sha256: str, size: int) -> None:
        """This node keeps the file ``sha256``: nodes without it copy it from here."""
        if self.cmd.ready:
            self.cmd.call("HSET", f"lanchat:file:{sha256}", self.node, size)

    def fetch_file(self, peer: Peer, sha256: str, offset: int, ref: str | None) -> bool:
        """``peer`` wants a file this node does not keep: copy it from a node that
        does, then send it (``no_such_file`` when no running node has it)."""
        fetch = self.fetches.get(sha256)
        if fetch is not None:
            fetch.waiters.append((peer, offset, ref))
            return True
        if not self.up:
            raise ProtocolError("store_failed", "The chat's shared store (Redis) cannot be "
                                "reached; try again in a moment.")
        self.looking[peer] = self.looking.get(peer, 0) + 1
        self.cmd.call("HGETALL", f"lanchat:file:{sha256}",
                      reply=partial(self._file_holders, peer, sha256, offset, ref))
        return True

    def waiting(self, peer: Peer) -> int:
        """Downloads of ``peer`` waiting for a copy from another node (they count
        toward its downloads at once, so asking costs it, not the nodes)."""
        return self.looking.get(peer, 0) + sum(
            1 for fetch in self.fetches.values() for who, _, _ in fetch.waiters if who is peer)

    def _file_holders(self, peer: Peer, sha256: str, offset: int, ref: str | None,
                      reply: Any) -> None:
        hub = self.hub
        if self.looking.get(peer, 0) > 1:
            self.looking[peer] -= 1
        else:
            self.looking.pop(peer, None)
        holders = {} if is_error(reply) else {
            _text(k): int(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}
        live = [n for n in holders if n in self.nodes and n != self.node]
        if sha256 in self.fetches:  # asked twice at once: one copy for both
            self.fetches[sha256].waiters.append((peer, offset, ref))
            return
        if hub.files.stored(sha256):  # copied meanwhile
            self._serve(peer, sha256, offset, ref)
            return
        try:
            if not live:
                raise ProtocolError("no_such_file", "That file is not on any running "
                                    "server of this chat (the operator may have deleted "
                                    "it, or its server is stopped).")
            upload = hub.files.fetch(sha256, holders[live[0]])
        except ProtocolError as exc:
            if not peer.closing:
                hub.error(peer, exc, ref)
            return
        self.fetches[sha256] = Fetch(sha256, upload, [(peer, offset, ref)], self.clock())
        self.cmd.call("DEL", f"lanchat:fx:{self.node}:{sha256}")  # leftovers of a try
        self.bulk.tick()  # the files' own connection, if it is not up yet
        self._call("event", self._event_keys(), self._event_args(
            {"k": "fq", "sha": sha256, "to": live[0]}, None))

    def _push_file(self, sha256: str, node: str) -> None:
        try:
            download = self.hub.files.open_download(sha256, 0, None)
        except ProtocolError:
            return  # deleted here meanwhile: the asker gives up after its timeout
        self.pushes.append(Push(f"lanchat:fx:{node}:{sha256}", download))

    def _move_files(self, now: float) -> None:
        """Once a tick: send the next chunks of files other nodes want, and take in
        the chunks of those this node is copying. Bounded: FETCH_ITEMS each way."""
        files, bulk = self.hub.files, self.bulk
        bulk.tick()  # connected when files first move (and again after a loss)
        if bulk.ready and len(bulk.out) < FETCH_ITEMS * FETCH_CHUNK:  # Redis took the last
            budget = FETCH_ITEMS
            for push in list(self.pushes):
                while budget and push.download.offset < push.download.size:
                    bulk.call("RPUSH", push.key, files.read(push.download, FETCH_CHUNK))
                    budget -= 1
                bulk.call("EXPIRE", push.key, FETCH_KEEP_S)
                if push.download.offset >= push.download.size:
                    os.close(push.download.fd)
                    self.pushes.remove(push)
                if not budget:
                    break
        for fetch in list(self.fetches.values()):
            if now - fetch.heard > FETCH_TIMEOUT_S:
                self._fetched(fetch, ProtocolError("no_such_file", "The file could not "
                              "be copied from the server that keeps it; try again."))
            elif bulk.ready and not fetch.popping:
                fetch.popping = True
                bulk.call("LPOP", f"lanchat:fx:{self.node}:{fetch.sha256}", FETCH_ITEMS,
                          reply=partial(self._chunks, fetch))

    def _chunks(self, fetch: Fetch, reply: Any) -> None:
        fetch.popping = False
        if is_error(reply) or not reply or self.fetches.get(fetch.sha256) is not fetch:
            return
        fetch.heard = self.clock()
        files = self.hub.files
        try:
            for chunk in reply:
                if files.write(fetch.upload, fetch.upload.received, chunk):
                    files.finish(fetch.upload)  # checked against its SHA-256
                    self._fetched(fetch, None)
                    return
        except ProtocolError as exc:  # too many bytes, a full disk, not its SHA-256
            self._fetched(fetch, exc)

    def _fetched(self, fetch: Fetch, failed: ProtocolError | None) -> None:
        del self.fetches[fetch.sha256]
        if failed is not None:
            self.hub.files.abandon(fetch.upload)
            log.warning("cluster: copying file %s failed: %s", fetch.sha256, failed.message)
        else:
            self.kept_file(fetch.sha256, fetch.upload.size)
        for peer, offset, ref in fetch.waiters:
            if peer.closing:
                continue
            if failed is not None:
                self.hub.error(peer, failed, ref)
            else:
                self._serve(peer, fetch.sha256, offset, ref)

    def _serve(self, peer: Peer, sha256: str, offset: int, ref: str | None) -> None:
        try:
            self.hub.start_download(peer, self.hub.files.open_download(sha256, offset, ref))
        except ProtocolError as exc:
            self.hub.error(peer, exc, ref)
