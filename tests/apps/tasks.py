"""A Celery app for the server tests: the task ``tasks.work`` makes one feature call.

``install()`` runs at import in the worker's main process; the prefork children inherit it.
Nothing of ours is connected by hand: the drain at each child's end is the default.
"""

from __future__ import annotations

import os

from celery import Celery

from otel_bucket import feature, identify, install
from tests._redis import filesystem_options

install()

app = Celery("tasks", broker=os.environ["CELERY_BROKER_URL"])
app.conf.broker_connection_retry_on_startup = True
folder = os.environ.get("CELERY_FS_FOLDER")  # kombu's filesystem transport, when no Redis
if folder:
    app.conf.broker_transport_options = filesystem_options(folder)


@feature("Work")
def use_feature() -> None:
    pass


@app.task(name="tasks.work")
def work(user: str) -> str:
    """One feature call for ``user`` in company ``acme``."""
    with identify(user, "acme"):
        use_feature()
    return user
