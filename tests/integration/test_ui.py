"""The Prefect UI as operators see it, in a real browser: every deployment's run form shows each
parameter's description as written, and a flow run's table artifacts are rendered as tables;
and what the form's Submit sends with a blank required string is refused, naming the field.

One `prefect server start` with its UI, `prefect deploy --all` from this repository's
prefect.yaml, and one headless Chromium (Debian's `chromium`, driven by Playwright; Playwright's
own browser download is never used) for every page. The UI renders descriptions as Markdown
(HTML tags removed), so `<stack>` outside a code span vanishes from the page: the check compares
the page's text with each description's text as Markdown shows it (`tests.parameter_schema`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import sync_playwright
from prefect.exceptions import PrefectHTTPStatusError

from tests.bed.prefect_server import PrefectServer, tail
from tests.bed.programs import require_programs
from tests.integration.test_deployment_e2e import REPO_ROOT, work_pools_in_prefect_yaml
from tests.parameter_schema import described_fields, visible_text

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PAGE_TIMEOUT_MS = 30_000
DEPLOYMENTS = {
    "daily", "nightly-backup", "analytics-stack", "analytics-host-setup", "analytics-remote-tasks",
}  # fmt: skip
DEPLOYMENTS |= {"aws-analytics", "aws-analytics-destroy", "aws-analytics-databases"}
DEPLOYMENTS |= {"ha-health"}  # check-ha-health (flows/ha_health.py)
DEPLOYMENTS |= {"aws-analytics-host"}  # setup-aws-analytics-host
DEPLOYMENTS |= {"emr-pipeline", "emr-sweeper"}  # run-pipeline-on-emr, sweep-emr-clusters


def page_text(page) -> str:
    return " ".join(page.inner_text("body").split())


def shows(page, text: str, shown: str) -> bool:
    """`text` is in the page's text (`shown`, read once), or appears within a few seconds
    (a nested section still rendering)."""
    if text in shown:
        return True
    try:
        page.wait_for_function(
            "t => document.body.innerText.split(/\\s+/).join(' ').includes(t)",
            arg=text,
            timeout=5_000,
        )
    except PlaywrightTimeoutError:
        return False
    return True


def expand_optional_sections(page) -> None:
    """Select the non-None type of every optional parameter shown as None (e.g. an optional
    override_config), so that its nested fields and their descriptions are on the page."""
    for _round in range(10):
        clicked = page.evaluate(
            """() => {
              let clicked = 0;
              for (const group of document.querySelectorAll('.p-button-group')) {
                const buttons = [...group.querySelectorAll('button.p-button-group__button')];
                const selected = buttons.find(b => b.getAttribute('aria-selected') === 'true');
                const other = buttons.find(b => b.textContent.trim() !== 'None');
                if (selected && selected.textContent.trim() === 'None' && other) {
                  other.click();
                  clicked++;
                }
              }
              return clicked;
            }"""
        )
        if not clicked:
            return


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory) -> Iterator[PrefectServer]:
    """A Prefect server with its UI, and every deployment of prefect.yaml deployed to it."""
    server = PrefectServer(tmp_path_factory.mktemp("prefect-ui-server"), ui=True)
    try:
        server.start()
        for pool in sorted(work_pools_in_prefect_yaml()):
            server.prefect("work-pool", "create", pool, "--type", "process")
        server.prefect("--no-prompt", "deploy", "--all", cwd=REPO_ROOT)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    require_programs({} if CHROMIUM.exists() else {"chromium": "chromium"}, "browser")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_every_run_form_shows_every_parameter_description_as_written(ui_server, page):
    with ui_server.client() as client:
        deployments = client.read_deployments()
    assert {d.name for d in deployments} == DEPLOYMENTS
    missing, cut = [], []
    for deployment in sorted(deployments, key=lambda d: d.name):
        fields = list(described_fields(deployment.parameter_openapi_schema))
        missing += [f"{deployment.name}: {name}" for name, text in fields if not text]
        page.goto(f"{ui_server.url}/deployments/deployment/{deployment.id}/run")
        page.wait_for_load_state("networkidle")
        first = next(visible_text(text) for _name, text in fields if text)
        page.get_by_text(first[:40]).first.wait_for()  # the form is there
        expand_optional_sections(page)
        shown = page_text(page)
        for name, text in fields:
            if text and not shows(page, visible_text(text), shown):
                cut.append(f"{deployment.name}: {name}: {visible_text(text)!r}")
    assert not (missing or cut), (
        "parameters without a description:\n" + "\n".join(missing)
        + "\ndescriptions not shown as written on the run form:\n" + "\n".join(cut)
    )  # fmt: skip


def test_a_flow_runs_table_artifacts_are_rendered_as_tables(ui_server, page, tmp_path):
    from pipeline.samples import SampleSpec, generate_lms_database, generate_logs

    spec = SampleSpec(days=2, servers=1, lines_per_file=500, users=50)
    generate_logs(tmp_path / "tracking-logs", spec)  # where the flow's defaults look
    generate_lms_database(tmp_path / "edxapp.sqlite", spec)
    run = subprocess.run(
        [sys.executable, "-m", "flows.analytics", "--interval", "2016-03-01-2016-03-03"],
        cwd=tmp_path, env={**ui_server.env(), "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{tail(ui_server.log_path)}"
    with ui_server.client() as client:
        (flow_run,) = client.read_flow_runs()
        tables = [a for a in client.read_artifacts() if a.type == "table"]
    assert {a.key for a in tables} == {"events-per-day", "enrollments-per-course",
                                       "discarded-lines"}  # fmt: skip

    for artifact in sorted(tables, key=lambda a: a.key):
        page.goto(f"{ui_server.url}/runs/flow-run/{flow_run.id}")
        page.wait_for_load_state("networkidle")
        page.locator("li.p-tab#artifacts").click()  # the tab, as a user clicks it
        page.get_by_text(artifact.key, exact=True).click()
        table = page.locator("table")
        table.wait_for()
        header = [" ".join(c.split()) for c in table.locator("th").all_inner_texts()]
        rows = [
            [" ".join(c.split()) for c in row.locator("td").all_inner_texts()]
            for row in table.locator("tbody tr").all()
        ]
        data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        assert data, artifact.key
        assert header == list(data[0]), (artifact.key, header)
        assert rows == [[str(v) for v in record.values()] for record in data], artifact.key
        assert re.search(re.escape(artifact.description), page_text(page)), artifact.key


@pytest.mark.parametrize("node", ["", "   "])
def test_a_run_with_a_blank_node_is_refused_by_the_api_naming_the_field(ui_server, node):
    # what the run form's Submit sends; the deployment's schema (pattern \S) is enforced
    with ui_server.client() as client:
        deployment = client.read_deployment_by_name("backup-backend-node/nightly-backup")
        with pytest.raises(PrefectHTTPStatusError) as refused:
            client.create_flow_run_from_deployment(deployment.id, parameters={"node": node})
        assert not any(r.deployment_id == deployment.id for r in client.read_flow_runs())
    assert refused.value.response.status_code == 409
    assert "Validation failed for field 'node'" in str(refused.value), str(refused.value)
