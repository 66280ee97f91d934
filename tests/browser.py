"""Headless Chromium for the tests, driven over the DevTools protocol on a pipe.

`--remote-debugging-pipe` (fd 3 in, fd 4 out, NUL-separated JSON): no Selenium, no websockets, no
extra Python package, nothing injected into the pages. `Chromium.load(url)` opens a page, reads
what it shows and logged, and closes it; `Chromium.open(url)` gives a `Tab` that stays open, for
pages that change by themselves (the live report), with `evaluate`, `wait_for` and the problems
seen so far. `chromium_or_skip()` is the body of a `browser` fixture: it skips, saying why, when no
Chromium is installed (`scripts/setup.sh test` installs Debian's `chromium` when run as root;
`NASFORGE_CHROMIUM` names another binary).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio")
STEP_TIMEOUT = 20.0
NO_BROWSER = ("no Chromium found (install Debian's `chromium`: `scripts/setup.sh test` as root, "
              "or set NASFORGE_CHROMIUM to a Chromium/Chrome binary)")

#: What a page shows, read right after it loads (and again by `Tab.probe`).
PROBE = """JSON.stringify({
    title: document.title,
    images: [...document.images].map(i => ({src: i.getAttribute('src'), complete: i.complete,
                                             width: i.naturalWidth, height: i.naturalHeight})),
    sheets: [...document.styleSheets].map(s => s.href),
    scripts: document.scripts.length})"""


def find_browser() -> str | None:
    explicit = os.environ.get("NASFORGE_CHROMIUM")
    if explicit:
        return shutil.which(explicit) or (explicit if os.access(explicit, os.X_OK) else None)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_or_skip() -> Iterator[Chromium]:
    """A running Chromium, closed afterwards (use as `yield from chromium_or_skip()` in a fixture);
    skips the test when none is installed."""
    binary = find_browser()
    if binary is None:
        pytest.skip(NO_BROWSER)
    b = Chromium(binary)
    try:
        yield b
    finally:
        b.close()


class Tab:
    """One open page: evaluate JavaScript in it, wait for it to change, read what it logged."""

    def __init__(self, browser: Chromium, target: str, session: str, start: int):
        self.browser, self.target, self.session, self._start = browser, target, session, start

    def events(self) -> list[dict[str, Any]]:
        return [e for e in self.browser.events[self._start:] if e.get("sessionId") == self.session]

    def evaluate(self, expression: str) -> Any:
        """The value of `expression` (awaited when it is a promise), or a RuntimeError."""
        result = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, session=self.session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, every: float = 0.25) -> Any:
        """Evaluate `expression` until it is truthy; its value, or TimeoutError with the last one."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still {value!r} after {timeout} s")
            time.sleep(every)

    def probe(self) -> dict[str, Any]:
        return json.loads(self.evaluate(PROBE))

    def problems(self) -> dict[str, list[Any]]:
        """Console errors and warnings, exceptions, error log entries and failed loads so far."""
        events = self.events()
        return {
            "console": [e["params"] for e in events if e.get("method") == "Runtime.consoleAPICalled"
                        and e["params"].get("type") in ("error", "assert", "warning")],
            "exceptions": [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"],
            "log_errors": [e["params"]["entry"] for e in events if e.get("method") == "Log.entryAdded"
                           and e["params"]["entry"].get("level") == "error"],
            "failed": [e["params"] for e in events if e.get("method") == "Network.loadingFailed"],
        }

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events()
                if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})


class Chromium:
    """Headless Chromium driven over `--remote-debugging-pipe` (fd 3 in, fd 4 out, NUL-separated
    JSON). Every read has a deadline; the whole process group is killed on close."""

    def __init__(self, binary: str):
        self.profile = tempfile.mkdtemp(prefix="nasforge-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def child_fds() -> None:  # runs in the child before exec: put the pipe ends on fds 3 and 4
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 100)
            os.dup2(b, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        self.proc = subprocess.Popen(
            [binary, *BROWSER_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            # close_fds=False: the child keeps the fds 3 and 4 that child_fds made (inheritable, as
            # dup2 makes them), while every fd of this process is closed on exec (PEP 446);
            # pass_fds=(3, 4) would fail when this process has no fd 3 or 4 open of its own
            preexec_fn=child_fds, close_fds=False, start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        return self._id

    def recv(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    raise EOFError(f"Chromium exited: {self.stderr_tail()}")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict[str, Any]:
        mid = self.send(method, params, session)
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            msg = self.recv(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def open(self, url: str) -> Tab:
        """Open `url` in a fresh tab and wait for its load event; the tab stays open."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=session)
        tab = Tab(self, target, session, len(self.events))
        self.call("Page.navigate", {"url": url}, session=session)
        deadline = time.monotonic() + STEP_TIMEOUT
        while not any(e.get("method") == "Page.loadEventFired" for e in tab.events()):
            self.events.append(self.recv(deadline))
        return tab

    def load(self, url: str) -> dict[str, Any]:
        """Open `url` in a fresh tab; what it loaded, logged and requested (the tab is closed)."""
        tab = self.open(url)
        page = tab.probe()
        page.update(tab.problems())
        page["requests"] = tab.requests()
        tab.close()
        return page

    def stderr_tail(self) -> str:
        try:
            self.proc.wait(timeout=2)
            return (self.proc.stderr.read() or b"").decode(errors="replace")[-800:]
        except (subprocess.TimeoutExpired, ValueError, OSError):
            return "(still running)"

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close")
                except OSError:
                    pass
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    self.proc.kill()
                self.proc.wait(timeout=5)
        finally:
            for fd in (self._to_child, self._from_child):
                try:
                    os.close(fd)
                except OSError:
                    pass
            if self.proc.stderr:
                self.proc.stderr.close()
            shutil.rmtree(self.profile, ignore_errors=True)
