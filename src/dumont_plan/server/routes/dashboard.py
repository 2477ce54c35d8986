"""`GET /dashboard`: the spot dashboard, a static page and its script, served by the control plane.

The page signs in with the same account (`POST /api/v1/auth/login`, the token kept in the
tab's sessionStorage; `/dashboard#token=...` hands one over instead, the fragment never
reaching a server) and draws its charts as inline SVG from `/api/v1/spot/dashboard/*`. No
library and no CDN: the page loads nothing but its own three files, which the
Content-Security-Policy enforces.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter(tags=["dashboard"], include_in_schema=False)

ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return resources.files("dumont_plan.server").joinpath("static", name).read_bytes()


@router.get("/dashboard")
def page() -> Response:
    return Response(_read("dashboard.html"), media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/dashboard/{asset}")
def asset(asset: str) -> Response:
    media = ASSETS.get(asset)
    if media is None:
        raise HTTPException(404, f"No dashboard file {asset!r}")
    return Response(_read(asset), media_type=media, headers=HEADERS)
