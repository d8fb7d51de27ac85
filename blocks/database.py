"""Connection settings of MySQL/MariaDB databases (result, LMS, backend nodes) as Prefect blocks."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

if TYPE_CHECKING:
    import pymysql.connections


class MySqlDatabase(Block):
    """A MySQL/MariaDB database the analytics pipeline reads or writes.

    The password stays a secret: it reaches the pipeline only as a 0600 credentials file that
    exists while a run needs it.

    Example:
        ```python
        from blocks.database import MySqlDatabase

        MySqlDatabase(host="rds.example.org", username="pipeline001", password="...",
                      database="reports").save("analytics-results")
        ```
    """

    _block_type_name = "MySQL Database"
    _description = "A MySQL/MariaDB database for the Open edX analytics pipeline."

    host: str = Field(..., description="Server name or address.")
    port: int = Field(default=3306, ge=1, le=65535, description="TCP port.")
    username: str = Field(..., description="User the pipeline connects as.")
    password: SecretStr = Field(..., description="That user's password.")
    database: str = Field(..., description="Database (schema) name.")

    def credentials_payload(self) -> bytes:
        """Upstream's JSON credentials file for this database, password included: only ever
        written into a 0600 file, never logged."""
        fields = {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password.get_secret_value(),
        }
        return (json.dumps(fields, sort_keys=True) + "\n").encode()

    @contextmanager
    def credentials_file(self) -> Iterator[str]:
        """A temporary credentials file in upstream's JSON shape, removed afterwards."""
        fd, path = tempfile.mkstemp(prefix="db-credentials-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.credentials_payload())
            os.chmod(path, 0o600)
            yield path
        finally:
            os.unlink(path)

    def connect(
        self,
        *,
        host: str | None = None,
        database: str | None = None,
        connect_timeout: float = 10,
        read_timeout: float | None = None,
        **options: Any,
    ) -> pymysql.connections.Connection:
        """A new pymysql connection (autocommit on); the caller closes it.

        Args:
            host: Connect here instead of the block's host, with the block's port and
                credentials (e.g. one node of a cluster whose block names the VIP).
            database: Default schema; the block's when None.
            connect_timeout: Seconds to connect.
            read_timeout: Seconds any single query may wait for an answer (None: no limit);
                a Prefect timeout cannot interrupt a blocked read, this can.
            options: Further `pymysql.connect` keyword arguments.
        """
        import pymysql

        return pymysql.connect(
            host=host or self.host,
            port=self.port,
            user=self.username,
            password=self.password.get_secret_value(),
            database=database if database is not None else self.database,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            write_timeout=read_timeout,
            autocommit=True,
            **options,
        )
