"""``identify``: the identity stamps the current span and follows the OpenTelemetry context."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_bucket import feature, identify
from otel_bucket.instrument._identity import Identity, current_identity


class Traced:
    """A real provider recording every finished span in memory."""

    def __init__(self) -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = self.provider.get_tracer("tests")

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.memory.get_finished_spans() if s.name == name]

    def attributes(self, name: str) -> dict[str, Any]:
        (span,) = self.spans(name)
        return dict(span.attributes or {})


@pytest.fixture
def traced() -> Iterator[Traced]:
    """A provider with an in-memory exporter."""
    t = Traced()
    yield t
    t.provider.shutdown()


def identity() -> Identity:
    found = current_identity()
    assert found is not None
    return found


def test_identify_stamps_the_current_span(traced: Traced) -> None:
    """The span current at the block's start gets the ids and the user and company attributes."""
    with (
        traced.tracer.start_as_current_span("request"),
        identify(
            "u1",
            42,
            user_attributes={"name": "Ada", "since": date(2020, 1, 2)},
            company_attributes={"plan": "pro"},
        ),
    ):
        pass
    assert traced.attributes("request") == {
        "enduser.id": "u1",
        "bucket.company.id": "42",
        "bucket.user.name": "Ada",
        "bucket.user.since": "2020-01-02",
        "bucket.company.plan": "pro",
    }


def test_features_in_the_block_carry_the_whole_identity(traced: Traced) -> None:
    """A feature span inside the block carries ids and user and company attributes."""

    @feature("Export", tracer_provider=traced.provider)
    def export() -> None:
        pass

    with identify("u1", "c1", user_attributes={"name": "Ada"}, company_attributes={"plan": "pro"}):
        export()
    assert traced.attributes("Export") == {
        "bucket.event": "Export",
        "enduser.id": "u1",
        "bucket.company.id": "c1",
        "bucket.user.name": "Ada",
        "bucket.company.plan": "pro",
    }


def test_without_a_recording_span_nothing_is_stamped() -> None:
    """With no current span, the block still sets the identity and raises nothing."""
    with identify("u1"):
        assert identity().user_id == "u1"
    assert current_identity() is None


def test_span_attributes_are_built_once_per_block() -> None:
    """The identity's span attributes are one object for the whole block (the hot path)."""
    with identify("u1", "c1"):
        first = identity().span_attributes
        assert identity().span_attributes is first
        with pytest.raises(TypeError):
            first["enduser.id"] = "other"  # type: ignore[index]


def test_inner_block_keeps_outer_company_and_same_user_attributes() -> None:
    """An inner block with the same user keeps the outer company and user attributes."""
    with identify("u1", "c1", user_attributes={"name": "Ada"}, company_attributes={"plan": "pro"}):
        with identify("u1", user_attributes={"role": "admin"}):
            inner = identity()
            assert (inner.user_id, inner.company_id) == ("u1", "c1")
            assert dict(inner.user_attributes) == {"name": "Ada", "role": "admin"}
            assert dict(inner.company_attributes) == {"plan": "pro"}
        outer = identity()
        assert dict(outer.user_attributes) == {"name": "Ada"}
    assert current_identity() is None


def test_inner_block_for_another_user_drops_outer_user_attributes() -> None:
    """Another user inside the block keeps the company but not the outer user's attributes."""
    with identify("u1", "c1", user_attributes={"name": "Ada"}), identify("u2"):
        inner = identity()
        assert (inner.user_id, inner.company_id) == ("u2", "c1")
        assert dict(inner.user_attributes) == {}
        assert inner.span_attributes == {"enduser.id": "u2", "bucket.company.id": "c1"}


def test_inner_block_naming_a_company_replaces_it() -> None:
    """An inner block naming another company replaces the company and its attributes."""
    with identify("u1", "c1", company_attributes={"plan": "pro"}), identify(company_id="c2"):
        inner = identity()
        assert (inner.user_id, inner.company_id) == ("u1", "c2")
        assert dict(inner.company_attributes) == {}


def test_leaving_the_block_restores_after_an_exception() -> None:
    """The outer identity comes back even when the inner block raises."""
    with identify("u1"):
        with pytest.raises(KeyError), identify("u2"):
            raise KeyError("boom")
        assert identity().user_id == "u1"


def test_threads_follow_context_rules() -> None:
    """A new thread starts without the identity; a copied context carries it."""
    seen: dict[str, str | None] = {}

    def look(label: str) -> None:
        found = current_identity()
        seen[label] = found.user_id if found else None

    with identify("u1"):
        plain = threading.Thread(target=look, args=("plain",))
        ctx = contextvars.copy_context()
        copied = threading.Thread(target=ctx.run, args=(look, "copied"))
        plain.start()
        copied.start()
        plain.join()
        copied.join()
    assert seen == {"plain": None, "copied": "u1"}


def test_concurrent_threads_keep_their_own_identity() -> None:
    """Two threads inside their own blocks at the same time never see each other's identity."""
    barrier = threading.Barrier(2)
    seen: dict[str, str | None] = {}

    def request(user: str) -> None:
        with identify(user):
            barrier.wait(timeout=5)
            seen[user] = identity().user_id
            barrier.wait(timeout=5)

    threads = [threading.Thread(target=request, args=(u,)) for u in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": "a", "b": "b"}


def test_asyncio_tasks_inherit_and_isolate() -> None:
    """Tasks see the identity in effect when created; a task's own block stays in that task."""

    async def child(user: str | None, started: asyncio.Event, go: asyncio.Event) -> Any:
        if user is None:
            started.set()
            await go.wait()
            return identity().user_id
        with identify(user):
            started.set()
            await go.wait()
            return identity().user_id

    async def main() -> list[Any]:
        with identify("outer"):
            events = [(asyncio.Event(), asyncio.Event()) for _ in range(3)]
            tasks = [
                asyncio.create_task(child(user, s, g))
                for user, (s, g) in zip([None, "t1", "t2"], events, strict=True)
            ]
            for started, _ in events:
                await started.wait()
            assert identity().user_id == "outer"
            for _, go in events:
                go.set()
            return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == ["outer", "t1", "t2"]


def test_identity_is_not_baggage_and_never_leaves_the_process(traced: Traced) -> None:
    """Nothing is put in baggage, so propagators inject no identity into outgoing headers."""
    headers: dict[str, str] = {}
    with (
        traced.tracer.start_as_current_span("request"),
        identify("u1", "c1", user_attributes={"email": "lovelace@example.com"}),
    ):
        assert baggage.get_all() == {}
        propagate.inject(headers)
    assert "baggage" not in headers
    # (ids and the email hold letters past "f", so no random hex trace id can contain them)
    assert not any("u1" in v or "lovelace" in v for v in headers.values())
    assert "traceparent" in headers  # the propagator did run


def test_entering_one_block_twice_is_refused() -> None:
    """Each ``identify()`` call makes one block; entering it again is a RuntimeError."""
    block = identify("u1")
    with block, pytest.raises(RuntimeError, match="twice"), block:
        pass


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"user_id": ""}, ValueError, "user_id"),
        ({"user_id": "  "}, ValueError, "user_id"),
        ({"user_id": True}, TypeError, "user_id"),
        ({"user_id": 1.5}, TypeError, "user_id"),
        ({"user_id": b"u1"}, TypeError, "str, an int or a UUID"),
        ({"company_id": ""}, ValueError, "company_id"),
        ({"company_id": ["c"]}, TypeError, "company_id"),
        ({"user_id": "u", "user_attributes": ["a"]}, TypeError, "user_attributes"),
        ({"user_id": "u", "user_attributes": {"": 1}}, ValueError, "user_attributes"),
        ({"company_id": "c", "company_attributes": {3: 1}}, TypeError, "company_attributes"),
        ({"company_id": "c", "company_attributes": {"id": 1}}, ValueError, "company_attributes"),
        ({"user": "u"}, TypeError, "user"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Empty ids, wrong types and unknown keywords raise TypeError/ValueError naming them."""
    with pytest.raises(error, match=match):
        identify(**kwargs)


def test_unsendable_attribute_values_are_dropped_not_raised(traced: Traced) -> None:
    """A value OpenTelemetry cannot hold is dropped; the block still runs."""
    with (
        traced.tracer.start_as_current_span("request"),
        identify("u1", user_attributes={"obj": object(), "ok": 1}),
    ):
        pass
    assert traced.attributes("request") == {"enduser.id": "u1", "bucket.user.ok": 1}


def test_a_non_recording_span_is_left_alone() -> None:
    """Under a non-recording span nothing is stamped and nothing fails."""
    span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    with trace.use_span(span), identify("u1"):
        assert identity().user_id == "u1"


def test_no_user_and_no_company_is_a_no_op_block(traced: Traced) -> None:
    """identify(user_id=None) (Django's AnonymousUser.id) stamps nothing and sets no identity."""

    @feature("Browse", tracer_provider=traced.provider)
    def browse() -> None:
        pass

    with traced.tracer.start_as_current_span("request"):
        for block in (identify(user_id=None), identify(), identify(None, user_attributes={"a": 1})):
            with block:
                assert current_identity() is None
                browse()
    assert traced.attributes("request") == {}
    spans = traced.spans("Browse")
    assert len(spans) == 3
    for span in spans:
        assert span.attributes == {"bucket.event": "Browse", "bucket.anonymous": True}


def test_no_user_inside_a_block_keeps_the_outer_identity() -> None:
    """None means "nothing new": an inner identify(None, ...) refines the outer user."""
    with identify("u1"), identify(None, user_attributes={"role": "admin"}):
        inner = identity()
        assert inner.user_id == "u1"
        assert dict(inner.user_attributes) == {"role": "admin"}


def test_a_no_op_block_cannot_be_entered_twice() -> None:
    """Even a block with nothing to set is single-use, like any other."""
    block = identify(None)
    with block, pytest.raises(RuntimeError, match="twice"), block:
        pass


def test_uuid_ids_are_sent_as_strings(traced: Traced) -> None:
    """A uuid.UUID user or company id becomes its canonical string."""
    user, company = uuid.UUID(int=1), uuid.UUID(int=2)
    with traced.tracer.start_as_current_span("request"), identify(user, company):
        found = identity()
    assert (found.user_id, found.company_id) == (str(user), str(company))
    assert traced.attributes("request") == {
        "enduser.id": "00000000-0000-0000-0000-000000000001",
        "bucket.company.id": "00000000-0000-0000-0000-000000000002",
    }


def test_company_only_features_are_anonymous(traced: Traced) -> None:
    """A company without a user makes a company call; its features are anonymous."""

    @feature("Browse", tracer_provider=traced.provider)
    def browse() -> None:
        pass

    with identify(company_id="c1"):
        browse()
    assert traced.attributes("Browse") == {
        "bucket.event": "Browse",
        "bucket.company.id": "c1",
        "bucket.anonymous": True,
    }


def test_identify_decorates_a_function(traced: Traced) -> None:
    """@identify(...) runs each call in its own block; the identity is gone after the call."""

    @feature("Nightly", tracer_provider=traced.provider)
    def step() -> None:
        pass

    @identify("system", "ops", user_attributes={"kind": "job"})
    def nightly(n: int) -> str | None:
        """Run the nightly job."""
        step()
        found = current_identity()
        return found.user_id if found else None

    assert nightly.__name__ == "nightly"
    assert nightly.__doc__ == "Run the nightly job."
    assert list(inspect.signature(nightly).parameters) == ["n"]
    with traced.tracer.start_as_current_span("job"):
        assert nightly(1) == "system"
        assert nightly(2) == "system"  # a fresh block per call: no "entered twice"
    assert current_identity() is None
    assert traced.attributes("job")["enduser.id"] == "system"
    for span in traced.spans("Nightly"):
        assert span.attributes is not None and span.attributes["bucket.user.kind"] == "job"


def test_identify_decorates_coroutines_and_generators() -> None:
    """Async and generator functions keep their nature; each step sees the identity."""

    @identify("u-async")
    async def fetch() -> str | None:
        await asyncio.sleep(0)
        found = current_identity()
        return found.user_id if found else None

    @identify("u-gen")
    def rows() -> Iterator[str | None]:
        for _ in range(2):
            found = current_identity()
            yield found.user_id if found else None

    @identify("u-agen")
    async def stream() -> AsyncIterator[str | None]:
        for _ in range(2):
            await asyncio.sleep(0)
            found = current_identity()
            yield found.user_id if found else None

    async def drain() -> list[str | None]:
        return [item async for item in stream()]

    assert inspect.iscoroutinefunction(fetch)
    assert inspect.isgeneratorfunction(rows)
    assert inspect.isasyncgenfunction(stream)
    assert asyncio.run(fetch()) == "u-async"
    seen_between: list[Identity | None] = []
    for item in rows():
        assert item == "u-gen"
        seen_between.append(current_identity())  # the consumer's own context, between steps
    assert seen_between == [None, None]
    assert asyncio.run(drain()) == ["u-agen", "u-agen"]


def test_identify_decorator_rejects_a_non_callable() -> None:
    """identify(...)(42) says what it got."""
    with pytest.raises(TypeError, match="function"):
        identify("u1")(42)  # type: ignore[arg-type]


def test_identity_survives_an_instrumentation_replacing_the_context(traced: Traced) -> None:
    """A brand-new context attached inside the block (as Flask's instrumentation attaches the
    one it extracts from the request) keeps the identity; leaving the block still removes it."""
    from opentelemetry import context

    @feature("Export", tracer_provider=traced.provider)
    def export() -> None:
        pass

    with identify("u1"):
        token = context.attach(context.Context())
        try:
            assert identity().user_id == "u1"
            export()
        finally:
            context.detach(token)
    assert current_identity() is None
    assert traced.attributes("Export")["enduser.id"] == "u1"
