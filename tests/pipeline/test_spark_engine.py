"""The Spark engine's own behaviour: settings, errors, progress, the fast-path warning.

Everything a task computes is checked on both engines by the parametrized pipeline tests; this
module covers what only Spark has, on the test session's Spark (no JVM of its own). Mappers
defined inside a test travel to the executors by value (cloudpickle), as a site's travel by
reference to the installed pipeline.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading

import pytest

from pipeline.core import spark_engine
from pipeline.core.engine import FileResult
from pipeline.core.extraction import count_file
from pipeline.core.selection import SelectedFile
from pipeline.errors import InvalidInput
from pipeline.samples import SampleSpec, generate_logs
from tests.pipeline.conftest import GZ_PATTERN, REPO, SPARK_SETTINGS, Workspace

TEST_SETTINGS = spark_engine.SparkSettings.parse(SPARK_SETTINGS)


# -- settings ----------------------------------------------------------------------------------


def test_spark_settings_default_to_every_local_core():
    settings = spark_engine.SparkSettings.parse({})
    assert settings.master == "local[*]"
    conf = settings.spark_conf()
    assert conf["spark.app.name"] == "edx-analytics-pipeline"
    assert "spark.driver.memory" not in conf and "spark.executor.cores" not in conf


def test_spark_settings_read_upstreams_keys_and_the_conf_pairs():
    settings = spark_engine.SparkSettings.parse({
        "master": " yarn ", "driver-memory": "2g", "executor-memory": "3G",
        "executor-cores": "4", "conf": "spark.eventLog.enabled=true| spark.eventLog.dir = "
        "s3://logs/spark |spark.executor.memory=1g|",
    })  # fmt: skip
    assert settings.master == "yarn"
    conf = settings.spark_conf()
    assert conf["spark.eventLog.enabled"] == "true"
    assert conf["spark.eventLog.dir"] == "s3://logs/spark"
    assert conf["spark.driver.memory"] == "2g"
    assert conf["spark.executor.memory"] == "3G"  # the dedicated key wins over conf
    assert conf["spark.executor.cores"] == "4"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"conf": "spark.eventLog.enabled"}, "'spark.eventLog.enabled' is not key=value"),
        ({"conf": "spark.a=1|=2"}, "'=2' is not key=value"),
        ({"conf": "eventLog.enabled=true"}, "'eventLog.enabled' is not a Spark setting"),
        ({"driver-memory": "2 GB"}, "[spark] driver-memory '2 GB'"),
        ({"executor-memory": "lots"}, "[spark] executor-memory 'lots'"),
        ({"executor-cores": "0"}, "[spark] executor-cores '0'"),
    ],
)
def test_spark_settings_that_cannot_be_used_are_named(options, named):
    with pytest.raises(InvalidInput) as error:
        spark_engine.SparkSettings.parse(options)
    assert named in str(error.value)


@pytest.mark.parametrize(
    ("engine", "override", "named"),
    [
        ("spark", "[spark]\nconf = spark.ui.enabled=false|spark.oops\n",
         "InvalidInput: [spark] conf: 'spark.oops'"),
        ("local", "[map-reduce]\nengine = sparkk\n",
         "InvalidInput: [map-reduce] engine 'sparkk': expected one of "
         "('local', 'hadoop', 'emu', 'spark')"),
    ],
    ids=["spark-conf", "engine"],
)  # fmt: skip
def test_a_bad_engine_setting_fails_the_task_naming_it(tmp_path, engine, override, named):
    workspace = Workspace(tmp_path, engine)
    workspace.write_log("tracking.log-20160301.gz", [{"time": "2016-03-01T01:00:00"}])
    (tmp_path / "override.cfg").write_text(override)
    result = workspace.launch(
        "TotalEventsDailyTask", "--local-scheduler", "--interval", "2016-03-01",
        *workspace.source_args(), "--output-root", "out/",
    )  # fmt: skip
    assert result.returncode == 30, result.output
    assert f"FAILED TotalEventsDailyTask: {named}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_spark_engine_without_pyspark_says_how_to_install_it(tmp_path):
    workspace = Workspace(tmp_path)
    workspace.write_log("tracking.log-20160301.gz", [{"time": "2016-03-01T01:00:00"}])
    (tmp_path / "override.cfg").write_text("[map-reduce]\nengine = spark\n")
    # None in sys.modules is how Python spells "this package is not installed here".
    script = (
        "import sys; sys.modules['pyspark'] = None; sys.modules['pyspark.sql'] = None\n"
        "from pipeline.launch import main; sys.exit(main())"
    )
    args = ["TotalEventsDailyTask", "--local-scheduler", "--interval", "2016-03-01",
            *workspace.source_args(), "--output-root", "out/"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 30, proc.stderr
    assert "SparkUnavailable: [map-reduce] engine = spark needs pyspark" in proc.stderr
    assert "pip install 'edx-ops-flows[spark]'" in proc.stderr
    assert not (tmp_path / "out").exists()


# -- the engine on the session's Spark ---------------------------------------------------------


def sample_files(directory) -> list[SelectedFile]:
    paths = generate_logs(directory, SampleSpec(days=2, servers=2, lines_per_file=300))
    return [SelectedFile(str(p), p.stat().st_size) for p in paths]


def test_spark_map_reports_each_finished_file_in_the_callers_thread(spark_session, tmp_path):
    files = sample_files(tmp_path)
    seen = []
    mapper = functools.partial(count_file, max_line_bytes=1 << 20)
    results = list(spark_engine.map_files(
        mapper, files, TEST_SETTINGS,
        progress=lambda state: seen.append((state.files_done, threading.current_thread())),
    ))  # fmt: skip
    assert sorted(r.url for r in results) == sorted(f.url for f in files)
    assert [r.url for r in results] == [f.url for f in sorted(files, key=lambda f: -f.size)]
    assert sum(r.lines for r in results) == 4 * 300
    assert sorted({done for done, _ in seen} - {0}) == [1, 2, 3, 4]  # each file as it ended
    assert {thread for _, thread in seen} == {threading.current_thread()}


def test_spark_map_with_a_failing_file_raises_its_error_and_yields_nothing(spark_session, tmp_path):
    files = sample_files(tmp_path)
    bad = files[1].url

    def mapper(url, on_position):
        if url == bad:
            raise ValueError(f"{url}: cannot be read")
        return FileResult(url, 1, {})

    results = []
    with pytest.raises(ValueError, match="cannot be read") as error:
        results.extend(spark_engine.map_files(mapper, files, TEST_SETTINGS))
    assert str(error.value) == f"{bad}: cannot be read"  # the mapper's own error, as locally
    assert results == []


def test_spark_map_names_the_file_when_its_error_does_not(spark_session, tmp_path):
    files = sample_files(tmp_path)

    class Unpicklable(Exception):
        def __reduce__(self):
            raise TypeError("no")

    def mapper(url, on_position):
        if url == files[0].url:
            raise KeyError("time")
        if url == files[2].url:
            raise Unpicklable("a lock inside")
        return FileResult(url, 1, {})

    with pytest.raises(spark_engine.SparkFileFailed) as error:
        list(spark_engine.map_files(mapper, files[:1], TEST_SETTINGS))
    assert str(error.value) == f"{files[0].url}: KeyError: 'time'"
    with pytest.raises(spark_engine.SparkFileFailed) as error:
        list(spark_engine.map_files(mapper, files[2:3], TEST_SETTINGS))
    assert str(error.value).startswith(f"{files[2].url}: Unpicklable: a lock inside")


def test_spark_map_names_the_file_whose_python_worker_died(spark_session, tmp_path):
    files = sample_files(tmp_path)
    doomed = files[3].url

    def mapper(url, on_position):
        if url == doomed:
            os._exit(3)  # what the kernel's OOM killer or a crash in C leaves behind
        return FileResult(url, 1, {})

    with pytest.raises(spark_engine.SparkFileFailed) as error:
        list(spark_engine.map_files(mapper, files, TEST_SETTINGS))
    assert str(error.value).startswith(f"{doomed}: the Spark task reading it failed: ")
    # the session survives its worker: the next map runs
    assert len(list(spark_engine.map_files(mapper, files[:2], TEST_SETTINGS))) == 2


def test_spark_session_has_the_settings_and_is_reused_within_the_process(spark_session):
    conf = spark_session.sparkContext.getConf()
    assert spark_session.sparkContext.master == "local[2]"
    assert conf.get("spark.ui.enabled") == "false"  # from [spark] conf
    assert conf.get("spark.app.name") == "edx-analytics-pipeline"
    assert spark_engine.session(TEST_SETTINGS) is spark_session
    assert spark_engine.startup_seconds() > 0


# -- the C fast path on executors --------------------------------------------------------------


def test_spark_executors_without_the_fast_path_warn_in_the_run_summary(spark_session, tmp_path):
    """Executors told to leave the C scanner aside (what ``[spark] conf =
    spark.executorEnv.PIPELINE_PURE_PYTHON=1`` puts into the context's executor environment at
    start-up): the counts are the same, and the summary says what was slower."""
    workspace = Workspace(tmp_path, "spark")
    generate_logs(workspace.logs, SampleSpec(days=2, servers=1, lines_per_file=500))
    args = ["TotalEventsDailyTask", "--local-scheduler", "--interval", "2016-03",
            *workspace.source_args(GZ_PATTERN)]  # fmt: skip
    fast = workspace.launch(*args, "--output-root", "fast/")
    assert fast.returncode == 0, fast.output
    environment = spark_session.sparkContext.environment
    environment["PIPELINE_PURE_PYTHON"] = "1"
    try:
        result = workspace.launch(*args, "--output-root", "slow/")
    finally:
        del environment["PIPELINE_PURE_PYTHON"]
    assert result.returncode == 0, result.output
    assert (tmp_path / "slow/part-00000").read_bytes() == (
        tmp_path / "fast/part-00000"
    ).read_bytes()
    summary = result.stderr[result.stderr.index("Pipeline run summary:") :]
    assert "warning: the C fast path was not used on some Spark executors" in summary
    assert "PIPELINE_PURE_PYTHON is set" in summary
    assert "warning:" not in fast.stderr


def test_spark_executors_with_the_fast_path_say_nothing(spark_session, tmp_path):
    files = sample_files(tmp_path)
    warnings = []
    mapper = functools.partial(count_file, max_line_bytes=1 << 20)
    list(spark_engine.map_files(mapper, files, TEST_SETTINGS, warn=warnings.append))
    assert warnings == []
    assert spark_engine.fast_path_here().reason is None  # built here, so on the executors too


def test_spark_and_local_outputs_are_byte_for_byte_the_same(spark_session, tmp_path):
    outputs = {}
    for engine in ("local", "spark"):
        (tmp_path / engine).mkdir()
        workspace = Workspace(tmp_path / engine, engine)
        generate_logs(workspace.logs, SampleSpec(days=3, servers=2, lines_per_file=1000))
        source = ["--source", json.dumps([str(workspace.logs) + "/"])]
        for task, output in (("TotalEventsDailyTask", ["--output-root", "total/"]),
                             ("CourseEnrollmentEventsTask", [])):  # fmt: skip
            result = workspace.launch(task, "--local-scheduler", "--interval", "2016-03",
                                      *source, *output)  # fmt: skip
            assert result.returncode == 0, result.output
        root = workspace.root
        outputs[engine] = {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.parts[len(root.parts)] in ("total", "warehouse")
        }
    assert outputs["spark"] == outputs["local"]
    assert len(outputs["local"]) > 30  # part-00000, _SUCCESS and a file per day of March
