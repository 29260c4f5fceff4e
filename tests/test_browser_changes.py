"""Replies, reactions, edits and deletes in the page, in a real Chromium: what a user
clicks (a message's ⋯ menu, a reaction, the quote of a reply) and what they see."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.keys import Keys

from tests.browser import available
from tests.test_browser import url
from tests.wire import connect

pytestmark = pytest.mark.skipif(not available(), reason="needs chromium and chromedriver")

EDITS = {"features": ["edits"]}


def row(page, text: str):
    """The log's row of the message that shows ``text``."""
    return page.until(lambda: next((li for li in page.all("#log li.msg")
                                    if text in li.text), None), what=f"the row of {text!r}")


def menu(page, text: str) -> None:
    """Open the ⋯ menu of the message that shows ``text``."""
    target = row(page, text)
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
    target.find_element("css selector", ".msg-menu").click()
    page.until(lambda: page.find("#message-dialog").is_displayed(), what="the menu")


def test_reply_to_a_message_and_jump_to_it(fast_server, browsers):
    bob = connect(fast_server.port, "bob", **EDITS)
    bob.send(type="send", room="general", text="where is the projector remote?", ref="q")
    asked = bob.until("message", ref="q")["id"]
    page = browsers()
    page.join(url(fast_server), "alice")
    for i in range(40):  # the question scrolls out of view
        bob.send(type="send", room="general", text=f"filler {i}", ref=f"f{i}")
    page.wait_text("filler 39")
    menu(page, "where is the projector remote?")
    page.find("#message-reply").click()
    page.until(lambda: page.find("#reply-strip").is_displayed(), what="the reply strip")
    assert "Replying to bob: where is the projector remote?" in page.find("#reply-text").text
    page.say("in the top drawer")
    reply = bob.until("message", text="in the top drawer")
    assert reply["reply_to"] == asked and reply["from"] == "alice"
    assert not page.find("#reply-strip").is_displayed()
    quote = row(page, "in the top drawer").find_element("css selector", ".quote")
    assert quote.text == "↪ bob: where is the projector remote?"
    quote.click()
    page.until(lambda: "found" in (row(page, "where is the projector remote?")
                                   .get_attribute("class") or ""), what="the original marked")


def test_react_and_take_it_back(fast_server, browsers):
    bob = connect(fast_server.port, "bob", **EDITS)
    page = browsers()
    page.join(url(fast_server), "alice")
    bob.send(type="send", room="general", text="pizza on friday?", ref="p")
    mid = bob.until("message", ref="p")["id"]
    bob.send(type="react", id=mid, emoji="🎉", ref="r")
    bob.until("reaction", ref="r")
    page.until(lambda: row(page, "pizza").find_elements("css selector", ".reaction"),
               what="bob's reaction")
    menu(page, "pizza on friday?")
    page.find("#message-reacts button[aria-label='React with 👍']").click()
    got = bob.until("reaction", nick="alice")
    assert (got["emoji"], got["on"], got["target"]) == ("👍", True, mid)
    mine = page.until(lambda: next((b for b in row(page, "pizza").find_elements(
        "css selector", ".reaction.mine")), None), what="own reaction pressed")
    assert mine.text == "👍 1" and mine.get_attribute("aria-pressed") == "true"
    mine.click()  # taken back
    assert bob.until("reaction", nick="alice")["on"] is False
    page.until(lambda: [b.text for b in row(page, "pizza").find_elements(
        "css selector", ".reaction")] == ["🎉 1"], what="only bob's left")


def test_edit_and_delete_ones_own_and_see_anothers_edit(fast_server, browsers):
    bob = connect(fast_server.port, "bob", **EDITS)
    page = browsers()
    page.join(url(fast_server), "alice")
    page.say("the quiz is on tuesdya")
    page.wait_text("the quiz is on tuesdya")
    menu(page, "the quiz is on tuesdya")
    assert page.find("#message-edit").is_displayed()
    page.find("#message-edit").click()
    box = page.find("#input")
    page.until(lambda: box.get_attribute("value") == "the quiz is on tuesdya", what="the text")
    box.send_keys(Keys.BACKSPACE * 7, "tuesday", Keys.ENTER)
    edited = bob.until("edited")
    assert edited["text"] == "the quiz is on tuesday" and edited["by"] == "alice"
    page.until(lambda: "the quiz is on tuesday (edited)" in row(page, "tuesday").text,
               what="the new text, marked edited")

    bob.send(type="send", room="general", text="see you tomorow", ref="b")
    mid = bob.until("message", ref="b")["id"]
    page.wait_text("see you tomorow")
    menu(page, "see you tomorow")  # someone else's: no edit, no delete
    assert not page.find("#message-edit").is_displayed()
    assert not page.find("#message-delete").is_displayed()
    page.find("#message-dialog button[value='close']").click()
    bob.send(type="edit", id=mid, text="see you tomorrow", ref="e")
    page.wait_text("see you tomorrow")

    menu(page, "the quiz is on tuesday")
    page.find("#message-delete").click()
    page.until(lambda: page.driver.switch_to.alert, what="the confirmation")
    page.driver.switch_to.alert.accept()
    assert bob.until("deleted")["by"] == "alice"
    page.until(lambda: any("message deleted" in li.text for li in page.all("#log li.deleted")),
               what="message deleted, in place")
    assert not any("tuesday" in t for t in page.texts())
    assert page.console_errors() == []


STUB = """
window.__notes = [];
window.Notification = class {
  constructor(title, options) { window.__notes.push([title, options.body]); }
  close() {}
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
};
Object.defineProperty(document, "hidden", { get: () => true });  // another tab in front
"""


def test_notifications_on_a_mention_a_reply_and_a_dm_not_from_a_muted_room(fast_server,
                                                                           browsers):
    page = browsers()
    page.join(url(fast_server), "alice")
    page.driver.execute_script(STUB)  # the permission given; the page in the background
    bob = connect(fast_server.port, "bob", **EDITS)
    page.say("anyone seen my charger?")
    mine = bob.until("message", text="anyone seen my charger?")["id"]

    def notes():
        return page.driver.execute_script("return window.__notes")
    bob.send(type="send", room="general", text="alice: the lab is open", ref="m")
    page.until(lambda: ["bob in #general", "alice: the lab is open"] in notes(),
               what="a notification for the mention")
    bob.send(type="send", room="general", text="on the shelf", reply_to=mine, ref="r")
    page.until(lambda: ["bob in #general", "on the shelf"] in notes(),
               what="a notification for a reply to one's own message")
    bob.send(type="send", room="general", text="nothing for you here", ref="n")
    bob.until("message", ref="n")

    page.find("#mute-button").click()
    page.until(lambda: page.find("#mute-button").get_attribute("aria-pressed") == "true",
               what="muted")
    bob.send(type="send", room="general", text="alice: are you there?", ref="x")
    bob.send(type="send", to="alice", text="psst", ref="d")  # a DM: not muted
    page.until(lambda: ["bob in a direct message", "psst"] in notes(), what="the DM's")
    assert [title for title, _ in notes()] == ["bob in #general", "bob in #general",
                                              "bob in a direct message"]


def test_a_room_read_on_one_page_is_read_on_the_next_page_of_the_same_nickname(
        fast_server, browsers):
    import sqlite3

    def marker() -> int:
        with sqlite3.connect(fast_server.db) as db:
            row = db.execute("SELECT last_id FROM read_markers WHERE nick_key = 'alice' "
                             "AND conv = '#general'").fetchone()
        return row[0] if row else 0

    laptop = browsers()
    laptop.join(url(fast_server), "alice")
    laptop.say("/register correct horse 1")
    laptop.until(lambda: any("is now yours" in line for line in laptop.lines()),
                 what="the account made")
    bob = connect(fast_server.port, "bob")
    bob.send(type="send", room="general", text="before 1", ref="1")
    bob.send(type="send", room="general", text="before 2", ref="2")
    seen = [bob.until("message", ref=r)["id"] for r in ("1", "2")][-1]
    laptop.wait_text("before 2")
    laptop.until(lambda: marker() == seen, what="read up to 'before 2', kept")
    laptop.say("/quit")
    laptop.until(lambda: bob.until("left", nick="alice"), what="alice gone")
    bob.send(type="send", room="general", text="after 1", ref="3")
    bob.send(type="send", room="general", text="after 2", ref="4")
    newest = [bob.until("message", ref=r)["id"] for r in ("3", "4")][-1]

    phone = browsers()
    phone.open(url(fast_server))
    phone.find("#nick").clear()
    phone.find("#nick").send_keys("alice")
    phone.find("#more-fields summary").click()  # as a user opens "Passwords"
    phone.find("#nick-password").send_keys("correct horse 1", Keys.ENTER)
    phone.until(lambda: phone.find("#chat").is_displayed(), what="in the chat")
    phone.wait_text("after 2")
    rows = phone.until(lambda: [li.get_attribute("class") + ":" + li.text
                                for li in phone.all("#log li")
                                if "unread" in (li.get_attribute("class") or "")
                                or "msg" in (li.get_attribute("class") or "")],
                       what="the log")
    at = next(i for i, r in enumerate(rows) if r.startswith("unread"))
    assert "before 2" in rows[at - 1] and "after 1" in rows[at + 1], rows
    phone.until(lambda: marker() == newest, what="read on this device too")
