"""The loop may never block: checked on the source of chat/ and gui/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_MODULES = {"threading", "_thread", "asyncio", "multiprocessing",
                     "concurrent"}
FORBIDDEN_CALLS = {"sendall", "sleep", "makefile", "create_connection"}


def sources():
    for folder in ("chat", "gui"):
        yield from (ROOT / folder).glob("*.py")
    yield ROOT / "main.py"


def test_no_threads_and_no_blocking_calls():
    problems = []
    for path in sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    problems.append(f"{path.name}:{node.lineno} imports {name}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in FORBIDDEN_CALLS:
                    problems.append(f"{path.name}:{node.lineno} calls {node.func.attr}")
                if node.func.attr == "setblocking" and not (
                        node.args and isinstance(node.args[0], ast.Constant)
                        and node.args[0].value is False):
                    problems.append(f"{path.name}:{node.lineno} setblocking not False")
    assert problems == []


def test_core_never_imports_tk():
    for path in (ROOT / "chat").glob("*.py"):
        text = path.read_text()
        assert "tkinter" not in text and "customtkinter" not in text, path


def test_tls_sockets_never_handshake_on_their_own():
    """A blocking handshake would stall the loop: every wrap_socket in chat/ and gui/
    passes do_handshake_on_connect=False, and the loop steps do_handshake itself."""
    calls = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "wrap_socket":
                flags = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                calls.append((path.name, flags.get("do_handshake_on_connect")))
    assert calls and all(value is False for _, value in calls), calls


def test_requests_reach_the_hub_one_way():
    """Only the server imports the dispatch (frames -> hub operations); the hub does
    not know it, and handlers change no hub dict themselves."""
    importers = []
    for path in (ROOT / "chat").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([node.module] if isinstance(node, ast.ImportFrom) else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if "chat.dispatch" in names:
                importers.append(path.name)
    assert importers == ["server.py"]
    tree = ast.parse((ROOT / "chat" / "dispatch.py").read_text())
    writes = [ast.unparse(target) for node in ast.walk(tree)
              if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete))
              for target in (node.targets if not isinstance(node, ast.AugAssign)
                             else [node.target])
              if isinstance(target, ast.Subscript)
              and ast.unparse(target.value).startswith("hub.")]
    assert writes == []


def test_doors_render_events_and_never_read_json_back():
    """Frames are typed: the server's doors render events (chat.events) and no door
    parses the hub's JSON again; no module global carries frames between them."""
    for name in ("irc.py", "web.py", "websocket.py", "model.py", "hub.py"):
        tree = ast.parse((ROOT / "chat" / name).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names}
        assert "json" not in imported or name == "hub.py", name  # hub: files' JSON
        calls = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Attribute)}
        assert "loads" not in calls, name
    import chat.model
    assert not hasattr(chat.model, "FRAMES") and not hasattr(chat.model, "WIRED")


def test_frames_are_typed_not_loose_dicts():
    """Requests and events are typed objects; a loose ``dict[str, Any]`` is left only
    where a JSON object is what it is (the wire's own form, a client's view of it)."""
    count = sum(path.read_text().count("dict[str, Any]")
                for path in (ROOT / "chat").glob("*.py"))
    assert count <= 61, count  # (the window's ChatState reads frames as the JSON they are)
