"""A real `annal serve` for the client tests: the binary from ANNAL_BIN (default: the
workspace's debug build), on a free port, over a fresh data directory."""

import os
import pathlib
import re
import subprocess
import threading
import time

import pytest

from annal import Client

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture()
def server(tmp_path):
    binary = os.environ.get("ANNAL_BIN", str(ROOT / "target" / "debug" / "annal"))
    proc = subprocess.Popen(
        [binary, "serve", "--data", str(tmp_path / "data"), "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "ANNAL_LOG": "info", "NO_COLOR": "1"},
    )
    found = {}
    seen = []

    def read_log():
        # Drains the server's log for the whole test, so it never blocks on the pipe.
        for line in proc.stderr:
            seen.append(line)
            match = re.search(r"addr=(\S+)", line)
            if match and "listening" in line and "addr" not in found:
                found["addr"] = match.group(1)

    threading.Thread(target=read_log, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while "addr" not in found:
            assert proc.poll() is None, "the server exited: " + "".join(seen)
            assert time.monotonic() < deadline, "the server never said where it listens: " + "".join(seen)
            time.sleep(0.01)
        client = Client(f"http://{found['addr']}", actor="pytest")
        while not client.ready():
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.01)
        yield client, proc, tmp_path
    finally:
        proc.kill()
        proc.wait()
