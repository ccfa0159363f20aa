"""Ray Serve applications: one per live model version, plus the ingress at '/'."""

from __future__ import annotations

from pathlib import Path

from ray.serve import Application

from distilserve.core.names import app_name
from serving.config import ServeConfig
from serving.ingress import Ingress
from serving.model_version import ModelVersion

INGRESS_APP = "ingress"


def version_app(cfg: ServeConfig, model: str, version: str) -> Application:
    """The ModelVersion deployment of one version, autoscaled on ongoing requests."""
    actor = {"num_cpus": cfg.replica_cpus}
    if cfg.gpu > 0:
        actor["num_gpus"] = cfg.gpu
    return ModelVersion.options(
        autoscaling_config=cfg.autoscaling.to_serve(),
        ray_actor_options=actor,
    ).bind(
        str(Path(cfg.model_repository).resolve()),
        model,
        version,
        cfg.backend,
        cfg.gpu > 0,
        cfg.torch_threads,
    )


def ingress_app(cfg: ServeConfig) -> Application:
    resolved = cfg.model_copy(
        update={"registry": Path(cfg.registry).resolve(), "model_repository": Path(cfg.model_repository).resolve()}
    )
    token = cfg.admin_token.get_secret_value() if cfg.admin_token else None
    return Ingress.options(num_replicas=cfg.ingress_replicas, ray_actor_options={"num_cpus": 0}).bind(
        resolved.model_dump(mode="json", exclude={"admin_token"}), token
    )


__all__ = ["INGRESS_APP", "app_name", "ingress_app", "version_app"]
