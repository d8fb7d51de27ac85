"""Completing a partly given model parameter from the deployment's values (domain/parameters.py)."""

import pytest
from pydantic import ValidationError

from domain.parameters import complete
from flows.host_setup import PipelineSetup
from pipeline_config.render import OverrideSettings


def test_fields_not_given_come_from_the_deployment_at_any_depth():
    given = OverrideSettings.model_validate(
        {"elasticsearch_host": "http://es:9200/", "event_logs": {"source": ["/given/"]},
         "warehouse_path": "/given/warehouse/"}
    )  # fmt: skip
    deployed = {"elasticsearch_host": "http://deployed:9200/", "warehouse_path": "/deployed/",
                "event_logs": {"source": ["/deployed/"], "pattern": [".*deployed.*"]}}  # fmt: skip
    completed, taken = complete(given, deployed, "override")
    assert completed.elasticsearch_host == "http://es:9200/"
    assert completed.warehouse_path == "/given/warehouse/"
    assert completed.event_logs.source == ["/given/"]
    assert completed.event_logs.pattern == [".*deployed.*"]
    assert taken == [("override.event_logs.pattern", [".*deployed.*"])]


def test_a_complete_model_or_no_deployment_value_changes_nothing():
    given = PipelineSetup(installer="uv")
    assert complete(given, None, "pipeline") == (given, [])
    assert complete(given, {"installer": "pip", "unknown": 1}, "pipeline") == (given, [])
    assert complete(None, {"installer": "pip"}, "pipeline") == (None, [])


def test_the_completed_model_is_validated_again():
    with pytest.raises(ValidationError, match="repo"):
        complete(PipelineSetup(installer="uv"), {"source": "git"}, "pipeline")
