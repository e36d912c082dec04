"""``install``: the exporter, its processor and the sampler wrapper on one provider (section 7)."""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import Tracer, TracerProvider

from otel_bucket.export._processor import BucketSpanProcessor
from otel_bucket.ground._version import tracer_version
from otel_bucket.instrument._decorator import TRACER_NAME, forget_tracers
from otel_bucket.instrument._sampling import BucketSampler
from otel_bucket.lifecycle import _lifecycle, _signals

__all__ = ["existing_tracers", "install", "wrap_sampler"]

_log = logging.getLogger(__name__)

_installed: weakref.WeakKeyDictionary[TracerProvider, BucketSpanProcessor] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def existing_tracers(provider: TracerProvider) -> list[Tracer]:
    """The tracers ``provider`` has already handed out.

    The one private SDK access in otel-bucket. A ``Tracer`` takes the provider's sampler when it
    is created, and recent SDKs cache tracers (``TracerProvider._tracers``, guarded by
    ``_tracers_lock``), so replacing ``provider.sampler`` alone would leave every tracer handed
    out before ``install()`` (instrumentations, features) on the old sampler. No public API lists
    them. SDKs without the cache create a tracer per ``get_tracer`` call and need nothing here.
    ``tests/test_install.py`` fails loudly if the SDK moves this.
    """
    tracers = getattr(provider, "_tracers", None)
    if not isinstance(tracers, dict):
        return []
    lock = getattr(provider, "_tracers_lock", None)
    if lock is None:
        return [t for t in list(tracers.values()) if isinstance(t, Tracer)]
    with lock:
        return [t for t in tracers.values() if isinstance(t, Tracer)]


def wrap_sampler(provider: TracerProvider) -> BucketSampler:
    """Wrap the provider's sampler (once) in ``BucketSampler``, for its tracers too."""
    current = provider.sampler
    if isinstance(current, BucketSampler):
        return current
    wrapped = BucketSampler(current)
    provider.sampler = wrapped
    for tracer in existing_tracers(provider):
        if tracer.sampler is current:
            tracer.sampler = wrapped
    forget_tracers()
    probe = provider.get_tracer(TRACER_NAME, tracer_version())  # the one features use
    if isinstance(probe, Tracer) and probe.sampler is not wrapped:
        _log.warning(
            "otel-bucket could not reach this SDK's existing tracers: features in traces "
            "the sampler drops will not reach Bucket"
        )
    return wrapped


def _global_sdk_provider() -> TracerProvider:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        raise RuntimeError(
            f"the global tracer provider is a {type(current).__name__}, not an SDK "
            "TracerProvider, and cannot be replaced: pass tracer_provider= to install()"
        )
    return provider


def install(
    tracer_provider: TracerProvider | None = None,
    *,
    handle_signals: bool | None = None,
    **exporter_options: Any,
) -> BucketSpanProcessor:
    """Send Bucket-relevant spans of ``tracer_provider`` to Bucket, whatever the sampler keeps.

    Builds a ``BucketSpanExporter(**exporter_options)`` and a ``BucketSpanProcessor`` for it,
    adds the processor to the provider, and wraps the provider's sampler so that spans starting
    with Bucket attributes are recorded even when the trace is not sampled. Other processors see
    exactly the spans they saw before. A second call for the same provider returns the first
    processor and adds nothing (it re-arms the signal handlers if something replaced them).

    Called in the main thread, it also makes SIGTERM and SIGHUP drain the queue (within the
    exporter's ``timeout``) before the process goes on as it would have: the previous handler is
    called, or the default action happens (see ``lifecycle._signals``). In a Celery prefork child,
    the queue is drained at the child's end too.

    Args:
        tracer_provider: an SDK ``TracerProvider``; default the global one (an SDK provider is
            created and set as global when none is set yet).
        handle_signals: ``False`` leaves SIGTERM and SIGHUP alone (for applications that manage
            signals themselves and call ``otel_bucket.flush()``); default
            ``BUCKET_HANDLE_SIGNALS``, else true.
        exporter_options: keyword arguments of ``BucketSpanExporter`` (``tracking_key``,
            ``endpoint``, ``timeout``, ``before_send``, ``meter_provider``, ...).

    Returns:
        The processor (``processor.exporter.stats`` gives the delivery counters).

    Raises:
        TypeError: ``tracer_provider`` is not an SDK ``TracerProvider``, ``handle_signals`` is
            not a bool, or an unknown option.
        ValueError: an exporter option is malformed (e.g. no tracking key anywhere), or
            ``tracer_provider`` was shut down.
        RuntimeError: the global provider is not an SDK provider and cannot be replaced, or it
            was shut down.
    """
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        raise TypeError(
            "tracer_provider must be an opentelemetry.sdk.trace.TracerProvider, "
            f"got {type(tracer_provider).__name__}"
        )
    handle = _signals.enabled(handle_signals)
    provider = tracer_provider if tracer_provider is not None else _global_sdk_provider()
    with _lock:
        processor = _installed.get(provider)
        if processor is not None:
            if processor._closed:
                # Its other processors are stopped too and its atexit drain is gone: a new
                # processor here would send some spans and lose the rest silently.
                what = "tracer_provider" if tracer_provider is not None else "the global provider"
                error = ValueError if tracer_provider is not None else RuntimeError
                raise error(
                    f"{what} was shut down, and otel-bucket's processor with it: install() on a "
                    "new TracerProvider (use otel_bucket.flush() to deliver without shutting down)"
                )
            if exporter_options:
                _log.warning("otel-bucket is already installed on this provider; options ignored")
        else:
            from otel_bucket.export._exporter import BucketSpanExporter

            processor = BucketSpanProcessor(BucketSpanExporter(**exporter_options))
            wrap_sampler(provider)
            provider.add_span_processor(processor)
            _installed[provider] = processor
            _lifecycle.register(processor)
    _signals.arm(handle)
    return processor
