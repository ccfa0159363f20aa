"""`ModelVersion`: one Ray Serve deployment per live model version.

Each replica owns one backend (a private `tritonserver` serving just this version, or the
in-process model) created in `__init__`, checked by Serve's health checks, and closed in
`__del__`; a replica whose Triton died fails its health check and Serve replaces it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
from ray import serve
from ray.serve import Application

from serving import raycompat
from serving.backends import TritonBackend, make_backend
from serving.config import ServeConfig
from serving.cpu_affinity import parse_cpu_list, pin_process
from serving.transport import endpoints
from serving.transport.failure import Failure

log = logging.getLogger("ray.serve")


@serve.deployment(
    name="ModelVersion",
    max_ongoing_requests=32,
    health_check_period_s=2.0,
    health_check_timeout_s=15.0,
    graceful_shutdown_wait_loop_s=0.5,
    graceful_shutdown_timeout_s=10.0,
)
class ModelVersion:
    def __init__(self, repository: str, model: str, version: str, backend: str = "triton",
                 gpu: bool = False, torch_threads: int | None = None, model_instances: int | None = None,
                 cpus: str | None = None) -> None:
        self.model, self.version = model, version
        if cpus:  # before the backend starts: its Triton and model processes inherit the mask
            pin_process(parse_cpu_list(cpus), setting="model_cpus")
        self.backend = make_backend(backend, Path(repository), model, version, gpu=gpu, torch_threads=torch_threads,
                                    instances=model_instances)
        self._endpoint: endpoints.Endpoint | None = None
        if isinstance(self.backend, TritonBackend):
            import ray

            raycompat.check_internal_kv()  # where the endpoint is published
            ctx = serve.get_replica_context()
            self._endpoint = endpoints.Endpoint(
                app=ctx.app_name, replica=ctx.replica_id.unique_id, node=ray.get_runtime_context().get_node_id(),
                grpc=self.backend.server.grpc_url, ts=time.time(), instances=self.backend.instances)
            self._publish()
        log.info("ModelVersion %s v%s ready on %s backend", model, version, backend)

    def _publish(self) -> None:
        """Tell same-node ingresses where this replica's Triton listens (serving/transport/endpoints.py)."""
        if self._endpoint is None:
            return
        self._endpoint = dataclasses.replace(self._endpoint, ts=time.time())
        try:
            endpoints.publish(self._endpoint)
        except Exception:  # noqa: BLE001 - the Serve path still works without it
            log.exception("could not publish the Triton endpoint of %s v%s", self.model, self.version)

    async def predict(self, texts: list[str]) -> tuple[np.ndarray, list[str]] | Failure:
        """Probabilities [N, C] and labels, or a Failure: "model" (-> 500) or "unavailable" (-> 503),
        returned as a value so the message crosses the Ray hop unwrapped."""
        try:
            return await self.backend.infer(texts)
        except Failure as e:
            return e

    async def model_config(self) -> dict:
        """Triton's JSON model config of this version (GET /v2/models/{m}/config)."""
        return await self.backend.model_config()

    async def ready(self) -> bool:
        return self.backend.healthy()

    def check_health(self) -> None:
        if not self.backend.healthy():
            raise RuntimeError(f"backend of {self.model} v{self.version} is not healthy")
        self._publish()  # only a healthy replica keeps its endpoint fresh

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Custom autoscaling metric: texts inside this replica's Triton, whichever path they took
        (serving/autoscale_policy.py compares it with Serve's own count of ongoing requests)."""
        if isinstance(self.backend, TritonBackend):
            return {"triton_concurrency": self.backend.concurrency()}
        return {"triton_concurrency": 0.0}

    def __del__(self) -> None:
        endpoint = getattr(self, "_endpoint", None)
        if endpoint is not None:
            try:
                endpoints.withdraw(endpoint.app, endpoint.replica)
            except Exception:  # noqa: BLE001 - the entry goes stale and is ignored anyway
                pass
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()


def version_app(cfg: ServeConfig, model: str, version: str) -> Application:
    """The ModelVersion deployment of one version, autoscaled on ongoing requests."""
    actor = {"num_cpus": cfg.replica_cpus}
    if cfg.gpu > 0:
        actor["num_gpus"] = cfg.gpu
    return ModelVersion.options(
        autoscaling_config=cfg.autoscaling.to_serve(),
        ray_actor_options=actor,
        max_constructor_retry_count=cfg.deploy_attempts,
    ).bind(
        str(Path(cfg.model_repository).resolve()),
        model,
        version,
        cfg.backend,
        cfg.gpu > 0,
        cfg.torch_threads,
        cfg.model_instances,
        cfg.model_cpus,
    )
