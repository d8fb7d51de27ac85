"""Connection settings for the result database and the LMS database, as Prefect blocks."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


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

    @contextmanager
    def credentials_file(self) -> Iterator[str]:
        """A temporary credentials file in upstream's JSON shape, removed afterwards."""
        fd, path = tempfile.mkstemp(prefix="db-credentials-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(
                    {
                        "host": self.host,
                        "port": self.port,
                        "username": self.username,
                        "password": self.password.get_secret_value(),
                    },
                    handle,
                )
            os.chmod(path, 0o600)
            yield path
        finally:
            os.unlink(path)
