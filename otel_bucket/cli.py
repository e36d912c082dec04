"""The ``otel-bucket`` command: ``devserver``, ``demo``, ``spool`` and ``bridge``."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import NoReturn

__all__ = ["main"]

_PROG = "otel-bucket"


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


def _build_parser() -> _Parser:
    from otel_bucket.devserver import DEFAULT_DB, DEFAULT_PORT

    parser = _Parser(
        prog=_PROG,
        description="Tools for otel-bucket, which turns OpenTelemetry spans into Bucket "
        "product analytics: a local Tracking API to develop against, a demo, and a view of the "
        "durable spool.",
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

    spool = commands.add_parser(
        "spool",
        help="show what the durable spool holds",
        description="Show what each spool file holds: calls that could not be delivered "
        "before a process ended, waiting for the next process with the same endpoint and "
        "tracking key. Per file: calls per method, the oldest and newest, the size on disk. "
        "Reads only; never shows a tracking key.",
    )
    spool.add_argument(
        "action",
        nargs="?",
        choices=("flush",),
        help="flush: send what the spool for BUCKET_ENDPOINT and BUCKET_TRACKING_KEY holds "
        "now; the exit code is 0 when it is empty afterwards",
    )
    spool.add_argument(
        "--dir",
        metavar="DIR",
        type=Path,
        help="spool directory (default: BUCKET_SPOOL_DIR, else the user cache directory)",
    )
    spool.set_defaults(run=_run_spool)

    from otel_bucket._cli.bridge import add_bridge_command

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


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _when(seconds: float | None) -> str:
    from datetime import datetime, timezone

    from otel_bucket._mapping import utc_iso

    return "-" if seconds is None else utc_iso(datetime.fromtimestamp(seconds, timezone.utc))


_LOGS = ("-wal", "-shm")


def _run_spool(args: argparse.Namespace) -> int:
    import sqlite3

    from otel_bucket._spool_config import list_spools, resolve_spool_dir
    from otel_bucket._spool_info import read_spool

    directory = args.dir if args.dir is not None else resolve_spool_dir()
    if directory is None:
        _say("The spool is off (BUCKET_SPOOL_DIR=off).")
        return 0
    if args.action == "flush":
        return _flush_spool(directory)
    files = list_spools(directory)
    aside = [p for p in Path(directory).glob("spool-*.db.corrupt-*") if not p.name.endswith(_LOGS)]
    if not files:
        _say(f"No spool files in {directory}.")
    else:
        _say(f"Spool directory: {directory}")
    unreadable = calls = 0
    for path in files:
        try:
            info = read_spool(path)
        except (ValueError, OSError, sqlite3.Error) as exc:
            _say(f"{path.name}: cannot read it: {exc}")
            unreadable += 1
            continue
        calls += info.total
        _say(f"{path.name}  {info.endpoint or '(endpoint not recorded)'}")
        if not info.total:
            _say(f"  empty, {_size(info.size)} on disk")
            continue
        methods = ", ".join(f"{n} {m}" for m, n in sorted(info.calls.items(), key=_phase))
        sending = f" ({info.leased} being sent)" if info.leased else ""
        _say(f"  {info.total} call(s): {methods}{sending}")
        _say(f"  oldest {_when(info.oldest)}, newest {_when(info.newest)}")
        _say(f"  {_size(info.size)} on disk")
    if files:
        _say(f"{len(files)} spool file(s), {calls} call(s) waiting.")
    if aside:
        _say(f"{len(aside)} damaged or foreign file(s) set aside as *.corrupt-*, never read again.")
    return 1 if unreadable else 0


def _flush_spool(directory: Path) -> int:
    """Send the spool of the configured endpoint and key; 0 when it is empty afterwards."""
    from otel_bucket import BucketSpanExporter

    try:
        exporter = BucketSpanExporter(spool_dir=directory)
    except (TypeError, ValueError) as exc:
        print(f"otel-bucket spool flush: {exc}", file=sys.stderr)
        return 2
    try:
        before = exporter._spooling.waiting()
        left = exporter._drain_spool()
    finally:
        exporter.shutdown()
    stats = exporter.stats
    _say(
        f"{before} call(s) were waiting for {exporter.settings.endpoint}: {stats.delivered} "
        f"delivered, {stats.rejected} rejected, {left} still waiting."
    )
    return 0 if left == 0 else 1


def _phase(item: tuple[str, int]) -> tuple[int, str]:
    """user, company, event: the order the calls are sent in; anything else after them."""
    order = ("user", "company", "event")
    return (order.index(item[0]) if item[0] in order else len(order), item[0])


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
