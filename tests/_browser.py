"""Headless Chromium for page tests: load a URL, read its DOM and layout, its console, screenshots.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages ending in a NUL byte, on file descriptors 3 and 4), with the standard library only.
The pages forbid scripts (Content-Security-Policy), but the protocol's ``Runtime.evaluate`` is
not a page script, so a test can measure the real layout of the real page. Console messages
come from the protocol's events: every ``console.*`` call, uncaught error,
Content-Security-Policy violation and failed load is one line in `Tab.console`. Chromium runs in
its own process group, ended by that id if it does not close in time.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Final

FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, Chromium's own background connections are refused on this closed network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """The Chromium binary (Debian's ``chromium`` package first), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


# The protocol wants the pipes as descriptors 3 (commands) and 4 (replies): a small launcher
# moves them there and becomes Chromium (Debian's /usr/bin/chromium is a shell script, and
# dash's redirections take one-digit descriptors only).
_AS_3_AND_4: Final = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4);"
    " os.execv(sys.argv[3], sys.argv[3:])"
)


def _above_four(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 5)
    os.close(fd)
    return high


def _console_line(method: str, params: dict[str, Any]) -> str | None:
    """One readable line for a protocol event that the page's console would show."""
    if method == "Runtime.consoleAPICalled":
        args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
        return f"console.{params['type']}: {args}"
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return str(details.get("exception", {}).get("description") or details.get("text"))
    if method == "Log.entryAdded":
        entry = params["entry"]
        return f"{entry['level']} ({entry['source']}): {entry['text']}"
    return None


class Browser:
    """One headless Chromium process; `open` gives a tab per page."""

    def __init__(self, chromium: str, folder: Path, *, timeout: float = 60) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        commands, self._to_browser = os.pipe()
        self._from_browser, replies = os.pipe()
        # Above 4, so that moving one to 3 or 4 cannot overwrite the other.
        commands, replies = (_above_four(fd) for fd in (commands, replies))
        args = [*FLAGS, f"--user-data-dir={folder / 'profile'}", "about:blank"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _AS_3_AND_4, str(commands), str(replies), chromium, *args],
            pass_fds=(commands, replies),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its renderer and helpers share our child's process group
        )
        os.close(commands)
        os.close(replies)
        self._buffer = b""
        self._next_id = 0
        self._events: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def call(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        """Send one command and wait (bounded) for its result; events seen meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        """The next event ``method`` of ``session`` (events already received count)."""
        while True:
            events = self._events.setdefault(session, [])
            for n, (name, params) in enumerate(events):
                if name == method:
                    del events[n]
                    return params
            self._read()

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"chromium did not answer in {self.timeout} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise AssertionError("chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        if "method" in message and "id" not in message:
            session = message.get("sessionId", "")
            self._events.setdefault(session, []).append((message["method"], message["params"]))
        return message

    def console(self, session: str) -> list[str]:
        """The console lines of ``session`` received so far."""
        lines = (_console_line(name, params) for name, params in self._events.get(session, []))
        return [line for line in lines if line is not None]

    def open(self, url: str, *, size: tuple[int, int] = (1400, 1800)) -> Tab:
        """A new tab of ``size`` (CSS pixels) showing ``url``, once its load event fired."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        metrics = {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", metrics, session)
        self.call("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return Tab(self, url, target, session)

    def close(self) -> None:
        """Close Chromium; end its process group if it has not exited within 10 s."""
        if self.proc.poll() is None:
            try:
                self.call("Browser.close")
                self.proc.wait(10)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        os.close(self._to_browser)
        os.close(self._from_browser)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Tab:
    """One loaded page."""

    def __init__(self, browser: Browser, url: str, target: str, session: str) -> None:
        self.browser, self.url, self._target, self._session = browser, url, target, session

    @property
    def console(self) -> list[str]:
        self.evaluate("0")  # a round trip: every event sent before it has arrived
        return self.browser.console(self._session)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression``, evaluated in the page."""
        params = {"expression": expression, "returnByValue": True}
        result = self.browser.call("Runtime.evaluate", params, self._session)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def dom(self) -> str:
        return str(self.evaluate("document.documentElement.outerHTML"))

    def screenshot(self, path: Path, *, top: str | None = None, height: int = 0) -> Path:
        """Save a PNG of the page: all of it, or ``height`` pixels (when given) from the top of
        the element ``top`` picks (else from the page's top), as wide as the window."""
        start = 0.0
        if top is not None:
            start = self.evaluate(
                f"document.querySelector({json.dumps(top)}).getBoundingClientRect().top + scrollY"
            )
        width, full = self.evaluate("[innerWidth, document.documentElement.scrollHeight]")
        clip = {"x": 0, "y": start, "width": width, "height": height or full - start, "scale": 1}
        params = {"format": "png", "clip": clip, "captureBeyondViewport": True}
        data = self.browser.call("Page.captureScreenshot", params, self._session)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self._target})


class _Tables(HTMLParser):
    """Collects each table's rows (by table id) as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._skip = 0  # inside <style> or <title>
        self.title = ""
        self._in_title = False
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.elements.append((tag, found))
        if tag == "title" and not self.title:  # the document's; SVG titles come later
            self._in_title = True
        if tag == "table":
            self._table = found.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and self._table and not self._in_head:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "a" and found.get("href"):
            self.links.append(found["href"] or "")
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
            return
        if self._cell is not None:
            self._cell.append(data)
        self.text.append(data)


@dataclass(frozen=True)
class Parsed:
    """A DOM read back: tables by id (body rows, cell texts), links, elements, text, title."""

    tables: dict[str, list[list[str]]]
    links: list[str]
    elements: list[tuple[str, dict[str, str | None]]]
    text: str
    title: str


def parse(dom: str) -> Parsed:
    parser = _Tables()
    parser.feed(dom)
    parser.close()
    text = "".join(parser.text)
    return Parsed(parser.tables, parser.links, parser.elements, text, parser.title)
