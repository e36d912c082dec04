"""The process around the exporter: ``install()``, ``flush()``, signal handlers, drains at every
end a process can have (``atexit``, multiprocessing and Celery children), reloaders' children.

It imports ``export``, ``instrument`` and ``ground``; the package root imports it (``install``,
``flush``). It registers the processors' drains: the processor knows nothing of process ends.
"""
