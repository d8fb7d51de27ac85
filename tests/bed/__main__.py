"""Start a test-bed service by hand and keep it running until Ctrl-C.

    uv run python -m tests.bed sshd [--hosts 3] [--dir DIR] [--background]
    uv run python -m tests.bed mariadb [--dir DIR] [--background]
    uv run python -m tests.bed galera [--dir DIR] [--background]
    uv run python -m tests.bed moto [--port 5000]

Prints how to reach the service (known_hosts lines, ssh command lines, credentials, AWS env)
and writes it into DIR: sshd `sshd.json` (each host's address, port, user, public host key and
authorized_keys file), `known_hosts` and the client key `id_ed25519`; mariadb and galera
`credentials.json` (upstream's `{"host", "port", "username", "password"}`). `DIR/pid` exists
while the service runs (see tests/bed/background.py); `--background` returns once it serves.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tests.bed.background import background_argv, clear_ready, mark_ready, start_in_background
from tests.bed.mariadb import GaleraServer, MariaDBServer
from tests.bed.moto import MotoServer
from tests.bed.sshd import SshHost, generate_ed25519_key, known_hosts_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bed", description=__doc__.split("\n")[0])
    parser.add_argument("service", choices=["sshd", "mariadb", "galera", "moto"])
    parser.add_argument("--dir", type=Path, help="working directory (default: a new temp dir)")
    parser.add_argument("--hosts", type=int, default=1, help="sshd: how many hosts")
    parser.add_argument("--port", type=int, default=0, help="moto: port (default: any free)")
    parser.add_argument(
        "--background", action="store_true", help="detach; return once serving (needs --dir)"
    )
    args = parser.parse_args(argv)
    if args.background:
        if args.dir is None or args.service == "moto":
            parser.error("--background needs --dir (and is not for moto)")
        return start_in_background("tests.bed", background_argv(argv or sys.argv[1:]), args.dir)
    stopped = _stop_on_signals()
    base_dir = None
    if args.service != "moto":
        base_dir = (args.dir or Path(tempfile.mkdtemp(prefix=f"bed-{args.service}-"))).resolve()
        base_dir.mkdir(parents=True, exist_ok=True)

    stop_callbacks = []
    try:
        if args.service == "sshd":
            client_key = generate_ed25519_key(base_dir / "id_ed25519")
            hosts = [
                SshHost(base_dir / f"host{i}", name=f"host{i}", client_key=client_key).start()
                for i in range(1, args.hosts + 1)
            ]
            stop_callbacks += [host.stop for host in hosts]
            known_hosts = base_dir / "known_hosts"
            known_hosts.write_text(known_hosts_text(hosts))
            _write_sshd_state(base_dir / "sshd.json", hosts, known_hosts, client_key)
            print(f"known_hosts: {known_hosts}\nclient key:  {client_key}")
            for host in hosts:
                print(f"{host.name}: {shlex.join(host.ssh_argv(known_hosts=known_hosts))}")
        elif args.service in ("mariadb", "galera"):
            server_class = GaleraServer if args.service == "galera" else MariaDBServer
            server = server_class(base_dir)
            stop_callbacks.append(server.stop)
            server.start()
            script = server.write_control_script()
            server.write_credentials(base_dir / "credentials.json")
            print(json.dumps(server.credentials()))
            print(f"socket: {server.socket}\ncontrol: {script} start|stop|status|restart")
            print(f"root shell: mariadb --no-defaults --socket={server.socket} -uroot")
        else:
            moto = MotoServer(port=args.port).start()
            stop_callbacks.append(moto.stop)
            print("\n".join(f"export {name}={value}" for name, value in moto.env().items()))
        if args.service != "moto":
            print(f"directory: {base_dir}")
        print("running; Ctrl-C stops it", flush=True)
        mark_ready(base_dir)
        stopped.wait()
    finally:
        for stop in reversed(stop_callbacks):
            stop()
        clear_ready(base_dir)
    return 0


def _write_sshd_state(
    path: Path, hosts: list[SshHost], known_hosts: Path, client_key: Path
) -> None:
    state = {
        "known_hosts": str(known_hosts),
        "client_key": str(client_key),
        "hosts": [
            {
                "name": host.name,
                "address": host.address,
                "port": host.port,
                "user": host.user,
                "public_host_key": str(host.public_host_key),
                "authorized_keys": str(host.authorized_keys),
            }
            for host in hosts
        ],
    }
    path.write_text(json.dumps(state, indent=2) + "\n")


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, from now on (a signal during start-up included).

    Explicit SIGINT handler: a shell's background job inherits SIGINT ignored.
    """
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    return stopped


if __name__ == "__main__":
    sys.exit(main())
