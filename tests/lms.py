"""Loading the upstream LMS fixture dumps (MySQL dialect) into MariaDB or a SQLite file."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

DATA = Path(__file__).parent / "data" / "upstream"
LMS_DUMPS = (
    DATA / "input" / "load_auth_userprofile.sql",
    DATA / "input" / "load_grades_persistentcoursegrade.sql",
)

_MYSQL_STRING = re.compile(r"'((?:[^'\\]|\\.|'')*)'", re.DOTALL)
_MYSQL_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def mysql_dump_to_sqlite(sql: str) -> str:
    """Rewrite the few MySQL-only constructs of the fixture dumps for SQLite."""

    def string(match: re.Match) -> str:
        text = re.sub(
            r"\\(.)", lambda m: _MYSQL_ESCAPES.get(m.group(1), m.group(1)), match.group(1)
        )
        return "'" + text.replace("''", "'").replace("'", "''") + "'"

    sql = _MYSQL_STRING.sub(string, sql)
    sql = re.sub(r"\bUNIQUE KEY `\w+`", "UNIQUE", sql)
    if re.search(r"NOT NULL AUTO_INCREMENT", sql):
        sql = re.sub(
            r"`id` [^,]*NOT NULL AUTO_INCREMENT", "`id` INTEGER PRIMARY KEY AUTOINCREMENT", sql
        )
        sql = re.sub(r",\s*PRIMARY KEY \(`id`\)", "", sql)
    return sql


def load_lms_sqlite(path: Path) -> Path:
    connection = sqlite3.connect(path)
    for dump in LMS_DUMPS:
        connection.executescript(mysql_dump_to_sqlite(dump.read_text()))
    connection.commit()
    connection.close()
    return path


def load_lms_mariadb(server, database: str) -> None:
    """Load the dumps with the mariadb client, as upstream's acceptance test did."""
    server.root_sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    for dump in LMS_DUMPS:
        server.root_sql(f"USE `{database}`;\n" + dump.read_text())
