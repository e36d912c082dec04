"""What application code calls: ``feature``, ``track``, ``identify``, event spans, value coercion,
attribute limits, the sampler and the middleware core the integrations share.

It makes spans and nothing else: it knows nothing of calls, delivery or the spool. It imports only
``ground``; ``export`` (the sampler's relevance test), ``lifecycle`` (``install``), the
integrations (``wsgi``, ``asgi``, ``django``, ``celery``), ``bridge`` and the package root
import it.
"""
