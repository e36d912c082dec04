"""Product analytics do not follow trace sampling (contract section 7).

``BucketSampler`` wraps the provider's sampler. Its answer stands, except that a span the wrapped
sampler would drop, and which starts with Bucket attributes, is recorded without being sampled
(``RECORD_ONLY``): the span exists for ``BucketSpanProcessor``, while every processor that looks
at the sampled flag (the SDK's batch and simple processors, hence OTLP) still never sees it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from otel_bucket.ground._conventions import BUCKET_COMPANY_ID, BUCKET_EVENT, ENDUSER_ID, USER_ID

__all__ = ["BucketSampler", "is_relevant"]


def is_relevant(attributes: Mapping[str, object] | None) -> bool:
    """Whether span attributes make a Bucket call: a user id, a company id or an event."""
    # Called for every span that ends on the provider: plain membership tests, no generator.
    if not attributes:
        return False
    return (
        BUCKET_EVENT in attributes
        or ENDUSER_ID in attributes
        or USER_ID in attributes
        or BUCKET_COMPANY_ID in attributes
    )


class BucketSampler(Sampler):
    """Records (without sampling) the Bucket spans that ``sampler`` would drop.

    Args:
        sampler: the sampler whose decisions stand for every other span.
    """

    def __init__(self, sampler: Sampler) -> None:
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a Sampler, got {type(sampler).__name__}")
        self._sampler = sampler

    @property
    def wrapped(self) -> Sampler:
        """The sampler whose decisions this one keeps."""
        return self._sampler

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is Decision.DROP and is_relevant(attributes):
            # A dropping sampler returns no attributes; the span needs the ones it starts with.
            return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"BucketSampler{{{self._sampler.get_description()}}}"
