"""``install-orchestrator``: PostgreSQL, the Prefect server and its workers as systemd services,
the work pools, the concurrency limits and the deployments, on this machine or over SSH.

    scripts/install-orchestrator --settings site.json                      # here, as root
    scripts/install-orchestrator --settings site.json --host 192.168.122.100 --user root

`site.json` is an `OrchestratorInstall` (remote/orchestrator.py), e.g.
`{"site": {"user": "prefect", "checkout": "/opt/edx-ops-flows", "host": "192.168.122.100"}}`;
the checkout is the one on the deploy node. Each step prints `ok` or `changed`; a second run is
all `ok`. The host key is verified against --known-hosts (an unknown or changed key is refused
before anything is sent). Exit status 0; 2 for bad settings; 1 when a step failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from pipeline.errors import EdxOpsError
from remote.cli import Login, _private_key, read_known_hosts
from remote.orchestrator import Installer, LocalTarget, OrchestratorInstall
from remote.ssh import open_session

EXIT_USAGE, EXIT_FAILED = 2, 1


def build_parser() -> argparse.ArgumentParser:
    first_line = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="install-orchestrator", description=first_line)
    add = parser.add_argument
    add("--settings", type=Path, required=True, help="JSON file: an OrchestratorInstall.")
    add("--host", help="The deploy node over SSH: HOST or HOST:PORT (default: this machine).")
    add("--user", default="root", help="SSH login, root (default: root).")
    add("--private-key", type=Path, help="Login key file (default: ssh-agent, ~/.ssh/id_*).")
    add("--known-hosts", type=Path, default=Path("~/.ssh/known_hosts").expanduser(),
        help="Verified host keys, OpenSSH's format (default: ~/.ssh/known_hosts).")  # fmt: skip
    add("--phase", choices=("all", "system", "prefect"), default="all",
        help="system: packages, database, units, schema migration, services; prefect: "
             "pools, limits, deployments, alarms (the server must answer); all: both "
             "(default).")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = OrchestratorInstall.model_validate_json(args.settings.read_text())
    except (OSError, ValidationError) as error:
        print(f"install-orchestrator: --settings {args.settings}: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.host is None:
            Installer(settings, LocalTarget()).run(args.phase)
            return 0
        host, _, port = args.host.rpartition(":") if ":" in args.host else (args.host, "", "22")
        if not host or not port.isdigit():
            print(f"install-orchestrator: --host {args.host!r}: expected HOST or HOST:PORT",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        pkey = _private_key(args.private_key) if args.private_key else None
        trusted, known_hosts = read_known_hosts(args.known_hosts)
        login = Login(args.user, pkey, trusted, known_hosts, int(port))
        with open_session(login, host) as session:
            Installer(settings, session).run(args.phase)
        return 0
    except EdxOpsError as error:
        print(f"install-orchestrator: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
