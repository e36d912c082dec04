"""gunicorn settings for ``flask_app.py``: prefork workers, each delivering its own events.

    otel-bucket devserver                                    # in another terminal
    BUCKET_ENDPOINT=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev \\
        gunicorn -c examples/gunicorn.conf.py
    curl -H 'X-User-Id: 42' -H 'X-Company-Id: acme' http://127.0.0.1:8000/export

Why prefork is safe, even with ``preload_app`` (the app, and so ``install()``, is imported once in
the master, then the workers are forked from it):

- a forked child has no copy of the parent's threads, so otel-bucket's processor starts a new
  batching thread in each child (``os.register_at_fork``) with an empty queue: no span is sent
  twice, and spans queued in the master before the fork stay the master's;
- the exporter opens its own HTTP connections in each child instead of sharing the parent's
  sockets (a session you passed in yourself stays yours to manage);
- each worker is one process with its own queue, so events reach Bucket from every worker;
- SIGTERM (how gunicorn stops or recycles a worker) drains the worker's queue first. gunicorn
  sets each worker's signal handlers after the fork, so with ``preload_app`` the handler
  ``install()`` armed in the master is gone in the workers: ``post_worker_init`` below calls
  ``install()`` again (it returns the processor already there and re-arms the drain). A sync
  worker would deliver at its normal exit anyway; an ASGI worker
  (``worker_class = "uvicorn.workers.UvicornWorker"``) ends by re-raising SIGTERM, without
  ``atexit``, and needs this line. Without ``preload_app`` the app's own ``install()`` runs in
  each worker after gunicorn's setup, and nothing here is needed.
"""

from __future__ import annotations

import os
from typing import Any

import otel_bucket

wsgi_app = "flask_app:app"
pythonpath = os.path.dirname(os.path.abspath(__file__))  # where flask_app.py lives
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
preload_app = True  # import the app (and run install()) once, before forking


def post_worker_init(worker: Any) -> None:
    """Re-arm otel-bucket's SIGTERM drain after gunicorn set this worker's own handlers."""
    otel_bucket.install()
