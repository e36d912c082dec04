"""A spool directory another user could write to is refused, as ssh and pip do (issue 19): the
spool is off in that process with one warning that says why and what to do."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from otel_bucket.ground._call import Call
from otel_bucket.spool._spool import Spool

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX owners and modes")

CALL = Call("event", {"event": "Export", "userId": "u1"})
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def directory(tmp_path: Path, mode: int, owner: int | None = None) -> Path:
    place = tmp_path / "shared"
    place.mkdir()
    os.chmod(place, mode)
    if owner is not None:
        os.chown(place, owner, owner)
    return place


def refused(place: Path, caplog: pytest.LogCaptureFixture) -> str:
    """Put into a spool in ``place``: nothing stored, no file; return the one warning."""
    sp = Spool(place / "spool-0123.db", endpoint="https://tracking.bucket.co")
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        assert sp.put([CALL]) == 0
        assert sp.put([CALL]) == 0
    sp.close()
    assert sp.disabled
    assert not list(place.glob("spool-*"))
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("otel-bucket spool off in this process: cannot use ")
    return warning


@pytest.mark.skipif(not ROOT, reason="only root can give a directory to another user")
@pytest.mark.parametrize("mode", [0o777, 0o755])
def test_a_directory_of_another_user_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    """Issue 19's case: world-writable and owned by another user; also when only that user
    may write it (they could still read or replace the files)."""
    place = directory(tmp_path, mode, owner=65534)
    warning = refused(place, caplog)
    assert f"{place} belongs to another user (uid 65534)" in warning
    assert "BUCKET_SPOOL_DIR" in warning


def test_a_world_writable_directory_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """0777 without the sticky bit: anyone could replace the spool file with calls of their own,
    which would then be sent with this process's tracking key."""
    warning = refused(directory(tmp_path, 0o777), caplog)
    assert "shared is writable by every user" in warning and "chmod o-w" in warning


def test_a_world_writable_parent_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A private spool directory inside a world-writable one can be renamed away and replaced."""
    place = directory(tmp_path, 0o777) / "otel-bucket"
    place.mkdir(mode=0o700)
    assert f"{place.parent} is writable by every user" in refused(place, caplog)


@pytest.mark.parametrize("mode", [0o1777, 0o770, 0o700])
def test_sticky_and_group_directories_are_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    """Sticky (as /tmp: nobody may replace another's files) and group-writable (a volume shared
    by a deployment's group) directories are fine."""
    place = directory(tmp_path, mode)
    sp = Spool(place / "spool-0123.db")
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        assert sp.put([CALL]) == 1
    sp.close()
    assert caplog.records == []
