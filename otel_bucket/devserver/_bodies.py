"""What the devserver keeps of a request body, so that every stored call can be read back.

A body is kept as JSON when it can be echoed safely (valid Unicode, nested no deeper than the
validator allows), and as text otherwise; reading applies the same rule to rows that any version
of the devserver wrote, so one hostile body can never break ``/api/calls`` or the page.
"""

from __future__ import annotations

import json
from typing import Any

from otel_bucket.devserver._schema import MAX_DEPTH, SchemaError, json_problem, parse_body

__all__ = ["body_to_store", "clean", "load_stored", "text_or_none"]


def clean(text: str) -> str:
    """``text`` as valid UTF-8: a lone surrogate becomes its escape (``\\ud800``)."""
    # SQLite, and every reader after it, needs text that encodes to UTF-8.
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def text_or_none(value: Any) -> str | None:
    """A string field as stored (cleaned), or None when it is not a string."""
    return clean(value) if isinstance(value, str) else None


def _echoable(value: Any) -> bool:
    # A whole body nests one level above its attributes object.
    return json_problem(value, MAX_DEPTH + 1) is None


def body_to_store(body: Any) -> tuple[Any, str]:
    """The parsed body (None when it is not JSON) and the text to store for it."""
    if isinstance(body, bytes):
        text = clean(body.decode("utf-8", errors="replace"))
        try:
            parsed = parse_body(body)
        except SchemaError:
            return None, text
        if not _echoable(parsed):
            return parsed, text
    elif isinstance(body, str):
        return None, clean(body)
    else:
        parsed = body
        if not _echoable(parsed):
            return parsed, f"<{type(body).__name__} that is not JSON to echo>"
    return parsed, json.dumps(parsed, ensure_ascii=False)


def load_stored(text: str) -> Any:
    """A stored body as JSON when it is safe to echo (any devserver version wrote it), else text."""
    try:
        parsed = parse_body(text.encode("utf-8", errors="replace"))
    except SchemaError:  # a rejected body that was not JSON, or was cut short: keep the text
        return text
    return parsed if _echoable(parsed) else text
