"""The pipeline distribution as a pure-Python wheel, for nodes that install a file (EMR).

`pipeline_wheel()` packs the same source files as `remote.setup.project_archive` (the
`pipeline` package and its config files, never the orchestrator's packages) with the metadata
of `pyproject.toml` (name, version, Python, dependencies, optional extras, the `launch-task`
script). Pure Python (`py3-none-any`): a cluster's nodes may run another Python than this
machine, so the optional C fast path is not in it, and executors take the Python path (the run
summary says so). Deterministic: the same sources give the same bytes (fixed timestamps),
so the S3 upload of an unchanged wheel is the same object.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from remote.setup import PROJECT_PACKAGES, PROJECT_ROOT, project_source_files

#: Zip entries' time: the earliest a zip can hold, as reproducible builds use.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_TAG = "py3-none-any"


@dataclass(frozen=True)
class Wheel:
    """A built wheel: its file name (PEP 427) and its bytes."""

    filename: str
    data: bytes


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name)


def _metadata(project: dict) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
    ]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {dependency}" for dependency in project.get("dependencies", [])]
    for extra, dependencies in sorted(project.get("optional-dependencies", {}).items()):
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {dependency}; extra == "{extra}"' for dependency in dependencies]
    return "\n".join(lines) + "\n"


def _entry_points(project: dict) -> str:
    scripts = project.get("scripts", {})
    body = "".join(f"{name} = {target}\n" for name, target in sorted(scripts.items()))
    return f"[console_scripts]\n{body}" if body else ""


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def pipeline_wheel(root: Path = PROJECT_ROOT) -> Wheel:
    """The pipeline distribution of the checkout at `root` as a wheel.

    Raises:
        InvalidInput: no `pyproject.toml` at `root` (not a checkout).
    """
    from pipeline.errors import InvalidInput

    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        raise InvalidInput(f"no pyproject.toml at {root}: build the wheel from a checkout")
    project = tomllib.loads(pyproject.read_text())["project"]
    name, version = _normalized(project["name"]), project["version"]
    dist_info = f"{name}-{version}.dist-info"
    files: list[tuple[str, bytes]] = []
    for path in project_source_files(root):
        relative = path.relative_to(root).as_posix()
        if relative.split("/")[0] in PROJECT_PACKAGES and path.suffix != ".c":
            files.append((relative, path.read_bytes()))
    files.append((f"{dist_info}/METADATA", _metadata(project).encode()))
    files.append(
        (
            f"{dist_info}/WHEEL",
            (
                "Wheel-Version: 1.0\nGenerator: edx-ops-flows remote.wheel\n"
                f"Root-Is-Purelib: true\nTag: {_TAG}\n"
            ).encode(),
        )
    )
    entry_points = _entry_points(project)
    if entry_points:
        files.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files)
    files.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in files:
            info = zipfile.ZipInfo(path, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return Wheel(f"{name}-{version}-{_TAG}.whl", buffer.getvalue())
