"""Small HTML helpers shared by the devserver's pages: escaping, links, times, tables, layout.

Every value that came from a call goes through `e` (or `link`/`when`, which use it): ids, names,
attributes, bodies and reasons are shown as text, never as markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from html import escape
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

__all__ = [
    "Query",
    "choices",
    "count",
    "e",
    "href",
    "layout",
    "link",
    "named",
    "number",
    "pager",
    "percent",
    "table",
    "when",
]

_STYLE: Final = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
header { background: #1d2b3a; color: #fff; padding: .6em 1.5em; display: flex; gap: 1.5em;
  align-items: baseline; flex-wrap: wrap; }
header b { font-size: 1.1em; } header a { color: #cfe3ff; text-decoration: none; }
header a.on { color: #fff; font-weight: 600; border-bottom: 2px solid #8cc4ff; }
main { padding: 1em 1.5em 3em; }
h1 { font-size: 1.35em; margin: .3em 0; } h2 { font-size: 1.1em; margin: 1.8em 0 .4em; }
h1 small, th small, td small { color: #777; font-weight: normal; }
a { color: #0b5cad; }
.wrap { overflow-x: auto; max-width: 100%; width: fit-content; border: 1px solid #e3e3e3; }
table { border-collapse: collapse; background: #fff; }
th, td { border-bottom: 1px solid #eee; padding: .3em .6em; text-align: left; vertical-align: top; }
thead th { background: #f1f3f5; position: sticky; top: 0; white-space: nowrap; z-index: 1; }
th a { color: inherit; } td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tbody th { font-weight: 600; min-width: 12em; max-width: 22em; overflow-wrap: break-word; }
td.n, .nowrap, [class^="stage-"] { white-space: nowrap; }
td.names { max-width: 24em; }
.sticky { position: sticky; left: 0; background: #fff; z-index: 1; }
thead .sticky { background: #f1f3f5; z-index: 2; }
#matrix .sticky { min-width: 8em; max-width: 14em; }
.clamp { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 2;
  overflow: hidden; overflow-wrap: anywhere; }
.clamp + br { display: none; } /* the name is a block already; the <br> is for text readers */
#matrix small { overflow-wrap: anywhere; }
#matrix thead th.f { white-space: normal; min-width: 6.5em; max-width: 8.5em;
  vertical-align: bottom; }
#matrix thead th.f .clamp { -webkit-line-clamp: 3; }
thead tr.group th { text-align: center; border-bottom: 1px solid #d0d7de; white-space: normal; }
th.sorted, td.sorted { outline: 2px solid #e0a800; outline-offset: -2px; }
.caption { margin: .3em 0; } .caption b { background: #fff3c4; padding: 0 .3em; }
time, .nowrap { white-space: nowrap; } .muted, .muted a { color: #777; }
.cell { text-align: right; white-space: nowrap; min-width: 6.5em; }
.cell .pct { color: #555; font-size: .85em; } .cell .ev { color: #666; font-size: .85em; }
.cell a { color: inherit; } .cell time { color: #666; font-size: .85em; }
.cell.idle { background: repeating-linear-gradient(135deg, #e9ecef 0 5px, #f6f7f8 5px 10px)
  !important; color: #666; }
.cell.idle time { color: #b3261e; } .idle-note { color: #b3261e; }
.tabs { display: inline-flex; gap: .8em; flex-wrap: wrap; margin: .2em 0; }
figure { margin: 0 2em .5em 0; } figcaption { color: #555; font-size: .85em; }
.tabs a.on { font-weight: 600; color: #1d1d1f; text-decoration: none; }
.zero { background: #fff4f4; color: #b3261e; text-align: right; white-space: nowrap; }
.zero .ev { color: #b3261e; font-size: .85em; }
.bad { color: #b3261e; } .ok { color: #1e7b34; }
.stage-retained { color: #1e7b34; font-weight: 600; } .stage-adopted { color: #0b5cad; }
.stage-tried { color: #8a5a00; } .stage-none { color: #b3261e; }
.stage-dropped { color: #b3261e; }
code, pre { font: 12px/1.35 ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { margin: .3em 0 0; white-space: pre-wrap; word-break: break-all; max-width: 60em; }
details summary { cursor: pointer; color: #555; max-width: 40em; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
form.filters { display: flex; gap: .6em; flex-wrap: wrap; align-items: end; margin: .5em 0; }
form.filters label { display: flex; flex-direction: column; font-size: .85em; color: #555; }
.pager { margin: .6em 0; display: flex; gap: .8em; align-items: baseline; }
.defs { max-width: 70em; color: #444; } .defs dt { font-weight: 600; }
.defs dd { margin: 0 0 .3em 1.5em; }
svg { vertical-align: middle; }
"""

_NAV: Final = (
    ("/", "Overview"),
    ("/trends", "Trends"),
    ("/calls", "Calls"),
    ("/calls?status=rejected", "Rejections"),
)


def e(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return escape(str(value), quote=True)


def href(path: str, params: Mapping[str, Any] | None = None) -> str:
    """An escaped URL for an ``href`` attribute; parameters that are None or "" are left out."""
    kept = {k: str(v) for k, v in (params or {}).items() if v is not None and v != ""}
    return e(f"{path}?{urlencode(kept)}" if kept else path)


def link(text: Any, path: str, params: Mapping[str, Any] | None = None, title: str = "") -> str:
    hover = f' title="{e(title)}"' if title else ""
    return f'<a href="{href(path, params)}"{hover}>{e(text)}</a>'


def named(path: str, entity_id: str, name: str | None, classes: str = "") -> str:
    """A link to a company's or user's page: its name (two lines at most) with the id below,
    or the id alone; the whole name and the id show on hover."""
    css = f"clamp {classes}".strip()
    url = href(path, {"id": entity_id})
    if not name:
        return f'<a class="{css}" href="{url}" title="{e(entity_id)}">{e(entity_id)}</a>'
    return (
        f'<a class="{css}" href="{url}" title="{e(name)} ({path[1:]} id {e(entity_id)})">'
        f"{e(name)}</a><br><small>{e(entity_id)}</small>"
    )


def number(value: int) -> str:
    return f"{value:,}"


def count(value: int, noun: str) -> str:
    """``1 event``, ``2,000 events``."""
    return f"{value:,} {noun}{'' if value == 1 else 's'}"


def percent(share: float | None) -> str:
    if share is None:
        return "&ndash;"
    return f"{share:.0%}" if share >= 0.01 or share == 0 else "<1%"


def _ago(seconds: float) -> str:
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "in a moment" if future else "just now"
    for size, unit in ((86400 * 365, "year"), (86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size or unit == "min":
            count = max(1, int(seconds // size))
            plural = "s" if count != 1 and unit in ("day", "year") else ""
            text = f"{count} {unit}{plural}"
            break
    return f"in {text}" if future else f"{text} ago"


def when(iso: str | None, now: datetime) -> str:
    """A relative time ("3 min ago") with the ISO time on hover; a dash for none."""
    if not iso:
        return '<span class="muted">&ndash;</span>'
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return f"<time>{e(iso)}</time>"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    text = _ago((now - moment).total_seconds())
    return f'<time datetime="{e(iso)}" title="{e(iso)}">{e(text)}</time>'


def table(
    headers: Iterable[str], rows: list[str], empty: str, *, name: str, group: str = ""
) -> str:
    """A scrollable table with id ``name``; ``headers`` are HTML; ``empty`` is plain text.

    ``group`` is an optional first header row (HTML cells) that groups the columns below it.
    """
    if not rows:
        return f'<p class="muted" id="{e(name)}">{e(empty)}</p>'
    head = f'<tr class="group">{group}</tr>' if group else ""
    head += f"<tr>{''.join(headers)}</tr>"
    return (
        f'<div class="wrap"><table id="{e(name)}"><thead>{head}</thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def choices(
    path: str, params: Mapping[str, Any], name: str, options: Iterable[Any], current: Any
) -> str:
    """Links setting ``name`` to each option (the current one marked), keeping ``params``."""
    items = [
        f"<a{' class=on' if option == current else ''}"
        f' href="{href(path, {**params, name: option, "page": None})}">{e(text)}</a>'
        for option, text in options
    ]
    return f'<span class="tabs">{"".join(items)}</span>'


def pager(
    path: str,
    params: Mapping[str, Any],
    page: int,
    per_page: int,
    total: int,
    anchor: str = "",
    key: str = "page",
) -> str:
    """Previous/next links (to ``#anchor`` when given) and where we are ("41-60 of 1,234").

    ``key`` is the page's query parameter, for a page with more than one paginated list.
    """
    if total <= per_page and page == 1:
        return ""
    pages = max(1, -(-total // per_page))
    first = (page - 1) * per_page + 1
    last = min(page * per_page, total)
    parts = [f"<span>{number(first)}&ndash;{number(last)} of {number(total)}</span>"]
    to = f"#{e(anchor)}" if anchor else ""
    if page > 1:
        parts.append(f'<a href="{href(path, {**params, key: page - 1})}{to}">← previous</a>')
    if page < pages:
        parts.append(f'<a href="{href(path, {**params, key: page + 1})}{to}">next →</a>')
    parts.append(f'<span class="muted">page {page} of {pages}</span>')
    return f'<div class="pager">{" ".join(parts)}</div>'


def layout(title: str, body: str, *, active: str, refresh: int | None = None) -> str:
    """The whole document: head, navigation and ``body`` (HTML)."""
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    nav = "".join(
        f'<a href="{e(path)}"{" class=on" if path == active else ""}>{e(text)}</a>'
        for path, text in _NAV
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{meta}
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{e(title)} · otel-bucket devserver</title><style>{_STYLE}</style></head>
<body><header><b>otel-bucket devserver</b>{nav}<a href="/api/calls">JSON</a></header>
<main>
{body}
</main></body></html>
"""


class Query:
    """The query string of a request, read leniently: a bad value falls back to its default."""

    def __init__(self, query: str) -> None:
        self._values = parse_qs(query, keep_blank_values=True)

    def text(self, name: str) -> str | None:
        """The parameter's value, stripped; None when absent or blank."""
        values = self._values.get(name)
        value = values[0].strip() if values else ""
        return value or None

    def raw(self, name: str) -> str | None:
        """The value exactly as given (ids may have spaces); None when absent or empty."""
        values = self._values.get(name)
        return values[0] if values and values[0] else None

    def has(self, name: str) -> bool:
        """Whether the parameter was given at all (even empty)."""
        return name in self._values

    def number(self, name: str, default: int, low: int, high: int) -> int:
        try:
            return min(max(int(self.text(name) or default), low), high)
        except ValueError:
            return default
