"""This machine's own Debian booted with systemd as PID 1, in a container, for tests of systemd
units: `systemctl enable --now`, Restart=, the journal, a reboot.

The test machines' PID 1 is not systemd (a VM whose init is another program), so unit files can
be verified but not run. `systemd-nspawn --boot` (Debian's `systemd-container`) runs the
machine's own /lib/systemd/systemd as PID 1 of new namespaces. nspawn refuses `/` itself with a
writable root, so the container's root is an overlay: `/` read-only below, a tmpfs above that
takes every write (units in /etc/systemd/system, /var/lib, users): nothing of the host changes,
and the upper layer survives a reboot of the container (only `remove()` drops it). The host's
files appear as they were, the checkout and its virtualenv included.

The network is the host's (no --private-network): a server in the container on 127.0.0.1:PORT
answers the test directly, and reaches a PostgreSQL the test started on 127.0.0.1. Hence the
services this machine enables (its sshd, PostgreSQL, MariaDB, RabbitMQ, ...) are disabled in
the overlay before the boot: they would take the host's ports. Directories given as `binds`
(sockets, shared files) are bind-mounted at the same path.

Commands run inside through `nsenter --all` into the namespaces of the container's PID 1,
with a clean environment (as a root login's), so `systemctl` and `journalctl` talk to the
container's systemd. `--register=no --keep-unit`: no systemd-machined and no system bus on the
host. Booting takes about a second.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from domain.polling import wait_until

NSPAWN = "/usr/bin/systemd-nspawn"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The container's writable layer (units, Prefect's home, the journal): a tmpfs of this size.
UPPER_SIZE = "2g"


def nspawn_missing() -> str | None:
    """Why the container cannot start here (a message naming the package), or None."""
    if not Path(NSPAWN).exists():
        return "no systemd-nspawn: apt-get install -y systemd-container (scripts/test does)"
    if os.geteuid() != 0:
        return "systemd-nspawn needs root"
    return None


class SystemdContainer:
    """One container on one overlay; `boot()`, `run()`, `reboot()`, `remove()`."""

    def __init__(self, name: str = "edxops-systemd", binds: tuple[Path, ...] = ()) -> None:
        self.name, self.binds = name, binds
        self.base = Path(tempfile.mkdtemp(prefix="nspawn-"))
        self.root = self.base / "merged"
        self.log_path = Path(tempfile.mkdtemp(prefix="nspawn-log-")) / "console.log"
        self.process: subprocess.Popen | None = None
        self.leader = 0
        self.mounted = False

    def _mount(self) -> None:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={UPPER_SIZE}", "tmpfs",
                        str(self.base)], check=True, timeout=30)  # fmt: skip
        self.mounted = True
        for part in ("upper", "work", "merged"):
            (self.base / part).mkdir()
        layers = f"lowerdir=/,upperdir={self.base}/upper,workdir={self.base}/work"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", layers, str(self.root)],
                       check=True, timeout=30)  # fmt: skip
        etc = self.root / "etc"
        # the host's enabled services and SysV scripts: they would share its network
        for wants in (etc / "systemd/system").glob("*.wants"):
            for link in wants.iterdir():
                link.unlink()
        for link in etc.glob("rc[2-5].d/S*"):
            link.unlink()
        # the boot empties /tmp (tmpfiles' `D /tmp`): keep the host's /tmp, where a checkout
        # and a HOME may live (CI's clean clone does), visible in the container
        (etc / "tmpfiles.d").mkdir(exist_ok=True)
        (etc / "tmpfiles.d" / "tmp.conf").write_text("d /tmp 1777 root root -\n")
        # a machine of its own: its journal apart from the host's
        (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")

    def boot(self) -> float:
        """Mount the overlay (first boot only), boot, wait for systemd to finish starting;
        returns the seconds it took."""
        started = time.perf_counter()
        if not self.mounted:
            self._mount()
        command = [NSPAWN, f"--directory={self.root}", f"--machine={self.name}",
                   "--register=no", "--keep-unit", "--boot", "--console=passive",
                   *(f"--bind={path}" for path in self.binds)]  # fmt: skip
        # nspawn mounts an empty tmpfs on /tmp unless told not to: a checkout (or a HOME, as
        # CI's) under /tmp would vanish inside; the overlay's /tmp shows the host's instead
        environment = {**os.environ, "SYSTEMD_NSPAWN_TMPFS_TMP": "0"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=environment)  # fmt: skip
        self.leader = wait_until(self._leader, timeout=30, interval=0.1,
                                 on_timeout=self._failed("its PID 1"))  # fmt: skip
        wait_until(self._booted, timeout=90, interval=0.2,
                   on_timeout=self._failed("the end of its boot"))  # fmt: skip
        return time.perf_counter() - started

    def _leader(self) -> int | None:
        """The container's PID 1 as the host sees it: nspawn's child running systemd."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {self.process.returncode}: "
                                 f"{self.console()}")  # fmt: skip
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/exe").endswith("/systemd"):
                    return int(pid)
        return None

    def _booted(self) -> str | None:
        state = self.run("systemctl is-system-running", check=False).stdout.strip()
        return state if state in ("running", "degraded") else None

    def _failed(self, what: str):
        def explain():
            raise AssertionError(f"container {self.name}: no {what}: {self.console()}")

        return explain

    def console(self) -> str:
        """The end of nspawn's own output (its errors; the boot's log is in the journal)."""
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def run(self, command: str, *, check: bool = True, timeout: float = 600
            ) -> subprocess.CompletedProcess:  # fmt: skip
        """`command` (a shell line) as root inside the container."""
        clean = ["env", "-i", f"PATH={CLEAN_PATH}", "HOME=/root", "LANG=C.UTF-8"]
        argv = ["nsenter", f"--target={self.leader}", "--all", "--", *clean, "sh", "-c", command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"in container {self.name}: {command!r} exited "
                                 f"{done.returncode}: {done.stderr.strip()[-2000:]}")  # fmt: skip
        return done

    def poweroff(self, timeout: float = 90) -> None:
        """A clean shutdown (SIGTERM: nspawn asks the container's systemd to power off)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def reboot(self) -> float:
        """Power off and boot again on the same upper layer; the seconds the boot took."""
        self.poweroff()
        return self.boot()

    def remove(self) -> None:
        self.poweroff()
        if self.mounted:
            for mount_point in (self.root, self.base):
                subprocess.run(["umount", str(mount_point)], check=False, timeout=60)
            self.mounted = False
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.log_path.parent, ignore_errors=True)


def quote(*words: str) -> str:
    """A shell line of `words`."""
    return " ".join(shlex.quote(word) for word in words)
