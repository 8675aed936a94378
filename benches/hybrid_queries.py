#!/usr/bin/env python3
"""Relevance-labelled query sets for the hybrid search benchmark (benches/hybrid.rs).

Two sets over the shared passages (../shared/data/passages.txt, base vector i is
line i+1), written as one JSON file:

* ``exact``: exact-term queries. A rare token of a passage (in 1..MAX_DF passages)
  is the query; the relevant passages are every passage holding that token. Tokens
  are split as annal's default analyzer splits them (tantivy's simple tokenizer:
  runs of letters and digits, lowercased), so "holding" means the same thing to the
  labels and to the index. A token is kept only if no other word of the corpus has
  its English (Snowball/Porter2) stem: then stemming, which the index does, cannot
  make a passage match that the labels call irrelevant, or the reverse. The query is
  the token as the passage spells it (``PYTHONHASHSEED``, ``getpreferredencoding``).
* ``paraphrase``: the shared held-out queries (queries.txt) with their relevant
  passages the 10 nearest by exact distance (groundtruth.ivecs): sentences that
  share meaning with their answers but seldom their words.

Usage: python3 benches/hybrid_queries.py [--data ../shared/data] [--out FILE]
       [--count 1000] [--seed 7]
Needs the PyPI package snowballstemmer (the Snowball stemmers tantivy's
rust-stemmers compiles from).
"""

import argparse
import json
import random
import re
import struct
import sys
from collections import defaultdict
from pathlib import Path

import snowballstemmer

MAX_DF = 5
MIN_LEN = 5
# The index drops longer tokens (tantivy's RemoveLongFilter at annal's TERM_BYTES_MAX).
MAX_TERM_BYTES = 40
# Runs of letters and digits: tantivy's SimpleTokenizer splits at every char that is
# not char::is_alphanumeric.
TOKEN = re.compile(r"[^\W_]+")


def tokens(text):
    return TOKEN.findall(text)


def read_ivecs(path):
    data = Path(path).read_bytes()
    out, at = [], 0
    while at < len(data):
        (n,) = struct.unpack_from("<i", data, at)
        out.append(list(struct.unpack_from(f"<{n}i", data, at + 4)))
        at += 4 + 4 * n
    return out


def exact_queries(passages, count, seed):
    stem = snowballstemmer.stemmer("english").stemWord
    postings = defaultdict(set)  # lowercased token -> passages holding it
    spelled = {}  # lowercased token -> (passage, spelling) of its first occurrence
    for i, text in enumerate(passages):
        for t in tokens(text):
            low = t.lower()
            postings[low].add(i)
            spelled.setdefault(low, (i, t))
    words_of_stem = defaultdict(set)
    for low in postings:
        words_of_stem[stem(low)].add(low)
    candidates = sorted(
        low
        for low, holders in postings.items()
        if 1 <= len(holders) <= MAX_DF
        and len(low) >= MIN_LEN
        and len(low.encode()) < MAX_TERM_BYTES
        and low.isascii()
        and not low.isdigit()
        and len(words_of_stem[stem(low)]) == 1
    )
    rng = random.Random(seed)
    rng.shuffle(candidates)
    queries = []
    for low in candidates[:count]:
        _, spelling = spelled[low]
        queries.append({"text": spelling, "relevant": sorted(postings[low])})
    return queries, len(candidates)


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(here.parent.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(here.parent / "target" / "hybrid-queries.json"))
    ap.add_argument("--count", type=int, default=1000, help="queries per set")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    data = Path(args.data)
    # Split at "\n" only, as the benchmark does: line i+1 is base vector i.
    with open(data / "passages.txt", encoding="utf-8", newline="") as f:
        passages = f.read().split("\n")
    if passages and passages[-1] == "":
        passages.pop()
    with open(data / "queries.txt", encoding="utf-8", newline="") as f:
        queries = f.read().split("\n")
    if queries and queries[-1] == "":
        queries.pop()
    truth = read_ivecs(data / "groundtruth.ivecs")
    exact, pool = exact_queries(passages, args.count, args.seed)
    paraphrase = [{"text": q, "relevant": truth[i][:10]} for i, q in enumerate(queries[: args.count])]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "passages": len(passages),
                "seed": args.seed,
                "max_df": MAX_DF,
                "exact_pool": pool,
                "exact": exact,
                "paraphrase": paraphrase,
            }
        )
    )
    print(
        f"{out}: {len(exact)} exact-term queries (of {pool} candidate tokens), "
        f"{len(paraphrase)} paraphrase queries over {len(passages)} passages",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
