"""Every count of a call's fate: ``exporter.stats`` (``_stats``), the OpenTelemetry metrics
(``_metrics``) and the rate-limited log lines (``_report``).

The books take plain facts (a method, an outcome, a count, a delivery's answer); they never call
back into what reports to them. They import ``delivery`` (the answer and the pending call they
describe) and ``ground``; ``export`` imports them.
"""
