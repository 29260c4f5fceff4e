"""Run one real window in this process and obey commands from the test on stdin.

Each stdin line is ``{"id": N, "eval": EXPR}`` or ``{"id": N, "exec": CODE}``, run
against the window ``win`` inside Tk's loop (polled with ``after()``, as the window
polls its socket); the reply is one JSON line ``{"id": N, "value": ...}`` on stdout.
One process, one ``CTk`` root: customtkinter keeps class-level state.
"""

from __future__ import annotations

import json
import os
import select
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import main


def build(kind: str, argv: list[str]):
    args = main.build_parser().parse_args([f"--{kind}", *argv])
    if kind == "server":
        from gui.server_window import ServerWindow
        return ServerWindow(main.server_config(args))
    from gui.client_window import ClientWindow
    return ClientWindow(args.host, args.port, args.nick, args.password, args.nick_password,
                        args.tls, args.ca_file)


def serve(win) -> None:
    namespace = {"win": win}
    pending = b""

    def poll() -> None:
        nonlocal pending
        while select.select([0], [], [], 0)[0]:
            chunk = os.read(0, 65536)
            if not chunk:
                win.destroy()
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                command = json.loads(line)
                reply = {"id": command["id"]}
                try:
                    if "eval" in command:
                        reply["value"] = eval(command["eval"], namespace)
                    else:
                        exec(command["exec"], namespace)
                        reply["value"] = None
                except Exception:  # reported to the test, which fails on it
                    reply["error"] = traceback.format_exc()
                print(json.dumps(reply, default=repr), flush=True)
        win.after(15, poll)

    win.after(15, poll)
    win.mainloop()


if __name__ == "__main__":
    serve(build(sys.argv[1], sys.argv[2:]))
