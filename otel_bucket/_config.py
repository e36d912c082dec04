"""Resolved exporter settings: argument > ``BUCKET_*`` environment variable > default."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

__all__ = ["DEFAULT_ENDPOINT", "Settings", "parse_count", "resolve", "resolve_settings"]

_log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://tracking.bucket.co"

_T = TypeVar("_T")


@dataclass(frozen=True)
class Settings:
    """Everything the exporter needs, resolved once at construction."""

    tracking_key: str
    endpoint: str
    timeout: float
    max_concurrency: int
    dedupe_window: float
    dedupe_size: int
    offline: bool

    def __repr__(self) -> str:
        # The key is a secret: never let it reach a repr, a log line or a traceback.
        return (
            f"Settings(tracking_key='***', endpoint={self.endpoint!r}, timeout={self.timeout!r}, "
            f"max_concurrency={self.max_concurrency!r}, dedupe_window={self.dedupe_window!r}, "
            f"dedupe_size={self.dedupe_size!r}, offline={self.offline!r})"
        )


def _key(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {type(value).__name__}")
    key = value.strip()
    if not key:
        raise ValueError("must not be empty")
    if any(c in key for c in "/?#% \t\r\n"):
        raise ValueError("must not contain '/', '?', '#', '%' or whitespace")
    return key


def _endpoint(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {type(value).__name__}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value.strip().rstrip("/")


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"must be a finite number >= 0, got {value!r}")
    return number


def _positive(value: object) -> float:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"must be > 0, got {value!r}")
    return number


def parse_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"must be an integer, got {type(value).__name__}")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"must be an integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"must be >= 1, got {value!r}")
    return number


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"must be true/1 or false/0, got {value!r}")
    raise TypeError(f"must be a bool, got {type(value).__name__}")


def resolve(
    argument: str,
    value: object,
    env: str | None,
    parse: Callable[[object], _T],
    default: _T,
    *,
    parse_argument: Callable[[object], _T] | None = None,
) -> _T:
    """One setting: a malformed argument raises naming it; a malformed environment value warns
    naming the variable and gives the default. ``parse_argument`` (default ``parse``) may be
    stricter than ``parse``, which also reads the variable's text."""
    if value is not None:
        try:
            return (parse_argument or parse)(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{argument} {exc}") from None
    raw = os.environ.get(env) if env else None
    if raw is None or not raw.strip():
        return default
    try:
        return parse(raw)
    except (TypeError, ValueError) as exc:
        shown = "***" if argument == "tracking_key" else repr(raw)
        _log.warning("ignoring %s=%s: %s; using the default %r", env, shown, exc, default)
        return default


def resolve_settings(
    *,
    tracking_key: object = None,
    endpoint: object = None,
    timeout: object = None,
    max_concurrency: object = None,
    dedupe_window: object = None,
    dedupe_size: object = None,
    offline: object = None,
) -> Settings:
    """Resolve every setting in one place (contract section 4).

    Raises:
        ValueError: an argument is malformed, or no tracking key is given by argument or by
            ``BUCKET_TRACKING_KEY``.
        TypeError: an argument has the wrong type.
    """
    key = resolve("tracking_key", tracking_key, "BUCKET_TRACKING_KEY", _key, "")
    if not key:
        raise ValueError(
            "tracking_key is required: pass tracking_key=... or set BUCKET_TRACKING_KEY "
            "(find the key under Settings in Bucket)"
        )
    return Settings(
        tracking_key=key,
        endpoint=resolve("endpoint", endpoint, "BUCKET_ENDPOINT", _endpoint, DEFAULT_ENDPOINT),
        timeout=resolve("timeout", timeout, "BUCKET_TIMEOUT", _positive, 10.0),
        max_concurrency=resolve(
            "max_concurrency", max_concurrency, "BUCKET_MAX_CONCURRENCY", parse_count, 8
        ),
        dedupe_window=resolve(
            "dedupe_window", dedupe_window, "BUCKET_DEDUPE_WINDOW", _number, 60.0
        ),
        dedupe_size=resolve("dedupe_size", dedupe_size, None, parse_count, 10_000),
        offline=resolve("offline", offline, "BUCKET_OFFLINE", _flag, False),
    )
