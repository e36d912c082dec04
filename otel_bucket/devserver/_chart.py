"""Inline SVG for the devserver's pages: events per day, and the tried/adopted/retained funnel.

Plain SVG elements in the page itself: nothing to fetch, nothing to run, readable offline.
"""

from __future__ import annotations

from typing import Final

from otel_bucket.devserver._html import count, e, number

__all__ = ["daily_chart", "funnel_chart"]

_BAR: Final = 4  # px per day
_GAP: Final = 1
_HEIGHT: Final = 28


def daily_chart(daily: tuple[int, ...], days: tuple[str, ...], feature: str) -> str:
    """Bars of events per day, oldest left; each bar says its date and count on hover."""
    width = len(daily) * (_BAR + _GAP)
    peak = max(daily, default=0)
    total = sum(daily)
    bars = []
    for n, (events, day) in enumerate(zip(daily, days, strict=True)):
        height = max(1, round(events / peak * (_HEIGHT - 2))) if events else 0
        x = n * (_BAR + _GAP)
        bars.append(
            f'<rect x="{x}" y="{_HEIGHT - height - 1}" width="{_BAR}" height="{height}"'
            f' fill="#3b7dd8"><title>{e(day)}: {count(events, "event")}</title></rect>'
            if height
            else f'<rect x="{x}" y="{_HEIGHT - 1}" width="{_BAR}" height="1" fill="#d0d7de">'
            f"<title>{e(day)}: no events</title></rect>"
        )
    label = f"{feature}: {total} events in the last {len(daily)} days, at most {peak} a day"
    return (
        f'<svg class="chart" width="{width}" height="{_HEIGHT}" viewBox="0 0 {width} {_HEIGHT}"'
        f' role="img" aria-label="{e(label)}">{"".join(bars)}</svg>'
    )


def funnel_chart(tried: int, adopted: int, retained: int, companies: int) -> str:
    """Three bars (tried, adopted, retained) as shares of all known companies."""
    width, row = 120, 9
    bars = []
    for n, (name, reached, color) in enumerate(
        (
            ("tried", tried, "#e0a800"),
            ("adopted", adopted, "#3b7dd8"),
            ("retained", retained, "#2e9e4f"),
        )
    ):
        length = round(reached / companies * width) if companies else 0
        share = f"{reached / companies:.0%}" if companies else "n/a"
        bars.append(
            f'<rect x="0" y="{n * row}" width="{width}" height="{row - 2}" fill="#eef1f4"/>'
            f'<rect x="0" y="{n * row}" width="{length}" height="{row - 2}" fill="{color}">'
            f"<title>{name}: {number(reached)} of {number(companies)} companies ({share})</title>"
            "</rect>"
        )
    label = (
        f"tried by {tried}, adopted by {adopted}, retained by {retained} of {companies} companies"
    )
    return (
        f'<svg class="funnel" width="{width}" height="{3 * row}" viewBox="0 0 {width} {3 * row}"'
        f' role="img" aria-label="{e(label)}">{"".join(bars)}</svg>'
    )
