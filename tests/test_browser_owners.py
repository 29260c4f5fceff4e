"""Rooms with owners in the page, in a real Chromium: the topic under the title and
edited in the room's settings, an operator's person menu (voice, remove), the line
over the message box in a quiet room, and an invitation joined with a click."""

from __future__ import annotations

import pytest

from tests.browser import available
from tests.test_browser import PHONE, url
from tests.wire import connect as plain_connect


def connect(port, nick=None, **fields):
    """A JSON client that asks for the frames of rooms with owners (`features`)."""
    return plain_connect(port, nick, features=["owners"], **fields) if nick else \
        plain_connect(port)

pytestmark = pytest.mark.skipif(not available(), reason="needs chromium and chromedriver")


def people(page) -> dict[str, str]:
    """The people list as the user sees it: nickname -> role mark ("@", "+" or "")."""
    out = {}
    for li in page.all("#users li"):
        role = li.find_elements("css selector", ".role")
        out[li.find_element("css selector", ".user").text] = role[0].text if role else ""
    return out


def test_an_operator_gives_voice_and_removes_from_the_persons_menu(fast_server, browsers):
    page = browsers()
    page.join(url(fast_server), "teacher")  # the first one into #general: its operator
    student = connect(fast_server.port, "student")
    page.until(lambda: people(page) == {"teacher": "@", "student": ""}, what="the marks")
    page.find("button[aria-label='Actions for student']").click()
    page.until(lambda: page.find("#person-dialog").is_displayed(), what="the menu")
    assert page.find("#person-voice").text == "Give voice"
    page.find("#person-voice").click()
    change = student.until("mode", room="general")
    assert change["changes"] == [{"mode": "voice", "on": True, "arg": "student"}]
    page.until(lambda: people(page).get("student") == "+", what="a voice mark")
    page.until(lambda: any("teacher gave voice to student" in line for line in page.lines()),
               what="the line in the log")
    page.find("button[aria-label='Actions for student']").click()
    page.until(lambda: page.find("#person-dialog").is_displayed(), what="the menu again")
    page.find("#person-reason").send_keys("too loud")
    page.find("#person-kick").click()
    left = student.until("left", room="general", nick="student")
    assert left["by"] == "teacher" and left["message"] == "too loud"
    page.until(lambda: any("student was removed by teacher (too loud)" in line
                           for line in page.lines()), what="the removal in the log")
    page.until(lambda: "student" not in people(page), what="gone from the list")
    student.send(type="send", room="general", text="let me back", ref="s")
    assert student.until("error", ref="s")["code"] == "not_in_room"


def test_the_topic_is_shown_and_edited_and_a_quiet_room_says_so(fast_server, browsers):
    owner = connect(fast_server.port, "owner", rooms=["lab"])
    owner.send(type="topic", room="lab", topic="Lab 5: sockets, due Friday", ref="t")
    owner.until("topic", ref="t")
    page = browsers(**PHONE)
    page.join(url(fast_server), "pupil")
    page.find("#menu-button").click()  # the list slides in, with "Join a room"
    page.until(lambda: page.find("#join-room").is_displayed(), what="the join box")
    page.find("#join-room").send_keys("lab\n")
    page.until(lambda: page.find("#title").text == "#lab", what="in #lab")
    page.until(lambda: page.find("#topic").text == "Lab 5: sockets, due Friday",
               what="the topic under the title")
    assert page.find("#room-settings-button").is_displayed() is False  # not an operator
    owner.send(type="mode", room="lab", ref="m",
               changes=[{"mode": "moderated", "on": True}])
    page.until(lambda: page.find("#speak-note").is_displayed(), what="why one may not speak")
    assert "quiet" in page.find("#speak-note").text
    owner.send(type="mode", room="lab", ref="o",
               changes=[{"mode": "operator", "on": True, "arg": "pupil"}])
    page.until(lambda: page.find("#room-settings-button").is_displayed(),
               what="settings for a new operator")
    assert not page.find("#speak-note").is_displayed()  # operators speak
    page.find("#room-settings-button").click()
    page.until(lambda: page.find("#room-dialog").is_displayed(), what="the settings dialog")
    assert page.find("#room-moderated").is_selected()
    box = page.find("#room-topic")
    box.clear()
    box.send_keys("Lab 6: threads")
    page.find("#room-moderated").click()
    page.find("#room-save").click()
    assert owner.until("topic", room="lab", by="pupil")["topic"] == "Lab 6: threads"
    assert owner.until("mode", room="lab", by="pupil")["changes"] == [
        {"mode": "moderated", "on": False}]
    page.until(lambda: page.find("#topic").text == "Lab 6: threads", what="the new topic")
    width = page.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390


def test_an_invitation_to_an_invite_only_room_is_joined_with_a_click(fast_server, browsers):
    owner = connect(fast_server.port, "owner", rooms=["group1"])
    owner.send(type="mode", room="group1", ref="m",
               changes=[{"mode": "invite_only", "on": True}])
    owner.until("mode", ref="m")
    page = browsers()
    page.join(url(fast_server), "guest")
    page.driver.execute_script("window.lanchat.request({type: 'join', room: 'group1'})")
    page.until(lambda: any("invitation only" in line for line in page.lines()),
               what="the refusal said")
    owner.send(type="invite", room="group1", nick="guest", ref="i")
    owner.until("invited", ref="i")
    page.until(lambda: page.find("#invite-strip").is_displayed(), what="the invitation")
    assert page.find("#invite-text").text == "owner invites you to #group1."
    page.find("#invite-accept").click()
    page.until(lambda: page.find("#title").text == "#group1", what="in the room")
    assert owner.until("joined", room="group1")["nick"] == "guest"
    assert page.console_errors() == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_in_the_owners_view_and_dialogs(fast_server, browsers,
                                                                    scheme):
    from tests.test_browser import axe_script
    script = axe_script()
    page = browsers()
    page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": scheme}]})
    page.join(url(fast_server), "teacher")  # operator of #general
    student = connect(fast_server.port, "student")
    page.driver.execute_script("window.lanchat.request({type: 'topic', room: 'general', "
                               "topic: 'Lab 5: sockets, due Friday'})")
    page.driver.execute_script("window.lanchat.request({type: 'mode', room: 'general', "
                               "changes: [{mode: 'voice', on: true, arg: 'student'}]})")
    student.until("mode", room="general")
    page.until(lambda: page.find("#topic").text == "Lab 5: sockets, due Friday", what="topic")
    shown = [page.accessibility(script)]
    page.find("button[aria-label='Actions for student']").click()
    page.until(lambda: page.find("#person-dialog").is_displayed(), what="the menu")
    shown.append(page.accessibility(script))
    page.driver.execute_script("document.getElementById('person-dialog').close()")
    page.find("#room-settings-button").click()
    page.until(lambda: page.find("#room-dialog").is_displayed(), what="the settings")
    shown.append(page.accessibility(script))
    serious = [v for found in shown for v in found if v["impact"] in ("serious", "critical")]
    assert serious == [], serious


def test_a_topic_set_from_irc_shows_under_the_pages_title(start_server, browsers):
    from tests.ircwire import IrcWire
    server = start_server("--rate", "0", "--irc-port", "0")
    irc_port = int(server.proc.stdout.readline().rsplit(":", 1)[1])
    teacher = IrcWire(irc_port)
    teacher.register("teacher")
    teacher.send("JOIN #general")  # the first one in: its operator
    teacher.until("366", "teacher", "#general")
    page = browsers()
    page.join(url(server), "pupil")
    teacher.send("TOPIC #general :Lab 5: sockets, due Friday")
    page.until(lambda: page.find("#topic").text == "Lab 5: sockets, due Friday",
               what="the topic from IRC")
    page.until(lambda: any("teacher set the topic: Lab 5" in line for line in page.lines()),
               what="the change in the log")
