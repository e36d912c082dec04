"""Tracking keys the devserver received, shown only by their start, wherever they appear.

The terminal, the page, ``/api/calls`` and the debug log may all be on a shared screen or in a
bug report; the start of a key is enough to tell keys apart.
"""

from __future__ import annotations

from typing import Final

__all__ = ["mask_key", "mask_path", "mask_text"]

_SHOWN: Final = 4
_SHORT: Final = 8  # keys this short ("dev", "trk") are names, not secrets: shown whole


def mask_key(key: str) -> str:
    """``key`` with all but its first four characters replaced by ``...`` (short keys whole)."""
    return key if len(key) <= _SHORT else key[:_SHOWN] + "..."


def _first_segment(path: str) -> str:
    return next((part for part in path.split("?", 1)[0].split("/") if part), "")


def mask_path(path: str) -> str:
    """``path`` with its first segment, where a tracking key goes, masked."""
    first = _first_segment(path)
    return path.replace(first, mask_key(first), 1) if first else path


def mask_text(text: str, path: str) -> str:
    """``text`` (a log line about a request for ``path``) with that path's key masked."""
    first = _first_segment(path)
    return text.replace(first, mask_key(first)) if len(first) > _SHORT else text
