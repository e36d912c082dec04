"""A process that its reloader kills at Ctrl-C: the child of Django's ``runserver`` autoreloader,
or of Werkzeug's reloader (``flask run --reload``, ``--debug``).

Both reloaders serve from a child process and wait for it with ``subprocess``. Ctrl-C reaches
both; the parent then waits 0.25 s for the child (``subprocess``'s grace after a
``KeyboardInterrupt``) and kills it with SIGKILL (at once, when the parent gets SIGTERM instead).
No drain fits in 0.25 s against an endpoint a few hundred milliseconds away, and nothing runs
after SIGKILL. So in such a child:

- every call goes to the spool before it is sent (``BucketSpanExporter.keep_in_spool``; then
  ``force_flush`` sends it from there and deletes it once the API answered): whenever the child
  dies, what it had not delivered is on disk, and the next process on the same spool (the next
  server started, or ``otel-bucket spool flush``) sends it;
- at Ctrl-C (SIGINT, which ``install()`` arms in such a child), the spans still queued go to the
  spool too, sending stops (calls in flight are still settled), the child's leases on spooled
  calls are given back so that the next process sends them at once, and one ERROR line says how
  many calls wait, where, and how to avoid it (run without the reloader).

Without a spool none of this is possible: the ERROR line then counts what is at risk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Final

from opentelemetry.sdk.trace import ReadableSpan

from otel_bucket.export._drains import PROCESS_ENDS
from otel_bucket.export._exporter import BucketSpanExporter
from otel_bucket.lifecycle._lifecycle import installed

__all__ = ["hand_over", "handed_over", "killed_by", "spool_first"]

_log = logging.getLogger(__name__)

_handed_over = [False]  # Ctrl-C came: nothing more is sent from this process


# What each reloader sets in its child's environment, its name, and how to run without it.
_RELOADERS: Final = (
    ("RUN_MAIN", "Django's autoreloader", "`runserver --noreload`"),  # DJANGO_AUTORELOAD_ENV
    ("WERKZEUG_RUN_MAIN", "Werkzeug's reloader", "`flask run --no-reload`"),
)


def killed_by() -> tuple[str, str] | None:
    """The reloader that kills this process 0.25 s after Ctrl-C (its name, and how to run
    without it), or None."""
    for variable, name, instead in _RELOADERS:
        if os.environ.get(variable) == "true":
            return name, instead
    return None


def _spools(bucket: BucketSpanExporter) -> bool:
    settings = bucket.settings
    return settings.spool_dir is not None and bool(settings.endpoint) and not settings.offline


def spool_first(
    bucket: BucketSpanExporter | None, spans: Sequence[ReadableSpan], seconds: float | None
) -> bool:
    """In a reloader's child: keep the calls of ``spans`` in the spool, then send from there
    (within ``seconds``, default the exporter's ``timeout``); once Ctrl-C came, only keep them.
    False anywhere else: the caller exports as usual."""
    if bucket is None or killed_by() is None or not _spools(bucket):
        return False
    bucket.keep_in_spool(spans)
    if not _handed_over[0]:
        budget = bucket.settings.timeout if seconds is None else seconds
        bucket.force_flush(int(budget * 1000))
    return True


def handed_over() -> bool:
    """Whether Ctrl-C came in a reloader's child: the processors send nothing more."""
    return _handed_over[0]


def hand_over() -> None:
    """Ctrl-C in a reloader's child: every processor keeps what it holds in the spool and stops
    sending, and one ERROR line says so. Runs in the SIGINT handler, on the main thread, which
    in such a child runs the reloader's loop, never otel-bucket's code."""
    reloader = killed_by()
    if reloader is None or _handed_over[0]:
        return
    name, instead = reloader
    _handed_over[0] = True
    kept = at_risk = 0
    where: set[str] = set()
    for processor in installed():
        bucket = processor._bucket
        if bucket is None:
            continue
        if _spools(bucket):
            kept += bucket.keep_in_spool(processor._take_queue(), last=True) + bucket.pending
            where.add(str(bucket.settings.spool_dir))
        else:
            at_risk += processor.queued + bucket.pending
    if kept:
        _log.error(
            "otel-bucket: %s ends this process 0.25 s after Ctrl-C, too soon to deliver what it "
            "holds: %d call(s) not delivered yet are kept in the spool (%s) for the next process "
            "on this endpoint to send (or `otel-bucket spool flush` now); %s delivers them "
            "before exiting",
            name,
            kept,
            ", ".join(sorted(where)),
            instead,
        )
    if at_risk:
        _log.error(
            "otel-bucket: %s ends this process 0.25 s after Ctrl-C, too soon to deliver what it "
            "holds, and the spool is off: %d span(s) and call(s) not delivered yet are lost if "
            "they are not sent by then; turn the spool on (BUCKET_SPOOL_DIR) or use %s",
            name,
            at_risk,
            instead,
        )


PROCESS_ENDS.spool_first = spool_first  # every processor's batches, in a reloader's child
