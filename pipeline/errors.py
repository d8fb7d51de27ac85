"""The project's exception root, and which pipeline errors may go away by themselves (so that a
retry is worth it).

Only outages are: a connection refused, reset or timed out (S3, MySQL), a server that is
overloaded or restarting, a lock held by someone else. Everything else (missing input, a
missing database file, bad configuration, corrupt logs) fails the same way on every attempt.
The chain of causes is searched, since our own errors wrap the driver's (``DatabaseError``
from PyMySQL's ``OperationalError``, ``StorageError`` from botocore's).
"""

from __future__ import annotations

# -- the project's exception root ----------------------------------------------------------------
# It lives here, in the package every install has (an analytics node installs the pipeline
# alone), so that the pipeline's errors and the flows' errors share one root. Each family also
# derives from the built-in exception callers already catch (a bad value is a ValueError, a
# deadline a TimeoutError), so `except ValueError` around a model keeps working.


class EdxOpsError(Exception):
    """Root of every error this project raises on purpose."""


class InvalidInput(EdxOpsError, ValueError):
    """A value given by the user (parameter, config, inventory, command line) is unusable;
    the message names the input."""


class NotFound(EdxOpsError, LookupError):
    """Something named by the user does not exist (a server, a volume, a group)."""


class OperationFailed(EdxOpsError, RuntimeError):
    """An outside system did not do what was asked (a command, a stack, a snapshot)."""


class Refused(OperationFailed):
    """This project declined to act because acting would be unsafe (an unverified host key,
    the primary database node, a run already holding the node)."""


class OperationTimeout(EdxOpsError, TimeoutError):
    """A deadline passed; the message says what was waited for and the last state seen."""


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
