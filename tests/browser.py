"""Real headless Chromium (Debian's chromium and chromium-driver) through selenium.

``Browser`` opens the page of a server and waits on what the user sees, each wait
with a deadline. Chromium starts with no network of its own beyond loopback use:
background networking, sync and component updates are off.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30.0  # a deadline for a busy machine; waits end as soon as what is awaited shows


def available() -> bool:
    return shutil.which("chromium") is not None and shutil.which("chromedriver") is not None


class Browser:
    def __init__(self, width: int = 1200, height: int = 800, mobile: bool = False) -> None:
        self.profile = tempfile.mkdtemp(prefix="lanchat-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={self.profile}",
                     f"--window-size={width},{height}"):
            options.add_argument(flag)
        if mobile:
            options.add_experimental_option("mobileEmulation", {
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0}})
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(WAIT)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, check: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = check()
                if value:
                    return value
            except (StaleElementReferenceException, WebDriverException) as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"not seen within {timeout}s: {what} ({last})")

    def join(self, url: str, nick: str) -> None:
        """Open the page and join the chat as ``nick``, as a user does."""
        self.open(url)
        self.find("#nick").clear()
        self.find("#nick").send_keys(nick, Keys.ENTER)
        self.until(lambda: self.find("#chat").is_displayed(), what=f"{nick} in the chat")
        self.until(lambda: self.find("#me").get_attribute("textContent") == nick,
                   what="own nickname known")

    def say(self, text: str) -> None:
        box = self.find("#input")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def texts(self) -> list[str]:
        """The message texts of the shown conversation, top to bottom."""
        return [e.text for e in self.all("#log li.msg .text")]

    def lines(self) -> list[str]:
        return [e.text for e in self.all("#log li")]

    def wait_text(self, text: str, timeout: float = WAIT) -> None:
        self.until(lambda: text in self.texts(), timeout, f"message {text!r}")

    def open_conversation(self, label: str) -> None:
        for button in self.all("#sidebar button.conv"):
            if button.get_attribute("title") == label:
                button.click()
                self.until(lambda: self.find("#title").text == label, what=label)
                return
        raise AssertionError(f"no conversation {label}")

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def accessibility(self, script: str) -> list[dict[str, Any]]:
        """axe-core's violations on the page as it is now (``script``: axe.min.js),
        each as {id, impact, help, nodes: [html]}."""
        self.driver.execute_script(script)
        self.driver.set_script_timeout(WAIT)
        found = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then((r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact,"
            " help: v.help, nodes: v.nodes.map((n) => n.html + ' ' + n.failureSummary)}))))"
            ".catch((e) => done([{id: 'axe-error', impact: 'critical', help: String(e),"
            " nodes: []}]));")
        return list(found)

    def screenshot(self, path: str) -> None:
        self.driver.save_screenshot(path)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
