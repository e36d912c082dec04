"""The ``otel-bucket`` command: ``otel-bucket devserver``, ``otel-bucket demo`` and
``otel-bucket bridge``."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

__all__ = ["main"]

_PROG = "otel-bucket"
_BRIDGE_PORT = 4318  # OTLP/HTTP's port (otel_bucket.bridge.DEFAULT_PORT; not imported here, so
# that --help works without the "bridge" extra)


def _version() -> str:
    try:
        return version("otel-bucket")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _say(line: str = "") -> None:
    print(line, flush=True)


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr and exit code 2, as the devserver's own errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 0 to 65535, got {port}")
    return port


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return rate


def _key(text: str) -> str:
    if not text.strip() or "/" in text:
        raise argparse.ArgumentTypeError(f"not a tracking key: {text!r}")
    return text


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


def _add_bridge(commands: Any) -> None:
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
        "--port", type=_port, default=_BRIDGE_PORT, help="port; 0 picks one (default: %(default)s)"
    )
    bridge.add_argument(
        "--key", type=_key, help="the Bucket tracking key (default: $BUCKET_TRACKING_KEY)"
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
        "--threads", type=_count, default=16, help="threads serving requests (default: %(default)s)"
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


def _build_parser() -> _Parser:
    from otel_bucket.devserver import DEFAULT_DB, DEFAULT_PORT

    parser = _Parser(
        prog=_PROG,
        description="Tools for otel-bucket, which turns OpenTelemetry spans into Bucket "
        "product analytics: a local Tracking API to develop against, and a demo.",
    )
    parser.add_argument("--version", action="version", version=f"{_PROG} {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    devserver = commands.add_parser(
        "devserver",
        help="run a local emulation of the Bucket Tracking API",
        description="Run a local emulation of the Bucket Tracking API. It checks every call "
        "as Bucket would, stores what it accepts and rejects in SQLite, prints one line per "
        "call, and shows feature adoption at http://HOST:PORT/ (JSON at /api/calls). Point an "
        "app at it with BUCKET_ENDPOINT=http://HOST:PORT and any BUCKET_TRACKING_KEY.",
    )
    devserver.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    devserver.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help="port; 0 picks one (default: %(default)s)"
    )
    devserver.add_argument(
        "--db",
        metavar="PATH",
        type=Path,
        default=DEFAULT_DB,
        help="SQLite file, kept across restarts (default: %(default)s)",
    )
    devserver.add_argument(
        "--key", type=_key, help="accept only this tracking key; others get 404 (default: any)"
    )
    devserver.add_argument(
        "--fail-rate",
        metavar="R",
        type=_rate,
        default=0.0,
        help="answer this share (0 to 1) of valid calls with 500, to watch retries",
    )
    devserver.add_argument("--seed", type=int, help="seed for --fail-rate, for repeatable runs")
    devserver.add_argument("--quiet", action="store_true", help="do not print a line per call")
    devserver.set_defaults(run=_run_devserver)

    demo = commands.add_parser(
        "demo",
        help="run a sample app against a temporary devserver and show what arrived",
        description="Start a devserver on a free loopback port with a temporary database, run a "
        "small sample app through otel_bucket.install(), identify() and @feature, and print "
        "what the devserver received. Needs no network and no Bucket account.",
    )
    demo.add_argument("--quiet", action="store_true", help="do not print a line per call")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the devserver running afterwards, to browse its page (Ctrl-C stops it)",
    )
    demo.set_defaults(run=_run_demo)
    _add_bridge(commands)
    return parser


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """``kill`` stops the server as cleanly as Ctrl-C does."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _run_devserver(args: argparse.Namespace) -> int:
    from otel_bucket.devserver import DevServer, DevServerError, format_line

    server = DevServer(
        args.host,
        args.port,
        db_path=args.db,
        tracking_key=args.key,
        fail_rate=args.fail_rate,
        seed=args.seed,
        on_call=None if args.quiet else lambda call: _say(format_line(call)),
    )
    try:
        server.start()
    except DevServerError as exc:
        print(f"{_PROG} devserver: error: {exc}", file=sys.stderr, flush=True)
        return 2
    with _sigterm_as_interrupt():
        try:
            _say(f"otel-bucket devserver listening on {server.url}  (database: {args.db})")
            _say(f"  page: {server.url}/   JSON: {server.url}/api/calls")
            _say(f"  use:  BUCKET_ENDPOINT={server.url} BUCKET_TRACKING_KEY={args.key or 'dev'}")
            if args.key:
                _say("  only the tracking key given with --key is accepted; others get 404")
            if args.fail_rate:
                _say(f"  answering {args.fail_rate:.0%} of valid calls with 500 (--fail-rate)")
            if not _is_loopback(args.host):
                _say(f"  note: {args.host} is not loopback; other machines can reach this server")
            _say("Press Ctrl-C to stop.")
            server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    _say("otel-bucket devserver stopped.")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from otel_bucket.devserver._demo import run_demo

    with _sigterm_as_interrupt():
        try:
            return run_demo(_say, verbose=not args.quiet, serve=args.serve)
        except KeyboardInterrupt:
            return 130


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


def _bridge_error(message: object) -> int:
    print(f"{_PROG} bridge: error: {message}", file=sys.stderr, flush=True)
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
            threads=args.threads,
            drain_timeout=args.drain_timeout,
        )
    except (TypeError, ValueError) as exc:
        return _bridge_error(exc)
    try:
        bridge.start()
    except BridgeError as exc:
        bridge.stop()
        return _bridge_error(exc)
    stop = threading.Event()
    with _stop_on_signals(stop):
        _say(f"otel-bucket bridge listening on {bridge.url}/v1/traces")
        _say(f"  sending to {exporter.settings.endpoint}; health: {bridge.url}/health")
        if bridge.listen_key is None and not _is_loopback(args.host):
            _say(f"  note: {args.host} is not loopback and no --listen-key is set")
        while not stop.wait(0.5):  # a timed wait, so signals are handled promptly everywhere
            pass
        _say("otel-bucket bridge stopping: exporting what is queued ...")
        bridge.stop()
    stats = bridge.stats()
    lost = stats["exporter"]["undelivered"] + stats["worker"]["lost_spans"]
    _say(
        f"otel-bucket bridge stopped: {stats['exporter']['delivered']} call(s) delivered, "
        f"{lost} lost"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``otel-bucket`` command; returns its exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = args.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
