"""Celery: the identity in effect where a task is sent is in effect while the task runs.

    from celery import Celery
    import otel_bucket.celery

    app = Celery("proj")
    otel_bucket.celery.propagate_identity(app)  # once, where the app is set up

    with identify(user_id=user.id, company_id=org.id):
        export_report.delay(report_id)  # runs in the worker as this user and company

The identity travels in one message header of the task (``otel_bucket_identity``): never in
baggage, so it never reaches outgoing HTTP requests, and never in the task's arguments. Importing
this module imports Celery; ``import otel_bucket`` does not.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Final

from celery import Celery, signals

from otel_bucket.instrument._identity import _Identified, current_identity
from otel_bucket.instrument._middleware import block_for

__all__ = ["HEADER", "propagate_identity"]

HEADER: Final = "otel_bucket_identity"
"""The message header carrying the sender's identity."""

_log = logging.getLogger("otel_bucket")
_WHERE = f"the {HEADER} header of a task"

_apps: weakref.WeakSet[Celery] = weakref.WeakSet()
_blocks: dict[str, _Identified] = {}  # task id -> the block entered for it in this process
_lock = threading.Lock()
_connected = False


def propagate_identity(app: Celery) -> None:
    """Carry the identity in effect from where ``app``'s tasks are sent to where they run.

    Call it once where the app is set up, in the module both the senders and the workers
    import. Calling it again is harmless. Tasks sent outside any ``identify`` block, or by a
    process without this call, run with no identity.

    Raises:
        TypeError: ``app`` is not a Celery application.
    """
    global _connected
    if not isinstance(app, Celery):
        raise TypeError(f"app must be a Celery application, got {type(app).__name__}")
    app = getattr(app, "_get_current_object", lambda: app)()  # celery.current_app is a proxy
    with _lock:
        _apps.add(app)
        if _connected:
            return
        _connected = True
    signals.before_task_publish.connect(_publish, weak=False, dispatch_uid=f"{HEADER}.publish")
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid=f"{HEADER}.prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid=f"{HEADER}.postrun")


def _publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Add the sender's identity to the message headers (``before_task_publish``)."""
    identity = current_identity()
    if identity is None or headers is None:
        return
    try:
        headers[HEADER] = {
            "user_id": identity.user_id,
            "company_id": identity.company_id,
            "user_attributes": dict(identity.user_attributes),
            "company_attributes": dict(identity.company_attributes),
        }
    except Exception:  # analytics never stop a task from being sent
        _log.warning("otel-bucket could not add the identity to a task", exc_info=True)


def _prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Enter the identity the task was sent with (``task_prerun``, in the task's thread)."""
    if task_id is None or task is None or getattr(task, "app", None) not in _apps:
        return
    sent = getattr(getattr(task, "request", None), HEADER, None)
    if sent is None:
        return
    block = block_for(sent, _WHERE)
    if block is None:
        return
    try:
        block.__enter__()
    except Exception:
        _log.warning("otel-bucket could not set the identity of a task", exc_info=True)
        return
    _blocks[task_id] = block


def _postrun(task_id: str | None = None, **_: Any) -> None:
    """Leave the block ``_prerun`` entered (``task_postrun``, same thread)."""
    block = _blocks.pop(task_id, None) if task_id is not None else None
    if block is not None:
        block.__exit__(None, None, None)
