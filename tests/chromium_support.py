"""Open a page in real headless Chromium and ask it things over the DevTools protocol (on a pipe).

`chromium --remote-debugging-pipe` reads protocol messages on fd 3 and writes on fd 4, each a
JSON object ended by a NUL byte; a shell `exec` wires them to the child's stdin and stdout.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--window-size=1200,900"]


def chromium() -> str | None:
    """The Chromium binary, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with a fresh profile, driven over its DevTools pipe."""

    def __init__(self) -> None:
        binary = chromium()
        if binary is None:
            raise RuntimeError("chromium is not installed (bash .ci/setup installs it)")
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.proc = subprocess.Popen(
            ["sh", "-c", 'exec "$@" 3<&0 4>&1 0</dev/null 1>/dev/null', "sh", binary, *FLAGS,
             f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.next_id = 0
        self.buffer = b""
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium exited")
            self.buffer += chunk
        msg, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60) -> dict[str, Any]:
        """One command; events that arrive meanwhile are kept in `events`."""
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.proc.stdin.write(json.dumps(msg).encode() + b"\0")
        self.proc.stdin.flush()
        while True:
            answer = self._read(timeout)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_event(self, method: str, timeout: float = 60) -> dict[str, Any]:
        """The next event of this kind (or one that already came)."""
        for e in self.events:
            if e.get("method") == method:
                self.events.remove(e)
                return e
        deadline = time.monotonic() + timeout
        while True:
            e = self._read(max(0.1, deadline - time.monotonic()))
            if e.get("method") == method:
                return e
            self.events.append(e)


def load(url: str, checks: dict[str, str], screenshot: str | None = None) -> dict[str, Any]:
    """Load `url`; evaluate each JavaScript expression in `checks`; return their values, the
    console errors (console.error, uncaught exceptions, browser log errors such as a blocked
    or failed load) and, if asked, write a screenshot PNG of the whole page."""
    b = Browser()
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            b.send(f"{domain}.enable", session=session)
        b.send("Page.navigate", {"url": url}, session=session)
        b.wait_event("Page.loadEventFired")
        values = {name: b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                               session=session)["result"].get("value") for name, expr in checks.items()}
        if screenshot:
            size = b.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000), "scale": 1}
            shot = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                     "clip": clip}, session=session)
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        time.sleep(0.5)  # (late log entries)
        b.send("Runtime.evaluate", {"expression": "0"}, session=session)
        errors = []
        for e in b.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                errors.append(p.get("exceptionDetails", {}).get("text", "exception"))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append(p["entry"].get("text", ""))
        return {"values": values, "errors": errors}
    finally:
        b.close()
