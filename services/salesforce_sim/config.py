"""Loading the simulator's state file (JSON or YAML) and the built-in default state."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .model import OrgConfig, PermissionSetConfig, SimConfig, UserConfig
from .state import SimState


def default_config() -> SimConfig:
    """Two orgs: ``acme`` (production) and ``globex`` (sandbox), with awkward usernames on purpose."""
    return SimConfig(
        orgs=[
            OrgConfig(
                key="acme",
                name="Acme Corporation",
                users=[
                    UserConfig(
                        username="admin@acme.example", name="Ada Admin", profile="System Administrator"
                    ),
                    UserConfig(
                        username="integration+bot@acme.example", name="Integration Bot", api_only=True
                    ),
                    UserConfig(username="o'brien&co+sales@acme.example", name="Pat O'Brien"),
                    UserConfig(username="former.employee@acme.example", name="Former Employee", active=False),
                ],
                permission_sets=[PermissionSetConfig(name="Sales_Ops", label="Sales Ops")],
            ),
            OrgConfig(
                key="globex",
                name="Globex (sandbox)",
                sandbox=True,
                users=[
                    UserConfig(
                        username="admin@globex.example.dev", name="Gia Admin", profile="System Administrator"
                    ),
                    UserConfig(username="etl+nightly@globex.example.dev", name="Nightly ETL", api_only=True),
                ],
            ),
        ]
    )


def load_config(path: str | Path) -> SimConfig:
    """Read a state file; ``.json`` is JSON, anything else is parsed as YAML (a superset of JSON)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    return SimConfig.model_validate(data or {})


def build_state(source: SimState | SimConfig | Mapping[str, Any] | str | Path | None = None) -> SimState:
    """A state from whatever the caller has: nothing (defaults), a config, a dict, a file path, a state."""
    if isinstance(source, SimState):
        return source
    if source is None:
        return SimState(default_config())
    if isinstance(source, SimConfig):
        return SimState(source)
    if isinstance(source, Mapping):
        return SimState(SimConfig.model_validate(dict(source)))
    return SimState(load_config(source))
