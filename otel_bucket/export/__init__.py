"""From spans to calls: ``BucketSpanExporter``, ``BucketSpanProcessor``, the mapping of spans to
calls, ``BucketCall`` and ``before_send``, deduplication and the exporter's books.

The layer that puts the others together: it imports ``books``, ``spool``, ``delivery``,
``instrument`` (the sampler's relevance test) and ``ground``. ``lifecycle``, ``bridge``, ``cli``
and the package root import it; nothing below it does.
"""
