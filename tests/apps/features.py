"""Scripts for the lifecycle tests: ``python -m tests.apps.features MODE N``.

Each installs otel-bucket from ``BUCKET_*`` (unless ``WITHOUT_OTEL_BUCKET=1``), makes ``N``
feature calls for users ``u0``..``u{N-1}`` (company ``acme``), prints ``made N``, then waits to be
stopped. MODE says what else it does:

- ``plain``: nothing else: no handler of its own, SIGTERM does what it does.
- ``handler-before`` / ``handler-after``: its own SIGTERM handler, set before / after
  ``install()``, prints ``own handler ran`` and exits with status 3.
- ``ignore``: ignores SIGTERM before ``install()``; Ctrl-C makes it print ``still here`` and exit 0.
- ``loop``: its own handler (set before ``install()``) prints how many calls completed and exits
  0; SIGTERM comes while it is still making calls.
- ``pool``: the calls run in ``with multiprocessing.Pool(4)``, whose exit terminates the children.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from types import FrameType

from otel_bucket import feature, identify, install

completed = 0


@feature("Work")
def work() -> None:
    pass


def call(i: int) -> int:
    with identify(f"u{i}", "acme"):
        work()
    return i


def own_handler(signum: int, frame: FrameType | None) -> None:
    print("own handler ran", flush=True)
    sys.exit(3)


def report_and_exit(signum: int, frame: FrameType | None) -> None:
    print(f"completed {completed}", flush=True)
    sys.exit(0)


def main(mode: str, count: int) -> None:
    global completed
    if mode == "handler-before":
        signal.signal(signal.SIGTERM, own_handler)
    elif mode == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif mode == "loop":
        signal.signal(signal.SIGTERM, report_and_exit)
    if os.environ.get("WITHOUT_OTEL_BUCKET") != "1":
        install()
    if mode == "handler-after":
        signal.signal(signal.SIGTERM, own_handler)
    if mode == "loop":
        print("looping", flush=True)
        for i in range(count):
            call(i)
            completed += 1
    elif mode == "pool":
        with multiprocessing.Pool(4) as pool:
            pool.map(call, range(count), chunksize=1)
    else:
        for i in range(count):
            call(i)
    try:  # a Ctrl-C right after the line below is still caught
        print(f"made {count}", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        print("still here", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
