"""Checked by mypy (``tests/test_typing.py``), never run: ``feature`` keeps the callable's type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any
from uuid import UUID

from typing_extensions import assert_type

from otel_bucket import feature, identify, set_event_attributes, track


@feature
def bare(rows: int, *, sep: str = ",") -> str:
    return sep * rows


@feature("Named", attributes={"position": "popover"})
def named(user: str, count: int = 1) -> list[str]:
    return [user] * count


@feature("Async")
async def send(text: str) -> bool:
    return bool(text)


@feature("Rows")
def rows(n: int) -> Iterator[int]:
    yield from range(n)


@feature("Stream")
async def stream(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


class Service:
    @feature("Method")
    def method(self, x: int) -> int:
        return x

    @feature("Class")
    @classmethod
    def klass(cls, x: int) -> str:
        return str(x)

    @feature("Static")
    @staticmethod
    def static(x: int) -> bytes:
        return bytes(x)


assert_type(bare(3), str)
assert_type(bare(3, sep=";"), str)
assert_type(named("u1"), list[str])
assert_type(named("u1", count=2), list[str])
sender: Callable[[str], Coroutine[Any, Any, bool]] = send  # still a coroutine function
assert_type(rows(2), Iterator[int])
assert_type(stream(2), AsyncIterator[int])
assert_type(Service().method(1), int)
assert_type(Service.klass(1), str)
assert_type(Service().klass(1), str)
assert_type(Service.static(1), bytes)
assert_type(Service().static(1), bytes)

with identify("u1", 42, user_attributes={"name": "Ada"}, company_attributes={"plan": "pro"}):
    pass


async def awaits() -> None:
    assert_type(await send("hi"), bool)


@identify("system", "ops")
def job(day: str, *, dry_run: bool = False) -> int:
    return len(day)


@identify(UUID(int=1))
async def async_job(n: int) -> str:
    return str(n)


assert_type(job("2026-01-01", dry_run=True), int)
async_runner: Callable[[int], Coroutine[Any, Any, str]] = async_job
with identify(None):
    track("Sent message", {"channel": "email"})
    set_event_attributes({"rows": 3})
assert_type(track("Opened"), None)
