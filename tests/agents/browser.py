"""Driving headless chromium over the DevTools protocol, for the page tests.

Debian's ``chromium``, started headless on a page, and a tiny CDP client
(:class:`Page`) over aiohttp's websocket: call a method, evaluate JavaScript,
wait for a condition, take a screenshot. Screenshots are kept under
``test-artifacts/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from support import REPO, http, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Where screenshots are kept for people to look at (git-ignored).
ARTIFACTS = REPO / "test-artifacts"


# ----------------------------------------------------------- a tiny CDP client
class Page:
    """One chromium tab driven over the Chrome DevTools Protocol (aiohttp websocket)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:  # events arrive in between; skip them
            msg = json.loads((await self.ws.receive()).data)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]

    async def eval(self, expression: str):
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = await self.eval(expression)
            if last:
                return last
            await asyncio.sleep(0.2)
        raise AssertionError(f"page: timed out waiting for {what}; last: {last!r}")

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))


def start_chromium(url: str, profile: Path, path: str) -> tuple[subprocess.Popen, str]:
    """Headless chromium on ``url``; the process and the websocket URL of its page at ``path``."""
    stderr_path = profile.with_suffix(".stderr")
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1400,1100",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )

    def devtools_port() -> int | None:
        found = re.search(rb"DevTools listening on ws://[^:]+:(\d+)/", stderr_path.read_bytes())
        if proc.poll() is not None:
            raise AssertionError(f"chromium exited: {stderr_path.read_text(errors='replace')}")
        return int(found.group(1)) if found else None

    port = wait_until(devtools_port, what="chromium's DevTools port")

    def page_ws() -> str | None:
        _, targets = http("GET", f"http://127.0.0.1:{port}/json/list")
        pages = [t for t in targets if t.get("type") == "page" and path in t.get("url", "")]
        return pages[0]["webSocketDebuggerUrl"] if pages else None

    return proc, wait_until(page_ws, what="the page target")


def keep(screenshot: Path, name: str) -> Path:
    """Copy a screenshot to test-artifacts/ for a person to look at; print where."""
    ARTIFACTS.mkdir(exist_ok=True)
    kept = ARTIFACTS / name
    shutil.copy(screenshot, kept)
    print(f"\nscreenshot kept: {kept}", file=sys.__stderr__, flush=True)
    return kept


@contextlib.asynccontextmanager
async def open_page(ws_url: str, width: int = 1400, height: int = 1100) -> AsyncIterator[Page]:
    """The tab at ``ws_url`` as a :class:`Page`, its viewport ``width`` x ``height``."""
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        page = Page(ws)
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        yield page
