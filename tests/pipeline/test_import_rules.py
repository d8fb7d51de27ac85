"""The pipeline's import rules, read from the sources and seen in a fresh interpreter.

An analytics node installs the pipeline alone: nothing under pipeline/ may import Prefect or
the flows' packages. The engine core (pipeline/core/) is what the fork server preloads into
every worker: it imports no Luigi either.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "pipeline"
CORE = PIPELINE / "core"
NOT_IN_PIPELINE = {"prefect", "flows", "tasks", "blocks", "remote", "domain"}
NOT_IN_CORE = NOT_IN_PIPELINE | {"luigi"}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of everything ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the pipeline package itself
                found.add("pipeline")
            elif node.module:
                found.add(node.module.split(".")[0])
    return found


def sources(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def test_the_sources_are_there():
    names = {p.relative_to(PIPELINE).as_posix() for p in sources(PIPELINE)}
    assert {"core/engine.py", "core/extraction.py", "run.py", "launch.py"} <= names


@pytest.mark.parametrize("path", sources(PIPELINE), ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_pipeline_module_imports_prefect_or_the_flow_packages(path):
    assert not imported_packages(path) & NOT_IN_PIPELINE


@pytest.mark.parametrize("path", sources(CORE), ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_core_module_imports_luigi(path):
    assert not imported_packages(path) & NOT_IN_CORE


def test_the_rule_reader_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from luigi import Task\n    import prefect.flows\n")
    assert imported_packages(module) == {"luigi", "prefect"}


def loaded_after_importing(package: str) -> dict[str, list[str]]:
    """In a fresh interpreter: import every module of ``package``; which forbidden top-level
    packages are then loaded, and which modules were imported."""
    script = f"""
import json, pkgutil, sys, importlib
package = importlib.import_module({package!r})
names = [package.__name__] + [
    info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
]
for name in names:
    importlib.import_module(name)
roots = sorted({{m.split(".")[0] for m in sys.modules}})
print(json.dumps({{"modules": names, "roots": roots}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_importing_the_core_loads_neither_luigi_nor_prefect():
    seen = loaded_after_importing("pipeline.core")
    assert "pipeline.core.extraction" in seen["modules"]
    assert not set(seen["roots"]) & NOT_IN_CORE


def test_importing_all_of_the_pipeline_loads_no_prefect_nor_flow_packages():
    seen = loaded_after_importing("pipeline")
    assert {"pipeline.tasks", "pipeline.run", "pipeline.launch"} <= set(seen["modules"])
    assert "luigi" in seen["roots"]  # the check sees what was imported
    assert not set(seen["roots"]) & NOT_IN_PIPELINE
