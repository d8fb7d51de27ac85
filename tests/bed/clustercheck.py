"""Galera's HTTP check as sites run it: Percona's `clustercheck` script under xinetd.

The script is the one Debian ships as the template of the Galera Puppet module
(`puppet-module-michaeltchapman-galera`, `templates/clustercheck.erb`), rendered with Ruby's
own ERB as Puppet would (the status user, password and host). xinetd (Debian `xinetd`) runs
it per connection on a free port of 127.0.0.1, as the module's `mysqlchk` service does on
9200; the script asks MariaDB for `wsrep_local_state` and answers `200` "... is synced." or
`503` "... is not synced.".

The script has no port option: it reads its client settings from the defaults-extra file
given as its sixth argument, which :meth:`ClusterCheck.point_at` (re)writes, so one xinetd
serves the module while the Galera server behind it changes from test to test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.bed import foreground
from tests.bed.ports import free_port

TEMPLATE = Path(
    "/usr/share/puppet/modules.available/michaeltchapman-galera/templates/clustercheck.erb"
)
PROGRAMS = {
    "xinetd": "xinetd",
    "ruby": "ruby",
    "curl": "curl",
    "mysql": "mariadb-client",
    str(TEMPLATE): "puppet-module-michaeltchapman-galera",
}

#: Renders the template as Puppet would, with the module's defaults (init.pp): not available
#: when a donor (0), read-only not checked (-1).
_RENDER = (
    "@status_user, @status_password, @status_host = ARGV[1], ARGV[2], ARGV[3]; "
    "@available_when_donor = 0; @available_when_readonly = -1; "
    "print ERB.new(File.read(ARGV[0]), trim_mode: '-').result(binding)"
)


def missing_clustercheck_programs() -> dict[str, str]:
    missing = {p: pkg for p, pkg in PROGRAMS.items() if p != str(TEMPLATE) and not shutil.which(p)}
    if not TEMPLATE.is_file():
        missing[str(TEMPLATE)] = PROGRAMS[str(TEMPLATE)]
    return missing


@dataclass
class ClusterCheck:
    """xinetd serving the rendered clustercheck script on `port` (127.0.0.1 only)."""

    base_dir: Path
    user: str
    password: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def script(self) -> Path:
        return self.base_dir / "clustercheck"

    @property
    def client_settings(self) -> Path:
        return self.base_dir / "clustercheck.cnf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def point_at(self, mariadb_port: int) -> None:
        """Make the script ask the MariaDB server on this TCP port."""
        self.client_settings.write_text(f"[client]\nport={mariadb_port}\n")

    def start(self, timeout: float = 15) -> ClusterCheck:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        rendered = subprocess.run(
            ["ruby", "-rerb", "-e", _RENDER, str(TEMPLATE), self.user, self.password, "127.0.0.1"],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        self.script.write_text(rendered.stdout)
        self.script.chmod(0o700)
        if not self.client_settings.exists():
            self.point_at(free_port())  # nothing there yet: the check answers 503
        config = self.base_dir / "xinetd.conf"
        settings = {
            "type": "UNLISTED", "port": self.port, "socket_type": "stream", "protocol": "tcp",
            "wait": "no", "user": _login(), "server": self.script,
            # user and password come from the template; $4 the error log, $6 the client file
            "server_args": f"- - 0 {self.base_dir / 'clustercheck.err'} 1 {self.client_settings}",
            "bind": "127.0.0.1", "only_from": "127.0.0.1", "disable": "no",
            "log_type": f"FILE {self.base_dir / 'xinetd.log'}",
        }  # fmt: skip
        lines = "".join(f"  {key} = {value}\n" for key, value in settings.items())
        config.write_text(f"service mysqlchk\n{{\n{lines}}}\n")
        self.process = foreground.spawn(
            ["xinetd", "-dontfork", "-f", str(config), "-pidfile", str(self.base_dir / "pid")],
            self.base_dir / "xinetd.out",
        )
        foreground.wait_ready(
            self.process, self._listening, what=f"xinetd (port {self.port})",
            logs=[self.base_dir / "xinetd.out", self.base_dir / "xinetd.log"], timeout=timeout,
        )  # fmt: skip
        return self

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        foreground.stop(self.process)


def _login() -> str:
    return pwd.getpwuid(os.getuid()).pw_name
