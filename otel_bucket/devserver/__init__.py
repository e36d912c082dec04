"""A local emulation of the Bucket Tracking API, for trying otel-bucket and testing apps offline.

```python
from otel_bucket.devserver import DevServer

with DevServer(port=0, db_path=":memory:") as server:
    ...  # point the exporter at server.url
    print(server.snapshot().counts)
```

In the layers (ARCHITECTURE.md) the dev server sits on top, beside ``bridge``: it imports
``ground`` (the call's timestamp format) and, for ``otel-bucket demo`` only, the public API of the
package root; it owns the Tracking API's schema (``_schema``). Only ``cli`` imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType

from otel_bucket.devserver._analytics import Overview
from otel_bucket.devserver._app import Adoption, Answer, Snapshot, TrackingApp, format_line
from otel_bucket.devserver._handler import DevHTTPServer
from otel_bucket.devserver._store import DEFAULT_DB, Call, CallFilter, Store, StoreError

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_PORT",
    "Adoption",
    "Answer",
    "Call",
    "CallFilter",
    "DevServer",
    "DevServerError",
    "Overview",
    "Snapshot",
    "format_line",
]

DEFAULT_PORT = 8787


class DevServerError(Exception):
    """The devserver cannot start: a bad address or port, or a database it cannot write."""


class DevServer:
    """The devserver, run in a background thread of this process.

    Args:
        host: the address to bind; loopback by default.
        port: the port to bind; ``0`` picks a free one (see `url` once started).
        db_path: the SQLite file (created with its folder); ``":memory:"`` keeps nothing.
        tracking_key: when set, other tracking keys are answered with 404.
        fail_rate: the share (0 to 1) of valid calls answered with 500.
        seed: seeds which calls fail, for reproducible runs.
        on_call: called with each answered `Call` (e.g. to print `format_line(call)`), for one
            call at a time, so printed lines never mix; by default each call is logged at INFO
            on ``otel_bucket.devserver._app``.
        clock: returns "now" for the pages (the last 30 days, retention); wall time by default.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        db_path: str | Path = DEFAULT_DB,
        tracking_key: str | None = None,
        fail_rate: float = 0.0,
        seed: int | None = None,
        on_call: Callable[[Call], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}")
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be between 0 and 1, got {fail_rate!r}")
        self.host = host
        self.port = port
        self.db_path = db_path
        self.tracking_key = tracking_key
        self.fail_rate = fail_rate
        self.seed = seed
        self._on_call = on_call
        self._clock = clock
        self._httpd: DevHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The base URL to use as the exporter's ``endpoint``, e.g. ``http://127.0.0.1:8787``."""
        if self._httpd is None:
            raise RuntimeError("the devserver is not started")
        return self._httpd.url

    @property
    def app(self) -> TrackingApp:
        """The running emulation (its `store` holds every answered call)."""
        if self._httpd is None:
            raise RuntimeError("the devserver is not started")
        return self._httpd.app

    def snapshot(self, limit: int = 50) -> Snapshot:
        """What the devserver holds now: counts, adoption, recent calls and rejections."""
        return self.app.snapshot(limit)

    def start(self) -> DevServer:
        """Open the database, bind, and serve in a daemon thread.

        Raises:
            DevServerError: the port cannot be bound or the database cannot be written; the
                message is one readable line.
        """
        with self._lock:
            if self._httpd is not None:
                return self
            try:
                store = Store(self.db_path)
            except StoreError as exc:
                raise DevServerError(str(exc)) from None
            try:
                app = TrackingApp(
                    store,
                    tracking_key=self.tracking_key,
                    fail_rate=self.fail_rate,
                    seed=self.seed,
                    on_call=self._on_call,
                    clock=self._clock,
                )
                httpd = DevHTTPServer((self.host, self.port), app)
            except (OSError, ValueError, OverflowError) as exc:
                store.close()
                reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
                address = f"{self.host}:{self.port}"
                raise DevServerError(f"cannot listen on {address}: {reason.lower()}") from None
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},  # how long stop() may wait,
                name="otel-bucket-devserver",
                daemon=True,
            )
            self._thread.start()
            return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout`` passes); True when it has stopped.

        Waits in short joins so that Ctrl-C reaches the main thread on every platform.
        """
        thread = self._thread
        if thread is None:
            return True
        if timeout is not None:
            thread.join(timeout)
        else:
            while thread.is_alive():
                thread.join(0.5)
        return not thread.is_alive()

    def stop(self) -> None:
        """Stop serving, end open connections and close the database. Safe to call twice."""
        with self._lock:
            httpd, self._httpd = self._httpd, None
            thread, self._thread = self._thread, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join()
        httpd.app.store.close()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
