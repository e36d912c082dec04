"""Span attribute keys that otel-bucket reads (contract section 1)."""

from __future__ import annotations

from typing import Final

BUCKET_EVENT: Final = "bucket.event"
"""The event name: a span carrying it becomes an ``event`` call."""

BUCKET_ATTRIBUTES_PREFIX: Final = "bucket.attributes."
"""``bucket.attributes.<k>`` becomes ``attributes[k]`` of the event call."""

ENDUSER_ID: Final = "enduser.id"
"""The user id (OpenTelemetry semantic convention); ``userId`` of every call."""

USER_ID: Final = "user.id"
"""Fallback user id, read when ``enduser.id`` is absent."""

BUCKET_USER_PREFIX: Final = "bucket.user."
"""``bucket.user.<k>`` becomes ``attributes[k]`` of the user call."""

BUCKET_COMPANY_ID: Final = "bucket.company.id"
"""The company id: a span carrying it becomes a ``company`` call."""

BUCKET_COMPANY_PREFIX: Final = "bucket.company."
"""``bucket.company.<k>`` (k other than ``id``) becomes ``attributes[k]`` of the company call."""

BUCKET_ANONYMOUS: Final = "bucket.anonymous"
"""``True`` on a ``feature``/``track`` span started with no user in effect (not sent to Bucket).

The event of such a span cannot be sent (the API requires a user); the marker tells the exporter
that this is ordinary anonymous use, to be counted as dropped without a warning. It is only a
hint: a span that carries a user id at export is sent as usual, marker or not.
"""
