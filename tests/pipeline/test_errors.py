"""Which errors the flow retries: outages only (pipeline.errors), on real driver exceptions."""

import sqlite3

import pymysql
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from pipeline import errors
from pipeline.core.fs import StorageError
from pipeline.core.reader import InputFileError
from pipeline.core.selection import MissingInputError, SelectionError
from pipeline.result_store import DatabaseError


def raised_from(outer: Exception, cause: Exception) -> Exception:
    try:
        try:
            raise cause
        except Exception as inner:
            raise outer from inner
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        raised_from(DatabaseError("MySQL on db:3306"), pymysql.err.OperationalError(2003, "x")),
        raised_from(DatabaseError("MySQL"), pymysql.err.OperationalError(1213, "deadlock")),
        raised_from(StorageError("s3://b/k"), EndpointConnectionError(endpoint_url="http://s3")),
        ClientError({"Error": {"Code": "SlowDown"}}, "GetObject"),
        sqlite3.OperationalError("database is locked"),
        ConnectionResetError(104, "reset"),
    ],
)
def test_outages_are_transient(exc):
    assert errors.is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        MissingInputError("missing input: logs/ does not exist"),
        SelectionError("pattern '(' is not a valid regular expression"),
        DatabaseError("SQLite file edxapp.sqlite does not exist"),
        raised_from(DatabaseError("MySQL"), pymysql.err.OperationalError(1045, "access denied")),
        InputFileError("logs/a.gz", "truncated compressed file"),
        ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject"),
        ValueError("--overwrite-n-days -1: must be 0 or more"),
    ],
)
def test_errors_that_cannot_go_away_are_not(exc):
    assert not errors.is_transient(exc)
