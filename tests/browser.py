"""A real headless Chromium (Debian's), driven over the DevTools protocol: open a page, wait for the DOM to show
something, and list every request the page made. Chromium resolves no host name but 127.0.0.1, so a page that
needed the internet would fail here as it does on a bank network with none."""

import asyncio
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import websockets

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-port=0",
]


class Page:
    """One tab: `requests` lists the URL of every request it sent (the document, scripts, styles, fetches)."""

    def __init__(self, browser: "Browser", session_id: str) -> None:
        self.browser, self.session_id = browser, session_id
        self.requests: list[str] = []

    async def send(self, method: str, **params):
        return await self.browser.send(method, session_id=self.session_id, **params)

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, until, timeout: float = 30):
        """Evaluate `expression` until `until(value)` holds; returns the last value (also on time-out)."""
        deadline, value = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if until(value):
                break
            await asyncio.sleep(0.2)
        return value


class Browser:
    """`async with Browser() as browser: page = await browser.open(url)`."""

    async def __aenter__(self) -> "Browser":
        self.profile = tempfile.mkdtemp(prefix="tierwise-chromium-")
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if time.monotonic() > deadline or self.process.poll() is not None:
                await self.__aexit__(None, None, None)
                raise RuntimeError("chromium did not start")
            await asyncio.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.socket = await websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None)
        self.ids, self.pending, self.pages = itertools.count(1), {}, {}
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for raw in self.socket:
            message = json.loads(raw)
            if "id" in message:
                future = self.pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
            elif message.get("method") == "Network.requestWillBeSent":
                page = self.pages.get(message.get("sessionId"))
                if page is not None:
                    page.requests.append(message["params"]["request"]["url"])

    async def send(self, method: str, session_id: str | None = None, **params):
        command_id = next(self.ids)
        future = self.pending[command_id] = asyncio.get_running_loop().create_future()
        message = {"id": command_id, "method": method, "params": params}
        if session_id:
            message["sessionId"] = session_id
        await self.socket.send(json.dumps(message))
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def open(self, url: str) -> Page:
        target = await self.send("Target.createTarget", url="about:blank")
        session = await self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        page = self.pages[session["sessionId"]] = Page(self, session["sessionId"])
        await page.send("Network.enable")
        await page.send("Page.enable")
        await page.send("Page.navigate", url=url)
        return page

    async def __aexit__(self, *exc) -> None:
        if getattr(self, "socket", None) is not None:
            self.reader.cancel()
            await self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
