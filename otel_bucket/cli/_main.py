"""The ``otel-bucket`` command: ``devserver``, ``demo``, ``spool`` and ``bridge``."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import NoReturn

from otel_bucket.cli._common import PROG, is_loopback, parse_key, parse_port, say

__all__ = ["main"]


def _version() -> str:
    try:
        return version("otel-bucket")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr and exit code 2, as the devserver's own errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return rate


def _build_parser() -> _Parser:
    from otel_bucket.devserver import DEFAULT_DB, DEFAULT_PORT

    parser = _Parser(
        prog=PROG,
        description="Tools for otel-bucket, which turns OpenTelemetry spans into Bucket "
        "product analytics: a local Tracking API to develop against, a demo, and a view of the "
        "durable spool.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
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
        "--port",
        type=parse_port,
        default=DEFAULT_PORT,
        help="port; 0 picks one (default: %(default)s)",
    )
    devserver.add_argument(
        "--db",
        metavar="PATH",
        type=Path,
        default=DEFAULT_DB,
        help="SQLite file, kept across restarts (default: %(default)s)",
    )
    devserver.add_argument(
        "--key", type=parse_key, help="accept only this tracking key; others get 404 (default: any)"
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

    from otel_bucket.cli._spool import add_spool_command

    add_spool_command(commands)
    from otel_bucket.cli._bridge import add_bridge_command

    add_bridge_command(commands)
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


def _run_devserver(args: argparse.Namespace) -> int:
    from otel_bucket.devserver import DevServer, DevServerError, format_line

    server = DevServer(
        args.host,
        args.port,
        db_path=args.db,
        tracking_key=args.key,
        fail_rate=args.fail_rate,
        seed=args.seed,
        on_call=None if args.quiet else lambda call: say(format_line(call)),
    )
    try:
        server.start()
    except DevServerError as exc:
        print(f"{PROG} devserver: error: {exc}", file=sys.stderr, flush=True)
        return 2
    with _sigterm_as_interrupt():
        try:
            say(f"otel-bucket devserver listening on {server.url}  (database: {args.db})")
            say(f"  page: {server.url}/   JSON: {server.url}/api/calls")
            say(f"  use:  BUCKET_ENDPOINT={server.url} BUCKET_TRACKING_KEY={args.key or 'dev'}")
            if args.key:
                say("  only the tracking key given with --key is accepted; others get 404")
            if args.fail_rate:
                say(f"  answering {args.fail_rate:.0%} of valid calls with 500 (--fail-rate)")
            if not is_loopback(args.host):
                say(f"  note: {args.host} is not loopback; other machines can reach this server")
            say("Press Ctrl-C to stop.")
            server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    say("otel-bucket devserver stopped.")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from otel_bucket.devserver._demo import run_demo

    with _sigterm_as_interrupt():
        try:
            return run_demo(say, verbose=not args.quiet, serve=args.serve)
        except KeyboardInterrupt:
            return 130


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
