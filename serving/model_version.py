"""`ModelVersion`: one Ray Serve deployment per live model version.

Each replica owns one backend (a private `tritonserver` serving just this version, or the
in-process model) created in `__init__`, checked by Serve's health checks, and closed in
`__del__`; a replica whose Triton died fails its health check and Serve replaces it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from ray import serve

from serving.backends import BackendUnavailable, Failure, ModelError, make_backend

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
                 gpu: bool = False, torch_threads: int | None = None) -> None:
        self.model, self.version = model, version
        self.backend = make_backend(backend, Path(repository), model, version, gpu=gpu, torch_threads=torch_threads)
        log.info("ModelVersion %s v%s ready on %s backend", model, version, backend)

    async def predict(self, texts: list[str]) -> tuple[np.ndarray, list[str]] | Failure:
        """Probabilities [N, C] and labels, or a Failure: "model" (-> 500) or "unavailable" (-> 503)."""
        try:
            return await self.backend.infer(texts)
        except ModelError as e:
            return Failure("model", str(e))
        except BackendUnavailable as e:
            return Failure("unavailable", str(e))

    async def ready(self) -> bool:
        return self.backend.healthy()

    def check_health(self) -> None:
        if not self.backend.healthy():
            raise RuntimeError(f"backend of {self.model} v{self.version} is not healthy")

    def __del__(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
