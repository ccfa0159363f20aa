"""`Ingress`: the FastAPI app on Ray Serve — Open Inference Protocol v2, JSON API, admin.

Routes read the traffic table (refreshed from the registry), pick a version, and call that
version's `ModelVersion` deployment. Client errors are 4xx JSON naming the field; a model
fault is a 500 for that request only; a version that cannot serve is a 503.
"""

import asyncio
import hmac
import logging
import random
import time
import uuid

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve

from serving import api_models
from serving.backends import BackendUnavailable, Failure, ModelError, triton_infer
from serving.batch.cache import open_cache
from serving.batcher import MicroBatcher
from serving.config import ServeConfig
from serving.endpoints import EndpointWatcher
from serving.errors import ApiError, describe_validation, install_handlers
from serving.http_server import IngressHttpServer
from serving.metrics import Metrics
from serving.registry import RegistryError, UnknownRequestError
from serving.routers import extra_routers
from serving.state import RegistryView
from serving.triton import codec

log = logging.getLogger("distilserve.ingress")
SHORT_PATH_TIMEOUT_S = 30.0  # then the Triton is benched and the request goes through Serve

app = FastAPI(title="distilserve", version="0.1.0", docs_url=None, redoc_url=None)
install_handlers(app)
# Feature routers (plain functions) reach the live Ingress through `request.app.state.ingress`.
for _router in extra_routers():
    app.include_router(_router)


def app_name(model: str, version: str) -> str:
    """Ray Serve application name of one model version."""
    return f"{model}-v{version}"


def _check_name(value: str, pattern: str, field: str) -> str:
    import re

    if not re.fullmatch(pattern, value):
        raise ApiError(400, f"{field}: {value[:80]!r} is not a valid {field} (expected {pattern})")
    return value


@serve.deployment(name="Ingress", max_ongoing_requests=256, health_check_period_s=5.0)
@serve.ingress(app)
class Ingress:
    def __init__(self, config: dict, admin_token: str | None = None) -> None:
        self.cfg = ServeConfig.model_validate(config)
        self.limits = codec.Limits(self.cfg.limits.max_items, self.cfg.limits.max_text_chars)
        self._token = admin_token.encode() if admin_token else None
        self.view = RegistryView(self.cfg.registry, self.cfg.models, self.cfg.traffic_poll_s)
        self.metrics = Metrics()
        self._handles: dict[tuple[str, str], object] = {}
        self._tasks: set[asyncio.Task] = set()
        self._names: dict[tuple[str, str], list[str]] = {}
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}
        self.cache = open_cache(self.cfg.prediction_cache) if self.cfg.prediction_cache else None
        app.state.ingress = self
        self._watcher: EndpointWatcher | None = None
        self._triton_clients: dict[str, object] = {}
        if self.cfg.direct_triton:
            self._start_watcher()
        self._http: IngressHttpServer | None = None
        if self.cfg.http_server == "ingress":
            # This replica answers HTTP itself on host:port; Serve's proxy is off (runner.py).
            self._http = IngressHttpServer(app, self.cfg.host, self.cfg.port)
            self._http.start()

    def _start_watcher(self) -> None:
        import threading

        import ray

        self._watcher = watcher = EndpointWatcher(ray.get_runtime_context().get_node_id())
        self._watch_stop = stop = threading.Event()

        def run() -> None:
            while True:
                try:
                    watcher.poll_once()
                except Exception:  # noqa: BLE001 - keep polling; the Serve path works meanwhile
                    log.exception("reading Triton endpoints failed")
                if stop.wait(watcher.poll_s):
                    return

        threading.Thread(target=run, name="triton-endpoints", daemon=True).start()

    def check_health(self) -> None:
        if self._http is not None and not self._http.alive():
            raise RuntimeError(f"the ingress HTTP listener on {self.cfg.host}:{self.cfg.port} is down")

    # ---- helpers ---------------------------------------------------------------------------
    async def _body(self, request: Request) -> bytes:
        limit = self.cfg.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"body: {declared} bytes is over the limit of {limit} bytes")
        body = await request.body()
        if len(body) > limit:
            raise ApiError(413, f"body: {len(body)} bytes is over the limit of {limit} bytes")
        return body

    def _known_model(self, model: str) -> None:
        _check_name(model, api_models.MODEL_PATTERN, "model")
        if model not in self.view.models:
            raise ApiError(404, f"model: unknown model {model!r}; served models: {self.view.models}")

    def _version_for(self, model: str, pinned: str | None, user_id: str | None) -> str:
        self._known_model(model)
        if pinned is not None:
            _check_name(pinned, api_models.VERSION_PATTERN, "version")
            if pinned not in self.view.versions.get(model, set()):
                raise ApiError(404, f"version: model {model!r} has no deployable version {pinned!r}")
            return pinned
        table = self.view.tables.get(model)
        if table is None:
            raise ApiError(503, f"model {model!r} has no live version yet", {"Retry-After": "1"})
        return table.choose(user_id, random.random())

    def _handle(self, model: str, version: str):  # noqa: ANN202 - a DeploymentHandle
        key = (model, version)
        handle = self._handles.get(key)
        if handle is None:
            try:
                handle = serve.get_deployment_handle("ModelVersion", app_name=app_name(model, version))
            except Exception:  # noqa: BLE001 - the app does not exist (not deployed)
                raise ApiError(503, f"version {version} of model {model!r} is not deployed",
                               {"Retry-After": "1"}) from None
            self._handles[key] = handle
        return handle

    async def _call_version(self, model: str, version: str, texts: list[str]) -> tuple[np.ndarray, list[str]] | Failure:
        """One call for `texts`: straight to a same-node Triton of the version when one is known
        (serving/endpoints.py), else through the version's Serve deployment. Failures are values."""
        pool = self._watcher.pools.get(app_name(model, version)) if self._watcher else None
        endpoint = pool.pick(time.time()) if pool else None
        if pool is not None and endpoint is not None:
            pool.acquire(endpoint)
            try:
                # Bounded: a hung Triton must not hold the paced batcher (and every request behind it).
                result = await triton_infer(self._triton_client(endpoint.grpc), model, version, texts,
                                            timeout_s=SHORT_PATH_TIMEOUT_S)
                self.metrics.calls.labels(model, version, "triton").inc()
                return result
            except ModelError as e:
                self.metrics.calls.labels(model, version, "triton").inc()
                return Failure("model", str(e))
            except (BackendUnavailable, OSError, RuntimeError) as e:
                # Its Triton is gone (replica replaced or dying): bench it and let Serve route this one.
                log.warning("short path to %s failed (%r); using Serve", endpoint.grpc, e)
                pool.bench(endpoint, time.time())
            finally:
                pool.release(endpoint)
        self.metrics.calls.labels(model, version, "serve").inc()
        try:
            return await self._handle(model, version).predict.remote(texts)
        except ApiError as e:
            return Failure("unavailable", e.message)
        except Exception as e:  # noqa: BLE001 - replica died, app deleted, cluster shutting down
            self._handles.pop((model, version), None)
            log.warning("version %s of %s unavailable: %r", version, model, e)
            return Failure("unavailable", f"version {version} of model {model!r} is unavailable; retry")

    def _local_tritons(self, model: str, version: str) -> int | None:
        """Calls the batcher may have in flight: one per same-node Triton (each runs one batch at a
        time; more would only queue inside it); no cap when calls go through Serve."""
        pool = self._watcher.pools.get(app_name(model, version)) if self._watcher else None
        n = len(pool.endpoints) if pool is not None else 0
        return n if n and pool is not None and pool.total == n else None

    def _triton_client(self, address: str):  # noqa: ANN202 - a tritonclient.grpc.aio client, made on this loop
        client = self._triton_clients.get(address)
        if client is None:
            import tritonclient.grpc.aio as grpc_aio

            client = self._triton_clients[address] = grpc_aio.InferenceServerClient(address)
        return client

    def _batcher(self, model: str, version: str) -> MicroBatcher:
        key = (model, version)
        batcher = self._batchers.get(key)
        if batcher is None:
            b = self.cfg.batching
            batcher = self._batchers[key] = MicroBatcher(
                lambda texts: self._call_version(model, version, texts),
                slice_result=lambda r, a, z: (r[0][a:z], r[1][a:z]),
                is_failure=lambda r: isinstance(r, Failure),
                is_model_failure=lambda r: isinstance(r, Failure) and r.kind == "model",
                max_texts=b.max_texts, max_wait_s=b.max_wait_ms / 1000, flush_when_idle=b.flush_when_idle,
                max_inflight=(lambda: self._local_tritons(model, version)) if b.paced else None,
                on_call=self.metrics.downstream_batch.labels(model, version).observe,
            )
        return batcher

    async def _predict(self, model: str, version: str, texts: list[str]) -> tuple[np.ndarray, list[str]]:
        """Call the version (micro-batched with concurrent requests); one retry when unavailable.

        Inference is idempotent, so a request that met a dead replica (its Triton killed, the
        replica being replaced) is sent once more and Serve routes it to a live one.
        """
        for _attempt in (1, 2):
            if self.cfg.batching.enabled:
                result = await self._batcher(model, version).submit(texts)
            else:
                result = await self._call_version(model, version, texts)
            if not isinstance(result, Failure):
                return result
            if result.kind == "model":
                raise ApiError(500, f"model {model!r} version {version} failed on this request: {result.message}")
        raise ApiError(503, result.message, {"Retry-After": "1"})

    async def _serve(self, model: str, pinned: str | None, user_id: str | None, texts: list[str],
                     route: str, request_id: str) -> tuple[str, np.ndarray, list[str]]:
        version = self._version_for(model, pinned, user_id)
        t0 = time.perf_counter()
        try:
            probs, labels = await self._predict(model, version, texts)
        except ApiError as e:
            self.metrics.observe(model, version, route, e.status, time.perf_counter() - t0, len(texts))
            raise
        self.metrics.observe(model, version, route, 200, time.perf_counter() - t0, len(texts))
        for i, label in enumerate(labels):
            self.view.record(request_id if len(labels) == 1 else f"{request_id}.{i}", model, version, label, user_id)
        table = self.view.tables.get(model)
        shadow = table.shadow_for(request_id) if table and pinned is None else None
        if shadow and shadow != version:
            task = asyncio.create_task(self._shadow(model, shadow, texts, labels))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return version, probs, labels

    async def _shadow(self, model: str, version: str, texts: list[str], live_labels: list[str]) -> None:
        """Copy to the shadow version; its answer is measured, never returned."""
        t0 = time.perf_counter()
        try:
            _, labels = await self._predict(model, version, texts)
        except Exception:  # noqa: BLE001 - a shadow failure never reaches users
            self.metrics.shadow_requests.labels(model, version, "error").inc()
            return
        self.metrics.shadow_requests.labels(model, version, "ok").inc()
        self.metrics.shadow_latency.labels(model, version).observe(time.perf_counter() - t0)
        self.metrics.shadow_agreement.labels(model, version).inc(sum(a == b for a, b in zip(labels, live_labels, strict=True)))

    def _admin(self, request: Request) -> None:
        if self._token is None:
            raise ApiError(403, "admin API disabled: start the server with an admin token")
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        # Constant-time comparison; the token is never logged.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self._token):
            raise ApiError(401, "authorization: a valid 'Bearer <token>' header is required",
                           {"WWW-Authenticate": "Bearer"})

    # ---- Open Inference Protocol v2 --------------------------------------------------------
    @app.get("/v2/health/live")
    async def live(self) -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready(self) -> JSONResponse:
        missing = [m for m in self.view.models if m not in self.view.tables]
        if missing:
            return JSONResponse({"ready": False, "error": f"no live version for {missing}"}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/v2")
    async def server_metadata(self) -> dict:
        return {"name": "distilserve", "version": "0.1.0", "extensions": ["binary_tensor_data"]}

    @app.get("/v2/models/{model}")
    async def model_metadata(self, model: str) -> dict:
        self._known_model(model)
        versions = sorted(self.view.versions.get(model, set()), key=int)
        return codec.model_metadata(model, versions)

    @app.get("/v2/models/{model}/versions/{version}")
    async def version_metadata(self, model: str, version: str) -> dict:
        self._version_for(model, version, None)
        return codec.model_metadata(model, [version])

    @app.get("/v2/models/{model}/ready")
    async def model_ready(self, model: str) -> JSONResponse:
        self._known_model(model)
        table = self.view.tables.get(model)
        ok = table is not None and all(
            [await self._version_ready(model, v) for v, w in table.weights.items() if w > 0]
        )
        return JSONResponse({"name": model, "ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2/models/{model}/versions/{version}/ready")
    async def version_ready(self, model: str, version: str) -> JSONResponse:
        self._version_for(model, version, None)
        ok = await self._version_ready(model, version)
        return JSONResponse({"name": model, "version": version, "ready": ok}, status_code=200 if ok else 503)

    async def _version_ready(self, model: str, version: str, timeout_s: float = 3.0) -> bool:
        # Bounded: a handle to an app being deleted waits for replicas that never come.
        try:
            return bool(await asyncio.wait_for(self._handle(model, version).ready.remote(), timeout_s))
        except Exception:  # noqa: BLE001 - not deployed or not answering: not ready
            self._handles.pop((model, version), None)
            return False

    @app.post("/v2/models/{model}/infer")
    async def infer(self, model: str, request: Request) -> Response:
        return await self._oip_infer(model, None, request)

    @app.post("/v2/models/{model}/versions/{version}/infer")
    async def infer_version(self, model: str, version: str, request: Request) -> Response:
        return await self._oip_infer(model, version, request)

    async def _oip_infer(self, model: str, pinned: str | None, request: Request) -> Response:
        body = await self._body(request)
        header_len = request.headers.get(codec.HEADER_LENGTH.lower())
        try:
            hlen = int(header_len) if header_len is not None else None
        except ValueError:
            raise ApiError(400, f"{codec.HEADER_LENGTH}: {header_len!r} is not an integer") from None
        try:
            req = codec.parse_infer_request(body, hlen, self.limits)
        except codec.CodecError as e:
            self.metrics.client_errors.labels("v2", "400").inc()
            raise ApiError(400, str(e)) from None
        rid = req.request_id or uuid.uuid4().hex
        version, probs, labels = await self._serve(model, pinned, None, req.texts, "v2", rid)
        content, json_len = codec.build_infer_response(model, version, req, probs, labels)
        headers = {"X-Model-Version": version, "X-Request-ID": rid}
        if json_len is not None:
            headers[codec.HEADER_LENGTH] = str(json_len)
            return Response(content, media_type="application/octet-stream", headers=headers)
        return Response(content, media_type="application/json", headers=headers)

    # ---- JSON API ----------------------------------------------------------------------------
    @app.post("/v1/predict")
    async def predict(self, request: Request) -> JSONResponse:
        body = await self._body(request)
        try:
            req = api_models.PredictRequest.model_validate_json(body)
        except ValidationError as e:
            self.metrics.client_errors.labels("v1", "422").inc()
            raise ApiError(422, describe_validation(list(e.errors()))) from None
        try:
            codec.check_texts(req.inputs, "inputs", self.limits)
        except codec.CodecError as e:
            self.metrics.client_errors.labels("v1", "422").inc()
            raise ApiError(422, str(e)) from None
        rid = uuid.uuid4().hex
        cached = await self._from_cache(req.model, req.version, req.user_id, req.inputs, rid)
        if cached is not None:
            return cached
        version, probs, labels = await self._serve(req.model, req.version, req.user_id, req.inputs, "v1", rid)
        names = await self._label_names(req.model, version)
        predictions = [
            {"label": label, "scores": {n: round(float(p), 6) for n, p in zip(names, row, strict=True)}}
            for label, row in zip(labels, probs, strict=True)
        ]
        return JSONResponse(
            {"model": req.model, "version": version, "request_id": rid, "cached": False, "predictions": predictions},
            headers={"X-Model-Version": version, "X-Request-ID": rid},
        )

    async def _from_cache(self, model: str, pinned: str | None, user_id: str | None, texts: list[str],
                          rid: str) -> JSONResponse | None:
        """Answer from the batch cache when every input is known for the live version the router picks."""
        if self.cache is None:
            return None
        version = self._version_for(model, pinned, user_id)
        table = self.view.tables.get(model)
        if table is None or table.weights.get(version, 0) <= 0:  # never a version that is not live
            return None
        try:
            preds = await asyncio.get_running_loop().run_in_executor(None, self.cache.lookup_many, model, version, texts)
        except Exception:  # noqa: BLE001 - a broken cache falls back to the model, never fails the request
            log.exception("prediction cache lookup failed")
            return None
        if any(p is None for p in preds):
            return None
        self.metrics.cache_hits.labels(model, version).inc(len(preds))
        for i, p in enumerate(preds):
            self.view.record(rid if len(preds) == 1 else f"{rid}.{i}", model, version, p["label"], user_id)
        return JSONResponse(
            {"model": model, "version": version, "request_id": rid, "cached": True, "predictions": preds},
            headers={"X-Model-Version": version, "X-Request-ID": rid},
        )

    async def _label_names(self, model: str, version: str) -> list[str]:
        """Class names in output order, from the version's card (cached per version)."""
        key = (model, version)
        if key not in self._names:
            record = self.view.registry.get_version(model, version)
            if record is None:
                raise ApiError(503, f"version {version} of model {model!r} is not registered")
            self._names[key] = list(record.card.labels)
        return self._names[key]

    @app.post("/v1/feedback")
    async def feedback(self, request: Request) -> JSONResponse:
        body = await self._body(request)
        try:
            fb = api_models.FeedbackRequest.model_validate_json(body)
        except ValidationError as e:
            raise ApiError(422, describe_validation(list(e.errors()))) from None
        loop = asyncio.get_running_loop()

        def write() -> None:
            self.view.flush()  # the prediction may still sit in the buffer
            self.view.registry.record_feedback(fb.request_id, label=fb.label, outcome=fb.outcome)

        try:
            await loop.run_in_executor(None, write)
        except UnknownRequestError:
            raise ApiError(404, f"request_id: no prediction recorded under {fb.request_id!r}") from None
        except RegistryError as e:
            raise ApiError(422, str(e)) from None
        return JSONResponse({"recorded": True, "request_id": fb.request_id})

    @app.get("/metrics")
    async def metrics(self) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    # ---- admin (bearer token) ------------------------------------------------------------------
    @app.get("/admin/models/{model}")
    async def admin_status(self, model: str, request: Request) -> dict:
        self._admin(request)
        self._known_model(model)
        reg = self.view.registry
        shadow = reg.get_shadow(model)
        return {
            "model": model,
            "traffic": reg.get_traffic(model),
            "shadow": shadow.model_dump() if shadow else None,
            "rollback_target": reg.rollback_target(model),
            "versions": [
                {"version": v.version, "status": v.status, "kind": v.card.kind, "accuracy": v.card.accuracy}
                for v in reg.list_versions(model)
            ],
            "history": [h.model_dump() for h in reg.history(model, limit=20)],
        }

    @app.post("/admin/models/{model}/traffic")
    async def admin_traffic(self, model: str, request: Request) -> dict:
        self._admin(request)
        self._known_model(model)
        body = api_models.TrafficRequest.model_validate_json(await self._body(request))
        for version, weight in body.weights.items():
            if weight > 0 and not await self._version_ready(model, version):
                raise ApiError(409, f"weights: version {version!r} is not deployed and ready; deploy it first")
        return await self._set_traffic(model, body.weights, body.reason)

    @app.post("/admin/models/{model}/deploy")
    async def admin_deploy(self, model: str, request: Request) -> dict:
        """Keep a version deployed without traffic; the serve runner deploys it within a second."""
        self._admin(request)
        self._known_model(model)
        body = api_models.DeployRequest.model_validate_json(await self._body(request))
        try:
            self.view.registry.set_warm(model, body.version, body.warm, body.reason)
        except RegistryError as e:
            raise ApiError(404, f"version: {e}") from None
        self.view.registry.record_event(model, "deploy_requested" if body.warm else "release_requested",
                                        f"version {body.version}: {body.reason}", {"version": body.version})
        return {"model": model, "version": body.version, "warm": body.warm,
                "ready": await self._version_ready(model, body.version)}

    @app.post("/admin/models/{model}/rollback")
    async def admin_rollback(self, model: str, request: Request) -> dict:
        self._admin(request)
        self._known_model(model)
        raw = await self._body(request)
        body = api_models.RollbackRequest.model_validate_json(raw or b"{}")
        target = body.to_version or self.view.registry.rollback_target(model)
        if target is None:
            raise ApiError(409, f"model {model!r} has no previous version to roll back to")
        if not await self._version_ready(model, target):
            raise ApiError(409, f"to_version: version {target!r} is not deployed and ready")
        return await self._set_traffic(model, {target: 100.0}, body.reason)

    async def _set_traffic(self, model: str, weights: dict[str, float], reason: str) -> dict:
        try:
            rec = self.view.registry.set_traffic(model, weights, reason=reason, actor="admin-api")
        except RegistryError as e:
            raise ApiError(422, f"weights: {e}") from None
        self.view.refresh()
        # The audit trail of a switchover: what was live, what is now, and why.
        self.view.registry.record_event(model, "traffic", f"{rec.previous} -> {rec.traffic}: {reason}",
                                        {"before": rec.previous, "after": rec.traffic, "actor": "admin-api"})
        return {"model": model, "traffic": rec.traffic, "previous": rec.previous, "id": rec.id}

    def __del__(self) -> None:
        stop = getattr(self, "_watch_stop", None)
        if stop is not None:
            stop.set()
        http = getattr(self, "_http", None)
        if http is not None:
            http.stop()
        view = getattr(self, "view", None)
        if view is not None:
            view.close()
