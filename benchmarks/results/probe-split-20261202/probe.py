"""Item 3 probe: one forward of 16 on 2 intra-op threads vs two forwards of 8 on two Python threads x 1 intra-op thread."""
# Set 1 (first 9 lines of runs.jsonl) used 640 texts (sample(640), range(0, 640, 16)); set 2, 1,280 as below.
# Run from the repository root: .venv/bin/python benchmarks/results/probe-split-20261202/probe.py one|split|splitsorted
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, "model_repository/sentiment")
import model as m
import torch

from distill.data import load_frame

texts = load_frame().sample(1280, random_state=1).text.str.replace("\r", " ").tolist()
batches = [texts[i:i+16] for i in range(0, 1280, 16)]
mode = sys.argv[1]
threads = 2 if mode == "one" else 1
clf = m.Classifier("model_repository/sentiment/1", threads=threads)
torch.set_num_threads(threads)
pool = ThreadPoolExecutor(2)

def run_one(b):
    return clf.predict(b)

def run_split(b):
    enc = dict(clf.tokenizer(b, truncation=True, max_length=clf.max_len, padding=True, return_tensors="np"))
    h = len(b) // 2
    parts = [{k: v[:h] for k, v in enc.items()}, {k: v[h:] for k, v in enc.items()}]
    outs = list(pool.map(clf.runner.logits, parts))
    return np.concatenate(outs)

def run_split_sorted(b):
    order = sorted(range(len(b)), key=lambda i: len(b[i]))
    h = len(b) // 2
    halves = [[b[i] for i in order[:h]], [b[i] for i in order[h:]]]
    def go(ts):
        enc = dict(clf.tokenizer(ts, truncation=True, max_length=clf.max_len, padding=True, return_tensors="np"))
        return clf.runner.logits(enc)
    outs = list(pool.map(go, halves))
    return np.concatenate(outs)

fn = {"one": run_one, "split": run_split, "splitsorted": run_split_sorted}[mode]
for b in batches[:5]:
    fn(b)
t0 = time.perf_counter()
for b in batches:
    fn(b)
dt = time.perf_counter() - t0
t1 = []
for t in texts[:60]:
    s = time.perf_counter()
    clf.predict([t])
    t1.append(time.perf_counter() - s)
print(json.dumps({"mode": mode, "texts_per_s": round(1280 / dt, 1), "b1_p50_ms": round(1000 * float(np.median(t1)), 2), "load": os.getloadavg()[0]}))
