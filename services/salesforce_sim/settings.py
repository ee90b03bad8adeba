"""Simulator settings (SIM_HOST, SIM_PORT, SIM_CONFIG) read once from the environment."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class SimSettings(ServiceSettings):
    service_name: str = "salesforce-sim"
    sim_host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    sim_port: int = Field(default=8090, ge=0, le=65535, description="Port to listen on.")
    sim_config: str | None = Field(
        default=None, description="Path to a JSON/YAML state file (defaults built in)."
    )
