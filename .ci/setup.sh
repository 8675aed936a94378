#!/usr/bin/env bash
# System packages the build needs: cmake and a C++ toolchain for the vendored FAISS
# (faiss-sys, feature `static`), BLAS/LAPACK to link it, python3-venv for the bench script.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq cmake g++ libopenblas-dev liblapack-dev pkg-config >/dev/null
rustup component add rustfmt clippy >/dev/null 2>&1 || true
