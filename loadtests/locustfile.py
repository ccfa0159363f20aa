"""Users of the distilserve API, paced by a load shape. Start it through `loadtests.run_locust`.

Users (weights give the mix):
- `PredictUser`   POST /v1/predict, batch sizes from corpus.BATCH_MIX, real tweets (real lengths);
- `OipUser`       POST /v2/models/<model>/infer, Open Inference Protocol JSON, same draws;
- `StickyAbUser`  /v1/predict with its own fixed user_id: A/B routing must keep it on one version;
Every user also sends bad requests on purpose (task weight 1 against 19: 5% of its traffic,
whatever the user count): a 4xx counts as success, anything else (a 5xx, or a 2xx for
garbage) is a failure.
Configured by LOADTEST_* environment variables (run_locust sets them). Only 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import threading
import uuid

import gevent
from locust import HttpUser, LoadTestShape, constant_throughput, events, task

from distilserve.core.tensors import INPUT_TEXT, OUTPUT_LABEL
from loadtests import corpus, shapes
from loadtests.run_locust import check_host, failure_text

MODEL = os.environ.get("LOADTEST_MODEL", "sentiment")
PER_USER_RPS = float(os.environ.get("LOADTEST_PER_USER_RPS", "10"))
MAX_REQUESTS = int(os.environ.get("LOADTEST_MAX_REQUESTS", "200000"))
MAX_BATCH = int(os.environ.get("LOADTEST_MAX_BATCH", "64"))
REQUEST_LOG = os.environ.get("LOADTEST_REQUEST_LOG", "")
TEXTS = corpus.load_texts()
_RNG = random.Random(int(os.environ.get("LOADTEST_SEED", "0")))

_count = 0
_count_lock = threading.Lock()
_log_file = open(REQUEST_LOG, "w", buffering=1 << 16) if REQUEST_LOG else None  # noqa: SIM115 - closed at quit
if _log_file:
    _log_file.write("end_unix_s,latency_ms,ok,name\n")


@events.init.add_listener
def _refuse_other_hosts(environment, **_: object) -> None:  # noqa: ANN001 - locust's Environment
    check_host(environment.host or "")


@events.request.add_listener
def _count_and_log(name: str, response_time: float, exception: BaseException | None, start_time: float,
                   context: dict, **_: object) -> None:
    global _count
    if _log_file:
        _log_file.write(f"{start_time + response_time / 1000:.4f},{response_time:.2f},{int(exception is None)},{name}\n")
    with _count_lock:
        _count += 1
        done = _count == MAX_REQUESTS
    runner = context.get("runner") if context else None
    if done and runner is not None:
        gevent.spawn(runner.quit)  # request budget spent: stop, even before the run time


@events.quitting.add_listener
def _close_log(**_: object) -> None:
    if _log_file:
        _log_file.flush()


# (name, path, body bytes): every one of them must be answered with a 4xx.
MALFORMED: tuple[tuple[str, str, bytes], ...] = (
    ("malformed: bad json", "/v1/predict", b'{"inputs": ["unterminated'),
    ("malformed: empty inputs", "/v1/predict", json.dumps({"inputs": []}).encode()),
    ("malformed: non-string input", "/v1/predict", json.dumps({"inputs": [1, 2]}).encode()),
    ("malformed: 65 inputs", "/v1/predict", json.dumps({"inputs": ["ok"] * 65}).encode()),
    ("malformed: oversized text", "/v1/predict", json.dumps({"inputs": ["x" * 2001]}).encode()),
    ("malformed: unknown model", "/v1/predict", json.dumps({"model": "nope", "inputs": ["ok"]}).encode()),
    ("malformed: oip wrong datatype", f"/v2/models/{MODEL}/infer",
     json.dumps({"inputs": [{"name": INPUT_TEXT, "shape": [1], "datatype": "FP32", "data": [1.0]}]}).encode()),
    ("malformed: oip shape mismatch", f"/v2/models/{MODEL}/infer",
     json.dumps({"inputs": [{"name": INPUT_TEXT, "shape": [2], "datatype": "BYTES", "data": ["a"]}]}).encode()),
)


class _ApiUser(HttpUser):
    abstract = True
    wait_time = constant_throughput(PER_USER_RPS)

    def context(self) -> dict:
        return {"runner": self.environment.runner}

    def texts(self) -> list[str]:
        return corpus.draw_batch(TEXTS, _RNG, MAX_BATCH)

    def predict(self, body: dict, name: str) -> str | None:
        """POST /v1/predict; returns the served version, or None after marking a failure."""
        with self.client.post("/v1/predict", json=body, name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(failure_text(r.status_code, r.headers.get("Retry-After"), r.text))
                return None
            preds = r.json().get("predictions", [])
            if len(preds) != len(body["inputs"]):
                r.failure(f"{len(preds)} predictions for {len(body['inputs'])} inputs")
                return None
            return r.json().get("version")

    @task(1)
    def malformed(self) -> None:
        name, path, body = _RNG.choice(MALFORMED)
        with self.client.post(path, data=body, name=name, catch_response=True,
                              headers={"Content-Type": "application/json"}) as r:
            if 400 <= r.status_code < 500:
                r.success()
            else:
                r.failure(f"expected a 4xx for a malformed request, got HTTP {r.status_code}: {r.text[:200]}")


class PredictUser(_ApiUser):
    weight = 60

    @task(19)
    def predict_batch(self) -> None:
        self.predict({"model": MODEL, "inputs": self.texts()}, "/v1/predict")


class OipUser(_ApiUser):
    weight = 25

    @task(19)
    def infer(self) -> None:
        texts = self.texts()
        body = {"inputs": [{"name": INPUT_TEXT, "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
        with self.client.post(f"/v2/models/{MODEL}/infer", json=body, name="/v2/models/[model]/infer",
                              catch_response=True) as r:
            if r.status_code != 200:
                r.failure(failure_text(r.status_code, r.headers.get("Retry-After"), r.text))
                return
            outputs = {o["name"]: o for o in r.json().get("outputs", [])}
            if outputs.get(OUTPUT_LABEL, {}).get("shape") not in ([len(texts)], [len(texts), 1]):
                r.failure(f"{OUTPUT_LABEL} output does not match {len(texts)} inputs: {list(outputs)}")


class StickyAbUser(_ApiUser):
    """One end user: the same user_id on every request must keep landing on the same version."""

    weight = 15

    def on_start(self) -> None:
        self.user_id = f"loadtest-{uuid.uuid4().hex[:12]}"
        self.version: str | None = None

    @task(19)
    def predict_sticky(self) -> None:
        version = self.predict({"model": MODEL, "inputs": self.texts(), "user_id": self.user_id},
                               "/v1/predict [sticky user]")
        if version is None:
            return
        if self.version is None:
            self.version = version
        elif version != self.version:
            events.request.fire(request_type="CHECK", name="sticky version unchanged", response_time=0,
                                response_length=0, context=self.context(),
                                exception=AssertionError(f"{self.user_id}: v{self.version} then v{version}"))



class ConfiguredShape(LoadTestShape):
    """The shape named by LOADTEST_SHAPE, stretched over LOADTEST_DURATION_S."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = shapes.build(
            os.environ.get("LOADTEST_SHAPE", "steady"),
            float(os.environ.get("LOADTEST_DURATION_S", "60")),
            **json.loads(os.environ.get("LOADTEST_SHAPE_PARAMS", "{}")),
        )

    def tick(self) -> tuple[int, float] | None:
        return shapes.tick(self.stages, self.get_run_time(), PER_USER_RPS)
