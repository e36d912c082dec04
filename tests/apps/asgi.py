"""A bare ASGI app for the server tests: ``GET /work?user=ID`` makes one feature call.

``install()`` runs at import, as in an application module (with ``INSTALL_IN_FACTORY=1``, in
``create()`` instead, which ``uvicorn --factory`` calls while it holds the signals); nothing
flushes, and the lifespan shutdown does nothing of ours: whatever arrives after a stop is the
default behaviour. With ``&wait=SECONDS`` the request prints ``working ID`` and waits that long
(the other requests go on meanwhile) before its feature call: a request still in flight when the
server is stopped.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from otel_bucket import feature, identify, install

if os.environ.get("INSTALL_IN_FACTORY") != "1":
    install()  # BUCKET_ENDPOINT and BUCKET_TRACKING_KEY from the environment

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@feature("Work")
def work() -> None:
    pass


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer ``/work?user=ID`` after one feature call for that user in company ``acme``."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    query = parse_qs(scope["query_string"].decode())
    user = query.get("user", ["anonymous"])[0]
    if "wait" in query:
        os.write(1, f"working {user}\n".encode())  # one write: workers share the pipe
        await asyncio.sleep(float(query["wait"][0]))
    with identify(user, "acme"):
        work()
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def create() -> Any:
    """The app, for ``uvicorn --factory tests.apps.asgi:create``."""
    install()
    return app
