"""The deployment docs stay true to the code: every setting and its default, every .env variable, links."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from builder.settings import BuilderSettings
from manager.settings import ManagerSettings
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from salesforce_sim.settings import SimSettings

from shared.settings import ServiceSettings
from tests.deploy.support import ROOT, env_file_entries

pytestmark = pytest.mark.unit

DOCS = ROOT / "docs"
SECTIONS: dict[str, type[ServiceSettings]] = {
    "Shared by every service": ServiceSettings,
    "Manager": ManagerSettings,
    "Builder": BuilderSettings,
    "Salesforce simulator": SimSettings,
}
# Shared settings whose default each service overrides; the shared table says so instead of a value.
PER_SERVICE = {"SERVICE_NAME", "MONGODB_DATABASE"}


def _tables(path: Path) -> dict[str, dict[str, str]]:
    """``## heading`` → {setting name → default cell} for rows of the form ``| `NAME` | default | ...``."""
    tables: dict[str, dict[str, str]] = {}
    heading = ""
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:].split(" (")[0].strip()
            tables[heading] = {}
        row = re.match(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", line)
        if row and heading:
            tables[heading][row.group(1)] = row.group(2).strip()
    return tables


def _expected(field: FieldInfo) -> str | None:
    """How the docs spell a field's default (None: computed at run time, any wording is fine)."""
    if field.default_factory is not None:
        return None
    value: Any = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "none"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def test_every_setting_is_documented_with_its_default() -> None:
    tables = _tables(DOCS / "configuration.md")
    shared = tables["Shared by every service"]
    for section, cls in SECTIONS.items():
        own = tables[section]
        for name, field in cls.model_fields.items():
            env = name.upper()
            cell = own.get(env)
            if cell is None:
                assert env in shared, f"{env} of {cls.__name__} is not in docs/configuration.md"
                inherited = ServiceSettings.model_fields.get(name)
                assert inherited is not None and _expected(inherited) == _expected(field), (
                    f"{env} of {cls.__name__} has its own default: give it a row under '## {section}'"
                )
                continue
            expected = _expected(field)
            if cls is ServiceSettings and env in PER_SERVICE:
                assert cell.startswith("per service"), f"{env}: each service documents its own default"
            elif expected is not None:
                assert cell.startswith(expected), (
                    f"{section}: {env} documented as {cell!r}, code says {expected}"
                )
        documented_extra = set(own) - {n.upper() for n in cls.model_fields}
        assert not documented_extra, f"{section} documents settings that do not exist: {documented_extra}"


def test_every_compose_variable_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    for name in env_file_entries(ROOT / ".env.example"):
        assert f"`{name}`" in text, f"{name} (.env.example) is not in docs/configuration.md"


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("doc", ["architecture.md", "configuration.md", "operations.md"])
def test_relative_links_point_at_existing_files_and_headings(doc: str) -> None:
    text = (DOCS / doc).read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (DOCS / doc) if not path else (DOCS / path)
        assert file.exists(), f"{doc} links to missing {target}"
        if anchor:
            headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), flags=re.M)}
            assert anchor in headings, f"{doc} links to missing heading {target}"
