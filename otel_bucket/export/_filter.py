"""``before_send``: the user's hook over every call, run on the exporter's thread.

It runs after mapping (and merging within an export) and before deduplication, once per call:
calls that come back from the spool were filtered before they went in. A hook that raises, or
returns something other than a ``BucketCall`` or None, costs only that call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from otel_bucket.export._calls import BucketCall, from_call, to_call
from otel_bucket.ground._call import Call
from otel_bucket.ground._throttle import Throttle

__all__ = ["BeforeSend", "BeforeSendFilter", "Filtered", "check_before_send"]

_log = logging.getLogger("otel_bucket.export._exporter")

BeforeSend = Callable[[BucketCall], BucketCall | None]

_EVERY = 60.0  # seconds between two warnings about a failing hook


def check_before_send(value: object) -> BeforeSend | None:
    """``value`` if it can be a ``before_send`` hook.

    Raises:
        TypeError: it is not callable (nor None).
    """
    if value is not None and not callable(value):
        raise TypeError(
            f"before_send must be a callable (call) -> BucketCall | None, got "
            f"{type(value).__name__}"
        )
    return value  # callable() cannot check the signature: a wrong one fails per call


@dataclass
class Filtered:
    """What a hook made of an export's calls."""

    calls: list[Call]  # to send
    filtered: list[Call] = field(default_factory=list)  # the hook returned None
    failed: list[Call] = field(default_factory=list)  # the hook raised or returned junk


class BeforeSendFilter:
    """Runs one exporter's hook (or none) over calls; warns about failures once a minute."""

    def __init__(self, hook: BeforeSend | None, clock: Callable[[], float]) -> None:
        self._hook = hook
        self._failures = Throttle(_EVERY, clock)

    def apply(self, calls: list[Call]) -> Filtered:
        """Each call as the hook returned it; the dropped ones apart. Never raises."""
        hook = self._hook
        if hook is None or not calls:
            return Filtered(calls)
        out = Filtered([])
        for call in calls:
            try:
                public = from_call(call)
                returned = hook(public)
            except Exception as exc:  # the hook's fault costs this call only
                # Its type only: the message or a traceback could carry the call's content.
                self._fail(out, call, f"it raised {type(exc).__qualname__}")
                continue
            if returned is None:
                out.filtered.append(call)
            elif returned is public:  # unchanged: send our call as it is
                out.calls.append(call)
            elif not isinstance(returned, BucketCall):
                self._fail(out, call, f"it returned {type(returned).__name__}, not a BucketCall")
            elif returned.method != call.method:
                self._fail(out, call, f"it returned a {returned.method} call")
            else:
                # The same time as it came: keep its text rather than format it again.
                kept = returned.timestamp is public.timestamp
                try:  # a BucketCall subclass could still break here
                    out.calls.append(
                        to_call(returned, call.payload.get("timestamp") if kept else None)
                    )
                except Exception as exc:
                    self._fail(out, call, f"its call could not be read ({type(exc).__qualname__})")
        return out

    def _fail(self, out: Filtered, call: Call, why: str) -> None:
        out.failed.append(call)
        total = self._failures.ready(1)
        if total is not None:
            _log.warning(
                "otel-bucket dropped %d call(s) that before_send failed on; the last, a %s "
                "call: %s",
                total,
                call.method,
                why,
            )
