"""One exception root (pipeline.errors.EdxOpsError) for every error the project defines, and
names that say their family: `...Timeout` is an OperationTimeout, `...Refused` a Refused,
`...NotFound` a NotFound."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from pipeline.errors import EdxOpsError, NotFound, OperationTimeout, Refused

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "tasks", "blocks", "domain", "remote", "pipeline_config", "pipeline")
FAMILY_BY_SUFFIX = {"Timeout": OperationTimeout, "Refused": Refused, "NotFound": NotFound}


def defined_exceptions() -> list[type[BaseException]]:
    """Every exception class defined (not imported) in a module of the production packages."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            module = importlib.import_module(".".join(parts))
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                    found.append(cls)
    return found


EXCEPTIONS = defined_exceptions()


def test_the_production_packages_define_errors_to_check():
    # a walk that found nothing would make the tests below pass vacuously
    assert len(EXCEPTIONS) >= 30


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_error_derives_from_the_root(cls):
    assert issubclass(cls, EdxOpsError), f"{cls.__module__}.{cls.__name__}: {cls.__mro__}"


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_a_family_suffix_means_that_family(cls):
    for suffix, family in FAMILY_BY_SUFFIX.items():
        if cls.__name__.endswith(suffix):
            assert issubclass(cls, family), f"{cls.__name__} is not a {family.__name__}"
