"""OpenAI's official Python client against a running Sousuo (tests/web.rs starts it).

Usage: openai_client.py BASE_URL COLLECTION GOLDEN_JSON
The collection holds the sample corpus's hnsw.md and bm25.md; GOLDEN_JSON is the encoder's
reference embeddings (sentence-transformers, encoder/tests/fixtures/golden.json).
"""

import json
import math
import sys

import openai
from openai import OpenAI

base, collection, golden_path = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base + "/v1", api_key="no-key-needed-on-loopback", max_retries=0)


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


# Models: the collections.
ids = [m.id for m in client.models.list()]
assert collection in ids, ids

# Chat, plain: the checked answer, its sources in the text and in the `sousuo` extra field.
messages = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What does the BM25 parameter b control?"},
]
r = client.chat.completions.create(model=collection, messages=messages)
text = r.choices[0].message.content
assert "[1]" in text and "Sources:" in text, text
assert r.choices[0].finish_reason == "stop", r.choices[0].finish_reason
sources = r.model_extra["sousuo"]["sources"]
assert any(s["uri"].endswith("bm25.md") for s in sources), sources
again = client.chat.completions.create(model=collection, messages=messages)
assert again.id != r.id, "completion ids are unique"

# Chat, streamed: deltas that add up to the answer; the last chunk ends it and carries sources.
parts, last = [], None
for chunk in client.chat.completions.create(model=collection, messages=messages, stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    last = chunk
streamed = "".join(parts)
assert "Sources:" in streamed and "bm25.md" in streamed, streamed
assert last.choices[0].finish_reason == "stop", last
assert last.model_extra["sousuo"]["sources"], last.model_extra

# Embeddings: the client asks for base64 by default and decodes it; float on request.
golden = json.load(open(golden_path))
ref = golden["sentences"][0]
e = client.embeddings.create(model=collection, input=[ref["text"], "HNSW graph search", "BM25 term weighting"])
assert [d.index for d in e.data] == [0, 1, 2]
v = e.data[0].embedding
assert len(v) == len(ref["embedding"]), len(v)
assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-3, "unit length"
assert cos(v, ref["embedding"]) > 0.99, cos(v, ref["embedding"])
assert e.usage.prompt_tokens > 0
f = client.embeddings.create(model=golden["model"], input=ref["text"], encoding_format="float")
assert cos(f.data[0].embedding, v) > 0.9999, "the encoder's name gives the same vectors"

# Errors in OpenAI's shape, raised as the client's typed errors.
try:
    client.embeddings.create(model="no-such-collection", input="x")
    raise AssertionError("an unknown model must fail")
except openai.NotFoundError as err:
    assert err.code == "model_not_found", err.body
try:
    client.chat.completions.create(model=collection, messages=[{"role": "assistant", "content": "hi"}])
    raise AssertionError("a chat without a user message must fail")
except openai.BadRequestError as err:
    assert err.body["type"] == "invalid_request_error" and err.body["code"] == "bad_messages", err.body

print("openai client: ok")
