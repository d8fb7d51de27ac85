"""Loads into the result database are all-or-nothing, on SQLite and on MariaDB."""

import threading

import pytest

from pipeline.result_store import (
    Column,
    Database,
    DatabaseError,
    DatabaseSettings,
    TableSpec,
    settings_from,
)

TABLE = TableSpec(
    "course_enrollment_daily",
    (
        Column("course_id", "VARCHAR(255)", False),
        Column("date", "DATE", False),
        Column("count", "INT"),
    ),
)


def rows(n, course="a/b/c"):
    return [(course, "2014-08-01", i) for i in range(n)]


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.slow)])
def database(request, tmp_path):
    if request.param == "sqlite":
        return Database(
            DatabaseSettings("sqlite", "reports", sqlite_path=str(tmp_path / "r.sqlite")),
            create=True,
        )
    server = request.getfixturevalue("mariadb")
    creds = server.write_credentials(tmp_path / "creds.json")
    return Database(settings_from("reports", str(creds), "database-export"), create=True)


def count(database):
    return next(database.query("SELECT COUNT(*) FROM course_enrollment_daily"))[0]


def test_load_replaces_rows_and_marks_the_update(database):
    database.replace_rows(TABLE, rows(10), "load-1")
    database.replace_rows(TABLE, rows(3), "load-2")
    assert count(database) == 3
    assert database.is_loaded("course_enrollment_daily", "load-1")
    assert database.is_loaded("course_enrollment_daily", "load-2")
    assert not database.is_loaded("course_enrollment_daily", "load-3")


def test_failure_midway_keeps_the_old_rows_and_marks_nothing(database):
    database.replace_rows(TABLE, rows(7), "good")

    def broken():
        yield from rows(6000)  # more than one insert batch
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match="source went away"):
        database.replace_rows(TABLE, broken(), "bad")
    assert count(database) == 7
    assert not database.is_loaded("course_enrollment_daily", "bad")


def test_reader_sees_old_rows_until_the_load_commits(database):
    database.replace_rows(TABLE, rows(5), "first")
    inside, release = threading.Event(), threading.Event()

    def slow():
        yield from rows(6000, course="x/y/z")  # first batch inserted, transaction open
        inside.set()
        release.wait(30)
        yield ("x/y/z", "2014-08-02", 1)

    loader = threading.Thread(target=database.replace_rows, args=(TABLE, slow(), "second"))
    loader.start()
    assert inside.wait(30)
    try:
        seen = list(database.query("SELECT DISTINCT course_id FROM course_enrollment_daily"))
        assert seen == [("a/b/c",)]
        assert count(database) == 5
    finally:
        release.set()
        loader.join(30)
    assert count(database) == 6001


def test_credentials_errors_name_the_file(tmp_path):
    path = tmp_path / "creds.json"
    path.write_text("{not json")
    with pytest.raises(DatabaseError, match=f"credentials {path}: not valid JSON"):
        settings_from("reports", str(path), "database-export")
    with pytest.raises(DatabaseError, match="credentials nowhere.json: cannot read"):
        settings_from("reports", "nowhere.json", "database-export")


def test_password_is_not_in_settings_repr(tmp_path):
    path = tmp_path / "creds.json"
    path.write_text('{"host": "h", "port": 3306, "username": "u", "password": "hunter2-secret"}')
    settings = settings_from("reports", str(path), "database-export")
    assert "hunter2-secret" not in repr(settings) + settings.describe()
