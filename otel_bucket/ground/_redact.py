"""Keep tracking keys out of log records, exception messages and reprs."""

from __future__ import annotations

import logging
import threading
from urllib.parse import quote

__all__ = ["REDACTED", "clean", "forget_secret", "redact", "redact_all", "register_secret"]

REDACTED = "***"

_lock = threading.Lock()
_secrets: dict[str, int] = {}  # key -> number of live exporters using it


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` (as is, and percent-encoded) replaced."""
    if not secret:
        return text
    text = text.replace(secret, REDACTED)
    quoted = quote(secret, safe="")
    return text.replace(quoted, REDACTED) if quoted != secret else text


def redact_all(text: str) -> str:
    """``text`` with every registered key replaced."""
    for secret in list(_secrets):
        text = redact(text, secret)
    return text


def clean(text: str, limit: int = 200) -> str:
    """At most ``limit`` characters of a server's text, fit for one log line: line breaks and
    other control characters escaped, so a body cannot forge log records; keys redacted."""
    text = text[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return redact_all(text)


class _UrlFilter(logging.Filter):
    """Redacts our keys in the request lines urllib3 logs at DEBUG; touches nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        if isinstance(record.msg, str):
            record.msg = redact_all(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_all(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


_filter = _UrlFilter()
_FILTERED_LOGGERS = ("urllib3.connectionpool",)


def register_secret(secret: str) -> None:
    """Start redacting ``secret`` in third-party loggers that print request URLs."""
    with _lock:
        _secrets[secret] = _secrets.get(secret, 0) + 1
        for name in _FILTERED_LOGGERS:
            logger = logging.getLogger(name)
            if _filter not in logger.filters:
                logger.addFilter(_filter)


def forget_secret(secret: str) -> None:
    """Stop redacting ``secret`` once no exporter uses it; keep the filter while any does."""
    with _lock:
        count = _secrets.get(secret, 0) - 1
        if count > 0:
            _secrets[secret] = count
            return
        _secrets.pop(secret, None)
        if not _secrets:
            for name in _FILTERED_LOGGERS:
                logging.getLogger(name).removeFilter(_filter)
