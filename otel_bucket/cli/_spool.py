"""``otel-bucket spool``: what each spool file holds; ``flush`` sends it, ``prune`` ages it out."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from otel_bucket.cli._common import say

__all__ = ["add_spool_command"]

_POLL = 0.2  # seconds between two looks at leases another process holds


def _age(text: str) -> float:
    from otel_bucket.ground._config import parse_duration

    try:
        if float(text) == 0:
            return 0.0
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_spool_command(commands: Any) -> None:
    """Add ``spool`` to the ``otel-bucket`` subcommands."""
    spool = commands.add_parser(
        "spool",
        help="show what the durable spool holds; send it now or remove old calls",
        description="Show what each spool file holds: calls that could not be delivered "
        "before a process ended, waiting for the next process with the same endpoint and "
        "tracking key. Per file: calls per method, when they were made and spooled, the size "
        "on disk, and which calls are stale (older than BUCKET_SPOOL_MAX_AGE: never sent). "
        "Reads only; never shows a tracking key.",
    )
    spool.add_argument(
        "action",
        nargs="?",
        choices=("flush", "prune"),
        help="flush: send what the spool for BUCKET_ENDPOINT and BUCKET_TRACKING_KEY holds "
        "now; the exit code is 0 when nothing is left that no process is sending. "
        "prune: delete the calls older than --older-than from every spool file in the "
        "directory, and remove the files left empty that no process has open",
    )
    spool.add_argument(
        "--dir",
        metavar="DIR",
        type=Path,
        help="spool directory (default: BUCKET_SPOOL_DIR, else the user cache directory)",
    )
    spool.add_argument(
        "--older-than",
        metavar="AGE",
        type=_age,
        help="prune: the age of the calls to delete, e.g. 90m, 12h, 2d; 0 deletes every call "
        "(default: BUCKET_SPOOL_MAX_AGE, else 48h)",
    )
    spool.set_defaults(run=_run_spool)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _when(seconds: float | None) -> str:
    from otel_bucket.ground._call import utc_iso

    return "-" if seconds is None else utc_iso(datetime.fromtimestamp(seconds, timezone.utc))


def _span(first: str, last: str) -> str:
    return first if first == last else f"{first} to {last}"


def _duration(seconds: float) -> str:
    """``48h``, ``90m``, ``30s``: as BUCKET_SPOOL_MAX_AGE is written."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _phase(item: tuple[str, int]) -> tuple[int, str]:
    """user, company, event: the order the calls are sent in; anything else after them."""
    order = ("user", "company", "event")
    return (order.index(item[0]) if item[0] in order else len(order), item[0])


def _run_spool(args: argparse.Namespace) -> int:
    from otel_bucket.ground._config import resolve_spool_dir, resolve_spool_max_age

    directory = args.dir if args.dir is not None else resolve_spool_dir()
    if directory is None:
        say("The spool is off (BUCKET_SPOOL_DIR=off).")
        return 0
    if args.action == "flush":
        return _flush(directory)
    max_age = resolve_spool_max_age()
    if args.action == "prune":
        return _prune(directory, max_age, args.older_than)
    return _show(directory, max_age)


def _show(directory: Path, max_age: float) -> int:
    from otel_bucket.spool._spool_db import untrusted
    from otel_bucket.spool._spool_info import read_spool
    from otel_bucket.spool._spool_paths import list_spools
    from otel_bucket.spool._spool_sweep import set_aside_files

    files = list_spools(directory)
    if not files:
        say(f"No spool files in {directory}.")
    else:
        say(f"Spool directory: {directory}")
    reason = untrusted(Path(directory))
    if reason is not None:
        say(f"Not used: {reason}. Processes turn their spool off here (one warning each).")
    unreadable = calls = stale = empty = 0
    for path in files:
        try:
            info = read_spool(path, max_age)
        except (ValueError, OSError, sqlite3.Error) as exc:
            say(f"{path.name}: cannot read it: {exc}")
            unreadable += 1
            continue
        calls += info.total
        stale += info.expired
        say(f"{path.name}  {info.endpoint or '(endpoint not recorded)'}")
        if not info.total:
            empty += 1
            say(f"  empty, {_size(info.size)} on disk")
            continue
        methods = ", ".join(f"{n} {m}" for m, n in sorted(info.calls.items(), key=_phase))
        held = []
        if info.leased > info.orphaned:
            held.append(f"{info.leased - info.orphaned} being sent")
        if info.orphaned:
            held.append(f"{info.orphaned} held by a process that is gone, sent by the next one")
        sending = f" ({', '.join(held)})" if held else ""
        say(f"  {info.total} call(s): {methods}{sending}")
        spooled = _span(_when(info.oldest), _when(info.newest))
        if info.made_first and info.made_last:
            say(f"  made {_span(info.made_first, info.made_last)}, spooled {spooled}")
        else:
            say(f"  spooled {spooled}")
        say(f"  {_size(info.size)} on disk")
        if info.expired:
            everything = "all " if info.expired == info.total else ""
            say(
                f"  stale: {everything}{info.expired} call(s) spooled more than "
                f"{_duration(info.max_age or max_age)} ago will never be sent"
            )
    if files:
        say(f"{len(files)} spool file(s), {calls - stale} call(s) waiting.")
    if stale or empty:
        say(
            f"{stale} stale call(s) and {empty} empty file(s): `otel-bucket spool prune` deletes "
            "the calls older than their spool's age limit (or --older-than) and the files left "
            "empty; spools also do it on their own, hourly."
        )
    aside = set_aside_files(Path(directory))
    if aside:
        say(f"{len(aside)} damaged or foreign file(s) set aside as *.corrupt-*, never read again.")
    return 1 if unreadable else 0


def _prune(directory: Path, max_age: float, older_than: float | None) -> int:
    """Age out the directory's spool files: by ``older_than`` when given, else by each file's
    own age limit (``max_age`` for a file that records none)."""
    from otel_bucket.spool._spool_sweep import sweep

    results, aside = sweep(
        Path(directory),
        time.time(),
        max_age if older_than is None else older_than,
        own_limits=older_than is None,
        trusted_only=False,
    )
    say(f"Spool directory: {directory}" if results or aside else f"No spool files in {directory}.")
    for result in results:
        name = f"{result.path.name}  {result.endpoint or '(endpoint not recorded)'}"
        if result.skipped is not None:
            say(f"{result.path.name}: left alone: {result.skipped}")
        elif result.removed:
            say(f"{name}: {result.calls} call(s) deleted, file removed")
        elif not result.left:
            say(f"{name}: {result.calls} call(s) deleted, empty (kept: a process has it open)")
        else:
            say(f"{name}: {result.calls} call(s) deleted, {result.left} newer kept")
    removed = sum(r.removed for r in results) + len(aside)
    age = (
        "beyond their age limit" if older_than is None else f"more than {_duration(older_than)} ago"
    )
    say(
        f"Deleted {sum(r.calls for r in results)} call(s) spooled {age} and removed "
        f"{removed} file(s)" + (f" ({len(aside)} set aside as damaged)." if aside else ".")
    )
    return 1 if any(r.skipped for r in results) else 0


def _flush(directory: Path) -> int:
    """Send the spool of the configured endpoint and key; 0 when nothing is left that no
    process is sending.

    Another process may be sending the same calls (it holds them under a lease): this run waits
    for it up to the timeout, and sends what it gives back. The figures come from the spool
    file itself, after this run's exporter has shut down and so holds no lease any more.
    """
    from otel_bucket import BucketSpanExporter
    from otel_bucket.spool._spool_info import SpoolInfo, read_spool
    from otel_bucket.spool._spool_paths import spool_path

    try:
        exporter = BucketSpanExporter(spool_dir=directory)
    except (TypeError, ValueError) as exc:
        print(f"otel-bucket spool flush: {exc}", file=sys.stderr)
        return 2
    settings = exporter.settings
    path = spool_path(directory, settings.endpoint, settings.tracking_key)

    def look() -> SpoolInfo:
        try:
            return read_spool(path, settings.spool_max_age)
        except (ValueError, OSError, sqlite3.Error):  # the exporter sets such a file aside
            return SpoolInfo(path=path)

    start = look()
    before = start.total - start.expired
    deadline = time.monotonic() + settings.timeout
    try:
        exporter._drain_spool()
        now = look()
        if now.total and now.leased:
            say(
                f"Another process is sending {now.leased} of these call(s); waiting for it "
                f"(up to {settings.timeout:g} s) ..."
            )
        while now.total and now.leased and time.monotonic() < deadline:
            threading.Event().wait(_POLL)
            exporter._drain_spool()  # what the other process gave back, this run sends
            now = look()
    finally:
        exporter.shutdown()
    end = look()
    stats = exporter.stats
    done_here = stats.delivered + stats.rejected + stats.deduplicated
    elsewhere = max(before - end.total - done_here, 0)
    parts = [f"{stats.delivered} delivered", f"{stats.rejected} rejected"]
    if stats.deduplicated:
        parts.append(f"{stats.deduplicated} skipped as duplicates")
    if elsewhere:
        parts.append(f"{elsewhere} sent by another process")
    live = end.leased - end.orphaned  # a gone holder's calls: the next claim takes them
    sending = f" ({live} being sent by another process)" if live else ""
    parts.append(f"{end.total} still waiting{sending}")
    expired = f" ({start.expired} too old to send were dropped)" if start.expired else ""
    say(f"{before} call(s) were waiting for {settings.endpoint}{expired}: {', '.join(parts)}.")
    return 0 if end.total == live else 1
