"""The pipeline's virtualenv on a node, and files put there: Prefect-free, shared by the
`setup-analytics-host` and `run-remote-pipeline` flows (through tasks.host_setup) and by the
`remote-task` command line.

Every step looks first and changes only what differs, returning a `StepResult` whose status is
`ok` (nothing to do) or `changed`; a second run of a successful setup is all `ok`.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import shlex
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paramiko
from pydantic import BaseModel, Field, field_validator, model_validator

from pipeline.errors import InvalidInput
from pipeline_config.fields import NonEmptyStr
from remote.ssh import Connector, open_session

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: What a node gets: the source of the pipeline distribution (pyproject.toml's packages), not
#: the orchestrator's packages, which stay on the machine running the flows.
PROJECT_FILES = ("pyproject.toml", "README.md")
PROJECT_PACKAGES = ("pipeline",)
_SOURCE_SUFFIXES = (".py", ".cfg", ".c")
#: Marker in the virtualenv recording what was installed into it.
MARKER = ".edx-ops-flows-installed"


@dataclass(frozen=True)
class StepResult:
    """One step on one host: `ok` (already as wanted) or `changed` (made so now)."""

    step: str
    host: str
    status: Literal["ok", "changed"]
    detail: str = ""


class PipelineSetup(BaseModel):
    """The pipeline's virtualenv on the node, laid out as remote-task does."""

    enabled: bool = Field(default=True, description="Install or check the virtualenv.")
    base_dir: NonEmptyStr = Field(
        default="/var/lib/analytics-tasks",
        description="Absolute directory on the node holding the pipeline (remote-task's base).",
    )
    remote_name: NonEmptyStr = Field(
        default="analyticstack", description="Directory under base_dir (remote-task's ID)."
    )
    source: Literal["project", "git"] = Field(
        default="project", description="project: this project's source; git: repo + branch."
    )
    repo: NonEmptyStr | None = Field(default=None, description="git source: repository URL.")
    branch: NonEmptyStr = Field(default="master", description="git source: branch.")
    installer: Literal["pip", "uv"] = Field(default="pip", description="pip or uv on the node.")
    python: NonEmptyStr = Field(
        default="python3", description="Python the virtualenv is made with."
    )
    install_options: list[NonEmptyStr] = Field(
        default=[], description="Extra installer options (e.g. an index URL, --offline)."
    )
    install_timeout_seconds: float = Field(
        default=1800, gt=0, description="Seconds the virtualenv installation may take."
    )

    @field_validator("base_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not posixpath.isabs(value) or posixpath.normpath(value) != value:
            raise ValueError(f"base_dir {value!r}: expected an absolute, normalised path")
        return value

    @field_validator("remote_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError(f"remote_name {value!r}: use letters, digits, '.', '_' and '-'")
        return value

    @model_validator(mode="after")
    def _git_needs_a_repo(self) -> PipelineSetup:
        if self.source == "git" and not self.repo:
            raise ValueError("source 'git' needs the repository URL in repo")
        return self

    @property
    def home(self) -> str:
        """`<base_dir>/<remote_name>`: where the tasks run (cd), with venv/ and override.cfg."""
        return posixpath.join(self.base_dir, self.remote_name)

    @property
    def override_path(self) -> str:
        """The override config launch-task reads (`./override.cfg` in `home`)."""
        return posixpath.join(self.home, "override.cfg")


# -- files -----------------------------------------------------------------------------------------


def ensure_dir(sftp: paramiko.SFTPClient, path: str, mode: int) -> bool:
    """Create `path` with `mode` (missing parents 0755) when missing; True if it was created."""
    try:
        sftp.stat(path)
        return False
    except FileNotFoundError:
        parent = posixpath.dirname(path.rstrip("/"))
        if parent and parent != path:
            ensure_dir(sftp, parent, 0o755)
        sftp.mkdir(path, mode)
        sftp.chmod(path, mode)
        return True


def put_file(
    connector: Connector, host: str, path: str, data: bytes, mode: int, step: str
) -> StepResult:
    """`path` holds exactly `data` with `mode` (parent directories are created)."""
    with open_session(connector, host) as session:
        path = session.path(path)
        session.run(f"mkdir -p {shlex.quote(posixpath.dirname(path))}")
        if session.read_file(path) == data:
            if session.sftp.stat(path).st_mode & 0o777 == mode:
                return StepResult(step, host, "ok", f"{path} up to date")
            session.sftp.chmod(path, mode)
            return StepResult(step, host, "changed", f"chmod {mode:o} {path}")
        session.write_file(path, data, mode)
        return StepResult(step, host, "changed", f"wrote {path} ({len(data)} bytes)")


# -- the pipeline's virtualenv -----------------------------------------------------------------


def project_source_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """The files the pipeline distribution is built from, sorted (no caches, no build output)."""
    files = [root / name for name in PROJECT_FILES if (root / name).is_file()]
    for package in PROJECT_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix in _SOURCE_SUFFIXES:
                files.append(path)
    return sorted(files)


def project_digest(root: Path = PROJECT_ROOT) -> str:
    """sha256 over the source files' paths and contents: what a venv marker records."""
    digest = hashlib.sha256()
    for path in project_source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def project_archive(root: Path = PROJECT_ROOT) -> bytes:
    """A .tar.gz of the pipeline distribution's source files (installable with pip or uv)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in project_source_files(root):
            info = archive.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with path.open("rb") as handle:
                archive.addfile(info, handle)
    return buffer.getvalue()


def install_commands(
    installer: Literal["pip", "uv"], python: str, venv: str, package: str, options: list[str]
) -> list[str]:
    """Shell commands that make `venv` anew and install `package` into it.

    Anew, so that the venv holds the pipeline distribution and its dependencies only: nothing
    left from an earlier install (one of the whole project, with Prefect, say).
    """
    q = shlex.quote
    extra = " ".join(q(option) for option in options)
    if installer == "uv":
        return [
            f"rm -rf {q(venv)}",
            f"uv venv -q --python {q(python)} {q(venv)}",
            f"uv pip install -q --python {q(venv)}/bin/python {extra} {q(package)}".replace(
                "  ", " "
            ),
        ]
    return [
        f"rm -rf {q(venv)}",
        f"{q(python)} -m venv {q(venv)}",
        f"{q(venv)}/bin/pip install -q {extra} {q(package)}".replace("  ", " "),
    ]


def ensure_venv(
    connector: Connector, host: str, setup: PipelineSetup, log: Callable[[str], None]
) -> StepResult:
    """The virtualenv `<base>/<remote_name>/venv` with the pipeline (`launch-task`) installed.

    `project`: this project's source, uploaded as an archive; `git`: `repo` at `branch`, cloned
    into `<base>/<remote_name>/repo`. A marker in the venv records what was installed (the
    source digest, or the commit); nothing is reinstalled while it matches.

    Args:
        log: Called with each install command before it runs.
    """
    source, repo, branch = setup.source, setup.repo, setup.branch
    q = shlex.quote
    home = setup.home
    venv = posixpath.join(home, "venv")
    with open_session(connector, host) as session:

        def run(command: str) -> str:
            return session.run(command, timeout=setup.install_timeout_seconds).stdout

        run(f"mkdir -p {q(home)}")
        if source == "git":
            if not repo:
                raise InvalidInput("source 'git' needs a repository URL (repo)")
            heads = run(f"git ls-remote {q(repo)} {q('refs/heads/' + branch)}").split()
            if not heads:
                raise InvalidInput(f"repository {repo} has no branch {branch!r}")
            wanted = f"git {repo} {branch} {heads[0]}"
        else:
            if not (PROJECT_ROOT / "pyproject.toml").is_file():
                raise InvalidInput(
                    f"no project source at {PROJECT_ROOT}: run from a checkout of edx-ops-flows, "
                    "or install a git repository and branch (source: git)"
                )
            wanted = f"project {project_digest()}"
        marker = posixpath.join(venv, MARKER)
        present = session.read_file(marker)
        launcher = run(f"test -x {q(venv)}/bin/launch-task && echo yes || echo no").strip()
        if present is not None and present.decode().strip() == wanted and launcher == "yes":
            return StepResult("pipeline venv", host, "ok", f"{venv}: {wanted[:60]}")
        if source == "git":
            checkout = posixpath.join(home, "repo")
            commit = wanted.split()[-1]
            run(
                f"if [ -d {q(checkout)}/.git ]; then git -C {q(checkout)} fetch -q origin "
                f"{q(branch)}; else git clone -q --branch {q(branch)} {q(repo)} {q(checkout)}; fi"
                f" && git -C {q(checkout)} checkout -q --detach {q(commit)}"
            )  # fmt: skip
            package = checkout
        else:
            package = posixpath.join(home, "src")
            archive = posixpath.join(home, "src.tar.gz")
            session.write_file(archive, project_archive(), 0o644)
            run(f"rm -rf {q(package)} && mkdir -p {q(package)} && tar -xzf {q(archive)} "
                f"-C {q(package)}")  # fmt: skip
        options = setup.install_options or []
        for command in install_commands(setup.installer, setup.python, venv, package, options):
            log(f"{host}: {command}")
            run(command)
        run(f"test -x {q(venv)}/bin/launch-task")
        session.write_file(marker, (wanted + "\n").encode(), 0o644)
        return StepResult("pipeline venv", host, "changed", f"{venv}: installed {wanted[:60]}")
