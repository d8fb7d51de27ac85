"""override.cfg rendering: validated settings in, a file the pipeline's config chain reads back."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import luigi
import pytest
from pydantic import ValidationError

import pipeline_config.render
from pipeline import config
from pipeline.core.engine import ENGINES
from pipeline.enrollment_loads import ImportEnrollmentsIntoMysql
from pipeline_config.render import OverrideSettings, render_override_cfg

SETTINGS = {
    "elasticsearch_host": "http://192.168.122.111:9201/",
    "event_logs": {
        "source": ["s3://acme-tracking-logs/logs/", "/edx/var/log/tracking/"],
        "pattern": [r".*tracking.log-(?P<date>\d{8}).*\.gz"],
        "expand_interval": "1 week",
    },
    "warehouse_path": "s3://acme-analytics/warehouse 100%/",
    "engine": "hadoop",
    "database_export": {
        "database": "reports",
        "credentials": "/edx/etc/edx-analytics-pipeline/output.json",
    },
    "database_import": {
        "database": "edxapp",
        "credentials": "/edx/etc/edx-analytics-pipeline/input.json",
    },
}


@pytest.fixture
def read_back(tmp_path: Path):
    """Render, write, and load through pipeline.config as launch-task --additional-config
    does; the previous configuration is restored afterwards."""

    def load(settings) -> luigi.configuration.LuigiConfigParser:
        path = tmp_path / "override.cfg"
        path.write_text(render_override_cfg(settings))
        return config.configure(additional=[str(path)])

    yield load
    config.configure()


def test_docstring_examples_hold():
    result = doctest.testmod(pipeline_config.render)
    assert (result.failed, result.attempted > 0) == (0, True)


def test_rendered_values_read_back_through_the_config_chain(read_back):
    parser = read_back(SETTINGS)
    assert parser.get("elasticsearch", "host") == "http://192.168.122.111:9201/"
    assert json.loads(parser.get("event-logs", "source")) == SETTINGS["event_logs"]["source"]
    assert json.loads(parser.get("event-logs", "pattern")) == SETTINGS["event_logs"]["pattern"]
    assert parser.get("event-logs", "expand_interval") == "1 week"
    # A literal % survives luigi's %-interpolation.
    assert parser.get("hive", "warehouse_path") == "s3://acme-analytics/warehouse 100%/"
    assert parser.get("map-reduce", "engine") == "hadoop"
    assert config.get("database-export", "credentials") == (
        "/edx/etc/edx-analytics-pipeline/output.json"
    )
    assert config.get("database-import", "database") == "edxapp"


def test_pipeline_tasks_take_their_parameters_from_the_rendered_file(read_back):
    read_back(SETTINGS)
    task = ImportEnrollmentsIntoMysql(interval=luigi.date_interval.Year(2016))
    assert list(task.source) == SETTINGS["event_logs"]["source"]
    assert list(task.pattern) == SETTINGS["event_logs"]["pattern"]
    assert task.expand_interval == "1 week"
    assert task.warehouse_path == SETTINGS["warehouse_path"]
    assert task.mapreduce_engine == "hadoop"
    assert (task.database, task.credentials) == (
        "reports",
        "/edx/etc/edx-analytics-pipeline/output.json",
    )
    assert task.import_credentials == "/edx/etc/edx-analytics-pipeline/input.json"


def test_defaults_leave_sqlite_and_the_pipeline_patterns(read_back):
    embedded = json.loads(config.configure().get("event-logs", "pattern"))
    minimal = {
        "elasticsearch_host": "https://es.example.org",
        "event_logs": {"source": ["/edx/var/log/tracking/"]},
        "warehouse_path": "/edx/var/analytics/warehouse/",
    }
    text = render_override_cfg(minimal)
    assert "credentials =\n" in text and " \n" not in text
    parser = read_back(minimal)
    assert config.get("database-export", "credentials") is None  # empty: SQLite
    assert parser.get("database-export", "database") == "reports"
    assert parser.get("database-import", "database") == "edxapp"
    assert json.loads(parser.get("event-logs", "pattern")) == embedded


def test_the_engine_choices_are_the_pipelines():
    schema = OverrideSettings.model_json_schema()
    assert tuple(schema["properties"]["engine"]["enum"]) == ENGINES


def test_no_password_can_reach_the_file():
    text = render_override_cfg(SETTINGS)
    assert "password =" not in text.lower()
    with_password = {**SETTINGS, "database_export": {"database": "reports", "password": "s3cr3t"}}
    with pytest.raises(ValidationError, match=r"database_export\.password"):
        render_override_cfg(with_password)
    pasted = {**SETTINGS, "database_import": {"database": "edxapp", "credentials": '{"host": 1}'}}
    with pytest.raises(ValidationError, match="path of a JSON credentials file"):
        render_override_cfg(pasted)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"elasticsearch": "http://x:9201/"}, r"elasticsearch\s+Extra inputs are not permitted"),
        ({"event_logs": {"source": ["/logs/"], "sorce": []}}, r"event_logs\.sorce"),
        ({"elasticsearch_host": "192.168.122.111:9201"}, "expected an http:// or https:// URL"),
        ({"elasticsearch_host": "http://es:port/"}, "elasticsearch_host 'http://es:port/'"),
        ({"elasticsearch_host": "http://u:p@es:9200/"}, "credentials do not belong in the URL"),
        ({"warehouse_path": "hdfs://localhost:9000/warehouse/"}, "unsupported scheme hdfs://"),
        ({"event_logs": {"source": []}}, r"event_logs\.source"),
        ({"event_logs": {"source": ["/logs/"], "pattern": ["(unclosed"]}}, "event_logs.pattern"),
        ({"event_logs": {"source": ["/logs/"], "expand_interval": "2 fortnights"}}, "2 fortnights"),
        ({"engine": "yarn"}, "engine"),
        ({"warehouse_path": "/data\n[hive]\nwarehouse_path = /elsewhere"}, "line breaks"),
        ({"warehouse_path": "${HOME}/warehouse"}, "expanded from the environment"),
        ({"warehouse_path": " /data"}, "leading or trailing blanks"),
        (
            {"database_export": {"database": "reports", "credentials": "output.json"}},
            "absolute, normalised path",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_key(change, message):
    with pytest.raises(ValidationError, match=message):
        render_override_cfg({**SETTINGS, **change})


def test_output_is_stable_and_sectioned_like_the_seed():
    text = render_override_cfg(SETTINGS)
    assert text == render_override_cfg(OverrideSettings.model_validate(SETTINGS))
    sections = [line for line in text.splitlines() if line.startswith("[")]
    assert sections == [
        "[elasticsearch]",
        "[event-logs]",
        "[hive]",
        "[map-reduce]",
        "[database-export]",
        "[database-import]",
    ]
    assert "[elasticsearch]\nhost = http://192.168.122.111:9201/\n" in text
