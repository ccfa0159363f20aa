"""Realtime latency on a Triton that a batch job also uses, by the job's call size and calls in flight.

usage: probe.py REPO TEXTS_PER_CALL IN_FLIGHT [SECONDS]

Triton direct on version 1 of REPO (its shipped config). IN_FLIGHT batch workers each keep one call
of TEXTS_PER_CALL corpus texts in flight for SECONDS (default 25); one realtime client sends one
text, then pauses 50 ms, from 3 s in until 1 s before the end. Prints one JSON line: the realtime
p50/p99 and the batch texts/s. A probe, not a benchmark: see README.md for how it was run.
"""
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

REPO, B, WORKERS = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
SECONDS = float(sys.argv[4]) if len(sys.argv) > 4 else 25.0
TEXTS = load_frame().sample(3000, random_state=0).text.str.replace("\r", " ").tolist()


def inputs(ts: list[str]) -> list:
    arr = np.array([t.encode() for t in ts], dtype=np.object_).reshape(len(ts), 1)
    i = grpcclient.InferInput("TEXT", list(arr.shape), "BYTES")
    i.set_data_from_numpy(arr)
    return [i]


async def main(url: str) -> tuple[list[float], int]:
    c = aio.InferenceServerClient(url)
    stop = time.monotonic() + SECONDS
    lat: list[float] = []
    done = 0

    async def batch_worker(k: int) -> None:
        nonlocal done
        j = k
        while time.monotonic() < stop:
            start = j * B % 2900
            await c.infer("sentiment", inputs(TEXTS[start: start + B]), model_version="1")
            done += B
            j += WORKERS

    async def realtime() -> None:
        i = 0
        await asyncio.sleep(3)
        while time.monotonic() < stop - 1:
            t0 = time.perf_counter()
            await c.infer("sentiment", inputs([TEXTS[i % 3000]]), model_version="1")
            lat.append((time.perf_counter() - t0) * 1000)
            i += 1
            await asyncio.sleep(0.05)

    await asyncio.gather(*(batch_worker(k) for k in range(WORKERS)), realtime())
    await c.close()
    return lat, done


view = Path(tempfile.mkdtemp(prefix="probe-yield-"))
make_view(REPO, "sentiment", "1", view)
server = TritonServer(view, log_dir=view)
try:
    server.start(timeout=300)
    server.load("sentiment", timeout=300)
    lat, done = asyncio.run(main(server.grpc_url))
    print(json.dumps({"texts_per_call": B, "in_flight": WORKERS, "rt_n": len(lat),
                      "rt_p50_ms": round(float(np.percentile(lat, 50)), 1),
                      "rt_p99_ms": round(float(np.percentile(lat, 99)), 1),
                      "batch_texts_per_s": round(done / SECONDS, 1), "load": round(os.getloadavg()[0], 2)}), flush=True)
finally:
    server.stop()
    shutil.rmtree(view, ignore_errors=True)
