"""What every thread of ours does first: refuse process signals, suppress instrumentation."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context

__all__ = ["refuse_process_signals", "suppressed_instrumentation", "suppressing"]

# The key instrumentations check (opentelemetry.context exposes it for exporters), and the
# plain-string key the HTTP client instrumentations also check.
_SUPPRESS_KEYS = (context._SUPPRESS_INSTRUMENTATION_KEY, "suppress_http_instrumentation")


_PROCESS_SIGNALS = {
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name)
}


def refuse_process_signals() -> None:
    """Block SIGTERM, SIGHUP and SIGINT in the calling thread (one of ours).

    A process-directed signal goes to any thread that does not block it. Python runs handlers
    in the main thread only, and a main thread blocked in a lock (a join(), an Event().wait())
    is woken only if it received the signal itself: so every thread of ours refuses them.
    """
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, _PROCESS_SIGNALS)


def suppressing() -> context.Context:
    """The current context with instrumentation suppressed."""
    ctx = context.get_current()
    for key in _SUPPRESS_KEYS:
        ctx = context.set_value(key, True, ctx)
    return ctx


@contextmanager
def suppressed_instrumentation() -> Iterator[None]:
    """Within the block, this thread's HTTP requests create no spans."""
    token = context.attach(suppressing())
    try:
        yield
    finally:
        context.detach(token)
