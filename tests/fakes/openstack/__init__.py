"""A small stateful fake of OpenStack (Keystone v3, Nova, Cinder v3, Heat) over HTTP.

Unmodified openstacksdk talks to it like to a real cloud::

    from tests.fakes.openstack import OpenStackFake

    with OpenStackFake(snapshot_delay=0.1) as fake:
        fake.add_server("backend0")
        conn = fake.connect()          # or openstack.connect(**fake.credentials)

Standalone: ``python -m tests.fakes.openstack --port 5000 [--seed demo]``.
Pytest fixtures: :mod:`tests.fakes.fixtures` (``openstack_fake``, ``openstack_conn``).
"""

from .app import RequestRecord
from .fake import OpenStackFake
from .records import ApiError, Server, Snapshot, Volume
from .stack_model import Stack

__all__ = ["ApiError", "OpenStackFake", "RequestRecord", "Server", "Snapshot", "Stack", "Volume"]
