"""Asking for the user's attention from a window in the background: the platform's
own way, at the edge (the rest of the window knows one call).

* X11 (Linux, BSD): the window manager's urgency hint (ICCCM ``WM_HINTS``,
  ``XUrgencyHint``), set with libX11 through ctypes: taskbars flash or mark the window
  until it is used; taken back when the window gets the focus.
* Windows: ``FlashWindowEx`` on the taskbar button, until the window comes to the front.
* Anywhere else (macOS: Tk has no way to bounce the Dock icon): nothing more than the
  bell the window already rings.

Every path fails quietly: attention is a nicety, never a reason for an error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import tkinter
from typing import Any

URGENCY_HINT = 1 << 8  # XUrgencyHint in WM_HINTS' flags (ICCCM 4.1.2.4)
FLASHW_ALL, FLASHW_TIMERNOFG = 0x3, 0xC  # caption and button, until in front


class _XWMHints(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("input", ctypes.c_int),
                ("initial_state", ctypes.c_int), ("icon_pixmap", ctypes.c_ulong),
                ("icon_window", ctypes.c_ulong), ("icon_x", ctypes.c_int),
                ("icon_y", ctypes.c_int), ("icon_mask", ctypes.c_ulong),
                ("window_group", ctypes.c_ulong)]


_x11: Any = None  # libX11, loaded on first use (False: not there)


def _libx11() -> Any:
    global _x11
    if _x11 is None:
        name = ctypes.util.find_library("X11")
        lib: Any
        try:
            lib = ctypes.CDLL(name) if name else False
        except OSError:
            lib = False
        if lib:
            lib.XOpenDisplay.restype = ctypes.c_void_p
            lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
            lib.XGetWMHints.restype = ctypes.POINTER(_XWMHints)
            lib.XGetWMHints.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
            lib.XAllocWMHints.restype = ctypes.POINTER(_XWMHints)
            lib.XSetWMHints.argtypes = [ctypes.c_void_p, ctypes.c_ulong,
                                        ctypes.POINTER(_XWMHints)]
            lib.XFree.argtypes = [ctypes.c_void_p]
            lib.XFlush.argtypes = [ctypes.c_void_p]
            lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
        _x11 = lib
    return _x11


def _x11_urgent(window: tkinter.Misc, on: bool) -> None:
    lib = _libx11()
    if not lib:
        return
    display = lib.XOpenDisplay(None)
    if not display:
        return
    try:
        xid = int(window.winfo_toplevel().wm_frame(), 16)  # the toplevel's own X window
        hints = lib.XGetWMHints(display, xid)
        if not hints:
            hints = lib.XAllocWMHints()
            if not hints:
                return
        if on:
            hints.contents.flags |= URGENCY_HINT
        else:
            hints.contents.flags &= ~URGENCY_HINT
        lib.XSetWMHints(display, xid, hints)
        lib.XFree(hints)
        lib.XFlush(display)
    finally:
        lib.XCloseDisplay(display)


class _FlashInfo(ctypes.Structure):
    _fields_ = [("cbSize", ctypes.c_uint), ("hwnd", ctypes.c_void_p),
                ("dwFlags", ctypes.c_uint), ("uCount", ctypes.c_uint),
                ("dwTimeout", ctypes.c_uint)]


def _windows_flash(window: tkinter.Misc) -> None:
    hwnd = int(window.winfo_toplevel().wm_frame(), 16)
    info = _FlashInfo(ctypes.sizeof(_FlashInfo), hwnd, FLASHW_ALL | FLASHW_TIMERNOFG, 0, 0)
    ctypes.windll.user32.FlashWindowEx(ctypes.byref(info))  # type: ignore[attr-defined]


def ask_attention(window: tkinter.Misc) -> None:
    """Flag ``window`` for the user (the taskbar flashes) until it is used."""
    try:
        if sys.platform == "win32":
            _windows_flash(window)
        elif window.tk.call("tk", "windowingsystem") == "x11":
            _x11_urgent(window, True)
    except (OSError, ValueError, tkinter.TclError):
        pass


def attention_given(window: tkinter.Misc) -> None:
    """The user came to ``window``: its flag is taken back (Windows does it itself)."""
    try:
        if sys.platform != "win32" and window.tk.call("tk", "windowingsystem") == "x11":
            _x11_urgent(window, False)
    except (OSError, ValueError, tkinter.TclError):
        pass
