"""What the A/B benchmarks share: another revision checked out beside this one, and
callgrind's count of a run."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def checked_out(rev: str) -> Iterator[tuple[Path, Path]]:
    """(a temporary directory, revision ``rev`` checked out in a git worktree in it);
    both are gone afterwards."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        tree = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                        str(tree), rev], check=True)
        try:
            yield tmp, tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tree)], check=True)


def callgrind_total(dump: Path) -> int:
    """The instructions a callgrind output file counted."""
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"callgrind wrote no totals in {dump}")
