"""Backup snapshot names and the rotation plan: which snapshots a run keeps and deletes."""

from __future__ import annotations

import datetime as dt

import pytest

from domain.snapshots import SnapshotInfo, parse_snapshot_name, plan_rotation, snapshot_name
from pipeline.errors import InvalidInput

SERVER = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
OTHER_SERVER = "11111111-2222-3333-4444-555555555555"
VOLUME = "vol-mysql"


def snap(name, status="available", volume=VOLUME, snap_id=None, created_at=""):
    return SnapshotInfo(snap_id or name, name, volume, status, created_at)


def backup(day: int, pattern="mysql_data", server=SERVER, **kwargs):
    return snap(f"{pattern}-{server}-202601{day:02d}-010500", **kwargs)


# -- naming ------------------------------------------------------------------------------------


def test_snapshot_name_follows_the_original_scheme_in_utc():
    when = dt.datetime(2026, 3, 1, 1, 5, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))

    assert snapshot_name("mysql_data", SERVER, when) == f"mysql_data-{SERVER}-20260228-230509"
    assert parse_snapshot_name(f"mysql_data-{SERVER}-20260228-230509", "mysql_data") == (
        dt.datetime(2026, 2, 28, 23, 5, 9, tzinfo=dt.UTC)
    )


@pytest.mark.parametrize(
    "name",
    [
        f"mongodb_data-{SERVER}-20260101-010500",  # another pattern
        "mysql_data-backend1-20260101-010500",  # no server UUID
        f"mysql_data-{SERVER}-20261399-010500",  # not a date
        f"mysql_data-{SERVER}-20260101-010500-copy",
        f"old-mysql_data-{SERVER}-20260101-010500",
        "manual-before-upgrade",
        "",
    ],
)
def test_names_outside_the_scheme_are_not_backups(name):
    assert parse_snapshot_name(name, "mysql_data") is None


def test_pattern_is_literal_not_a_regex():
    assert parse_snapshot_name(f"mysqlXdata-{SERVER}-20260101-010500", "mysql.data") is None


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_keeps_the_newest_including_the_new_one_and_deletes_oldest_first():
    old = [backup(day) for day in (4, 1, 3, 2)]
    new = backup(20)

    plan = plan_rotation(old + [new], volume_id=VOLUME, pattern="mysql_data", keep=3,
                         new_snapshot_ids=[new.id])  # fmt: skip

    assert [s.id for s in plan.keep] == [new.id, backup(4).id, backup(3).id]
    assert [s.id for s in plan.delete] == [backup(1).id, backup(2).id]


def test_keep_one_deletes_every_earlier_backup():
    new = backup(20)
    plan = plan_rotation([backup(1), backup(2), new], volume_id=VOLUME, pattern="mysql_data",
                         keep=1, new_snapshot_ids=[new.id])  # fmt: skip

    assert plan.keep == (new,) and len(plan.delete) == 2


def test_fewer_backups_than_keep_deletes_nothing():
    plan = plan_rotation([backup(1), backup(2)], volume_id=VOLUME, pattern="mysql_data", keep=3)

    assert plan.delete == () and len(plan.keep) == 2


def test_rotation_never_touches_other_snapshots():
    others = [
        backup(1, status="error"),
        backup(2, status="creating"),
        backup(3, volume="vol-other"),
        backup(4, pattern="mongodb_data"),
        snap("manual-before-upgrade"),
        snap("mysql_data-backend1-20260105-010500"),
    ]
    new = backup(20)

    plan = plan_rotation(others + [new], volume_id=VOLUME, pattern="mysql_data", keep=1,
                         new_snapshot_ids=[new.id])  # fmt: skip

    assert plan.delete == ()
    assert [s.id for s in plan.ignored] == [s.id for s in others]


def test_backups_named_after_a_previous_server_rotate_with_the_volume():
    new = backup(20)
    plan = plan_rotation([backup(1, server=OTHER_SERVER), new], volume_id=VOLUME,
                         pattern="mysql_data", keep=1, new_snapshot_ids=[new.id])  # fmt: skip

    assert [s.id for s in plan.delete] == [backup(1, server=OTHER_SERVER).id]


def test_the_new_snapshot_is_kept_even_if_its_clock_was_behind():
    new = backup(1, snap_id="new")
    plan = plan_rotation([backup(5), backup(6), new], volume_id=VOLUME, pattern="mysql_data",
                         keep=2, new_snapshot_ids=["new"])  # fmt: skip

    assert [s.id for s in plan.keep] == ["new", backup(6).id]
    assert [s.id for s in plan.delete] == [backup(5).id]


def test_keep_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        plan_rotation([], volume_id=VOLUME, pattern="mysql_data", keep=0)


def test_a_bad_keep_is_invalid_input_naming_it():
    with pytest.raises(InvalidInput, match="keep must be at least 1 .*, not -2"):
        plan_rotation([], volume_id=VOLUME, pattern="mysql_data", keep=-2)
