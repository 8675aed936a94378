#!/usr/bin/env python3
"""Benchmark a faiss-cpu wheel's HNSW on the shared TEXMEX data.

Builds IDMap2,HNSW{m} (inner product; the vectors are L2-normalized, so this
is cosine), adds the base vectors in one call, then answers the queries one
at a time and prints a single JSON line with build speed, latency and
recall@10. Run by faiss_wheels.sh once per wheel.
"""
import argparse
import json
import os
import sys
import time

import faiss
import numpy as np

DEFAULT_DATA = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
)


def read_vecs(path, dtype):
    """TEXMEX .fvecs/.ivecs: per vector an int32 dim, then dim values."""
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    rows = raw.reshape(-1, dim + 1)
    if not (rows[:, 0] == dim).all():
        sys.exit(f"{path}: inconsistent dimensions")
    return np.ascontiguousarray(rows[:, 1:]).view(dtype)


def set_hnsw_param(index, name, value):
    """Set an HNSW parameter through ParameterSpace; fall back to setting it
    directly, because ParameterSpace does not know every name (e.g. some
    versions ignore efConstruction) and a silent no-op would skew results."""
    hnsw = faiss.downcast_index(index.index).hnsw
    try:
        faiss.ParameterSpace().set_index_parameter(index, name, value)
    except RuntimeError:
        pass  # unknown parameter name in this version
    if getattr(hnsw, name) != value:
        setattr(hnsw, name, value)
    assert getattr(hnsw, name) == value, f"{name} did not take effect"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=80)
    p.add_argument("--ef-search", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, help="use only the first N base vectors")
    p.add_argument("--queries", type=int, help="use only the first N queries")
    a = p.parse_args()

    faiss.omp_set_num_threads(a.threads)

    base = read_vecs(os.path.join(a.data, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(a.data, "query.fvecs"), np.float32)
    if a.queries is not None:
        queries = queries[: a.queries]
    if a.limit is not None:
        base = base[: a.limit]
        # The shipped ground truth covers all 50,000 vectors; recompute it for
        # the subset. Stable sort keeps ties on the lower index, as the file does.
        scores = queries.astype(np.float64) @ base.astype(np.float64).T
        truth = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    else:
        truth = read_vecs(os.path.join(a.data, "groundtruth.ivecs"), np.int32)
        truth = truth[: len(queries), :10]
    n, d = base.shape
    nq = len(queries)

    index = faiss.index_factory(d, f"IDMap2,HNSW{a.m}", faiss.METRIC_INNER_PRODUCT)
    set_hnsw_param(index, "efConstruction", a.ef_construction)

    t0 = time.perf_counter()
    index.add_with_ids(base, np.arange(n, dtype=np.int64))
    build_s = time.perf_counter() - t0

    set_hnsw_param(index, "efSearch", a.ef_search)

    lat_ns = np.empty(nq, dtype=np.int64)
    found = np.empty((nq, a.k), dtype=np.int64)
    for i in range(nq):
        q = queries[i : i + 1]
        t = time.perf_counter_ns()
        _, ids = index.search(q, a.k)
        lat_ns[i] = time.perf_counter_ns() - t
        found[i] = ids[0]

    recall = float(
        np.mean([len(set(found[i, :10]) & set(truth[i])) / 10 for i in range(nq)])
    )

    get_opts = getattr(faiss, "get_compile_options", None)
    print(json.dumps({
        "impl": f"faiss-cpu {faiss.__version__}",
        "n": n,
        "dim": d,
        "m": a.m,
        "ef_construction": a.ef_construction,
        "ef_search": a.ef_search,
        "threads": a.threads,
        "build_s": round(build_s, 3),
        "build_vectors_per_s": round(n / build_s, 1),
        "queries": nq,
        "qps": round(nq / (lat_ns.sum() / 1e9), 1),
        "p50_us": round(float(np.percentile(lat_ns, 50)) / 1e3, 1),
        "p99_us": round(float(np.percentile(lat_ns, 99)) / 1e3, 1),
        "recall_at_10": round(recall, 4),
        # Which SIMD build the loader picked (generic / AVX2 / AVX512 ...).
        "compile_options": get_opts() if get_opts else None,
    }))


if __name__ == "__main__":
    main()
