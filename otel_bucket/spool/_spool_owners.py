"""Who holds a lease on spooled calls, and whether that holder is gone.

A lease ends when its holder acks or releases its calls, or when it expires (``lease_seconds``,
2 minutes by default). A process killed with SIGKILL (a reloader's child 0.25 s after Ctrl-C,
the OOM killer, ``docker kill``) does neither, and its calls would wait for the expiry. So a
lease names its holder: its process id and the machine (host name, boot) and PID namespace it
runs in. Another process of the same machine and namespace (the next server started,
``otel-bucket spool flush``) sees that this process no longer exists, and takes the calls at
once.

Only a holder known to be gone frees its leases early: another machine's (a spool directory
shared by containers), another namespace's, an unknown format (an older version's), or a
process id reused by a living process are all left to the expiry. Never on Windows, where
``os.kill`` does not test for a process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import sys
import uuid

__all__ = ["gone", "new_owner"]


@functools.cache
def _place() -> str:
    """This machine (its host name and, on Linux, its kernel's boot id: two containers named
    alike on two nodes differ) and PID namespace, as a short stable token."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        namespace = ""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            boot_id = boot.read().strip()
    except (OSError, ValueError):
        boot_id = ""
    token = f"{socket.gethostname()}|{boot_id}|{namespace}"
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:12]


def new_owner() -> str:
    """A lease holder's name for this process: ``<pid>.<place>-<random>``."""
    return f"{os.getpid()}.{_place()}-{uuid.uuid4().hex[:12]}"


def _pid_here(owner: str) -> int | None:
    """The process id in ``owner`` when it is a process of this machine and namespace."""
    head, _, _ = owner.partition("-")
    pid, _, place = head.partition(".")
    if place != _place() or not pid.isdigit():
        return None
    return int(pid)


def gone(owner: str) -> bool:
    """Whether ``owner`` is a process of this machine and namespace that no longer runs (a
    zombie, killed and not yet waited for, counts as gone)."""
    if sys.platform == "win32":
        return False
    pid = _pid_here(owner)
    if pid is None or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process (EPERM): alive
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) S ...": the state follows the last ')' (comm may hold one).
            return stat.read().rpartition(b")")[2].split()[:1] == [b"Z"]
    except OSError:
        return False
