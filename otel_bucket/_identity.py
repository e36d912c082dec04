"""``identify``: who the user and company are, for the current span and the features below it.

The identity lives in the OpenTelemetry context under a key of our own (not in baggage, which
propagators copy into outgoing request headers), so it follows the usual context rules across
threads and asyncio tasks and is restored when the block ends.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Final
from uuid import UUID

from opentelemetry import context, trace
from opentelemetry.util.types import AttributeValue

from otel_bucket._conventions import (
    BUCKET_COMPANY_ID,
    BUCKET_COMPANY_PREFIX,
    BUCKET_USER_PREFIX,
    ENDUSER_ID,
)
from otel_bucket._values import coerce_attributes

__all__ = ["IDENTITY_KEY", "Identity", "current_identity", "identify"]

_log = logging.getLogger(__name__)

IDENTITY_KEY: Final = context.create_key("otel-bucket-identity")

_EMPTY: Final[Mapping[str, AttributeValue]] = MappingProxyType({})


@dataclass(frozen=True)
class Identity:
    """The user and company in effect; ``span_attributes`` is built once, for every span."""

    user_id: str | None
    company_id: str | None
    user_attributes: Mapping[str, AttributeValue]
    company_attributes: Mapping[str, AttributeValue]
    span_attributes: Mapping[str, AttributeValue]


def current_identity() -> Identity | None:
    """The identity set by the innermost active ``identify`` block, if any."""
    value = context.get_value(IDENTITY_KEY)
    return value if isinstance(value, Identity) else None


def _check_id(value: object, argument: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | UUID):
        raise TypeError(f"{argument} must be a str or an int, got {type(value).__name__}")
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
) -> Identity:
    """The identity in effect inside a block: an inner block refines the outer one."""
    if outer is not None:
        if user_id is None or user_id == outer.user_id:
            user_id = outer.user_id
            user_attributes = {**outer.user_attributes, **user_attributes}
        if company_id is None or company_id == outer.company_id:
            company_id = outer.company_id
            company_attributes = {**outer.company_attributes, **company_attributes}
    span: dict[str, AttributeValue] = {}
    if user_id is not None:
        span[ENDUSER_ID] = user_id
    if company_id is not None:
        span[BUCKET_COMPANY_ID] = company_id
    for key, value in user_attributes.items():
        span[BUCKET_USER_PREFIX + key] = value
    for key, value in company_attributes.items():
        span[BUCKET_COMPANY_PREFIX + key] = value
    return Identity(
        user_id,
        company_id,
        MappingProxyType(dict(user_attributes)) if user_attributes else _EMPTY,
        MappingProxyType(dict(company_attributes)) if company_attributes else _EMPTY,
        MappingProxyType(span),
    )


class _Identified:
    """The context manager ``identify`` returns; enter it once."""

    __slots__ = ("_company_attributes", "_company_id", "_token", "_user_attributes", "_user_id")

    def __init__(
        self,
        user_id: str | None,
        company_id: str | None,
        user_attributes: Mapping[str, AttributeValue],
        company_attributes: Mapping[str, AttributeValue],
    ) -> None:
        self._user_id = user_id
        self._company_id = company_id
        self._user_attributes = user_attributes
        self._company_attributes = company_attributes
        self._token: object = None

    def __enter__(self) -> None:
        if self._token is not None:
            raise RuntimeError("an identify() block cannot be entered twice; call identify() again")
        identity = _merge(
            current_identity(),
            self._user_id,
            self._company_id,
            self._user_attributes,
            self._company_attributes,
        )
        try:
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attributes(identity.span_attributes)
        except Exception:  # a broken span must not stop the request
            _log.warning("otel-bucket could not stamp the current span", exc_info=True)
        self._token = context.attach(context.set_value(IDENTITY_KEY, identity))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            context.detach(token)  # type: ignore[arg-type]  # the Token attach() gave us


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
    only for the same user.

    Args:
        user_id: the user's stable id (a string or an int; sent as a string).
        company_id: the company's stable id.
        user_attributes: attributes of the user call (values made sendable, never raised).
        company_attributes: attributes of the company call; ``id`` is not allowed as a key.

    Returns:
        A context manager; ``with identify(...):``.

    Raises:
        TypeError: an id is not a str or int, or attributes are not a mapping with string keys.
        ValueError: an id or attribute key is empty, or nothing at all was given.
    """
    user = _check_id(user_id, "user_id")
    company = _check_id(company_id, "company_id")
    user_attrs = coerce_attributes(user_attributes, argument="user_attributes")
    company_attrs = coerce_attributes(company_attributes, argument="company_attributes")
    if company_attributes is not None and "id" in company_attributes:
        raise ValueError("company_attributes must not contain 'id': pass company_id instead")
    if user is None and company is None and user_attributes is None and company_attributes is None:
        raise ValueError("identify() needs a user_id, a company_id or attributes")
    return _Identified(user, company, user_attrs, company_attrs)
