"""otel-bucket's own metrics, through the OpenTelemetry metrics API only.

Without a ``MeterProvider`` the API hands out no-op (proxy) instruments, so recording costs a
method call per outcome and batch, never per span; nothing is recorded on the application's
threads (``on_end`` records nothing: the queue is observed when a metric reader asks). The
meter is taken from the global API at once: its proxy meter forwards to a provider set later.

Instruments are made once per meter provider and shared by every exporter that uses it;
observable ones add up the live exporters' and processors' values.
"""

from __future__ import annotations

import collections
import logging
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final, Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from otel_bucket.ground._fork import after_fork_in_child
from otel_bucket.ground._version import tracer_version

__all__ = ["METER_NAME", "OUTCOMES", "Recorder", "check_meter_provider"]

_log = logging.getLogger(__name__)

METER_NAME: Final = "otel_bucket"
OUTCOMES: Final = (
    "delivered",
    "rejected",
    "retried",
    "deduplicated",
    "dropped",
    "filtered",
    "undelivered",
    "spooled",
    "unspooled",
)
_METHODS: Final = ("user", "company", "event")
# Histogram buckets for a duration in seconds, as the semantic conventions advise.
_SECONDS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# One attribute dict per (outcome, method), made once: recording allocates nothing.
_ATTRIBUTES: Final[dict[tuple[str, str | None], Mapping[str, str]]] = {
    (outcome, method): {"method": method, "outcome": outcome}
    if method is not None
    else {"outcome": outcome}
    for outcome in OUTCOMES
    for method in (*_METHODS, None)
}
_FAILED: Final = {"error.type": "undelivered"}


class _Counted(Protocol):
    @property
    def method(self) -> str: ...


class _Plan(Protocol):
    """What the books read of an export's mapping (``export._mapping.Plan``)."""

    @property
    def dropped_events(self) -> int: ...
    @property
    def anonymous_events(self) -> int: ...
    @property
    def skipped_spans(self) -> int: ...


class _Kept(Protocol):
    """What the books read of ``before_send``'s work (``export._filter.Filtered``)."""

    @property
    def calls(self) -> Sequence[_Counted]: ...
    @property
    def filtered(self) -> Sequence[_Counted]: ...
    @property
    def failed(self) -> Sequence[_Counted]: ...


class _Exporter(Protocol):
    @property
    def pending(self) -> int: ...


class _QueueSettings(Protocol):
    @property
    def max_queue_size(self) -> int: ...


class _Queue(Protocol):
    @property
    def queued(self) -> int: ...
    @property
    def dropped_spans(self) -> int: ...
    @property
    def settings(self) -> _QueueSettings: ...


def check_meter_provider(value: object) -> MeterProvider | None:
    """``value`` if it is a ``MeterProvider`` (or None).

    Raises:
        TypeError: it is something else.
    """
    if value is not None and not isinstance(value, MeterProvider):
        raise TypeError(
            "meter_provider must be an opentelemetry.metrics.MeterProvider, got "
            f"{type(value).__name__}"
        )
    return value


class _Instruments:
    """The instruments of one meter provider, and what its observable ones look at."""

    def __init__(self, provider: MeterProvider | None) -> None:
        meter = metrics.get_meter(METER_NAME, tracer_version(), meter_provider=provider)
        self.exporters: weakref.WeakSet[_Exporter] = weakref.WeakSet()
        self.queues: weakref.WeakSet[_Queue] = weakref.WeakSet()
        self._drops_seen: weakref.WeakKeyDictionary[_Queue, int] = weakref.WeakKeyDictionary()
        self._drops = 0
        self._new_lock()
        after_fork_in_child(self, _Instruments._new_lock)
        self.calls = meter.create_counter(
            "otel_bucket.calls",
            unit="{call}",
            description="Calls to the Bucket Tracking API, by method and by what became of them",
        )
        description = "Duration of one export: a batch of spans mapped and its calls sent"
        try:
            self.duration = meter.create_histogram(
                "otel_bucket.export.duration",
                unit="s",
                description=description,
                explicit_bucket_boundaries_advisory=_SECONDS,
            )
        except TypeError:  # an API older than 1.23 takes no advice
            self.duration = meter.create_histogram(
                "otel_bucket.export.duration", unit="s", description=description
            )
        meter.create_observable_up_down_counter(
            "otel_bucket.backlog.size",
            [self._observe_backlog],
            unit="{call}",
            description="Calls not settled yet: waiting in memory, in backoff, or in flight",
        )
        meter.create_observable_up_down_counter(
            "otel_bucket.queue.size",
            [self._observe_queue],
            unit="{span}",
            description="Spans waiting in the BucketSpanProcessor's queue",
        )
        meter.create_observable_up_down_counter(
            "otel_bucket.queue.capacity",
            [self._observe_capacity],
            unit="{span}",
            description="Spans the BucketSpanProcessor's queue holds at most",
        )
        meter.create_observable_counter(
            "otel_bucket.queue.dropped",
            [self._observe_drops],
            unit="{span}",
            description="Spans dropped from a full BucketSpanProcessor queue",
        )

    def _new_lock(self) -> None:
        self._lock = threading.Lock()  # a lock a parent's reader thread held would hang

    # Observable callbacks run on the metric reader's thread; the SDK logs what they raise.

    def _observe_backlog(self, options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(sum(exporter.pending for exporter in list(self.exporters)))

    def _observe_queue(self, options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(sum(queue.queued for queue in list(self.queues)))

    def _observe_capacity(self, options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(sum(queue.settings.max_queue_size for queue in list(self.queues)))

    def _observe_drops(self, options: CallbackOptions) -> Iterator[Observation]:
        # A running total, so the counter never goes down when a processor is collected or a
        # forked child starts counting from zero.
        with self._lock:
            for queue in list(self.queues):
                dropped = queue.dropped_spans
                seen = self._drops_seen.get(queue, 0)
                self._drops += max(dropped - seen, 0)
                self._drops_seen[queue] = dropped
            total = self._drops
        yield Observation(total)


_lock = threading.Lock()
_global: _Instruments | None = None
_by_provider: weakref.WeakKeyDictionary[MeterProvider, _Instruments] = weakref.WeakKeyDictionary()


def _instruments(provider: MeterProvider | None) -> _Instruments:
    """The shared instruments of ``provider`` (None: the global one, set now or later)."""
    global _global
    with _lock:
        if provider is None:
            if _global is None:
                _global = _Instruments(None)
            return _global
        try:
            found = _by_provider.get(provider)
        except TypeError:  # not weakly referenceable: instruments of its own
            return _Instruments(provider)
        if found is None:
            found = _by_provider[provider] = _Instruments(provider)
        return found


def _by_method(items: Iterable[_Counted]) -> dict[str, int]:
    counts: dict[str, int] = collections.defaultdict(int)
    for item in items:
        counts[item.method] += 1
    return counts


class Recorder:
    """One exporter's metrics: each place that counts calls in ``stats`` adds one line here."""

    def __init__(self, exporter: _Exporter, provider: MeterProvider | None) -> None:
        self._instruments = _instruments(provider)
        self._instruments.exporters.add(exporter)
        self._warning: list[None] = [None]

    def watch_queue(self, queue: _Queue) -> None:
        """Observe a processor's queue (read when a metric reader collects)."""
        self._instruments.queues.add(queue)

    def add(self, outcome: str, count: int, method: str | None = None) -> None:
        """``count`` calls of ``method`` (None: not known) had ``outcome``."""
        if count:
            attributes = _ATTRIBUTES.get((outcome, method))
            if attributes is None:
                attributes = {"outcome": outcome, "method": str(method)}
            try:
                self._instruments.calls.add(count, attributes)
            except Exception as exc:  # a faulty MeterProvider must not cost a call
                self._failed(exc)

    def count(self, outcome: str, items: Iterable[_Counted]) -> None:
        """Each of ``items`` had ``outcome``."""
        for method, count in _by_method(items).items():
            self.add(outcome, count, method)

    def removed(self, outcome: str, before: Sequence[_Counted], after: Sequence[_Counted]) -> None:
        """The calls in ``before`` that are not in ``after`` had ``outcome``."""
        if len(before) != len(after):
            left = _by_method(after)
            for method, count in _by_method(before).items():
                self.add(outcome, count - left.get(method, 0), method)

    def planned(self, plan: _Plan, kept: _Kept, fresh: Sequence[_Counted]) -> None:
        """An export's mapping: unusable spans, what ``before_send`` dropped, duplicates."""
        self.add("dropped", plan.dropped_events + plan.anonymous_events, "event")
        self.add("dropped", plan.skipped_spans)  # a span that could not be read: no method
        self.count("dropped", kept.failed)
        self.count("filtered", kept.filtered)
        self.removed("deduplicated", kept.calls, fresh)

    def unspooled(self, items: Sequence[_Counted], fresh: Sequence[_Counted]) -> None:
        """Calls taken from the spool; those identical to a recent delivery settled at once."""
        self.count("unspooled", items)
        self.removed("deduplicated", items, fresh)

    def kept(self, items: Sequence[_Counted], stored: int) -> None:
        """``items`` went to the spool; those beyond ``stored`` are lost."""
        if stored >= len(items):
            self.count("spooled", items)
        elif not stored:
            self.count("undelivered", items)
        else:  # the spool refused a few it could not encode: which ones is not known
            self.count("spooled", items[:stored])
            self.count("undelivered", items[stored:])

    def exported(self, seconds: float, ok: bool) -> None:
        """One export took ``seconds``; ``ok``: every call delivered or settled."""
        try:
            self._instruments.duration.record(max(seconds, 0.0), None if ok else _FAILED)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        try:
            self._warning.pop()  # atomic: one warning per exporter
        except IndexError:
            return
        _log.warning(
            "otel-bucket could not record its metrics (%s: %s); it goes on without them",
            type(exc).__name__,
            exc,
        )
