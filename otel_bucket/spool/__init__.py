"""The durable tier: the SQLite spool file (``_spool_db``, ``_spool``), its rows (``_spool_queue``),
the paths of its files (``_spool_paths``), what a file holds (``_spool_info``), the sweep of
abandoned files, its log lines, and the exporter's use of it (``_spooling``).

It imports ``delivery`` (``_spooling`` keeps pending calls) and ``ground``. ``export`` (the
exporter and its settings), ``cli`` (``otel-bucket spool``) import it; ``delivery`` does not.
"""
