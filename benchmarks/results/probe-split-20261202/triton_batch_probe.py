"""Run from the repository root: PYTHONPATH=. .venv/bin/python <this file> 8,16

Average batch Triton forms when driven directly (gRPC, one text a request), per concurrency."""
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import tritonclient.http as th

from distill.data import load_frame
from loadtests import bench_overhead as bo
from serving.triton.repo_view import make_view
from serving.triton.server import TritonServer

texts = load_frame().sample(2000, random_state=0).text.str.replace("\r", " ").tolist()
view = Path(tempfile.mkdtemp(prefix="probe-triton-"))
make_view(Path("model_repository"), "sentiment", "1", view)
server = TritonServer(view, log_dir=view)
def counts(c):
    s = c.get_inference_statistics("sentiment")["model_stats"][0]
    return s["inference_count"], s["execution_count"]
try:
    server.start(timeout=300)
    server.load("sentiment", timeout=300)
    cl = th.InferenceServerClient(server.http_url)
    for conc in [int(x) for x in sys.argv[1].split(",")]:
        i0, e0 = counts(cl)
        pts = asyncio.run(bo._grpc_sweep("triton", server.grpc_url, "sentiment", "1", texts, [conc], 10.0, 2.0))
        i1, e1 = counts(cl)
        print(json.dumps({"c": conc, "texts_per_s": round(pts[0].throughput, 1) if hasattr(pts[0], "throughput") else str(pts[0]),
                          "avg_batch": round((i1 - i0) / max(1, e1 - e0), 2), "execs": e1 - e0, "load": os.getloadavg()[0]}), flush=True)
finally:
    server.stop()
    shutil.rmtree(view, ignore_errors=True)
