"""Batching options of ``BucketSpanProcessor``: argument, else ``OTEL_BSP_*``, else default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from otel_bucket.ground._config import parse_count, resolve

__all__ = ["BatchSettings", "resolve_batch_settings"]

# name -> (environment variable, default); the SDK's names and defaults, but a larger queue:
# analytics arrive in bursts (a loop over 10,000 rows), and a span is small.
_OPTIONS: Final = {
    "max_queue_size": ("OTEL_BSP_MAX_QUEUE_SIZE", 16384),
    "schedule_delay_millis": ("OTEL_BSP_SCHEDULE_DELAY", 5000),
    "max_export_batch_size": ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
    "export_timeout_millis": ("OTEL_BSP_EXPORT_TIMEOUT", 30000),
}


@dataclass(frozen=True)
class BatchSettings:
    """Resolved batching options: argument, else ``OTEL_BSP_*`` variable, else default."""

    max_queue_size: int
    schedule_delay_millis: int
    max_export_batch_size: int
    export_timeout_millis: int
    eager: bool = True
    """Send as soon as spans are queued and no export runs (the default). False when a schedule
    delay was given: spans then wait for a full batch or ``schedule_delay_millis``."""


def _int_argument(value: object) -> int:
    if isinstance(value, str):  # the variables are text; an argument must be an int
        raise TypeError(f"must be an int, got {type(value).__name__}")
    return parse_count(value)


def resolve_batch_settings(**given: int | None) -> BatchSettings:
    """Resolve each option in one place; a bad argument raises naming it.

    Raises:
        TypeError: an option is not an int.
        ValueError: an option is not positive, or the batch is larger than the queue.
    """

    def option(name: str) -> int:
        variable, default = _OPTIONS[name]
        return resolve(
            name, given.get(name), variable, parse_count, default, parse_argument=_int_argument
        )

    queue_size = option("max_queue_size")
    batch = option("max_export_batch_size")
    timeout = option("export_timeout_millis")
    # No default here: a delay set nowhere means "send eagerly".
    delay: int | None = resolve(
        "schedule_delay_millis",
        given.get("schedule_delay_millis"),
        _OPTIONS["schedule_delay_millis"][0],
        parse_count,
        None,
        parse_argument=_int_argument,
    )
    if batch > queue_size:
        if given.get("max_export_batch_size") is not None:
            raise ValueError("max_export_batch_size must not exceed max_queue_size")
        batch = queue_size  # a small queue, default batch
    return BatchSettings(
        max_queue_size=queue_size,
        schedule_delay_millis=_OPTIONS["schedule_delay_millis"][1] if delay is None else delay,
        max_export_batch_size=batch,
        export_timeout_millis=timeout,
        eager=delay is None,
    )
