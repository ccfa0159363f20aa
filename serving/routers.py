"""Routers that features add to the ingress app without editing the Ingress class.

Each module listed in ROUTER_MODULES exposes `router: fastapi.APIRouter`; its handlers get
the live Ingress as `request.app.state.ingress` (its `view.registry`, `_admin(request)`,
`_serve(...)`, `metrics`, ...).
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

ROUTER_MODULES: tuple[str, ...] = (
    "serving.admin_rollouts",
    "serving.http.admin_versions",
)


def extra_routers() -> list[APIRouter]:
    return [importlib.import_module(name).router for name in ROUTER_MODULES]
