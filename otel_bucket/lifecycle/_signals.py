"""SIGTERM and SIGHUP drain otel-bucket's queues, then the process does what it would have done.

``docker stop`` and Kubernetes send SIGTERM, and a process with no handler for it (the default)
is killed without running ``atexit``, so the provider's shutdown never drains the queue. The
handler armed by ``install()`` drains first, within the exporter's ``timeout``, then:

- the previous handler was the default: shut the processors down (so the exporter reports what
  is lost), restore the default and raise the signal again, so the process still ends "killed
  by SIGTERM", exactly as it would have;
- the previous handler was a Python function (a server's graceful shutdown, the application's
  own handler): flush only, then call it; the process goes on as it would have, and its later
  spans are still sent;
- the signal was ignored, or its handler was not set from Python: nothing is armed.

Servers that install their handlers later chain to ours or restore it (uvicorn saves the handler
in place, restores it after its graceful shutdown and raises the signal again), so both orders
compose. One order needs more: a uvicorn worker (``--workers``, ``--reload``, and any uvicorn that
imports the application inside its ``Server.serve``) runs ``install()`` while uvicorn holds the
signals, so ours chains to uvicorn's ``handle_exit``, and the handler uvicorn restores at the end
is the default one: the SIGTERM it raises again would end the worker right after the requests it
was finishing, before their spans are sent. So on that signal we only hold it back in the main
thread (``pthread_sigmask``): uvicorn's shutdown runs, its raise stays pending, the process
reaches its end (multiprocessing's exit hooks in a worker, ``atexit`` elsewhere), drains there,
and then lets the signal go, which ends it as it would have ended.

The handler runs in the main thread between two bytecodes, wherever that thread was: it takes no
lock that thread may hold (see ``_processor``) and only waits, with a deadline, for the
processors' own threads.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

from otel_bucket.ground._config import _flag, resolve
from otel_bucket.lifecycle._lifecycle import at_process_end, drain_at_end
from otel_bucket.lifecycle._reloader import hand_over, killed_by

__all__ = ["arm", "armed", "enabled"]

_log = logging.getLogger(__name__)

_NAMES: Final = ("SIGTERM", "SIGHUP")  # SIGHUP does not exist on Windows

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

_previous: dict[int, _Handler] = {}  # signal number -> the handler ours replaced
_busy = [False]  # a drain is running: a second signal meanwhile goes straight on
_held: set[int] = set()  # signals held back in the main thread until the drain at the end


def enabled(handle_signals: bool | None) -> bool:
    """``install()``'s argument, else ``BUCKET_HANDLE_SIGNALS``, else true.

    Raises:
        TypeError: ``handle_signals`` is not a bool.
    """
    if handle_signals is not None and not isinstance(handle_signals, bool):
        raise TypeError(f"handle_signals must be a bool, got {type(handle_signals).__name__}")
    return resolve("handle_signals", handle_signals, "BUCKET_HANDLE_SIGNALS", _flag, True)


def arm(on: bool) -> None:
    """Make SIGTERM and SIGHUP drain first (``on``), when called from the main thread; or give
    them back their previous handlers. Calling it again re-arms a signal whose handler something
    else replaced since. In the child of a reloader that kills it soon after Ctrl-C (Django's
    autoreloader, Werkzeug's), SIGINT first keeps what is held in the spool (``_reloader``)."""
    if not on:
        _disarm()
        return
    if threading.current_thread() is not threading.main_thread():
        _log.debug("otel-bucket: install() ran outside the main thread; signals not handled")
        return
    ours = [(name, _on_signal) for name in _NAMES]
    if killed_by() is not None:
        ours.append(("SIGINT", _on_interrupt))
    for name, handler in ours:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        current = signal.getsignal(signum)
        if current is handler or current is None or current == signal.SIG_IGN:
            continue  # armed already; set outside Python (cannot chain to it); ignored: stays so
        _previous[signum] = current
        try:
            signal.signal(signum, handler)
        except (OSError, RuntimeError, ValueError) as exc:
            _log.debug("otel-bucket: cannot handle %s: %s", name, exc)


def armed() -> list[int]:
    """The signals whose current handler is otel-bucket's."""
    ours = (_on_signal, _on_interrupt)
    return [signum for signum in _previous if signal.getsignal(signum) in ours]


def _disarm() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in armed():
        previous = _previous.pop(signum)
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    previous = _previous.get(signum, signal.SIG_DFL)
    ends = previous == signal.SIG_DFL  # the default action of SIGTERM and SIGHUP: terminate
    try:
        if not _busy[0]:
            _busy[0] = True
            try:
                if ends or not (_raises_again(previous) and _hold(signum)):
                    drain_at_end(signal.Signals(signum).name, finish=ends)
            except Exception:
                _log.exception("otel-bucket could not drain on signal %d", signum)
            finally:
                _busy[0] = False
    finally:
        if ends:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        elif callable(previous):
            previous(signum, frame)


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    try:
        hand_over()
    except Exception:
        _log.exception("otel-bucket could not keep what it holds on Ctrl-C")
    finally:
        previous = _previous.get(signum, signal.default_int_handler)
        if callable(previous):
            previous(signum, frame)  # Python's default: KeyboardInterrupt
        else:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)


def _raises_again(handler: object) -> bool:
    """Whether ``handler`` is uvicorn's ``Server.handle_exit``: once its graceful shutdown is
    over, uvicorn restores the handler it found and raises the signal again."""
    owner = getattr(handler, "__self__", None)
    return owner is not None and any(
        cls.__module__ == "uvicorn.server" and cls.__name__ == "Server"
        for cls in type(owner).__mro__
    )


def _hold(signum: int) -> bool:
    """Keep ``signum`` pending in the main thread until the drain at the process's end; False
    where signals cannot be held (no ``pthread_sigmask``: Windows)."""
    if not hasattr(signal, "pthread_sigmask"):
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
    _held.add(signum)
    at_process_end(_drain_and_release)
    return True


def _drain_and_release() -> None:
    """At the process's end: drain, then let the held signals go (they act as they would have
    when they were raised: the default action ends the process here)."""
    if not _held or threading.current_thread() is not threading.main_thread():
        return
    names = "/".join(signal.Signals(signum).name for signum in sorted(_held))
    try:
        drain_at_end(names, finish=True)
    except Exception:
        _log.exception("otel-bucket could not drain at the end of the process")
    held = set(_held)
    _held.clear()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
