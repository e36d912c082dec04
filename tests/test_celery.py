"""``otel_bucket.celery``: what goes into a task's message (kombu's in-memory transport).

The whole path, a real ``celery worker`` running the task as the sender's user (solo and prefork
pools), is in ``tests/test_examples.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

celery = pytest.importorskip("celery")

from celery import Celery  # noqa: E402

import otel_bucket.celery as bucket_celery  # noqa: E402
from otel_bucket import identify  # noqa: E402


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("tests", broker="memory://", set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    bucket_celery.propagate_identity(app)
    yield app
    app.close()


def sent_headers(app: Celery, *, inside: dict[str, Any] | None) -> dict[str, Any]:
    """Send one task (inside an identify block when ``inside`` is given); its message headers."""
    if inside is None:
        app.send_task("tests.noop")
    else:
        with identify(**inside):
            app.send_task("tests.noop")
    with app.connection_for_read() as conn:
        message = conn.SimpleQueue("celery").get(timeout=5)
        message.ack()
        return dict(message.headers)


def test_the_identity_travels_in_one_header(app: Celery) -> None:
    """Ids and attributes go in the otel_bucket_identity header; nothing goes in baggage."""
    headers = sent_headers(
        app,
        inside={
            "user_id": 42,
            "company_id": "acme",
            "user_attributes": {"name": "Ada"},
            "company_attributes": {"plan": "pro"},
        },
    )
    assert headers[bucket_celery.HEADER] == {
        "user_id": "42",
        "company_id": "acme",
        "user_attributes": {"name": "Ada"},
        "company_attributes": {"plan": "pro"},
    }
    assert "baggage" not in headers
    assert "42" not in str(headers.get("argsrepr", "")) + str(headers.get("kwargsrepr", ""))


def test_no_identity_no_header(app: Celery) -> None:
    """A task sent outside any identify block (or an anonymous one) carries nothing."""
    assert bucket_celery.HEADER not in sent_headers(app, inside=None)
    assert bucket_celery.HEADER not in sent_headers(app, inside={"user_id": None})


def test_propagate_identity_checks_its_argument_and_is_idempotent(app: Celery) -> None:
    """A non-app is a TypeError naming it; a second call (or the current_app proxy) is fine."""
    with pytest.raises(TypeError, match="app"):
        bucket_celery.propagate_identity("proj")  # type: ignore[arg-type]
    bucket_celery.propagate_identity(app)
    from celery import current_app

    bucket_celery.propagate_identity(current_app)
    headers = sent_headers(app, inside={"user_id": "u1"})
    assert headers[bucket_celery.HEADER]["user_id"] == "u1"
