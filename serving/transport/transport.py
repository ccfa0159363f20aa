"""`Transport`: how the ingress reaches a model version. No HTTP, no routing decisions.

One call for a list of texts goes
- straight to a same-node Triton of the version when one is known (serving/transport/endpoints.py),
  bounded by SHORT_PATH_TIMEOUT_S; a Triton that is gone is benched and the call goes on
- through the version's Serve deployment (`ModelVersion.predict`) otherwise.
Concurrent calls to one version share a downstream call (serving/transport/microbatch.py),
paced by the model instances of the same-node Tritons when those are known. A call that meets an
unavailable version is sent once more (inference is idempotent; Serve routes the retry to a
live replica). Every failure leaves as one type, `Failure`; with shedding on, a request past the
version's admission bound is refused at once as `Overloaded` (serving/transport/admission.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from distilserve.core.names import app_name
from serving.config import BatchingSettings, SheddingSettings
from serving.metrics import Metrics
from serving.transport.admission import Overloaded, VersionQueue, decide
from serving.transport.endpoints import EndpointWatcher
from serving.transport.failure import Failure
from serving.transport.microbatch import MicroBatcher
from serving.transport.triton_grpc import triton_infer

log = logging.getLogger("distilserve.transport")
SHORT_PATH_TIMEOUT_S = 30.0  # then the Triton is benched and the request goes through Serve
Result = tuple[np.ndarray, list[str]]


class Transport:
    def __init__(self, batching: BatchingSettings, metrics: Metrics, watcher: EndpointWatcher | None = None,
                 shedding: SheddingSettings | None = None) -> None:
        self.batching, self.metrics, self.watcher = batching, metrics, watcher
        self.shedding = shedding or SheddingSettings()
        self.queues: dict[tuple[str, str], VersionQueue] = {}
        self._handles: dict[tuple[str, str], Any] = {}
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}
        self._triton_clients: dict[str, Any] = {}

    @classmethod
    def for_this_node(cls, batching: BatchingSettings, metrics: Metrics, direct_triton: bool,
                      shedding: SheddingSettings | None = None) -> Transport:
        """With `direct_triton`, watch this Ray node's Triton endpoints (a daemon thread)."""
        watcher = None
        if direct_triton:
            import ray

            watcher = EndpointWatcher(ray.get_runtime_context().get_node_id())
            watcher.start()
        return cls(batching, metrics, watcher, shedding)

    async def infer(self, model: str, version: str, texts: list[str], *, shadow: bool = False) -> Result:
        """Probabilities [N, C] and labels; raises Failure (after one retry when unavailable), or
        Overloaded at once when shedding is on and the version's queue is full (shadow copies first)."""
        if not self.shedding.enabled:
            return await self._infer(model, version, texts)
        queue = self._admit(model, version, len(texts), shadow)
        queue.queued += len(texts)
        try:
            return await self._infer(model, version, texts)
        finally:
            queue.queued -= len(texts)

    def _admit(self, model: str, version: str, texts: int, shadow: bool) -> VersionQueue:
        """The version's queue, once these texts may join it; raises Overloaded (counted) otherwise."""
        queue = self.queues.setdefault((model, version), VersionQueue())
        refused = self.refusal(model, version, texts, shadow=shadow)
        if refused is not None:
            self.count_shed(model, version, shadow=shadow)
            raise refused
        return queue

    def refusal(self, model: str, version: str, texts: int, *, shadow: bool = False) -> Overloaded | None:
        """What admitting `texts` more texts to the version would answer now: None (admitted) or the
        Overloaded to raise. Changes nothing and counts nothing; always None with shedding off."""
        if not self.shedding.enabled:
            return None
        queue = self.queues.get((model, version))
        if queue is None:
            return None  # nothing outstanding: an empty queue always admits
        s = self.shedding
        d = decide(queued=queue.queued, texts=texts, shadow=shadow, slo_ms=s.slo_ms, ms_per_text=queue.ms_per_text,
                   parallel=self._local_parallel(model, version) or 1, min_queue=s.min_queue, max_queue=s.max_queue)
        return None if d.admit else Overloaded(model, version, d.retry_after_s, queue.queued, d.limit)

    def count_shed(self, model: str, version: str, *, shadow: bool = False) -> None:
        who = "shadow" if shadow else "user"
        self.queues.setdefault((model, version), VersionQueue()).shed[who] += 1
        self.metrics.shed.labels(model, version, who).inc()

    async def _infer(self, model: str, version: str, texts: list[str]) -> Result:
        for attempt in (1, 2):
            try:
                return await self._once(model, version, texts)
            except Failure as e:
                if e.kind == "model" or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _once(self, model: str, version: str, texts: list[str]) -> Result:
        # The micro-batcher settles a waiting request with a Failure by raising it (an exception).
        if self.batching.enabled:
            result = await self._batcher(model, version).submit(texts)
        else:
            result = await self._call(model, version, texts)
        if isinstance(result, Failure):
            raise result
        return result

    async def ready(self, model: str, version: str, timeout_s: float = 3.0) -> bool:
        # Bounded: a handle to an app being deleted waits for replicas that never come.
        try:
            return bool(await asyncio.wait_for(self._handle(model, version).ready.remote(), timeout_s))
        except Exception:  # noqa: BLE001 - not deployed or not answering: not ready
            self._handles.pop((model, version), None)
            return False

    async def model_config(self, model: str, version: str, timeout_s: float = 10.0) -> dict:
        """Triton's JSON model config of the version, from one of its replicas; raises Failure."""
        try:
            return await asyncio.wait_for(self._handle(model, version).model_config.remote(), timeout_s)
        except Failure:
            raise
        except Exception as e:  # noqa: BLE001 - not deployed, replica gone, or not answering
            self._handles.pop((model, version), None)
            log.warning("model config of %s v%s unavailable: %r", model, version, e)
            raise Failure("unavailable", f"version {version} of model {model!r} is unavailable; retry") from None

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    # ---- one downstream call -------------------------------------------------------------------
    async def _call(self, model: str, version: str, texts: list[str]) -> Result | Failure:
        """One downstream call; with shedding on, its duration feeds the version's service-time EWMA."""
        if not self.shedding.enabled:
            return await self._call_once(model, version, texts)
        t0 = time.perf_counter()
        result = await self._call_once(model, version, texts)
        if not isinstance(result, Failure):
            self.queues.setdefault((model, version), VersionQueue()).observe_call(
                time.perf_counter() - t0, len(texts), self.shedding.ewma_alpha, self._min_measured_texts())
        return result

    def _min_measured_texts(self) -> int:
        """Texts a call needs for its duration to size the shedding bound: `min_call_texts`, at most
        the biggest call the batcher makes; with batching off each request is its own call, so all."""
        if not self.batching.enabled:
            return 1
        return min(self.shedding.min_call_texts, self.batching.max_texts)

    async def _call_once(self, model: str, version: str, texts: list[str]) -> Result | Failure:
        """Short path when a same-node Triton is known, else Serve. Failures are values here (the
        micro-batcher hands each waiting request its own)."""
        pool = self.watcher.pools.get(app_name(model, version)) if self.watcher else None
        endpoint = pool.pick(time.time()) if pool else None
        if pool is not None and endpoint is not None:
            pool.acquire(endpoint)
            try:
                # Bounded: a hung Triton must not hold the paced batcher (and every request behind it).
                result = await triton_infer(self._triton_client(endpoint.grpc), model, version, texts,
                                            timeout_s=SHORT_PATH_TIMEOUT_S)
                self.metrics.calls.labels(model, version, "triton").inc()
                return result
            except Failure as e:
                if e.kind == "model":
                    self.metrics.calls.labels(model, version, "triton").inc()
                    return e
                # Its Triton is gone (replica replaced or dying): bench it and let Serve route this one.
                log.warning("short path to %s failed (%s); using Serve", endpoint.grpc, e)
                pool.bench(endpoint, time.time())
            except (OSError, RuntimeError) as e:
                log.warning("short path to %s failed (%r); using Serve", endpoint.grpc, e)
                pool.bench(endpoint, time.time())
            finally:
                pool.release(endpoint)
        self.metrics.calls.labels(model, version, "serve").inc()
        try:
            return await self._handle(model, version).predict.remote(texts)
        except Failure as e:
            return e
        except Exception as e:  # noqa: BLE001 - replica died, app deleted, cluster shutting down
            self._handles.pop((model, version), None)
            log.warning("version %s of %s unavailable: %r", version, model, e)
            return Failure("unavailable", f"version {version} of model {model!r} is unavailable; retry")

    def _handle(self, model: str, version: str) -> Any:  # a DeploymentHandle
        key = (model, version)
        handle = self._handles.get(key)
        if handle is None:
            from ray import serve

            try:
                handle = serve.get_deployment_handle("ModelVersion", app_name=app_name(model, version))
            except Exception:  # noqa: BLE001 - the app does not exist (not deployed)
                raise Failure("unavailable", f"version {version} of model {model!r} is not deployed") from None
            self._handles[key] = handle
        return handle

    def _triton_client(self, address: str) -> Any:  # a tritonclient.grpc.aio client, made on this loop
        client = self._triton_clients.get(address)
        if client is None:
            import tritonclient.grpc.aio as grpc_aio

            client = self._triton_clients[address] = grpc_aio.InferenceServerClient(address)
        return client

    def _local_parallel(self, model: str, version: str) -> int | None:
        """Batches the version's same-node Tritons execute at once: their model instances, summed
        (each instance runs one batch at a time; more calls would only queue inside Triton). None
        (no cap) when calls go through Serve: no Triton known here, or replicas on other nodes."""
        pool = self.watcher.pools.get(app_name(model, version)) if self.watcher else None
        return pool.parallel() if pool is not None else None

    def _batcher(self, model: str, version: str) -> MicroBatcher:
        key = (model, version)
        batcher = self._batchers.get(key)
        if batcher is None:
            b = self.batching
            batcher = self._batchers[key] = MicroBatcher(
                lambda texts: self._call(model, version, texts),
                slice_result=lambda r, a, z: (r[0][a:z], r[1][a:z]),
                is_failure=lambda r: isinstance(r, Failure),
                is_model_failure=lambda r: isinstance(r, Failure) and r.kind == "model",
                max_texts=b.max_texts, max_wait_s=b.max_wait_ms / 1000, flush_when_idle=b.flush_when_idle,
                max_inflight=(lambda: _times(self._local_parallel(model, version), b.calls_per_instance))
                if b.paced else None,
                max_tokens=b.max_tokens_per_call, max_reorder_s=b.max_reorder_ms / 1000,
                on_call=self.metrics.downstream_batch.labels(model, version).observe,
            )
        return batcher


def _times(instances: int | None, calls_each: int) -> int | None:
    """Calls the paced batcher may have in flight: calls_each per same-node model instance (None: no cap)."""
    return None if instances is None else instances * calls_each
