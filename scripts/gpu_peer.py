#!/usr/bin/env python3
"""The GPU peer for `sousuo bench encode --device cuda --random-weights`: Hugging Face
transformers' BertModel in fp16 with the same shape and random weights, plus mean pooling and
L2 normalisation, timed at the same sequence lengths and batch sizes. Prints one JSON object.

Needs PyTorch with CUDA and transformers (no weights file, no network)."""
import argparse
import json
import time

import torch
from transformers import BertConfig, BertModel


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--intermediate", type=int, default=1536)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--lengths", default="128,256,512")
    p.add_argument("--batch-sizes", default="16,64,256")
    p.add_argument("--seconds", type=float, default=2.0)
    a = p.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    config = BertConfig(
        vocab_size=a.vocab, hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
        intermediate_size=a.intermediate, max_position_embeddings=max(lengths), hidden_act="gelu",
    )
    torch.manual_seed(42)
    model = BertModel(config, add_pooling_layer=False).half().cuda().eval()
    runs = []
    for length in lengths:
        for batch in [int(x) for x in a.batch_sizes.split(",")]:
            ids = torch.randint(0, a.vocab, (batch, length), device="cuda")
            mask = torch.ones_like(ids)

            def step():
                out = model(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).to(out.dtype)
                pooled = (out * m).sum(1) / m.sum(1).clamp(min=1)
                return torch.nn.functional.normalize(pooled.float(), dim=-1)

            with torch.inference_mode():
                step()
                torch.cuda.synchronize()
                start, n = time.perf_counter(), 0
                while n == 0 or time.perf_counter() - start < a.seconds:
                    step()
                    n += 1
                torch.cuda.synchronize()
                secs = time.perf_counter() - start
            docs = n * batch / secs
            runs.append({"length": length, "batch": batch, "docs_per_s": docs, "tokens_per_s": docs * length})
            print(f"peer length {length:>4} batch {batch:>4} {docs:>10.1f} docs/s", flush=True)
    print(json.dumps({"peer": "transformers BertModel fp16 + mean pooling", "torch": torch.__version__,
                      "gpu": torch.cuda.get_device_name(0), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
