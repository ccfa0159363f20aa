"""Entry points of a Ray Serve config file: the same applications `distilserve serve` deploys.

`distilserve serve` deploys from Python: `ingress_app` (serving/ingress.py), `version_app`
(serving/model_version.py) and `controller_app` (serving/control/controller.py), each next to its
deployment. A Ray Serve config file (`serve deploy`, KubeRay's RayService `serveConfigV2`)
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

from ray.serve import Application

from serving.config import ServeConfig
from serving.ingress import ingress_app
from serving.model_version import version_app


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
