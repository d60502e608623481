"""faiss IndexHNSWFlat on the vectors `sousuo bench hnsw --export` wrote (see scripts/hnsw-peer)."""
import argparse
import os
import time

import faiss
import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef", default="16,32,64,128,256")
    p.add_argument("--k", type=int, default=10)
    a = p.parse_args()
    base = np.load(os.path.join(a.dir, "base.npy")).astype(np.float32)
    queries = np.load(os.path.join(a.dir, "queries.npy")).astype(np.float32)
    exact = faiss.IndexFlatIP(base.shape[1])
    exact.add(base)
    _, truth = exact.search(queries, a.k)
    index = faiss.IndexHNSWFlat(base.shape[1], a.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = a.ef_construction
    start = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - start
    print(f"faiss {faiss.__version__} IndexHNSWFlat: {len(base)} points, M {a.m}, ef_construction "
          f"{a.ef_construction}, built in {build:.1f} s ({faiss.omp_get_max_threads()} threads)")
    faiss.omp_set_num_threads(1)
    print(f"{'ef':>5} {'recall@' + str(a.k):>10} {'queries/s (1)':>14} {'ms/query':>12}")
    for ef in [int(x) for x in a.ef.split(",")]:
        index.hnsw.efSearch = max(ef, a.k)
        start = time.perf_counter()
        # One query at a time, as a search engine serves them.
        found = np.vstack([index.search(queries[i:i + 1], a.k)[1] for i in range(len(queries))])
        secs = time.perf_counter() - start
        recall = np.mean([len(set(f) & set(t)) / a.k for f, t in zip(found, truth)])
        print(f"{ef:>5} {recall:>10.4f} {len(queries) / secs:>14.0f} {secs * 1000 / len(queries):>12.3f}")


if __name__ == "__main__":
    main()
