"""The Tracking API's field tables, as one validator.

Both the devserver and the exporter's own payload tests check calls with this module, so the
emulation and the exporter can never disagree about what a valid call is.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Final

__all__ = [
    "MAX_DEPTH",
    "METHODS",
    "SchemaError",
    "json_problem",
    "parse_body",
    "parse_timestamp",
    "validate_call",
]

_STRING: Final = "string"
_OBJECT: Final = "object"
_TIMESTAMP: Final = "timestamp"

# field -> (required, type), exactly as the API document's tables.
_TABLES: Final[dict[str, dict[str, tuple[bool, str]]]] = {
    "user": {
        "userId": (True, _STRING),
        "attributes": (False, _OBJECT),
        "timestamp": (False, _TIMESTAMP),
    },
    "company": {
        "companyId": (True, _STRING),
        "attributes": (False, _OBJECT),
        "timestamp": (False, _TIMESTAMP),
        "userId": (False, _STRING),
    },
    "event": {
        "event": (True, _STRING),
        "userId": (True, _STRING),
        "attributes": (False, _OBJECT),
        "timestamp": (False, _TIMESTAMP),
    },
}

METHODS: Final = frozenset({"user", "company", "event", "events"})
"""Method names the API accepts; the document names the event method both ways."""

MAX_DEPTH: Final = 32
"""How deeply an ``attributes`` object may nest; real attributes are flat or nearly so."""


class SchemaError(ValueError):
    """A call body that the Tracking API would answer with 400."""


def _reject_constant(name: str) -> Any:
    raise SchemaError(f"invalid JSON: {name} is not a JSON value")


def parse_body(raw: bytes) -> Any:
    """Parse a request body as strict JSON (no NaN or Infinity).

    Raises:
        SchemaError: the body is not valid UTF-8 JSON.
    """
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except SchemaError:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise SchemaError(f"invalid JSON: {exc}") from None
    except RecursionError:  # the C decoder gives up somewhere below 1,000 levels
        raise SchemaError("invalid JSON: nested too deeply to parse") from None


# ISO 8601 extended date-time, as JavaScript's Date.toISOString() and Python's isoformat() write
# it. A regex (not datetime.fromisoformat) so that Python 3.10 and 3.11+ accept the same strings.
_ISO_8601: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?"
)


def parse_timestamp(value: str) -> datetime | None:
    """Parse an ISO 8601 date-time string (``2026-11-27T14:03:05.123Z``).

    Returns:
        An aware datetime (UTC when the string names no offset), or None when ``value`` is not
        an ISO 8601 date-time.
    """
    match = _ISO_8601.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    offset = timedelta(0)
    if sign and not zulu:
        offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
        if offset >= timedelta(hours=24):
            return None
        offset = -offset if sign == "-" else offset
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=timezone(offset),
        )
    except ValueError:  # month 13, February 30, hour 24, ...
        return None


def _lone_surrogate(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None


def json_problem(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    """Why parsed JSON ``value`` cannot be sent or echoed as it is, or None when it can.

    Walks without recursion, so that no input can exhaust the stack.

    Returns:
        The end of a sentence ("holds a value that is not JSON", "is nested more than 32 levels
        deep", "holds a lone surrogate ..."), or None.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            surrogate = _lone_surrogate(item)
            if surrogate is not None:
                return f"holds a lone surrogate {surrogate!r}, which is not valid Unicode"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "holds a value that is not JSON"
        elif isinstance(item, Mapping | list):
            if depth > max_depth:
                return f"is nested more than {max_depth} levels deep"
            if isinstance(item, Mapping):
                for key in item:
                    if not isinstance(key, str):
                        return "holds a value that is not JSON"
                    stack.append((key, depth))
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        elif not (item is None or isinstance(item, int | bool)):
            return "holds a value that is not JSON"
    return None


def _check_field(name: str, kind: str, value: Any) -> str | None:
    if kind == _STRING:
        if not isinstance(value, str):
            return f"field {name!r} must be a string, got {type(value).__name__}"
        if not value.strip():
            return f"field {name!r} must not be empty"
        problem = json_problem(value)
        if problem:
            return f"field {name!r} {problem}"
    elif kind == _OBJECT:
        if not isinstance(value, Mapping):
            return f"field {name!r} must be an object, got {type(value).__name__}"
        problem = json_problem(value)
        if problem:
            return f"field {name!r} {problem}"
    elif kind == _TIMESTAMP and (not isinstance(value, str) or parse_timestamp(value) is None):
        return f"field {name!r} must be an ISO 8601 date-time string, got {value!r}"
    return None


def validate_call(method: str, payload: Any) -> list[str]:
    """Check one call against the API document's field table for ``method``.

    Args:
        method: ``user``, ``company``, ``event`` or ``events``.
        payload: the parsed JSON body.

    Returns:
        The problems found, each a readable sentence; empty when the call is valid.
    """
    if method not in METHODS:
        return [f"unknown method {method!r}: expected one of user, company, event"]
    table = _TABLES["event" if method == "events" else method]
    if not isinstance(payload, Mapping):
        return [f"body must be a JSON object, got {type(payload).__name__}"]
    problems = [
        f"missing required field {name!r}"
        for name, (req, _) in table.items()
        if req and name not in payload
    ]
    problems += [f"unknown field {name!r}" for name in payload if name not in table]
    for name, (_, kind) in table.items():
        if name in payload:
            problem = _check_field(name, kind, payload[name])
            if problem:
                problems.append(problem)
    return problems
