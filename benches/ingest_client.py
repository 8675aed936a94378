"""The client half of `benches/ingest.rs`: load the shared base vectors into a running
server with the Python client, as a user would, and print the rates as JSON.

python benches/ingest_client.py URL DATA_DIR
"""

import json
import sys
import time

import numpy as np

from annal import Client


def fvecs(path):
    raw = np.fromfile(path, dtype="<i4")
    d = raw[0]
    return raw.reshape(-1, d + 1)[:, 1:].view("<f4").copy()


def main():
    url, data = sys.argv[1], sys.argv[2]
    base = fvecs(f"{data}/base.fvecs")
    ids = [f"v{i}" for i in range(len(base))]
    db = Client(url, actor="bench")
    out = {"vectors": len(base), "dimension": int(base.shape[1]), "batch": 1000}

    db.create_index("applied", dimension=base.shape[1])
    t = time.perf_counter()
    db.upsert("applied", ids, base, batch_size=1000, wait="applied")
    out["applied_per_s"] = len(base) / (time.perf_counter() - t)

    queries = fvecs(f"{data}/query.fvecs")
    db.search_batch("applied", queries[:10], k=10)  # warm-up
    t = time.perf_counter()
    for _ in range(5):
        db.search_batch("applied", queries, k=10)
    out["batched_search_q_per_s"] = 5 * len(queries) / (time.perf_counter() - t)

    db.create_index("durable", dimension=base.shape[1])
    t = time.perf_counter()
    last = db.upsert("durable", ids, base, batch_size=1000, wait="durable")
    acked = time.perf_counter() - t
    db.get_index("durable", min_seq=last["seq"])
    searchable = time.perf_counter() - t
    out["durable_ack_per_s"] = len(base) / acked
    out["durable_searchable_per_s"] = len(base) / searchable

    db.create_index("durable2", dimension=base.shape[1])
    t = time.perf_counter()
    last = db.upsert("durable2", ids, base, batch_size=1000, wait="durable", concurrency=2)
    acked = time.perf_counter() - t
    db.get_index("durable2", min_seq=last["seq"])
    out["durable_ack_2_per_s"] = len(base) / acked
    out["durable_searchable_2_per_s"] = len(base) / (time.perf_counter() - t)

    # Encoding alone (the client's share), for the record.
    t = time.perf_counter()
    import base64

    for row in base:
        base64.b64encode(row.tobytes())
    out["client_encode_per_s"] = len(base) / (time.perf_counter() - t)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
