"""One call over HTTP, retried with jittered exponential backoff inside the export's deadline."""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import random
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import requests
from requests.adapters import HTTPAdapter

from otel_bucket._clock import Clock
from otel_bucket._mapping import Call
from otel_bucket._redact import redact

__all__ = ["Outcome", "Result", "Sender", "new_session"]

_log = logging.getLogger(__name__)

_BACKOFF_BASE = 0.5  # seconds before the first retry (before jitter)
_BACKOFF_CAP = 8.0
_BODY_LOG_LIMIT = 1024
_KEY_REJECTED = frozenset({401, 403, 404})
_RETRYABLE = frozenset({408, 429})


class Outcome(enum.Enum):
    """How one call ended."""

    DELIVERED = "delivered"
    REJECTED = "rejected"  # permanently: retrying cannot help
    UNDELIVERED = "undelivered"  # may succeed later


@dataclass(frozen=True)
class Result:
    """The end of one call: its outcome, the retries it took and why it ended so."""

    outcome: Outcome
    retries: int = 0
    status: int | None = None
    reason: str = ""
    unreachable: bool = False  # no HTTP answer at all on the last attempt


def _retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0) if math.isfinite(float(value)) else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta: float = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(delta, 0.0)


def new_session(endpoint: str, pool_size: int) -> requests.Session:
    """A session for one endpoint: ``pool_size`` pooled connections, no urllib3 retries (ours
    are above it), and the environment's proxy and CA settings read once."""
    session = requests.Session()
    # requests re-reads proxies, CA bundle and ~/.netrc from the environment on every request
    # (about a quarter of a call's CPU); read what applies to our one endpoint once instead.
    session.proxies.update(requests.utils.get_environ_proxies(endpoint))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Sender:
    """Posts calls to ``{endpoint}/{key}/{method}`` through one session."""

    def __init__(
        self,
        endpoint: str,
        tracking_key: str,
        session: requests.Session,
        headers: dict[str, str],
        clock: Clock,
        stop: threading.Event,
        rng: random.Random | None = None,
    ) -> None:
        self._base = f"{endpoint}/{tracking_key}/"
        self._key = tracking_key
        self.session = session
        self._headers = headers
        self._clock = clock
        self._stop = stop
        self._rng = rng or random.Random()

    def backoff(self, retry: int) -> float:
        """The jittered delay before retry number ``retry`` (0-based): half to all of 2^n * base."""
        ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * 2.0 ** min(retry, 16))
        return ceiling * self._rng.uniform(0.5, 1.0)

    def send(self, call: Call, deadline: float, *, last_chance: bool = False) -> Result:
        """Deliver ``call``, retrying what may succeed later until ``deadline`` (monotonic).

        With ``last_chance`` (the final flush at shutdown) make one attempt, even after
        shutdown began, and never wait.
        """
        try:
            body = json.dumps(call.payload, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:  # the mapping should make this impossible
            _log.warning("dropped a %s call that is not valid JSON: %s", call.method, exc)
            return Result(Outcome.REJECTED, reason=f"not valid JSON: {exc}")
        url = self._base + call.method
        retries = 0
        while True:
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0 or (self._stop.is_set() and not last_chance):
                return Result(Outcome.UNDELIVERED, retries, reason="export deadline reached")
            result, wait = self._attempt(call, url, body, remaining)
            if result.outcome is not Outcome.UNDELIVERED:
                return Result(result.outcome, retries, result.status, result.reason)
            delay = self.backoff(retries) if wait is None else wait
            if last_chance or self._clock.monotonic() + delay >= deadline:
                return Result(
                    Outcome.UNDELIVERED, retries, result.status, result.reason, result.unreachable
                )
            _log.debug("retrying %s call in %.2fs: %s", call.method, delay, result.reason)
            if self._clock.wait(delay, self._stop):
                return Result(Outcome.UNDELIVERED, retries, result.status, "shut down")
            retries += 1

    def _attempt(
        self, call: Call, url: str, body: bytes, remaining: float
    ) -> tuple[Result, float | None]:
        """One request; returns its result and the server's ``Retry-After``, if any."""
        try:
            response = self.session.post(
                url,
                data=body,
                headers=self._headers,
                timeout=(remaining, remaining),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            reason = redact(f"{type(exc).__name__}: {exc}", self._key)
            return Result(Outcome.UNDELIVERED, reason=reason, unreachable=True), None
        status = response.status_code
        with response:
            if 200 <= status < 300:
                return Result(Outcome.DELIVERED, status=status), None
            text = response.text[:_BODY_LOG_LIMIT]
        if status in _RETRYABLE or status >= 500:
            wait = _retry_after(response.headers.get("Retry-After"))
            return Result(Outcome.UNDELIVERED, status=status, reason=f"HTTP {status}"), wait
        if status in _KEY_REJECTED:
            reason = f"HTTP {status}: tracking key rejected"
        else:
            reason = f"HTTP {status}: {redact(text, self._key)}"
            _log.warning("Bucket rejected a %s call (HTTP %s): %s", call.method, status, reason)
        return Result(Outcome.REJECTED, status=status, reason=reason), None
