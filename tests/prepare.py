#!/usr/bin/env python3
"""Install what the test suite needs, then exit 0; the README's test line runs it first.

    python tests/prepare.py && python -m pytest

System tools (Xvfb and xdotool for the window tests, Tk for the windows, Chromium and
its driver for the page's tests) come from
apt-get when they are missing and this runs as root on Debian or
Ubuntu; otherwise one line says what to install and the exit status is 1, so the test
line stops before a run that would fail for a missing tool. Python packages come from
pyproject.toml: the project itself (editable, so the `lanchat` command is this checkout)
with its `test` extra (pytest, hypothesis, ruff, mypy, selenium), pinned there; axe-core
(the page's accessibility check) from npm, pinned here, into ~/.cache/lanchat-tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (command the tests run, the Debian/Ubuntu package that provides it)
TOOLS = [("Xvfb", "xvfb"), ("xdotool", "xdotool"),
         ("xprop", "x11-utils"),  # reads a window's hints (its urgency flag)
         ("chromium", "chromium"), ("chromedriver", "chromium-driver"),  # the page's tests
         ("ip", "iproute2"),  # discovery tests: network namespaces of their own
         ("irssi", "irssi"), ("tmux", "tmux"),  # a real IRC client, driven in tmux
         ("redis-server", "redis-server"),  # cluster tests: nodes sharing one Redis
         ("npm", "npm")]  # axe-core, the page's accessibility check
AXE_VERSION = "4.10.3"
# axe-core's script, injected into the page by the accessibility test (tests/browser.py)
AXE_HOME = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lanchat-tests"
AXE = AXE_HOME / "node_modules" / "axe-core" / "axe.min.js"
SYSTEM_PYTHON = ("/usr/bin/python3",)  # Debian's python3-tk only serves its own Python


def has_tkinter() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import tkinter"], capture_output=True)
    return probe.returncode == 0


def missing_packages() -> list[str]:
    wanted = [package for command, package in TOOLS if shutil.which(command) is None]
    if not has_tkinter():
        wanted.append("python3-tk")
    return wanted


def apt_install(packages: list[str]) -> bool:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [["apt-get", "update", "-qq"],
             ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]]
    for step in steps:
        if subprocess.run(step, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            return False
    return True


def main() -> int:
    packages = missing_packages()
    if packages:
        print(f"prepare: installing {' '.join(packages)} with apt-get", flush=True)
        apt_install(packages)
        still = missing_packages()
        if "python3-tk" in still and os.path.realpath(sys.executable) not in [
                os.path.realpath(p) for p in SYSTEM_PYTHON]:
            print(f"prepare: {sys.executable} has no tkinter; use a Python built with Tk "
                  "(Debian: apt-get install python3-tk, then /usr/bin/python3)",
                  file=sys.stderr)
            return 1
        if still:
            print(f"prepare: the tests need {', '.join(still)}: install them with "
                  f"'sudo apt-get install {' '.join(still)}'", file=sys.stderr)
            return 1
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
           "-e", f"{ROOT}[test]"]
    if subprocess.run(pip).returncode != 0:
        print("prepare: pip could not install the project with its test extra",
              file=sys.stderr)
        return 1
    if not AXE.exists():
        npm = ["npm", "install", "--prefix", str(AXE_HOME), "--no-audit", "--no-fund",
               "--silent", f"axe-core@{AXE_VERSION}"]
        if subprocess.run(npm).returncode != 0:
            print(f"prepare: npm could not install axe-core@{AXE_VERSION}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
