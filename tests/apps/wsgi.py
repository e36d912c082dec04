"""A bare WSGI app for the server tests: ``GET /work?user=ID`` makes one feature call."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from otel_bucket import feature, identify, install

install()  # BUCKET_ENDPOINT and BUCKET_TRACKING_KEY from the environment


@feature("Work")
def work() -> None:
    pass


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer ``/work?user=ID`` after one feature call for that user in company ``acme``."""
    user = parse_qs(environ.get("QUERY_STRING", "")).get("user", ["anonymous"])[0]
    with identify(user, "acme"):
        work()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
