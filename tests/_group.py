"""Processes that start processes (servers with workers): each in its own process group, so the
test that started it can always stop all of it by PID, with a bounded wait."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests._capture import CaptureServer
from tests._running import ROOT, Running, child_env


class Group(Running):
    """A `Running` process leading its own process group (``start_new_session``)."""

    def __init__(
        self, args: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path = ROOT
    ) -> None:
        self.proc = subprocess.Popen(
            list(args),
            env=dict(env) if env is not None else child_env(),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the leader only (as a supervisor or ``docker stop`` would)."""
        self.proc.send_signal(signum)

    def stop_group(self, timeout: float = 10) -> None:
        """Cleanup: SIGKILL whatever is left of the group (workers, pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout)


def wait_for_events(server: CaptureServer, count: int, timeout: float = 30) -> int:
    """Wait (on the server's condition, not a sleep) until ``count`` events were accepted."""
    deadline = time.monotonic() + timeout
    with server._cond:
        server._cond.wait_for(
            lambda: len(server.calls("event")) >= count, max(deadline - time.monotonic(), 0)
        )
    return len(server.calls("event"))
