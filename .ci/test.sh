#!/usr/bin/env bash
# The project's checks, in the order a reviewer wants them: format, lints, every target
# builds (fuzz targets and benches included, so they cannot rot), then the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace
