"""`python -m tasks.alarms`'s command line: its help, and bad input named without a traceback
(no Prefect API needed; the alarms themselves are tested on a server in
tests/integration/test_health_alarms.py)."""

from __future__ import annotations

import pytest

from tasks.alarms import main


def test_help_names_the_command_and_the_alarms(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m tasks.alarms [-h] [--notify-block NOTIFY_BLOCK]")
    for alarm in ("failed-or-crashed-run", "missed-<deployment>", "silent-<deployment>"):
        assert alarm in out


def test_a_malformed_notify_block_is_named_with_exit_status_2(capsys):
    assert main(["--notify-block", "ops-alarms"]) == 2
    err = capsys.readouterr().err
    assert "notify block 'ops-alarms': expected `<block type slug>/<name>`" in err
    assert "Traceback" not in err
