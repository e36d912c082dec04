"""``identify``: who the user and company are, for the current span and the features below it.

The identity lives in the OpenTelemetry context under a key of our own (not in baggage, which
propagators copy into outgoing request headers), so it follows the usual context rules across
threads and asyncio tasks and is restored when the block ends.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, Final, ParamSpec, TypeVar, cast
from uuid import UUID

import wrapt
from opentelemetry import context, trace
from opentelemetry.util.types import AttributeValue

from otel_bucket.ground._conventions import (
    BUCKET_COMPANY_ID,
    BUCKET_COMPANY_PREFIX,
    BUCKET_USER_PREFIX,
    ENDUSER_ID,
)
from otel_bucket.instrument._limits import HEADROOM, attribute_limit, report_cut
from otel_bucket.instrument._runners import run_async, run_async_generator, run_generator
from otel_bucket.instrument._values import coerce_attributes

__all__ = [
    "IDENTITY_KEY",
    "IDENTITY_VAR",
    "Identity",
    "current_identity",
    "enter_identity",
    "identify",
    "leave_identity",
    "stamp",
    "stamp_current",
]

P = ParamSpec("P")
R = TypeVar("R")

_log = logging.getLogger(__name__)

IDENTITY_KEY: Final = context.create_key("otel-bucket-identity")

IDENTITY_VAR: ContextVar[Identity | None] = ContextVar("otel_bucket_identity", default=None)
"""The same identity beside the OpenTelemetry context, read when the context lacks it.

Instrumentations that start a request span with no span current attach a brand-new context
extracted from the request headers (``opentelemetry-instrumentation-flask`` does, in a
``before_request`` hook that runs inside any WSGI middleware): that would drop an identity set
by a middleware around them. This variable follows the same context rules and survives it.
"""

_EMPTY: Final[Mapping[str, AttributeValue]] = MappingProxyType({})
_NOTHING: Final = object()  # the token of a block that had nothing to set


@dataclass(frozen=True)
class Identity:
    """The user and company in effect, and their span attributes, built once for every span.

    ``ids`` holds ``bucket.company.id`` then ``enduser.id``; ``details`` the prefixed company then
    user attributes (least important first: what is cut first when a span is full);
    ``span_attributes`` is both, ids last, as ``identify`` stamps them (a full SDK span evicts
    its oldest attribute first: the ids go last).
    """

    user_id: str | None
    company_id: str | None
    user_attributes: Mapping[str, AttributeValue]
    company_attributes: Mapping[str, AttributeValue]
    ids: Mapping[str, AttributeValue]
    details: Mapping[str, AttributeValue]
    span_attributes: Mapping[str, AttributeValue]


def current_identity() -> Identity | None:
    """The identity set by the innermost active ``identify`` block, if any."""
    value = context.get_value(IDENTITY_KEY)
    return value if isinstance(value, Identity) else IDENTITY_VAR.get()


def enter_identity(identity: Identity) -> object:
    """Put ``identity`` in effect on top of the current context; a token for ``leave_identity``."""
    return context.attach(context.set_value(IDENTITY_KEY, identity)), IDENTITY_VAR.set(identity)


def leave_identity(token: object) -> None:
    """Undo ``enter_identity`` (in the same context, in reverse order of entering)."""
    otel, var = cast("tuple[Token[context.Context], Token[Identity | None]]", token)
    IDENTITY_VAR.reset(var)
    context.detach(otel)


def _check_id(value: object, argument: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | UUID):
        raise TypeError(f"{argument} must be a str, an int or a UUID, got {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise ValueError(f"{argument} must not be empty")
    return text


def _merge(
    outer: Identity | None,
    user_id: str | None,
    company_id: str | None,
    user_attributes: Mapping[str, AttributeValue],
    company_attributes: Mapping[str, AttributeValue],
) -> Identity | None:
    """The identity in effect inside a block (an inner block refines the outer one); None when
    there is no user and no company at all."""
    if outer is not None:
        if user_id is None or user_id == outer.user_id:
            user_id = outer.user_id
            user_attributes = {**outer.user_attributes, **user_attributes}
        if company_id is None or company_id == outer.company_id:
            company_id = outer.company_id
            company_attributes = {**outer.company_attributes, **company_attributes}
    if user_id is None and company_id is None:
        return None
    ids: dict[str, AttributeValue] = {}
    if company_id is not None:
        ids[BUCKET_COMPANY_ID] = company_id
    if user_id is not None:
        ids[ENDUSER_ID] = user_id
    details: dict[str, AttributeValue] = {}
    for key, value in company_attributes.items():
        details[BUCKET_COMPANY_PREFIX + key] = value
    for key, value in user_attributes.items():
        details[BUCKET_USER_PREFIX + key] = value
    return Identity(
        user_id,
        company_id,
        MappingProxyType(dict(user_attributes)) if user_attributes else _EMPTY,
        MappingProxyType(dict(company_attributes)) if company_attributes else _EMPTY,
        MappingProxyType(ids),
        MappingProxyType(details) if details else _EMPTY,
        MappingProxyType({**details, **ids}),
    )


def stamp(span: trace.Span, identity: Identity) -> None:
    """Stamp ``span`` with the identity, in free attribute slots only (the ids first, then the
    user and company attributes while ``HEADROOM`` slots stay free), and older than the
    application's attributes.

    A full SDK span evicts its oldest attribute for a new one. Ours go in first and the
    application's are set again after them, so that what the application sets later pushes
    ours out, never its own (also those it had set before ``identify``).
    """
    wanted = identity.span_attributes
    limit = attribute_limit(span)
    held = getattr(span, "attributes", None) if limit is not None else None
    if limit is None or not isinstance(held, Mapping):
        span.set_attributes(wanted)
        return
    app = dict(held)  # a snapshot: setting ours changes the span's own mapping
    if len(app) + len(wanted) <= limit - HEADROOM:  # the usual case: plenty of room
        chosen: Mapping[str, AttributeValue] = wanted
    else:
        chosen = _fit(identity, app, limit)
    span.set_attributes(chosen)
    earlier = {key: value for key, value in app.items() if key not in chosen}
    if earlier:
        span.set_attributes(earlier)  # set again: now newer than ours, so evicted after ours
    if len(chosen) < len(wanted):
        where = f"the span current at identify() ({getattr(span, 'name', '?')!r})"
        report_cut(where, len(wanted) - len(chosen), limit)


def _fit(
    identity: Identity, held: Mapping[str, AttributeValue], limit: int
) -> dict[str, AttributeValue]:
    """What fits in the free slots of a span holding ``held``: the user id, the company id, then
    the details while ``HEADROOM`` slots stay free; in the order of ``span_attributes``."""
    free = limit - len(held)
    chosen: set[str] = set()
    ids = reversed(list(identity.ids))  # the user id first, then the company id
    for reserve, part in ((0, ids), (HEADROOM, iter(identity.details))):
        for key in part:
            if key in held:  # replacing a value takes no new slot
                chosen.add(key)
            elif free > reserve:
                chosen.add(key)
                free -= 1
    return {key: value for key, value in identity.span_attributes.items() if key in chosen}


def stamp_current(identity: Identity) -> None:
    """Stamp the current span with ``identity`` when it is recording; never raises."""
    try:
        span = trace.get_current_span()
        if span.is_recording():
            stamp(span, identity)
    except Exception:  # a broken span must not stop the request
        _log.warning("otel-bucket could not stamp the current span", exc_info=True)


class _Scope:
    """An ``identify`` around each step of a coroutine or generator (see ``_runners``)."""

    __slots__ = ("_args", "_identity")

    def __init__(self, args: tuple[Any, ...]) -> None:
        self._args = args
        self._identity: Identity | None = None

    def start(self) -> None:
        self._identity = _merge(current_identity(), *self._args)
        if self._identity is not None:
            stamp_current(self._identity)

    def enter(self) -> object:
        # Only our key is set on top of the step's own context: its spans parent as usual.
        if self._identity is None:
            return None
        return enter_identity(self._identity)

    def leave(self, token: object) -> None:
        leave_identity(token)

    def fail(self, exc: BaseException) -> None:
        pass

    def end(self) -> None:
        pass


class _Identified:
    """What ``identify`` returns: a context manager (enter it once) and a decorator."""

    __slots__ = ("_args", "_token")

    def __init__(self, *args: Any) -> None:
        self._args: tuple[Any, ...] = args  # user id, company id, user and company attributes
        self._token: object = None

    def __enter__(self) -> None:
        if self._token is not None:
            raise RuntimeError("an identify() block cannot be entered twice; call identify() again")
        identity = _merge(current_identity(), *self._args)
        if identity is None:  # no user, no company: nothing to say, e.g. an anonymous request
            self._token = _NOTHING
            return
        stamp_current(identity)
        self._token = enter_identity(identity)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None and token is not _NOTHING:
            leave_identity(token)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Run every call of ``func`` in its own block with these (fixed) ids and attributes."""
        target = func.__func__ if isinstance(func, classmethod | staticmethod) else func
        if not callable(target):
            raise TypeError(f"identify() must decorate a function, got {type(func).__name__}")
        args = self._args
        runner: Any = None
        if inspect.isasyncgenfunction(target):
            runner = run_async_generator
        elif inspect.iscoroutinefunction(target):
            runner = run_async
        elif inspect.isgeneratorfunction(target):
            runner = run_generator

        def wrapper(wrapped: Any, instance: Any, call_args: Any, kwargs: Any) -> Any:
            if runner is not None:  # the block covers the body's steps, not its creation
                return runner(_Scope(args), wrapped(*call_args, **kwargs))
            with _Identified(*args):
                return wrapped(*call_args, **kwargs)

        return wrapt.FunctionWrapper(func, wrapper)


def identify(
    user_id: str | int | UUID | None = None,
    company_id: str | int | UUID | None = None,
    *,
    user_attributes: Mapping[str, object] | None = None,
    company_attributes: Mapping[str, object] | None = None,
) -> _Identified:
    """Say who the user and company are for the block's spans and features.

    The current span is stamped with ``enduser.id``, ``bucket.company.id``, ``bucket.user.*``
    and ``bucket.company.*``; ``feature`` spans inside the block carry the same identity. An
    inner block keeps the outer company unless it names one, and the outer user attributes
    only for the same user. With no user and no company in effect (``identify(user_id=None)``,
    an anonymous visitor) the block does nothing: features inside it are anonymous, not sent.

    Usable as ``with identify(...):`` and as a decorator, ``@identify(...)``, on plain, async
    and generator functions: each call then runs in a block of its own with these values.

    Args:
        user_id: the user's stable id (a str, an int or a ``uuid.UUID``; sent as a string), or
            None for an anonymous user.
        company_id: the company's stable id (the same types), or None.
        user_attributes: attributes of the user call (values made sendable, never raised).
        company_attributes: attributes of the company call; ``id`` is not allowed as a key.

    Returns:
        A context manager (``with identify(...):``) that is also a decorator.

    Raises:
        TypeError: an id is not a str, int or UUID, or attributes are not a mapping with string
            keys.
        ValueError: an id or attribute key is empty, or ``company_attributes`` has ``id``.
    """
    user = _check_id(user_id, "user_id")
    company = _check_id(company_id, "company_id")
    user_attrs = coerce_attributes(user_attributes, argument="user_attributes")
    company_attrs = coerce_attributes(company_attributes, argument="company_attributes")
    if company_attributes is not None and "id" in company_attributes:
        raise ValueError("company_attributes must not contain 'id': pass company_id instead")
    return _Identified(user, company, user_attrs, company_attrs)
