"""``python -m otel_bucket``: the ``otel-bucket`` command."""

import sys

from otel_bucket.cli import main

sys.exit(main())
