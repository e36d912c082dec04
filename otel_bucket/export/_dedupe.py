"""Remember recently delivered user and company calls so identical ones are not sent again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from otel_bucket.ground._call import Call

__all__ = ["Deduper"]

# Attributes as a hashable value that tells 1, 1.0 and True apart (they compare equal in Python).
_Fingerprint = tuple[tuple[str, str, object], ...]


def _fingerprint(call: Call) -> _Fingerprint:
    attributes = call.payload.get("attributes") or {}
    return tuple(sorted((k, type(v).__name__, v) for k, v in attributes.items()))


class Deduper:
    """A bounded least-recently-used memory of delivered calls, each valid for ``window`` seconds.

    A call is a duplicate when one with the same ids and the same attributes was delivered within
    the window, or when it has no attributes and any call with the same ids was.
    """

    def __init__(self, window: float, size: int, clock: Callable[[], float]) -> None:
        self._window = window
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, ...], tuple[_Fingerprint, float]] = OrderedDict()

    def is_duplicate(self, call: Call) -> bool:
        """True when ``call`` adds nothing to what was delivered within the window."""
        if self._window <= 0 or call.method == "event":
            return False
        with self._lock:
            entry = self._seen.get(call.identity)
            if entry is None:
                return False
            fingerprint, delivered_at = entry
            if self._clock() - delivered_at >= self._window:
                del self._seen[call.identity]
                return False
            self._seen.move_to_end(call.identity)
            own = _fingerprint(call)
            return not own or own == fingerprint

    def remember(self, call: Call) -> None:
        """Note that ``call`` was delivered now."""
        if self._window <= 0 or call.method == "event":
            return
        own = _fingerprint(call)
        with self._lock:
            previous = self._seen.pop(call.identity, None)
            # An attribute-less call must not make us forget the attributes already delivered.
            if not own and previous is not None:
                own = previous[0]
            self._seen[call.identity] = (own, self._clock())
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
