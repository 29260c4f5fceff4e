"""The page in a real headless Chromium, next to desktop-protocol clients.

Each test asserts on what the user sees: message rows, the conversation list and its
badges, the tab title, the people list.
"""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import threading
import time

import pytest
from selenium.common.exceptions import (
    ElementNotInteractableException,
    NoAlertPresentException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.keys import Keys

from tests.browser import available
from tests.wire import Wire, connect

pytestmark = pytest.mark.skipif(not available(), reason="needs chromium and chromedriver "
                                "(python tests/prepare.py installs them)")


def url(server) -> str:
    return f"http://127.0.0.1:{server.port}/"


def test_two_browsers_and_a_desktop_client_chat_in_two_rooms_and_a_dm(fast_server, browsers):
    ann, ben = browsers(), browsers()
    ann.join(url(fast_server), "ann")
    ben.join(url(fast_server), "ben")
    desk = connect(fast_server.port, "desk")
    ann.say("hello from ann")
    ben.wait_text("hello from ann")
    assert desk.until("message", text="hello from ann")["from"] == "ann"
    desk.send(type="send", room="general", text="hello from the desktop")
    ann.wait_text("hello from the desktop")
    ben.wait_text("hello from the desktop")
    ann.until(lambda: "desk" in ann.find("#users").text, what="desk in the people list")
    # a second room
    ann.say("/join lab")
    ann.until(lambda: ann.find("#title").text == "#lab", what="#lab opened")
    ben.say("/join lab")
    desk.send(type="join", room="lab")
    desk.until("history_end", room="lab")
    ben.say("lab talk")
    ann.wait_text("lab talk")
    assert desk.until("message", text="lab talk")["room"] == "lab"
    ann.open_conversation("#general")
    assert "lab talk" not in ann.texts()
    # a direct message, from the desktop to ann, answered from the page
    desk.send(type="send", to="ann", text="a private word")
    ann.until(lambda: any(b.get_attribute("title") == "desk"
                          for b in ann.all("#dms button.conv")), what="a DM conversation")
    ann.open_conversation("desk")
    ann.wait_text("a private word")
    ann.say("private answer")
    dm = desk.until("message", text="private answer")
    assert dm["to"] == "desk" and dm["from"] == "ann"
    assert "private answer" not in ben.texts()
    assert ann.console_errors() == [] and ben.console_errors() == []


def test_markup_in_a_message_is_shown_as_text_and_runs_nothing(server, browsers):
    page = browsers()
    page.join(url(server), "viewer")
    evil = "<img src=x onerror=alert(1)> <script>alert(2)</script> <b>bold?</b>"
    mallory = connect(server.port, "mallory")
    mallory.send(type="send", room="general", text=evil)
    page.wait_text(evil)
    assert page.all("#log img") == [] and page.all("#log script") == []
    assert page.all("#log b") == []
    with pytest.raises(NoAlertPresentException):
        page.driver.switch_to.alert.text  # noqa: B018 - reading it is the check
    assert page.driver.execute_script("return window.__pwned === undefined")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_server_restart_is_resumed_with_no_gap_and_no_duplicate(start_server, browsers,
                                                                   tmp_path):
    port = free_port()
    first = start_server("--port", str(port), "--rate", "0")
    page = browsers()
    page.join(f"http://127.0.0.1:{port}/", "stayer")
    talker = connect(port, "talker")
    for i in range(3):
        talker.send(type="send", room="general", text=f"before {i}")
    page.wait_text("before 2")
    assert first.stop() == 0
    page.until(lambda: "Offline" in page.find("#status").text, what="offline status")
    page.say("typed while offline")  # kept, and sent once the chat is back
    # what waits is told with the connection's state, through every reconnection try
    page.until(lambda: "1 message(s) will be sent" in page.find("#status").text
               and "Reconnecting in" in page.find("#status").text, what="outbox shown")
    start_server("--port", str(port), "--rate", "0", db=first.db)
    talker = connect(port, "talker")
    for i in range(3):  # said while the page is still waiting to reconnect
        talker.send(type="send", room="general", text=f"after {i}")
    talker.barrier()
    page.wait_text("after 2", timeout=60)
    page.until(lambda: page.find("#status").text == "", what="back online")
    assert talker.until("message", text="typed while offline")["from"] == "stayer"
    page.wait_text("typed while offline")
    expected = [f"before {i}" for i in range(3)] + [f"after {i}" for i in range(3)]
    assert [t for t in page.texts() if t != "typed while offline"] == expected


def test_unread_counts_mentions_title_and_typing(fast_server, browsers):
    page = browsers()
    page.join(url(fast_server), "reader")
    page.say("/join quiet")
    page.until(lambda: page.find("#title").text == "#quiet", what="#quiet opened")
    loud = connect(fast_server.port, "loud")
    loud.send(type="send", room="general", text="anyone here?")
    loud.send(type="send", room="general", text="reader, look at this")
    badge = "#rooms button[title='#general'] .badge"
    page.until(lambda: page.all(badge) and page.find(badge).text == "2", what="2 unread")
    assert "mention" in page.find(badge).get_attribute("class")
    page.until(lambda: page.driver.title.startswith("(2) "), what="unread in the tab title")
    page.open_conversation("#general")
    page.until(lambda: not page.driver.title.startswith("("), what="title cleared")
    assert page.all(badge) == []
    mention = [e for e in page.all("#log li.msg") if "reader, look" in e.text]
    assert "mention" in mention[0].get_attribute("class")
    loud.send(type="typing", room="general")
    page.until(lambda: page.find("#typing").text == "loud is typing…", what="typing shown")


def test_a_nickname_with_a_hyphen_sees_messages_and_its_mentions(fast_server, browsers):
    """A nickname is put into the mention pattern escaped as the pattern's flags
    allow: "ivy-2" once broke every message the page showed."""
    before = connect(fast_server.port, "early")
    before.send(type="send", room="general", text="said before ivy-2 came")
    before.barrier()
    page = browsers()
    page.join(url(fast_server), "ivy-2")
    page.wait_text("said before ivy-2 came")
    before.send(type="send", room="general", text="ivy-2: over here")
    page.wait_text("ivy-2: over here")
    mention = [e for e in page.all("#log li.msg") if "over here" in e.text]
    assert "mention" in mention[0].get_attribute("class")
    assert page.console_errors() == []


def test_older_history_loads_on_request(fast_server, browsers):
    talker = connect(fast_server.port, "talker")
    for i in range(80):
        talker.send(type="send", room="general", text=f"old {i}")
    talker.barrier()
    page = browsers()
    page.join(url(fast_server), "historian")
    page.wait_text("old 79")
    assert "old 0" not in page.texts() and len(page.texts()) == 50  # the latest 50
    page.until(lambda: page.find("#older-button").is_displayed(), what="load older")
    page.find("#older-button").click()
    page.wait_text("old 0")
    assert page.texts() == [f"old {i}" for i in range(80)]
    page.until(lambda: not page.find("#older-button").is_displayed(), what="no more")


TO_TOP = """
const box = document.getElementById('log');
box.scrollTop = 0;
const top = box.getBoundingClientRect().top;
for (const li of box.querySelectorAll('li[data-id]')) {
  const r = li.getBoundingClientRect();
  if (r.bottom > top + 1) return [li.dataset.id, Math.round(r.top - top)];
}
return null;"""
OFFSET = """
const box = document.getElementById('log');
const li = box.querySelector(`li[data-id="${arguments[0]}"]`);
return li && Math.round(li.getBoundingClientRect().top - box.getBoundingClientRect().top);"""
TEXTS = "return [...document.querySelectorAll('#log li.msg .text')].map(e => e.textContent)"
FIRST_DRAWN = "const li = document.querySelector('#log li[data-id]'); return li && li.dataset.id;"


@pytest.mark.parametrize("size", [(390, 844), (1366, 768)], ids=["phone", "laptop"])
def test_scrolling_up_reaches_the_first_of_2000_messages_and_keeps_the_readers_place(
        fast_server, browsers, size):
    talker = connect(fast_server.port, "talker")
    talker.send_raw(b"".join(b'{"type":"send","room":"general","text":"m%d"}\n' % i
                             for i in range(2000)))
    talker.barrier()
    page = browsers(width=size[0], height=size[1], mobile=size[0] < 500)
    page.join(url(fast_server), "reader")
    page.wait_text("m1999")
    d = page.driver
    pill = lambda: page.find("#jump-button").is_displayed()  # noqa: E731
    texts = lambda: d.execute_script(TEXTS)  # noqa: E731 (500 rows: one call)
    for _ in range(200):  # 2,000 messages: 10 pages of 200 from the server, bounded
        if page.all("#log li.begin"):
            break
        drawn = d.execute_script(FIRST_DRAWN)
        reading = d.execute_script(TO_TOP)  # scrolled to the top: what is seen there
        page.until(lambda drawn=drawn: d.execute_script(FIRST_DRAWN) != drawn,
                   what="an older page drawn above")
        now = d.execute_script(OFFSET, reading[0])
        assert now is not None and abs(now - reading[1]) <= 2  # not moved
        assert not pill()  # older messages are not new ones
    assert page.find("#log li.begin").text == "This is the beginning of #general."
    assert texts()[:2] == ["m0", "m1"]
    assert len(page.all("#log li[data-id]")) <= 500  # a bounded number drawn
    assert "m1999" not in texts()  # the far end went...
    assert not page.find("#older-button").is_displayed()
    last_row = "return document.querySelector('#log li:last-child').textContent"
    for _ in range(200):  # ...and comes back when scrolled to, down to the newest line
        if d.execute_script(last_row).endswith("reader joined"):
            break
        last = texts()[-1]
        d.execute_script("const b = document.getElementById('log'); b.scrollTop = b.scrollHeight;")
        page.until(lambda last=last: texts()[-1] != last or
                   d.execute_script(last_row).endswith("reader joined"),
                   what="a newer page drawn below")
    assert texts()[-1] == "m1999" and not pill()
    talker.send(type="send", room="general", text="a new one")
    page.wait_text("a new one")
    assert texts()[-1] == "a new one" and not pill()
    assert page.console_errors() == []


def test_a_phone_sized_viewport_is_usable(server, browsers):
    phone = browsers(width=360, height=740, mobile=True)
    phone.join(url(server), "phoneuser")
    width = phone.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 360  # nothing sticks out sideways
    assert not phone.find("#sidebar").is_displayed() or phone.driver.execute_script(
        "return document.getElementById('sidebar').getBoundingClientRect().right <= 0")
    composer = phone.find("#input").rect
    assert composer["y"] + composer["height"] <= 740 and composer["width"] > 200
    phone.say("from my phone")
    phone.wait_text("from my phone")
    phone.find("#menu-button").click()
    phone.until(lambda: phone.driver.execute_script(
        "return document.getElementById('sidebar').getBoundingClientRect().left >= 0"),
        what="the conversation list slides in")
    phone.find("#join-room").send_keys("mobile\n")
    phone.until(lambda: phone.find("#title").text == "#mobile", what="#mobile opened")
    phone.until(lambda: phone.driver.execute_script(
        "return document.getElementById('sidebar').getBoundingClientRect().right <= 0"),
        what="the list slides away")


PHONE = {"width": 390, "height": 844, "mobile": True}


def visible_width(page, css: str) -> float:
    return page.driver.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return e && e.offsetParent ? e.getBoundingClientRect().width : 0;", css)


def test_on_a_phone_offline_is_shown_and_a_message_typed_then_is_sent_once(
        start_server, browsers):
    port = free_port()
    first = start_server("--port", str(port), "--rate", "0")
    page = browsers(**PHONE)
    page.join(f"http://127.0.0.1:{port}/", "walker")
    assert first.stop() == 0
    page.until(lambda: "Offline" in page.find("#status").text, what="offline status")
    assert visible_width(page, "#status") > 200  # a strip of its own, not squeezed
    assert page.find("#title").rect["width"] > 60  # and the title keeps its room
    assert page.find("#reconnect-button").is_displayed()
    page.say("on the bus")
    assert page.find("#input").get_attribute("value") == ""
    row = page.find("#log li.pending")
    assert row.find_element("css selector", ".text").text == "on the bus"
    assert row.find_element("css selector", ".pending-tag").text == "not sent yet"
    page.until(lambda: "1 message(s) will be sent" in page.find("#status").text, what="outbox")
    width = page.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390
    start_server("--port", str(port), "--rate", "0", db=first.db)
    listener = connect(port, "listener")

    def try_now():  # no need to wait out the countdown; unless its own try came first
        if page.find("#status-strip").get_attribute("hidden") is not None:
            return True  # back by itself between the server's start and the click
        try:
            page.find("#reconnect-button").click()
        except (ElementNotInteractableException, StaleElementReferenceException):
            return False  # hidden for the moment: a try of its own is under way
        return True

    page.until(try_now, what="Try now clicked (or back online by itself)")
    assert listener.until("message", text="on the bus")["from"] == "walker"
    page.until(lambda: page.find("#status-strip").get_attribute("hidden") is not None,
               what="back online: the strip goes")
    page.until(lambda: not page.all("#log li.pending"), what="the pending row replaced")
    assert page.texts().count("on the bus") == 1
    later = listener.barrier()  # what came after it: not the same message again
    assert [f for f in later if f.get("text") == "on the bus"] == []
    # (the browser logs each try that found the server down; nothing else)
    assert [e for e in page.console_errors() if "WebSocket connection to" not in e] == []


def test_on_a_phone_the_menu_has_a_dot_panels_leave_the_tab_order_and_escape_closes(
        server, browsers):
    page = browsers(**PHONE)
    page.join(url(server), "dotty")
    menu = page.find("#menu-button")
    assert "dot" not in menu.get_attribute("class")
    bob = connect(server.port, "bob")
    bob.send(type="send", to="dotty", text="psst")
    page.until(lambda: "dot" in page.find("#menu-button").get_attribute("class"),
               what="a dot on the menu")
    assert "mentioned" in page.find("#menu-button").get_attribute("aria-label")
    # Tab from the message box never lands in a slid-away panel.
    d = page.driver
    stops = d.execute_script("""
        const seen = [];
        const all = [...document.querySelectorAll('button, input, textarea, [tabindex]')];
        for (const e of all) {
          if (e.tabIndex < 0 || e.disabled || e.closest('[inert]') || e.closest('[hidden]')
              || !e.offsetParent) continue;
          seen.push(e.id || e.className || e.tagName);
        }
        return seen;""")
    hidden_panels = d.execute_script(
        "return ['sidebar', 'users-panel'].map((id) => document.getElementById(id).inert)")
    assert hidden_panels == [True, True] and stops  # out of the Tab order while away
    menu.click()
    page.until(lambda: d.execute_script(
        "return document.getElementById('sidebar').getBoundingClientRect().left >= 0"),
        what="the list slides in")
    assert d.execute_script("return document.getElementById('sidebar').inert") is False
    assert d.execute_script("return document.activeElement.closest('#sidebar') !== null")
    d.execute_script("document.activeElement.dispatchEvent(new KeyboardEvent('keydown', "
                     "{key: 'Escape', bubbles: true}))")
    page.until(lambda: d.execute_script(
        "return document.getElementById('sidebar').getBoundingClientRect().right <= 0"),
        what="Escape slides it away")
    assert d.execute_script("return document.activeElement.id") == "input"
    # The rooms dialog's Close gives the message box back.
    menu.click()
    page.until(lambda: page.find("#browse-button").is_displayed(), what="browse button")
    page.find("#browse-button").click()
    page.until(lambda: page.find("#rooms-dialog").is_displayed(), what="rooms dialog")
    page.find("#rooms-dialog button[value=close]").click()
    page.until(lambda: d.execute_script("return document.activeElement.id") == "input",
               what="focus back in the message box")
    page.find("#input").send_keys("typed right away")
    assert page.find("#input").get_attribute("value") == "typed right away"
    assert page.console_errors() == []


def test_after_a_kick_nothing_is_promised_and_join_again_works(start_server, browsers):
    server = start_server("--console", stdin=subprocess.PIPE)
    page = browsers(**PHONE)
    page.join(url(server), "kicked")
    server.proc.stdin.write("kick kicked enough for today\n")
    server.proc.stdin.flush()
    page.until(lambda: "removed" in page.find("#status").text, what="told why")
    page.until(lambda: page.find("#rejoin-button").is_displayed(), what="Join again")
    assert not page.find("#reconnect-button").is_displayed()
    page.say("anyone?")
    status = page.find("#status").text
    assert "will be sent" not in status and "Reconnecting" not in status
    assert page.find("#input").get_attribute("value") == "anyone?"  # kept, not taken
    assert "Not sent" in page.lines()[-1] and not page.all("#log li.pending")
    page.find("#rejoin-button").click()
    page.until(lambda: page.find("#status-strip").get_attribute("hidden") is not None,
               what="back in")
    listener = connect(server.port, "listener")
    listener.barrier()
    page.find("#input").send_keys(Keys.ENTER)  # what was kept in the box goes now
    assert listener.until("message", text="anyone?")["from"] == "kicked"


def test_a_reload_joins_the_rooms_and_direct_messages_again(server, browsers):
    page = browsers(**PHONE)
    page.join(url(server), "reloader")
    page.find("#menu-button").click()
    page.find("#join-room").send_keys("lab\n")
    page.until(lambda: page.find("#title").text == "#lab", what="#lab opened")
    bob = connect(server.port, "bob")
    bob.send(type="join", room="lab")
    bob.send(type="send", to="reloader", text="hello there")
    page.until(lambda: any(b.get_attribute("title") == "bob"
                           for b in page.all("#sidebar button.conv")), what="bob's DM")
    page.driver.refresh()
    page.until(lambda: page.find("#chat").is_displayed(), what="back in the chat")
    page.until(lambda: page.find("#title").text == "#lab", what="#lab open again")
    labels = lambda: {b.get_attribute("title") for b in page.all("#sidebar button.conv")}  # noqa: E731
    page.until(lambda: {"#general", "#lab", "bob"} <= labels(), what="rooms and DM again")
    assert bob.until("joined", room="lab", nick="reloader")
    assert page.console_errors() == []


CONTRAST = """
const e = document.querySelector(arguments[0]), s = getComputedStyle(e);
const lum = (c) => { const v = c.match(/\\d+/g).slice(0, 3).map((x) => x / 255)
  .map((x) => x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4);
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
const [a, b] = [lum(s.color), lum(s.backgroundColor)].sort((x, y) => y - x);
return (a + 0.05) / (b + 0.05);"""


def axe_script() -> str:
    from tests.prepare import AXE as path  # where tests/prepare.py put axe-core
    if not path.exists():
        pytest.fail(f"axe-core is missing at {path}: run python tests/prepare.py")
    return path.read_text()


@pytest.mark.parametrize("size", [(390, 844), (1366, 768)], ids=["phone", "laptop"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_in_the_chat_view(fast_server, browsers, size, scheme):
    script = axe_script()
    names = ("ann", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan",
             "judy", "ken", "liz")  # nick colours of many hues
    talkers = [connect(fast_server.port, n) for n in names]
    page = browsers(width=size[0], height=size[1], mobile=size[0] < 500)
    page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": scheme}]})
    page.join(url(fast_server), "viewer")
    for name, talker in zip(names, talkers):
        talker.send(type="send", room="general", text=f"hello viewer, {name} here")
    page.wait_text("hello viewer, liz here")
    talkers[1].send(type="send", to="viewer", text="a direct word")  # a mention badge
    page.say("my own line")
    page.wait_text("my own line")
    shown = [page.accessibility(script)]
    if size[0] < 500:  # the slide-in list, with its badges
        page.find("#menu-button").click()
        page.until(lambda: page.driver.execute_script(
            "return document.getElementById('sidebar').getBoundingClientRect().left >= 0"),
            what="the list slides in")
        page.until(lambda: page.all("#sidebar .badge.mention"), what="a mention badge")
        shown.append(page.accessibility(script))
    else:
        page.until(lambda: page.all("#sidebar .badge.mention"), what="a mention badge")
        shown.append(page.accessibility(script))
    serious = [v for found in shown for v in found if v["impact"] in ("serious", "critical")]
    assert serious == [], serious
    # the mention badge's own colours (axe leaves some small badges out)
    ratio = page.driver.execute_script(CONTRAST, "#sidebar .badge.mention")
    assert ratio >= 4.5, ratio


def test_browse_rooms_lists_them_and_joins_one_with_a_click(server, browsers):
    maker = connect(server.port, "maker", rooms=["general", "chess"])
    maker.barrier()
    page = browsers()
    page.join(url(server), "browser")
    page.find("#browse-button").click()
    page.until(lambda: page.find("#rooms-dialog").is_displayed(), what="the rooms dialog")
    rows = page.until(lambda: [" ".join(e.text.split()) for e in page.all("#room-list li")],
                      what="rooms")
    assert "#chess 1 here" in rows and "#general 2 here" in rows
    chess = next(b for b in page.all("#room-list button") if b.text == "#chess")
    chess.click()
    page.until(lambda: page.find("#title").text == "#chess", what="#chess opened")
    assert not page.find("#rooms-dialog").is_displayed()
    page.find("#browse-button").click()
    page.until(lambda: page.find("#rooms-dialog").is_displayed(), what="the dialog again")
    page.find("#rooms-dialog button[value=close]").click()
    page.until(lambda: not page.find("#rooms-dialog").is_displayed(), what="closed")
    assert page.console_errors() == []


def test_search_finds_a_message_and_opens_it_in_its_conversation(fast_server, browsers):
    talker = connect(fast_server.port, "talker", rooms=["general", "lab"])
    for i in range(300):  # the match is far above what the page has loaded
        text = "the Crème brûlée recipe is in the lab" if i == 20 else f"filler {i}"
        talker.send(type="send", room="lab", text=text)
    talker.barrier()
    page = browsers()
    page.join(url(fast_server), "seeker")
    page.say("/join lab")
    page.until(lambda: page.find("#title").text == "#lab", what="#lab opened")
    page.wait_text("filler 299")
    page.say("/join general")
    page.until(lambda: page.find("#title").text == "#general", what="#general again")
    page.find("#search-input").send_keys("creme BRULEE in:lab\n")
    page.until(lambda: page.find("#search-dialog").is_displayed(), what="results")
    assert page.find("#search-title").text == "1 result for “creme BRULEE in:lab”"
    marks = [m.text for m in page.all("#search-results mark")]
    assert marks == ["Crème", "brûlée"]
    page.find("#search-results button.result").click()
    page.until(lambda: page.find("#title").text == "#lab", what="the result's room")
    found = page.until(lambda: page.all("#log li.found"), what="the message shown")
    assert found[0].text.endswith("the Crème brûlée recipe is in the lab")
    texts = page.texts()
    at = texts.index("the Crème brûlée recipe is in the lab")
    assert texts[at - 1] == "filler 19" and texts[at + 1] == "filler 21"  # with context
    assert page.console_errors() == []


def test_files_go_up_from_the_page_and_come_down_with_a_preview(fast_server, browsers,
                                                                tmp_path):
    import hashlib
    import os

    from tests.test_files import download, png, upload
    page = browsers()
    saved = tmp_path / "saved"
    saved.mkdir()
    page.driver.execute_cdp_cmd("Page.setDownloadBehavior",
                                {"behavior": "allow", "downloadPath": str(saved)})
    page.join(url(fast_server), "uploader")
    desk = connect(fast_server.port, "desk")
    data = os.urandom(700_000)
    path = tmp_path / "notes.bin"
    path.write_bytes(data)
    page.find("#file-input").send_keys(str(path))
    top = page.until(lambda: page.driver.execute_script(
        "const b = document.querySelector('#transfers progress'); return b && b.max"),
        what="a progress bar")
    assert top == len(data)
    got = desk.until("message", timeout=30, **{"from": "uploader"})
    assert got["file"]["id"] == hashlib.sha256(data).hexdigest()  # hashed in the page
    assert download(desk, got["file"]["id"]) == data
    page.until(lambda: "Sent notes.bin" in page.find("#transfers").text, what="sent")
    # an image from the desktop client is shown in the page, and saved with a click
    upload(desk, png(40, 30), ref="png", name="red.png", mime="image/png")
    preview = page.until(lambda: page.driver.execute_script(
        "const i = document.querySelector('#log img.preview');"
        "return i && i.complete && i.naturalWidth"), what="the image shown")
    assert preview == 40
    boxes = [b for b in page.all("#log .file-link") if "notes.bin" in b.text]
    boxes[0].click()
    page.until(lambda: (saved / "notes.bin").exists()
               and (saved / "notes.bin").read_bytes() == data, timeout=60,
               what="the file saved")
    assert page.console_errors() == []


def test_a_pasted_image_and_a_dropped_file_are_sent(fast_server, browsers):
    page = browsers()
    page.join(url(fast_server), "paster")
    desk = connect(fast_server.port, "desk")
    make = ("const f = new File([new Uint8Array(arguments[0])], arguments[1], "
            "{type: arguments[2]}); const dt = new DataTransfer(); dt.items.add(f); ")
    page.driver.execute_script(make + "document.getElementById('input').dispatchEvent("
                               "new ClipboardEvent('paste', {clipboardData: dt, "
                               "bubbles: true, cancelable: true}));",
                               list(b"\x89PNG pretend"), "shot.png", "image/png")
    pasted = desk.until("message", timeout=60, **{"from": "paster"})
    assert pasted["file"]["name"] == "shot.png" and pasted["file"]["type"] == "image/png"
    assert page.find("#input").get_attribute("value") == ""  # not pasted as text
    page.driver.execute_script(make + "document.querySelector('.conversation').dispatchEvent("
                               "new DragEvent('drop', {dataTransfer: dt, bubbles: true, "
                               "cancelable: true}));", list(b"dropped bytes"), "notes.txt",
                               "text/plain")
    dropped = desk.until("message", timeout=60, **{"from": "paster"})
    assert dropped["file"]["name"] == "notes.txt" and dropped["file"]["size"] == 13


def knows_second(first, second, timeout: float = 30) -> None:
    """Wait until ``first``'s welcome names ``second`` among the chat's nodes."""
    deadline = time.monotonic() + timeout
    for attempt in itertools.count():
        probe = Wire(first.port)
        welcome = probe.hello(f"looker{attempt}", rooms=[])[0]
        probe.close()
        if f"127.0.0.1:{second.port}" in welcome.get("nodes", []):
            return
        assert time.monotonic() < deadline, welcome
        threading.Event().wait(0.1)  # pacing the looks, each bounded by the deadline


def test_the_page_moves_to_another_node_when_its_node_dies(start_server, browsers, tmp_path,
                                                           redis):
    first = start_server("--redis", redis.url, "--rate", "0", db=tmp_path / "a.db")
    second = start_server("--redis", redis.url, "--rate", "0", db=tmp_path / "b.db")
    talker = connect(second.port, "talker")
    # The page knows the nodes its server knew when it was served (they are in its CSP)
    # and when it said hello: the first node learns of the second at its next heartbeat.
    knows_second(first, second)
    page = browsers()
    page.join(url(first), "mover")  # its welcome names the other node
    talker.send(type="send", room="general", text="before")
    page.wait_text("before")
    page.say("/join lab")
    page.until(lambda: page.find("#title").text == "#lab", what="#lab opened")
    first.stop(signal.SIGKILL)
    for i in range(3):
        talker.send(type="send", room="general", text=f"while moving {i}")
    page.until(lambda: page.driver.current_url.startswith(url(second)), timeout=30,
               what="the page served by the other node")
    page.until(lambda: page.find("#status").text == "", timeout=60, what="online there")
    assert page.driver.current_url == url(second)  # nothing left in the address bar
    page.open_conversation("#general")
    page.wait_text("while moving 2")
    texts = page.texts()
    assert texts.count("before") == 1 and all(texts.count(f"while moving {i}") == 1
                                              for i in range(3))
    page.say("here now")
    assert talker.until("message", text="here now")["from"] == "mover"
    talker.send(type="who", room="lab")
    assert "mover" in talker.until("users")["users"]  # its rooms came along
    # nothing went wrong in the page but the tries to reach the dead node
    assert [e for e in page.console_errors() if "ERR_CONNECTION_REFUSED" not in e] == []


def test_a_download_cut_by_a_dead_server_resumes_from_the_page(start_server, browsers,
                                                                tmp_path):
    """The server dies while the page saves a file: the page says so with Resume;
    after it reconnects, Resume fetches only the rest, and what is saved is the file
    (checked against its SHA-256 in the page)."""
    import os

    from tests.test_files import upload
    port = free_port()
    first = start_server("--port", str(port), "--rate", "0")
    desk = connect(port, "desk")
    data = os.urandom(30 * 1000 * 1000)
    upload(desk, data, ref="big", name="dataset.bin")
    page = browsers()
    saved = tmp_path / "saved"
    saved.mkdir()
    page.driver.execute_cdp_cmd("Page.setDownloadBehavior",
                                {"behavior": "allow", "downloadPath": str(saved)})
    page.join(f"http://127.0.0.1:{port}/", "reader")
    boxes = page.until(lambda: [b for b in page.all("#log .file-link")
                                if "dataset.bin" in b.text], what="the file's line")
    boxes[0].click()
    page.until(lambda: page.driver.execute_script(
        "const b = document.querySelector('#log .file progress');"
        f"return b && !b.hidden && b.value >= {len(data) * 0.4}"), timeout=60,
        what="40 % received")
    first.proc.kill()
    first.proc.wait(30)
    page.until(lambda: "dataset.bin not received (connection lost)"
               in page.find("#transfers").text, what="the cut said")
    start_server("--port", str(port), "--rate", "0", db=first.db)
    page.until(lambda: page.find("#status").text == "", timeout=60, what="back online")
    page.find("#transfers button.resume").click()
    resumed = int(page.until(lambda: page.find("#transfers li").get_attribute(
        "data-resumed-from"), what="resumed"))
    assert 0.4 * len(data) <= resumed < len(data)  # the second fetch: under 60 %
    page.until(lambda: (saved / "dataset.bin").exists()
               and (saved / "dataset.bin").stat().st_size == len(data), timeout=90,
               what="the file saved")
    assert (saved / "dataset.bin").read_bytes() == data
    assert page.console_errors() == []


def test_the_sender_sees_her_own_picture_once(fast_server, browsers, tmp_path):
    from tests.test_files import png
    page = browsers()
    page.join(url(fast_server), "drawer")
    path = tmp_path / "board.png"
    path.write_bytes(png(40, 30))
    page.find("#file-input").send_keys(str(path))
    shown = page.until(lambda: page.driver.execute_script(
        "const i = [...document.querySelectorAll('#log img.preview')];"
        "return i.length && i.every(x => x.complete) && i.map(x => x.naturalWidth)"),
        what="her picture shown")
    assert shown == [40]
    for name in ("a.txt", "b.txt", "c.txt"):
        other = tmp_path / name
        other.write_bytes(name.encode() * 100)
        page.find("#file-input").send_keys(str(other))
        page.until(lambda name=name: any(name in b.get_attribute("textContent")
                                         for b in page.all("#log .file-link")),
                   what=f"{name} sent")
    assert len(page.all("#log img.preview")) == 1
    assert page.console_errors() == []
