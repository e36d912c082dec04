"""Resolved exporter settings: argument > ``BUCKET_*`` environment variable > default.

The spool's settings (``BUCKET_SPOOL_*``: where, how large, how old) are resolved here too, with
the others; ``spool._spool_paths`` names the files inside that directory.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BYTES",
    "MIB",
    "Settings",
    "default_spool_dir",
    "parse_count",
    "parse_duration",
    "resolve",
    "resolve_settings",
    "resolve_spool_dir",
    "resolve_spool_max_age",
    "resolve_spool_max_bytes",
    "shown_url",
]

_log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_MAX_BYTES = 50 * MIB
DEFAULT_MAX_AGE = 48 * 3600.0
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Stands for "the platform's cache directory" until it is needed: finding it may fail (no home).
_AUTO = Path("<default spool directory>")

DEFAULT_ENDPOINT = "https://tracking.bucket.co"
MAX_TIMEOUT = 3600.0  # seconds; longer waits are surely a mistake (and overflow some waits)

_USERINFO = re.compile(r"^([^/?#]*//)?[^/?#]*@")  # user:password@ (or a token@) in a URL
_AFTER_PATH = re.compile(r"([?#]).*", re.DOTALL)  # a query or a fragment: may hold a token
# What a URL may hold as it is sent (RFC 3986): ASCII letters, digits and these; "%" only as an
# escape. Anything else (a space, "é") would be sent as it is and make every call fail.
_URL_CHARACTERS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
_KEY_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]+")  # unreserved in a URL: never percent-encoded

_T = TypeVar("_T")


@dataclass(frozen=True)
class Settings:
    """Everything the exporter needs, resolved once at construction."""

    tracking_key: str
    endpoint: str  # "" when BUCKET_ENDPOINT is malformed: nothing is sent
    timeout: float
    max_concurrency: int
    dedupe_window: float
    dedupe_size: int
    offline: bool
    spool_dir: Path | None = None  # None: the spool is off
    spool_max_bytes: int = 50 * 1024 * 1024
    spool_max_age: float = 48 * 3600.0

    def __repr__(self) -> str:
        # The key is a secret: never let it reach a repr, a log line or a traceback.
        return (
            f"Settings(tracking_key='***', endpoint={self.endpoint!r}, timeout={self.timeout!r}, "
            f"max_concurrency={self.max_concurrency!r}, dedupe_window={self.dedupe_window!r}, "
            f"dedupe_size={self.dedupe_size!r}, offline={self.offline!r}, "
            f"spool_dir={self.spool_dir!r})"
        )


def _key(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {type(value).__name__}")
    key = value.strip()
    if not key:
        raise ValueError("must not be empty")
    if not _KEY_CHARACTERS.fullmatch(key) or key in (".", ".."):
        raise ValueError("may hold only letters, digits and '-', '.', '_', '~'")
    return key


def shown_url(text: str) -> str:
    """``text`` as it may be printed: a user, password or token before ``@``, a query and a
    fragment are masked (``***``); the scheme, host, port and path stay."""
    shown = _USERINFO.sub(lambda match: f"{match.group(1) or ''}***@", text.strip())
    return _AFTER_PATH.sub(r"\1***", shown)


def _endpoint(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {type(value).__name__}")
    text = value.strip()
    if not _URL_CHARACTERS.fullmatch(text):
        bad = next((c for c in text if not _URL_CHARACTERS.fullmatch(c) and c != "%"), "a lone '%'")
        raise ValueError(
            f"must be a URL of ASCII characters, without spaces (percent-encode them, e.g. %20;"
            f" a host in its xn-- form): it has {bad!r}"
        )
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or too big
    except ValueError:
        raise ValueError("must be an http:// or https:// URL with a valid host and port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL, e.g. https://tracking.bucket.co")
    if "@" in parts.netloc:
        raise ValueError("must not hold credentials (user:password@)")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError("must not have a query or a fragment")
    return text.rstrip("/")


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"must be a finite number >= 0, got {value!r}")
    return number


def _timeout(value: object) -> float:
    number = _number(value)
    if not 0 < number <= MAX_TIMEOUT:
        raise ValueError(f"must be > 0 and at most {MAX_TIMEOUT:g} seconds, got {value!r}")
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


def _resolve_endpoint(value: object) -> str:
    """Like ``resolve``, but a malformed ``BUCKET_ENDPOINT`` never falls back to the production
    endpoint (development data would reach production): it disables sending (``""``)."""
    if value is not None or not (os.environ.get("BUCKET_ENDPOINT") or "").strip():
        return resolve("endpoint", value, None, _endpoint, DEFAULT_ENDPOINT)
    raw = os.environ["BUCKET_ENDPOINT"]
    try:
        return _endpoint(raw)
    except (TypeError, ValueError) as exc:
        _log.error(
            "otel-bucket sends nothing: BUCKET_ENDPOINT=%r %s; fix the variable (the production "
            "endpoint is %s)",
            shown_url(raw),
            exc,
            DEFAULT_ENDPOINT,
        )
        return ""


def resolve_settings(
    *,
    tracking_key: object = None,
    endpoint: object = None,
    timeout: object = None,
    max_concurrency: object = None,
    dedupe_window: object = None,
    dedupe_size: object = None,
    offline: object = None,
    spool_dir: object = None,
    spool_max_mb: object = None,
    spool_max_age: object = None,
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
        endpoint=_resolve_endpoint(endpoint),
        timeout=resolve("timeout", timeout, "BUCKET_TIMEOUT", _timeout, 10.0),
        max_concurrency=resolve(
            "max_concurrency", max_concurrency, "BUCKET_MAX_CONCURRENCY", parse_count, 128
        ),
        dedupe_window=resolve(
            "dedupe_window", dedupe_window, "BUCKET_DEDUPE_WINDOW", _number, 60.0
        ),
        dedupe_size=resolve("dedupe_size", dedupe_size, None, parse_count, 10_000),
        offline=resolve("offline", offline, "BUCKET_OFFLINE", _flag, False),
        spool_dir=resolve_spool_dir(spool_dir),
        spool_max_bytes=resolve_spool_max_bytes(spool_max_mb),
        spool_max_age=resolve_spool_max_age(spool_max_age),
    )


# -- the spool's settings ------------------------------------------------------------------------


def default_spool_dir() -> Path:
    """The user's cache directory plus ``otel-bucket``.

    ``$XDG_CACHE_HOME`` (when absolute) or ``~/.cache``; ``~/Library/Caches`` on macOS;
    ``%LOCALAPPDATA%`` on Windows.

    Raises:
        RuntimeError: the home directory cannot be told (no ``HOME``, no password entry).
    """
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", "")
        base = Path(local) if os.path.isabs(local) else _home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = _home() / "Library" / "Caches"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        # The XDG spec says a relative value is invalid and must be ignored.
        base = Path(xdg) if os.path.isabs(xdg) else _home() / ".cache"
    return base / "otel-bucket"


def _home() -> Path:
    home = os.path.expanduser("~")
    if not os.path.isabs(home):  # expanduser gives "~" back when it cannot tell
        raise RuntimeError("cannot tell the home directory: set HOME or BUCKET_SPOOL_DIR")
    return Path(home)


def _directory(value: object) -> Path | None:
    """A directory from the variable's text or the argument; ``off`` (or False) is None."""
    if value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, str | os.PathLike):
        raise TypeError(f"must be a path or False, got {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str):
        raise TypeError("must be a str path, got bytes")
    if not text.strip():
        raise ValueError("must not be empty (use False or 'off' to turn the spool off)")
    if "\0" in text:
        raise ValueError("must not contain a NUL character")
    if text.strip().lower() == "off":
        return None
    # Absolute now, so that a later chdir() does not move the spool.
    return Path(text).expanduser().absolute()


def resolve_spool_dir(value: object = None) -> Path | None:
    """``spool_dir=`` else ``BUCKET_SPOOL_DIR`` else the user's cache directory; None is off.

    Raises:
        TypeError: ``value`` is neither a path, False nor None.
        ValueError: ``value`` is an empty path.
    """
    auto: Path | None = _AUTO
    directory = resolve("spool_dir", value, "BUCKET_SPOOL_DIR", _directory, auto)
    if directory is not _AUTO:
        return directory
    try:
        return default_spool_dir()
    except RuntimeError as exc:
        _log.warning("otel-bucket spool off: %s", exc)
        return None


def _megabytes(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"must be a number of MiB, got {type(value).__name__}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be a number of MiB, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"must be a number of MiB > 0, got {value!r}")
    return max(int(number * MIB), 1)


def resolve_spool_max_bytes(value: object = None) -> int:
    """``spool_max_mb=`` (MiB) else ``BUCKET_SPOOL_MAX_MB`` else 50 MiB, in bytes."""
    return resolve("spool_max_mb", value, "BUCKET_SPOOL_MAX_MB", _megabytes, DEFAULT_MAX_BYTES)


def parse_duration(value: object) -> float:
    """Seconds from a number or from text such as ``"3600"``, ``"90m"``, ``"48h"``, ``"2d"``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"must be a number of seconds, got {type(value).__name__}")
    unit = 1.0
    text = value.strip().lower() if isinstance(value, str) else value
    if isinstance(text, str) and text[-1:] in _UNITS:
        unit, text = _UNITS[text[-1]], text[:-1].strip()
    try:
        number = float(text) * unit
    except ValueError:
        raise ValueError(f"must be seconds or a duration like '48h', got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"must be a duration > 0, got {value!r}")
    return number


def resolve_spool_max_age(value: object = None) -> float:
    """``spool_max_age=`` else ``BUCKET_SPOOL_MAX_AGE`` else 48 hours, in seconds."""
    return resolve("spool_max_age", value, "BUCKET_SPOOL_MAX_AGE", parse_duration, DEFAULT_MAX_AGE)
