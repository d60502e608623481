"""Writes decoder/tests/fixtures/family_tokens.json: token ids of a fixed prompt set by Hugging
Face's `tokenizers` and chat prompts rendered by Python's jinja2 the way `transformers` renders
them (trim_blocks, lstrip_blocks), for the Llama 3 and Qwen 3 tokenizer files that
scripts/test-data/fetch-tokenizers downloads. Run:
  python3 -m venv /tmp/fx && /tmp/fx/bin/pip install tokenizers==0.22.1 jinja2==3.1.6
  /tmp/fx/bin/python scripts/test-data/family-fixtures.py "$(scripts/test-data/fetch-tokenizers)"
"""
import json
import os
import sys

import jinja2
import jinja2.sandbox
from tokenizers import Tokenizer

TEXTS = [
    "Plain English, with numbers 1234567 and 3.14.",
    "It's what they'll say: don't!",
    "  leading spaces\n\nand\ttabs\r\n",
    "Crème brûlée à la façon de Zoë",
    "检索增强生成（RAG）很有用。",
    "<|im_start|>user\nhi<|im_end|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>",
    "emoji 🔍 and code `x += 1`",
]
MESSAGES = [
    {"role": "system", "content": "Answer from the sources."},
    {"role": "user", "content": "What is HNSW?"},
    {"role": "assistant", "content": " A graph index. "},
    {"role": "user", "content": "And its speed?"},
]


def render(template, bos, eos):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=MESSAGES, add_generation_prompt=True, bos_token=bos, eos_token=eos)


def main():
    root = sys.argv[1]
    out = {}
    for family in ["llama3", "qwen3"]:
        tok = Tokenizer.from_file(os.path.join(root, family, "tokenizer.json"))
        config = json.load(open(os.path.join(root, family, "tokenizer_config.json")))
        bos, eos = config.get("bos_token") or "", config.get("eos_token") or ""
        out[family] = {
            "cases": [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in TEXTS],
            "messages": MESSAGES,
            "prompt": render(config["chat_template"], bos, eos),
        }
    path = os.path.join(os.path.dirname(__file__), "../../decoder/tests/fixtures/family_tokens.json")
    with open(path, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
