"""Headless Chromium driven over the Chrome DevTools Protocol, for the page's browser tests.

Chromium is started with `--remote-debugging-port=0` (it prints the port it took on stderr)
and driven over one WebSocket with the `websockets` package: no Selenium, no Playwright.
Screenshots are PNGs, decoded here with zlib and numpy (no imaging library needed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import struct
import tempfile
import zlib
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = (1440, 1000)


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class CdpError(Exception):
    pass


class Browser:
    """One headless Chromium with one page; `async with Browser(path) as page: ...`.
    `viewport` is the page's (width, height) in CSS pixels; `mobile` emulates a phone
    (the page's `<meta name="viewport">` then sets its layout width, as on a phone)."""

    def __init__(
        self, executable: str, viewport: tuple[int, int] = VIEWPORT, mobile: bool = False
    ) -> None:
        self.executable = executable
        self.viewport = viewport
        self.mobile = mobile
        self._profile = tempfile.TemporaryDirectory(prefix="hub-chromium-")
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.console: list[str] = []
        self.session = ""

    async def __aenter__(self) -> Browser:
        self.process = await asyncio.create_subprocess_exec(
            self.executable,
            "--headless",
            "--no-sandbox",  # CI runs as root, where the sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--mute-audio",
            "--remote-debugging-port=0",
            f"--user-data-dir={self._profile.name}",
            f"--window-size={self.viewport[0]},{self.viewport[1]}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            url = await asyncio.wait_for(self._devtools_url(), 30)
            self.ws: ClientConnection = await connect(url, max_size=None)
            self._reader = asyncio.create_task(self._read())
            target = await self.call("Target.createTarget", url="about:blank")
            attached = await self.call(
                "Target.attachToTarget", targetId=target["targetId"], flatten=True
            )
            self.session = attached["sessionId"]
            width, height = self.viewport
            await self.call(
                "Emulation.setDeviceMetricsOverride",
                width=width, height=height, deviceScaleFactor=1, mobile=self.mobile,
            )  # fmt: skip
            await self.call("Runtime.enable")
            await self.call("Page.enable")
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if getattr(self, "_reader", None) is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._profile.cleanup()

    async def _devtools_url(self) -> str:
        assert self.process.stderr is not None
        seen = []
        while line := await self.process.stderr.readline():
            text = line.decode(errors="replace")
            seen.append(text)
            found = re.search(r"DevTools listening on (ws://\S+)", text)
            if found:
                # Keep draining stderr, or a chatty Chromium blocks on a full pipe.
                self._drain = asyncio.create_task(self._drain_stderr())
                return found.group(1)
        raise CdpError("Chromium exited before opening DevTools: " + "".join(seen)[-2000:])

    async def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        while await self.process.stderr.readline():
            pass

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            waiter = self._waiting.pop(message.get("id", -1), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
            elif message.get("method") == "Runtime.consoleAPICalled":
                args = message["params"]["args"]
                self.console.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in args)
                )
            elif message.get("method") == "Runtime.exceptionThrown":
                self.console.append(json.dumps(message["params"]["exceptionDetails"])[:500])

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        waiter = self._waiting[ident] = asyncio.get_running_loop().create_future()
        body: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if self.session:
            body["sessionId"] = self.session
        await self.ws.send(json.dumps(body))
        message = await asyncio.wait_for(waiter, 30)
        if "error" in message:
            raise CdpError(f"{method}: {message['error']}")
        return message.get("result", {})

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 30.0) -> Any:
        """Poll a JavaScript condition until it is truthy (a page still loading counts as
        false); returns its value, or fails naming the condition and its last value."""
        deadline = asyncio.get_running_loop().time() + within
        value: Any = None
        while True:
            with contextlib.suppress(CdpError):
                value = await self.evaluate(expression)
                if value:
                    return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"expected within {within}s: {expression}; last value {value!r}"
                )
            await asyncio.sleep(0.05)

    async def screenshot(self, clip: tuple[float, float, float, float] | None = None) -> bytes:
        """A PNG of the viewport, or of the (x, y, width, height) part of it."""
        # optimizeForSpeed: Chromium then filters every row with Up, which decodes in a
        # vector step per row (its default mixes in Paeth, a Python loop per byte).
        # Two animation frames first: what the page last drew is then on screen, not a
        # frame composited before it (a loaded machine lags the compositor).
        await self.evaluate(
            "new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"
        )
        params: dict[str, Any] = {"format": "png", "optimizeForSpeed": True}
        if clip is not None:
            x, y, width, height = clip
            params["clip"] = {"x": x, "y": y, "width": width, "height": height, "scale": 1}
        shot = await self.call("Page.captureScreenshot", **params)
        return base64.b64decode(shot["data"])

    async def mouse_move(self, x: float, y: float) -> None:
        await self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA PNG (what Chromium writes) as an array of shape (h, w, 3)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    position, idat, header = 8, [], b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunk = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat.append(chunk)
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}")
    channels = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, -1)
    out = np.zeros((height, width * channels), np.uint8)
    previous = np.zeros(width * channels, np.int32)
    for y in range(height):
        kind, line = int(raw[y, 0]), raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum along the row, per channel
            row = np.cumsum(line.reshape(width, channels), axis=0).reshape(-1) & 0xFF
        elif kind == 2:  # Up
            row = (line + previous) & 0xFF
        else:  # Average and Paeth depend on the byte just decoded: one at a time
            row = _sequential(kind, line.tolist(), previous.tolist(), channels)
        out[y] = row
        previous = row
    return out.reshape(height, width, channels)[:, :, :3]


def _sequential(kind: int, line: list[int], up: list[int], bpp: int) -> np.ndarray:
    row = [0] * len(line)
    for i, value in enumerate(line):
        left = row[i - bpp] if i >= bpp else 0
        if kind == 3:
            row[i] = (value + ((left + up[i]) >> 1)) & 0xFF
            continue
        upper_left = up[i - bpp] if i >= bpp else 0
        estimate = left + up[i] - upper_left
        pa, pb, pc = abs(estimate - left), abs(estimate - up[i]), abs(estimate - upper_left)
        best = left if pa <= pb and pa <= pc else up[i] if pb <= pc else upper_left
        row[i] = (value + best) & 0xFF
    return np.array(row, np.int32)
