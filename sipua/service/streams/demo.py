"""``GET /demo``: a static page that streams the microphone to a session (docs/STREAMS.md).

The page creates nothing: given a session's ``stream.url`` and ``stream.token`` (form fields or
the URL fragment ``#url=…&token=…``) it opens the browser stream, sends the microphone as 16 kHz
PCM and plays what comes back. Files are served from ``sipua/service/static``, whitelisted.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

__all__ = ["STATIC_DIR", "demo_router"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_FILES = {
    "demo.js": "text/javascript; charset=utf-8",
    "pcm-worklet.js": "text/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # Our own scripts only; the stream may live on another host (ws:/wss: anywhere).
    "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
}


def demo_router() -> APIRouter:
    router = APIRouter(tags=["streams"], include_in_schema=False)

    @router.get("/demo")
    async def demo_page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "demo.html", media_type="text/html; charset=utf-8", headers=_HEADERS
        )

    @router.get("/demo/")
    async def demo_slash() -> RedirectResponse:
        return RedirectResponse("../demo", status_code=308)

    @router.get("/demo/{name}")
    async def demo_file(name: str) -> FileResponse:
        media_type = _FILES.get(name)
        if media_type is None:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_HEADERS)

    return router
