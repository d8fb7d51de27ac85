"""The result database (``[database-export]``) and the LMS database (``[database-import]``).

Exactly like upstream, a section with ``credentials`` (a JSON file
``{"host", "port", "username", "password"}``, local or s3://) means MySQL/MariaDB through PyMySQL,
database ``database``. Without credentials the database is a SQLite file: ``database`` itself
when it ends in ``.sqlite``/``.sqlite3``/``.db``, else ``<database>.sqlite``.

Loads replace a table's rows in one transaction, together with a row in ``table_updates`` that
marks the load done: readers see the old rows or the new ones, never a mix, and a load that
failed is not marked done.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.core import fs
from pipeline.errors import OperationFailed

MARKER_TABLE = "table_updates"
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
INSERT_BATCH = 5000


class DatabaseError(OperationFailed):
    """A database that cannot be reached or used; never includes the password."""


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    nullable: bool = True


@dataclass(frozen=True)
class TableSpec:
    """A result table; every one also gets an ``id`` primary key and a ``created`` timestamp."""

    name: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class DatabaseSettings:
    """Where a database is. ``password`` is excluded from repr so it never reaches a log."""

    kind: str  # "sqlite" or "mysql"
    database: str
    sqlite_path: str | None = None
    host: str | None = None
    port: int = 3306
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite file {self.sqlite_path}"
        return f"MySQL database {self.database} on {self.host}:{self.port} as {self.username}"


def sqlite_path_for(database: str) -> str:
    return database if database.endswith(SQLITE_SUFFIXES) else f"{database}.sqlite"


def settings_from(database: str, credentials: str | None, section: str) -> DatabaseSettings:
    """Settings for ``[section] database/credentials``; errors name the section and file."""
    if not database:
        raise DatabaseError(f"[{section}] database is empty")
    if not credentials:
        return DatabaseSettings("sqlite", database, sqlite_path=sqlite_path_for(database))
    try:
        raw = json.loads(fs.read_text(credentials))
    except (OSError, fs.StorageError) as exc:
        raise DatabaseError(f"[{section}] credentials {credentials}: cannot read: {exc}") from exc
    except ValueError as exc:
        raise DatabaseError(f"[{section}] credentials {credentials}: not valid JSON") from exc
    if not isinstance(raw, dict):
        raise DatabaseError(f"[{section}] credentials {credentials}: expected a JSON object")
    missing = [key for key in ("host", "username", "password") if key not in raw]
    if missing:
        raise DatabaseError(
            f"[{section}] credentials {credentials}: missing {', '.join(missing)} "
            '(expected {"host", "port", "username", "password"})'
        )
    try:
        port = int(raw.get("port", 3306))
    except (TypeError, ValueError) as exc:
        raise DatabaseError(f"[{section}] credentials {credentials}: port is not a number") from exc
    return DatabaseSettings(
        "mysql",
        database,
        host=str(raw["host"]),
        port=port,
        username=str(raw["username"]),
        password=str(raw["password"]),
    )


class Database:
    """A connection factory plus the few dialect differences the loads need."""

    def __init__(self, settings: DatabaseSettings, create: bool = False):
        self.settings = settings
        self.create = create

    @property
    def is_mysql(self) -> bool:
        return self.settings.kind == "mysql"

    @property
    def placeholder(self) -> str:
        return "%s" if self.is_mysql else "?"

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        connection = self._open()
        try:
            yield connection
        finally:
            connection.close()

    def _open(self):
        s = self.settings
        if not self.is_mysql:
            if not self.create:
                import os

                if not os.path.exists(s.sqlite_path):
                    raise DatabaseError(f"{s.describe()} does not exist")
            try:
                connection = sqlite3.connect(s.sqlite_path, isolation_level=None, timeout=60)
            except sqlite3.Error as exc:
                raise DatabaseError(f"{s.describe()}: {exc}") from exc
            return connection
        import pymysql

        def open_mysql(database):
            return pymysql.connect(
                host=s.host,
                port=s.port,
                user=s.username,
                password=s.password,
                database=database,
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=30,
                read_timeout=600,
                write_timeout=600,
            )

        try:
            return open_mysql(s.database)
        except pymysql.err.OperationalError as exc:
            unknown_database = exc.args and exc.args[0] == 1049
            if not (unknown_database and self.create):
                raise DatabaseError(f"{s.describe()}: {exc.args[-1]}") from exc
        try:
            bootstrap = open_mysql(None)
            with bootstrap.cursor() as cursor:
                cursor.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{s.database}` CHARACTER SET utf8mb4"
                )
            bootstrap.close()
            return open_mysql(s.database)
        except pymysql.err.MySQLError as exc:
            raise DatabaseError(f"{s.describe()}: {exc.args[-1]}") from exc

    # --- schema -----------------------------------------------------------------------------
    @property
    def _id_column(self) -> str:
        if self.is_mysql:
            return "`id` INT NOT NULL AUTO_INCREMENT PRIMARY KEY"
        return "`id` INTEGER PRIMARY KEY AUTOINCREMENT"

    def create_table_sql(self, table: TableSpec) -> str:
        columns = [
            f"`{c.name}` {c.sql_type}{'' if c.nullable else ' NOT NULL'}" for c in table.columns
        ]
        created = "`created` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP"
        body = ", ".join([self._id_column, *columns, created])
        tail = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" if self.is_mysql else ""
        return f"CREATE TABLE IF NOT EXISTS `{table.name}` ({body}){tail}"

    def _ensure_marker_table(self, cursor) -> None:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS `{MARKER_TABLE}` ({self._id_column}, "
            "`update_id` VARCHAR(255) NOT NULL, `target_table` VARCHAR(128) NOT NULL, "
            "`inserted` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )

    # --- loads ------------------------------------------------------------------------------
    def is_loaded(self, table: str, update_id: str) -> bool:
        try:
            with self.connect() as connection:
                cursor = connection.cursor()
                if not self._table_exists(cursor, MARKER_TABLE):
                    return False
                cursor.execute(
                    f"SELECT 1 FROM `{MARKER_TABLE}` WHERE `update_id` = {self.placeholder} "
                    f"AND `target_table` = {self.placeholder}",
                    (update_id, table),
                )
                return cursor.fetchone() is not None
        except DatabaseError as exc:
            if not self.is_mysql and "does not exist" in str(exc):
                return False
            raise

    def _table_exists(self, cursor, name: str) -> bool:
        if self.is_mysql:
            cursor.execute("SHOW TABLES LIKE %s", (name,))
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type='table' AND name=?", (name,))
        return cursor.fetchone() is not None

    def replace_rows(self, table: TableSpec, rows: Iterable[Sequence], update_id: str) -> int:
        """Replace all rows of ``table`` with ``rows`` and mark ``update_id`` loaded, atomically."""
        names = ", ".join(f"`{n}`" for n in table.column_names)
        marks = ", ".join([self.placeholder] * len(table.columns))
        insert = f"INSERT INTO `{table.name}` ({names}) VALUES ({marks})"
        count = 0
        with self.connect() as connection:
            cursor = connection.cursor()
            # DDL first: MySQL commits implicitly on CREATE TABLE.
            cursor.execute(self.create_table_sql(table))
            self._ensure_marker_table(cursor)
            cursor.execute("START TRANSACTION" if self.is_mysql else "BEGIN IMMEDIATE")
            try:
                cursor.execute(f"DELETE FROM `{table.name}`")
                batch: list[Sequence] = []
                for row in rows:
                    batch.append(tuple(row))
                    if len(batch) >= INSERT_BATCH:
                        cursor.executemany(insert, batch)
                        count += len(batch)
                        batch = []
                if batch:
                    cursor.executemany(insert, batch)
                    count += len(batch)
                cursor.execute(
                    f"INSERT INTO `{MARKER_TABLE}` (`update_id`, `target_table`) "
                    f"VALUES ({self.placeholder}, {self.placeholder})",
                    (update_id, table.name),
                )
                cursor.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    cursor.execute("ROLLBACK")
                raise
        return count

    def query(self, sql: str, params: Sequence = ()) -> Iterator[tuple]:
        """Stream the rows of a read-only query."""
        with self.connect() as connection:
            if self.is_mysql:
                import pymysql.cursors

                cursor = connection.cursor(pymysql.cursors.SSCursor)
            else:
                cursor = connection.cursor()
            try:
                cursor.execute(sql, params)
            except Exception as exc:
                raise DatabaseError(f"{self.settings.describe()}: {exc}") from exc
            while True:
                rows = cursor.fetchmany(10000)
                if not rows:
                    break
                yield from rows
