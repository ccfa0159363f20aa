"""The Ray Serve applications: one per live model version, plus the ingress at '/'.

`distilserve serve` deploys them from Python (serving/runner.py calls `version_app` and
`ingress_app`). A Ray Serve config file (`serve deploy`, KubeRay's RayService `serveConfigV2`)
names an import path and arguments instead; `build_ingress` and `build_version` turn those
arguments back into the same applications:

    import_path: serving.applications:build_ingress   args: {config: {...ServeConfig...}}
    import_path: serving.applications:build_version   args: {config: {...}, model: m, version: "1"}
    import_path: serving.applications:build_controller   args: {config: {...}}

Builders run in a Ray task on whichever node Serve picks, so nothing here may assume local
files: registering the repository's versions happens in a task pinned (by a custom
resource) to the node that holds the SQLite registry.
"""

from __future__ import annotations

import os
from pathlib import Path

from ray.serve import Application

from serving.config import ServeConfig
from serving.ingress import Ingress
from serving.model_version import ModelVersion
from serving.registry.db import is_url


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


def ingress_app(cfg: ServeConfig, control_plane: str = "registry") -> Application:
    """The Ingress deployment; the admin token travels as an argument, never in the config dump."""
    resolved = cfg.model_copy(
        update={"registry": cfg.registry if is_url(cfg.registry) else Path(cfg.registry).resolve(),
                "model_repository": Path(cfg.model_repository).resolve()}
    )
    token = cfg.admin_token.get_secret_value() if cfg.admin_token else None
    return Ingress.options(num_replicas=cfg.ingress_replicas, ray_actor_options={"num_cpus": 0}).bind(
        resolved.model_dump(mode="json", exclude={"admin_token"}), token, control_plane
    )


def _config(args: dict) -> ServeConfig:
    if "config" not in args:
        raise ValueError("args must hold 'config' (a ServeConfig mapping), e.g. {'config': {'models': ['sentiment']}}")
    data = dict(args["config"])
    # The admin token never travels in a config file: it comes from the pod's environment.
    if "admin_token" not in data and os.environ.get("DISTILSERVE_ADMIN_TOKEN"):
        data["admin_token"] = os.environ["DISTILSERVE_ADMIN_TOKEN"]
    return ServeConfig.model_validate(data)


def _prepare_registry(config: dict) -> None:
    """Register the repository's versions and give new models their initial traffic."""
    from serving.runner import Runner

    Runner(ServeConfig.model_validate(config)).prepare()


def build_ingress(args: dict) -> Application:
    """The ingress application; `registry_resource` pins registration to the registry's node."""
    cfg = _config(args)
    resource = args.get("registry_resource")
    if resource:
        import ray

        task = ray.remote(num_cpus=0, resources={resource: 0.001})(_prepare_registry)
        ray.get(task.remote(cfg.model_dump(mode="json", exclude={"admin_token"})))
    else:
        _prepare_registry(cfg.model_dump(mode="json", exclude={"admin_token"}))
    return ingress_app(cfg, args.get("control_plane", "registry"))


def build_version(args: dict) -> Application:
    """The ModelVersion application of one model version."""
    cfg = _config(args)
    model, version = args.get("model"), args.get("version")
    if not isinstance(model, str) or not isinstance(version, str):
        raise ValueError(f"args need 'model' and 'version' strings like 'sentiment' and '1', got {model!r}, {version!r}")
    return version_app(cfg, model, version)


def build_controller(args: dict) -> Application:
    """The controller application: reconcile, rollouts, retention, the traffic snapshot."""
    from serving.control.controller import controller_app

    return controller_app(_config(args))
