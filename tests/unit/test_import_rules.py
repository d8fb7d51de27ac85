"""The layering of the orchestrator's packages, read from the sources (nothing is imported).

- A flow imports no other flow: what two flows share lives in tasks/ or domain/.
- Nothing below the flows (tasks, domain, remote, blocks, pipeline_config) imports a flow.
- domain/, remote/ and pipeline_config/ are Prefect-free: `remote-task` and the renderers run
  without a Prefect server, and domain logic is tested without one.
- domain/ is pure: no openstacksdk, and neither tasks/ nor blocks/ (they import domain/).

Every import counts wherever it stands (in a function, under `if TYPE_CHECKING:`), and so does
`importlib.import_module("...")` with a literal name. pipeline/'s own rules are
tests/pipeline/test_import_rules.py's.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: (packages whose modules are checked, top-level names they must not import, why)
RULES = [
    (("tasks", "domain", "remote", "blocks", "pipeline_config"), ("flows",), "flows are the top"),
    (("domain", "remote", "pipeline_config"), ("prefect", "prefect_aws"), "Prefect-free"),
    (("domain",), ("openstack", "paramiko", "remote", "tasks", "blocks"), "domain logic is pure"),
]


@dataclass(frozen=True)
class Import:
    """One imported module, as its absolute dotted name, and where a source file names it."""

    where: str
    module: str

    def __str__(self) -> str:
        return f"{self.where} imports {self.module}"


def module_name(path: Path, root: Path = REPO) -> str:
    """`flows/backup.py` -> `flows.backup`; a package's `__init__.py` -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(module: str, level: int, importer: str, is_package: bool) -> str:
    """The absolute name of `from <level dots><module> import ...` written in `importer`."""
    if not level:
        return module
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    if level - 1 > len(package) - 1 or not base:
        raise ValueError(f"{importer}: relative import beyond its top-level package")
    return ".".join([*base, module] if module else base)


def imports_of(path: Path, root: Path = REPO) -> list[Import]:
    """Every module `path` imports: `import a.b` gives a.b, `from a import b` gives a.b."""
    importer = module_name(path, root)
    is_package = path.name == "__init__.py"
    relative = path.relative_to(root)
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        where = f"{relative}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [Import(where, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module or "", node.level, importer, is_package)
            # `from a import b` may take a submodule b or a name defined in a: both depend on a
            found += [Import(where, f"{base}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(where, node.args[0].value))
    return found


def sources(package: str, root: Path = REPO) -> list[Path]:
    """The package's modules; failing when there are none (a rule over nothing checks nothing)."""
    paths = sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)
    if not paths:
        pytest.fail(f"no Python modules under {root / package}: was the package renamed?")
    return paths


def top(module: str) -> str:
    return module.split(".")[0]


def flow_imports_of_flows(root: Path = REPO) -> list[Import]:
    """Imports of a flows module by another (or by the package's own __init__)."""
    offending = []
    for path in sources("flows", root):
        own = module_name(path, root)
        offending += [
            found
            for found in imports_of(path, root)
            if top(found.module) == "flows" and found.module != own
        ]
    return offending


def forbidden_imports(packages, forbidden, root: Path = REPO) -> list[Import]:
    """Imports, by modules of `packages`, of modules under the top-level names `forbidden`."""
    return [
        found
        for package in packages
        for path in sources(package, root)
        for found in imports_of(path, root)
        if top(found.module) in forbidden
    ]


# -- the rules, on this repository -------------------------------------------------------------


def test_no_flow_imports_another_flow():
    assert [str(found) for found in flow_imports_of_flows()] == []


@pytest.mark.parametrize(
    ("packages", "forbidden"), [rule[:2] for rule in RULES], ids=[rule[2] for rule in RULES]
)
def test_packages_do_not_import(packages, forbidden):
    assert [str(found) for found in forbidden_imports(packages, forbidden)] == []


# -- the checker finds what it must ---------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_every_way_of_importing_a_flow_is_found(tmp_path):
    root = write(
        tmp_path,
        {
            "flows/__init__.py": "",
            "flows/a.py": "import flows.b\n",
            "flows/b.py": "from flows import c\n",
            "flows/c.py": "from . import d\nfrom .e import thing\n",
            "flows/d.py": "def f():\n    from flows.sub.x import y\n",
            "flows/e.py": "import importlib\nimportlib.import_module('flows.a')\n",
            "flows/sub/__init__.py": "from .. import a\n",
            "flows/sub/x.py": "from ..b import z\nimport prefect\nfrom tasks import ssh\n",
        },
    )
    assert sorted(found.module for found in flow_imports_of_flows(root)) == [
        "flows.a", "flows.a", "flows.b", "flows.b.z", "flows.c", "flows.d", "flows.e.thing",
        "flows.sub.x.y",
    ]  # fmt: skip


def test_a_forbidden_import_is_found_in_a_function_or_under_type_checking(tmp_path):
    root = write(
        tmp_path,
        {
            "domain/__init__.py": "",
            "domain/plan.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from openstack.connection import Connection\n"
                "def f():\n    import prefect.runtime\n    from ..tasks import ssh\n"
                "import domain.names, prefect_aws\nimport openstackx\n"
            ),
        },
    )
    with pytest.raises(ValueError, match="beyond its top-level package"):
        forbidden_imports(["domain"], ["tasks"], root)
    (root / "domain" / "plan.py").write_text(
        (root / "domain" / "plan.py").read_text().replace("from ..tasks", "from tasks")
    )
    found = forbidden_imports(["domain"], ["openstack", "prefect", "prefect_aws", "tasks"], root)
    assert sorted(str(one) for one in found) == [
        "domain/plan.py:3 imports openstack.connection.Connection",
        "domain/plan.py:5 imports prefect.runtime", "domain/plan.py:6 imports tasks.ssh",
        "domain/plan.py:7 imports prefect_aws",
    ]  # fmt: skip


def test_a_package_without_modules_fails_the_rule(tmp_path):
    (tmp_path / "domain").mkdir()
    with pytest.raises(pytest.fail.Exception, match="no Python modules under"):
        forbidden_imports(["domain"], ["flows"], tmp_path)
