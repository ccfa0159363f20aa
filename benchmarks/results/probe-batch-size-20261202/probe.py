"""Texts/s of version 1 in-process, 2 torch threads, 1,024 corpus texts in calls of B (argv 1); any
second argument sorts the texts by length first. Run from the repository root. The first 9 lines of
runs.jsonl predate the sorted option (all unsorted)."""
import json
import os
import sys
import time

sys.path.insert(0, "model_repository/sentiment")
import model as m

from distill.data import load_frame

texts = load_frame().sample(2048, random_state=2).text.str.replace("\r", " ").tolist()
clf = m.Classifier("model_repository/sentiment/1", threads=2)
B = int(sys.argv[1])
if len(sys.argv) > 2:
    texts = sorted(texts[:1024], key=len) + texts[1024:]
clf.predict(texts[:B])
t0 = time.perf_counter()
for i in range(0, 1024, B):
    clf.predict(texts[i:i+B])
print(json.dumps({"B": B, "sorted": len(sys.argv) > 2, "texts_per_s": round(1024 / (time.perf_counter() - t0), 1), "load": os.getloadavg()[0]}))
