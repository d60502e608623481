#!/usr/bin/env python3
"""Independent reference for the encoder: all-MiniLM-L6-v2 in plain numpy (float64).

Writes encoder/tests/fixtures/golden.json: the sentences, their token ids and the
sentence embeddings (mean pooling over the tokens, L2-normalised), which the Rust test
`encoder/tests/encoder.rs` compares against (cosine >= 0.9999).

No PyTorch: numpy, safetensors and tokenizers from PyPI only.
    python3 -m pip install numpy safetensors tokenizers
    python3 scripts/golden_encoder.py MODEL_DIR [OUT_JSON]
MODEL_DIR is the unpacked model (`sousuo models list` prints where it lives).
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

LONG = " ".join(
    f"Sentence {i} of a long paragraph about retrieval, ranking, embeddings and indexes,"
    " which keeps going well past what the model can read at once."
    for i in range(40)
)  # ~600 words: must be truncated at 256 tokens

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "The quick brown fox jumps over the lazy dog.",
    "Hybrid search fuses BM25 scores with dense vector similarity.",
    "What is the capital of France?",
    "Hello!!! ... ??? (really) -- [brackets] {braces} <tags> @#$%^&*",
    "C++ \"unclosed quote, AND OR NOT; x = y + 2 * (z - 1)",
    "Café déjà vu: naïve façade, jalapeño, Ångström, Straße.",
    "Les modèles de langue répondent aux questions en français.",
    "搜索引擎使用倒排索引和向量检索。",
    "我喜欢在晚上读书。",
    "Mixed 中文 and English text in one sentence.",
    "Emoji are text too 🙂🚀",
    "Vitamin D deficiency is associated with an increased risk of multiple sclerosis.",
    "Transformers use self-attention to relate every token to every other token.",
    "   leading and trailing spaces   ",
    "a",
    LONG,
    "",
]

MAX_LEN = 256


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def encode(ids, w, cfg):
    d = {k: v.astype(np.float64) for k, v in w.items() if v.dtype != np.int64}
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    hidden = cfg["hidden_size"]
    hd = hidden // heads
    n = len(ids)
    x = (
        d["embeddings.word_embeddings.weight"][ids]
        + d["embeddings.position_embeddings.weight"][:n]
        + d["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, d["embeddings.LayerNorm.weight"], d["embeddings.LayerNorm.bias"], eps)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(name, h):
            return h @ d[p + name + ".weight"].T + d[p + name + ".bias"]

        q = lin("attention.self.query", x).reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(n, heads, hd).transpose(1, 0, 2)
        att = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(hd))
        ctx = (att @ v).transpose(1, 0, 2).reshape(n, hidden)
        x = layer_norm(
            lin("attention.output.dense", ctx) + x,
            d[p + "attention.output.LayerNorm.weight"],
            d[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        h = gelu(lin("intermediate.dense", x))
        x = layer_norm(
            lin("output.dense", h) + x,
            d[p + "output.LayerNorm.weight"],
            d[p + "output.LayerNorm.bias"],
            eps,
        )
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    model_dir = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        here, "..", "encoder", "tests", "fixtures", "golden.json")
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_LEN)
    weights = load_file(os.path.join(model_dir, "model.safetensors"))
    rows = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        vec = encode(np.array(ids), weights, cfg)
        rows.append({"text": s, "ids": ids, "embedding": [round(float(v), 7) for v in vec]})
        print(f"{len(ids):4d} tokens  {s[:60]!r}", file=sys.stderr)
    with open(out, "w") as f:
        json.dump({"model": "all-MiniLM-L6-v2", "max_len": MAX_LEN, "sentences": rows}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
