"""Run an object's reset method in a forked child, without keeping the object alive."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import TypeVar

__all__ = ["after_fork_in_child"]

_T = TypeVar("_T")


def after_fork_in_child(obj: _T, reset: Callable[[_T], None]) -> None:
    """Call ``reset(obj)`` in every child forked from now on, while ``obj`` is alive."""
    ref = weakref.ref(obj)

    def hook() -> None:
        target = ref()
        if target is not None:
            reset(target)

    os.register_at_fork(after_in_child=hook)
