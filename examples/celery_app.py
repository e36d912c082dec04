"""Celery: a task runs as the user and company of the request that sent it.

    otel-bucket devserver                                    # terminal 1
    export BUCKET_ENDPOINT=http://127.0.0.1:8787 BUCKET_TRACKING_KEY=dev
    celery --workdir examples -A celery_app worker --pool solo    # terminal 2
    python examples/celery_app.py 42 acme                    # terminal 3: sends one task

``otel_bucket.celery.propagate_identity(app)`` puts the identity in effect at ``.delay()`` into
the task's message headers and makes it the identity in effect while the task runs in the worker:
the feature inside the task becomes an event of user 42. The broker is kombu's filesystem
transport, so the example needs no Redis or RabbitMQ: sender and worker share the folder
``CELERY_BROKER_DIR`` (default: ``otel-bucket-celery`` in the system's temporary directory).
"""

from __future__ import annotations

import os
import sys
import tempfile

from celery import Celery

import otel_bucket.celery
from otel_bucket import feature, identify, install

install()  # in the worker and in the sender; BUCKET_TRACKING_KEY and BUCKET_ENDPOINT configure it

BROKER_DIR = os.environ.get(
    "CELERY_BROKER_DIR", os.path.join(tempfile.gettempdir(), "otel-bucket-celery")
)
for folder in ("queue", "processed", "control"):
    os.makedirs(os.path.join(BROKER_DIR, folder), exist_ok=True)

app = Celery("celery_app", broker="filesystem://")
app.conf.broker_transport_options = {
    "data_folder_in": os.path.join(BROKER_DIR, "queue"),
    "data_folder_out": os.path.join(BROKER_DIR, "queue"),
    "processed_folder": os.path.join(BROKER_DIR, "processed"),
    "control_folder": os.path.join(BROKER_DIR, "control"),
}
app.conf.broker_connection_retry_on_startup = True
otel_bucket.celery.propagate_identity(app)  # one call: the identity travels with every task


@feature("Generated report", attributes={"schedule": "on demand"})
def generate(name: str) -> str:
    return f"report {name}"


@app.task(name="celery_app.build_report")
def build_report(name: str) -> str:
    return generate(name)


def main(user_id: str, company_id: str) -> None:
    with identify(user_id=user_id, company_id=company_id):
        result = build_report.delay("weekly")
    print(f"sent task {result.id} as user {user_id} of {company_id}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
