#!/usr/bin/env bash
# The project's checks, in the order a reviewer wants them: format, lints, every target
# builds (fuzz targets and benches included, so they cannot rot), then the tests, then
# the Python client's tests against a real server.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-off build: incremental state would only take disk.
export CARGO_INCREMENTAL=0
cargo fmt --all --check
# No file of either crate imports one that imports it back (docs/ARCHITECTURE.md).
python3 scripts/import-cycles.py engine/src
python3 scripts/import-cycles.py server/src
# Everything in the release profile: FAISS (C++, built by faiss-sys through cmake) is
# compiled once, and README's run command (`cargo run --release --bin annal`, features
# unified over the workspace as here) reuses this build instead of compiling it again.
cargo clippy --release --workspace --all-targets -- -D warnings
cargo build --release --workspace --all-targets
cargo test --release --workspace
# The Python client against a real server (the release binary built above), in a virtual
# environment of its own under target/.
# With the LangChain and LlamaIndex extras: their tests must run, not skip
# (ANNAL_INTEGRATIONS=required).
python3 -m venv target/venv-client
target/venv-client/bin/pip install -q -e 'clients/python[langchain,llamaindex,test]'
ANNAL_INTEGRATIONS=required ANNAL_BIN="$PWD/target/release/annal" target/venv-client/bin/pytest -q clients/python/tests
