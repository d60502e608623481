#!/usr/bin/env python3
"""Records the decoder tokenizer's ids for a fixed prompt set, independently of Sousuo.

Reads the vocabulary and merges from the GGUF file with the `gguf` package and builds the
tokenizer with Hugging Face's Python `tokenizers`, configured as SmolLM2's own tokenizer.json is
(one-digit split, then GPT-2 byte level; control tokens special). Sousuo's Rust build must give
the same ids: decoder/tests/decoder.rs compares them.

    pip install gguf tokenizers
    python3 scripts/decoder_tokenizer_ids.py ~/.cache/sousuo/models/SmolLM2-135M-Instruct/*.Q4_1.gguf \
        > decoder/tests/fixtures/decoder_tokens.json
"""
import json
import sys

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

PROMPTS = [
    "What is BM25, and how does it rank documents?",
    "Hybrid search fuses keyword and vector results: 0.7229 nDCG@10 on 300 queries.",
    "Café, naïve, façade, São Paulo, Zürich — accents survive.",
    "向量检索把文本变成向量，再按余弦相似度排序。",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{v:?}\");\n}",
    "Emoji 🔍🤖🚀 and flags 🇨🇳 in a query 😀",
    "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n",
    "  leading spaces, tabs\tand\nnew lines  ",
]


def field(reader, name):
    return reader.fields[name].contents()


def main():
    reader = gguf.GGUFReader(sys.argv[1])
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
    types = field(reader, "tokenizer.ggml.token_type")
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True) for t, ty in zip(tokens, types) if ty == 3])
    out = [{"text": p, "ids": tok.encode(p, add_special_tokens=False).ids} for p in PROMPTS]
    json.dump({"model": "SmolLM2-135M-Instruct", "cases": out}, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()
