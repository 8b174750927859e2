"""/docs and /redoc render with no internet: a real headless Chromium that resolves no host but loopback opens them
from a live uvicorn, every operation of the spec is rendered, and no request left loopback."""

import asyncio
import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.core.config import Settings
from app.core.docs import ASSETS_DIR, REDOC_BADGE_URL
from app.main import create_app
from bench.harness import plain_dsn, serve
from tests.browser import CHROMIUM, Browser

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: `apt-get install -y chromium` (.ci/run installs it)"
)
SPEC = create_app(Settings(environment="test")).openapi()
OPERATIONS = sum(len(operations) for operations in SPEC["paths"].values())
OPERATION_IDS = {operation["operationId"] for operations in SPEC["paths"].values() for operation in operations.values()}


@pytest.fixture(scope="module")
def live_server(database_url):
    with serve(plain_dsn(database_url)) as base:
        yield base


def _left_loopback(requests: list[str]) -> list[str]:
    return [
        url
        for url in requests
        if urlsplit(url).scheme not in ("data", "blob", "about") and urlsplit(url).hostname != "127.0.0.1"
    ]


async def _scroll_through(page) -> set[str]:
    """The operation ids Swagger UI showed while the page was scrolled from top to bottom, as a reader would.
    Swagger UI (5.3x) virtualises the operation list once it has 150 rows (tags and operations): only the rows near
    the viewport are in the DOM at any time, so a count of `.opblock` at one moment is a viewport's worth."""
    seen: set[str] = set()
    await page.wait_for("document.querySelectorAll('.opblock').length", lambda n: bool(n))
    position, unchanged = None, 0
    while unchanged < 5:
        ids = "Array.from(document.querySelectorAll('.opblock-summary-operation-id')).map(e => e.textContent)"
        seen.update(await page.evaluate(ids))
        scrolled = await page.evaluate("window.scrollBy(0, 300); [window.scrollY, document.body.scrollHeight]")
        unchanged = unchanged + 1 if scrolled == position else 0
        position = scrolled
        await asyncio.sleep(0.05)
    return seen


@needs_chromium
async def test_swagger_ui_renders_every_operation_with_no_internet(live_server):
    async with Browser() as browser:
        page = await browser.open(live_server + "/docs")
        seen = await _scroll_through(page)
        assert seen == OPERATION_IDS, f"{len(seen & OPERATION_IDS)} of {len(OPERATION_IDS)} operations rendered"
        assert await page.evaluate("document.querySelectorAll('.fallback').length") == 0  # no component failed
    assert any(url.endswith("/openapi.json") for url in page.requests)
    assert any(url.endswith("/docs/assets/swagger-ui-bundle.js") for url in page.requests)
    assert _left_loopback(page.requests) == []


@needs_chromium
async def test_redoc_renders_every_operation_with_no_internet(live_server):
    async with Browser() as browser:
        page = await browser.open(live_server + "/redoc")
        count = "document.querySelectorAll('[data-section-id*=\"/operation/\"]').length"
        rendered = await page.wait_for(count, lambda n: n == OPERATIONS)
        assert rendered == OPERATIONS, f"{rendered} of {OPERATIONS} operations rendered"
        # the sidebar's "API docs by Redocly" badge, drawn late: its words stay, its (empty) image is dropped
        badge = "document.querySelectorAll('a[href=\"https://redocly.com/redoc/\"]').length"
        assert await page.wait_for(badge, bool) == 1
        await asyncio.sleep(0.5)
        assert await page.evaluate("document.querySelectorAll('img[alt=\"redocly logo\"]').length") == 0
    assert any(url.endswith("/docs/assets/redoc.standalone.js") for url in page.requests)
    assert _left_loopback(page.requests) == []


async def test_docs_pages_load_nothing_but_the_service_own_assets(client):
    for path in ("/docs", "/redoc"):
        html = (await client.get(path)).text
        assert "http://" not in html.replace("http://tierwise.test", "") and "https://" not in html, html
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon-32x32.png"):
        response = await client.get(f"/docs/assets/{name}")
        assert response.status_code == 200 and len(response.content) > 0


async def test_redoc_is_served_without_its_cdn_badge(client):
    """ReDoc's badge image points at its CDN (no option hides it): the served bundle points it at an empty image,
    and nothing else in it is loaded from outside (the pinned file on disk is unchanged)."""
    pinned = (ASSETS_DIR / "redoc.standalone.js").read_bytes()
    assert REDOC_BADGE_URL.encode() in pinned  # a new release without it: drop the rewrite in app/core/docs.py
    served = (await client.get("/docs/assets/redoc.standalone.js")).content
    assert REDOC_BADGE_URL.encode() not in served and b'src:"data:,"' in served
    assert re.findall(rb'src:"https?://[^"]*"|url\(https?://[^)]*\)', served) == []
    assert len(served) == len(pinned) - len(REDOC_BADGE_URL) + len("data:,")


def test_docs_assets_are_the_pinned_release_files():
    manifest = json.loads((ASSETS_DIR / "ASSETS.json").read_text())
    for package in manifest["packages"]:
        assert package["version"] and package["integrity"].startswith("sha512-")
        for file in package["files"]:
            digest = hashlib.sha256(Path(ASSETS_DIR / file["name"]).read_bytes()).hexdigest()
            assert digest == file["sha256"], f"{file['name']} differs from {package['name']}@{package['version']}"
