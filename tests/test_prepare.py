"""tests/prepare.py: what the test line does on a machine that lacks a tool."""

from __future__ import annotations

import importlib.util
import sys

from conftest import ROOT

spec = importlib.util.spec_from_file_location("prepare", ROOT / "tests" / "prepare.py")
assert spec is not None and spec.loader is not None
prepare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prepare)


def test_without_root_it_names_what_to_install_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(prepare.shutil, "which", lambda name: None)  # no Xvfb, no apt
    monkeypatch.setattr(prepare.os, "geteuid", lambda: 1000)
    ran: list[list[str]] = []
    monkeypatch.setattr(prepare.subprocess, "run", lambda cmd, **kw: ran.append(cmd))
    monkeypatch.setattr(prepare, "has_tkinter", lambda: True)
    assert prepare.main() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["prepare: the tests need xvfb, xdotool, x11-utils, chromium, "
                   "chromium-driver, iproute2, irssi, tmux, redis-server, npm: install "
                   "them with 'sudo apt-get install xvfb xdotool x11-utils chromium "
                   "chromium-driver iproute2 irssi tmux redis-server npm'"]
    assert ran == []  # neither apt-get nor pip was run


def everything_present(monkeypatch) -> list[list[str]]:
    """Every tool there, every command succeeding: the commands prepare runs."""
    monkeypatch.setattr(prepare.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(prepare, "has_tkinter", lambda: True)
    ran: list[list[str]] = []

    class Done:
        returncode = 0

    monkeypatch.setattr(prepare.subprocess, "run",
                        lambda cmd, **kw: ran.append(cmd) or Done())
    return ran


def test_with_everything_present_it_only_installs_the_project(monkeypatch, tmp_path):
    ran = everything_present(monkeypatch)
    monkeypatch.setattr(prepare, "AXE", tmp_path / "axe.min.js")
    (tmp_path / "axe.min.js").write_text("// axe")
    assert prepare.main() == 0
    assert ran == [[sys.executable, "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", "-e", f"{ROOT}[test]"]]


def test_axe_core_comes_from_npm_pinned_when_it_is_missing(monkeypatch, tmp_path):
    ran = everything_present(monkeypatch)
    monkeypatch.setattr(prepare, "AXE_HOME", tmp_path)
    monkeypatch.setattr(prepare, "AXE", tmp_path / "missing.js")
    assert prepare.main() == 0
    assert ran[-1] == ["npm", "install", "--prefix", str(tmp_path), "--no-audit",
                       "--no-fund", "--silent", f"axe-core@{prepare.AXE_VERSION}"]
