"""Prefork servers and multiprocessing: every process delivers its own events (section 8)."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_bucket import BucketSpanProcessor, feature, identify, install
from tests._capture import CaptureServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs the fork start method")


@pytest.fixture
def provider(server: CaptureServer) -> Iterator[TracerProvider]:
    """A provider with otel-bucket installed, pointed at the capture server."""
    p = TracerProvider(shutdown_on_exit=False)
    install(p, tracking_key="k", endpoint=server.url, timeout=5)
    yield p
    p.shutdown()


def _child(provider: TracerProvider, name: str, calls: int) -> None:
    @feature("Child work", tracer_provider=provider)
    def work() -> None:
        pass

    with identify(name, "acme"):
        for _ in range(calls):
            work()
    # No flush: a multiprocessing child ends with os._exit(), past the provider's atexit hook.


def test_multiprocessing_children_deliver_their_own_events(
    server: CaptureServer, provider: TracerProvider
) -> None:
    """Two forked multiprocessing children deliver all their events without flushing."""

    @feature("Parent work", tracer_provider=provider)
    def parent_work() -> None:
        pass

    with identify("parent", "acme"):
        parent_work()
    assert provider.force_flush()
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_child, args=(provider, f"child-{i}", 25)) for i in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    with identify("parent", "acme"):
        parent_work()
    assert provider.force_flush()
    events = server.calls("event")
    by_user = {u: sum(e["userId"] == u for e in events) for u in ("parent", "child-0", "child-1")}
    assert by_user == {"parent": 2, "child-0": 25, "child-1": 25}


def test_child_flush_and_shutdown_do_not_hang(server: CaptureServer) -> None:
    """force_flush and shutdown in a forked child return, even with a span queued at fork time."""
    p = TracerProvider(shutdown_on_exit=False)
    processor = install(p, tracking_key="k", endpoint=server.url, timeout=5)
    assert isinstance(processor, BucketSpanProcessor)

    def flush_in_child(queue: multiprocessing.queues.Queue[bool]) -> None:
        queue.put(p.force_flush(10_000))
        p.shutdown()
        queue.put(True)

    context = multiprocessing.get_context("fork")
    results: multiprocessing.queues.Queue[bool] = context.Queue()
    with identify("queued-before-fork"):
        p.get_tracer("t").start_span("s").end()  # stamped by identify: queued in the parent
    child = context.Process(target=flush_in_child, args=(results,))
    child.start()
    assert results.get(timeout=30) is True
    assert results.get(timeout=30) is True
    child.join(30)
    assert child.exitcode == 0
    p.shutdown()
