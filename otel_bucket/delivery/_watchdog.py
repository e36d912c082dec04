"""A wall-clock deadline for every HTTP attempt that nothing the server does can stretch.

A socket timeout bounds each read, not a whole answer: a server that sends one byte a second
keeps a request alive for as long as it likes. One daemon thread watches the attempts in flight
and shuts the socket of any attempt still running at its deadline, so the blocked read returns
at once. Arming and disarming are plain attribute writes on a per-thread slot (no lock per
request); the thread is woken only when a deadline earlier than the one it waits for appears.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
import weakref
from typing import Any

from otel_bucket.ground._fork import after_fork_in_child
from otel_bucket.ground._threads import refuse_process_signals

__all__ = ["Watchdog", "cut", "watchdog"]

_log = logging.getLogger(__name__)

_SCANNING = -math.inf  # the thread is between wakes: whoever arms must notify it


class _Slot:
    """What one thread's attempt in flight is: ``(deadline, connection)`` or None."""

    __slots__ = ("__weakref__", "armed")

    def __init__(self) -> None:
        self.armed: tuple[float, Any] | None = None


class Watchdog:
    """Shuts the socket of any armed connection whose deadline has passed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: weakref.WeakSet[_Slot] = weakref.WeakSet()
        self._local = threading.local()
        self._next_wake = math.inf
        self._thread: threading.Thread | None = None
        after_fork_in_child(self, Watchdog._after_fork)

    def _after_fork(self) -> None:
        # The parent's thread does not exist here, and it may have held the lock at the fork.
        self._cond = threading.Condition()
        self._slots = weakref.WeakSet()
        self._local = threading.local()
        self._next_wake = math.inf
        self._thread = None

    def arm(self, deadline: float, connection: Any) -> None:
        """Watch ``connection`` (its ``sock`` attribute) until ``disarm``; ``deadline`` is on
        ``time.monotonic``."""
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None:
            slot = self._new_slot()
        slot.armed = (deadline, connection)
        if deadline < self._next_wake or self._next_wake == _SCANNING:
            with self._cond:
                self._ensure_thread()
                self._cond.notify()

    def disarm(self) -> None:
        """The attempt of this thread is over."""
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is not None:
            slot.armed = None

    def _new_slot(self) -> _Slot:
        slot = _Slot()
        self._local.slot = slot
        with self._cond:
            self._slots.add(slot)
        return slot

    def _ensure_thread(self) -> None:
        # Called with the lock held.
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="otel-bucket-watchdog")
            self._thread.daemon = True
            self._thread.start()

    def _run(self) -> None:
        refuse_process_signals()
        with self._cond:
            while True:
                self._next_wake = _SCANNING
                now = time.monotonic()
                earliest = math.inf
                for slot in list(self._slots):
                    armed = slot.armed
                    if armed is None:
                        continue
                    deadline, connection = armed
                    if deadline <= now:
                        slot.armed = None
                        cut(connection)
                    else:
                        earliest = min(earliest, deadline)
                self._next_wake = earliest
                self._cond.wait(None if earliest == math.inf else earliest - now)


def cut(connection: Any) -> None:
    """Shut ``connection``'s socket: a read blocked on it returns at once."""
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):  # already closed, or never connected
        sock.shutdown(socket.SHUT_RDWR)
    _log.debug("closed a connection that outlived its deadline")


watchdog = Watchdog()
"""The one watchdog of the process."""
