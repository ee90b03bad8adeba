#!/usr/bin/env python3
"""Container health check: exit 0 when a URL answers 2xx (or a TCP port accepts), else 1.

Usage: ``sfconnect-healthcheck http://127.0.0.1:8080/healthz`` or ``sfconnect-healthcheck --tcp 127.0.0.1:8090``.
Standard library only, so it runs in the slim runtime image that has no curl or wget.
"""

from __future__ import annotations

import argparse
import socket
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit


def check_http(url: str, timeout: float) -> tuple[bool, str]:
    """True when ``url`` answers with a 2xx status within ``timeout`` seconds."""
    if urlsplit(url).scheme not in ("http", "https"):
        return False, f"not an http(s) URL: {url}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url} unreachable: {exc}"
    return 200 <= status < 300, f"{url} answered {status}"


def check_tcp(address: str, timeout: float) -> tuple[bool, str]:
    """True when ``host:port`` accepts a TCP connection within ``timeout`` seconds."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True, f"{address} accepts connections"
    except (OSError, ValueError) as exc:
        return False, f"{address} refused: {exc}"


def main(argv: list[str] | None = None) -> int:
    """Run one check and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("url", nargs="?", help="URL that must answer 2xx")
    target.add_argument("--tcp", metavar="HOST:PORT", help="address that must accept a TCP connection")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    ok, detail = check_tcp(args.tcp, args.timeout) if args.tcp else check_http(args.url, args.timeout)
    print(detail, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
