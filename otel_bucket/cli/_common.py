"""What every ``otel-bucket`` subcommand shares: the program's name, its output, argument types."""

from __future__ import annotations

import argparse
import ipaddress

__all__ = ["PROG", "is_loopback", "parse_key", "parse_port", "say"]

PROG = "otel-bucket"


def say(line: str = "") -> None:
    print(line, flush=True)


def parse_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 0 to 65535, got {port}")
    return port


def parse_key(text: str) -> str:
    if not text.strip() or "/" in text:
        raise argparse.ArgumentTypeError(f"not a tracking key: {text!r}")
    return text


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
