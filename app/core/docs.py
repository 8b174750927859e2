"""Swagger UI at /docs and ReDoc at /redoc, served with their scripts and styles from the service itself, so they
render on a bank network with no internet (app/static/docs: pinned npm releases, see ASSETS.json there)."""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(__file__).resolve().parents[1] / "static" / "docs"
ASSETS_URL = "/docs/assets"
REDOC_BADGE_URL = "https://cdn.redoc.ly/redoc/logo-mini.svg"
"""ReDoc draws an "API docs by Redocly" badge whose image it loads from its CDN (no option turns it off). The bundle
is served with that one URL replaced by an empty image (`data:,`, which fails to decode, so ReDoc hides it and keeps
the words): nothing is fetched from outside. The file on disk stays the pinned npm release, byte for byte."""

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    # validatorUrl None: Swagger UI would otherwise load a badge from its public validator
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Tierwise - Swagger UI",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True, "displayOperationId": True},
    )


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="Tierwise - ReDoc",
        redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        with_google_fonts=False,
    )


def _redoc_bundle() -> bytes:
    bundle = (ASSETS_DIR / "redoc.standalone.js").read_bytes()
    if REDOC_BADGE_URL.encode() not in bundle:  # a new ReDoc release: look again at what it loads (test_docs_offline)
        return bundle
    return bundle.replace(REDOC_BADGE_URL.encode(), b"data:,")


_REDOC_BUNDLE = _redoc_bundle()


@router.get(f"{ASSETS_URL}/redoc.standalone.js")
async def redoc_bundle() -> Response:
    # before the static mount, which serves every other asset as it is
    return Response(_REDOC_BUNDLE, media_type="text/javascript")


def install_docs(app: FastAPI) -> None:
    """The two documentation pages and their assets (the app is created with docs_url and redoc_url off)."""
    app.include_router(router)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
