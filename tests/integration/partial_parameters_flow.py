"""A flow deployed by tests/integration/test_deployment_e2e.py: it completes its model parameters
from its deployment exactly as the project's flows do, and writes what it got to a file."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from pydantic import BaseModel, Field

from flows.analytics_stack import AnalyticsServer
from tasks.parameters import fill_from_deployment


class Limits(BaseModel):
    """A nested model, as OverrideSettings.event_logs."""

    retries: int = Field(default=1, description="A default the deployment changes.")
    label: str = Field(default="model", description="Another one.")


class Settings(BaseModel):
    """A model parameter with a nested one."""

    name: str = Field(default="model", description="Given by the run in the test.")
    size: int = Field(default=10, description="Left to the deployment's value.")
    limits: Limits = Field(default_factory=Limits, description="Given in part.")


@flow(name="echo-completed-parameters")
def echo_completed_parameters(server: AnalyticsServer, settings: Settings, out: str) -> None:
    """Write the completed parameters to `out` as JSON."""
    server, settings = fill_from_deployment(server=server, settings=settings)
    completed = {"server": server.model_dump(mode="json"), "settings": settings.model_dump()}
    Path(out).write_text(json.dumps(completed))
