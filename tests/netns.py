"""Two hosts on one machine for tests of what crosses a network: network namespaces.

``LanPair`` makes two namespaces joined by a veth pair, each with an address of the
test's own (10.203.N.1 and .2, /24) and loopback up, and removes both afterwards
(deleting a namespace removes its end of the veth). Nothing else is touched: traffic
between them never reaches a real network. Needs root and iproute2 (`ip netns`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess

_pairs = itertools.count(1)


_works: bool | None = None


def available() -> bool:
    """Whether this machine lets the tests make namespaces (root, iproute2, and a
    kernel or container that allows it): tried once, with a namespace removed at once."""
    global _works
    if _works is None:
        _works = False
        if os.geteuid() == 0 and shutil.which("ip") is not None:
            name = f"lcprobe{os.getpid()}"
            made = subprocess.run(["ip", "netns", "add", name], capture_output=True)
            _works = made.returncode == 0
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return _works


class LanPair:
    def __init__(self) -> None:
        n = (os.getpid() * 7 + next(_pairs)) % 250 + 1
        tag = f"{os.getpid() % 100000}x{n}"
        self.names = (f"lcs{tag}", f"lcc{tag}")  # the server's side, the client's side
        self.addresses = (f"10.203.{n}.1", f"10.203.{n}.2")
        links = self.links = (f"lv{tag}a"[:15], f"lv{tag}b"[:15])
        steps = [["ip", "netns", "add", self.names[0]], ["ip", "netns", "add", self.names[1]],
                 ["ip", "link", "add", links[0], "type", "veth", "peer", "name", links[1]]]
        for ns, link, address in zip(self.names, links, self.addresses):
            steps += [["ip", "link", "set", link, "netns", ns],
                      ["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", link],
                      ["ip", "-n", ns, "link", "set", link, "up"],
                      ["ip", "-n", ns, "link", "set", "lo", "up"]]
        try:
            for step in steps:
                subprocess.run(step, check=True, capture_output=True)
        except subprocess.CalledProcessError:
            self.remove()
            raise

    def run_in(self, side: int) -> tuple[str, ...]:
        """The command prefix that runs a program in one namespace (0: server's)."""
        return ("ip", "netns", "exec", self.names[side])

    def remove(self) -> None:
        for ns in self.names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
