"""The client's chat state, fed frames directly (no GUI, no sockets)."""

from chat.chatstate import MAX_LINES, OLDER_REF, ChatState


def state_with(nick="alice"):
    st = ChatState()
    st.apply({"type": "welcome", "nick": nick, "server": "s", "motd": "hi all", "limits": {}})
    st.apply({"type": "joined", "room": "general", "nick": nick, "ts": 1})
    return st


def msg(i, text=None, nick="bob", **extra):
    return {"type": "message", "id": i, "ts": i, "room": "general", "from": nick,
            "text": text or f"m{i}", **extra}


def texts(st, key="#general"):
    return [ln.text for ln in st.conversations[key].lines if ln.kind == "message"]


def test_history_is_held_until_history_end_then_merged_without_duplicates():
    st = state_with()
    for i in (3, 4):
        st.apply(msg(i, history=True))
    assert texts(st) == []
    st.apply({"type": "history_end", "room": "general", "more": True})
    assert texts(st) == ["m3", "m4"] and st.conversations["#general"].more
    st.apply(msg(4))  # a duplicate (e.g. after a resume) is not shown twice
    st.apply(msg(5))
    st.take_changes()
    for i in (1, 2, 3):
        st.apply(msg(i, history=True))
    st.apply({"type": "history_end", "room": "general", "ref": OLDER_REF})
    assert texts(st) == ["m1", "m2", "m3", "m4", "m5"]
    assert not st.conversations["#general"].more
    appended, redraw, prepended = st.take_changes()
    assert prepended == {"#general": 2} and "#general" not in redraw  # put in front
    assert st.conversations["#general"].base == -2


def test_an_older_page_is_kept_whole_and_live_lines_push_the_oldest_out():
    st = state_with()
    for i in range(1, 301):
        st.apply(msg(i, history=True))
    st.apply({"type": "history_end", "room": "general", "more": True})
    conv = st.conversations["#general"]
    pages = MAX_LINES // 300 + 2
    for page in range(pages):  # past MAX_LINES: the past asked for stays
        for i in range(-300 * (page + 1) + 1, -300 * page + 1):
            st.apply(msg(i, history=True))
        st.apply({"type": "history_end", "room": "general", "ref": OLDER_REF, "more": True})
    held = len(conv.lines)
    assert held > MAX_LINES and conv.base == -300 * pages
    oldest = conv.lines[0].text
    st.apply(msg(301))  # a live line: the oldest goes, one for one
    assert conv.lines[-1].text == "m301" and len(conv.lines) == held
    assert conv.lines[0].text != oldest and conv.base == -300 * pages + 1


def test_opening_a_conversation_marks_where_its_unread_messages_start():
    st = state_with()
    st.apply(msg(1))
    st.conversation("other")
    st.activate("#other")
    for i in (2, 3, 4):
        st.apply(msg(i))
    st.activate("#general")
    conv = st.conversations["#general"]
    assert conv.divider is not None and conv.divider.text == "m2"
    st.activate("#other")
    st.activate("#general")  # nothing unread: no divider
    assert conv.divider is None


def test_unread_mentions_and_unseen():
    st = state_with()
    st.apply({"type": "joined", "room": "lab", "nick": "alice", "ts": 1})
    st.focused = False
    st.apply({**msg(1, "hello ALICE!"), "room": "lab"})
    st.apply({**msg(2, "malice is not a mention"), "room": "lab"})
    lab = st.conversations["#lab"]
    assert (lab.unread, lab.mentions, st.unseen) == (2, 1, 2)
    assert [ln.mention for ln in lab.lines if ln.kind == "message"] == [True, False]
    st.activate("#lab")
    assert lab.unread == 0


def test_direct_messages_file_under_the_partner():
    st = state_with()
    st.apply({"type": "message", "id": 9, "ts": 1, "to": "alice", "from": "bob", "text": "x"})
    st.apply({"type": "message", "id": 10, "ts": 1, "to": "bob", "from": "alice", "text": "y"})
    assert texts(st, "@bob") == ["x", "y"]
    assert st.conversations["@bob"].lines[1].own


def test_roster_follows_joins_leaves_and_renames():
    st = state_with()
    st.apply({"type": "users", "room": "general", "users": ["alice", "bob"]})
    st.apply({"type": "joined", "room": "general", "nick": "carol", "ts": 2})
    st.apply({"type": "renamed", "old": "bob", "new": "rob", "ts": 3})
    st.apply({"type": "left", "room": "general", "nick": "carol", "reason": "quit",
              "message": "lunch", "ts": 4})
    conv = st.conversations["#general"]
    assert conv.users == ["alice", "rob"]
    system = [ln.text for ln in conv.lines if ln.kind == "system"]
    assert system[-3:] == ["carol joined.", "bob is now rob.", "carol quit (lunch)."]
    st.apply({"type": "renamed", "old": "alice", "new": "alicia", "ts": 5})
    assert st.nick == "alicia"


def test_lines_and_ids_stay_bounded():
    st = state_with()
    for i in range(1, MAX_LINES + 500):
        st.apply(msg(i))
    conv = st.conversations["#general"]
    assert len(conv.lines) == MAX_LINES and len(conv.ids) <= MAX_LINES
    assert conv.oldest_id == 500
    assert st.received == MAX_LINES + 499


def test_typing_expires_and_stops_when_the_typist_sends():
    st = state_with()
    st.apply({"type": "typing", "room": "general", "nick": "bob"})
    import time
    assert st.typing_nicks(time.monotonic()) == ["bob"]
    assert st.typing_nicks(time.monotonic() + 60) == []
    st.apply(msg(1))
    assert st.typing_nicks(time.monotonic()) == []


def test_joins_and_leaves_between_two_renders_are_folded_into_one_line():
    st = state_with()
    st.take_changes()
    for i in range(200):
        st.apply({"type": "joined", "room": "general", "nick": f"u{i:03d}", "ts": 2})
    system = [ln.text for ln in st.conversations["#general"].lines if ln.kind == "system"]
    assert system[-1] == "u000, u001 and 198 others joined."
    assert len(system) == 2  # "You joined general." and the folded line
    st.take_changes()  # rendered: the next join starts a new line
    st.apply({"type": "joined", "room": "general", "nick": "late", "ts": 3})
    for nick in ("u000", "u001", "u002"):
        st.apply({"type": "left", "room": "general", "nick": nick, "reason": "quit",
                  "ts": 4})
    st.apply(msg(9))  # a message in between ends the fold
    st.apply({"type": "left", "room": "general", "nick": "u003", "reason": "quit", "ts": 5})
    tail = [ln.text for ln in list(st.conversations["#general"].lines)[-4:]]
    assert tail == ["late joined.", "u000, u001 and u002 quit.", "m9", "u003 quit."]
    assert len(st.conversations["#general"].users) == 197


def test_a_refused_older_page_may_be_asked_again():
    st = state_with()
    conv = st.conversations["#general"]
    conv.loading = True  # asked
    st.apply({"type": "error", "code": "store_failed", "message": "Not stored.",
              "ref": OLDER_REF})
    assert conv.loading is False
    conv.loading = True
    st.apply({"type": "error", "code": "bad_field", "message": "x", "ref": "other"})
    assert conv.loading is True


def test_the_topic_of_a_room_joined_is_shown_not_told_and_a_change_is_told():
    state = ChatState()
    state.apply({"type": "welcome", "nick": "ann", "server": "s", "motd": "", "limits": {}})
    state.apply({"type": "joined", "room": "lab", "nick": "ann", "ts": 1})
    state.apply({"type": "topic", "room": "lab", "topic": "Lab 5", "by": "ms_lee", "ts": 1})
    state.apply({"type": "users", "room": "lab", "users": ["ann", "ms_lee"],
                 "operators": ["ms_lee"]})
    state.apply({"type": "history_end", "room": "lab"})
    conv = state.conversations["#lab"]
    assert conv.topic == "Lab 5" and conv.operators == ["ms_lee"]
    assert not any("set the topic" in line.text for line in conv.lines)
    state.apply({"type": "topic", "room": "lab", "topic": "Lab 6", "by": "ms_lee", "ts": 2})
    state.apply({"type": "mode", "room": "lab", "by": "ms_lee", "ts": 3,
                 "changes": [{"mode": "moderated", "on": True}]})
    texts = [line.text for line in conv.lines]
    assert "ms_lee set the topic: Lab 6" in texts
    assert "ms_lee made the room quiet: only operators and voiced people speak" in texts
    assert "quiet" in state.muted(conv) and not state.is_operator(conv)
