"""``BucketSpanProcessor``: a batch queue that holds only the spans Bucket needs."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from otel_bucket import BucketSpanExporter, BucketSpanProcessor, feature, identify
from otel_bucket.export._batching import BatchSettings
from otel_bucket.instrument._sampling import BucketSampler
from tests._capture import CaptureServer


class Recorder(SpanExporter):
    """Records batches; can hold an export until released, fail, or raise."""

    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS) -> None:
        self.batches: list[list[ReadableSpan]] = []
        self.result = result
        self.raise_next = False
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.shutdowns = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.raise_next:
            self.raise_next = False
            raise RuntimeError("exporter bug")
        self.batches.append(list(spans))
        return self.result

    def shutdown(self) -> None:
        self.shutdowns += 1

    def names(self) -> list[str]:
        return [s.name for batch in self.batches for s in batch]


@pytest.fixture
def recorder() -> Recorder:
    """An exporter that records what it is given."""
    return Recorder()


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    """A real provider, shut down after the test."""
    p = TracerProvider(shutdown_on_exit=False)
    yield p
    p.shutdown()


def end_span(provider: TracerProvider, name: str, **attributes: Any) -> None:
    provider.get_tracer("tests").start_span(name, attributes=attributes).end()


@pytest.mark.parametrize(
    ("attributes", "queued"),
    [
        ({"bucket.event": "Export"}, True),
        ({"enduser.id": "u1"}, True),
        ({"user.id": "u1"}, True),
        ({"bucket.company.id": "c1"}, True),
        ({"http.route": "/x", "enduser.id": "u1"}, True),
        ({}, False),
        ({"http.route": "/x"}, False),
        ({"bucket.user.name": "Ada"}, False),
        ({"bucket.attributes.position": "top"}, False),
    ],
)
def test_only_bucket_spans_are_queued(
    provider: TracerProvider, recorder: Recorder, attributes: dict[str, Any], queued: bool
) -> None:
    """A user id, a company id or an event takes a place in the queue; nothing else does."""
    provider.add_span_processor(BucketSpanProcessor(recorder))
    end_span(provider, "span", **attributes)
    provider.force_flush()
    assert recorder.names() == (["span"] if queued else [])


def test_recorded_but_unsampled_spans_are_exported(
    provider: TracerProvider, recorder: Recorder
) -> None:
    """Spans the sampler only records reach Bucket; a sampled-only processor sees none."""
    p = TracerProvider(sampler=BucketSampler(ALWAYS_OFF), shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    p.add_span_processor(SimpleSpanProcessor(memory))
    p.add_span_processor(BucketSpanProcessor(recorder))

    @feature("Export", tracer_provider=p)
    def export() -> None:
        pass

    with identify("u1"):
        export()
    end_span(p, "plain")
    p.force_flush()
    assert recorder.names() == ["Export"]
    assert not recorder.batches[0][0].context.trace_flags.sampled
    assert memory.get_finished_spans() == ()
    p.shutdown()


def test_defaults(recorder: Recorder) -> None:
    """The default queue holds 16,384 spans and sends eagerly; the other defaults are the SDK's."""
    processor = BucketSpanProcessor(recorder)
    assert processor.settings == BatchSettings(16384, 5000, 512, 30000, eager=True)
    processor.shutdown()


@pytest.mark.parametrize(
    ("env", "kwargs", "expected"),
    [
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "100"}, {}, BatchSettings(100, 5000, 100, 30000)),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "100"}, {"max_queue_size": 50},
         BatchSettings(50, 5000, 50, 30000)),
        ({"OTEL_BSP_SCHEDULE_DELAY": "250"}, {}, BatchSettings(16384, 250, 512, 30000, False)),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64"}, {}, BatchSettings(16384, 5000, 64, 30000)),
        ({"OTEL_BSP_EXPORT_TIMEOUT": "1000"}, {}, BatchSettings(16384, 5000, 512, 1000)),
        ({}, {"max_export_batch_size": 8, "schedule_delay_millis": 10},
         BatchSettings(16384, 10, 8, 30000, False)),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, {}, BatchSettings(16384, 5000, 512, 30000)),
        ({"OTEL_BSP_SCHEDULE_DELAY": "-5"}, {}, BatchSettings(16384, 5000, 512, 30000)),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": ""}, {}, BatchSettings(16384, 5000, 512, 30000)),
    ],
)  # fmt: skip
def test_settings_resolve_argument_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch,
    recorder: Recorder,
    env: dict[str, str],
    kwargs: dict[str, int],
    expected: BatchSettings,
) -> None:
    """``OTEL_BSP_*`` apply as to the SDK's processor; an argument wins over the variable."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    processor = BucketSpanProcessor(recorder, **kwargs)
    assert processor.settings == expected
    processor.shutdown()


def test_malformed_environment_value_warns_naming_it(
    monkeypatch: pytest.MonkeyPatch, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad ``OTEL_BSP_*`` value logs a warning naming the variable and uses the default."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "lots")
    with caplog.at_level(logging.WARNING, logger="otel_bucket.export._processor"):
        BucketSpanProcessor(recorder).shutdown()
    assert "OTEL_BSP_MAX_QUEUE_SIZE" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"exporter": "bucket"}, TypeError, "exporter"),
        ({"max_queue_size": 0}, ValueError, "max_queue_size"),
        ({"max_queue_size": "10"}, TypeError, "max_queue_size"),
        ({"schedule_delay_millis": -1}, ValueError, "schedule_delay_millis"),
        ({"max_export_batch_size": True}, TypeError, "max_export_batch_size"),
        ({"max_queue_size": 10, "max_export_batch_size": 20}, ValueError, "max_export_batch_size"),
        ({"queue_size": 10}, TypeError, "queue_size"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(
    recorder: Recorder, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Wrong types, non-positive sizes and unknown keywords raise naming the argument."""
    kwargs = {"exporter": recorder, **kwargs}
    with pytest.raises(error, match=match):
        BucketSpanProcessor(**kwargs)


def test_default_exporter_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an exporter, one is built from ``BUCKET_*`` variables; without a key, it fails."""
    with pytest.raises(ValueError, match="tracking"):
        BucketSpanProcessor()
    monkeypatch.setenv("BUCKET_TRACKING_KEY", "env-key")
    processor = BucketSpanProcessor()
    assert isinstance(processor.exporter, BucketSpanExporter)
    processor.shutdown()


def test_a_full_queue_drops_the_oldest_and_warns(
    provider: TracerProvider, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """With the worker busy and the queue full, the oldest span goes and a warning says so."""
    recorder.gate = threading.Event()
    provider.add_span_processor(
        BucketSpanProcessor(recorder, max_queue_size=3, max_export_batch_size=1)
    )
    end_span(provider, "first", **{"bucket.event": "e"})
    assert recorder.entered.wait(5)  # the worker holds "first" and waits on the gate
    with caplog.at_level(logging.WARNING, logger="otel_bucket.export._processor"):
        for i in range(4):
            end_span(provider, f"s{i}", **{"bucket.event": "e"})
    recorder.gate.set()
    provider.force_flush()
    assert recorder.names() == ["first", "s1", "s2", "s3"]
    assert "queue full" in caplog.text


def test_force_flush_exports_everything_queued(
    provider: TracerProvider, recorder: Recorder
) -> None:
    """``force_flush`` hands every queued span to the exporter, in batches, before returning."""
    processor = BucketSpanProcessor(recorder, schedule_delay_millis=60_000, max_export_batch_size=4)
    provider.add_span_processor(processor)
    for i in range(10):
        end_span(provider, f"s{i}", **{"enduser.id": "u"})
    assert processor.force_flush()
    assert sorted(recorder.names()) == sorted(f"s{i}" for i in range(10))
    assert all(len(batch) <= 4 for batch in recorder.batches)


def test_shutdown_drains_then_refuses(recorder: Recorder) -> None:
    """Shutdown exports what is queued, shuts the exporter once, then ignores new spans."""
    p = TracerProvider(shutdown_on_exit=False)
    processor = BucketSpanProcessor(recorder, schedule_delay_millis=60_000)
    p.add_span_processor(processor)
    for i in range(5):
        end_span(p, f"s{i}", **{"bucket.company.id": "c"})
    p.shutdown()
    processor.shutdown()
    assert len(recorder.names()) == 5
    assert recorder.shutdowns == 1
    end_span(p, "late", **{"bucket.company.id": "c"})
    assert processor.force_flush() is False
    assert "late" not in recorder.names()


def test_shutdown_drains_everything_even_when_exports_fail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Failed exports at exit do not stop the drain: the exporter decides what is kept or lost."""
    failing = Recorder(SpanExportResult.FAILURE)
    p = TracerProvider(shutdown_on_exit=False)
    p.add_span_processor(
        BucketSpanProcessor(failing, schedule_delay_millis=60_000, max_export_batch_size=2)
    )
    for i in range(6):
        end_span(p, f"s{i}", **{"bucket.event": "e"})
    with caplog.at_level(logging.ERROR, logger="otel_bucket.export._processor"):
        p.shutdown()
    assert len(failing.batches) == 3
    assert len(failing.names()) == 6
    assert "could not export" not in caplog.text


def test_shutdown_drain_is_bounded_by_the_export_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A drain that outlasts export_timeout_millis stops and logs how many spans it left."""
    slow = Recorder(SpanExportResult.FAILURE)
    slow.gate = threading.Event()  # the first export hangs until the drain budget is spent
    p = TracerProvider(shutdown_on_exit=False)
    processor = BucketSpanProcessor(
        slow, schedule_delay_millis=60_000, max_export_batch_size=2, export_timeout_millis=1
    )
    p.add_span_processor(processor)
    for i in range(2):  # a full batch: the worker exports it (no deadline) and hangs there
        end_span(p, f"s{i}", **{"bucket.event": "e"})
    assert slow.entered.wait(5)
    for i in range(2, 6):  # queued behind it
        end_span(p, f"s{i}", **{"bucket.event": "e"})
    with caplog.at_level(logging.ERROR, logger="otel_bucket.export._processor"):
        p.shutdown()  # returns after 1 ms although the export still hangs
        slow.gate.set()
        processor._worker.join(5)
    assert len(slow.batches) == 1
    assert "could not export 4 spans" in caplog.text


def test_an_exporter_that_raises_does_not_stop_the_worker(
    provider: TracerProvider, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception from ``export`` is logged; later batches are still exported."""
    processor = BucketSpanProcessor(recorder)
    provider.add_span_processor(processor)
    recorder.raise_next = True
    end_span(provider, "lost", **{"bucket.event": "e"})
    with caplog.at_level(logging.ERROR, logger="otel_bucket.export._processor"):
        provider.force_flush()
    end_span(provider, "kept", **{"bucket.event": "e"})
    provider.force_flush()
    assert recorder.names() == ["kept"]
    assert "exporter raised" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_delivers_its_own_events(server: CaptureServer) -> None:
    """After ``os.fork()`` the child sends its own events and its flush does not hang."""
    p = TracerProvider(shutdown_on_exit=False)
    p.add_span_processor(BucketSpanProcessor(BucketSpanExporter("k", endpoint=server.url)))

    @feature("In child", tracer_provider=p)
    def in_child() -> None:
        pass

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 2
        try:
            with identify("child-user"):
                in_child()
            code = 0 if p.force_flush(10_000) else 1
            p.shutdown()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [c["userId"] for c in server.calls("event")] == ["child-user"]
    p.shutdown()


def test_unrelated_spans_never_crowd_out_features(server: CaptureServer) -> None:
    """10,000 unrelated spans among 100 feature spans, queue of 128: all 100 events arrive."""
    p = TracerProvider(shutdown_on_exit=False)
    exporter = BucketSpanExporter("k", endpoint=server.url)
    p.add_span_processor(BucketSpanProcessor(exporter, max_queue_size=128))
    tracer = p.get_tracer("tests")

    @feature("Export", tracer_provider=p)
    def export(i: int) -> None:
        pass

    with identify("u1", "c1"):
        for i in range(10_100):
            if i % 101 == 0:
                export(i)
            else:
                tracer.start_span("noise", attributes={"http.route": "/x"}).end()
    assert p.force_flush()
    assert len(server.calls("event")) == 100
    assert exporter.stats.undelivered == 0
    p.shutdown()


BURST = """
import sys
from otel_bucket import feature, identify, install

install(tracking_key="k", endpoint=sys.argv[1], timeout=float(sys.argv[2]))

@feature("Burst")
def burst(i):
    return i

with identify("u1", "c1"):
    for i in range(int(sys.argv[3])):
        burst(i)
"""


def run_burst(endpoint: str, timeout: float, count: int) -> subprocess.CompletedProcess[str]:
    """A process that makes ``count`` feature calls in a tight loop, then exits normally."""
    command = [sys.executable, "-c", BURST, endpoint, str(timeout), str(count)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_a_burst_before_a_normal_exit_is_delivered(server: CaptureServer) -> None:
    """10,000 feature calls and a normal exit, no explicit flush: all 10,000 events arrive."""
    proc = run_burst(server.url, 10, 10_000)
    assert proc.returncode == 0, proc.stderr
    assert len(server.calls("event")) == 10_000


def test_exit_while_the_endpoint_is_down_is_bounded() -> None:
    """With nothing listening, the process exits within the timeout plus a few seconds."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # run_burst's subprocess timeout is the hang guard; timing targets live in benchmarks/.
    proc = run_burst(f"http://127.0.0.1:{port}", 1, 2_000)
    assert proc.returncode == 0, proc.stderr
    lost = [line for line in proc.stderr.splitlines() if "lost" in line]
    assert len(lost) == 1, proc.stderr
    assert "lost 2002 call(s)" in lost[0]
