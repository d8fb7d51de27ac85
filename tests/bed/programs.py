"""Fail clearly when a program the test bed needs is not installed."""

from __future__ import annotations

import pytest


def require_programs(missing: dict[str, str], service: str) -> None:
    """Fail (never skip) the test if programs are missing, naming the Debian packages.

    `missing` maps each missing program to its Debian package, as returned by
    `tests.bed.sshd.missing_ssh_binaries()` or `tests.bed.mariadb.missing_mariadb_binaries()`.
    """
    if missing:
        wanted = ", ".join(f"{program} (Debian package {pkg})" for program, pkg in missing.items())
        packages = " ".join(sorted(set(missing.values())))
        pytest.fail(
            f"{service} test bed: missing {wanted}; install with: apt-get install -y {packages}",
            pytrace=False,
        )
