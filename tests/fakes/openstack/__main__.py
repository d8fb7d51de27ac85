"""Run the OpenStack fake standalone: ``python -m tests.fakes.openstack --port 5000``.

Prints the auth URL and a ``clouds.yaml`` snippet, then serves until Ctrl-C (or SIGTERM).
``--seed demo`` adds a small multi-node deployment: a deploy node whose metadata lists the
inventory groups, and backends with Heat-named ``mysql_data``/``mongodb_data`` volumes.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .fake import OpenStackFake
from .records import short_id


def seed_demo(fake: OpenStackFake, stack: str = "edx") -> None:
    """Servers and volumes shaped like the multi-node edX stack (see docs: operations)."""
    backends = []
    for index in range(2):
        name = f"backend{index}"
        address = f"192.168.122.{111 + index}"
        fake.add_server(
            name,
            addresses={"management": [address]},
            console_output=f"Cloud-init finished on {name}\n",
        )
        backends.append(address)
        for word, device in (("mysql_data", "/dev/vdb"), ("mongodb_data", "/dev/vdc")):
            fake.add_volume(
                f"{stack}-{name}_{word}-{short_id()}", 10, attached_to=name, device=device
            )
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.openstack", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", choices=["demo"], help="add sample servers and volumes")
    parser.add_argument("--snapshot-delay", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--stack-delay", type=float, default=2.0, metavar="SECONDS")
    args = parser.parse_args(argv)

    fake = OpenStackFake(
        args.host, args.port, snapshot_delay=args.snapshot_delay, stack_delay=args.stack_delay
    )
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
    print("Ctrl-C to stop.", flush=True)

    stop = threading.Event()
    # Explicit handlers: a shell's background job inherits SIGINT ignored, which would
    # otherwise make Ctrl-C (or kill -INT) a no-op.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
