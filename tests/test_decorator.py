"""``feature``: one span per call, on every kind of callable, never breaking the function."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_bucket import feature, identify


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    """A real provider; its finished spans are in ``provider.memory``."""
    p = TracerProvider(shutdown_on_exit=False)
    p.memory = InMemorySpanExporter()  # type: ignore[attr-defined]
    p.add_span_processor(SimpleSpanProcessor(p.memory))  # type: ignore[attr-defined]
    yield p
    p.shutdown()


def finished(provider: TracerProvider, name: str | None = None) -> list[ReadableSpan]:
    spans = provider.memory.get_finished_spans()  # type: ignore[attr-defined]
    return [s for s in spans if name is None or s.name == name]


def only(provider: TracerProvider, name: str) -> ReadableSpan:
    (span,) = finished(provider, name)
    return span


def make_kinds(provider: TracerProvider) -> dict[str, tuple[Callable[[], Any], Callable[..., Any]]]:
    """name -> (call it the way a caller would, the decorated callable)."""

    @feature("plain", tracer_provider=provider)
    def plain(x: int = 1) -> int:
        return x

    @feature("coroutine", tracer_provider=provider)
    async def coroutine(x: int = 1) -> int:
        await asyncio.sleep(0)
        return x

    @feature("generator", tracer_provider=provider)
    def generator(n: int = 2) -> Iterator[int]:
        yield from range(n)

    @feature("async generator", tracer_provider=provider)
    async def async_generator(n: int = 2) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    class Service:
        @feature("method", tracer_provider=provider)
        def method(self, x: int = 1) -> int:
            return x

        @feature("classmethod", tracer_provider=provider)
        @classmethod
        def klass(cls, x: int = 1) -> int:
            return x

        @classmethod
        @feature("inner classmethod", tracer_provider=provider)
        def inner_klass(cls, x: int = 1) -> int:
            return x

        @feature("staticmethod", tracer_provider=provider)
        @staticmethod
        def static(x: int = 1) -> int:
            return x

        @staticmethod
        @feature("inner staticmethod", tracer_provider=provider)
        def inner_static(x: int = 1) -> int:
            return x

    async def drain(agen: AsyncIterator[int]) -> list[int]:
        return [i async for i in agen]

    service = Service()
    return {
        "plain": (lambda: plain(), plain),
        "coroutine": (lambda: asyncio.run(coroutine()), coroutine),
        "generator": (lambda: list(generator()), generator),
        "async generator": (lambda: asyncio.run(drain(async_generator())), async_generator),
        "method": (lambda: service.method(), Service.method),
        "classmethod": (lambda: Service.klass() + service.klass(), Service.klass),
        "inner classmethod": (lambda: Service.inner_klass(), Service.inner_klass),
        "staticmethod": (lambda: Service.static() + service.static(), Service.static),
        "inner staticmethod": (lambda: service.inner_static(), Service.inner_static),
    }


KINDS = [
    "plain",
    "coroutine",
    "generator",
    "async generator",
    "method",
    "classmethod",
    "inner classmethod",
    "staticmethod",
    "inner staticmethod",
]


@pytest.mark.parametrize("kind", KINDS)
def test_each_call_is_one_child_span_with_the_event(provider: TracerProvider, kind: str) -> None:
    """Every callable kind makes one span per call, child of the current span."""
    call, _ = make_kinds(provider)[kind]
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("request") as parent:
        call()
    spans = finished(provider, kind)
    assert spans, "no span"
    for span in spans:
        assert span.attributes == {"bucket.anonymous": True, "bucket.event": kind}
        assert span.parent is not None
        assert span.parent.span_id == parent.get_span_context().span_id


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_and_kind_are_kept(provider: TracerProvider, kind: str) -> None:
    """``__name__``, the signature and the coroutine/generator nature survive decoration."""
    _, decorated = make_kinds(provider)[kind]
    names = {"plain", "coroutine", "generator", "async_generator", "method", "klass"}
    assert decorated.__name__ in names | {"inner_klass", "static", "inner_static"}
    params = list(inspect.signature(decorated).parameters)
    assert params[-1] in {"x", "n"}
    assert ("cls" not in params and "self" not in params) or kind == "method"
    assert inspect.iscoroutinefunction(decorated) is (kind == "coroutine")
    assert inspect.isgeneratorfunction(decorated) is (kind == "generator")
    assert inspect.isasyncgenfunction(decorated) is (kind == "async generator")


def test_bare_decorator_uses_the_function_name_and_keeps_the_docstring(
    provider: TracerProvider,
) -> None:
    """``@feature`` without arguments names the event after ``__name__``."""

    @feature
    def export_csv(rows: int) -> int:
        """Export rows."""
        return rows

    assert export_csv.__doc__ == "Export rows."
    assert export_csv.__wrapped__.__name__ == "export_csv"  # type: ignore[attr-defined]
    bound = feature(tracer_provider=provider)(export_csv.__wrapped__)  # type: ignore[attr-defined]
    assert bound(3) == 3
    assert only(provider, "export_csv").attributes == {
        "bucket.anonymous": True,
        "bucket.event": "export_csv",
    }


def test_event_attributes_are_prefixed_and_made_sendable(provider: TracerProvider) -> None:
    """``attributes=`` become ``bucket.attributes.*``; unsendable values are dropped."""

    @feature("Sent message", attributes={"position": "popover", "n": None, "bad": object()},
             tracer_provider=provider)  # fmt: skip
    def send() -> None:
        pass

    send()
    assert only(provider, "Sent message").attributes == {
        "bucket.event": "Sent message",
        "bucket.attributes.position": "popover",
        "bucket.anonymous": True,
    }


def test_exception_is_recorded_and_reraised_unchanged(provider: TracerProvider) -> None:
    """The user's exception passes through as the same object; the span is ERROR and ended."""
    error = ValueError("bad input")

    @feature("fails", tracer_provider=provider)
    def fails() -> None:
        raise error

    with pytest.raises(ValueError) as caught:
        fails()
    assert caught.value is error
    span = only(provider, "fails")
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    assert span.attributes is not None and span.attributes["bucket.event"] == "fails"


def test_async_exception_is_recorded_and_reraised(provider: TracerProvider) -> None:
    """A coroutine's exception is recorded on the span that covered the await."""

    @feature("async fails", tracer_provider=provider)
    async def fails() -> None:
        await asyncio.sleep(0)
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        asyncio.run(fails())
    assert only(provider, "async fails").status.status_code is StatusCode.ERROR


def test_coroutine_span_covers_the_await_and_parents_inner_spans(provider: TracerProvider) -> None:
    """Spans started inside the awaited body are children of the feature span."""
    tracer = provider.get_tracer("tests")

    @feature("outer", tracer_provider=provider)
    async def outer() -> None:
        await asyncio.sleep(0)
        with tracer.start_as_current_span("inner"):
            await asyncio.sleep(0)

    asyncio.run(outer())
    feature_span, inner = only(provider, "outer"), only(provider, "inner")
    assert inner.parent is not None
    assert inner.parent.span_id == feature_span.context.span_id
    assert feature_span.end_time is not None and inner.end_time is not None
    assert feature_span.end_time >= inner.end_time


def test_bad_arguments_to_a_coroutine_fail_at_the_call(provider: TracerProvider) -> None:
    """Calling with wrong arguments raises at once, as without the decorator."""

    @feature("co", tracer_provider=provider)
    async def co(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        co()  # type: ignore[call-arg]


def test_generator_span_is_not_current_across_yield(provider: TracerProvider) -> None:
    """Inside the body the feature span is current; between items the consumer's span is."""
    tracer = provider.get_tracer("tests")

    @feature("rows", tracer_provider=provider)
    def rows() -> Iterator[int]:
        for i in range(2):
            with tracer.start_as_current_span(f"produce {i}"):
                pass
            yield i

    with tracer.start_as_current_span("consumer") as consumer:
        for i in rows():
            with tracer.start_as_current_span(f"consume {i}"):
                pass
            assert trace.get_current_span() is consumer
    feature_id = only(provider, "rows").context.span_id
    consumer_id = consumer.get_span_context().span_id
    for i in range(2):
        assert only(provider, f"produce {i}").parent.span_id == feature_id  # type: ignore[union-attr]
        assert only(provider, f"consume {i}").parent.span_id == consumer_id  # type: ignore[union-attr]


def test_generator_send_throw_close_and_return(provider: TracerProvider) -> None:
    """``send``, ``throw``, ``close`` and the return value behave as without the decorator."""

    @feature("echo", tracer_provider=provider)
    def echo() -> Iterator[Any]:
        received = yield "ready"
        try:
            yield f"got {received}"
        except KeyError:
            yield "caught"
        return "done"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("x") == "got x"
    assert gen.throw(KeyError("k")) == "caught"
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done"

    closed = echo()
    next(closed)
    closed.close()
    assert len(finished(provider, "echo")) == 2


def test_generator_exception_is_recorded(provider: TracerProvider) -> None:
    """An exception raised while iterating is recorded and propagates."""

    @feature("broken rows", tracer_provider=provider)
    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        list(broken())
    assert only(provider, "broken rows").status.status_code is StatusCode.ERROR


def test_async_generator_asend_athrow_aclose(provider: TracerProvider) -> None:
    """An async generator keeps its protocol; the consumer's context is its own between items."""
    tracer = provider.get_tracer("tests")

    @feature("stream", tracer_provider=provider)
    async def stream() -> AsyncIterator[Any]:
        got = yield 1
        try:
            yield got
        except KeyError:
            yield "caught"

    async def main() -> None:
        with tracer.start_as_current_span("consumer") as consumer:
            agen = stream()
            assert await agen.__anext__() == 1
            assert trace.get_current_span() is consumer
            assert await agen.asend("x") == "x"
            assert await agen.athrow(KeyError("k")) == "caught"
            await agen.aclose()

    asyncio.run(main())
    assert len(finished(provider, "stream")) == 1


def test_generator_keeps_the_identity_of_its_call(provider: TracerProvider) -> None:
    """A generator made inside ``identify`` but iterated after the block still carries it."""

    @feature("stream rows", tracer_provider=provider)
    def stream_rows() -> Iterator[int]:
        yield 1

    with identify("u1", "c1"):
        response_body = stream_rows()  # e.g. a streaming response, sent after the handler
    assert list(response_body) == [1]
    assert only(provider, "stream rows").attributes == {
        "bucket.event": "stream rows",
        "enduser.id": "u1",
        "bucket.company.id": "c1",
    }


def test_unused_generator_makes_no_span(provider: TracerProvider) -> None:
    """A generator that is created but never iterated starts no span."""

    @feature("lazy", tracer_provider=provider)
    def lazy() -> Iterator[int]:
        yield 1

    lazy()
    assert finished(provider, "lazy") == []


def test_ids_are_copied_from_the_current_span_without_identify(provider: TracerProvider) -> None:
    """With no ``identify``, the user and company ids come from the current span."""
    tracer = provider.get_tracer("tests")

    @feature("Export", tracer_provider=provider)
    def export() -> None:
        pass

    attributes = {"user.id": "u9", "bucket.company.id": "c9", "http.route": "/x"}
    with tracer.start_as_current_span("request", attributes=attributes):
        export()
    assert only(provider, "Export").attributes == {
        "bucket.event": "Export",
        "user.id": "u9",
        "bucket.company.id": "c9",
    }


def test_identify_wins_over_the_current_span(provider: TracerProvider) -> None:
    """Inside ``identify`` the identity is used; it also re-stamped the span for later calls."""
    tracer = provider.get_tracer("tests")

    @feature("Export", tracer_provider=provider)
    def export() -> None:
        pass

    with tracer.start_as_current_span("request", attributes={"enduser.id": "old"}):
        with identify("new"):
            export()
        export()
    first, second = finished(provider, "Export")
    assert first.attributes is not None and first.attributes["enduser.id"] == "new"
    assert second.attributes is not None and second.attributes["enduser.id"] == "new"


class BrokenProvider(trace.TracerProvider):
    """A provider whose every tracer lookup fails: a fault in our bookkeeping."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise RuntimeError("tracing is broken")


@pytest.mark.parametrize("kind", ["sync", "coroutine", "generator", "async generator"])
def test_our_own_faults_never_stop_the_function(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """When span bookkeeping fails, the function still runs and returns; a warning is logged."""
    broken = BrokenProvider()
    ran: list[str] = []

    @feature("sync", tracer_provider=broken)
    def sync() -> int:
        ran.append("sync")
        return 1

    @feature("co", tracer_provider=broken)
    async def co() -> int:
        ran.append("coroutine")
        return 1

    @feature("gen", tracer_provider=broken)
    def gen() -> Iterator[int]:
        ran.append("generator")
        yield 1

    @feature("agen", tracer_provider=broken)
    async def agen() -> AsyncIterator[int]:
        ran.append("async generator")
        yield 1

    async def drain() -> list[int]:
        return [i async for i in agen()]

    calls: dict[str, Callable[[], Any]] = {
        "sync": sync,
        "coroutine": lambda: asyncio.run(co()),
        "generator": lambda: list(gen()),
        "async generator": lambda: asyncio.run(drain()),
    }
    import otel_bucket.instrument._runners as runners
    from otel_bucket.ground._throttle import Throttle

    runners._faults = Throttle(60.0, time.monotonic)  # an earlier report would hide this one
    with caplog.at_level(logging.WARNING, logger="otel_bucket"):
        assert calls[kind]() in (1, [1])
    assert ran == [kind]
    assert "bookkeeping failed" in caplog.text


def test_lookup_is_lazy_and_follows_the_global_provider(provider: TracerProvider) -> None:
    """Without ``tracer_provider=``, the provider is the global one at call time, not at import."""
    from opentelemetry.util._once import Once

    @feature("late")
    def late() -> None:
        pass

    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, Once()
    try:
        late()  # no provider yet: a proxy tracer, nothing recorded
        trace.set_tracer_provider(provider)
        late()
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved
    assert len(finished(provider, "late")) == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((42,), {}, TypeError, "event"),
        (("",), {}, ValueError, "event"),
        (("  ",), {}, ValueError, "event"),
        (("x",), {"attributes": ["a"]}, TypeError, "attributes"),
        (("x",), {"attributes": {"": 1}}, ValueError, "attributes"),
        (("x",), {"tracer_provider": "global"}, TypeError, "tracer_provider"),
        (("x",), {"provider": None}, TypeError, "provider"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """A non-string or empty event, bad attributes or provider, unknown keywords: clear errors."""
    with pytest.raises(error, match=match):
        feature(*args, **kwargs)


def test_decorating_a_non_callable_is_a_type_error() -> None:
    """``feature("x")(42)`` says what it got."""
    with pytest.raises(TypeError, match="function"):
        feature("x")(42)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "exc",
    [KeyboardInterrupt(), SystemExit(1), SystemExit("fatal"), asyncio.CancelledError()],
    ids=["KeyboardInterrupt", "SystemExit(1)", "SystemExit(message)", "CancelledError"],
)
def test_base_exceptions_that_end_a_call_are_errors(
    provider: TracerProvider, exc: BaseException
) -> None:
    """KeyboardInterrupt, a failing SystemExit, a cancellation: ERROR with the type, re-raised."""

    @feature("interrupted", tracer_provider=provider)
    def interrupted() -> None:
        raise exc

    @feature("interrupted async", tracer_provider=provider)
    async def interrupted_async() -> None:
        raise exc

    @feature("interrupted rows", tracer_provider=provider)
    def rows() -> Iterator[int]:
        yield 1
        raise exc

    for run in (interrupted, lambda: asyncio.run(interrupted_async()), lambda: list(rows())):
        with pytest.raises(type(exc)) as caught:
            run()
        assert caught.value is exc
    for name in ("interrupted", "interrupted async", "interrupted rows"):
        span = only(provider, name)
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description is not None
        assert span.status.description.startswith(type(exc).__name__)
        assert [e.name for e in span.events] == ["exception"]


@pytest.mark.parametrize("code", [0, None, False])
def test_a_clean_system_exit_is_not_an_error(provider: TracerProvider, code: Any) -> None:
    """sys.exit() / SystemExit(0) ends the call normally: status UNSET, re-raised, event sent."""

    @feature("exits", tracer_provider=provider)
    def exits() -> None:
        raise SystemExit(code)

    with pytest.raises(SystemExit):
        exits()
    span = only(provider, "exits")
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()
    assert span.attributes is not None and span.attributes["bucket.event"] == "exits"


def test_closing_a_generator_early_is_not_an_error(provider: TracerProvider) -> None:
    """GeneratorExit (a consumer that stops early, e.g. a client gone) leaves the status UNSET."""

    @feature("rows", tracer_provider=provider)
    def rows() -> Iterator[int]:
        yield from range(10)

    for i in rows():
        if i == 2:
            break
    span = only(provider, "rows")
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()
