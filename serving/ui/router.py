"""`GET /ui` (the operator page), `/ui/static/<file>` (its assets), `GET /ui/api/state` (read-only JSON).

The page needs no token to look; actions call the admin API with the token the operator types,
which stays in the browser's sessionStorage. The state comes from an injected `UiSource`:
`app.state.ui_source` when the app provides one, the control plane's, else an adapter over the registry view.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from serving.errors import ApiError
from serving.http.deps import services
from serving.ui.source import RegistrySource, UiSource
from serving.ui.state import ui_state

log = logging.getLogger("distilserve.ui")
router = APIRouter()
STATIC = Path(__file__).parent / "static"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# Every asset is ours and same-origin: no inline script, no third party, no framing.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
ASSETS = {p.name: p for p in STATIC.iterdir() if p.suffix in _TYPES} if STATIC.is_dir() else {}


async def ui_source(request: Request) -> UiSource:
    """The injected reader: the app's own when it set one, the control plane's (the controller's
    snapshot reader), else an adapter over the ingress's registry view."""
    state = request.app.state
    source = getattr(state, "ui_source", None)
    if source is None:
        found = services(request)
        source = found.ui_source or RegistrySource(found.control.registry, found.control.models)
        state.ui_source = source
    return source


@router.get("/ui", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type=_TYPES[".html"], headers=_HEADERS)


@router.get("/ui/", include_in_schema=False)
async def page_slash() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    path = ASSETS.get(name)  # only files shipped in the package: no path is built from the request
    if path is None:
        raise ApiError(404, f"name: no asset {name[:80]!r}; assets: {sorted(ASSETS)}")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)


@router.get("/ui/api/state")
async def state(source: UiSource = Depends(ui_source)) -> JSONResponse:  # noqa: B008 - FastAPI's idiom
    # Registry reads block (SQLite): a worker thread, never the event loop.
    try:
        body = await run_in_threadpool(ui_state, source, time.time())
    except ValidationError:
        # A record the page cannot shape is our fault, not the browser's: a 500, not the app's 422.
        log.exception("could not shape the operator page's state")
        raise ApiError(500, "internal server error: could not read the state; see the server log") from None
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
