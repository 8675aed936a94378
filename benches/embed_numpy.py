"""all-MiniLM-L6-v2 in plain numpy: the sentence-transformers-free path a Python user
would take (Hugging Face `tokenizers` + `safetensors` + numpy, whose matrix products run
in OpenBLAS on every core). The reference beside annal's local embedder in
`benches/embed.rs`. Prints JSON: sentences/s, and the worst cosine to the stored base
vectors (a check that it computes the same thing).

python benches/embed_numpy.py MODEL_DIR DATA_DIR N
"""

import json
import sys
import time

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def gelu(x):
    from math import sqrt

    # BERT's exact GELU, through erf.
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)))


def erf(x):
    # Abramowitz-Stegun 7.1.26 is too coarse for 1e-4 cosines; use numpy's vectorised
    # math.erf through frompyfunc only if scipy is absent.
    try:
        from scipy.special import erf as scipy_erf

        return scipy_erf(x)
    except ImportError:
        import math

        return np.vectorize(math.erf, otypes=[np.float32])(x)


def layer_norm(x, g, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


class MiniLM:
    def __init__(self, model_dir):
        self.w = load_file(f"{model_dir}/model.safetensors")
        self.prefix = "bert." if "bert.embeddings.word_embeddings.weight" in self.w else ""
        self.tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
        self.tok.enable_truncation(256)
        self.tok.enable_padding()
        self.heads = 12

    def p(self, name):
        return self.w[self.prefix + name]

    def embed(self, texts):
        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc])
        types = np.array([e.type_ids for e in enc])
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        b, t = ids.shape
        x = (
            self.p("embeddings.word_embeddings.weight")[ids]
            + self.p("embeddings.position_embeddings.weight")[np.arange(t)][None]
            + self.p("embeddings.token_type_embeddings.weight")[types]
        )
        x = layer_norm(x, self.p("embeddings.LayerNorm.weight"), self.p("embeddings.LayerNorm.bias"))
        bias = (1.0 - mask)[:, None, None, :] * np.finfo(np.float32).min
        hd = x.shape[-1] // self.heads
        for layer in range(6):
            a = f"encoder.layer.{layer}."

            def lin(h, name):
                return h @ self.p(a + name + ".weight").T + self.p(a + name + ".bias")

            q, k, v = (
                lin(x, f"attention.self.{n}").reshape(b, t, self.heads, hd).transpose(0, 2, 1, 3)
                for n in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(b, t, -1)
            x = layer_norm(
                lin(ctx, "attention.output.dense") + x,
                self.p(a + "attention.output.LayerNorm.weight"),
                self.p(a + "attention.output.LayerNorm.bias"),
            )
            h = gelu(lin(x, "intermediate.dense"))
            x = layer_norm(lin(h, "output.dense") + x, self.p(a + "output.LayerNorm.weight"), self.p(a + "output.LayerNorm.bias"))
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main():
    model_dir, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(f"{data}/passages.txt") as f:
        lines = [next(f).rstrip("\n") for _ in range(n)]
    raw = np.fromfile(f"{data}/base.fvecs", dtype="<i4", count=n * 385)
    base = raw.reshape(n, 385)[:, 1:].view("<f4")
    model = MiniLM(model_dir)
    model.embed(lines[:16])  # warm-up
    # The same batching as annal's embedder: longest first, 16 at a time.
    order = sorted(range(n), key=lambda i: -len(lines[i]))
    out = np.zeros((n, 384), dtype=np.float32)
    t = time.perf_counter()
    for s in range(0, n, 16):
        chunk = order[s:s + 16]
        out[chunk] = model.embed([lines[i] for i in chunk])
    elapsed = time.perf_counter() - t
    worst = float((out * base).sum(1).min())
    print(json.dumps({"sentences": n, "per_s": n / elapsed, "worst_cosine": worst}))


if __name__ == "__main__":
    main()
