"""The devserver's one HTML page, rendered on the server: no JavaScript, no assets."""

from __future__ import annotations

import json
from html import escape
from typing import Any, Final

from otel_bucket.devserver._app import Snapshot
from otel_bucket.devserver._store import Call

__all__ = ["render_page"]

_MAX_COMPANY_COLUMNS: Final = 12
_NO_COMPANY: Final = "(no company)"

_STYLE: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.n { text-align: right; } .muted { color: #888; }
code, pre { font: 12px/1.3 ui-monospace, monospace; } pre { margin: 0; white-space: pre-wrap; }
.bad { color: #a40000; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _table(headers: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _adoption(snapshot: Snapshot) -> str:
    companies = snapshot.companies
    shown = companies[:_MAX_COMPANY_COLUMNS]
    headers = ["feature", "companies", "users", "last seen"]
    headers += [company or _NO_COMPANY for company in shown]
    rows = []
    for row in snapshot.adoption:
        cells = [
            f"<th>{_e(row.feature)}</th>",
            f'<td class="n">{row.companies}</td>',
            f'<td class="n">{row.users}</td>',
            f"<td>{_e(row.last_seen)}</td>",
        ]
        for company in shown:
            users, seen = row.by_company.get(company, (0, ""))
            title = f' title="last seen {_e(seen)}"' if seen else ""
            text = f"{users} user{'s' if users != 1 else ''}" if users else "-"
            cells.append(f'<td class="n"{title}>{_e(text)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    note = ""
    if len(companies) > len(shown):
        note = f'<p class="muted">{len(companies) - len(shown)} more companies in /api/calls.</p>'
    return (
        _table(headers, rows, "No event calls yet: a feature appears here once it is used.") + note
    )


def _body(call: Call) -> str:
    text = call.body if isinstance(call.body, str) else json.dumps(call.body, ensure_ascii=False)
    return f"<pre>{_e(text)}</pre>"


def _calls(calls: list[Call]) -> str:
    rows = [
        "<tr>"
        f"<td>{_e(call.received_at)}</td><td>{_e(call.method)}</td>"
        f"<td>{_e(call.user_id or '')}</td><td>{_e(call.company_id or '')}</td>"
        f"<td>{_e(call.event or '')}</td><td>{_body(call)}</td>"
        "</tr>"
        for call in calls
    ]
    headers = ["received", "method", "userId", "companyId", "event", "body"]
    return _table(headers, rows, "No calls yet.")


def _rejections(calls: list[Call]) -> str:
    rows = [
        "<tr>"
        f"<td>{_e(call.received_at)}</td><td>{call.status}</td><td>{_e(call.method)}</td>"
        f'<td class="bad">{"<br>".join(_e(reason) for reason in call.reasons)}</td>'
        f"<td>{_body(call)}</td>"
        "</tr>"
        for call in calls
    ]
    return _table(["received", "status", "method", "reasons", "body"], rows, "No rejections.")


def render_page(
    snapshot: Snapshot, *, url: str, tracking_key: str | None = None, refresh: int | None = None
) -> str:
    """The whole page for ``snapshot``; ``refresh`` (seconds) reloads it without JavaScript."""
    counts = snapshot.counts
    summary = ", ".join(f"{counts[k]} {k}" for k in ("user", "company", "event"))
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{meta}
<title>otel-bucket devserver</title><style>{_STYLE}</style></head>
<body>
<h1>otel-bucket devserver</h1>
<p>Accepted calls: {_e(summary)}; rejected or failed: {counts["rejected"]}.
Point an app here with
<code>BUCKET_ENDPOINT={_e(url)} BUCKET_TRACKING_KEY={_e(tracking_key or "dev")}</code>.
<a href="/">Reload</a> &middot; <a href="/?refresh=2">reload every 2 s</a> &middot;
<a href="/api/calls">JSON</a></p>
<h2>Feature adoption (features &times; companies)</h2>
{_adoption(snapshot)}
<p class="muted">A user belongs to the companies whose company calls named their userId;
events of other users count under {_e(_NO_COMPANY)}.</p>
<h2>Recent calls</h2>
{_calls(snapshot.calls)}
<h2>Recent rejections</h2>
{_rejections(snapshot.rejections)}
</body></html>
"""
