#!/usr/bin/env python3
"""Take the README's screenshots of the real windows under Xvfb.

    python tests/screenshots.py [OUT_DIR] [--page]   (default: docs/; needs Xvfb and
                                                      imagemagick; --page: the page only)

Starts the server window, two client windows and a few scripted participants over
loopback, then saves each window with `import -window`; then the page in headless
Chromium, on a desktop and a phone-sized screen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import time

from windows import Window, start_xvfb
from wire import Wire, connect

from chat.store import Store
from gui.server_window import MIN_SIZE


def yesterday(db: str) -> None:
    """Some of yesterday's conversation, so that the window shows its day separators."""
    store = Store(db)
    base = int((time.time() - 86400) * 1000)
    for i, (who, text) in enumerate([("maria", "Homework for tomorrow: exercises 1 to 3."),
                                     ("tom", "is the lab open tomorrow?"),
                                     ("maria", "from 1 pm, yes")]):
        store.add(base + i * 60_000, who, text, room_key="general", room_name="general")
    store.close()


QUESTION = "Hi! Is the lab open after lunch?"


def answer(maria: Wire, tom: Wire) -> None:
    """The class answers alice's question (the same in the window and the page)."""
    maria.until("message", text=QUESTION)
    maria.send(type="send", room="general", text="yes alice, from 1 pm\nbring your laptop")
    tom.send(type="send", room="general", text="grabs coffee", action=True)
    tom.send(type="send", to="alice", text="want to pair on exercise 3?")
    maria.send(type="send", room="lab", text="alice: printer is fixed")
    tom.send(type="typing", room="general")


def shoot(win: Window, path: Path) -> None:
    win.exec("win.lift(); win.update()")  # no window manager: raise it above the others
    wid = win.eval("win.winfo_id()")
    frame = win.eval("win.wm_frame()")
    subprocess.run(["import", "-window", str(int(frame, 16) if frame else wid), str(path)],
                   check=True)
    print(path)


def page_shots(out: Path) -> None:
    from browser import Browser
    with tempfile.TemporaryDirectory() as tmp:
        yesterday(f"{tmp}/p.db")
        proc = subprocess.Popen([sys.executable, str(Path(__file__).parents[1] / "main.py"),
                                 "--server", "--headless", "--host", "127.0.0.1", "--port", "0",
                                 "--db", f"{tmp}/p.db", "--name", "Room 204", "--quiet",
                                 "--motd", "Welcome to Room 204. Be kind."],
                                stdout=subprocess.PIPE, text=True)
        browsers = []
        try:
            port = int(proc.stdout.readline().rsplit(":", 1)[1])
            url = f"http://127.0.0.1:{port}/"
            maria = connect(port, "maria", rooms=["general", "lab"])  # general's operator
            maria.send(type="topic", room="general", topic="Today: sockets. Lab 5 is due Friday.")
            tom = connect(port, "tom")
            maria.send(type="mode", room="general",
                       changes=[{"mode": "voice", "on": True, "arg": "tom"}])
            maria.send(type="send", room="general", text="Morning all! Slides: https://example.org/slides")
            tom.send(type="send", room="general", text="thanks maria")
            desk = Browser(1280, 800)
            phone = Browser(360, 740, mobile=True)
            browsers += [desk, phone]
            phone.join(url, "sam")
            desk.join(url, "alice")
            desk.say(QUESTION)
            answer(maria, tom)
            desk.wait_text("grabs coffee")
            phone.wait_text("grabs coffee")
            desk.until(lambda: desk.all("#dms .badge"), what="the DM's badge")
            from test_files import png, upload
            upload(maria, png(240, 150), ref="png", name="whiteboard.png", mime="image/png")
            desk.until(lambda: desk.driver.execute_script(
                "const i = document.querySelector('#log img.preview');"
                "return i && i.complete && i.naturalWidth"), what="the picture")
            big = Path(tmp) / "lecture-recording.bin"
            big.write_bytes(os.urandom(60 * 1000 * 1000))
            desk.find("#file-input").send_keys(str(big))
            desk.until(lambda: desk.all("#transfers progress"), what="the upload's bar")
            desk.screenshot(str(out / "page-desktop.png"))
            print(out / "page-desktop.png")
            phone.screenshot(str(out / "page-phone.png"))
            print(out / "page-phone.png")
            desk.driver.execute_script("localStorage.setItem('lanchat.theme', 'dark');"
                                       "document.documentElement.dataset.theme = 'dark'")
            desk.screenshot(str(out / "page-desktop-dark.png"))
            print(out / "page-desktop-dark.png")
            phone.find("#menu-button").click()
            phone.until(lambda: phone.driver.execute_script(
                "return document.getElementById('sidebar').getBoundingClientRect().left >= 0"))
            phone.screenshot(str(out / "page-phone-menu.png"))
            print(out / "page-phone-menu.png")
            # Offline on a 390 px phone: the status strip, a message not sent yet, and
            # the menu's dot for a direct message that came before.
            walker = Browser(390, 844, mobile=True)
            browsers.append(walker)
            walker.join(url, "walker")
            tom.send(type="send", to="walker", text="psst, walker")
            walker.until(lambda: "dot" in walker.find("#menu-button").get_attribute("class"))
            proc.terminate()
            proc.wait(10)
            walker.until(lambda: "Offline" in walker.find("#status").text)
            walker.say("on the bus, back soon")
            walker.until(lambda: walker.all("#log li.pending"))
            walker.screenshot(str(out / "page-phone-offline.png"))
            print(out / "page-phone-offline.png")
        finally:
            for browser in browsers:
                browser.quit()
            proc.terminate()
            proc.wait(10)


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = Path(args[0] if args else Path(__file__).parent.parent / "docs")
    out.mkdir(parents=True, exist_ok=True)
    page_shots(out)
    if "--page" in sys.argv:
        return 0
    xvfb = start_xvfb() if not os.environ.get("DISPLAY") else None
    opened = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, XDG_CONFIG_HOME=f"{tmp}/cfg")
            yesterday(f"{tmp}/s.db")
            server = Window("server", "--host", "127.0.0.1", "--port", "0", "--name", "Room 204",
                            "--motd", "Welcome to Room 204. Be kind.", "--db", f"{tmp}/s.db",
                            "--tls", env=env)
            opened.append(server)
            port = int(server.wait_line("listening on ").rsplit(":", 1)[1])
            maria = connect(port, "maria", rooms=["general", "lab"], tls=True)  # its operator
            maria.send(type="topic", room="general", topic="Today: sockets. Lab 5 is due Friday.")
            tom = connect(port, "tom", tls=True)
            maria.send(type="mode", room="general",
                       changes=[{"mode": "voice", "on": True, "arg": "tom"}])
            maria.send(type="send", room="general", text="Morning all! Slides are on the share.")
            tom.send(type="send", room="general", text="thanks maria")
            alice = Window("client", "--host", "127.0.0.1", "--port", str(port), "--nick", "alice",
                           "--tls", env=env)
            opened.append(alice)
            alice.wait("win.client is not None and win.client.ready")
            students = [Wire(port, tls=True) for _ in range(12)]  # a class arriving
            for i, wire in enumerate(students):
                wire.send(type="hello", nick=f"student{i + 1:02d}", proto=1)
            alice.wait("len(win.users.names)", lambda n: n == 15)
            alice.exec(f"win.entry.insert('1.0', {QUESTION!r}); win.send_button.invoke()")
            answer(maria, tom)
            alice.wait("win.view.text()", lambda t: "grabs coffee" in t)
            from test_files import png, upload
            upload(maria, png(240, 150), ref="png", name="whiteboard.png", mime="image/png")
            alice.wait("len(win.view._textbox.image_names())", lambda n: n >= 1)
            big = Path(tmp) / "lecture-recording.bin"
            big.write_bytes(os.urandom(200 * 1000 * 1000))
            alice.exec(f"win.send_file_event({str(big)!r})")
            alice.wait("win.talk.transfer_bar.winfo_ismapped()")
            server.exec("win.operator.entry.insert(0, 'Class ends at 3 today')")
            server.exec("win.add_ban_event('address', '203.0.113.66', 86400, 'flooding')")
            server.wait("win.clients.rows()", lambda r: len(r) == 15)
            server.wait("win.log_view.text()", lambda t: "grabs coffee" in t)
            shoot(alice, out / "client-window.png")
            shoot(server, out / "server-window.png")
            alice.exec("win.appearance_event('Dark')")
            alice.wait("win.view.text()")
            shoot(alice, out / "client-window-dark.png")
            server.exec(f"win.geometry('{MIN_SIZE[0]}x{MIN_SIZE[1]}'); win.update()")
            server.wait("win.winfo_width()", lambda w: w == MIN_SIZE[0])
            server.exec("win.update()")
            shoot(server, out / "server-window-min.png")
    finally:
        for win in opened:
            win.close()
        if xvfb is not None:
            xvfb.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
