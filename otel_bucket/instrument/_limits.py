"""Keep otel-bucket's span attributes within the SDK's attribute count limit (issue 15.7).

The SDK holds at most ``max_span_attributes`` attributes per span
(``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``, else ``OTEL_ATTRIBUTE_COUNT_LIMIT``, default 128) and evicts
the oldest when a new one arrives on a full span. So otel-bucket passes its attributes in order of
importance, the ids and ``bucket.event`` last (evicted last), trims its own lesser attributes to
fit rather than let the SDK evict them, and never adds attributes to a span that would push the
application's own out.
"""

from __future__ import annotations

import logging
import time
from typing import Final, TypeVar

from otel_bucket.ground._throttle import Throttle

__all__ = ["HEADROOM", "attribute_limit", "keep_last", "report_cut"]

_log = logging.getLogger("otel_bucket")

HEADROOM: Final = 4
"""Slots ``identify`` leaves free on a span it stamps, for what the application sets later."""

_cuts = Throttle(60.0, time.monotonic)

V = TypeVar("V")


def attribute_limit(holder: object) -> int | None:
    """The attribute count limit of an SDK span or tracer, or None when unlimited or unknown.

    The SDK keeps its ``SpanLimits`` on the tracer (``_span_limits``) and on each span it makes
    (``_limits``): private names, read here only, and checked by a test on every supported SDK.
    Spans and tracers of other implementations have no known limit.
    """
    limits = getattr(holder, "_limits", None)
    if limits is None:
        limits = getattr(holder, "_span_limits", None)
    value = getattr(limits, "max_span_attributes", None)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def keep_last(attributes: dict[str, V], limit: int | None) -> tuple[dict[str, V], int]:
    """The last ``limit`` items of ``attributes`` (the most important), and how many were cut."""
    cut = 0 if limit is None else len(attributes) - limit
    if cut <= 0:
        return attributes, 0
    return dict(list(attributes.items())[cut:]), cut


def report_cut(what: str, cut: int, limit: int) -> None:
    """Warn, at most once a minute, that ``cut`` of our attributes were left off ``what``."""
    total = _cuts.ready(cut)
    if total is not None:
        _log.warning(
            "otel-bucket left %d of its attribute(s) off %s (and others since the last warning)"
            " to stay within the span attribute count limit of %d"
            " (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT / OTEL_ATTRIBUTE_COUNT_LIMIT); ids and events are"
            " kept first",
            total,
            what,
            limit,
        )
