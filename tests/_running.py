"""Run a command in a subprocess and wait for lines of its output, with bounded deadlines."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """This environment (BUCKET_*/OTEL_* already cleared by conftest) plus ``extra``.

    Loopback is never sent through a proxy that the machine may configure.
    """
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update(extra)
    return env


def run(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    """Run to completion (bounded by ``timeout``) and capture stdout and stderr."""
    return subprocess.run(
        list(args),
        env=dict(env) if env is not None else child_env(),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Running:
    """A started process whose merged output is read line by line on a thread."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        *,
        stdin: bool = False,
    ) -> None:
        self.proc = subprocess.Popen(
            list(args),
            env=dict(env) if env is not None else child_env(),
            cwd=cwd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        """Wait (on the reader's queue, not a sleep) for a line matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                message = f"no line matching {pattern!r} in {timeout}s: {self.lines}"
                raise AssertionError(message) from None
            if line is None:
                raise AssertionError(f"process ended before {pattern!r}: {self.lines}")
            self.lines.append(line)
            match = regex.search(line)
            if match:
                return match

    def close_stdin(self) -> None:
        """End the process's input (with ``stdin=True``): a script reading it goes on."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def interrupt(self, timeout: float = 20) -> int:
        """Send Ctrl-C (SIGINT) and wait for the exit code; collect the rest of the output."""
        self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code

    def kill(self) -> None:
        """Last resort in a test's cleanup: the process must not outlive the test."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def free_port() -> int:
    """A port free now on 127.0.0.1: nobody listens on it, so connections are refused (until a
    server starts there)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python(*args: str) -> list[str]:
    """A command line running this interpreter."""
    return [sys.executable, *args]
