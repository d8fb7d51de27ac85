"""domain.emr: the cluster settings, the RunJobFlow request, the bootstrap script, the EMR
override.cfg, the step command lines, instance-hours, preflight verdicts and the sweeper's."""

from __future__ import annotations

import configparser
import datetime as dt
import subprocess

import pytest
from pydantic import ValidationError

from domain.emr import (
    EMR_HOME,
    EmrClusterSettings,
    EmrPreflightRefused,
    RunFiles,
    SparkSettings,
    assess_dns_hostnames,
    assess_instance_profile,
    assess_internet_route,
    assess_log_bucket,
    assess_role,
    bootstrap_script,
    cluster_verdict,
    credentials_uri_of,
    emr_override_cfg,
    first_failed,
    instance_hours,
    instance_hours_table,
    missing_credentials,
    node_credentials_path,
    refuse_failed_checks,
    run_job_flow_request,
    step_command_line,
    step_definitions,
    step_states,
    step_stderr_key,
    steps_finished,
)
from pipeline.errors import InvalidInput
from pipeline_config.render import render_override_cfg

SETTINGS = {
    "log_uri": "s3://client-name-analytics-emr/logs/",
    "staging_uri": "s3://client-name-analytics-emr/runs",
}
TASK = ["TotalEventsDailyTask", "--interval", "2016", "--local-scheduler"]
FILES = RunFiles.under("s3://b-emr/runs", "run-1", "edx_ops_flows-0.1.0-py3-none-any.whl")


def settings(**changes) -> EmrClusterSettings:
    return EmrClusterSettings.model_validate({**SETTINGS, **changes})


def test_settings_defaults_are_the_seeds_roles():
    s = settings()
    assert (s.service_role, s.instance_role) == ("EMR_DefaultRole", "EMR_EC2_DefaultRole")
    assert s.log_bucket == "client-name-analytics-emr"
    assert s.spark.master == "yarn"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"log_uri": "/var/log/emr"}, "log_uri"),
        ({"staging_uri": "s3://"}, "staging_uri"),
        ({"bootstrap_script": "http://x/y.sh"}, "bootstrap_script"),
        ({"release_label": "7.5.0"}, "release_label"),
        ({"subnet_id": "sn-1"}, "subnet_id"),
        ({"core_market": "CHEAP"}, "core_market"),
        ({"tags": {"project": "mine"}}, "tags"),
        ({"spark": {"conf": ["eventLog=true"]}}, "conf"),
        ({"spark": {"executor_memory": "lots"}}, "executor_memory"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(changes, named):
    with pytest.raises(ValidationError, match=named):
        settings(**changes)


def test_run_job_flow_request_has_spark_the_bootstraps_roles_tags_and_no_steps():
    s = settings(
        subnet_id="subnet-0abc",
        key_name="analytics",
        core_instance_count=3,
        core_market="SPOT",
        bootstrap_script="s3://site/extra.sh",
        tags={"client": "client-name"},
    )
    request = run_job_flow_request(s, FILES, "run-1")
    assert request["Name"] == "analytics-pipeline-run-1"
    assert {"Name": "Spark"} in request["Applications"]
    assert (request["ServiceRole"], request["JobFlowRole"]) == (
        "EMR_DefaultRole",
        "EMR_EC2_DefaultRole",
    )
    assert request["LogUri"] == SETTINGS["log_uri"]
    assert [a["ScriptBootstrapAction"]["Path"] for a in request["BootstrapActions"]] == [
        "s3://b-emr/runs/run-1/bootstrap.sh",
        "s3://site/extra.sh",
    ]
    instances = request["Instances"]
    assert instances["KeepJobFlowAliveWhenNoSteps"] is True
    assert (instances["Ec2SubnetId"], instances["Ec2KeyName"]) == ("subnet-0abc", "analytics")
    master, core = instances["InstanceGroups"]
    assert (master["InstanceRole"], master["Market"], master["InstanceCount"]) == (
        "MASTER",
        "ON_DEMAND",
        1,
    )
    assert (core["InstanceRole"], core["Market"], core["InstanceCount"]) == ("CORE", "SPOT", 3)
    assert request["Tags"] == [
        {"Key": "client", "Value": "client-name"},
        {"Key": "project", "Value": "edx-ops-flows"},
        {"Key": "flow-run", "Value": "run-1"},
    ]
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    assert "Steps" not in request


def test_no_core_group_without_core_nodes_and_no_subnet_or_key_when_not_given():
    request = run_job_flow_request(settings(core_instance_count=0), FILES, None)
    assert [g["InstanceRole"] for g in request["Instances"]["InstanceGroups"]] == ["MASTER"]
    assert not {"Ec2SubnetId", "Ec2KeyName"} & set(request["Instances"])
    assert request["Name"] == "analytics-pipeline"


def test_bootstrap_script_installs_the_wheel_and_the_override_and_is_valid_bash():
    script = bootstrap_script(FILES, "python3.11")
    assert script.startswith("#!/bin/bash\n") and "set -euo pipefail" in script
    wheel = f"{EMR_HOME}/edx_ops_flows-0.1.0-py3-none-any.whl"
    assert f"aws s3 cp --only-show-errors {FILES.wheel_uri} {wheel}" in script
    assert f"{FILES.override_uri} {EMR_HOME}/override.cfg" in script
    assert f"{EMR_HOME}/venv/bin/pip install --quiet {wheel}" in script
    assert "[spark]" not in script  # EMR's own Spark, not the extra
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


SECRETS = RunFiles.under(
    "s3://b-emr/runs",
    "run-1",
    "edx_ops_flows-0.1.0-py3-none-any.whl",
    ["/home/hadoop/credentials/reports.json", "/home/hadoop/edx-ops-flows/edxapp db.json"],
)


def test_the_bootstrap_fetches_each_credentials_file_0600_under_umask_077():
    assert SECRETS.credentials == (
        ("/home/hadoop/credentials/reports.json", "s3://b-emr/runs/run-1/credentials/01.json"),
        (
            "/home/hadoop/edx-ops-flows/edxapp db.json",
            "s3://b-emr/runs/run-1/credentials/02.json",
        ),
    )
    script = bootstrap_script(SECRETS, "python3.11")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    lines = [line for line in script.splitlines() if "/credentials/0" in line]
    assert lines == [
        "(umask 077 && mkdir -p /home/hadoop/credentials && aws s3 cp --only-show-errors "
        "s3://b-emr/runs/run-1/credentials/01.json /home/hadoop/credentials/reports.json && "
        "chmod 600 /home/hadoop/credentials/reports.json)",
        "(umask 077 && mkdir -p /home/hadoop/edx-ops-flows && aws s3 cp --only-show-errors "
        "s3://b-emr/runs/run-1/credentials/02.json '/home/hadoop/edx-ops-flows/edxapp db.json' "
        "&& chmod 600 '/home/hadoop/edx-ops-flows/edxapp db.json')",
    ]
    # after the venv is rebuilt (rm -rf venv would not touch them anyway), last
    assert script.index("launch-task") < script.index("/credentials/01.json")
    assert "credentials" not in bootstrap_script(FILES, "python3.11")


def test_a_credentials_line_creates_its_file_0600_from_the_start(tmp_path):
    # `aws` here is a stand-in for the AWS CLI: it records the umask it writes the file under
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text('#!/bin/bash\numask > "$UMASK_SEEN"\nprintf x > "$5"\n')
    (bin_dir / "aws").chmod(0o755)
    target = tmp_path / "secret" / "reports.json"
    files = RunFiles.under("s3://b-emr/runs", "run-1", "w.whl", [str(target)])
    (line,) = [x for x in bootstrap_script(files, "python3").splitlines() if "umask" in x]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "UMASK_SEEN": str(tmp_path / "umask")}
    subprocess.run(["bash", "-euo", "pipefail", "-c", line], env=env, check=True)
    assert (tmp_path / "umask").read_text().strip() == "0077"
    assert target.stat().st_mode & 0o777 == 0o600
    assert target.parent.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    ("path", "refusal"),
    [
        ("credentials/reports.json", "expected an absolute, normalized path"),
        ("/home/hadoop/../root/reports.json", "expected an absolute, normalized path"),
        ("/etc/edx/reports.json", "is outside the EMR nodes' home /home/hadoop"),
        ("/home/hadoopx/reports.json", "is outside the EMR nodes' home /home/hadoop"),
        (f"{EMR_HOME}/override.cfg", "is the pipeline's override.cfg or inside"),
        (f"{EMR_HOME}/venv/reports.json", "is the pipeline's override.cfg or inside"),
    ],
)
def test_a_credentials_path_outside_the_nodes_home_is_refused_naming_it(path, refusal):
    with pytest.raises(InvalidInput, match=refusal) as caught:
        node_credentials_path(path)
    assert repr(path) in str(caught.value)


def test_node_credentials_path_takes_a_path_under_the_home():
    assert node_credentials_path("/home/hadoop/c/r.json") == "/home/hadoop/c/r.json"


def test_missing_credentials_names_what_override_cfg_needs_and_no_block_provides():
    named = {"database-export": "/home/hadoop/r.json", "database-import": None}
    assert missing_credentials(named, []) == ["[database-export] /home/hadoop/r.json"]
    assert missing_credentials(named, ["/home/hadoop/r.json"]) == []


def test_credentials_uri_of_a_cluster_is_next_to_its_pipeline_bootstrap():
    request = run_job_flow_request(
        settings(bootstrap_script="s3://b-emr/site.sh"), SECRETS, "run-1"
    )
    actions = [
        {"Name": a["Name"], "ScriptPath": a["ScriptBootstrapAction"]["Path"]}
        for a in request["BootstrapActions"]
    ]
    assert credentials_uri_of(actions) == "s3://b-emr/runs/run-1/credentials/"
    assert credentials_uri_of(actions[1:]) is None  # only the site's: not ours


OVERRIDE = render_override_cfg(
    {
        "elasticsearch_host": "http://es.internal:9200/",
        "event_logs": {"source": ["s3://client-name-tracking-logs/logs/"]},
        "warehouse_path": "s3://client-name-edxanalytics/warehouse/",
    }
)


def read_cfg(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser()  # luigi's interpolation: %% reads back as %
    parser.read_string(text)
    return parser


def test_emr_override_cfg_sets_the_spark_engine_on_yarn_and_keeps_the_site_settings():
    spark = SparkSettings(
        driver_memory="3g",
        executor_memory="4g",
        executor_cores=2,
        conf=["spark.eventLog.enabled=true", "spark.x.pct=50%"],
    )
    cfg = read_cfg(emr_override_cfg(OVERRIDE, spark))
    site = read_cfg(OVERRIDE)
    assert cfg.get("map-reduce", "engine") == "spark"
    assert dict(cfg["spark"]) == {
        "master": "yarn",
        "driver-memory": "3g",
        "executor-memory": "4g",
        "executor-cores": "2",
        "conf": "spark.eventLog.enabled=true|spark.x.pct=50%"
        f"|spark.pyspark.python={EMR_HOME}/venv/bin/python"
        f"|spark.pyspark.driver.python={EMR_HOME}/venv/bin/python",
    }
    for section in site.sections():
        if section != "map-reduce":
            assert dict(cfg[section]) == dict(site[section]), section


def test_emr_override_cfg_master_can_be_overridden_and_unset_keys_stay_out():
    one_machine = emr_override_cfg(
        OVERRIDE, SparkSettings(), spark_master="local[2]", pyspark_python=None
    )
    assert dict(read_cfg(one_machine)["spark"]) == {"master": "local[2]"}
    # a Python the site chose is kept
    chosen = SparkSettings(conf=["spark.pyspark.python=/opt/py/bin/python"])
    conf = read_cfg(emr_override_cfg(OVERRIDE, chosen))["spark"]["conf"]
    assert conf == (
        f"spark.pyspark.python=/opt/py/bin/python"
        f"|spark.pyspark.driver.python={EMR_HOME}/venv/bin/python"
    )


def test_emr_override_cfg_refuses_text_that_is_no_config():
    with pytest.raises(InvalidInput, match="override.cfg"):
        emr_override_cfg("engine = spark\n", SparkSettings())


def test_step_command_line_runs_launch_task_in_the_home_with_emrs_spark():
    argv = step_command_line(TASK)
    assert argv[:2] == ["bash", "-c"]
    assert argv[2] == (
        f"cd {EMR_HOME} && export SPARK_HOME=/usr/lib/spark PYTHONPATH=/usr/lib/spark/python:"
        "$(echo /usr/lib/spark/python/lib/py4j-*-src.zip)${PYTHONPATH:+:$PYTHONPATH} && exec "
        f"{EMR_HOME}/venv/bin/launch-task TotalEventsDailyTask --interval 2016 --local-scheduler"
    )


def test_step_command_line_on_one_machine_runs_for_real(tmp_path):
    # the same line with another home and program: what runs is launch-task in that directory
    program = tmp_path / "launch-task"
    program.write_text('#!/bin/sh\npwd > ran.txt\necho "$@" >> ran.txt\n')
    program.chmod(0o755)
    argv = step_command_line(
        [*TASK[:1], "--source", '["s3://b/it\'s/"]'],
        home=str(tmp_path),
        launch_task=str(program),
        spark_home=None,
    )
    subprocess.run(argv, check=True)
    assert (tmp_path / "ran.txt").read_text().splitlines() == [
        str(tmp_path),
        'TotalEventsDailyTask --source ["s3://b/it\'s/"]',
    ]


def test_step_definitions_are_command_runner_steps_that_cancel_the_rest_on_failure():
    steps = step_definitions([TASK, ["ImportEnrollmentsIntoMysql", "--interval", "2016"]])
    assert [s["Name"] for s in steps] == [
        "01 TotalEventsDailyTask",
        "02 ImportEnrollmentsIntoMysql",
    ]
    assert {s["ActionOnFailure"] for s in steps} == {"CANCEL_AND_WAIT"}
    assert steps[0]["HadoopJarStep"] == {
        "Jar": "command-runner.jar",
        "Args": step_command_line(TASK),
    }


@pytest.mark.parametrize("words", [[], ["--interval", "2016"], ["rm -rf /"]])
def test_a_step_without_a_task_name_is_refused(words):
    with pytest.raises(InvalidInput, match="expected a task name"):
        step_command_line(words)


def test_step_stderr_key_is_where_emr_writes_it():
    assert step_stderr_key("s3://logs-bucket/emr/", "j-1", "s-2") == (
        "logs-bucket",
        "emr/j-1/steps/s-2/stderr.gz",
    )


def listed(*states):
    # ListSteps answers newest first
    return [
        {"Id": f"s-{i}", "Name": f"0{i} T", "Status": {"State": state}}
        for i, state in reversed(list(enumerate(states)))
    ]


def test_step_states_in_added_order_and_the_first_failure():
    steps = step_states(listed("COMPLETED", "FAILED", "CANCELLED"), ["s-0", "s-1", "s-2"])
    assert [s.state for s in steps] == ["COMPLETED", "FAILED", "CANCELLED"]
    assert first_failed(steps).id == "s-1"
    assert steps_finished(steps)
    running = step_states(listed("COMPLETED", "RUNNING", "PENDING"), ["s-0", "s-1", "s-2"])
    assert first_failed(running) is None and not steps_finished(running)
    assert steps_finished(step_states(listed("COMPLETED"), ["s-0"]))


def test_instance_hours_per_group_until_its_end_the_clusters_or_now():
    t0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    groups = [
        {
            "InstanceGroupType": "MASTER",
            "InstanceType": "m5.xlarge",
            "Market": "ON_DEMAND",
            "RequestedInstanceCount": 1,
            "RunningInstanceCount": 1,
            "Status": {"Timeline": {"CreationDateTime": t0}},
        },
        {
            "InstanceGroupType": "CORE",
            "InstanceType": "m5.2xlarge",
            "Market": "SPOT",
            "RequestedInstanceCount": 3,
            "RunningInstanceCount": 0,
            "Status": {
                "Timeline": {"CreationDateTime": t0, "EndDateTime": t0 + dt.timedelta(minutes=30)}
            },
        },
    ]
    used = instance_hours(groups, t0 + dt.timedelta(hours=2), t0 + dt.timedelta(hours=5))
    assert [(u.group, u.count, u.hours, u.instance_hours) for u in used] == [
        ("MASTER", 1, 2.0, 2.0),
        ("CORE", 3, 0.5, 1.5),
    ]
    assert instance_hours(groups[:1], None, t0 + dt.timedelta(hours=5))[0].hours == 5.0
    assert instance_hours_table(used)[-1] == {
        "group": "total",
        "instance_type": "",
        "market": "",
        "instances": 4,
        "hours": "",
        "instance_hours": 3.5,
    }


# -- preflight verdicts on describe_* answers (the shapes boto3 returns) -----------------------


def test_dns_hostnames():
    assert assess_dns_hostnames("vpc-1", True).ok
    off = assess_dns_hostnames("vpc-1", False)
    assert not off.ok and "stuck in provisioning" in off.detail
    assert "--enable-dns-hostnames" in off.fix


IGW = {"InternetGatewayId": "igw-1", "Attachments": [{"VpcId": "vpc-1", "State": "available"}]}


def table(name, routes, main=False, subnet=None):
    associations = [{"Main": main, **({"SubnetId": subnet} if subnet else {})}]
    return {"RouteTableId": name, "VpcId": "vpc-1", "Associations": associations, "Routes": routes}


DEFAULT_ROUTE = {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "igw-1", "State": "active"}
LOCAL = {"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local", "State": "active"}


def test_internet_route_through_the_main_table_or_the_subnets_own():
    ok = assess_internet_route(
        "vpc-1", "subnet-1", [IGW], [table("rtb-m", [LOCAL, DEFAULT_ROUTE], main=True)]
    )
    assert ok.ok and "rtb-m: 0.0.0.0/0 -> igw-1" in ok.detail
    # the subnet's own table wins over the main one
    own = assess_internet_route(
        "vpc-1",
        "subnet-1",
        [IGW],
        [
            table("rtb-m", [LOCAL, DEFAULT_ROUTE], main=True),
            table("rtb-s", [LOCAL], subnet="subnet-1"),
        ],
    )
    assert not own.ok and "rtb-s" in own.detail and "create-route --route-table-id rtb-s" in own.fix


def test_no_internet_gateway_names_how_to_attach_one():
    detached = {"InternetGatewayId": "igw-2", "Attachments": []}
    check = assess_internet_route("vpc-1", "subnet-1", [detached], [table("rtb-m", [LOCAL], True)])
    assert not check.ok and check.check == "internet gateway"
    assert "attach-internet-gateway --vpc-id vpc-1" in check.fix


def test_roles_profile_and_bucket_verdicts():
    assert assess_role("EMR_DefaultRole", True, "EMR").ok
    missing = assess_role("EMR_DefaultRole", False, "EMR's service role")
    assert "aws emr create-default-roles" in missing.fix
    assert not assess_instance_profile("EMR_EC2_DefaultRole", None).ok
    empty = assess_instance_profile("EMR_EC2_DefaultRole", [])
    assert not empty.ok and "add-role-to-instance-profile" in empty.fix
    assert assess_instance_profile("EMR_EC2_DefaultRole", ["EMR_EC2_DefaultRole"]).ok
    assert "aws s3 mb s3://logs" in assess_log_bucket("logs", False, None).fix
    assert "s3:PutObject" in assess_log_bucket("logs", True, "AccessDenied").fix
    assert assess_log_bucket("logs", True, None).ok


def test_refusal_lists_every_failed_check_with_its_fix():
    checks = [
        assess_dns_hostnames("vpc-1", False),
        assess_role("R", True, "x"),
        assess_log_bucket("logs", False, None),
    ]
    with pytest.raises(EmrPreflightRefused) as refused:
        refuse_failed_checks(checks)
    message = str(refused.value)
    assert "nothing was created" in message
    assert "vpc dns hostnames" in message and "log bucket logs" in message
    assert "role R" not in message and message.count("-> fix:") == 2
    refuse_failed_checks(checks[1:2])  # all passed: no error


# -- the sweeper --------------------------------------------------------------------------------


OURS = [{"Key": "project", "Value": "edx-ops-flows"}, {"Key": "flow-run", "Value": "r-1"}]


@pytest.mark.parametrize(
    ("tags", "run_state", "action", "reason"),
    [
        (OURS, "RUNNING", "keep", "its flow run is RUNNING"),
        (OURS, "CANCELLING", "keep", "its flow run is CANCELLING"),
        (OURS, "CRASHED", "terminate", "its flow run is CRASHED"),
        (OURS, "COMPLETED", "terminate", "its flow run is COMPLETED"),
        (OURS, None, "terminate", "its flow run does not exist"),
        (OURS[:1], None, "keep", "no flow-run tag"),
        ([{"Key": "project", "Value": "other"}, OURS[1]], None, "keep", "not tagged by this"),
        ([], None, "keep", "not tagged by this project"),
    ],
)
def test_cluster_verdict(tags, run_state, action, reason):
    verdict = cluster_verdict("j-1", "c", tags, run_state)
    assert verdict.action == action and verdict.reason.startswith(reason)
