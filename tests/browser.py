"""A real headless Chromium, driven over the DevTools protocol on a pipe (no extra library):
opens a page, collects console messages, errors and log entries, measures elements and
takes a screenshot."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("chromium is not installed (scripts/test installs Debian's)")
    return found


@dataclass
class Page:
    problems: list[str] = field(default_factory=list)  # console errors, exceptions, log errors
    boxes: dict[str, dict[str, float]] = field(default_factory=dict)
    screenshot: bytes = b""


class _Pipe:
    def __init__(self, send: int, receive: int) -> None:
        self._send = os.fdopen(send, "wb", buffering=0)
        self._receive = os.fdopen(receive, "rb", buffering=0)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    def _message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = self._receive.read(65536)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next += 1
        request: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            request["sessionId"] = session
        self._send.write(json.dumps(request).encode() + b"\0")
        while True:
            message = self._message()
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._message())


def _problems(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning"):
            out.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            out.append(f"log {params['entry'].get('source')}: {params['entry'].get('text')}")
    return out


def open_page(path: Path, selectors: dict[str, str], width: int = 1000) -> Page:
    """Load `path`, then measure each selector's element and screenshot the whole page."""
    commands_r, commands_w = os.pipe()
    replies_r, replies_w = os.pipe()
    with tempfile.TemporaryDirectory(prefix="maild-chromium-") as profile:
        def fds() -> None:
            """The protocol's pipe is the child's fds 3 (commands) and 4 (replies): moved
            out of the way first, so that neither dup2 overwrites the other's source."""
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_r, replies_w)]
            for target, fd in zip((3, 4), high, strict=True):
                os.dup2(fd, target)
                os.set_inheritable(target, True)

        process = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            close_fds=False, preexec_fn=fds,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(commands_r)
        os.close(replies_w)
        pipe = _Pipe(commands_w, replies_r)
        try:
            target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
            session = pipe.call("Target.attachToTarget", targetId=target,
                                flatten=True)["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                pipe.call(f"{domain}.enable", session)
            pipe.call("Emulation.setDeviceMetricsOverride", session, width=width,
                      height=800, deviceScaleFactor=1, mobile=False)
            pipe.events.clear()
            pipe.call("Page.navigate", session, url=path.resolve().as_uri())
            pipe.wait_for("Page.loadEventFired")
            script = ("JSON.stringify(Object.fromEntries(Object.entries("
                      + json.dumps(selectors) + ").map(([k, s]) => {"
                      "const e = document.querySelector(s); if (!e) return [k, null];"
                      "const r = e.getBoundingClientRect();"
                      "return [k, {x: r.x + scrollX, y: r.y + scrollY, width: r.width,"
                      " height: r.height}];})))")
            value = pipe.call("Runtime.evaluate", session, expression=script,
                              returnByValue=True)["result"]["value"]
            boxes = json.loads(value)
            shot = pipe.call("Page.captureScreenshot", session, format="png",
                             captureBeyondViewport=True)["data"]
            page = Page(_problems(pipe.events), boxes, base64.b64decode(shot))
            pipe.call("Browser.close")
        finally:
            pipe.close()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return page
