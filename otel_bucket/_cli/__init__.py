"""Subcommands of the ``otel-bucket`` command that live apart from ``cli.py``."""
