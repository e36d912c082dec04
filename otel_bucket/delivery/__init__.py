"""From calls to HTTP answers: the queue of pending calls, the dispatcher and its sender threads,
the transport with its deadlines and watchdog, retry verdicts and backoff, the health gate of
each method and the limit of calls in flight.

To change how retries work, read in this order: ``_retry`` (what an answer means), ``_gate`` (a
method's health, probes), ``_queue`` and ``_pending`` (where a call waits), ``_dispatch`` and
``_senders`` (who sends it when), ``_transport`` and ``_watchdog`` (the HTTP request itself). It
imports only ``ground``; ``spool``, ``books`` and ``export`` import it.
"""
