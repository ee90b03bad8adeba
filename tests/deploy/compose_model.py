"""docker-compose.yml as the deploy tests see it: parsed, interpolated from a .env, env per container."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.support import ROOT, env_file_entries

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

_VAR = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


class MissingVariable(LookupError):
    """A ``${NAME:?message}`` reference without a value, as compose would refuse it."""


def raw() -> dict[str, Any]:
    """The compose file parsed as YAML (anchors and merge keys resolved)."""
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def referenced_variables(text: str) -> dict[str, str | None]:
    """Every ``${NAME...}`` in ``text``: name → its operator (``:?``, ``:-``, ...) or None."""
    return {m.group("name"): m.group("op") for m in _VAR.finditer(text) if m.group("name")}


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's interpolation of ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}`` and ``$$``."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if name is None:
            return "$"
        current = variables.get(name)
        unset_or_empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and unset_or_empty:
            return str(arg)
        if op in (":?", "?") and unset_or_empty:
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return _VAR.sub(substitute, value)


@dataclass(frozen=True)
class Service:
    name: str
    spec: dict[str, Any]

    @property
    def env_files(self) -> list[Path]:
        entries = self.spec.get("env_file", [])
        entries = [entries] if isinstance(entries, str | dict) else entries
        return [ROOT / (e["path"] if isinstance(e, dict) else e) for e in entries]

    def environment(self) -> dict[str, str]:
        """What the container's environment holds: env files first, then ``environment:`` entries."""
        env: dict[str, str] = {}
        for path in self.env_files:
            env.update(env_file_entries(path))
        declared = self.spec.get("environment", {})
        if isinstance(declared, list):
            declared = dict(item.partition("=")[::2] for item in declared)
        env.update({k: str(v) for k, v in declared.items()})
        return env

    def healthcheck_target(self) -> str:
        """The URL or address the health check probes."""
        test = self.spec["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), test
        return str(test[-1])


def services(variables: dict[str, str]) -> dict[str, Service]:
    """The compose services, interpolated with ``variables``."""
    data = interpolate(raw(), variables)
    return {name: Service(name, spec) for name, spec in data["services"].items()}


def configs(variables: dict[str, str]) -> dict[str, Any]:
    """Top-level compose configs, interpolated."""
    return dict(interpolate(raw().get("configs", {}), variables))
