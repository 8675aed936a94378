"""A real `annal serve` for the client tests: the binary from ANNAL_BIN (default: the
workspace's debug build), on a free port, over a fresh data directory."""

import os
import pathlib
import re
import subprocess
import tempfile

import pytest

from annal import Client

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture()
def server():
    binary = os.environ.get("ANNAL_BIN", str(ROOT / "target" / "debug" / "annal"))
    data = tempfile.mkdtemp(prefix="annal-client-test-")
    proc = subprocess.Popen(
        [binary, "serve", "--data", data, "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "ANNAL_LOG": "info", "NO_COLOR": "1"},
    )
    address = None
    for line in proc.stderr:
        match = re.search(r"addr=(\S+)", line)
        if match and "listening" in line:
            address = match.group(1)
            break
    assert address, "the server never said where it listens"
    client = Client(f"http://{address}", actor="pytest")
    for _ in range(2000):
        if client.ready():
            break
    yield client, proc, data
    proc.kill()
    proc.wait()
