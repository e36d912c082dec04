"""The ground: small modules every layer stands on, and that import nothing of the package.

Settings and their resolution (``_config``), the clock, the attribute names of the conventions,
the fork hook, secret redaction, thread helpers, the log throttle, the version and the call model
(``_call``: ``Call``, ``utc_iso``, ``merge_calls``). A ground module imports only the standard
library, OpenTelemetry and other ground modules; every other package of ``otel_bucket`` may
import it.
"""
