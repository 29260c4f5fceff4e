#!/usr/bin/env python3
"""How fast the windows answer clicks while 1,000 messages a second arrive.

Each window runs in its own process under Xvfb. A bot floods a room at a paced
1,000 msg/s (loopback only); meanwhile real pointer clicks are sent with xdotool
(XTEST, as a mouse makes them) and the window records, with ``bind_all``, when its
handler sees each one. Latency = handler time - time just before xdotool ran, both on
the system-wide monotonic clock, so it includes xdotool's own start-up: an upper
bound. Tick = one ``after()`` callback (network + rendering). Medians of --runs runs.

    python bench/gui_responsiveness.py [--runs 3] [--seconds 5] [--rate 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from windows import Window, start_xvfb  # noqa: E402  (tests/windows.py)

PROBE = """
import time as _t
clicks = []
win.bind_all('<ButtonPress-1>', lambda e: clicks.append(_t.monotonic()), add='+')
"""


def flood(port: int, rate: int, seconds: float) -> int:
    """Send `rate` messages a second for `seconds`, paced in 10 ms slices."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b'{"type":"hello","nick":"flood","proto":1}\n')
    sent, start = 0, time.monotonic()
    line = (b'{"type":"send","room":"general",'
            b'"text":"%d the quick brown fox jumps over the lazy dog"}\n')
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        if due > sent:
            sock.sendall(b"".join(line % i for i in range(sent, due)))
            sent = due
        sock.recv(1 << 20, socket.MSG_DONTWAIT) if _readable(sock) else None
        time.sleep(0.002)
    sock.close()
    return sent


def _readable(sock: socket.socket) -> bool:
    import select
    return bool(select.select([sock], [], [], 0)[0])


def click_latencies(win: Window, rate: int, seconds: float, port: int) -> tuple[list, int]:
    win.exec(PROBE)
    x = win.eval("win.winfo_rootx() + win.winfo_width() // 2")
    y = win.eval("win.winfo_rooty() + 40")
    subprocess.run(["xdotool", "mousemove", str(x), str(y)], check=True)
    import threading  # the bench (not the product) floods from a second thread
    result: dict = {}
    flooder = threading.Thread(target=lambda: result.update(sent=flood(port, rate, seconds)))
    flooder.start()
    starts = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline - 0.3:
        time.sleep(0.25)
        starts.append(time.monotonic())
        subprocess.run(["xdotool", "click", "1"], check=True)
    flooder.join()
    clicks = win.wait("clicks", lambda c: len(c) >= len(starts), timeout=30)
    return [c - s for s, c in zip(starts, clicks)], result["sent"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run_client(tmp: Path, env: dict, args) -> dict:
    server = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--server", "--headless",
                               "--host", "127.0.0.1", "--port", "0", "--rate", "0", "--quiet",
                               "--db", str(tmp / "c.db")], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline().rsplit(":", 1)[1])
    win = Window("client", "--host", "127.0.0.1", "--port", str(port), "--nick", "reader", env=env)
    try:
        win.wait("win.client is not None and win.client.ready")
        win.exec("win.tick_seconds.clear()")
        lat, sent = click_latencies(win, args.rate, args.seconds, port)
        got = win.wait("win.state_.received",
                       lambda n: n >= min(sent, 1000), timeout=30)
        ticks = win.eval("list(win.tick_seconds)")
        lines = win.eval("win.view.line_count()")
    finally:
        win.close()
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    return {"lat": lat, "ticks": ticks, "sent": sent, "lines": lines, "got": got}


def run_server_window(tmp: Path, env: dict, args) -> dict:
    win = Window("server", "--host", "127.0.0.1", "--port", "0", "--rate", "0",
                 "--db", str(tmp / "s.db"), env=env)
    port = int(win.wait_line("listening on ").rsplit(":", 1)[1])
    readers = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    for i, r in enumerate(readers):
        r.sendall(b'{"type":"hello","nick":"r%d","proto":1}\n' % i)
        r.setblocking(False)
    try:
        win.wait("len(win.server.hub.users)", lambda n: n == 20)
        win.exec("win.tick_seconds.clear()")
        import threading
        stop = threading.Event()

        def drain() -> None:  # the readers keep reading, as real clients do
            while not stop.is_set():
                for r in readers:
                    try:
                        r.recv(1 << 20)
                    except BlockingIOError:
                        pass
                time.sleep(0.005)
        drainer = threading.Thread(target=drain)
        drainer.start()
        lat, sent = click_latencies(win, args.rate, args.seconds, port)
        got = win.wait("win.server.hub.messages", lambda n: n >= sent, timeout=30)
        stop.set()
        drainer.join()
        ticks = win.eval("list(win.tick_seconds)")
    finally:
        for r in readers:
            r.close()
        win.close()
    return {"lat": lat, "ticks": ticks, "sent": sent, "lines": None, "got": got}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=1000)
    args = parser.parse_args()
    if shutil.which("xdotool") is None:
        print("needs xdotool (apt-get install xdotool)", file=sys.stderr)
        return 2
    xvfb = start_xvfb() if not os.environ.get("DISPLAY") else None
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, XDG_CONFIG_HOME=str(Path(tmp) / "cfg"))
            for name, runner in (("client window", run_client),
                                 ("server window", run_server_window)):
                runs = []
                for i in range(args.runs):
                    folder = Path(tmp) / f"{name.split()[0]}{i}"
                    folder.mkdir()
                    runs.append(runner(folder, env, args))
                rows.append((name, runs))
    finally:
        if xvfb is not None:
            xvfb.terminate()
    print(f"\n{args.rate} msg/s offered for {args.seconds:.0f} s; medians of {args.runs} runs "
          "(ms)\n")
    print("| window | clicks | click p50 | click max | tick p50 | tick p99 | tick max |"
          " messages in | view lines |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, runs in rows:
        def med(f, runs=runs):
            return statistics.median(f(r) for r in runs)
        print(f"| {name} | {med(lambda r: len(r['lat'])):.0f} "
              f"| {med(lambda r: pct(r['lat'], .5)) * 1e3:.1f} "
              f"| {med(lambda r: max(r['lat'])) * 1e3:.1f} "
              f"| {med(lambda r: pct(r['ticks'], .5)) * 1e3:.1f} "
              f"| {med(lambda r: pct(r['ticks'], .99)) * 1e3:.1f} "
              f"| {med(lambda r: max(r['ticks'])) * 1e3:.1f} "
              f"| {med(lambda r: r['got']):.0f} "
              f"| {runs[0]['lines'] if runs[0]['lines'] is not None else '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
