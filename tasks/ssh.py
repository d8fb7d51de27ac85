"""Prefect tasks that run commands on hosts over SSH (host keys always verified).

The session (`SshIdentity.session`), the one channel pump (`execute`), its errors and the SFTP
file helpers are Prefect-free, in `remote.ssh` (shared with the `remote-task` command line); the
pump and its errors are re-exported here for the flows. Results come back as plain data
(`CommandResult`). Secrets never appear: commands are settings, not secrets, and the identity's
key stays in its block.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.ssh import SshError, SshIdentity
from remote.ssh import (
    CommandResult,
    ConnectionLost,
    RemoteCommandFailed,
    RemoteCommandTimeout,
    check,
    execute,
    output_tail,
    run_command,
)

__all__ = [
    "CommandResult", "ConnectionLost", "HostFacts", "RemoteCommandFailed", "RemoteCommandTimeout",
    "check", "execute", "parse_ip_addresses", "read_host_facts", "run_command",
    "run_remote_command",
]  # fmt: skip


@task(
    name="run-remote-command",
    task_run_name="ssh {host}: {command}",
    cache_policy=NO_CACHE,  # the identity holds a key: never hash or store it
    retries=0,  # remote commands are not all idempotent: the caller decides (with_options)
)
def run_remote_command(
    identity: SshIdentity,
    host: str,
    command: str,
    timeout: float | None = None,
    expect_success: bool = True,
) -> CommandResult:
    """Run `command` on `host` over SSH (its own connection and its own timeout).

    Args:
        identity: The SSH block (login, key, trusted host keys).
        host: Address or name as listed in the block's known_hosts.
        command: A shell command line; it is logged, so it must not contain secrets.
        timeout: Seconds the command may run; default: the block's `command_timeout`.
        expect_success: Raise `RemoteCommandFailed` on a non-zero exit status.

    Returns:
        The exit status, output and duration.
    """
    logger = get_run_logger()
    result = run_command(identity, host, command, timeout=timeout, expect_success=False)
    logger.info("%s: `%s` exited %s after %.2fs", host, command, result.exit_status, result.seconds)
    if result.stderr.strip():
        logger.debug("%s: stderr of `%s`: %s", host, command, output_tail(result.stderr))
    return check(result) if expect_success else result


@dataclass(frozen=True)
class HostFacts:
    """What a host says about itself: its name and every address on its interfaces."""

    host: str
    hostname: str
    addresses: tuple[str, ...]

    def has_address(self, address: str) -> bool:
        wanted = ipaddress.ip_address(address)
        return any(ipaddress.ip_address(mine) == wanted for mine in self.addresses)


def parse_ip_addresses(text: str) -> tuple[str, ...]:
    """Addresses in `ip -o addr show` (or `ip addr`) output, e.g. `inet 10.0.0.5/24 ...`."""
    found = []
    for match in re.finditer(r"\binet6?\s+([0-9A-Fa-f:.]+)(?:/\d+)?", text):
        with contextlib.suppress(ValueError):
            found.append(str(ipaddress.ip_address(match.group(1))))
    return tuple(dict.fromkeys(found))


@task(name="read-host-facts", task_run_name="read-host-facts {host}", cache_policy=NO_CACHE)
def read_host_facts(
    identity: SshIdentity,
    host: str,
    address_command: str = "ip -o addr show",
    timeout: float = 60,
) -> HostFacts:
    """Ask the host itself for its hostname and addresses (e.g. to see whether it holds a VIP).

    Raises:
        SshError: the command failed, or listed no address at all (an empty list must never
            pass for "does not hold the VIP").
    """
    result = run_command(identity, host, f"hostname && {address_command}", timeout=timeout)
    hostname, _, rest = result.stdout.partition("\n")
    addresses = parse_ip_addresses(rest)
    if not addresses:
        listed = output_tail(rest)
        raise SshError(host, f"`{address_command}` on {host} listed no addresses: {listed}")
    return HostFacts(host=host, hostname=hostname.strip(), addresses=addresses)
