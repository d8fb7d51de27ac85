"""The public face of the OpenStack fake: start/stop, faults, seeding and inspection.

>>> with OpenStackFake() as fake:
...     server = fake.add_server("backend0", addresses={"management": ["192.168.122.111"]})
...     conn = fake.connect()
...     conn.compute.find_server("backend0").id == server.id
True

Every method is thread-safe: it takes the cloud's lock, as the HTTP handlers do. The
objects returned by inspection methods are copies; change the cloud through the methods.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from . import cinder, heat, keystone, nova
from .app import HttpApp, RequestRecord
from .records import (
    SNAPSHOT_ERROR,
    SNAPSHOT_STUCK,
    ApiError,
    Identity,
    Server,
    Snapshot,
    Volume,
    new_id,
)
from .server import ServerThread
from .stack_model import Stack
from .stacks import HeatEngine
from .state import CloudState

if TYPE_CHECKING:
    from openstack.connection import Connection


class OpenStackFake:
    """Keystone v3, Nova, Cinder v3 and Heat over HTTP on ``host:port`` (0: a free port)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = "admin",
        password: str = "secret",
        project_name: str = "demo",
        region_name: str = "RegionOne",
        snapshot_delay: float = 0.2,
        stack_delay: float = 0.2,
    ) -> None:
        identity = Identity(username, password, project_name, region_name=region_name)
        self.state = CloudState(identity)
        self.heat = HeatEngine(self.state)
        self.app = HttpApp(self.state)
        keystone.register(self.app)
        nova.register(self.app)
        cinder.register(self.app)
        heat.register(self.app, self.heat)
        self._defaults = (snapshot_delay, stack_delay)
        self.snapshot_delay, self.stack_delay = snapshot_delay, stack_delay
        self._thread = ServerThread(self.app, host, port)

    # -- lifecycle and connection details ----------------------------------------------------

    def start(self) -> OpenStackFake:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop()

    def __enter__(self) -> OpenStackFake:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._thread.port

    @property
    def base_url(self) -> str:
        return self._thread.base_url

    @property
    def auth_url(self) -> str:
        """Keystone's unversioned URL; it serves the version document."""
        return f"{self.base_url}/identity"

    @property
    def project_id(self) -> str:
        return self.state.identity.project_id

    @property
    def credentials(self) -> dict[str, str]:
        """Keyword arguments for ``openstack.connect``."""
        identity = self.state.identity
        return {
            "auth_url": self.auth_url,
            "username": identity.username,
            "password": identity.password,
            "project_name": identity.project_name,
            "user_domain_name": identity.domain_name,
            "project_domain_name": identity.domain_name,
            "region_name": identity.region_name,
        }

    def connect(self, **overrides: Any) -> Connection:
        """An openstacksdk ``Connection`` to the fake (no clouds.yaml, no environment)."""
        import openstack

        return openstack.connect(
            load_yaml_config=False, load_envvars=False, **{**self.credentials, **overrides}
        )

    def clouds_yaml(self, cloud: str = "fake") -> str:
        """A ``clouds.yaml`` document with one cloud pointing at the fake."""
        creds = self.credentials
        auth = "\n".join(
            f"        {key}: {creds[key]}"
            for key in (
                "auth_url",
                "username",
                "password",
                "project_name",
                "user_domain_name",
                "project_domain_name",
            )
        )
        return (
            f"clouds:\n  {cloud}:\n    auth:\n{auth}\n"
            f"    region_name: {creds['region_name']}\n    identity_api_version: 3\n"
        )

    # -- fault injection --------------------------------------------------------------------

    def fail_requests(
        self,
        method: str | None,
        path: str,
        status: int = 503,
        count: int | None = 1,
        message: str | None = None,
    ) -> None:
        """The next ``count`` requests (None: all) whose method is ``method`` (None: any) and
        whose path matches the regex ``path`` (``re.search``) answer ``status`` with the
        service's JSON error body."""
        text = message or f"Injected fault: HTTP {status} from the OpenStack fake."
        self.app.add_fault(method, path, status, count, text)

    def add_latency(
        self, method: str | None, path: str, seconds: float, count: int | None = None
    ) -> None:
        """Delay matching requests by ``seconds`` (the next ``count``, or all when None)."""
        self.app.add_latency(method, path, seconds, count)

    def clear_faults(self) -> None:
        """Drop every request fault and latency rule."""
        self.app.clear_rules()

    @property
    def snapshot_delay(self) -> float:
        """Seconds a new snapshot stays ``creating``."""
        return self.state.snapshot_delay

    @snapshot_delay.setter
    def snapshot_delay(self, seconds: float) -> None:
        with self.state.lock:
            self.state.snapshot_delay = seconds

    @property
    def stack_delay(self) -> float:
        """Seconds each stack create, update or delete stays ``*_IN_PROGRESS``."""
        return self.heat.delay

    @stack_delay.setter
    def stack_delay(self, seconds: float) -> None:
        with self.state.lock:
            self.heat.delay = seconds

    def fail_snapshot(self, snapshot_id: str) -> None:
        """The snapshot goes to ``error`` (at its deadline if still ``creating``, else now)."""
        with self.state.lock:
            self.state.set_snapshot_outcome(self.state.snapshot(snapshot_id), SNAPSHOT_ERROR)

    def stall_snapshot(self, snapshot_id: str) -> None:
        """The snapshot is (again) ``creating`` and stays so."""
        with self.state.lock:
            self.state.set_snapshot_outcome(self.state.snapshot(snapshot_id), SNAPSHOT_STUCK)

    def fail_next_snapshots(self, count: int = 1) -> None:
        """The next ``count`` created snapshots end in ``error``."""
        with self.state.lock:
            self.state.next_snapshot_outcomes.extend([SNAPSHOT_ERROR] * count)

    def stall_next_snapshots(self, count: int = 1) -> None:
        """The next ``count`` created snapshots stay ``creating`` forever."""
        with self.state.lock:
            self.state.next_snapshot_outcomes.extend([SNAPSHOT_STUCK] * count)

    def fail_next_stack(self, reason: str, resource: str | None = None, count: int = 1) -> None:
        """The next ``count`` stack creates/updates end ``*_FAILED`` with ``reason`` as the
        stack status reason. With ``resource``, the resources before it are done and it is
        marked failed; otherwise nothing is done."""
        with self.state.lock:
            self.heat.fail_next(reason, resource, count)

    # -- seeding ----------------------------------------------------------------------------

    def add_server(
        self,
        name: str,
        addresses: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        console_output: str = "",
        status: str = "ACTIVE",
        **fields: Any,
    ) -> Server:
        """Add a server. ``addresses``: ``{"net": ["10.0.0.5", ...]}`` or Nova's format."""
        with self.state.lock:
            server = self.state.add_server(
                name,
                addresses=addresses,
                metadata=dict(metadata or {}),
                console_output=console_output,
                status=status,
                **fields,
            )
            return copy.deepcopy(server)

    def add_volume(
        self,
        name: str,
        size: int = 10,
        attached_to: str | None = None,
        device: str | None = None,
        **fields: Any,
    ) -> Volume:
        """Add a volume, attached (``in-use``) to server ``attached_to`` (id or name) if given."""
        with self.state.lock:
            volume = self.state.add_volume(name, size, **fields)
            if attached_to is not None:
                self.state.attach(volume.id, self._server(attached_to).id, device)
            return copy.deepcopy(volume)

    def add_snapshot(
        self, volume_id: str, name: str, status: str = "available", **fields: Any
    ) -> Snapshot:
        """Add a finished snapshot (``created_at``, ``metadata`` ... may be given)."""
        with self.state.lock:
            volume = self.state.volume(volume_id)
            snap = Snapshot(
                fields.pop("id", None) or new_id(), name, volume_id, volume.size, status, **fields
            )
            self.state.snapshots[snap.id] = snap
            return copy.deepcopy(snap)

    def set_console_output(self, server: str, text: str) -> None:
        with self.state.lock:
            self._server(server).console_output = text

    def set_boot_console(self, server_name: str, text: str) -> None:
        """Servers named ``server_name`` created from now on (by Heat too) get this console log."""
        with self.state.lock:
            self.state.boot_consoles[server_name] = text

    def set_server_status(self, server: str, status: str) -> None:
        with self.state.lock:
            self._server(server).status = status

    def _server(self, name_or_id: str) -> Server:
        if name_or_id in self.state.servers:
            return self.state.servers[name_or_id]
        found = [s for s in self.state.servers.values() if s.name == name_or_id]
        if len(found) != 1:
            raise ApiError(404, f"{len(found)} servers named {name_or_id}")
        return found[0]

    # -- inspection -------------------------------------------------------------------------

    def _copies(self, records: dict[str, Any]) -> list[Any]:
        with self.state.lock:
            self.state.advance()
            return copy.deepcopy(list(records.values()))

    def servers(self) -> list[Server]:
        return self._copies(self.state.servers)

    def volumes(self) -> list[Volume]:
        return self._copies(self.state.volumes)

    def snapshots(self) -> list[Snapshot]:
        return self._copies(self.state.snapshots)

    def stacks(self) -> list[Stack]:
        """Every stack record, deleted and nested ones included."""
        return self._copies(self.state.stacks)

    def stack(self, name_or_id: str) -> Stack:
        with self.state.lock:
            self.state.advance()
            return copy.deepcopy(self.heat.find(name_or_id))

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Served requests, oldest first; filtered by method and by path regex (``re.search``)."""
        records = self.app.records()
        return [
            r
            for r in records
            if (method is None or r.method == method.upper())
            and (path is None or re.search(path, r.path))
        ]

    def clear_requests(self) -> None:
        self.app.clear_log()

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of crashes inside the fake (each answered 500); should stay empty."""
        return list(self.app.internal_errors)

    def reset(self) -> None:
        """Empty the cloud, drop faults and the request log, restore the delays."""
        with self.state.lock:
            self.state.reset()
            self.heat.failures.clear()
            self.snapshot_delay, self.stack_delay = self._defaults
        self.clear_faults()
        self.clear_requests()
