#!/usr/bin/env python3
"""Two retrieval sets in BEIR layout from two dictionaries (Debian's wordnet-base and
dict-gcide), for judging fusion on a domain other than the visible sets: a definition asked in
one dictionary's words, its word's entry found in the other's. Queries are worded away from the
documents (dense retrieval beats BM25 by 0.13-0.17), as on the held-out collections of issue 18.

  revdict   documents: 5,000 WordNet noun synsets (title: its words, text: its gloss);
            queries: 300 GCIDE (1913 Webster) definitions of nouns WordNet has one sense of.
  revdict2  documents: 5,000 GCIDE single-sense noun definitions (title: the word);
            queries: 300 WordNet glosses (definition part) of such nouns.

Usage: scripts/dictionary_sets.py OUT_DIR  (fetches the two .deb files with apt-get download;
seeded, so the same packages give the same sets). Standard library only.
"""
import json
import random
import re
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def fetch(work: Path) -> Path:
    """The two packages' files, unpacked under work/x."""
    subprocess.run(["apt-get", "download", "wordnet-base", "dict-gcide"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    for deb in work.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(work / "x")], check=True)
    return work / "x" / "usr" / "share"


def wordnet(share: Path):
    """Monosemous lower-case nouns (word -> synset offset) and every noun synset (words, gloss)."""
    mono = {}
    for line in open(share / "wordnet" / "index.noun", encoding="latin1"):
        if line.startswith(" "):
            continue
        f = line.split()
        if int(f[2]) == 1 and f[0].isalpha() and f[0].islower() and len(f[0]) >= 4:
            mono[f[0]] = f[-1]
    synsets = {}
    for line in open(share / "wordnet" / "data.noun", encoding="latin1"):
        if line.startswith(" "):
            continue
        head, gloss = line.split("|", 1)
        f = head.split()
        words = [re.sub(r"\(.*\)$", "", f[4 + 2 * i].replace("_", " ")) for i in range(int(f[3], 16))]
        synsets[f[0]] = (words, gloss.strip())
    return mono, synsets


def gcide(share: Path):
    """A function from a word to its one 1913 Webster noun definition (None when it has several
    noun entries or senses, only cross-references, or names itself)."""
    raw = (share / "dictd" / "gcide.dict.dz").read_bytes()
    data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw)

    def b64(s):
        n = 0
        for c in s:
            n = n * 64 + B64.index(c)
        return n

    index = {}
    for line in open(share / "dictd" / "gcide.index", encoding="utf8"):
        p = line.rstrip("\n").split("\t")
        if len(p) == 3:
            index.setdefault(p[0].lower(), []).append((b64(p[1]), b64(p[2])))

    def definition(word):
        found = []
        for off, length in index.get(word, []):
            text = data[off:off + length].decode("utf8", "replace")
            for entry in re.split(r"\n(?=\S)", text):
                header = entry.split("\n", 1)[0]
                if re.search(r"\\,? n\.", header) or ", n." in header:
                    found.append(entry)
        if len(found) != 1 or re.search(r"\n\s+2\. ", found[0]):
            return None
        entry = found[0]
        # The header and its etymology (brackets, possibly over several lines) go.
        if "[" in entry.split("\n", 1)[0]:
            depth, cut = 0, None
            for i, ch in enumerate(entry):
                depth += (ch == "[") - (ch == "]")
                if ch == "]" and depth == 0:
                    cut = i + 1
                    break
            body = entry[cut:] if cut else ""
        else:
            body = entry.split("\n", 1)[1] if "\n" in entry else ""
        parts = re.split(r"\[([^\]]{1,40})\]", body)
        if len(parts) < 2 or parts[1] != "1913 Webster":
            return None
        seg = re.sub(r"^\s*1\.\s*", "", parts[0].strip())
        seg = re.sub(r"^\([^)]*\)\s*", "", seg)
        seg = re.sub(r"--\S.*", "", seg, flags=re.S)
        seg = seg.replace("{", "").replace("}", "")
        seg = re.sub(r"\\[^\\]*\\", "", seg)
        seg = " ".join(seg.split())
        seg = re.sub(r"^[^.]{0,30}, n\.\s*", "", seg)
        seg = seg.split("; as,")[0]
        if "See " in seg or "Same as" in seg or word in seg.lower() or seg.startswith("Syn"):
            return None
        return seg

    return definition


def write(out: Path, docs, queries):
    """docs: (id, title, text); queries: (text, relevant doc id)."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w") as f:
        for i, title, text in docs:
            f.write(json.dumps({"_id": i, "title": title, "text": text}) + "\n")
    with open(out / "queries.jsonl", "w") as f, open(out / "qrels" / "test.tsv", "w") as q:
        q.write("query-id\tcorpus-id\tscore\n")
        for n, (text, doc) in enumerate(queries):
            f.write(json.dumps({"_id": f"q{n}", "text": text}) + "\n")
            q.write(f"q{n}\t{doc}\t1\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as work:
        share = fetch(Path(work))
        mono, synsets = wordnet(share)
        definition = gcide(share)

    # revdict: GCIDE definitions asked, WordNet synsets found.
    rng = random.Random(7)
    words = sorted(mono)
    rng.shuffle(words)
    queries, targets = [], []
    for w in words:
        d = definition(w)
        if mono[w] in synsets and mono[w] not in targets and d and 5 <= len(d.split()) <= 40:
            queries.append((d, mono[w]))
            targets.append(mono[w])
        if len(queries) == 300:
            break
    others = [o for o in synsets if o not in set(targets)]
    rng.shuffle(others)
    docs = [(o, ", ".join(synsets[o][0]), synsets[o][1]) for o in targets + others[:5000 - len(targets)]]
    write(out / "revdict", docs, queries)

    # revdict2: WordNet glosses asked, GCIDE definitions found.
    rng = random.Random(11)
    words = sorted(mono)
    rng.shuffle(words)
    defs, queries = {}, []
    for w in words:
        d = definition(w)
        if not d or not 5 <= len(d.split()) <= 60:
            continue
        defs[w] = d
        gloss = synsets.get(mono[w], ([], ""))[1].split(";")[0].strip()
        if len(queries) < 300 and len(gloss.split()) >= 4 and w not in gloss.lower():
            queries.append((gloss, w))
        if len(defs) >= 5000 and len(queries) >= 300:
            break
    write(out / "revdict2", [(w, w, d) for w, d in defs.items()], queries)
    print(f"{out}/revdict and {out}/revdict2: 5,000 documents and 300 queries each")


if __name__ == "__main__":
    main()
