#!/usr/bin/env bash
# Run faiss_wheels.py against two faiss-cpu wheels: the pinned 1.12.0 and the
# newest on PyPI. Each gets its own venv under benches/.venv/ (gitignored),
# reused on later runs. Extra arguments go to faiss_wheels.py unchanged, e.g.
#   bash benches/faiss_wheels.sh --limit 10000 --queries 200
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venvs="$here/.venv"

if ! python3 -m venv --help >/dev/null 2>&1; then
    echo "error: 'python3 -m venv' is unavailable (on Debian install python3-venv)" >&2
    exit 1
fi

# setup_venv NAME PIP_SPEC: create the venv unless it already imports faiss.
setup_venv() {
    local dir="$venvs/$1" spec="$2"
    if [[ -x "$dir/bin/python" ]] && "$dir/bin/python" -c 'import faiss, numpy' 2>/dev/null; then
        return
    fi
    echo "creating $dir with $spec" >&2
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --upgrade pip >&2
    "$dir/bin/python" -m pip install --quiet "$spec" numpy >&2
}

setup_venv faiss-1.12.0 "faiss-cpu==1.12.0"
setup_venv faiss-latest "faiss-cpu"

for name in faiss-1.12.0 faiss-latest; do
    "$venvs/$name/bin/python" "$here/faiss_wheels.py" "$@"
done
