"""Drains at every end a process can have: ``flush()``, signals, Celery and pool children.

``install()`` registers its processors here. Whatever ends the process (a signal through
``_signals``, Celery's ``worker_process_shutdown`` in a prefork child, the finalizers a
multiprocessing or billiard child runs before ``os._exit``) drains them within the exporter's
``timeout``, and what is still lost is one error line with its count.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import math
import sys
import weakref
from collections.abc import Callable
from typing import Any

from otel_bucket.export._drains import PROCESS_ENDS, Drainable
from otel_bucket.export._processor import BucketSpanProcessor

__all__ = [
    "at_process_end",
    "drain_at_child_exit",
    "drain_at_end",
    "flush",
    "installed",
    "register",
]

_log = logging.getLogger(__name__)

_processors: weakref.WeakSet[BucketSpanProcessor] = weakref.WeakSet()
_at_end: list[Callable[[], None]] = []  # run once each at the process's end


def register(processor: BucketSpanProcessor) -> None:
    """Drain ``processor`` at the process's end and on ``flush()``.

    In a multiprocessing child (a ``spawn`` one, such as a uvicorn ``--workers`` worker, built
    its processor itself), which ends with ``os._exit()`` after multiprocessing's own exit hooks
    and never runs ``atexit``, the drain is one of those hooks.
    """
    _processors.add(processor)
    if _in_multiprocessing_child():
        _finalize_at_exit(processor)
    connect_celery()


def at_process_end(hook: Callable[[], None]) -> None:
    """Run ``hook`` (once) at the process's end: at ``atexit``, or in a multiprocessing child
    with its exit hooks, after the processors' drains."""
    if hook in _at_end:
        return
    _at_end.append(hook)
    atexit.register(hook)
    if _in_multiprocessing_child():
        import multiprocessing.util

        multiprocessing.util.Finalize(None, hook, exitpriority=0)


def _in_multiprocessing_child() -> bool:
    # Never imports multiprocessing: in a child of it, it is imported already.
    process = sys.modules.get("multiprocessing.process")
    return process is not None and process.parent_process() is not None


def installed() -> list[BucketSpanProcessor]:
    """The processors ``install()`` added that are still alive."""
    return list(_processors)


def flush(timeout: float | None = None) -> bool:
    """Deliver now what every processor ``install()`` added holds, and wait for it.

    For short-lived work that may end without a normal exit: scripts, cron jobs, serverless
    handlers (the platform may freeze or end the process right after the handler returns), tests.
    The processors keep running afterwards. Safe to call from any thread and from a signal
    handler.

    Args:
        timeout: seconds to wait at most, for all processors together; default each exporter's
            ``timeout`` (``BUCKET_TIMEOUT``, 10 s).

    Returns:
        True when every queued span was exported and no call waits for a retry (the endpoint
        answered); False otherwise, the calls then stay queued for a later attempt.

    Raises:
        TypeError: ``timeout`` is not a number.
        ValueError: ``timeout`` is negative, NaN or infinite.
    """
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
        if not math.isfinite(timeout) or timeout < 0:
            raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
    return _drain(timeout, finish=False)


def drain_at_end(reason: str, *, finish: bool) -> None:
    """Drain every installed processor because the process is (probably) ending.

    Args:
        reason: what ends it, for the log line (``"SIGTERM"``).
        finish: the process ends right after this (shut the processors down, so the exporter
            reports what is lost); otherwise only flush, because it may go on for a while (a
            server finishing its requests) and its later spans must still be sent.
    """
    if _drain(None, finish=finish) or finish:
        return
    spans = calls = 0
    for processor in installed():
        spans += processor.queued
        bucket = processor._bucket
        calls += bucket.pending if bucket is not None else 0
    if spans or calls:
        _log.error(
            "otel-bucket could not deliver %d span(s) and %d call(s) yet when %s arrived; they "
            "are lost if the process ends before the next export",
            spans,
            calls,
            reason,
        )


def _drain(seconds: float | None, *, finish: bool) -> bool:
    """Hand every processor its drain at once (they run in parallel), then wait for each."""
    begun = []
    for processor in installed():
        budget = processor._drain_budget() if seconds is None else seconds
        begun.append((processor, processor._begin(budget, finish=finish)))
    ok = True
    for processor, request in begun:
        if request is not None:
            ok = processor._wait(request) and ok
    return ok


def drain_at_child_exit(processor: Drainable) -> None:
    """In a forked child: drain ``processor`` at the child's end, which skips ``atexit``.

    A multiprocessing (or billiard: it shares multiprocessing's registries) child runs its
    finalizers before ``os._exit()``; its registry is cleared after the fork hooks, so register
    through its own after-fork hook. Only when multiprocessing is in use: importing it would add
    an atexit hook to every process. A Celery prefork child ends with ``os._exit()`` before its
    finalizers, after sending ``worker_process_shutdown``.
    """
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.register_after_fork(processor, _finalize_at_exit)
    connect_celery()


def _finalize_at_exit(processor: Drainable) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(
        processor, processor._shutdown_within, args=(processor._drain_budget(),), exitpriority=10
    )


def connect_celery() -> None:
    """Drain in each Celery prefork child at its end, when Celery is in use (never imports it)."""
    if "celery" not in sys.modules:
        return
    try:
        signals: Any = importlib.import_module("celery.signals")
        signals.worker_process_shutdown.connect(
            _on_worker_process_shutdown, weak=False, dispatch_uid="otel_bucket.drain"
        )
    except Exception as exc:  # an unusual Celery: say so, never break the application
        _log.warning("otel-bucket could not connect to Celery's worker_process_shutdown: %s", exc)


def _on_worker_process_shutdown(**_: object) -> None:
    # Sent in the pool child itself, whether it ends on warm shutdown, recycling
    # (--max-tasks-per-child, --max-memory-per-child) or a terminate signal.
    drain_at_end("Celery's worker_process_shutdown", finish=True)


PROCESS_ENDS.child_started = drain_at_child_exit  # every processor, in every forked child
