"""otel-bucket: OpenTelemetry spans become Bucket product analytics."""

from otel_bucket.books._stats import ExporterStats
from otel_bucket.export._calls import BucketCall
from otel_bucket.export._exporter import BucketSpanExporter
from otel_bucket.export._processor import BucketSpanProcessor
from otel_bucket.ground._config import Settings
from otel_bucket.ground._conventions import (
    BUCKET_ATTRIBUTES_PREFIX,
    BUCKET_COMPANY_ID,
    BUCKET_COMPANY_PREFIX,
    BUCKET_EVENT,
    BUCKET_USER_PREFIX,
    ENDUSER_ID,
    USER_ID,
)
from otel_bucket.ground._version import VERSION
from otel_bucket.instrument._decorator import feature
from otel_bucket.instrument._identity import identify
from otel_bucket.instrument._track import set_event_attributes, track
from otel_bucket.lifecycle._install import install
from otel_bucket.lifecycle._lifecycle import flush

__version__ = VERSION  # from the installed metadata, see ground._version

__all__ = [
    "BUCKET_ATTRIBUTES_PREFIX",
    "BUCKET_COMPANY_ID",
    "BUCKET_COMPANY_PREFIX",
    "BUCKET_EVENT",
    "BUCKET_USER_PREFIX",
    "ENDUSER_ID",
    "USER_ID",
    "BucketCall",
    "BucketSpanExporter",
    "BucketSpanProcessor",
    "ExporterStats",
    "Settings",
    "__version__",
    "feature",
    "flush",
    "identify",
    "install",
    "set_event_attributes",
    "track",
]
