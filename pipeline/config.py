"""The upstream config-file chain, so existing sites keep their files.

Read in this order, later files winning: the pipeline's embedded defaults,
``/etc/luigi/client.cfg``, ``/etc/luigi/luigi.cfg``, ``./client.cfg``, ``./luigi.cfg``,
``$LUIGI_CONFIG_PATH``, ``./override.cfg``, then each ``--additional-config`` file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from luigi.configuration import LuigiConfigParser

from pipeline.errors import InvalidInput

DEFAULTS_FILE = Path(__file__).with_name("defaults.cfg")
SYSTEM_FILES = ("/etc/luigi/client.cfg", "/etc/luigi/luigi.cfg", "client.cfg", "luigi.cfg")


class ConfigError(InvalidInput):
    """A config file or value that cannot be used, named in the message."""


def config_chain(additional: Iterable[str] = ()) -> list[str]:
    chain = [str(DEFAULTS_FILE), *SYSTEM_FILES]
    if os.environ.get("LUIGI_CONFIG_PATH"):
        chain.append(os.environ["LUIGI_CONFIG_PATH"])
    chain.append("override.cfg")
    for path in additional:
        if not os.path.isfile(path):
            raise ConfigError(f"--additional-config {path}: no such file")
        chain.append(path)
    return chain


def configure(additional: Iterable[str] = (), overrides: dict[str, dict[str, str]] | None = None):
    """(Re)load luigi's configuration from the chain; ``overrides`` win over every file.

    Returns the luigi config parser. Call before any task is instantiated.
    """
    LuigiConfigParser._config_paths = config_chain(additional)
    LuigiConfigParser._instance = None
    parser = LuigiConfigParser.instance()
    for section, values in (overrides or {}).items():
        if not parser.has_section(section):
            parser.add_section(section)
        for key, value in values.items():
            parser.set(section, key, str(value))
    return parser


def get(section: str, key: str, default: str | None = None) -> str | None:
    value = LuigiConfigParser.instance().get(section, key, default)
    return value if value not in ("", None) else default
