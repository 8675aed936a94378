"""Chroma measured the way `benches/ingest_client.py` measures annal: the same shared
base vectors, batches of 1,000 through Chroma's own HTTP client into `chroma run`, then
the 1,000 shared queries as one batched query (k = 10, five rounds). Prints JSON.

Needs a virtual environment with `chromadb` (not part of CI):

    python3 -m venv target/venv-chroma && target/venv-chroma/bin/pip install chromadb numpy
    target/venv-chroma/bin/python benches/chroma_client.py ../shared/data

It starts `chroma run` (from the same environment) on a fresh directory and stops it.
The collection uses cosine space with M 32, construction_ef 80, search_ef 64: annal's
default configuration.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np


def fvecs(path):
    raw = np.fromfile(path, dtype="<i4")
    d = raw[0]
    return raw.reshape(-1, d + 1)[:, 1:].view("<f4").copy()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    import chromadb

    data = sys.argv[1]
    base = fvecs(f"{data}/base.fvecs")
    queries = fvecs(f"{data}/query.fvecs")
    port = free_port()
    chroma = pathlib.Path(sys.executable).parent / "chroma"
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [str(chroma), "run", "--path", directory, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client = chromadb.HttpClient(host="127.0.0.1", port=port)
                    client.heartbeat()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            collection = client.create_collection(
                "bench",
                configuration={"hnsw": {"space": "cosine", "max_neighbors": 32, "ef_construction": 80, "ef_search": 64}},
            )
            ids = [f"v{i}" for i in range(len(base))]
            out = {"vectors": len(base), "dimension": int(base.shape[1]), "batch": 1000,
                   "chromadb": chromadb.__version__}
            t = time.perf_counter()
            for start in range(0, len(base), 1000):
                collection.add(ids=ids[start:start + 1000], embeddings=base[start:start + 1000])
            out["add_per_s"] = len(base) / (time.perf_counter() - t)
            assert collection.count() == len(base)
            collection.query(query_embeddings=queries[:10], n_results=10)  # warm-up
            t = time.perf_counter()
            for _ in range(5):
                collection.query(query_embeddings=queries, n_results=10, include=["distances"])
            out["batched_search_q_per_s"] = 5 * len(queries) / (time.perf_counter() - t)
            print(json.dumps(out))
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
