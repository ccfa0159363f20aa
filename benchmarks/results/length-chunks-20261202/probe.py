"""In-process probe: model.py's Classifier on calls of N corpus texts, one padded pass (chunk 0)
against length-sorted passes (LENGTH_CHUNK_TOKENS 16, 32, 64). Shipped version 1 (traced graph),
2 torch threads; the same calls for every mode; modes rotated each round. One JSON line per
(round, mode, batch) in runs.jsonl. Run from the repository root on an idle machine:

    PYTHONPATH=. .venv/bin/python benchmarks/results/length-chunks-20261202/probe.py
"""
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, "model_repository/sentiment")
from model import Classifier  # noqa: E402

from loadtests import corpus  # noqa: E402

OUT = Path(__file__).with_name("runs.jsonl")
TEXTS_PER_POINT, ROUNDS, MODES, BATCHES = 256, 3, [0, 16, 32, 64], [1, 4, 8, 16, 32, 64]
texts = corpus.load_texts()
rng = random.Random(0)
calls = {n: [rng.sample(texts, n) for _ in range(TEXTS_PER_POINT // n)] for n in BATCHES}
clfs = {m: Classifier("model_repository/sentiment/1", threads=2, chunk_tokens=m) for m in MODES}
for clf in clfs.values():  # warm-up: every shape family once
    clf.predict(calls[64][0])
ref = {n: [clfs[0].predict(c)[0] for c in calls[n][:2]] for n in BATCHES}
with OUT.open("a") as f:
    for r in range(ROUNDS):
        order = MODES[r % len(MODES):] + MODES[:r % len(MODES)]
        for m in order:
            for n in BATCHES:
                load = os.getloadavg()[0]
                t = time.perf_counter()
                for c in calls[n]:
                    clfs[m].predict(c)
                s = time.perf_counter() - t
                diff = max(float(np.abs(clfs[m].predict(c)[0] - p).max()) for c, p in zip(calls[n][:2], ref[n], strict=True))
                row = {"round": r, "chunk_tokens": m, "batch": n, "texts_per_s": round(n * len(calls[n]) / s, 1),
                       "max_prob_diff_vs_chunk0": diff, "loadavg_1m": load,
                       "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                f.write(json.dumps(row) + "\n")
                print(row, flush=True)
