"""Where the spool files live: the file of one (endpoint, tracking key), the files of a directory.

The ``BUCKET_SPOOL_*`` settings themselves are resolved with the others in ``ground._config``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = ["list_spools", "spool_path"]

_NAME = re.compile(r"spool-[0-9a-f]{32}\.db")


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
