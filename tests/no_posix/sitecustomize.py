"""Loaded first by every Python the no-POSIX test job starts (it is on PYTHONPATH):
the POSIX-only modules cannot be imported and ``selectors`` uses ``select()``, as on
Windows (tests/test_platforms.py)."""

import selectors
import sys

for name in ("fcntl", "resource", "termios"):
    sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
selectors.DefaultSelector = selectors.SelectSelector  # type: ignore[misc]
