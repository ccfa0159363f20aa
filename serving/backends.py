"""What a ModelVersion replica runs: a private Triton server, or the model in-process.

Both serve the same generic `model.py` from the model repository, so their predictions are
identical; the in-process backend exists for comparison and for machines without Triton.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from serving.transport.failure import Failure
from serving.transport.triton_grpc import triton_infer


class Backend(Protocol):
    model: str
    version: str

    async def infer(self, texts: list[str]) -> tuple[np.ndarray, list[str]]: ...

    async def model_config(self) -> dict: ...

    def healthy(self) -> bool: ...

    def close(self) -> None: ...


class TritonBackend:
    """A `tritonserver` of this replica's own, serving exactly one version over gRPC."""

    def __init__(self, repository: Path, model: str, version: str, *, gpu: bool = False,
                 torch_threads: int | None = None, instances: int | None = None,
                 start_timeout: float = 300.0, stop_grace_s: float = 10.0) -> None:
        """`stop_grace_s`: how long `close` lets the server exit on its own before killing it (a
        graceful exit took about 2.5 s here). A replica's Triton may still hold requests; a
        finished batch job's holds nothing, and its job stops it at once (0)."""
        from serving.triton.repo_view import CONFIG_FILENAME, instance_count, make_view, read_config
        from serving.triton.server import TritonServer

        self.model, self.version, self.stop_grace_s = model, version, stop_grace_s
        self._view = Path(tempfile.mkdtemp(prefix=f"distilserve-{model}-v{version}-"))
        make_view(repository, model, version, self._view, gpu=gpu, torch_threads=torch_threads, instances=instances)
        # Batches this Triton executes at once; the ingress paces its calls by it (endpoints.py).
        self.instances = instance_count(read_config((self._view / model / CONFIG_FILENAME).read_text()))
        self.server = TritonServer(self._view, log_dir=self._view)
        try:
            self.server.start(timeout=start_timeout)
            self.server.load(model, timeout=start_timeout)
        except Exception:
            self.close()
            raise
        self._client = None
        self._last_counters: tuple[float, dict[str, float]] | None = None

    def _get_client(self):  # noqa: ANN202 - created lazily on the replica's event loop
        if self._client is None:
            import tritonclient.grpc.aio as grpcclient

            self._client = grpcclient.InferenceServerClient(self.server.grpc_url)
        return self._client

    async def infer(self, texts: list[str]) -> tuple[np.ndarray, list[str]]:
        try:
            return await triton_infer(self._get_client(), self.model, self.version, texts)
        except Failure as e:
            if e.kind == "model" and not self.server.alive():
                raise Failure("unavailable", f"Triton for {self.model} v{self.version} is down") from None
            raise

    async def model_config(self) -> dict:
        """The config this Triton loaded (defaults filled in), as its HTTP endpoint answers it."""
        url = f"http://{self.server.http_url}/v2/models/{self.model}/versions/{self.version}/config"

        def get() -> dict:
            with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - our own loopback Triton
                return json.loads(r.read())

        return await asyncio.to_thread(get)

    def concurrency(self) -> float:
        """Mean texts inside this Triton (queued or executing) since the last call.

        Little's law on Triton's own counters: request-microseconds completed per wall-clock
        microsecond is the mean number of requests inside; times texts per request (inferences /
        requests) it is texts, so the figure does not shrink when the ingress batches. It is
        the replica's load whichever path the requests took (Serve's handle or the short path).
        """
        now = time.monotonic()
        counters = triton_counters(self.server.metrics_text())
        last, self._last_counters = self._last_counters, (now, counters)
        return texts_in_flight(last, (now, counters))

    def healthy(self) -> bool:
        return self.server.alive() and self.server.model_ready(self.model, self.version)

    def close(self) -> None:
        self.server.stop(grace=self.stop_grace_s)
        shutil.rmtree(self._view, ignore_errors=True)


COUNTERS = ("nv_inference_request_duration_us", "nv_inference_request_success", "nv_inference_count")


def triton_counters(metrics_text: str) -> dict[str, float]:
    """Sums (over models and versions) of the counters in COUNTERS from a Triton /metrics page."""
    totals = dict.fromkeys(COUNTERS, 0.0)
    for line in metrics_text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            try:
                totals[name] += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
    return totals


def texts_in_flight(before: tuple[float, dict[str, float]] | None, after: tuple[float, dict[str, float]]) -> float:
    """Mean texts inside Triton between two readings (time, counters); 0 without a usable pair."""
    if before is None or after[0] <= before[0]:
        return 0.0
    d = {k: after[1].get(k, 0.0) - before[1].get(k, 0.0) for k in COUNTERS}
    if d["nv_inference_request_success"] <= 0 or d["nv_inference_request_duration_us"] < 0:
        return 0.0  # nothing completed (or Triton restarted and its counters did)
    requests_inside = d["nv_inference_request_duration_us"] / 1e6 / (after[0] - before[0])
    return requests_inside * max(1.0, d["nv_inference_count"] / d["nv_inference_request_success"])


def load_classifier_module(repository: Path, model: str):  # noqa: ANN201 - a module
    """Import `<repository>/<model>/model.py` (the Triton model) as a plain module."""
    path = Path(repository) / model / "model.py"
    spec = importlib.util.spec_from_file_location(f"distilserve_model_{model}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no model.py for model {model!r} at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TorchBackend:
    """The same model.py, in-process; torch runs on one worker thread, off the event loop."""

    def __init__(self, repository: Path, model: str, version: str, *, gpu: bool = False,
                 torch_threads: int | None = None, instances: int | None = None) -> None:
        import torch  # `instances` is Triton's: in-process there is one model, one worker thread

        self.model, self.version = model, version
        version_dir = Path(repository) / model / version
        if not version_dir.is_dir():
            raise FileNotFoundError(f"version {version!r} of model {model!r} not found in {repository}")
        module = load_classifier_module(repository, model)
        threads = torch_threads or 0  # capped at this process's CPUs as in Triton's stub, where model.py says how
        if hasattr(module, "usable_threads"):
            threads = module.usable_threads(threads, *module.cpus_available())
        if threads > 0:
            torch.set_num_threads(threads)
        device = "cuda" if gpu and torch.cuda.is_available() else "cpu"
        self._clf = module.Classifier(version_dir, device=device)
        self._config_path = Path(repository) / model / "config.pbtxt"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch-backend")

    async def infer(self, texts: list[str]) -> tuple[np.ndarray, list[str]]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._clf.predict, texts)
        except Exception as e:  # noqa: BLE001 - any model fault is this request's 500
            raise Failure("model", f"model failed: {e}") from None

    async def model_config(self) -> dict:
        """No Triton here: the repository's config.pbtxt in Triton's JSON form."""
        from google.protobuf import json_format, text_format
        from tritonclient.grpc import model_config_pb2

        config = text_format.Parse(self._config_path.read_text(), model_config_pb2.ModelConfig())
        return json_format.MessageToDict(config, preserving_proto_field_name=True)

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class ServingTritonBackend:
    """The Triton of a running ModelVersion replica of the version, on this node (a batch job's
    `--backend serving`): nothing to start, so a small job does not pay a Triton start and a model
    load. The batch requests share that Triton with online traffic (its dynamic batcher interleaves
    them); the job's `--max-rows-per-s` bounds what it takes."""

    def __init__(self, model: str, version: str, grpc: str) -> None:
        self.model, self.version, self.grpc = model, version, grpc
        self._client = None

    def _get_client(self):  # noqa: ANN202 - created lazily, on the caller's event loop
        if self._client is None:
            import tritonclient.grpc.aio as grpcclient

            self._client = grpcclient.InferenceServerClient(self.grpc)
        return self._client

    async def infer(self, texts: list[str]) -> tuple[np.ndarray, list[str]]:
        return await triton_infer(self._get_client(), self.model, self.version, texts)

    async def requests_served(self) -> int | None:
        """Requests this version's Triton has answered successfully, everyone's (its statistics
        extension); None when it does not say. A batch job compares it with its own calls."""
        try:
            stats = await self._get_client().get_inference_statistics(self.model, self.version, as_json=True)
            return served_requests(stats)
        except Exception:  # noqa: BLE001 - no statistics: the caller keeps its call budget
            return None

    async def model_config(self) -> dict:
        raise Failure("unavailable", "a serving replica's Triton: ask the ingress for the model config")

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        self._client = None  # the Triton belongs to its replica


def served_requests(stats: dict) -> int | None:
    """Successful requests in a Triton statistics reply (JSON form: 64-bit counts are strings, and a
    zero count is left out); None when the reply names no model."""
    models = stats.get("model_stats") or []
    if not models:
        return None
    return sum(int(m.get("inference_stats", {}).get("success", {}).get("count", 0)) for m in models)


def make_backend(kind: str, repository: Path, model: str, version: str, **kw: object) -> Backend:
    if kind == "triton":
        return TritonBackend(repository, model, version, **kw)  # type: ignore[arg-type]
    if kind == "torch":
        return TorchBackend(repository, model, version, **kw)  # type: ignore[arg-type]
    if kind == "serving":
        return ServingTritonBackend(model, version, str(kw["endpoint"]))
    raise ValueError(f"backend must be 'triton', 'torch' or 'serving', got {kind!r}")
