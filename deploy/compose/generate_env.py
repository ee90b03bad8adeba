"""Write a compose ``.env`` from ``.env.example`` with every ``CHANGE_ME`` replaced by fresh key material.

Usage (from the repository, after ``make install``)::

    .venv/bin/python deploy/compose/generate_env.py --output .env

Keys come from the project's own helpers (``shared.crypto.generate_key``,
``shared.sealing.generate_recipient_key``), so they have exactly the format the services validate. An
existing output file is kept unless ``--force`` is given: regenerating keys makes stored data unreadable.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from shared.crypto import generate_key
from shared.sealing import generate_recipient_key

PLACEHOLDER = "CHANGE_ME"
ROOT = Path(__file__).resolve().parents[2]
_LINE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def _kid(value: str, default: str) -> str:
    kid, sep, _ = value.partition(":")
    return kid if sep and kid else default


class _Generated:
    """Values for each placeholder; the recipient pair is made once so both halves match."""

    def __init__(self) -> None:
        self._pairs: dict[str, tuple[str, str]] = {}

    def _pair(self, kid: str) -> tuple[str, str]:
        if kid not in self._pairs:
            self._pairs[kid] = generate_recipient_key(kid)
        return self._pairs[kid]

    def value(self, name: str, placeholder: str) -> str:
        makers: dict[str, Callable[[], str]] = {
            "RABBITMQ_PASSWORD": lambda: secrets.token_urlsafe(24),
            "MANAGER_ENCRYPTION_KEYS": lambda: f"{_kid(placeholder, 'k1')}:{generate_key()}",
            "BUILDER_ENCRYPTION_KEYS": lambda: f"{_kid(placeholder, 'k1')}:{generate_key()}",
            "RECIPIENT_PRIVATE_KEYS": lambda: self._pair(_kid(placeholder, "m1"))[0],
            "RECIPIENT_PUBLIC_KEYS": lambda: self._pair(_kid(placeholder, "m1"))[1],
            "ADMIN_API_KEY": lambda: secrets.token_urlsafe(32),
            "SALESFORCE_CLIENT_SECRET": lambda: secrets.token_urlsafe(32),
        }
        if name not in makers:
            raise SystemExit(f"{name} has a {PLACEHOLDER} placeholder but no generator: add one here")
        return makers[name]()


def render(template: str) -> str:
    """The template with each ``CHANGE_ME`` value replaced; comments and other lines kept as they are."""
    generated = _Generated()
    lines = []
    for line in template.splitlines():
        match = _LINE.match(line)
        if match and PLACEHOLDER in match.group("value"):
            line = f"{match.group('name')}={generated.value(match.group('name'), match.group('value'))}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the rendered file (mode 0600) or print it; returns the exit status."""
    parser = argparse.ArgumentParser(description="Generate a compose .env with fresh keys.")
    parser.add_argument("--template", type=Path, default=ROOT / ".env.example")
    parser.add_argument("--output", type=Path, help="file to write (default: print to stdout)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    args = parser.parse_args(argv)
    text = render(args.template.read_text())
    if args.output is None:
        sys.stdout.write(text)
        return 0
    if args.output.exists() and not args.force:
        print(f"{args.output} exists: keeping it (its keys may already protect data; --force replaces it)")
        return 0
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    print(f"wrote {args.output} with fresh keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
