"""Does a Triton statistics read once a second slow the model? One client, 20-text calls back to back,
with and without a background get_inference_statistics every second; 3 rounds, order alternated.

    PYTHONPATH=. .venv/bin/python benchmarks/results/probe-stats-cost-20261202/probe.py
"""

import asyncio
import random
import tempfile
import time
from pathlib import Path

import tritonclient.grpc.aio as grpcclient

from loadtests import corpus
from serving.transport.triton_grpc import triton_infer
from serving.triton.repo_view import make_view
from serving.triton.server import TritonServer

work = Path(tempfile.mkdtemp())
view = make_view(Path("model_repository"), "sentiment", "1", work / "repo")
texts = corpus.load_texts()[:2000]


async def run(url: str, stats_every: float, seconds: float = 12.0) -> tuple[float, list[float]]:
    client = grpcclient.InferenceServerClient(url)
    rng, done, reads, tasks = random.Random(0), 0, [], []
    t0 = time.perf_counter()
    due = t0

    async def read() -> None:
        t = time.perf_counter()
        await client.get_inference_statistics("sentiment", "1", as_json=True)
        reads.append((time.perf_counter() - t) * 1000)

    while time.perf_counter() - t0 < seconds:
        if stats_every and time.perf_counter() >= due:
            tasks.append(asyncio.ensure_future(read()))
            due += stats_every
        await triton_infer(client, "sentiment", "1", rng.sample(texts, 20))
        done += 20
    await asyncio.gather(*tasks)
    return done / (time.perf_counter() - t0), sorted(reads)


async def main(url: str) -> None:
    await run(url, 0, 3)  # warm-up
    for r in range(3):
        for mode in ((0, 1.0) if r % 2 == 0 else (1.0, 0)):
            rate, reads = await run(url, mode)
            p50 = reads[len(reads) // 2] if reads else None
            print(f"stats_every={mode} texts/s={rate:.1f} stats ms p50/max={(p50, max(reads) if reads else None)}",
                  flush=True)


with TritonServer(view, log_dir=work) as srv:
    srv.load("sentiment")
    asyncio.run(main(srv.grpc_url))
