"""Where the spool lives and how large and old it may grow: ``BUCKET_SPOOL_*`` settings."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import sys
from pathlib import Path

from otel_bucket._config import resolve

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BYTES",
    "default_spool_dir",
    "list_spools",
    "parse_duration",
    "resolve_spool_dir",
    "resolve_spool_max_age",
    "resolve_spool_max_bytes",
    "spool_path",
]

_log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_MAX_BYTES = 50 * MIB
DEFAULT_MAX_AGE = 48 * 3600.0

_NAME = re.compile(r"spool-[0-9a-f]{32}\.db")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Stands for "the platform's cache directory" until it is needed: finding it may fail (no home).
_AUTO = Path("<default spool directory>")


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


def spool_path(directory: str | os.PathLike[str], endpoint: str, tracking_key: str) -> Path:
    """The spool file for one (endpoint, tracking key): named by a hash, never by the key."""
    if not isinstance(endpoint, str):
        raise TypeError(f"endpoint must be a string, got {type(endpoint).__name__}")
    if not isinstance(tracking_key, str):
        raise TypeError(f"tracking_key must be a string, got {type(tracking_key).__name__}")
    digest = hashlib.sha256(f"{endpoint}\0{tracking_key}".encode()).hexdigest()
    return Path(directory) / f"spool-{digest[:32]}.db"


def list_spools(directory: str | os.PathLike[str]) -> list[Path]:
    """The spool files in ``directory``, sorted (none when it does not exist)."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [Path(directory) / name for name in sorted(names) if _NAME.fullmatch(name)]


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
