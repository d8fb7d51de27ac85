"""An EMR cluster per pipeline run (seed 004), as plain values: settings, requests, verdicts.

`EmrClusterSettings` is what AWS sites keep in `emr-vars.yml` (release label, instance types
and counts, spot or on-demand, subnet, key pair, roles, log URI, an extra bootstrap script,
tags). From it and a run's pipeline tasks this module builds, without boto3 or Prefect:

- `run_job_flow_request`: the `RunJobFlow` request (Spark installed, the bootstrap actions, the
  cluster kept alive until the flow terminates it, an idle timeout as the last safety net);
- `bootstrap_script`: the shell script every node runs first, installing this project's
  pipeline wheel into a virtualenv (`EMR_HOME/venv`), putting `override.cfg` next to it and
  the database credentials files it names where it names them (0600);
- `emr_override_cfg`: the site's rendered `override.cfg` with `[map-reduce] engine = spark`
  and the `[spark]` section (`master = yarn` on EMR);
- `step_command_line` / `step_definitions`: what each step runs (`command-runner.jar` ->
  `bash -c 'cd EMR_HOME && ... launch-task <Task> ...'`);
- `instance_hours`: instance-hours from the instance groups' timings;
- the preflight assessments (`assess_*`) over `describe_*` results, each failure naming its
  fix, and `refuse_failed_checks`;
- `cluster_verdicts`: which clusters the sweeper terminates.
"""

from __future__ import annotations

import configparser
import datetime as dt
import io
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.aws_site import PROJECT
from pipeline.errors import InvalidInput, Refused
from pipeline_config.fields import NonEmptyStr

#: Where a node keeps the pipeline: its virtualenv, override.cfg, the wheel (hadoop's home).
EMR_HOME = "/home/hadoop/edx-ops-flows"
#: The nodes' Python with the pipeline installed: Spark's executors must run it.
EMR_PYTHON = f"{EMR_HOME}/venv/bin/python"
#: Spark as EMR installs it: its Python package and py4j come from here, not from the wheel.
EMR_SPARK_HOME = "/usr/lib/spark"
#: Tag keys on every cluster this project creates (`project` as in `domain.aws_site.tags`).
PROJECT_TAG, FLOW_RUN_TAG = "project", "flow-run"
#: Cluster states in which a cluster costs money (not yet terminated).
ACTIVE_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
TERMINATED_STATES = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")
STEP_DONE = "COMPLETED"
#: Step states that end a run: the first of them fails the flow.
STEP_FAILED_STATES = ("FAILED", "CANCELLED", "INTERRUPTED", "CANCEL_PENDING")

_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$")
_TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIZE = r"^[0-9]+[kmgtKMGT]?$"


class EmrPreflightRefused(Refused):
    """A preflight check failed: the cluster would hang or fail; the message names each fix."""


def _s3_uri(value: str, what: str) -> str:
    if not _S3_URI.match(value):
        raise ValueError(f"{what} {value!r}: expected s3://bucket/prefix")
    return value


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> (`bucket`, `some/key`)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def s3_join(uri: str, *parts: str) -> str:
    """`s3://b/prefix` + `a`, `b` -> `s3://b/prefix/a/b` (one slash between parts)."""
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSettings(_Settings):
    """The `[spark]` section the steps run with (upstream's keys)."""

    master: NonEmptyStr = Field(
        default="yarn", description="Spark master: `yarn` on EMR (`local[2]` runs on one machine)."
    )
    driver_memory: NonEmptyStr | None = Field(
        default=None, pattern=_SIZE, description="`driver-memory`, e.g. `3g` (None: Spark's)."
    )
    executor_memory: NonEmptyStr | None = Field(
        default=None, pattern=_SIZE, description="`executor-memory`, e.g. `3g` (None: Spark's)."
    )
    executor_cores: int | None = Field(
        default=None, ge=1, le=64, description="`executor-cores` (None: Spark's default)."
    )
    conf: list[NonEmptyStr] = Field(
        default=[],
        description="More Spark settings, each `key=value` (written `|`-separated, Luigi's "
        "format), e.g. `spark.eventLog.enabled=true`.",
    )

    @field_validator("conf")
    @classmethod
    def _pairs(cls, value: list[str]) -> list[str]:
        for item in value:
            key, equals, _ = item.partition("=")
            if not equals or not re.fullmatch(r"spark\.[A-Za-z0-9._-]+", key) or "|" in item:
                raise ValueError(f"spark conf {item!r}: expected spark.<name>=<value> without |")
        return value


class EmrClusterSettings(_Settings):
    """One site's EMR cluster, as `emr-vars.yml` has it (seed 004)."""

    name: NonEmptyStr = Field(
        default="analytics-pipeline",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$",
        description="Cluster name (each run's cluster is named `<name>-<flow run id>`).",
    )
    release_label: NonEmptyStr = Field(
        default="emr-7.5.0",
        pattern=r"^emr-[0-9]+\.[0-9]+\.[0-9]+$",
        description="EMR release (Spark's version follows from it), e.g. `emr-7.5.0`.",
    )
    master_instance_type: NonEmptyStr = Field(
        default="m5.xlarge", description="EC2 instance type of the master node."
    )
    core_instance_type: NonEmptyStr = Field(
        default="m5.xlarge", description="EC2 instance type of the core nodes."
    )
    core_instance_count: int = Field(
        default=2, ge=0, le=500, description="Number of core nodes (0: the master does all)."
    )
    master_market: Literal["ON_DEMAND", "SPOT"] = Field(
        default="ON_DEMAND", description="`ON_DEMAND` or `SPOT` for the master node."
    )
    core_market: Literal["ON_DEMAND", "SPOT"] = Field(
        default="ON_DEMAND", description="`ON_DEMAND` or `SPOT` for the core nodes."
    )
    subnet_id: NonEmptyStr | None = Field(
        default=None,
        pattern=r"^subnet-[0-9a-f]+$",
        description="`vpc_subnet_id`: the subnet the nodes start in (None: EMR's default).",
    )
    key_name: NonEmptyStr | None = Field(
        default=None, description="EC2 key pair for SSH to the master (None: no SSH login)."
    )
    service_role: NonEmptyStr = Field(
        default="EMR_DefaultRole", description="IAM role EMR itself acts as."
    )
    instance_role: NonEmptyStr = Field(
        default="EMR_EC2_DefaultRole",
        description="Instance profile (and its role) of the nodes: S3, Elasticsearch access.",
    )
    log_uri: NonEmptyStr = Field(
        ...,
        description="`s3://` prefix EMR writes its logs to (the step's stderr is read from "
        "there), e.g. `s3://client-name-analytics-emr/logs/`.",
    )
    staging_uri: NonEmptyStr = Field(
        ...,
        description="`s3://` prefix for the run's wheel, override.cfg and bootstrap script, "
        "e.g. `s3://client-name-analytics-emr/runs/`.",
    )
    bootstrap_script: NonEmptyStr | None = Field(
        default=None,
        description="`s3://` path of an extra bootstrap script run on every node after ours.",
    )
    python: NonEmptyStr = Field(
        default="python3.11",
        pattern=r"^python3(\.[0-9]+)?$",
        description="Python the nodes' virtualenv is made with (installed with dnf if missing).",
    )
    idle_timeout_seconds: int = Field(
        default=3600,
        ge=60,
        le=604800,
        description="EMR terminates the cluster itself after this long idle (a safety net "
        "when the flow could not).",
    )
    tags: dict[NonEmptyStr, NonEmptyStr] = Field(
        default={}, description="More tags on the cluster (`project` and `flow-run` are set)."
    )
    spark: SparkSettings = Field(default=SparkSettings(), description="The `[spark]` section.")

    @field_validator("log_uri", "staging_uri", "bootstrap_script")
    @classmethod
    def _uris(cls, value: str | None, info) -> str | None:
        return None if value is None else _s3_uri(value, info.field_name)

    @field_validator("tags")
    @classmethod
    def _own_tags(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted({PROJECT_TAG, FLOW_RUN_TAG} & set(value))
        if taken:
            raise ValueError(f"tags {taken}: set by the flow itself, choose other keys")
        return value

    @property
    def log_bucket(self) -> str:
        return split_s3_uri(self.log_uri)[0]


# -- what the nodes get ----------------------------------------------------------------------------


#: Under a run's staging prefix: its database credentials files, deleted when the run ends.
CREDENTIALS_PREFIX = "credentials"


@dataclass(frozen=True)
class RunFiles:
    """Where one run's files are on S3 (under `staging_uri/<run>/`).

    `credentials` pairs each credentials file's path on the nodes with its object, all under
    `credentials_uri` (the prefix the flow empties when the run ends).
    """

    wheel_uri: str
    override_uri: str
    bootstrap_uri: str
    credentials: tuple[tuple[str, str], ...] = ()

    @classmethod
    def under(
        cls, staging_uri: str, run: str, wheel_name: str, credentials: Sequence[str] = ()
    ) -> RunFiles:
        base = s3_join(staging_uri, run)
        secrets = run_credentials_uri(staging_uri, run)
        return cls(
            s3_join(base, wheel_name),
            s3_join(base, "override.cfg"),
            s3_join(base, "bootstrap.sh"),
            tuple(
                (path, s3_join(secrets, f"{index + 1:02d}.json"))
                for index, path in enumerate(credentials)
            ),
        )


def run_credentials_uri(staging_uri: str, run: str) -> str:
    """`staging_uri/<run>/credentials/`: where a run's credentials files are, and only they."""
    return s3_join(staging_uri, run, CREDENTIALS_PREFIX) + "/"


#: The name of the bootstrap action installing the pipeline (the sweeper finds a run's
#: staging prefix from its script's path).
PIPELINE_BOOTSTRAP = "edx-ops-flows pipeline"


def credentials_uri_of(actions: Iterable[Mapping[str, Any]]) -> str | None:
    """A cluster's run credentials prefix, from `ListBootstrapActions`: next to its
    `PIPELINE_BOOTSTRAP` script (`.../<run>/bootstrap.sh` -> `.../<run>/credentials/`); None
    for a cluster this flow did not make."""
    for action in actions:
        path = str(action.get("ScriptPath", ""))
        if action.get("Name") == PIPELINE_BOOTSTRAP and path.endswith("/bootstrap.sh"):
            return s3_join(path.removesuffix("/bootstrap.sh"), CREDENTIALS_PREFIX) + "/"
    return None


def node_credentials_path(path: str, home: str = posixpath.dirname(EMR_HOME)) -> str:
    """A credentials file's path on the nodes: absolute, normalized, inside the nodes' home
    (hadoop's), and neither the pipeline's override.cfg nor inside its virtualenv (the
    bootstrap rebuilds it).

    Raises:
        InvalidInput: naming the path and why.
    """
    if not posixpath.isabs(path) or posixpath.normpath(path) != path:
        raise InvalidInput(
            f"credentials path {path!r}: expected an absolute, normalized path on the EMR "
            f"nodes, e.g. {home}/credentials/reports.json"
        )
    if not path.startswith(home.rstrip("/") + "/"):
        raise InvalidInput(
            f"credentials path {path!r} is outside the EMR nodes' home {home}: the bootstrap "
            "runs as hadoop and writes only there"
        )
    venv = posixpath.join(EMR_HOME, "venv")
    if path == posixpath.join(EMR_HOME, "override.cfg") or path.startswith(venv + "/"):
        raise InvalidInput(
            f"credentials path {path!r} is the pipeline's override.cfg or inside {venv}: "
            "choose another file"
        )
    return path


def missing_credentials(override: Mapping[str, str | None], given: Iterable[str]) -> list[str]:
    """The credentials files override.cfg names (section -> path, None: none) that no block
    provides, as `[section] path` (a task reading them would fail on the cluster)."""
    given = set(given)
    return [
        f"[{section}] {path}"
        for section, path in override.items()
        if path is not None and path not in given
    ]


def bootstrap_script(files: RunFiles, python: str, home: str = EMR_HOME) -> str:
    """The bootstrap action of every node: the pipeline wheel in `home/venv`, `override.cfg`.

    The wheel is installed without its `spark` extra: EMR's own Spark (`EMR_SPARK_HOME`) is
    what the steps use. `--system-site-packages` is not used: the venv holds the pipeline's
    dependencies only.
    """
    q = shlex.quote
    wheel = posixpath.join(home, posixpath.basename(files.wheel_uri))
    return "\n".join(
        [
            "#!/bin/bash",
            "# edx-ops-flows: install the analytics pipeline on this EMR node (bootstrap action).",
            "set -euo pipefail",
            f"command -v {q(python)} >/dev/null || sudo dnf install -y {q(python)}",
            f"mkdir -p {q(home)}",
            f"aws s3 cp --only-show-errors {q(files.wheel_uri)} {q(wheel)}",
            f"aws s3 cp --only-show-errors {q(files.override_uri)} {q(home + '/override.cfg')}",
            f"rm -rf {q(home + '/venv')}",
            f"{q(python)} -m venv {q(home + '/venv')}",
            f"{q(home + '/venv/bin/pip')} install --quiet {q(wheel)}",
            f"test -x {q(home + '/venv/bin/launch-task')}",
            *_credentials_downloads(files.credentials),
            "",
        ]
    )


def _credentials_downloads(credentials: Sequence[tuple[str, str]]) -> list[str]:
    # umask 077 in a subshell: the file (and a directory made for it) is 0600/0700 from the
    # moment it exists, never readable by others even briefly; chmod covers a file kept from
    # an earlier boot. The password is in S3 (encrypted) and on the node only, never here.
    q = shlex.quote
    lines = ["# database credentials files named by override.cfg: hadoop's alone (0600)"]
    for path, uri in credentials:
        lines.append(
            f"(umask 077 && mkdir -p {q(posixpath.dirname(path))} && aws s3 cp --only-show-errors "
            f"{q(uri)} {q(path)} && chmod 600 {q(path)})"
        )
    return lines if credentials else []


def emr_override_cfg(
    override_cfg: str,
    spark: SparkSettings,
    *,
    spark_master: str | None = None,
    pyspark_python: str | None = EMR_PYTHON,
) -> str:
    """The site's rendered `override.cfg` with the Spark engine: `[map-reduce] engine = spark`
    and `[spark]` (`master`, then `driver-memory`, `executor-memory`, `executor-cores`, `conf`
    when set). Every other line is the site's.

    Args:
        override_cfg: Text from `pipeline_config.render.render_override_cfg`.
        spark_master: Overrides `spark.master` (e.g. `local[2]` to run the same steps on one
            machine).
        pyspark_python: The Python of the executors and the driver (`spark.pyspark.python`,
            added to `conf` unless `spark.conf` sets it): the nodes' virtualenv, which holds
            the pipeline; None: Spark's default (on one machine, the running Python).

    Raises:
        InvalidInput: the text is not a config file.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        parser.read_string(override_cfg)
    except configparser.Error as error:
        raise InvalidInput(f"override.cfg: {error}") from None
    if not parser.has_section("map-reduce"):
        parser.add_section("map-reduce")
    parser.set("map-reduce", "engine", "spark")
    parser.remove_section("spark")
    parser.add_section("spark")
    master = spark_master or spark.master
    values = {
        "master": master,
        "driver-memory": spark.driver_memory,
        "executor-memory": spark.executor_memory,
        "executor-cores": None if spark.executor_cores is None else str(spark.executor_cores),
        "conf": "|".join(_with_python(spark.conf, pyspark_python)) or None,
    }
    for key, value in values.items():
        if value is not None:
            # Luigi reads these files with %-interpolation: a literal % is written %%
            parser.set("spark", key, value.replace("%", "%%"))
    out = io.StringIO()
    out.write(
        "# override.cfg for an EMR run (edx-ops-flows): the site's settings with the\n"
        f"# Spark engine on {master}.\n\n"
    )
    parser.write(out)
    return out.getvalue().rstrip("\n") + "\n"


def _with_python(conf: Sequence[str], python: str | None) -> list[str]:
    keys = {item.partition("=")[0] for item in conf}
    extra = [
        f"{key}={python}"
        for key in ("spark.pyspark.python", "spark.pyspark.driver.python")
        if python and key not in keys
    ]
    return [*conf, *extra]


def task_words(words: Sequence[str]) -> list[str]:
    """A step's launch-task arguments; the first must be a task name.

    Raises:
        InvalidInput: naming what came instead.
    """
    if not words or not _TASK_NAME.fullmatch(words[0]):
        raise InvalidInput(
            f"EMR step {shlex.join(words) or 'nothing'!r}: expected a task name "
            "first, e.g. TotalEventsDailyTask --interval 2016"
        )
    return list(words)


def step_command_line(
    words: Sequence[str],
    *,
    home: str = EMR_HOME,
    launch_task: str | None = None,
    spark_home: str | None = EMR_SPARK_HOME,
) -> list[str]:
    """The exact command a step runs (`command-runner.jar`'s arguments).

    `bash -c 'cd <home> && [Spark's Python from spark_home on PYTHONPATH &&] exec <launch-task>
    <words>'`: launch-task reads `<home>/override.cfg` (the Spark engine and its master, see
    `emr_override_cfg`). The same line runs on one machine with `home` a directory holding
    that override.cfg (rendered with `spark_master="local[2]"`), `launch_task="launch-task"`
    and `spark_home=None` (pyspark from the virtualenv).

    Args:
        words: The task and its arguments, e.g. `["TotalEventsDailyTask", "--interval",
            "2016", "--local-scheduler"]`.
        home: The directory with `override.cfg` (and `venv/` by default).
        launch_task: The launch-task program (default `<home>/venv/bin/launch-task`).
        spark_home: Where Spark is installed (its `python/` and py4j are put on PYTHONPATH);
            None: pyspark is importable already.
    """
    q = shlex.quote
    program = launch_task or posixpath.join(home, "venv", "bin", "launch-task")
    parts = [f"cd {q(home)}"]
    if spark_home:
        python = posixpath.join(spark_home, "python")
        parts.append(
            f"export SPARK_HOME={q(spark_home)} PYTHONPATH={q(python)}:"
            f"$(echo {q(python)}/lib/py4j-*-src.zip)${{PYTHONPATH:+:$PYTHONPATH}}"
        )
    parts.append("exec " + shlex.join([program, *task_words(words)]))
    return ["bash", "-c", " && ".join(parts)]


def step_name(index: int, words: Sequence[str]) -> str:
    """`01 TotalEventsDailyTask`: the step's name in EMR (its order, then the task)."""
    return f"{index + 1:02d} {words[0]}"


def step_definitions(
    tasks: Sequence[Sequence[str]], *, home: str = EMR_HOME, spark_home: str | None = EMR_SPARK_HOME
) -> list[dict[str, Any]]:
    """`AddJobFlowSteps`' `Steps`: one per task, in order.

    `CANCEL_AND_WAIT`: when one fails EMR cancels the steps after it (they never run) and the
    cluster waits, for the flow to read the logs and terminate it.
    """
    return [
        {
            "Name": step_name(index, words),
            "ActionOnFailure": "CANCEL_AND_WAIT",
            "HadoopJarStep": {
                "Jar": "command-runner.jar",
                "Args": step_command_line(words, home=home, spark_home=spark_home),
            },
        }
        for index, words in enumerate(tasks)
    ]


def cluster_tags(settings: EmrClusterSettings, flow_run: str | None) -> list[dict[str, str]]:
    """The cluster's tags: the site's own, then `project` and `flow-run` (the sweeper's keys)."""
    tags = {**settings.tags, PROJECT_TAG: PROJECT}
    if flow_run:
        tags[FLOW_RUN_TAG] = flow_run
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def cluster_name(settings: EmrClusterSettings, flow_run: str | None) -> str:
    return f"{settings.name}-{flow_run}" if flow_run else settings.name


def run_job_flow_request(
    settings: EmrClusterSettings, files: RunFiles, flow_run: str | None
) -> dict[str, Any]:
    """The `RunJobFlow` request of one run's cluster (without steps: they are added next).

    The cluster is kept alive without steps, so that it never ends before the steps are added
    nor before the flow read a failed step's log; the flow terminates it, and EMR's own idle
    timeout does if the flow could not.
    """
    groups = [
        {
            "Name": "master",
            "InstanceRole": "MASTER",
            "Market": settings.master_market,
            "InstanceType": settings.master_instance_type,
            "InstanceCount": 1,
        }
    ]
    if settings.core_instance_count:
        groups.append(
            {
                "Name": "core",
                "InstanceRole": "CORE",
                "Market": settings.core_market,
                "InstanceType": settings.core_instance_type,
                "InstanceCount": settings.core_instance_count,
            }
        )
    instances: dict[str, Any] = {
        "InstanceGroups": groups,
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    if settings.subnet_id:
        instances["Ec2SubnetId"] = settings.subnet_id
    if settings.key_name:
        instances["Ec2KeyName"] = settings.key_name
    actions = [
        {
            "Name": PIPELINE_BOOTSTRAP,
            "ScriptBootstrapAction": {"Path": files.bootstrap_uri, "Args": []},
        }
    ]
    if settings.bootstrap_script:
        actions.append(
            {
                "Name": "site bootstrap",
                "ScriptBootstrapAction": {"Path": settings.bootstrap_script, "Args": []},
            }
        )
    return {
        "Name": cluster_name(settings, flow_run),
        "ReleaseLabel": settings.release_label,
        "LogUri": settings.log_uri,
        "Applications": [{"Name": "Spark"}, {"Name": "Hadoop"}],
        "Instances": instances,
        "BootstrapActions": actions,
        "ServiceRole": settings.service_role,
        "JobFlowRole": settings.instance_role,
        "VisibleToAllUsers": True,
        "AutoTerminationPolicy": {"IdleTimeout": settings.idle_timeout_seconds},
        "Tags": cluster_tags(settings, flow_run),
    }


def step_stderr_key(log_uri: str, cluster_id: str, step_id: str) -> tuple[str, str]:
    """Bucket and key of a step's stderr as EMR writes it: `<log-uri>/<cluster>/steps/<step>/
    stderr.gz` (pushed every few minutes while the cluster runs)."""
    return split_s3_uri(s3_join(log_uri, cluster_id, "steps", step_id, "stderr.gz"))


# -- steps and instance-hours ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepState:
    """One step as `ListSteps` shows it."""

    id: str
    name: str
    state: str
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.state in STEP_FAILED_STATES


def step_states(listed: Iterable[Mapping[str, Any]], order: Sequence[str]) -> list[StepState]:
    """`ListSteps`' `Steps` (newest first) as `StepState`s in the order the ids were added."""
    by_id = {}
    for step in listed:
        status = step.get("Status", {})
        reason = status.get("FailureDetails", {}).get("Reason") or status.get(
            "StateChangeReason", {}
        ).get("Message", "")
        by_id[step["Id"]] = StepState(
            step["Id"], step.get("Name", ""), status.get("State", "?"), reason or ""
        )
    return [by_id.get(step_id, StepState(step_id, "", "UNKNOWN")) for step_id in order]


def first_failed(steps: Sequence[StepState]) -> StepState | None:
    return next((step for step in steps if step.failed), None)


def steps_finished(steps: Sequence[StepState]) -> bool:
    """All completed, or one failed (the ones after it never run)."""
    return all(s.state == STEP_DONE for s in steps) or first_failed(steps) is not None


@dataclass(frozen=True)
class InstanceHours:
    """One instance group's use: instance count x hours from its creation to its end."""

    group: str
    instance_type: str
    market: str
    count: int
    hours: float

    @property
    def instance_hours(self) -> float:
        return self.count * self.hours


def instance_hours(
    groups: Iterable[Mapping[str, Any]],
    cluster_end: dt.datetime | None,
    now: dt.datetime,
) -> list[InstanceHours]:
    """Instance-hours per group from `ListInstanceGroups` timings: each group's instances
    (the most of requested and running) from its `CreationDateTime` to its `EndDateTime`,
    else the cluster's end, else `now`. Unrounded (EMR bills by the second)."""
    found = []
    for group in groups:
        timeline = group.get("Status", {}).get("Timeline", {})
        start = timeline.get("CreationDateTime")
        end = timeline.get("EndDateTime") or cluster_end or now
        hours = max((end - start).total_seconds(), 0) / 3600 if start else 0.0
        count = max(
            int(group.get("RequestedInstanceCount", 0) or 0),
            int(group.get("RunningInstanceCount", 0) or 0),
        )
        found.append(
            InstanceHours(
                str(group.get("InstanceGroupType", group.get("Name", "?"))),
                str(group.get("InstanceType", "?")),
                str(group.get("Market", "?")),
                count,
                hours,
            )
        )
    return found


def instance_hours_table(used: Sequence[InstanceHours]) -> list[dict[str, Any]]:
    """Rows for the run's artifact, with a total row."""
    rows = [
        {
            "group": u.group,
            "instance_type": u.instance_type,
            "market": u.market,
            "instances": u.count,
            "hours": round(u.hours, 4),
            "instance_hours": round(u.instance_hours, 4),
        }
        for u in used
    ]
    total = round(sum(u.instance_hours for u in used), 4)
    rows.append(
        {
            "group": "total",
            "instance_type": "",
            "market": "",
            "instances": sum(u.count for u in used),
            "hours": "",
            "instance_hours": total,
        }
    )
    return rows


# -- preflight ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreflightCheck:
    """One preflight check: what was checked, whether it passed, and else how to fix it."""

    check: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.check}: {self.detail}" + ("" if self.ok else f" -> fix: {self.fix}")


def assess_dns_hostnames(vpc_id: str, enabled: bool) -> PreflightCheck:
    """From `DescribeVpcAttribute(enableDnsHostnames)`: EMR hangs in provisioning without."""
    if enabled:
        return PreflightCheck("vpc dns hostnames", True, f"{vpc_id}: enabled")
    return PreflightCheck(
        "vpc dns hostnames",
        False,
        f"{vpc_id}: DNS hostnames are disabled, EMR would stay stuck in provisioning",
        f"enable them: VPC dashboard -> {vpc_id} -> Actions -> Edit DNS hostnames -> Yes "
        f"(`aws ec2 modify-vpc-attribute --vpc-id {vpc_id} --enable-dns-hostnames`)",
    )


def assess_internet_route(
    vpc_id: str,
    subnet_id: str,
    gateways: Iterable[Mapping[str, Any]],
    route_tables: Iterable[Mapping[str, Any]],
) -> PreflightCheck:
    """An internet gateway attached to the VPC and a `0.0.0.0/0` route to it in the subnet's
    route table (its own association, else the VPC's main table).

    Args:
        gateways: `DescribeInternetGateways`' gateways (filtered on the VPC or not).
        route_tables: `DescribeRouteTables`' tables of the VPC.
    """
    attached = sorted(
        g["InternetGatewayId"]
        for g in gateways
        if any(
            a.get("VpcId") == vpc_id and a.get("State", "available") in ("available", "attached")
            for a in g.get("Attachments", [])
        )
    )
    if not attached:
        return PreflightCheck(
            "internet gateway",
            False,
            f"{vpc_id} has no internet gateway attached",
            f"create one and attach it: `aws ec2 create-internet-gateway`, then `aws ec2 "
            f"attach-internet-gateway --vpc-id {vpc_id} --internet-gateway-id igw-...`; then a "
            "0.0.0.0/0 route to it in the subnet's route table",
        )
    tables = [t for t in route_tables if t.get("VpcId", vpc_id) == vpc_id]
    own = [
        t for t in tables if any(a.get("SubnetId") == subnet_id for a in t.get("Associations", []))
    ]
    main = [t for t in tables if any(a.get("Main") for a in t.get("Associations", []))]
    table = (own or main or [None])[0]
    if table is None:
        return PreflightCheck(
            "internet route",
            False,
            f"{subnet_id}: no route table found",
            f"associate a route table with {subnet_id}",
        )
    routes = [
        r
        for r in table.get("Routes", [])
        if r.get("DestinationCidrBlock") == "0.0.0.0/0"
        and r.get("GatewayId") in attached
        and r.get("State", "active") == "active"
    ]
    name = table["RouteTableId"]
    if routes:
        return PreflightCheck(
            "internet route", True, f"{name}: 0.0.0.0/0 -> {routes[0]['GatewayId']}"
        )
    return PreflightCheck(
        "internet route",
        False,
        f"{name} (the route table of {subnet_id}) has no 0.0.0.0/0 route to {attached[0]}",
        f"`aws ec2 create-route --route-table-id {name} --destination-cidr-block 0.0.0.0/0 "
        f"--gateway-id {attached[0]}`",
    )


def assess_role(role: str, exists: bool, purpose: str) -> PreflightCheck:
    """An IAM role that must exist (`GetRole` answered, or NoSuchEntity)."""
    if exists:
        return PreflightCheck(f"role {role}", True, "exists")
    return PreflightCheck(
        f"role {role}",
        False,
        f"IAM role {role} ({purpose}) does not exist",
        "let EMR create its default roles: `aws emr create-default-roles` (or the EMR "
        "console's Create cluster with default permissions, as seed 004 does), or name an "
        "existing role in the cluster settings",
    )


def assess_instance_profile(profile: str, roles: list[str] | None) -> PreflightCheck:
    """The nodes' instance profile exists and holds a role (`GetInstanceProfile`; None: none)."""
    if roles is None:
        return PreflightCheck(
            f"instance profile {profile}",
            False,
            f"instance profile {profile} does not exist",
            f"`aws emr create-default-roles` creates it, or `aws iam create-instance-profile "
            f"--instance-profile-name {profile}` and `aws iam add-role-to-instance-profile`",
        )
    if not roles:
        return PreflightCheck(
            f"instance profile {profile}",
            False,
            f"instance profile {profile} holds no role",
            f"`aws iam add-role-to-instance-profile --instance-profile-name {profile} "
            f"--role-name {profile}`",
        )
    return PreflightCheck(f"instance profile {profile}", True, f"holds {', '.join(roles)}")


def assess_log_bucket(bucket: str, exists: bool, write_error: str | None) -> PreflightCheck:
    """The log bucket exists (`HeadBucket`) and takes a write (a marker object put, deleted)."""
    if not exists:
        return PreflightCheck(
            f"log bucket {bucket}",
            False,
            f"bucket {bucket} does not exist",
            f"create it (`aws s3 mb s3://{bucket}`; seed 004: `<client>-analytics-emr`) or set "
            "log_uri to an existing bucket",
        )
    if write_error:
        return PreflightCheck(
            f"log bucket {bucket}",
            False,
            f"cannot write to {bucket}: {write_error}",
            "allow s3:PutObject on it to the flow's credentials and to the EMR roles",
        )
    return PreflightCheck(f"log bucket {bucket}", True, "exists and is writable")


def refuse_failed_checks(checks: Sequence[PreflightCheck]) -> None:
    """Raise `EmrPreflightRefused` listing every failed check with its fix."""
    failed = [check for check in checks if not check.ok]
    if failed:
        raise EmrPreflightRefused(
            "EMR preflight refused the run (nothing was created): "
            + "; ".join(check.line() for check in failed)
        )


# -- the sweeper ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterVerdict:
    """What the sweeper does with one active cluster, and why."""

    cluster_id: str
    name: str
    flow_run: str | None
    action: Literal["terminate", "keep"]
    reason: str


def tag_value(tags: Iterable[Mapping[str, str]], key: str) -> str | None:
    return next((t.get("Value") for t in tags if t.get("Key") == key), None)


def cluster_verdict(
    cluster_id: str,
    name: str,
    tags: Iterable[Mapping[str, str]],
    run_state: str | None,
) -> ClusterVerdict:
    """Terminate a cluster of this project whose flow run is over (or unknown to Prefect).

    Args:
        tags: The cluster's tags (`DescribeCluster`).
        run_state: The state type of the flow run its `flow-run` tag names (`RUNNING`,
            `COMPLETED`...), None when Prefect has no such run.
    """
    tags = list(tags)
    run = tag_value(tags, FLOW_RUN_TAG)
    if tag_value(tags, PROJECT_TAG) != PROJECT:
        return ClusterVerdict(cluster_id, name, run, "keep", "not tagged by this project")
    if not run:
        return ClusterVerdict(cluster_id, name, None, "keep", "no flow-run tag")
    if run_state is None:
        return ClusterVerdict(cluster_id, name, run, "terminate", "its flow run does not exist")
    if run_state in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
        return ClusterVerdict(cluster_id, name, run, "terminate", f"its flow run is {run_state}")
    return ClusterVerdict(cluster_id, name, run, "keep", f"its flow run is {run_state}")
