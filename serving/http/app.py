"""The ingress's FastAPI app: error handlers and every router, included explicitly."""

from __future__ import annotations

import uuid

from fastapi import FastAPI

from serving.errors import install_handlers
from serving.http import admin, oip, triton_ext, v1
from serving.http.deps import Services, attach_services
from serving.ui import router as ui_router


def build_app() -> FastAPI:
    app = FastAPI(title="distilserve", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.app_id = uuid.uuid4().hex  # travels with Serve's frozen copy of the app (serving/http/deps.py)
    install_handlers(app)
    app.include_router(triton_ext.router)  # before oip: /v2/models/stats is not a model
    app.include_router(oip.router)
    app.include_router(v1.router)
    app.include_router(admin.router)
    app.include_router(ui_router.router)
    return app


def attach(app: FastAPI, services: Services) -> None:
    """Give the routers the live services (called by the Ingress deployment when it starts)."""
    app.state.services = services
    attach_services(app.state.app_id, services)
