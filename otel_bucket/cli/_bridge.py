"""``otel-bucket bridge``: its options and its run (the receiver itself is ``otel_bucket.bridge``).

Kept apart from ``otel_bucket.bridge`` so that ``otel-bucket --help`` works without the
``bridge`` extra; the extra is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from otel_bucket.cli._common import PROG, is_loopback, parse_key, parse_port, say

__all__ = ["add_bridge_command"]

_BRIDGE_PORT = 4318  # OTLP/HTTP's port, as otel_bucket.bridge.DEFAULT_PORT


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {count}")
    return count


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return seconds


def _token(text: str) -> str:
    if not text or not text.isprintable() or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError("must be a non-empty token without spaces")
    return text


def add_bridge_command(commands: Any) -> None:
    """Add ``bridge`` to the ``otel-bucket`` subcommands."""
    bridge = commands.add_parser(
        "bridge",
        help="receive OTLP/HTTP traces from any service (or a Collector) and send them to Bucket",
        description="Receive OpenTelemetry traces over OTLP/HTTP (POST /v1/traces, protobuf or "
        "JSON, gzip) from services in any language or from an OpenTelemetry Collector, and "
        "send the spans that carry Bucket attributes to the Bucket Tracking API with the "
        "same mapping, deduplication and retries as BucketSpanExporter. The tracking key "
        "and endpoint come from --key / BUCKET_TRACKING_KEY and BUCKET_ENDPOINT (and the "
        "other BUCKET_* variables). GET /health and GET /stats report its state. SIGTERM or "
        'Ctrl-C drains the queue and exits. Needs: pip install "otel-bucket[bridge]".',
    )
    bridge.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    bridge.add_argument(
        "--port",
        type=parse_port,
        default=_BRIDGE_PORT,
        help="port; 0 picks one (default: %(default)s)",
    )
    bridge.add_argument(
        "--key", type=parse_key, help="the Bucket tracking key (default: $BUCKET_TRACKING_KEY)"
    )
    bridge.add_argument(
        "--listen-key",
        metavar="TOKEN",
        type=_token,
        help="require 'Authorization: Bearer TOKEN' on requests (default: $BUCKET_BRIDGE_TOKEN; "
        "none)",
    )
    bridge.add_argument(
        "--queue-size",
        metavar="SPANS",
        type=_count,
        default=16_384,
        help="spans held for export; requests beyond it get 503 (default: %(default)s)",
    )
    bridge.add_argument(
        "--max-spans",
        metavar="SPANS",
        type=_count,
        default=16_384,
        help="spans one request may hold; more get 413 (default: %(default)s)",
    )
    bridge.add_argument(
        "--threads",
        type=_count,
        default=2,
        help="threads decoding requests; connections need none (default: %(default)s)",
    )
    bridge.add_argument(
        "--max-connections",
        metavar="N",
        type=_count,
        default=1024,
        help="connections open at once; a new one beyond it closes the oldest idle one "
        "(default: %(default)s)",
    )
    bridge.add_argument(
        "--request-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=30.0,
        help="time a request may take to arrive, head and body; 408 after it "
        "(default: %(default)s)",
    )
    bridge.add_argument(
        "--drain-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=20.0,
        help="time to export what is queued when stopping (default: %(default)s)",
    )
    bridge.add_argument("--debug", action="store_true", help="log one line per request")
    bridge.set_defaults(run=_run_bridge)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and Ctrl-C ask for a graceful stop (the handler only sets ``stop``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = (signal.SIGTERM, signal.SIGINT)
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in wanted}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _more_files(connections: int) -> None:
    """Raise this process's soft limit on open files (often 1,024) towards its hard limit, so
    that ``--max-connections`` connections fit beside the files the process has open."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _bridge_error(message: object) -> int:
    print(f"{PROG} bridge: error: {message}", file=sys.stderr, flush=True)
    return 2


def _run_bridge(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.debug:
        logging.getLogger("otel_bucket").setLevel(logging.DEBUG)
    try:
        from otel_bucket.bridge import Bridge, BridgeError
    except ImportError as exc:
        return _bridge_error(exc)
    from otel_bucket import BucketSpanExporter

    if args.key is None and not os.environ.get("BUCKET_TRACKING_KEY", "").strip():
        return _bridge_error("no tracking key: pass --key or set BUCKET_TRACKING_KEY")
    try:
        exporter = BucketSpanExporter(tracking_key=args.key)
        bridge = Bridge(
            exporter,
            host=args.host,
            port=args.port,
            listen_key=args.listen_key,
            queue_size=args.queue_size,
            max_spans=args.max_spans,
            threads=args.threads,
            max_connections=args.max_connections,
            request_timeout=args.request_timeout,
            drain_timeout=args.drain_timeout,
        )
    except (TypeError, ValueError) as exc:
        return _bridge_error(exc)
    _more_files(args.max_connections)
    try:
        bridge.start()
    except BridgeError as exc:
        bridge.stop()
        return _bridge_error(exc)
    stop = threading.Event()
    with _stop_on_signals(stop):
        say(f"otel-bucket bridge listening on {bridge.url}/v1/traces")
        say(f"  sending to {exporter.settings.endpoint}; health: {bridge.url}/health")
        if bridge.listen_key is None and not is_loopback(args.host):
            say(f"  note: {args.host} is not loopback and no --listen-key is set")
        while not stop.wait(0.5):  # a timed wait, so signals are handled promptly everywhere
            pass
        say("otel-bucket bridge stopping: exporting what is queued ...")
        bridge.stop()
    calls = bridge.stats()["exporter"]
    say(
        f"otel-bucket bridge stopped: {calls['delivered']} call(s) delivered, "
        f"{calls['spooled']} spooled, {calls['undelivered']} lost"
    )
    return 0
