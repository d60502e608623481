"""Writes llama3-tiny.gguf, qwen2-tiny.gguf and qwen3-tiny.gguf into DIR: each family's real
tokenizer (tokenizer.json, tokenizer_config.json from TOKENIZERS/<family>; the Qwen 2 file takes
Qwen 3's, the same byte-level BPE) as llama.cpp's converter puts it into GGUF metadata, and tiny
random weights (seeded) of the family's architecture: Qwen 2's biases on Q, K and V, Qwen 3's
per-head query and key norms with heads wider than DIM / HEADS (as Qwen 3's own are).

Usage: tiny_gguf.py TOKENIZERS DIR   (see scripts/test-data/tiny-gguf)
"""

import json
import os
import sys

import gguf
import numpy as np

DIM, HEADS, KV_HEADS, FFN, LAYERS, CONTEXT = 64, 4, 2, 128, 2, 512


def tokenizer(path, writer, pre):
    tj = json.load(open(os.path.join(path, "tokenizer.json"), encoding="utf-8"))
    config = json.load(open(os.path.join(path, "tokenizer_config.json"), encoding="utf-8"))
    vocab, added = tj["model"]["vocab"], tj["added_tokens"]
    n = max(list(vocab.values()) + [a["id"] for a in added]) + 1
    tokens, types = [""] * n, [gguf.TokenType.NORMAL] * n
    for t, i in vocab.items():
        tokens[i] = t
    for a in added:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED
    for i, t in enumerate(tokens):
        if t == "":
            tokens[i], types[i] = f"[PAD{i}]", gguf.TokenType.UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tokens.index(config["eos_token"]))
    if config.get("bos_token"):
        writer.add_bos_token_id(tokens.index(config["bos_token"]))
    writer.add_chat_template(config["chat_template"])
    return n


def write(tokenizers, out, name, family, arch, pre, seed):
    rng = np.random.default_rng(seed)
    path = os.path.join(out, f"{name}-tiny.gguf")
    part = f"{path}.{os.getpid()}.part"  # tests may run this twice at once
    w = gguf.GGUFWriter(part, arch)
    w.add_name(f"{family} tiny random (Sousuo test data)")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(DIM)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(500000.0)
    head = 32 if arch == "qwen3" else DIM // HEADS
    if arch == "qwen3":
        w.add_key_length(head)
        w.add_value_length(head)
    w.add_rope_dimension_count(head)
    vocab = tokenizer(os.path.join(tokenizers, family), w, pre)

    def t(name, *shape):
        # GGUF lists dimensions innermost first; numpy's shape is (rows, columns).
        w.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))

    def norm(name, n):
        w.add_tensor(name, (1.0 + rng.standard_normal(n) * 0.2).astype(np.float32))

    t("token_embd.weight", vocab, DIM)
    norm("output_norm.weight", DIM)
    q, kv = HEADS * head, KV_HEADS * head
    for i in range(LAYERS):
        norm(f"blk.{i}.attn_norm.weight", DIM)
        norm(f"blk.{i}.ffn_norm.weight", DIM)
        t(f"blk.{i}.attn_q.weight", q, DIM)
        t(f"blk.{i}.attn_k.weight", kv, DIM)
        t(f"blk.{i}.attn_v.weight", kv, DIM)
        t(f"blk.{i}.attn_output.weight", DIM, q)
        t(f"blk.{i}.ffn_gate.weight", FFN, DIM)
        t(f"blk.{i}.ffn_up.weight", FFN, DIM)
        t(f"blk.{i}.ffn_down.weight", DIM, FFN)
        if arch == "qwen2":
            # Qwen 2 adds biases to the query, key and value products.
            t(f"blk.{i}.attn_q.bias", q)
            t(f"blk.{i}.attn_k.bias", kv)
            t(f"blk.{i}.attn_v.bias", kv)
        if arch == "qwen3":
            # Qwen 3 normalises queries and keys per head.
            norm(f"blk.{i}.attn_q_norm.weight", head)
            norm(f"blk.{i}.attn_k_norm.weight", head)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(part, path)  # whole or absent


if __name__ == "__main__":
    tokenizers, out = sys.argv[1], sys.argv[2]
    write(tokenizers, out, "llama3", "llama3", "llama", "llama-bpe", 7)
    write(tokenizers, out, "qwen2", "qwen3", "qwen2", "qwen2", 9)
    write(tokenizers, out, "qwen3", "qwen3", "qwen3", "qwen2", 8)
