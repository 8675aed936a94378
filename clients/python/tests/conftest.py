"""A real `annal serve` for the client tests: the binary from ANNAL_BIN (default: the
newer of the workspace's release and debug builds), on a free port, over a fresh data
directory."""

import os
import pathlib
import re
import subprocess
import threading
import time

import pytest

from annal import Client

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _start(tmp_path, args=(), env=None, token=None):
    # The newer of the release build (what .ci/test.sh builds) and the debug one.
    built = [b for b in (ROOT / "target" / p / "annal" for p in ("release", "debug")) if b.exists()]
    newest = max(built, key=lambda b: b.stat().st_mtime, default=ROOT / "target" / "debug" / "annal")
    binary = os.environ.get("ANNAL_BIN") or str(newest)
    proc = subprocess.Popen(
        [binary, "serve", "--data", str(tmp_path / "data"), "--listen", "127.0.0.1:0", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "ANNAL_LOG": "info", "NO_COLOR": "1", **(env or {})},
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
        client = Client(f"http://{found['addr']}", actor="pytest", token=token)
        while not client.ready():
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.01)
        yield client, proc, tmp_path
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture()
def server(tmp_path):
    yield from _start(tmp_path)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server for a module's tests (each works in indexes of its own)."""
    yield from _start(tmp_path_factory.mktemp("shared"))


def integration(module: str, extra: str):
    """Import `module` of an optional extra, or skip the calling test module saying how
    to install it; with ANNAL_INTEGRATIONS=required (CI) a missing one fails instead."""
    if os.environ.get("ANNAL_INTEGRATIONS") == "required":
        __import__(module)
        return
    pytest.importorskip(module, reason=f"pip install -e 'clients/python[{extra}]'")


WRITER_SECRET = "w-0123456789abcdef-pytest"
READER_SECRET = "r-fedcba9876543210-pytest"


@pytest.fixture()
def auth_server(tmp_path):
    """A server with a write token (`ingest`) and a read token (`dash`); the client
    holds the write token."""
    tokens = f"ingest:write:{WRITER_SECRET},dash:read:{READER_SECRET}"
    yield from _start(tmp_path, env={"ANNAL_AUTH_TOKENS": tokens}, token=WRITER_SECRET)
