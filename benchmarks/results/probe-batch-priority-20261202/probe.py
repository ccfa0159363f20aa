# ruff: noqa: E702 - a one-off probe, kept as it ran
"""Realtime latency on a Triton busy with batch calls (2 in flight of 64 texts), with and without priorities.

usage: probe.py REPO BATCH_PRIORITY  (0 = none)"""
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aio

from distill.data import load_frame
from serving.triton.repo_view import make_view
from serving.triton.server import TritonServer

repo, prio = Path(sys.argv[1]), int(sys.argv[2])
B = int(sys.argv[3]) if len(sys.argv) > 3 else 64
texts = load_frame().sample(3000, random_state=0).text.str.replace("\r", " ").tolist()
def inp(ts):
    arr = np.array([t.encode() for t in ts], dtype=np.object_).reshape(len(ts), 1)
    i = grpcclient.InferInput("TEXT", list(arr.shape), "BYTES"); i.set_data_from_numpy(arr); return i

async def main(url):
    c = aio.InferenceServerClient(url)
    stop = time.monotonic() + 25
    lat, batches = [], 0
    async def batch_worker(k):
        nonlocal batches
        j = k
        while time.monotonic() < stop:
            await c.infer("sentiment", [inp(texts[j*B % 2900: j*B % 2900 + B])], model_version="1", priority=prio)
            batches += 1; j += 2
    async def rt():
        i = 0
        await asyncio.sleep(3)
        while time.monotonic() < stop - 1:
            t0 = time.perf_counter()
            await c.infer("sentiment", [inp([texts[i % 3000]])], model_version="1")
            lat.append((time.perf_counter() - t0) * 1000); i += 1
            await asyncio.sleep(0.05)
    await asyncio.gather(batch_worker(0), batch_worker(1), rt())
    await c.close()
    return lat, batches

view = Path(tempfile.mkdtemp(prefix="probe-prio-"))
make_view(repo, "sentiment", "1", view)
server = TritonServer(view, log_dir=view)
try:
    server.start(timeout=300); server.load("sentiment", timeout=300)
    lat, batches = asyncio.run(main(server.grpc_url))
    print(json.dumps({"repo": str(repo), "batch_priority": prio, "rt_n": len(lat),
                      "rt_p50_ms": round(float(np.percentile(lat, 50)), 1), "rt_p99_ms": round(float(np.percentile(lat, 99)), 1),
                      "rt_max_ms": round(max(lat), 1), "batch_calls": batches, "B": B, "batch_texts_per_s": round(batches * B / 25, 1), "load": os.getloadavg()[0]}), flush=True)
finally:
    server.stop(); shutil.rmtree(view, ignore_errors=True)
