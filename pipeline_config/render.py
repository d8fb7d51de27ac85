"""Render the pipeline's ``override.cfg`` from typed, validated settings.

The seed copied ``devstack.cfg`` and edited it by hand in vim. Here a flow fills
:class:`OverrideSettings` (unknown keys are refused, locations and the Elasticsearch URL are
checked), and :func:`render_override_cfg` produces text that ``pipeline.config`` reads back
exactly as given. Database credentials are referenced by file path only: the settings have no
field that could hold a password.

Example:
    ```python
    from pipeline_config.render import render_override_cfg

    text = render_override_cfg({
        "elasticsearch_host": "http://192.168.122.111:9201/",
        "event_logs": {"source": ["s3://acme-tracking-logs/logs/"]},
        "warehouse_path": "s3://acme-analytics/warehouse/",
        "database_export": {"database": "reports",
                            "credentials": "/edx/etc/edx-analytics-pipeline/output.json"},
    })
    ```
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.core import fs, selection
from pipeline_config.fields import NonEmptyStr

TEMPLATE_FILE = Path(__file__).with_name("override.cfg.template")

#: The pipeline's own default patterns (pipeline/defaults.cfg): daily rotated tracking logs.
DEFAULT_PATTERNS = selection.DEFAULT_PATTERNS

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _plain_value(value: str, what: str) -> str:
    """A value a config line can hold: one line, no edge blanks, no luigi ``${ENV}`` syntax.

    ConfigParser would strip edge blanks and read a newline as a continuation line (a way to
    inject settings); luigi expands ``${NAME}`` from the environment with no way to escape it.
    """
    if _CONTROL.search(value):
        raise ValueError(f"{what}: control characters or line breaks are not allowed")
    if value != value.strip():
        raise ValueError(f"{what}: leading or trailing blanks are not allowed")
    if "${" in value:
        raise ValueError(f"{what}: '${{' would be expanded from the environment by luigi")
    return value


def _location(value: str, what: str) -> str:
    """A place the pipeline can read or write: a local path, ``file://`` or ``s3://``."""
    _plain_value(value, what)
    try:
        fs.check_supported(value)
    except fs.StorageError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return value


def _credentials_path(value: str, what: str) -> str:
    """The path of a credentials file on the analytics node, never the credentials themselves."""
    _plain_value(value, what)
    if value.startswith("{"):
        raise ValueError(
            f"{what}: expected the path of a JSON credentials file, not the credentials"
        )
    if not posixpath.isabs(value) or posixpath.normpath(value) != value:
        raise ValueError(f"{what}: expected an absolute, normalised path, got {value!r}")
    return value


class _Strict(BaseModel):
    # Unknown keys are typos or settings this renderer would silently drop: refuse them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventLogs(_Strict):
    """``[event-logs]``: which tracking logs the pipeline reads."""

    source: list[NonEmptyStr] = Field(
        min_length=1,
        description="Directories or s3:// prefixes holding tracking logs, searched recursively.",
    )
    pattern: list[NonEmptyStr] = Field(
        default=list(DEFAULT_PATTERNS),
        min_length=1,
        description="Regular expressions on full paths; a `(?P<date>...)` group selects by date.",
    )
    expand_interval: NonEmptyStr = Field(
        default="2 days", description="How far beyond the interval to look for its events."
    )

    @field_validator("source")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        return [_location(item, f"event_logs.source {item!r}") for item in value]

    @field_validator("pattern")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for item in value:
            _plain_value(item, f"event_logs.pattern {item!r}")
        try:
            selection.compile_patterns(value)
        except (selection.SelectionError, re.error) as exc:
            raise ValueError(f"event_logs.pattern: {exc}") from None
        return value

    @field_validator("expand_interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        try:
            selection.parse_expand_interval(value)
        except selection.SelectionError as exc:
            raise ValueError(str(exc)) from None
        return _plain_value(value, "event_logs.expand_interval")


class DatabaseSettings(_Strict):
    """``[database-export]`` / ``[database-import]``: a database name and its credentials file."""

    database: NonEmptyStr = Field(
        description="Schema name (MySQL) or SQLite file without credentials."
    )
    credentials: NonEmptyStr | None = Field(
        default=None,
        description="Absolute path of the JSON credentials file on the analytics node; "
        "None: SQLite.",
    )

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        return _plain_value(value, "database")

    @field_validator("credentials")
    @classmethod
    def _credentials(cls, value: str | None) -> str | None:
        return None if value is None else _credentials_path(value, "credentials")


class OverrideSettings(_Strict):
    """Everything ``override.cfg.template`` needs; every other setting keeps its default."""

    elasticsearch_host: NonEmptyStr = Field(
        description="Elasticsearch URL for ``[elasticsearch] host``, e.g. "
        "http://192.168.122.111:9201/."
    )
    event_logs: EventLogs = Field(description="``[event-logs]``: which tracking logs to read.")
    warehouse_path: NonEmptyStr = Field(
        description="``[hive] warehouse_path``: intermediate tables (local path or s3://)."
    )
    engine: Literal["local", "hadoop", "emu", "spark"] = Field(
        default="local",
        description="``[map-reduce] engine``: local, hadoop and emu run on the local engine; "
        "spark on Spark (the pipeline's spark extra and a ``[spark]`` section).",
    )
    database_export: DatabaseSettings = Field(
        default=DatabaseSettings(database="reports"),
        description="The result database the pipeline writes.",
    )
    database_import: DatabaseSettings = Field(
        default=DatabaseSettings(database="edxapp"),
        description="The LMS database the pipeline reads (read only).",
    )

    @field_validator("elasticsearch_host")
    @classmethod
    def _elasticsearch(cls, value: str) -> str:
        _plain_value(value, "elasticsearch_host")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ValueError(f"elasticsearch_host {value!r}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"elasticsearch_host {value!r}: expected an http:// or https:// URL with a host"
            )
        if parts.username or parts.password:
            raise ValueError("elasticsearch_host: credentials do not belong in the URL")
        return value

    @field_validator("warehouse_path")
    @classmethod
    def _warehouse(cls, value: str) -> str:
        return _location(value, f"warehouse_path {value!r}")


def _cfg(value: str) -> str:
    # Luigi's parser applies ConfigParser's %-interpolation: a literal % is written %%.
    return value.replace("%", "%%")


def _cfg_list(values: list[str]) -> str:
    # Luigi ListParameters are JSON lists, as upstream's config files write them.
    return _cfg(json.dumps(values))


def render_override_cfg(settings: OverrideSettings | Mapping[str, Any]) -> str:
    """Render ``override.cfg`` from settings (a model, or a mapping validated into one).

    Raises pydantic's ``ValidationError`` (a ``ValueError``) naming each bad or unknown key.

    Example:
        >>> text = render_override_cfg({
        ...     "elasticsearch_host": "http://192.168.122.111:9201/",
        ...     "event_logs": {"source": ["/edx/var/log/tracking/"]},
        ...     "warehouse_path": "/edx/var/analytics/warehouse/",
        ... })
        >>> "[elasticsearch]\\nhost = http://192.168.122.111:9201/" in text
        True
    """
    if not isinstance(settings, OverrideSettings):
        settings = OverrideSettings.model_validate(settings)
    values = {
        "elasticsearch_host": _cfg(settings.elasticsearch_host),
        "event_logs_source": _cfg_list(settings.event_logs.source),
        "event_logs_pattern": _cfg_list(settings.event_logs.pattern),
        "event_logs_expand_interval": _cfg(settings.event_logs.expand_interval),
        "warehouse_path": _cfg(settings.warehouse_path),
        "engine": settings.engine,
    }
    for name in ("database_export", "database_import"):
        database: DatabaseSettings = getattr(settings, name)
        values[f"{name}_database"] = _cfg(database.database)
        values[f"{name}_credentials"] = _cfg(database.credentials or "")
    # substitute() fails on a placeholder without a value, so template and code stay in step.
    text = Template(TEMPLATE_FILE.read_text()).substitute(values)
    # "credentials = " with nothing after it would end in a blank; keep lines clean.
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
