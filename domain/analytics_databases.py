"""The analytics databases and users of seed 004 ("Create analytics databases and user"), as a
plan computed from what the server shows: pure, no driver.

On the analytics RDS instance: databases `dashboard`, `analytics-api`, `reports` (utf8); user
`analytics` with all privileges on the three; the migration user (the edxapp credentials) with
the same grants. On the edxapp server: `edxapp_ro` with SELECT on everything. `plan_user`
compares a user's wanted grants with its `SHOW GRANTS` lines: create (with its password), grants
added, grants revoked; a password is set only when the user is created or a rotation is asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pipeline.errors import InvalidInput

DATABASES = ("dashboard", "analytics-api", "reports")
CHARSET = "utf8"
ALL = "ALL PRIVILEGES"
#: SHOW GRANTS: `GRANT <privileges> ON <scope> TO <user>...`
_GRANT = re.compile(r"^GRANT (?P<privileges>.+?) ON (?P<scope>\S+) TO ", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HOST = re.compile(r"^[%.\w-]{1,255}$")


def quote_name(name: str) -> str:
    """A database or user name as a backquoted identifier; names outside `[A-Za-z0-9_-]`
    are refused rather than escaped (they come from settings, never from a user)."""
    if not _NAME.match(name):
        raise InvalidInput(f"database or user name {name!r}: letters, digits, _ and - only")
    return f"`{name}`"


def scope_of(database: str | None) -> str:
    """`*.*` for every database, else `` `db`.* ``."""
    return "*.*" if database is None else f"{quote_name(database)}.*"


@dataclass(frozen=True)
class UserGrants:
    """A user and the privileges it should hold, by scope (`*.*`, `` `reports`.* ``)."""

    name: str
    grants: Mapping[str, frozenset[str]]
    host: str = "%"

    def __post_init__(self) -> None:
        quote_name(self.name)
        if not _HOST.match(self.host):
            raise InvalidInput(f"user host {self.host!r}: letters, digits, ., -, _ and % only")

    @property
    def account(self) -> str:
        return f"{quote_name(self.name)}@'{self.host}'"


def analytics_users(analytics_user: str, migration_user: str) -> list[UserGrants]:
    """The two users of the analytics server: all privileges on the three databases."""
    everything = {scope_of(db): frozenset({ALL}) for db in DATABASES}
    return [UserGrants(analytics_user, everything), UserGrants(migration_user, everything)]


def readonly_user(name: str) -> UserGrants:
    """`edxapp_ro` on the edxapp server: SELECT on everything."""
    return UserGrants(name, {"*.*": frozenset({"SELECT"})})


def parse_grants(lines: Iterable[str]) -> dict[str, frozenset[str]]:
    """`SHOW GRANTS` lines -> {scope: privileges} (USAGE alone means none).

    Only the privileges and the scope are read: the rest of a line (a password hash) is not
    kept, so it cannot end up in a plan or a log.
    """
    found: dict[str, set[str]] = {}
    for line in lines:
        match = _GRANT.match(line.strip())
        if not match:
            continue
        privileges = {p.strip().upper() for p in match["privileges"].split(",")}
        privileges.discard("USAGE")
        scope = match["scope"].replace('"', "`")
        if privileges:
            found.setdefault(scope, set()).update(privileges)
    return {scope: frozenset(p) for scope, p in found.items()}


@dataclass(frozen=True)
class UserPlan:
    """What to do to one user: `create`, `grant`/`revoke` (scope -> privileges), `password`."""

    user: UserGrants
    create: bool = False
    set_password: bool = False
    grant: dict[str, frozenset[str]] = field(default_factory=dict)
    revoke: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        return self.create or self.set_password or bool(self.grant) or bool(self.revoke)

    def describe(self) -> list[str]:
        """The plan in words (no password, ever)."""
        account = self.user.account
        lines = [f"create user {account}"] if self.create else []
        if self.set_password and not self.create:
            lines.append(f"set a new password for {account}")
        lines += [f"grant {', '.join(sorted(p))} on {s} to {account}" for s, p in
                  sorted(self.grant.items())]  # fmt: skip
        lines += [f"revoke {', '.join(sorted(p))} on {s} from {account}" for s, p in
                  sorted(self.revoke.items())]  # fmt: skip
        return lines

    def statements(self) -> list[tuple[str, tuple[str, ...]]]:
        """(SQL, parameters) in order; the password goes as a parameter (`%s`, marked
        `"password"`), never into the SQL text. Statements with a parameter are formatted by
        the driver, so their own `%` (the host `'%'`) is doubled."""
        account = self.user.account
        formatted = account.replace("%", "%%")
        found: list[tuple[str, tuple[str, ...]]] = []
        if self.create:
            found.append((f"CREATE USER {formatted} IDENTIFIED BY %s", ("password",)))
        elif self.set_password:
            found.append((f"ALTER USER {formatted} IDENTIFIED BY %s", ("password",)))
        for scope, privileges in sorted(self.revoke.items()):
            found.append((f"REVOKE {', '.join(sorted(privileges))} ON {scope} FROM {account}", ()))
        for scope, privileges in sorted(self.grant.items()):
            found.append((f"GRANT {', '.join(sorted(privileges))} ON {scope} TO {account}", ()))
        return found


def plan_user(
    user: UserGrants, current: Mapping[str, frozenset[str]] | None, *, rotate: bool = False
) -> UserPlan:
    """Compare `user` with its current grants (None: the user does not exist).

    ALL PRIVILEGES covers every single privilege on its scope: wanted ALL against a current
    ALL is no change, and a current ALL where less is wanted is revoked and granted again.
    """
    if current is None:
        return UserPlan(user, create=True, grant={s: p for s, p in user.grants.items()})
    grant, revoke = {}, {}
    for scope, wanted in user.grants.items():
        have = current.get(scope, frozenset())
        if have == wanted:
            continue
        if ALL in have and ALL not in wanted:
            revoke[scope] = frozenset({ALL})
            grant[scope] = wanted
            continue
        if missing := wanted - have:
            grant[scope] = missing
        if (extra := have - wanted) and ALL not in wanted:
            revoke[scope] = extra
    for scope, have in current.items():
        if scope not in user.grants:
            revoke[scope] = have
    return UserPlan(user, set_password=rotate, grant=grant, revoke=revoke)


def database_statements(existing: Iterable[str]) -> list[str]:
    """CREATE DATABASE for each of the three that is missing (utf8, as the seed)."""
    have = set(existing)
    return [
        f"CREATE DATABASE {quote_name(db)} DEFAULT CHARACTER SET {CHARSET}"
        for db in DATABASES
        if db not in have
    ]
