"""Make attribute values that users hand us into values a span can hold (contract section 9).

``feature(attributes=...)`` and ``identify(...)`` accept whatever an application has at hand:
dates, enums, UUIDs, decimals. OpenTelemetry holds only str, bool, int, float and homogeneous
sequences of those, so values are converted here once; what cannot be converted is dropped with
a warning. Nothing in this module raises because of a value.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Final
from uuid import UUID

from opentelemetry.util.types import AttributeValue

__all__ = ["coerce_attributes", "coerce_value"]

_log = logging.getLogger(__name__)

_AS_IS: Final = frozenset({str, bool, int})
_MAX_WARNED: Final = 1024  # distinct (argument, key, type) warnings remembered

_warned: set[tuple[str, str, str]] = set()
_warned_lock = threading.Lock()


class _Unsendable(Exception):
    """A value with no span representation; carries the offending type's name."""


def _scalar(value: object) -> str | bool | int | float | None:
    """One non-sequence value as a span can hold it; ``None`` means "drop silently"."""
    if value is None:
        return None
    if isinstance(value, Enum):  # before str/int: IntEnum and StrEnum are both
        return _scalar(value.value)
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise _Unsendable("non-finite float")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        if value.is_finite():
            return float(value)
        raise _Unsendable("non-finite Decimal")
    raise _Unsendable(type(value).__name__)


def _convert(value: object) -> AttributeValue | None:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        items = [item for item in map(_scalar, value) if item is not None]
        kinds = {type(item) for item in items}
        if len(kinds) > 1:
            raise _Unsendable(f"{type(value).__name__} of mixed types")
        return tuple(items)
    return _scalar(value)


def coerce_value(
    value: object, *, argument: str = "attributes", key: str = "?"
) -> AttributeValue | None:
    """Convert ``value`` for a span attribute; ``None`` when it must be dropped.

    ``None`` is dropped silently; a value with no span representation is dropped with a warning
    naming ``argument`` and ``key`` (once per argument, key and type). Never raises.
    """
    if type(value) in _AS_IS:
        return value  # type: ignore[return-value]  # the common case, without further checks
    try:
        return _convert(value)
    except _Unsendable as exc:
        _warn_dropped(argument, key, str(exc))
    except Exception as exc:  # a hostile __iter__/__eq__ must not reach the application
        _warn_dropped(argument, key, f"{type(value).__name__} ({type(exc).__name__})")
    return None


def coerce_attributes(
    attributes: Mapping[str, object] | None, *, argument: str
) -> dict[str, AttributeValue]:
    """Validate the keys of a user-given attribute mapping and convert its values.

    Args:
        attributes: the mapping as given, or ``None``.
        argument: the parameter's name, used in errors and warnings.

    Returns:
        A new dict with the sendable values; dropped values are absent.

    Raises:
        TypeError: ``attributes`` is not a mapping, or a key is not a string.
        ValueError: a key is empty.
    """
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise TypeError(f"{argument} must be a mapping, got {type(attributes).__name__}")
    result: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if not isinstance(key, str):
            raise TypeError(f"{argument} keys must be strings, got {type(key).__name__}")
        if not key.strip():
            raise ValueError(f"{argument} keys must not be empty")
        converted = coerce_value(value, argument=argument, key=key)
        if converted is not None:
            result[key] = converted
    return result


def _warn_dropped(argument: str, key: str, kind: str) -> None:
    # Per-request identify() calls would repeat the same warning forever: say it once.
    marker = (argument, key, kind)
    with _warned_lock:
        if marker in _warned:
            return
        if len(_warned) >= _MAX_WARNED:
            _warned.clear()
        _warned.add(marker)
    _log.warning(
        "otel-bucket dropped %s[%r]: a %s value cannot be a span attribute", argument, key, kind
    )
