"""Run the OpenStack fake standalone: ``python -m tests.fakes.openstack --port 5000``.

Prints the auth URL and a ``clouds.yaml`` snippet, then serves until Ctrl-C (or SIGTERM).
``--seed demo`` adds a small multi-node deployment: a deploy node whose metadata lists the
inventory groups, and backends with Heat-named ``mysql_data``/``mongodb_data`` volumes.
``--seed bed`` prepares the cloud for the test bed's services (README, "Try it without a
cloud"): the multi-node stack ``multi`` made from this repository's template, a server
``backend1`` at ``--address`` with in-use ``mysql_data``/``mongodb_data`` volumes, and the
console log that a server named ``analytics`` (made later, by Heat) will show: cloud-init
printing the fingerprints of the ``--host-key`` files.
``--dir DIR`` writes ``credentials.json`` (openstacksdk's keyword arguments), ``clouds.yaml``
and, while it serves, ``pid``; ``--background`` (with ``--dir``) returns once it serves.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from tests.bed.background import background_argv, clear_ready, mark_ready, start_in_background
from tests.fakes.stacks import create_stack

from .console import console_log, fingerprint_of
from .fake import OpenStackFake
from .records import short_id


def add_backend(fake: OpenStackFake, name: str, address: str, stack: str = "edx") -> None:
    """A backend server at `address` with Heat-named, attached mysql_data/mongodb_data volumes."""
    fake.add_server(
        name, addresses={"management": [address]}, console_output=f"Cloud-init finished on {name}\n"
    )
    for word, device in (("mysql_data", "/dev/vdb"), ("mongodb_data", "/dev/vdc")):
        fake.add_volume(f"{stack}-{name}_{word}-{short_id()}", 10, attached_to=name, device=device)


def seed_demo(fake: OpenStackFake, stack: str = "edx") -> None:
    """Servers and volumes shaped like the multi-node edX stack (see docs: operations)."""
    backends = []
    for index in range(2):
        name, address = f"backend{index}", f"192.168.122.{111 + index}"
        add_backend(fake, name, address, stack)
        backends.append(address)
    fake.add_server(
        "deploy",
        addresses={
            "management": [
                "192.168.122.100",
                {"addr": "172.24.4.100", "OS-EXT-IPS:type": "floating"},
            ]
        },
        metadata={"backend_servers": json.dumps(backends), "app_servers": json.dumps([])},
    )


def seed_bed(fake: OpenStackFake, address: str, host_keys: list[Path]) -> None:
    """The cloud the README's "Try it without a cloud" runs the flows against (started fake)."""
    delay, fake.stack_delay = fake.stack_delay, 0
    conn = fake.connect()
    try:
        create_stack(conn, "edx-multi-node.yaml", "multi", "example-multi-node.env.yaml")
    finally:
        conn.close()
        fake.stack_delay = delay
    add_backend(fake, "backend1", address, stack="multi")
    fake.set_boot_console("analytics", console_log([fingerprint_of(key) for key in host_keys]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.openstack", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", choices=["demo", "bed"], help="add servers, volumes, stacks")
    parser.add_argument(
        "--address", default="127.0.0.1", help="bed seed: address of backend1 (the bed's sshd)"
    )
    parser.add_argument(
        "--host-key", type=Path, action="append", default=[], metavar="PUBLIC_KEY",
        help="bed seed: a host key file whose fingerprint the analytics console log shows",
    )  # fmt: skip
    parser.add_argument("--snapshot-delay", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--stack-delay", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--dir", type=Path, help="write credentials.json, clouds.yaml, pid here")
    parser.add_argument(
        "--background", action="store_true", help="detach; return once serving (needs --dir)"
    )
    args = parser.parse_args(argv)
    if args.seed == "bed" and not args.host_key:
        parser.error("--seed bed needs --host-key (the bed sshd's public host key)")
    for key in args.host_key:
        if not key.is_file():
            parser.error(f"--host-key {key}: no such file")
    if args.background:
        if args.dir is None:
            parser.error("--background needs --dir")
        argv = background_argv(argv if argv is not None else sys.argv[1:])
        return start_in_background("tests.fakes.openstack", argv, args.dir)
    directory = args.dir.resolve() if args.dir else None

    fake = OpenStackFake(
        args.host, args.port, snapshot_delay=args.snapshot_delay, stack_delay=args.stack_delay
    )
    stop = threading.Event()
    # Set before start-up, so that a signal meanwhile still ends in fake.stop(). Explicit
    # SIGINT handler: a shell's background job inherits SIGINT ignored, which would otherwise
    # make Ctrl-C (or kill -INT) a no-op.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if args.seed == "demo":
        seed_demo(fake)
    fake.start()
    creds = fake.credentials
    print(f"OpenStack fake listening on {fake.base_url}")
    print(f"auth URL: {fake.auth_url}")
    print(
        f"credentials: {creds['username']} / {creds['password']}, project {creds['project_name']}"
    )
    print("clouds.yaml:")
    print(fake.clouds_yaml("fake"), end="")
    try:
        if args.seed == "bed":
            seed_bed(fake, args.address, args.host_key)
            print(f"seeded: stack multi, backend1 at {args.address}, analytics' console log")
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "credentials.json").write_text(json.dumps(creds, indent=2) + "\n")
            (directory / "clouds.yaml").write_text(fake.clouds_yaml("fake"))
            print(f"wrote {directory / 'credentials.json'} and {directory / 'clouds.yaml'}")
        print("Ctrl-C to stop.", flush=True)
        mark_ready(directory)
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
        clear_ready(directory)
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
