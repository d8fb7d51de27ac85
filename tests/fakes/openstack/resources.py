"""What Heat resources do in the fake: create, update and delete the real fake objects.

``OS::Nova::Server`` and ``OS::Cinder::Volume`` create Nova servers and Cinder volumes in the
:class:`~.state.CloudState`, named ``<stack>-<resource>-<12 random chars>`` unless the
``name`` property is set, exactly as Heat does. ``OS::Cinder::VolumeAttachment`` attaches
(the volume becomes ``in-use``). Neutron ports and floating IPs have no API in the fake: they
are recorded with made-up ids and addresses, which end up in the servers' ``addresses``.
Any other type is recorded with a made-up id and no attributes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from typing import Any

from .records import ApiError, new_id, random_mac, short_id, timestamp
from .stack_model import BuildContext, ResourceType, StackResource, TemplateResourceType

FIXED_RANGE = ipaddress.ip_network("10.0.0.0/24")
FLOATING_RANGE = ipaddress.ip_network("172.24.4.0/24")


class ServerType(ResourceType):
    """``OS::Nova::Server``: a Nova server; addresses from its ports or new ones."""

    def _addresses(self, ctx: BuildContext, res: StackResource) -> dict[str, list[dict[str, Any]]]:
        """Nova addresses from the ``networks`` property: a port's address, or a new one."""
        addresses: dict[str, list[dict[str, Any]]] = {}
        res.attributes["ports"] = []
        for spec in res.properties.get("networks") or [{"network": "private"}]:
            port = ctx.by_physical_id(spec.get("port"))
            if port is not None:
                res.attributes["ports"].append(port.physical_id)
                network = port.attributes["network"]
                addr, mac = port.attributes["ip_address"], port.attributes["mac_address"]
            else:
                network = str(spec.get("network") or spec.get("uuid") or "private")
                addr, mac = spec.get("fixed_ip") or ctx.allocate(FIXED_RANGE), random_mac()
            addresses.setdefault(network, []).append(
                {
                    "addr": addr,
                    "version": 4,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": mac,
                }
            )
        return addresses

    def create(self, ctx: BuildContext, res: StackResource) -> None:
        props = res.properties
        metadata = {
            k: v if isinstance(v, str) else json.dumps(v)
            for k, v in (props.get("metadata") or {}).items()
        }
        server = ctx.state.add_server(
            props.get("name") or ctx.physical_name(res.name),
            image_id=str(props.get("image") or ""),
            flavor=str(props.get("flavor") or "m1.small"),
            key_name=props.get("key_name"),
            metadata=metadata,
        )
        server.addresses = self._addresses(ctx, res)
        res.physical_id = server.id
        for other in ctx.resources.values():
            if other.attributes.get("port_id") in res.attributes["ports"]:
                _associate(ctx, other)

    def update(self, ctx: BuildContext, res: StackResource, old: dict[str, Any]) -> None:
        server = ctx.state.server(res.physical_id)
        props = res.properties
        if props.get("name") != old.get("name"):
            server.name = props.get("name") or ctx.physical_name(res.name)
        server.metadata = {
            k: v if isinstance(v, str) else json.dumps(v)
            for k, v in (props.get("metadata") or {}).items()
        }
        server.flavor = str(props.get("flavor") or server.flavor)
        if props.get("networks") != old.get("networks"):
            server.addresses = self._addresses(ctx, res)
        server.updated_at = timestamp()

    def delete(self, ctx: BuildContext, res: StackResource) -> None:
        if res.physical_id in ctx.state.servers:
            ctx.state.delete_server(res.physical_id)

    def attribute(self, ctx: BuildContext, res: StackResource, name: str) -> Any:
        server = ctx.state.servers.get(res.physical_id)
        if server is None:
            return None
        if name == "first_address":
            fixed = [
                e["addr"]
                for entries in server.addresses.values()
                for e in entries
                if e.get("OS-EXT-IPS:type") == "fixed"
            ]
            return fixed[0] if fixed else ""
        if name == "networks":
            return {net: [e["addr"] for e in entries] for net, entries in server.addresses.items()}
        if name == "addresses":
            return server.addresses
        if name in ("name", "metadata"):
            return getattr(server, name)
        if name == "show":
            return dataclasses.asdict(server)
        return None


class VolumeType(ResourceType):
    """``OS::Cinder::Volume``: a Cinder volume; grows and renames in place on update."""

    def create(self, ctx: BuildContext, res: StackResource) -> None:
        props = res.properties
        volume = ctx.state.add_volume(
            props.get("name") or ctx.physical_name(res.name),
            int(props.get("size") or 1),
            description=props.get("description"),
            metadata={k: str(v) for k, v in (props.get("metadata") or {}).items()},
            volume_type=props.get("volume_type") or "__DEFAULT__",
        )
        res.physical_id = volume.id

    def update(self, ctx: BuildContext, res: StackResource, old: dict[str, Any]) -> None:
        volume = ctx.state.volume(res.physical_id)
        props = res.properties
        size = int(props.get("size") or 1)
        if size < volume.size:
            raise ApiError(400, f"The new size ({size}) is smaller than the current one")
        volume.size = size
        if props.get("name") != old.get("name"):
            volume.name = props.get("name") or ctx.physical_name(res.name)
        volume.description = props.get("description")
        volume.metadata = {k: str(v) for k, v in (props.get("metadata") or {}).items()}
        volume.updated_at = timestamp()

    def delete(self, ctx: BuildContext, res: StackResource) -> None:
        if res.physical_id in ctx.state.volumes:
            ctx.state.delete_volume(res.physical_id)

    def attribute(self, ctx: BuildContext, res: StackResource, name: str) -> Any:
        volume = ctx.state.volumes.get(res.physical_id)
        if volume is None:
            return None
        values = {
            "size": volume.size,
            "status": volume.status,
            "display_name": volume.name,
            "display_description": volume.description,
            "metadata": json.dumps(volume.metadata),
            "metadata_values": dict(volume.metadata),
            "attachments": json.dumps(volume.attachments),
            "attachments_list": list(volume.attachments),
            "created_at": volume.created_at,
            "volume_type": volume.volume_type,
            "show": dataclasses.asdict(volume),
        }
        return values.get(name)


class VolumeAttachmentType(ResourceType):
    """``OS::Cinder::VolumeAttachment``: attaches ``volume_id`` to ``instance_uuid``."""

    def create(self, ctx: BuildContext, res: StackResource) -> None:
        props = res.properties
        mountpoint = props.get("mountpoint")
        attachment = ctx.state.attach(
            str(props.get("volume_id")), str(props.get("instance_uuid")), mountpoint
        )
        res.physical_id = attachment["attachment_id"]

    def delete(self, ctx: BuildContext, res: StackResource) -> None:
        volume_id, server_id = res.properties.get("volume_id"), res.properties.get("instance_uuid")
        if volume_id in ctx.state.volumes:
            ctx.state.detach(str(volume_id), str(server_id))


class PortType(ResourceType):
    """``OS::Neutron::Port``: recorded only; its fixed IP (given or allocated) and MAC."""

    def create(self, ctx: BuildContext, res: StackResource) -> None:
        props = res.properties
        fixed = [spec for spec in props.get("fixed_ips") or [] if spec.get("ip_address")]
        address = fixed[0]["ip_address"] if fixed else ctx.allocate(FIXED_RANGE)
        network = str(props.get("network") or props.get("network_id") or "private")
        res.physical_id = new_id()
        res.attributes = {
            "ip_address": address,
            "network": network,
            "network_id": network,
            "mac_address": random_mac(),
            "name": props.get("name") or ctx.physical_name(res.name),
            "fixed_ips": [{"ip_address": address, "subnet_id": new_id()}],
            "status": "ACTIVE",
        }


class FloatingIPType(ResourceType):
    """``OS::Neutron::FloatingIP``: an address from 172.24.4.0/24, shown on the server
    that owns ``port_id``."""

    def create(self, ctx: BuildContext, res: StackResource) -> None:
        props = res.properties
        res.physical_id = new_id()
        res.attributes = {
            "floating_ip_address": ctx.allocate(FLOATING_RANGE),
            "floating_network_id": props.get("floating_network")
            or props.get("floating_network_id"),
            "port_id": props.get("port_id"),
            "fixed_ip_address": props.get("fixed_ip_address"),
        }
        _associate(ctx, res)


class FloatingIPAssociationType(ResourceType):
    """``OS::Neutron::FloatingIPAssociation``: moves a floating IP of the stack to a port."""

    def create(self, ctx: BuildContext, res: StackResource) -> None:
        res.physical_id = new_id()
        fip = ctx.by_physical_id(res.properties.get("floatingip_id"))
        if fip is not None:
            fip.attributes["port_id"] = res.properties.get("port_id")
            _associate(ctx, fip)


def _associate(ctx: BuildContext, fip: StackResource) -> None:
    """Show a floating IP in the addresses of the stack's server that owns its port."""
    port_id = fip.attributes.get("port_id")
    port = ctx.by_physical_id(port_id)
    address = fip.attributes.get("floating_ip_address")
    for res in ctx.resources.values():
        server = ctx.state.servers.get(res.physical_id) if res.type == "OS::Nova::Server" else None
        if server is None or port is None or port_id not in res.attributes.get("ports", []):
            continue
        entries = server.addresses.setdefault(port.attributes["network"], [])
        if all(entry["addr"] != address for entry in entries):
            entries.append(
                {
                    "addr": address,
                    "version": 4,
                    "OS-EXT-IPS:type": "floating",
                    "OS-EXT-IPS-MAC:mac_addr": port.attributes["mac_address"],
                }
            )


class WaitConditionHandleType(ResourceType):
    """``OS::Heat::WaitConditionHandle``: made-up signal URL, token and curl command."""

    def create(self, ctx: BuildContext, res: StackResource) -> None:
        res.physical_id = new_id()
        url = f"http://127.0.0.1/heat-signal/{res.physical_id}"
        res.attributes = {
            "token": short_id(32),
            "endpoint": url,
            "signal": {"signal_url": url},
            "curl_cli": f"curl -i -X POST -H 'Content-Type: application/json' {url}",
        }


class WaitConditionType(ResourceType):
    """``OS::Heat::WaitCondition``: signalled at once (empty ``data``)."""

    def create(self, ctx: BuildContext, res: StackResource) -> None:
        res.physical_id = new_id()
        res.attributes = {"data": "{}"}


TYPES: dict[str, ResourceType] = {
    "OS::Nova::Server": ServerType(),
    "OS::Cinder::Volume": VolumeType(),
    "OS::Cinder::VolumeAttachment": VolumeAttachmentType(),
    "OS::Neutron::Port": PortType(),
    "OS::Neutron::FloatingIP": FloatingIPType(),
    "OS::Neutron::FloatingIPAssociation": FloatingIPAssociationType(),
    "OS::Heat::WaitConditionHandle": WaitConditionHandleType(),
    "OS::Heat::WaitCondition": WaitConditionType(),
}


def resource_type(type_name: str, files: dict[str, str]) -> ResourceType:
    """The behaviour of ``type_name``; a key of ``files`` is a nested template."""
    if type_name in TYPES:
        return TYPES[type_name]
    if type_name in files:
        return TemplateResourceType(type_name)
    return ResourceType()
