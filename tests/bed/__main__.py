"""Start a test-bed service by hand and keep it running until Ctrl-C.

    uv run python -m tests.bed sshd [--hosts 3] [--dir DIR]
    uv run python -m tests.bed mariadb [--dir DIR]
    uv run python -m tests.bed galera [--dir DIR]
    uv run python -m tests.bed moto [--port 5000]

Prints how to reach the service (known_hosts lines, ssh command lines, credentials, AWS env).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tests.bed.mariadb import GaleraServer, MariaDBServer
from tests.bed.moto import MotoServer
from tests.bed.sshd import SshHost, generate_ed25519_key, known_hosts_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bed", description=__doc__.split("\n")[0])
    parser.add_argument("service", choices=["sshd", "mariadb", "galera", "moto"])
    parser.add_argument("--dir", type=Path, help="working directory (default: a new temp dir)")
    parser.add_argument("--hosts", type=int, default=1, help="sshd: how many hosts")
    parser.add_argument("--port", type=int, default=0, help="moto: port (default: any free)")
    args = parser.parse_args(argv)
    if args.service != "moto":
        base_dir = args.dir or Path(tempfile.mkdtemp(prefix=f"bed-{args.service}-"))

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
            print(f"known_hosts: {known_hosts}\nclient key:  {client_key}")
            for host in hosts:
                print(f"{host.name}: {shlex.join(host.ssh_argv(known_hosts=known_hosts))}")
        elif args.service in ("mariadb", "galera"):
            server_class = GaleraServer if args.service == "galera" else MariaDBServer
            server = server_class(base_dir)
            stop_callbacks.append(server.stop)
            server.start()
            script = server.write_control_script()
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
        _wait_for_interrupt()
    finally:
        for stop in reversed(stop_callbacks):
            stop()
    return 0


def _wait_for_interrupt() -> None:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()


if __name__ == "__main__":
    sys.exit(main())
