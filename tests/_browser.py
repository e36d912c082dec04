"""Headless Chromium for page tests: load a URL, get its DOM, console messages and a screenshot.

One Chromium process per page (``--dump-dom`` and ``--screenshot`` in one run), started in its
own process group and ended by that id if it overstays. Console messages come from Chromium's
own log on stderr (``--enable-logging=stderr --v=0``): every ``console.*`` call, uncaught error,
Content-Security-Policy violation and failed load of the page is one ``:CONSOLE`` line there.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Final

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
    "--enable-logging=stderr",
    "--v=0",
)
_CONSOLE: Final = re.compile(r":CONSOLE[:(]\d*\)?\] (.*)")


def find_chromium() -> str | None:
    """The Chromium binary (Debian's ``chromium`` package first), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@dataclass(frozen=True)
class Loaded:
    """What Chromium saw of one page."""

    url: str
    dom: str
    console: list[str]
    screenshot: Path


def load(
    chromium: str,
    url: str,
    folder: Path,
    name: str,
    *,
    size: tuple[int, int] = (1400, 1800),
    timeout: float = 60,
) -> Loaded:
    """Load ``url`` once: the DOM after load, console messages, ``<folder>/<name>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    screenshot = folder / f"{name}.png"
    args = [
        chromium,
        *FLAGS,
        f"--user-data-dir={folder / ('profile-' + name)}",
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        url,
    ]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,  # its renderer and helpers share our child's process group
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        raise AssertionError(f"chromium did not finish loading {url} in {timeout} s") from None
    assert proc.returncode == 0, f"chromium exited {proc.returncode} on {url}: {err[-2000:]}"
    console = [m.group(1) for line in err.splitlines() if (m := _CONSOLE.search(line))]
    return Loaded(url, out, console, screenshot)


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
