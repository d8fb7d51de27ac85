"""The upstream config-file chain, so existing sites keep their files.

Read in this order, later files winning: the pipeline's embedded defaults,
``/etc/luigi/client.cfg``, ``/etc/luigi/luigi.cfg``, ``./client.cfg``, ``./luigi.cfg``,
``$LUIGI_CONFIG_PATH``, ``./override.cfg``, then each ``--additional-config`` file.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterable, Iterator
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


def load(additional: Iterable[str] = (), overrides: dict[str, dict[str, str]] | None = None):
    """A new config parser read from the chain; ``overrides`` win over every file.

    The parser is private to its caller: nothing reads it until it is made the process's
    (:func:`configure`) or bound to a context (:func:`using`).
    """
    parser = LuigiConfigParser()
    parser.read(config_chain(additional))
    for section, values in (overrides or {}).items():
        if not parser.has_section(section):
            parser.add_section(section)
        for key, value in values.items():
            parser.set(section, key, str(value))
    return parser


class _ConfigRouter:
    """What Luigi finds as its config singleton: the parser bound to the current context by
    :func:`using`, else the process's.

    Luigi reads its configuration through one process-wide singleton
    (``LuigiConfigParser.instance()``), from task parameters, its scheduler and its worker.
    Routing that singleton through a context variable lets two pipeline runs in one process
    (threads of a Prefect ``serve()``) each see their own settings. Context variables follow
    the code that reads them: the thread that runs ``luigi.build`` (a local-scheduler build
    with one worker schedules and runs every task in that thread) and the children it forks.
    """

    def __init__(self, process_parser):
        self.process_parser = process_parser

    def current(self):
        return _bound.get() or self.process_parser

    def __getattr__(self, name):
        return getattr(self.current(), name)

    def __getitem__(self, section):
        return self.current()[section]

    def __contains__(self, section) -> bool:
        return section in self.current()

    def __iter__(self):
        return iter(self.current())


_bound: contextvars.ContextVar = contextvars.ContextVar("pipeline_config", default=None)


def _router() -> _ConfigRouter:
    if not isinstance(LuigiConfigParser._instance, _ConfigRouter):
        # Luigi reads its own files once, at import; keep that parser as the process's until
        # configure() replaces it.
        LuigiConfigParser._instance = _ConfigRouter(LuigiConfigParser.instance())
    return LuigiConfigParser._instance


_router()


def configure(additional: Iterable[str] = (), overrides: dict[str, dict[str, str]] | None = None):
    """Make the chain (plus ``overrides``) the whole process's configuration: launch-task's,
    which owns its process. Runs in a shared process bind theirs with :func:`using` instead.

    Returns the luigi config parser. Call before any task is instantiated.
    """
    parser = load(additional, overrides)
    LuigiConfigParser._config_paths = config_chain(additional)  # what luigi's reload() reads
    _router().process_parser = parser
    return parser


@contextlib.contextmanager
def using(parser) -> Iterator[None]:
    """Luigi and :func:`get` read ``parser`` inside this block, in this context only."""
    _router()
    token = _bound.set(parser)
    try:
        yield
    finally:
        _bound.reset(token)


def get(section: str, key: str, default: str | None = None) -> str | None:
    value = _router().current().get(section, key, default)
    return value if value not in ("", None) else default
