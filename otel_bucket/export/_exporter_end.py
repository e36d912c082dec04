"""What leaves the exporter's memory for the spool: at shutdown, and when asked to keep it there.

A mixin of ``BucketSpanExporter`` (on top of its books, ``ExporterBooks``): at shutdown every
waiting call gets its last attempt, what is left is merged as it would have been while waiting,
kept in the spool, and reported in one line (``_final``); a process about to be ended keeps its
calls on disk before they are sent (``keep_in_spool``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan

from otel_bucket.delivery._dispatch import Dispatcher
from otel_bucket.delivery._pending import Pending
from otel_bucket.export._exporter_books import ExporterBooks
from otel_bucket.ground._call import merge_calls
from otel_bucket.ground._redact import redact

__all__ = ["ExporterEnd"]

_log = logging.getLogger("otel_bucket.export._exporter")


class ExporterEnd(ExporterBooks):
    """Calls kept in the spool instead of memory: at shutdown, or on request."""

    # The exporter's state (set in its __init__ and _new_state).
    _dispatcher: Dispatcher
    _shut_down: bool

    _plan: Callable[[Sequence[ReadableSpan]], list[Pending]]  # the exporter's mapping

    def keep_in_spool(self, spans: Sequence[ReadableSpan] = (), *, last: bool = False) -> int:
        """Write the calls of ``spans``, and those waiting in memory, to the spool now instead
        of sending them; return how many calls the spool took. Never raises.

        For a process that may be ended before it could send what it holds (Django's
        autoreloader kills its child 0.25 s after Ctrl-C): a call is on disk before it is sent
        (the senders then take it back from the spool, oldest first, and delete it once the API
        answered), and what this process does not deliver, the next one on the same spool does.
        Without a spool (turned off, or failing) nothing is written and the calls wait in
        memory as usual.

        Args:
            spans: spans whose calls to keep (mapped, filtered and deduplicated as by
                ``export``).
            last: the process is about to be ended: also stop sending (calls in flight are
                still settled; the others stay in the spool) and give back this process's
                leases on spooled calls, so that the next process may send them at once.
        """
        try:
            waiting = self._dispatcher.withdraw()
            items = waiting + self._plan(spans)
            stored = self._spooling.keep(items)
            if stored:
                self._stats.add(spooled=stored, undelivered=len(items) - stored)
                self._metrics.kept(items, stored)
            elif self._shut_down:
                self._spool(items, "they were handed over after shutdown")
            else:
                self._dispatcher.submit(items)
            self._dispatcher.settled_left(len(waiting))
            if last:
                self._dispatcher.close()
                self._spooling.close()
            return stored
        except Exception as exc:
            _log.error("otel-bucket could not keep calls in its spool: %s", self._redacted(exc))
            return 0

    def _redacted(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._settings.tracking_key)

    def _final(self, deadline: float) -> None:
        """The last attempts, then the spool for what is left; one line for what was kept and
        one error line for everything lost that no line reported yet."""
        send = bool(self._settings.endpoint) and not self._gate.is_down()
        self._left = []
        left = self._dispatcher.drain(deadline, send=send)
        failed, self._left = self._left, None
        kept = self._collapse(failed + left)
        stored = self._spool_quietly(kept)
        self._dispatcher.settled_left(len(left))
        self._spooling.close()
        still = {id(item) for item in kept}
        failed = [item for item in failed if id(item) in still]
        left = [item for item in left if id(item) in still]
        refused = sum(1 for item in left if not send or self._gate.is_failing(item.method))
        self._report.at_exit(
            kept=stored,
            lost=len(kept) - stored,
            failed=len(failed),
            refused=refused,
            late=len(left) - refused,
            cause=self._gate.last_error,
            spool=str(self._settings.spool_dir) if stored else "",
            latency=self._dispatcher.latency.mean,
            spooled=self._stats.snapshot(0).spooled,
        )

    def _collapse(self, items: list[Pending]) -> list[Pending]:
        """User and company calls for the same ids merged into the latest (counted as
        deduplicated), as while they waited; events and spooled calls unchanged."""
        items.sort(key=lambda item: item.seq)
        latest: dict[tuple[str, ...], list[Pending]] = {}
        for item in items:
            if item.method != "event" and item.spool_id is None:
                latest.setdefault(item.call.identity, []).append(item)
        merged = [group for group in latest.values() if len(group) > 1]
        if not merged:
            return items
        gone: set[int] = set()
        for group in merged:
            group[-1].replace_call(merge_calls([item.call for item in group])[0])
            gone.update(id(item) for item in group[:-1])
        self._count("deduplicated", [item for item in items if id(item) in gone])
        return [item for item in items if id(item) not in gone]

    def _spool_quietly(self, items: Sequence[Pending]) -> int:
        stored = self._spooling.keep(items)
        self._stats.add(spooled=stored, undelivered=len(items) - stored)
        self._metrics.kept(items, stored)
        return stored
