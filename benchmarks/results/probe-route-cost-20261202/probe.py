"""CPU per request of the ingress's FastAPI app, /v1/predict against OIP JSON infer, in-process.

The app as the ingress builds it (serving.http.app.build_app + attach), over the unit tests' fake
data plane (no Ray, no Triton: the transport answers at once), driven through httpx's ASGI
transport one request at a time. Measures process CPU time per request; uvicorn's HTTP parsing is
not included (the same for both routes). Rounds interleave the routes.

    .venv/bin/python benchmarks/results/probe-route-cost-20261202/probe.py > benchmarks/results/probe-route-cost-20261202/result.json
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time

import httpx

from serving.http.app import attach, build_app
from serving.http.deps import Services
from tests.unit.test_dataplane import FakeView, plane
from tests.unit.test_http_routes import FakeControl

TEXT = "the flight was late again and nobody at the desk could tell us anything useful"
ROUTES = {
    "v1": ("/v1/predict", {"model": "m", "inputs": [TEXT]}),
    "oip": ("/v2/models/m/versions/1/infer",
            {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [1, 1], "data": [TEXT]}]}),
}


async def per_request_us(client: httpx.AsyncClient, path: str, body: dict, n: int) -> float:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    t0 = time.process_time()
    for _ in range(n):
        r = await client.post(path, content=raw, headers=headers)
        assert r.status_code == 200, r.text
    return (time.process_time() - t0) / n * 1e6


async def main() -> dict:
    app = build_app()
    attach(app, Services(plane(view=FakeView()), FakeControl(), b"tok", 1 << 20))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for path, body in ROUTES.values():  # warm-up
            await per_request_us(client, path, body, 200)
        # The bare ASGI client's own cost: a route that does nothing.
        rounds: dict[str, list[float]] = {k: [] for k in [*ROUTES, "live"]}
        for i in range(5):
            order = list(ROUTES) if i % 2 == 0 else list(reversed(ROUTES))
            for name in order:
                rounds[name].append(await per_request_us(client, *ROUTES[name], 2000))
            t0 = time.process_time()
            for _ in range(2000):
                await client.get("/v2/health/live")
            rounds["live"].append((time.process_time() - t0) / 2000 * 1e6)
    return {"loadavg_start": LOAD, "loadavg_end": os.getloadavg(), "us_per_request": rounds,
            "median_us": {k: round(statistics.median(v), 1) for k, v in rounds.items()}}


LOAD = os.getloadavg()
print(json.dumps(asyncio.run(main()), indent=1))
