"""The client's side of files (chat/transfers.py), with a stand-in for the
connection: a download is checked against its SHA-256 before it takes its name, goes
on from the bytes a cut one left, and says how fast it goes."""

from __future__ import annotations

import base64
import hashlib
import os

from chat.transfers import HASH_STEP, Fetching, Rate


class Client:
    """What a transfer needs of a ChatClient: somewhere to send frames."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, frame: dict) -> None:
        self.sent.append(frame)


def file_of(data: bytes, name: str = "notes.bin") -> dict:
    return {"id": hashlib.sha256(data).hexdigest(), "name": name, "size": len(data)}


def feed(fetching: Fetching, data: bytes, start: int, stop: int | None = None,
         piece: int = 50_000) -> None:
    """The server's file_data frames of ``data`` from ``start`` (up to ``stop``)."""
    for offset in range(start, len(data) if stop is None else stop, piece):
        chunk = data[offset:min(offset + piece, len(data) if stop is None else stop)]
        fetching.handle_frame({"type": "file_data", "file": fetching.file["id"],
                               "offset": offset, "data": base64.b64encode(chunk).decode(),
                               "end": offset + len(chunk) >= len(data)})


def test_a_download_whose_bytes_are_not_the_file_is_not_saved(tmp_path):
    data = os.urandom(200_000)
    client = Client()
    path = tmp_path / "notes.bin"
    fetching = Fetching(client, file_of(data), str(path), "d")
    assert client.sent == [{"type": "download", "file": file_of(data)["id"], "offset": 0,
                            "ref": "d"}]
    forged = bytearray(data)
    forged[123_456] ^= 1
    feed(fetching, bytes(forged), 0)
    assert fetching.state == "failed" and "damaged" in fetching.error
    assert not path.exists() and not (tmp_path / "notes.bin.part").exists()


def test_a_cut_download_goes_on_from_its_part(tmp_path):
    data = os.urandom(2 * HASH_STEP + 300_000)  # half of it: more than a step of hashing
    half = len(data) // 2 + 7
    path = tmp_path / "notes.bin"
    client = Client()
    first = Fetching(client, file_of(data), str(path), "d1")
    feed(first, data, 0, half)  # (no end: the connection drops)
    first.cancel("connection lost")
    assert (tmp_path / "notes.bin.part").stat().st_size == half
    client.sent.clear()
    again = Fetching(client, file_of(data), str(path), "d2")
    assert again.state == "checking" and client.sent == []  # hashing what is there
    for _ in range(10):
        again.step()
    assert client.sent == [{"type": "download", "file": file_of(data)["id"],
                            "offset": half, "ref": "d2"}]
    assert again.resumed_from == half
    feed(again, data, half)
    assert again.state == "done" and path.read_bytes() == data
    assert not (tmp_path / "notes.bin.part").exists()


def test_a_part_longer_than_the_file_starts_over(tmp_path):
    data = os.urandom(10_000)
    path = tmp_path / "notes.bin"
    (tmp_path / "notes.bin.part").write_bytes(os.urandom(20_000))
    client = Client()
    fetching = Fetching(client, file_of(data), str(path), "d")
    assert client.sent[0]["offset"] == 0
    feed(fetching, data, 0)
    assert fetching.state == "done" and path.read_bytes() == data


def test_bytes_out_of_place_fail_the_download(tmp_path):
    data = os.urandom(100_000)
    fetching = Fetching(Client(), file_of(data), str(tmp_path / "x"), "d")
    fetching.handle_frame({"type": "file_data", "file": file_of(data)["id"], "offset": 500,
                           "data": base64.b64encode(data[500:600]).decode()})
    assert fetching.state == "failed"


def test_the_rate_line_says_speed_and_time_left():
    now = [100.0]
    rate = Rate(clock=lambda: now[0])
    assert rate.line(0, 10_000_000) == "0 B of 10.0 MB"
    now[0] += 2.0
    assert rate.line(2_000_000, 10_000_000) == "2.0 MB of 10.0 MB, 1.0 MB/s, 8 s left"
    now[0] += 100.0
    line = rate.line(2_100_000, 10_000_000)
    assert line.endswith("min left")
