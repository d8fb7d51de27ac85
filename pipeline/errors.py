"""Which pipeline errors may go away by themselves, so that a retry is worth it.

Only outages are: a connection refused, reset or timed out (S3, MySQL), a server that is
overloaded or restarting, a lock held by someone else. Everything else (missing input, a
missing database file, bad configuration, corrupt logs) fails the same way on every attempt.
The chain of causes is searched, since our own errors wrap the driver's (``DatabaseError``
from PyMySQL's ``OperationalError``, ``StorageError`` from botocore's).
"""

from __future__ import annotations

# PyMySQL/MariaDB error codes of outages: too many connections, lock wait timeout, deadlock,
# cannot connect (socket, TCP), server gone away, connection lost during a query.
TRANSIENT_MYSQL_CODES = frozenset({1040, 1205, 1213, 2002, 2003, 2006, 2013})
# S3 answers that mean "try again later".
TRANSIENT_S3_CODES = frozenset(
    {"500", "502", "503", "504", "InternalError", "RequestTimeout", "ServiceUnavailable",
     "SlowDown", "Throttling", "ThrottlingException"}
)  # fmt: skip
_BOTOCORE_NETWORK = frozenset({"ConnectionError", "HTTPClientError"})


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is an outage worth retrying."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_outage(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    classes = [(cls.__module__, cls.__name__) for cls in type(exc).__mro__]
    if any(module.startswith("botocore") and name in _BOTOCORE_NETWORK for module, name in classes):
        return True
    if ("pymysql.err", "OperationalError") in classes:
        return bool(exc.args) and exc.args[0] in TRANSIENT_MYSQL_CODES
    if ("sqlite3", "OperationalError") in classes:
        return "locked" in str(exc)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "")) in TRANSIENT_S3_CODES
    return False


def describe(exc: BaseException) -> str:
    """One line for a failure: the error's type and its message, whitespace folded."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
