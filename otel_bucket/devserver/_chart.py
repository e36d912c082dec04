"""Inline SVG for the devserver's pages: weekly activity bars and the adoption funnel.

Plain SVG elements in the page itself: nothing to fetch, nothing to run, readable offline.
Charts that are compared side by side are drawn to one common scale, given by the caller.
"""

from __future__ import annotations

from typing import Final

from otel_bucket.devserver._html import e, number
from otel_bucket.devserver._trends import Series

__all__ = ["funnel_chart", "weekly_chart"]

_GAP: Final = 1
_BAR: Final = "#3b7dd8"
_RUNNING: Final = "#a9c6ee"  # the current week: still running, so drawn lighter


def weekly_chart(
    series: Series, peak: int, what: str, *, width: int = 156, height: int = 30
) -> str:
    """One bar per week, oldest left, scaled so that ``peak`` fills the height.

    Args:
        series: the counts per week; the last week is the current one.
        peak: the count drawn at full height: the largest of all the charts compared.
        what: what is counted, for the hover texts ("active users").
    """
    step = max(2, width // max(1, len(series.values)))
    bar = max(1, step - _GAP)
    width = step * len(series.values)
    bars = []
    last = len(series.values) - 1
    for n, (week, value) in enumerate(zip(series.weeks, series.values, strict=True)):
        tall = max(1, round(value / peak * (height - 2))) if value and peak else 0
        running = n == last
        title = f"week of {week}{' (so far)' if running else ''}: {number(value)} {what}"
        x = n * step
        if tall:
            fill = _RUNNING if running else _BAR
            bars.append(
                f'<rect x="{x}" y="{height - tall - 1}" width="{bar}" height="{tall}"'
                f' fill="{fill}"><title>{e(title)}</title></rect>'
            )
        else:
            bars.append(
                f'<rect x="{x}" y="{height - 1}" width="{bar}" height="1" fill="#d0d7de">'
                f"<title>{e(title)}</title></rect>"
            )
    label = (
        f"{what} per week, {len(series.values)} weeks, at most {number(series.peak)};"
        f" scale: full height is {number(peak)}"
    )
    return (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label="{e(label)}" data-peak="{peak}">{"".join(bars)}</svg>'
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
