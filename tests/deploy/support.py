"""Helpers shared by the deploy tests: repository paths, the lock file's dependency graph, settings names."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

PINNED_SHARED = {
    "SERVICE_NAME",
    "AMQP_URL",
    "MONGODB_URL",
    "MONGODB_DATABASE",
    "LOG_LEVEL",
    "LOG_JSON",
    "AMQP_PREFIX",
}


def canonical(name: str) -> str:
    """A package name as the lock file and PEP 503 compare them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    """The distribution name of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert match, f"not a requirement: {spec!r}"
    return canonical(match.group(1))


def pyproject() -> dict[str, Any]:
    """The parsed pyproject.toml."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def lock_packages() -> dict[str, dict[str, Any]]:
    """uv.lock packages by canonical name."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {canonical(p["name"]): p for p in lock["package"]}


def runtime_closure(root: str = "sfconnect") -> set[str]:
    """Every package the locked project needs at run time: its dependencies (with extras), no groups."""
    packages = lock_packages()
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(canonical(root), ())]
    while todo:
        name, extras = todo.pop()
        package = packages[name]
        deps: list[dict[str, Any]] = list(package.get("dependencies", []))
        for extra in extras:
            deps.extend(package.get("optional-dependencies", {}).get(extra, []))
        for dep in deps:
            dep_name = canonical(dep["name"])
            key = dep_name + "[" + ",".join(dep.get("extra", [])) + "]"
            if key in seen:
                continue
            seen.add(key)
            todo.append((dep_name, tuple(dep.get("extra", []))))
    return {key.partition("[")[0] for key in seen}


def dev_group_names() -> set[str]:
    """Direct members of every dependency group (dev tools) in pyproject.toml."""
    groups: dict[str, list[str]] = pyproject().get("dependency-groups", {})
    return {requirement_name(spec) for specs in groups.values() for spec in specs if isinstance(spec, str)}


def env_file_entries(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of an env file (comments and blank lines skipped; no interpolation)."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number} is not NAME=value"
        name = name.strip().removeprefix("export ").strip()
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{path.name}:{number}: bad variable name {name!r}"
        assert name not in entries, f"{path.name}:{number}: {name} is set twice"
        entries[name] = value.strip()
    return entries


def upper(names: Iterable[str]) -> set[str]:
    """Environment variable spelling of settings field names."""
    return {n.upper() for n in names}
