"""`DataPlane`: everything a request needs beyond its protocol, shared by every front end.

The HTTP routers (serving/http/) and a future gRPC server decode their protocol, then call
this object: it checks names, chooses the version ONCE per request (the traffic table, sticky
by user), answers from the batch prediction cache, calls the version through the transport,
copies to a shadow version, records predictions and feedback, and knows each version's label
names. Errors leave as `ApiError` with an HTTP-style status (a gRPC server maps them to its
codes); a transport `Failure` becomes 500 (the model failed on this request) or 503, and
`Overloaded` (the version's admission queue is full) 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from distilserve.core.names import MODEL_PATTERN, VERSION_PATTERN
from serving.batch.cache import Cache, prediction
from serving.dataplane_stats import InferenceStats
from serving.errors import ApiError
from serving.metrics import Metrics
from serving.registry import RegistryError, UnknownRequestError
from serving.state import TrafficView
from serving.transport.admission import Overloaded
from serving.transport.failure import Failure
from serving.transport.transport import Transport
from serving.triton import codec

log = logging.getLogger("distilserve.dataplane")
T = TypeVar("T")


def check_name(value: str, pattern: str, field: str) -> str:
    if not re.fullmatch(pattern, value):
        raise ApiError(400, f"{field}: {value[:80]!r} is not a valid {field} (expected {pattern})")
    return value


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call (SQLite waits for its lock) in a thread, never on the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


@dataclass(frozen=True)
class Inference:
    version: str
    probs: np.ndarray
    labels: list[str]


class DataPlane:
    def __init__(self, view: TrafficView, transport: Transport, metrics: Metrics, limits: codec.Limits,
                 cache: Cache | None = None) -> None:
        self.view, self.transport, self.metrics, self.limits, self.cache = view, transport, metrics, limits, cache
        self._names: dict[tuple[str, str], list[str]] = {}
        self._tasks: set[asyncio.Task] = set()
        self.stats = InferenceStats()

    # ---- names, versions, readiness ----------------------------------------------------------
    def known_model(self, model: str) -> None:
        check_name(model, MODEL_PATTERN, "model")
        if model not in self.view.models:
            raise ApiError(404, f"model: unknown model {model!r}; served models: {self.view.models}")

    def choose(self, model: str, pinned: str | None, user_id: str | None) -> str:
        """The version that answers this request: the pinned one (checked), else the traffic table's pick."""
        self.known_model(model)
        if pinned is not None:
            check_name(pinned, VERSION_PATTERN, "version")
            if pinned not in self.view.versions.get(model, set()):
                raise ApiError(404, f"version: model {model!r} has no deployable version {pinned!r}")
            return pinned
        table = self.view.tables.get(model)
        if table is None:
            raise ApiError(503, f"model {model!r} has no live version yet", {"Retry-After": "1"})
        return table.choose(user_id, random.random())

    def models_without_traffic(self) -> list[str]:
        return [m for m in self.view.models if m not in self.view.tables]

    def model_metadata(self, model: str) -> dict:
        self.known_model(model)
        return codec.model_metadata(model, _by_number(self.view.versions.get(model, set())))

    def version_metadata(self, model: str, version: str) -> dict:
        self.choose(model, version, None)
        return codec.model_metadata(model, [version])

    def statistics(self, model: str | None, version: str | None) -> dict:
        """Triton's statistics extension: every served model, one model, or one version."""
        if version is not None:
            self.choose(model or "", version, None)
            return self.stats.triton_json(model or "", [version])
        out: dict = {"model_stats": []}
        for m in [model] if model is not None else self.view.models:
            self.known_model(m)
            out["model_stats"] += self.stats.triton_json(m, _by_number(self.view.versions.get(m, set())))["model_stats"]
        return out

    async def model_config(self, model: str, version: str | None) -> dict:
        """Triton's JSON model config, as the version's own Triton reports it (default: the
        version with the most traffic, else the newest)."""
        if version is None:
            self.known_model(model)
            table = self.view.tables.get(model)
            known = _by_number(self.view.versions.get(model, set()))
            version = table.primary if table is not None and table.primary else (known[-1] if known else None)
            if version is None:
                raise ApiError(503, f"model {model!r} has no version yet", {"Retry-After": "1"})
        else:
            self.choose(model, version, None)
        try:
            return await self.transport.model_config(model, version)
        except Failure as e:
            raise _api_error(model, version, e) from None

    async def repository_index(self, ready_only: bool) -> list[dict]:
        """Triton's repository index: every version of every served model and whether it is ready."""
        pairs = [(m, v) for m in self.view.models for v in _by_number(self.view.versions.get(m, set()))]
        ready = await asyncio.gather(*(self.transport.ready(m, v) for m, v in pairs))
        return [{"name": m, "version": v, "state": "READY" if ok else "UNAVAILABLE", "reason": ""}
                for (m, v), ok in zip(pairs, ready, strict=True) if ok or not ready_only]

    async def model_ready(self, model: str) -> bool:
        """Every version the traffic table sends requests to is ready."""
        self.known_model(model)
        table = self.view.tables.get(model)
        return table is not None and all(
            [await self.transport.ready(model, v) for v, w in table.weights.items() if w > 0])

    async def version_ready(self, model: str, version: str) -> bool:
        self.choose(model, version, None)
        return await self.transport.ready(model, version)

    # ---- inference -----------------------------------------------------------------------------
    def refuse_early(self, model: str, pinned: str | None, user_id: str | None, route: str) -> ApiError | None:
        """The 429 this request will get, when that is certain before its body is validated: shedding
        is on, no prediction cache could answer it, and every version it could be routed to (the
        pinned one, the user's sticky one, else every version with traffic) is refusing even one more
        text. Then it is counted as `infer` would count it and returned; otherwise None, and the
        request takes the normal path (which may still refuse it). Names are not checked here: an
        unknown model or version gets None, and the normal path's 4xx."""
        if self.cache is not None or not self.transport.shedding.enabled:
            return None
        table = self.view.tables.get(model)
        if table is None:
            return None
        if pinned is not None:
            if pinned not in self.view.versions.get(model, set()):
                return None
            candidates = [pinned]
        elif user_id is not None:
            candidates = [table.choose(user_id, 0.0)]
        else:
            candidates = sorted(v for v, w in table.weights.items() if w > 0)
        refusals = {v: self.transport.refusal(model, v, 1) for v in candidates}
        if not refusals or any(r is None for r in refusals.values()):
            return None
        # Every candidate refuses, so which one the table would pick only decides the metrics' label.
        refused = refusals[candidates[0] if len(candidates) == 1 else table.choose(None, random.random())]
        self.transport.count_shed(model, refused.version)
        self.metrics.requests.labels(model, refused.version, route, "429").inc()
        self.metrics.shed_early.labels(model, refused.version).inc()
        return overloaded_error(refused)

    async def infer(self, model: str, pinned: str | None, user_id: str | None, texts: list[str], *,
                    route: str, request_id: str) -> Inference:
        """Choose the version, call it, record the predictions, copy to the shadow version."""
        return await self._infer(model, self.choose(model, pinned, user_id), pinned is None, user_id, texts,
                                 route, request_id)

    async def _infer(self, model: str, version: str, may_shadow: bool, user_id: str | None, texts: list[str],
                     route: str, request_id: str) -> Inference:
        t0 = time.perf_counter()
        try:
            probs, labels = await self.transport.infer(model, version, texts)
        except Failure as e:
            err = _api_error(model, version, e)
            self.metrics.observe(model, version, route, err.status, time.perf_counter() - t0, len(texts))
            self.stats.record(model, version, "fail", len(texts), time.perf_counter() - t0, time.time())
            raise err from None
        except Overloaded as e:  # refused at once, before any work: counted, not timed
            self.metrics.requests.labels(model, version, route, "429").inc()
            raise overloaded_error(e) from None
        self.metrics.observe(model, version, route, 200, time.perf_counter() - t0, len(texts))
        self.stats.record(model, version, "success", len(texts), time.perf_counter() - t0, time.time())
        self._record(request_id, model, version, labels, user_id)
        table = self.view.tables.get(model)
        shadow = table.shadow_for(request_id) if table and may_shadow else None
        if shadow and shadow != version:
            task = asyncio.create_task(self._shadow(model, shadow, texts, labels))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return Inference(version, probs, labels)

    def _record(self, request_id: str, model: str, version: str, labels: list[str], user_id: str | None) -> None:
        for i, label in enumerate(labels):
            self.view.record(request_id if len(labels) == 1 else f"{request_id}.{i}", model, version, label, user_id)

    async def _shadow(self, model: str, version: str, texts: list[str], live_labels: list[str]) -> None:
        """Copy to the shadow version; its answer is measured, never returned."""
        t0 = time.perf_counter()
        try:
            _, labels = await self.transport.infer(model, version, texts, shadow=True)
        except Overloaded:  # shed first, never reported to the user
            self.metrics.shadow_requests.labels(model, version, "shed").inc()
            return
        except Exception:  # noqa: BLE001 - a shadow failure never reaches users
            self.metrics.shadow_requests.labels(model, version, "error").inc()
            return
        self.metrics.shadow_requests.labels(model, version, "ok").inc()
        self.metrics.shadow_latency.labels(model, version).observe(time.perf_counter() - t0)
        self.metrics.shadow_agreement.labels(model, version).inc(sum(a == b for a, b in zip(labels, live_labels, strict=True)))

    async def predict(self, model: str, pinned: str | None, user_id: str | None, texts: list[str],
                      request_id: str) -> tuple[str, list[dict], bool]:
        """The JSON API's predictions `[{"label", "scores"}]`: (version, predictions, cached)."""
        version = self.choose(model, pinned, user_id)
        cached = await self._from_cache(model, version, user_id, texts, request_id)
        if cached is not None:
            return version, cached, True
        result = await self._infer(model, version, pinned is None, user_id, texts, "v1", request_id)
        names = await self.label_names(model, version)
        return version, [prediction(label, names, row) for label, row in zip(result.labels, result.probs, strict=True)], False

    async def _from_cache(self, model: str, version: str, user_id: str | None, texts: list[str],
                          request_id: str) -> list[dict] | None:
        """Every input's prediction from the batch cache, if all are known for this live version."""
        table = self.view.tables.get(model)
        if self.cache is None or table is None or table.weights.get(version, 0) <= 0:
            return None  # never from a version that is not live
        try:
            preds = await blocking(self.cache.lookup_many, model, version, texts)
        except Exception:  # noqa: BLE001 - a broken cache falls back to the model, never fails the request
            log.exception("prediction cache lookup failed")
            return None
        if any(p is None for p in preds):
            return None
        self.metrics.cache_hits.labels(model, version).inc(len(preds))
        self.stats.record(model, version, "cache_hit", len(preds), 0.0, time.time())
        self._record(request_id, model, version, [p["label"] for p in preds], user_id)
        return preds

    async def label_names(self, model: str, version: str) -> list[str]:
        """Class names in output order, from the version's card (cached per version)."""
        key = (model, version)
        if key not in self._names:
            names = await blocking(self.view.labels, model, version)
            if names is None:
                raise ApiError(503, f"version {version} of model {model!r} is not registered")
            self._names[key] = names
        return self._names[key]

    async def feedback(self, request_id: str, label: str | None, outcome: int | None) -> None:
        try:
            await blocking(self.view.record_feedback, request_id, label, outcome)
        except UnknownRequestError:
            raise ApiError(404, f"request_id: no prediction recorded under {request_id!r}") from None
        except RegistryError as e:
            raise ApiError(422, str(e)) from None

    # ---- refusals and metrics ------------------------------------------------------------------
    def refuse(self, route: str, status: int, message: str) -> ApiError:
        """A client error, counted; the caller raises it."""
        self.metrics.client_errors.labels(route, str(status)).inc()
        return ApiError(status, message)

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    def close(self) -> None:
        self.transport.close()
        self.view.close()


def _by_number(versions: set[str]) -> list[str]:
    return sorted(versions, key=int)


def overloaded_error(e: Overloaded) -> ApiError:
    """429 naming the version, with Retry-After in whole seconds (gRPC maps it to UNAVAILABLE)."""
    return ApiError(429, str(e), {"Retry-After": str(e.retry_after_s)})


def _api_error(model: str, version: str, failure: Failure) -> ApiError:
    if failure.kind == "model":
        return ApiError(500, f"model {model!r} version {version} failed on this request: {failure.message}")
    return ApiError(503, failure.message, {"Retry-After": "1"})
