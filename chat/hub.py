"""Chat state and the life of a connection: who is where, output, errors, timers.

The hub is the one owner of chat state. Front doors hand it requests one way (through
``chat.dispatch``, which nothing else imports); handlers, the operator and the console
change who is where only through the hub's operations (``register``, ``join``,
``leave``, ``rename``, ``post``, ``close``), which also queue what others must see.
Nothing here touches a socket or imports the dispatch. When a peer must go, ``close``
takes it out of the chat at once and lists it in ``closing`` for the server, which
flushes what is queued (when asked) and then closes the socket.

Storage: messages of one pass are committed together (``commit``) before any byte of
the pass is sent. When the store cannot write (disk full, a lock held by another
process, a read-only file), the pass's uncommitted messages are taken back out of
every peer's output, their senders get ``error``/``store_failed`` instead of the echo,
and the server goes on; the next write tries again.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from chat.bans import Ban
from chat.config import ServerConfig
from chat.errors import ProtocolError, StoreError
from chat.events import (
    AwayAnswer,
    Counts,
    Error,
    Event,
    FileData,
    Joined,
    Kicked,
    Left,
    Message,
    Notice,
    Ping,
    Presence,
    Renamed,
    Replay,
    TagRelay,
    Typing,
    UploadReady,
    WallopsLine,
    WhowasItem,
    change_event,
)
from chat.files import (
    PUMP_BYTES,
    UPLOADS_PER_PEER,
    Download,
    Files,
    Upload,
    chunk_size,
    no_such_file,
)
from chat.gate import Gate, ban_sentence
from chat.model import SNIFF, Elsewhere, Peer, Room, Spans, TokenBucket, share
from chat.owners import Owners
from chat.protocol import MAX_MONITOR, encode_message, name_key
from chat.sequencer import Local, Sequencer
from chat.store import ACTION, NOTICE, PLAIN, Store

MAX_ERRORS_IN_ROW = 20  # docs/protocol.md: more than 20 error frames in a row closes
CLOSE_FLUSH_SECONDS = 3.0  # how long a closing peer may take to read its last output
# join, part and nick: a bucket of their own (docs/protocol.md), so that renaming or
# hopping rooms (each a message to many people, or a new room) stays cheap to serve.
CHANGE_RATE = 1.0
CHANGE_BURST = 10
# A connection's door work (docs/protocol.md, "Flood control"): lines its door answers
# itself, WebSocket fragments and control frames, blank and bad lines. Past this rate
# it is not read for a while: it slows down, and TCP pushes back on it.
DOOR_WORK_RATE = 100.0
DOOR_WORK_BURST = 400
INDEX_SECONDS = 1.0  # how often stored messages are added to the search index
INDEX_BATCH = 5000  # messages indexed at a time (a few ms of the loop per second)
ROOMS_PAGE = 500  # rooms per `rooms` answer; more are asked for with `after`
WHOWAS_KEEP = 1000  # users who left, remembered for `whowas` (docs/protocol.md)
WHOWAS_ANSWER = 10  # entries in one `whowas` answer, the newest
MESSAGE_HEAD = b'{"type":"message","id":'  # how every message frame starts (encode)
STORE_FAILED = ("The server could not store your message ({why}); it was not sent. "
                "Try again in a moment.")

log = logging.getLogger("chat.server")


class Hub:
    """Everything the server knows about who is where, independent of I/O."""

    def __init__(self, config: ServerConfig, store: Store,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.wall = wall
        self.peers: dict[Peer, None] = {}  # every open connection
        self.users: dict[str, Peer] = {}  # registered peers by nick key
        self.rooms = {key: Room(name, key, True) for key, name in store.rooms()}
        self.room_order = sorted(self.rooms)  # room keys, sorted: `rooms` pages
        self.dirty: dict[Peer, int] = {}  # peers with output this pass: where it starts
        self.closing: dict[Peer, None] = {}  # out of the chat, socket still open
        self.gate = Gate(config, store, clock, self.now_ms, self.commit)
        self.messages = 0
        self.cost = 0  # frames queued on members in this pass (the server's budget)
        self.searched = False  # a search ran in this pass: the next waits for the next
        self.storage_problem: str | None = None  # why writing fails, while it does
        # The last replay made per room (key: after, before, limit, byte budget),
        # dropped at the room's next message.
        self.replays: dict[str, tuple[tuple[int, int | None, int, int, bool], Replay, bool]] = {}
        self._staged: list[tuple[int, Peer | None, str | None]] = []  # uncommitted
        self._batch: Room | None = None  # the room whose broadcasts are being gathered
        self._ping_seq = 0
        self._tag_seq = 0
        self.spans: Spans = []  # the pass's live messages as codecs wrote them (model.Spans)
        self._next_index = 0.0
        self._files: Files | None = None  # opened at the first file request
        self.hashing: dict[Peer, None] = {}  # peers with an upload being rehashed (resume)
        self.downloading: dict[Peer, None] = {}  # peers with downloads under way
        if os.path.isdir(os.path.join(config.data_dir, "files")):
            try:  # at once, when there are files: stale partial uploads go now
                self.files.expire()
            except ProtocolError as exc:
                log.warning("%s", exc.message)
        # Who gives messages their ids and order: this node's store, or a cluster's
        # Redis (chat.sequencer); the hub never asks which.
        self.sequencer: Sequencer = Local(self)
        self.elsewhere: dict[str, Elsewhere] = {}  # users online on other nodes, by key
        self.owners = Owners(self)  # rooms' roles and settings (chat.owners)
        self.most_users = 0  # the most online at once (IRC's LUSERS)
        self.watchers: dict[str, dict[Peer, None]] = {}  # nick key -> who follows it
        # who held which nickname lately (IRC's WHOWAS): (key, nick, user, realname,
        # host, left ms), the newest last
        self.gone_users: deque[tuple[str, str, str, str, str, int]] = deque(
            maxlen=WHOWAS_KEEP)

    def now_ms(self) -> int:
        return int(self.wall() * 1000)

    # ------------------------------------------------------------ output

    def _batch_for(self, room: Room) -> None:
        if self._batch is not room:
            self.deliver()
            self._batch = room

    def to_room(self, room: Room, event: Event, special: Peer | None = None,
                special_event: Event | None = None) -> None:
        """Broadcast to a room's members (``special`` gets ``special_event`` instead,
        or nothing when that is None). Gathered per pass, in one room at a time, so
        every peer still receives everything in the order it happened."""
        if self._batch is not room:  # (_batch_for, inline: once per message)
            self.deliver()
            self._batch = room
        room.pending.append((event, special, special_event))
        self.cost += len(room.members)

    def to_peer(self, peer: Peer, event: Event) -> None:
        batch = self._batch
        if batch is not None:
            if peer in batch.members:  # after what the room was told: in its batch
                batch.pending.append((None, peer, event))
                peer.owed += len(event.data)
                return
            if peer in batch.gone:
                self.deliver()
        peer.queue(event)

    def deliver(self) -> None:
        """Queue the gathered room broadcasts; before sends and commits."""
        if self._batch is not None:
            room, self._batch = self._batch, None
            room.deliver()

    # ------------------------------------------------------------ storage

    def commit(self) -> bool:
        """Commit the pass's writes; on failure take back what depended on them.

        Returns whether the writes are stored. Called at the end of every pass, and
        right away by writes that answer with a confirmation (accounts, bans)."""
        self.deliver()
        try:
            wrote = self.store.commit()
        except StoreError as exc:
            self.write_failed(exc)
            return False
        self._staged.clear()
        self.spans.clear()
        self.sequencer.committed()
        if self.storage_problem is not None and wrote:
            log.warning("storage works again: messages are stored and delivered")
            self.storage_problem = None
        return True

    def write_failed(self, exc: StoreError) -> None:
        """The open transaction is lost: no message of it may reach anyone."""
        self.deliver()
        for peer in self.dirty:
            peer.settle()  # (its output is read and cut below)
        failed = {msg_id: (sender, ref) for msg_id, sender, ref in self._staged}
        self._staged.clear()
        for key in self.store.rollback():
            room = self.rooms.get(key)
            if room is not None:
                room.has_history = False
                self.drop_if_dead(room)
        again = self.sequencer.rewind()
        if again:
            # Sequenced, not in this node's copy: nobody here gets them now, and they
            # arrive again once the copy can write.
            failed = {msg_id: (None, None) for msg_id in failed}
        self.replays.clear()
        if self.storage_problem is None:
            log.warning("cannot store messages: %s; they are refused until writing "
                        "works again", exc.reason)
        self.storage_problem = exc.reason
        spans, self.spans[:] = list(self.spans), []
        if not failed:
            return
        self._take_back(spans, failed, exc)
        for peer, mark in self.dirty.items():
            if len(peer.out) > mark and (peer.codec is None or not peer.codec.marks):
                peer.out[mark:] = self._without(peer, bytes(peer.out[mark:]), failed, exc)
        for sender, _ in failed.values():
            self.messages -= 1
            if sender is not None:
                sender.sent -= 1
                sender.bucket.refund()
        log.warning("%d message(s) %s", len(failed), "held back until this node's copy "
                    "can write" if again else "refused: not stored")

    def _store_failed(self, peer: Peer, ref: str | None, exc: StoreError) -> Error:
        peer.errors += 1
        return Error("store_failed", STORE_FAILED.format(why=exc.reason), ref=ref)

    def _without(self, peer: Peer, chunk: bytes,
                 failed: dict[int, tuple[Peer | None, str | None]],
                 exc: StoreError) -> bytes:
        """``chunk`` (what was queued for ``peer`` this pass, read back: JSON lines, or
        its codec's units with the line each carries) without the failed messages;
        their sender gets ``store_failed`` (with the send's ref) where its echo was."""
        codec = peer.codec
        if codec is None:
            pieces = [(line + b"\n", line + b"\n") for line in chunk.split(b"\n")[:-1]]
        else:
            pieces = codec.pieces(chunk)
        kept: list[bytes] = []
        told: set[int] = set()
        start = len(MESSAGE_HEAD)
        for line, wired in pieces:
            if line.startswith(MESSAGE_HEAD):
                msg_id = int(line[start:line.index(b",", start)])
                if msg_id in failed:
                    sender, ref = failed[msg_id]
                    if sender is peer and msg_id not in told:
                        told.add(msg_id)
                        error = self._store_failed(peer, ref, exc)
                        kept.append(error.data if codec is None else
                                    codec.render((error,))[0])
                    continue
            kept.append(wired)
        return b"".join(kept)

    def _take_back(self, spans: Spans, failed: dict[int, tuple[Peer | None, str | None]],
                   exc: StoreError) -> None:
        """Cut the failed messages out of what codecs wrote for them (last first, so
        that the earlier spans stay where they are); their sender gets
        ``store_failed`` in its door's form where its echo was."""
        for peer, base, marks in reversed(spans):
            codec = peer.codec
            if codec is None or not codec.marks:
                continue
            for start, end, message in reversed(marks):
                if message.id not in failed:
                    continue
                sender, ref = failed[message.id]
                instead = b""
                if sender is peer and message.ref is not None:
                    instead = codec.render((self._store_failed(peer, ref, exc),))[0]
                peer.out[base + start:base + end] = instead

    # ------------------------------------------------------------ chat operations

    def post(self, sender: Peer | None, text: str, action: bool, ref: str | None, *,
             room: Room | None = None, target: Peer | Elsewhere | None = None,
             file: dict[str, str | int] | None = None, notice: bool = False,
             tags: dict[str, str] | None = None, reply_to: int | None = None,
             reply_from: str | None = None) -> int:
        """Send a message (to a room, or to ``target``) on its one road: the
        sequencer gives it its id, then it ``arrived``: stored and queued for everyone
        here who gets it; the sender's copy carries ``ref``. ``sender`` None is the
        operator, speaking as `server`. Returns its id when known now (0 when it comes
        back later, on a cluster); ``StoreError`` or ``ProtocolError`` when it cannot
        be taken (nothing changed then). A ``notice`` is stored as one; client
        ``tags`` are relayed with it, not stored (docs/protocol.md)."""
        nick = sender.nick if sender is not None else "server"
        assert nick is not None
        message = Message(0, int(self.wall() * 1000), room.name if room is not None else None,
                          target.nick if room is None and target is not None else None,
                          nick, text, action and not notice, notice, file, tags or None)
        if reply_to is not None:  # (set after: a call with keywords costs a dict more)
            message.about, message.about_from = reply_to, reply_from
        return self.sequencer.post(sender, message, ref)

    def read_marker(self, nick_key: str, conv: str, last_id: int) -> None:
        """A registered nickname read ``conv`` up to ``last_id``: kept here and on
        every node (forward only)."""
        ts = self.now_ms()
        if self.store.put_read(nick_key, conv, last_id, ts):
            self.sequencer.read_marker(nick_key, conv, last_id, ts)

    def change(self, sender: Peer, kind: int, about: int, text: str, ref: str | None, *,
               room: Room | None = None, other: str | None = None) -> int:
        """A change to the message ``about`` (chat.store's EDIT, DELETE, REACT or
        UNREACT), checked by the caller: on the messages' road (one order, stored,
        shared), told to those who take changes (``Peer.wants_edits``) when it
        ``arrived``. ``other``: in a direct conversation, the other one's nickname."""
        assert sender.nick is not None
        message = Message(0, int(self.wall() * 1000), room.name if room is not None else None,
                          other if room is None else None, sender.nick, text,
                          about=about, change=kind)
        return self.sequencer.post(sender, message, ref)

    def _store(self, message: Message, room: Room | None, msg_id: int | None) -> int:
        file = message.file
        stored_file = json.dumps(file, separators=(",", ":")) if file is not None else None
        kind = message.change or (NOTICE if message.notice else
                                   ACTION if message.action else PLAIN)
        if room is not None:
            msg_id = self.store.add(message.ts, message.sender, message.text,
                                    room_key=room.key, room_name=room.name, kind=kind,
                                    file=stored_file, msg_id=msg_id, about=message.about)
            room.has_history = True
            self.replays.pop(room.key, None)  # the room's history changed
            return msg_id
        return self.store.add(message.ts, message.sender, message.text,
                              recipient=message.to, kind=kind, file=stored_file,
                              msg_id=msg_id, about=message.about)

    def arrived(self, msg_id: int | None, message: Message, sender: Peer | None,
                ref: str | None) -> int:
        """A message with its place in the order (``msg_id``: the sequencer's, or None
        for this node's store to give): kept in this node's copy and queued for this
        node's members. ``sender``: its sender when connected here (its copy carries
        ``ref``). Returns its id."""
        room = target = None
        if message.to is None:
            assert message.room is not None
            key = name_key(message.room)
            room = self.rooms.get(key) or self.room(message.room, key)
        else:
            target = self.users.get(name_key(message.to))
        message.id = self._store(message, room, msg_id)
        self._staged.append((message.id, sender, ref))
        if message.change:
            self._changed(message, ref, sender, room, target)
        else:
            self._emit(message, ref, sender, room, target)
        return message.id

    def _changed(self, change: Message, ref: str | None, sender: Peer | None,
                 room: Room | None, target: Peer | None) -> None:
        """A change arrived: applied to the message it is about (every copy decides
        the same, in the one order), then told to those who take changes; its sender
        gets its copy with ``ref`` (or `no_such_message` when the message went
        meanwhile)."""
        assert change.about is not None
        if not self.store.change(change.about, change.change, change.text, change.sender,
                                 change.ts, change.id):
            if sender is not None and ref is not None:
                self.error(sender, ProtocolError(
                    "no_such_message", "That message was deleted meanwhile."), ref)
            return
        event = change_event(change)
        members: Any = room.members if room is not None else (
            (target,) if target is not None else ())
        takers = [m for m in members if m.wants_edits and m is not sender]
        self.cost += len(members)
        self.deliver()
        share(takers, event)
        if sender is not None:  # its copy (with the request's ref), asked for or not
            sender.queue(event.answering(ref))

    def refuse_post(self, sender: Peer, ref: str | None, text: str) -> None:
        """A message the cluster could not take: its sender is told (store_failed)."""
        sender.bucket.refund()
        self.error(sender, ProtocolError("store_failed", text), ref)

    def _emit(self, message: Message, ref: str | None, sender: Peer | None,
              room: Room | None, target: Peer | None) -> None:
        """Queue a stored message for everyone here who gets it; the sender's copy
        carries ``ref``. ``target``: the recipient of a direct message when it is
        connected here."""
        if room is None:
            if target is not None:
                target.dms.append(message.id)  # theirs to search (chat.search), here
            if sender is not None and sender is not target:
                sender.dms.append(message.id)
        if not (message.action or message.notice or message.file is not None
                or message.tags or message.about is not None):  # the common case: its
            #                                               line from the template, now
            message._data = encode_message(message.id, message.ts,
                                           "room" if room is not None else "to",
                                           message.room or message.to or "",
                                           message.sender, message.text)
        ref = ref if sender is not None else None
        echo: Message = message
        if ref is not None:
            # the recipient is away: its sender is told (docs/protocol.md, "Away")
            away = target.away if target is not None and target is not sender else ""
            echo = message.answering(ref, away or None)
        if room is not None:
            self.to_room(room, message, sender if ref is not None else None, echo)
            if ref is not None and sender is not None and sender not in room.members:
                self.to_peer(sender, echo)  # from outside the room (IRC's -n)
        else:
            if target is not None and target is not sender:
                self.to_peer(target, message)
            if sender is not None:
                self.to_peer(sender, echo)
        if sender is not None:
            sender.sent += 1
        self.messages += 1

    def relay_tags(self, sender: Peer, tags: dict[str, str], ref: str | None, *,
                   room: Room | None = None, target: Peer | Elsewhere | None = None) -> None:
        """Client tags without a text (docs/protocol.md, "Client tags"): never
        stored, and sent only to connections that take them (``Peer.wants_tags``);
        the sender gets its copy with ``ref``."""
        self._tag_seq += 1
        assert sender.nick is not None
        event = TagRelay(f"t{self._tag_seq}", self.now_ms(), sender.nick, tags,
                         room=room.name if room is not None else None,
                         to=target.nick if room is None and target is not None else None)
        if room is not None:
            members: Any = room.members
        else:
            assert target is not None
            members = (target,)
        self.cost += len(members)
        self.deliver()  # what rooms were told so far goes first
        share([m for m in members if m.wants_tags and m is not sender], event)
        sender.queue(event.answering(ref))

    def replay(self, room: Room, key: tuple[int, int | None, int, int, bool]
               ) -> tuple[Replay, bool] | None:
        """The replay kept for ``room`` under ``key`` (after, before, limit, byte
        budget,
        changes too), if the room has had no message since it was made."""
        kept = self.replays.get(room.key)
        return (kept[1], kept[2]) if kept is not None and kept[0] == key else None

    def keep_replay(self, room: Room, key: tuple[int, int | None, int, int, bool], chunk: Replay,
                    more: bool) -> None:
        self.replays[room.key] = (key, chunk, more)

    def room(self, name: str, key: str) -> Room:
        """The room ``key``, made (under ``name``) if it does not exist yet."""
        room = self.rooms.get(key)
        if room is None:
            room = Room(name, key)
            self._add_room(room)
        return room

    def register(self, peer: Peer, nick: str, key: str, client: str) -> None:
        """``peer`` is now the user ``nick`` (its `hello` was accepted)."""
        peer.nick, peer.key, peer.client = nick, key, client
        self.users[key] = peer
        self.presence(nick, True)
        self.most_users = max(self.most_users, len(self.users) + len(self.elsewhere))

    def join(self, peer: Peer, room: Room, ref: str | None) -> None:
        """``peer`` becomes a member; everyone in the room, the newcomer included,
        sees `joined` (the newcomer's copy with ``ref``)."""
        if peer in room.gone:  # left and back within one batch: settle the first part
            self.deliver()
        self._batch_for(room)
        room.add(peer)
        peer.rooms[room.key] = room
        assert peer.nick is not None
        joined = Joined(room.name, peer.nick, self.now_ms())
        self.to_room(room, joined, peer, joined.answering(ref))
        self.sequencer.joined(peer, room)
        self.owners.joined(peer, room)
        if peer.away:  # those who follow away changes learn it with the joining
            watchers = [m for m in room.members if m.wants_away and m is not peer]
            if watchers:
                self.deliver()
                share(watchers, AwayAnswer(peer.nick, peer.away))

    def seen(self, peer: Peer, room_key: str) -> int | None:
        """The newest message id when ``peer``'s nickname last left the room (from a
        door in dispatch.SEEN_DOORS), or None: never, or not readable now."""
        if peer.key is None:
            return None
        try:
            return self.store.seen(peer.key, room_key)
        except StoreError:
            return None

    def _saw(self, peer: Peer, rooms: Iterable[Room]) -> None:
        """``peer`` leaves ``rooms`` having received everything up to now: kept for
        its nickname's next JOIN (IRC, which cannot say `since`)."""
        if peer.door != "irc" or peer.key is None:
            return
        last, now = self.store.last_id, self.now_ms()
        try:
            for room in rooms:
                self.store.put_seen(peer.key, room.key, last, now)
        except StoreError as exc:  # best effort: the next JOIN replays more
            log.warning("cannot keep what %s has seen: %s", peer.nick, exc)

    def leave(self, peer: Peer, room: Room, reason: str, message: str | None = None,
              ref: str | None = None, *, flush: bool = True, seen: bool = True,
              by: str | None = None, asker: Peer | None = None) -> None:
        """``peer`` leaves ``room``: the others see `left`; with ``flush`` the leaver
        gets what was said before and (for `part`) its own `left`, with ``ref``. A
        kick out of the room (``by``, asked by ``asker``): the leaver sees its `left`
        too, and the asker's copy carries ``ref``."""
        assert peer.nick is not None
        if seen:
            self._saw(peer, (room,))
        left = Left(room.name, peer.nick, reason, self.now_ms(), message or None, by)
        if by is not None:
            if asker is not None and asker in room.members:
                self.to_room(room, left, asker, left.answering(ref))
            else:
                self.to_room(room, left)
                if asker is not None:
                    self.to_peer(asker, left.answering(ref))
        else:
            self.to_room(room, left, peer, left.answering(ref) if reason == "part"
                         else None)
        room.remove(peer, flush)
        del peer.rooms[room.key]
        self.drop_if_dead(room)
        self.sequencer.left(peer, room, reason, message, by)

    def rename(self, peer: Peer, new: str, key: str, ref: str | None) -> None:
        """``peer`` is now ``new``: everyone sharing a room with it sees `renamed`
        once, the renamer too (its copy with ``ref``)."""
        old = peer.nick
        assert old is not None and peer.key is not None
        renamed = Renamed(old, new, self.now_ms())
        others: dict[Peer, None] = {}
        for room in peer.rooms.values():
            others.update(room.members)
            room.renamed(old, new)
        others.pop(peer, None)
        del self.users[peer.key]
        old_key = peer.key
        peer.nick, peer.key = new, key
        self.users[key] = peer
        self.cost += len(others)
        self.deliver()  # one `renamed` per user, whatever rooms it shares
        share(others, renamed)
        peer.queue(renamed.answering(ref))
        self.sequencer.renamed(peer, old, old_key)
        self.owners.renamed(peer, old_key)
        if key != old_key:
            self.presence(old, False)
            self.presence(new, True)

    # ------------------------------------------------------------ other nodes

    def remote_joined(self, room_name: str, nick: str, ts: int) -> None:
        """Someone on another node joined ``room_name`` (chat.cluster)."""
        room = self.room(room_name, name_key(room_name))
        if room.add_remote(nick) and room.members:
            self.to_room(room, Joined(room.name, nick, ts))

    def remote_left(self, room_name: str, nick: str, reason: str, message: str | None,
                    ts: int, by: str | None = None) -> None:
        room = self.rooms.get(name_key(room_name))
        if room is None or not room.remove_remote(nick):
            return
        if room.members:
            self.to_room(room, Left(room.name, nick, reason, ts, message or None, by))
        self.drop_if_dead(room)

    def remote_renamed(self, old: str, new: str, rooms: list[str], ts: int) -> None:
        others: dict[Peer, None] = {}
        for name in rooms:
            room = self.rooms.get(name_key(name))
            if room is not None and room.remove_remote(old):
                room.add_remote(new)
                others.update(room.members)
        if others:
            self.deliver()
            self.cost += len(others)
            share(others, Renamed(old, new, ts))

    @property
    def converging(self) -> bool:
        """Who is where may still change by itself (a cluster healing from a gap)."""
        return self.sequencer.converging

    def claim(self, peer: Peer, key: str, nick: str) -> None:
        """Hold ``nick`` for ``peer`` on every node (a hello or a rename is handled
        again after ``Later``; ``nick_taken`` when another node holds it)."""
        self.sequencer.claim(peer, key, nick)

    def presence(self, nick: str, online: bool) -> None:
        """``nick`` came online or went offline: those who follow it are told."""
        watchers = self.watchers.get(name_key(nick))
        if watchers:
            self.deliver()
            share(watchers, Presence([nick], []) if online else Presence([], [nick]))

    def follow(self, peer: Peer, nicks: list[str], on: bool) -> None:
        """``peer`` follows ``nicks`` (``on``) or stops; at most MAX_MONITOR."""
        for nick in nicks:
            key = name_key(nick)
            if on:
                if key not in peer.monitors and len(peer.monitors) >= MAX_MONITOR:
                    raise ProtocolError("monitor_full", f"You follow {MAX_MONITOR} "
                                        "nicknames already; drop some first.")
                peer.monitors[key] = nick
                self.watchers.setdefault(key, {})[peer] = None
            elif peer.monitors.pop(key, None) is not None:
                watchers = self.watchers.get(key)
                if watchers is not None:
                    watchers.pop(peer, None)
                    if not watchers:
                        del self.watchers[key]

    def whowas(self, key: str) -> list[WhowasItem]:
        """Who held the nickname ``key`` lately, newest first (at most WHOWAS_ANSWER;
        a scan of WHOWAS_KEEP entries at most)."""
        found = []
        for gone_key, nick, user, realname, _host, ts in reversed(self.gone_users):
            if gone_key == key:
                found.append(WhowasItem(nick=nick, user=user, realname=realname, ts=ts))
                if len(found) == WHOWAS_ANSWER:
                    break
        return found

    def counts(self) -> Counts:
        """How many are here, as IRC's LUSERS says it."""
        nodes = self.sequencer.members()
        return Counts(len(self.users) + len(self.elsewhere),
                      sum(1 for p in self.users.values() if p.oper),
                      max(0, self.unregistered), len(self.rooms), max(1, len(nodes)),
                      self.most_users)

    def set_away(self, peer: Peer, text: str) -> None:
        """``peer`` is away (``text``) or back (""); connections that share a room
        with it and asked (IRC's away-notify) are told."""
        peer.away = text
        watchers: dict[Peer, None] = {}
        for room in peer.rooms.values():
            for member in room.members:
                if member.wants_away and member is not peer:
                    watchers[member] = None
        if watchers:
            assert peer.nick is not None
            self.deliver()
            share(watchers, AwayAnswer(peer.nick, text or None))

    def other_servers(self) -> list[str]:
        """Where the chat's other servers are reached (a cluster's; a welcome's `nodes`)."""
        return self.sequencer.addresses()

    def typing(self, peer: Peer, room: Room) -> None:
        """`typing` for the other members of ``room``, here and on other nodes."""
        assert peer.nick is not None
        self.to_room(room, Typing(room.name, peer.nick), peer, None)
        if room.remote:
            self.sequencer.typing(peer, room)

    def rooms_page(self, after: str | None) -> tuple[list[Room], bool]:
        """Rooms in name order after the key ``after`` (None: from the start), at
        most ``ROOMS_PAGE``, and whether more follow."""
        order = self.room_order
        start = 0 if after is None else bisect_right(order, after)
        keys = order[start:start + ROOMS_PAGE]
        return [self.rooms[k] for k in keys], start + ROOMS_PAGE < len(order)

    def _add_room(self, room: Room) -> None:
        self.rooms[room.key] = room
        insort(self.room_order, room.key)

    def drop_if_dead(self, room: Room) -> None:
        if not room.alive and self.rooms.get(room.key) is room:
            if self._batch is room:
                self.deliver()
            del self.rooms[room.key]
            self.replays.pop(room.key, None)
            at = bisect_left(self.room_order, room.key)
            if at < len(self.room_order) and self.room_order[at] == room.key:
                del self.room_order[at]

    # ------------------------------------------------------------ files

    @property
    def files(self) -> Files:
        if self._files is None:
            cfg = self.config
            try:
                self._files = Files(os.path.join(cfg.data_dir, "files"), cfg.max_file_size,
                                    cfg.files_quota, cfg.partial_idle, self.wall)
            except OSError as exc:
                raise ProtocolError("store_failed", f"The server cannot keep files "
                                    f"({exc.strerror or exc}).") from None
        return self._files

    @property
    def pumping(self) -> bool:
        """Whether ``pump`` has work it can do now (the loop then does not sleep)."""
        high = self.config.max_backlog // 8
        return bool(self.hashing) or any(p.unsent < high for p in self.downloading)

    def pump(self) -> None:
        """Bounded file work of one pass: rehash a resumed upload a step further
        (then say upload_ready), and send download chunks to readers that keep up."""
        for peer in list(self.hashing):
            uploads = [u for u in peer.uploads.values() if not u.ready]
            if not uploads:
                del self.hashing[peer]
                continue
            upload = uploads[0]
            self.files.rehash(upload)
            if upload.ready:
                self.to_peer(peer, UploadReady(upload.token, upload.received,
                                               ref=upload.ref or None))
            break  # one step per pass, whoever's it is
        budget = PUMP_BYTES
        high = self.config.max_backlog // 8
        size = chunk_size(self.config.max_frame)
        for peer in list(self.downloading):
            if budget <= 0:
                break
            while peer.downloads and budget > 0 and peer.unsent < high:
                download = peer.downloads[0]
                offset = download.offset
                data = self.files.read(download, size)
                budget -= len(data) + 1
                event = FileData(download.sha256, offset,
                                 base64.b64encode(data).decode("ascii"))
                if download.offset >= download.size:
                    event.end, event.ref = True, download.ref
                    os.close(download.fd)
                    peer.downloads.popleft()
                self.to_peer(peer, event)
            if not peer.downloads:
                del self.downloading[peer]
            else:  # the back of the line: downloads take turns
                del self.downloading[peer]
                self.downloading[peer] = None

    def rehash_later(self, peer: Peer) -> None:
        """``peer`` has a resumed upload whose bytes so far must be hashed again."""
        self.hashing[peer] = None

    def kept_file(self, sha256: str, size: int) -> None:
        """A file is kept here now (other nodes of a cluster copy it from here)."""
        self.sequencer.kept_file(sha256, size)

    def may_read_file(self, peer: Peer, sha256: str) -> bool:
        """Whether ``peer`` can read a message that carries file ``sha256``: one sent
        to a room it is in, or in a direct conversation of its nickname."""
        assert peer.nick is not None
        self.cost += 1
        try:
            return self.store.file_readable(sha256, list(peer.rooms), peer.nick)
        except StoreError:
            return False

    def cut_upload(self, upload: Upload, why: str | None = None) -> None:
        """Stop an upload under way (its partial stays, unless the caller removes it);
        with ``why``, its sender is told."""
        sender = upload.sender
        if sender is not None and sender.uploads.get(upload.token) is upload:
            del sender.uploads[upload.token]
            sender.refused.append(upload.token)
            if why is not None:
                self.to_peer(sender, Error("no_such_upload", why, ref=upload.ref or None))
        self.files.abandon(upload)

    def download(self, peer: Peer, sha256: str, offset: int, ref: str | None) -> None:
        """``peer`` asks for a file: from here, or copied here from another node first.
        A file it may not read is answered as one that is not here."""
        if len(peer.downloads) + self.sequencer.waiting(peer) >= UPLOADS_PER_PEER:
            raise ProtocolError("rate_limited", "Wait for the files you are fetching first.")
        if not self.may_read_file(peer, sha256):
            raise no_such_file()
        if not self.files.stored(sha256) and \
                self.sequencer.fetch_file(peer, sha256, offset, ref):
            return  # copied from another node, then sent
        self.start_download(peer, self.files.open_download(sha256, offset, ref))

    def start_download(self, peer: Peer, download: Download) -> None:
        peer.downloads.append(download)
        self.downloading[peer] = None

    def _drop_transfers(self, peer: Peer) -> None:
        for upload in peer.uploads.values():
            self.files.abandon(upload)  # its bytes stay for a resume
        peer.uploads.clear()
        for download in peer.downloads:
            os.close(download.fd)
        peer.downloads.clear()
        self.hashing.pop(peer, None)
        self.downloading.pop(peer, None)

    # ------------------------------------------------------------ connections

    def open(self, addr: Any) -> Peer:
        """A new connection: it has ``hello_timeout`` seconds to register."""
        cfg = self.config
        now = self.clock()
        change_rate = CHANGE_RATE if cfg.rate > 0 else 0.0  # --rate 0: no flood control
        peer = Peer(addr, now, self.now_ms(), TokenBucket(cfg.rate, cfg.burst, now),
                    TokenBucket(change_rate, CHANGE_BURST, now), self.dirty, self.spans)
        if cfg.rate > 0:
            peer.work = TokenBucket(DOOR_WORK_RATE, DOOR_WORK_BURST, now)
        self.peers[peer] = None
        self.gate.opened(peer.host)
        return peer

    def admission(self, peer: Peer) -> ProtocolError | None:
        """Why a new connection may not stay (a ban, the per-address limit), or None."""
        return self.gate.admit(peer)

    @property
    def unregistered(self) -> int:
        return len(self.peers) - len(self.users) - len(self.closing)

    def error(self, peer: Peer, exc: ProtocolError, ref: str | None) -> None:
        self.to_peer(peer, Error(exc.code, exc.message, ref=ref))
        peer.errors += 1
        if exc.closes:
            self.close(peer, "disconnected")
        elif peer.errors > MAX_ERRORS_IN_ROW:
            log.info("closing %s: %d errors in a row", peer.nick or peer.host, peer.errors)
            self.close(peer, "disconnected")

    def lost(self, peer: Peer) -> None:
        """The connection broke or the peer closed it without `bye`."""
        self.close(peer, "disconnected", flush=False)

    def close(self, peer: Peer, reason: str, message: str | None = None, *,
              flush: bool = True) -> None:
        """Take ``peer`` out of the chat now; the server closes its socket later.

        With ``flush`` its queued output is sent first (bounded by a deadline).
        """
        if peer.closing:
            return
        peer.closing = reason
        peer.close_deadline = self.clock() + CLOSE_FLUSH_SECONDS
        peer.settle()
        if flush or not (peer.out or peer.owed):  # (output lost: not all was seen)
            self._saw(peer, peer.rooms.values())
        if not flush:
            peer.out.clear()
            self.dirty.pop(peer, None)
        if peer.key is not None:
            for room in list(peer.rooms.values()):
                self.leave(peer, room, reason, message, flush=flush, seen=False)
            del self.users[peer.key]
            assert peer.nick is not None
            self.gone_users.append((peer.key, peer.nick, peer.username or peer.nick,
                                    peer.realname, peer.host, self.now_ms()))
            self.presence(peer.nick, False)
            self.sequencer.release(peer.key, peer.nick)
            log.info("%s left (%s)", peer.nick, reason)
        self.closing[peer] = None

    def close_all(self) -> None:
        """Shutdown: every peer closes after its queued output, and nobody is told
        of everybody else's leaving (that would be quadratic in a big room)."""
        self.deliver()
        deadline = self.clock() + CLOSE_FLUSH_SECONDS
        for peer in self.peers:
            if not peer.closing:
                self._saw(peer, peer.rooms.values())
                peer.closing = "shutdown"
                peer.close_deadline = deadline
                self.closing[peer] = None
        self.users.clear()
        for room in self.rooms.values():
            room.members.clear()
            room.roster.clear()

    def evict(self, peer: Peer) -> None:
        """Last resort after an internal error: remove every reference to ``peer``
        without telling anyone (its state may be inconsistent)."""
        for room in list(self.rooms.values()):
            if room.members.pop(peer, 0) is None:
                room.roster = sorted((m.nick.casefold(), m.nick) for m in room.members
                                     if m.nick is not None)
            room.fresh.pop(peer, None)
            room.gone.pop(peer, None)
        for key in [k for k, p in self.users.items() if p is peer]:
            del self.users[key]
        peer.rooms = {}
        peer.closing = peer.closing or "disconnected"

    def forget(self, peer: Peer) -> None:
        """The server closed the socket: drop every trace of the peer."""
        if peer.monitors:
            self.follow(peer, list(peer.monitors.values()), False)
        if self.peers.pop(peer, 0) is None:
            self.gate.closed(peer)
        if peer.transferring:
            self._drop_transfers(peer)
        self.sequencer.forget(peer)
        self.closing.pop(peer, None)
        self.dirty.pop(peer, None)

    def heard(self, peer: Peer) -> None:
        """Any frame from ``peer``: it is not silent (pings wait again)."""
        peer.last_heard = self.clock()
        peer.pinged_at = None

    # ------------------------------------------------------------ timers

    def tick(self) -> None:
        """Handshake and hello timeouts, pings to silent peers, closes of unanswered
        ones, and the end of expired bans."""
        cfg = self.config
        now = self.clock()
        for peer in list(self.peers):
            if peer.closing:
                continue
            if peer.nick is None:
                if peer.phase >= SNIFF and now - peer.started >= cfg.tls_timeout:
                    self.close(peer, "timeout", flush=False)  # the TLS handshake stalled
                elif now - peer.started >= cfg.hello_timeout \
                        and not self.gate.in_line(peer):
                    # (a hello waiting its turn for a password check: the server is
                    # the slow one, and the lines bound the wait, docs/protocol.md)
                    self.close(peer, "timeout")
            elif peer.pinged_at is None:
                if now - peer.last_heard >= cfg.ping_interval:
                    self._ping_seq += 1
                    self.to_peer(peer, Ping(str(self._ping_seq)))
                    peer.pinged_at = now
            elif now - peer.pinged_at >= cfg.ping_timeout:
                self.close(peer, "timeout", flush=False)
        if now >= self._next_index:  # SQLite and the search index, in batches off the
            self._next_index = now + INDEX_SECONDS  # message path (chat.store)
            try:
                self.store.fill()
            except StoreError as exc:  # sends are refused from now on (chat.store)
                if self.storage_problem is None:
                    log.warning("cannot store messages: %s; they are refused until "
                                "writing works again", exc.reason)
                self.storage_problem = exc.reason
            try:
                self.store.index(INDEX_BATCH)
            except StoreError:
                pass  # the pass's commit says what is wrong; indexing tries again later
        if self._files is not None and self._files.partials:
            self._files.expire()  # unfinished uploads left too long: bounded per tick
        for ban in self.gate.expired():
            self.gate.lift(ban.kind, ban.key)
            log.info("ban on %s %s expired", ban.kind, ban.value)

    # ------------------------------------------------------------ operator

    def kick(self, peer: Peer, reason: str, why: str, message: str | None = None) -> None:
        """Tell ``peer`` why (`kicked` with ``reason``), then close it; the others see
        `left` with ``why`` (and ``message``)."""
        self.to_peer(peer, Kicked(reason))
        self.close(peer, why, message)

    def enforce(self, ban: Ban) -> int:
        """Close the connections ``ban`` matches (users told why); how many."""
        victims = [p for p in self.peers if not p.closing and self.gate.matches(ban, p)]
        for peer in victims:
            if peer.nick is not None:
                reason = ban_sentence(ban)
                self.kick(peer, reason, "banned", reason)
            else:
                self.close(peer, "banned", flush=False)
        return len(victims)

    def wallops(self, sender: Peer, text: str) -> None:
        """The server's operator's ``text`` to those who take it: IRC connections
        with +w (and the sender), other doors' operators; others as a notice."""
        assert sender.nick is not None
        line = WallopsLine(sender.nick, text)
        self.deliver()
        share([p for p in self.users.values()
               if p is sender or (p.door == "irc" and p.wallops)], line)
        share([p for p in self.users.values() if p.door != "irc" and p is not sender],
              Notice(f"{sender.nick} (operator): {text}", self.now_ms()))

    def notice(self, text: str) -> None:
        """A notice from the operator or the server to every registered user."""
        self.deliver()
        share(self.users.values(), Notice(text, self.now_ms()))
