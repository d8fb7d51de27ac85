"""Credentials and connection settings of an OpenStack cloud, as a Prefect block."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

if TYPE_CHECKING:
    from openstack.connection import Connection


class OpenStackCloud(Block):
    """A Keystone v3 project on an OpenStack cloud (Nova, Cinder, Heat through openstacksdk).

    The password stays a secret: it reaches openstacksdk only inside `get_client()`, never a
    flow parameter, log line or artifact. No clouds.yaml or `OS_*` variable is read, so a
    worker's environment cannot silently change which cloud a flow acts on.

    Example:
        ```python
        from blocks.openstack import OpenStackCloud

        OpenStackCloud(auth_url="https://keystone.example.org:5000/v3", username="backup",
                       password="...", project_name="edx").save("openstack")
        conn = OpenStackCloud.load("openstack").get_client()
        ```
    """

    _block_type_name = "OpenStack Cloud"
    _description = "Keystone v3 credentials of an OpenStack project, for openstacksdk."

    auth_url: str = Field(..., description="Keystone URL, e.g. https://keystone:5000/v3.")
    username: str = Field(..., description="User the flows authenticate as.")
    password: SecretStr = Field(..., description="That user's password.")
    project_name: str = Field(..., description="Project (tenant) that owns the servers.")
    user_domain_name: str = Field(default="Default", description="Domain of the user.")
    project_domain_name: str = Field(default="Default", description="Domain of the project.")
    region_name: str | None = Field(default=None, description="Region; None: the only one.")
    interface: str = Field(
        default="public", description="Endpoint interface: public, internal or admin."
    )
    verify: bool | str = Field(
        default=True,
        description="Verify TLS certificates: true, false, or the path of a CA bundle.",
    )
    api_timeout: float = Field(
        default=60,
        gt=0,
        description="Seconds any single API request may take (Prefect task timeouts cannot "
        "interrupt a blocked HTTP call, so every request carries its own).",
    )

    def get_client(self) -> Connection:
        """A new openstacksdk `Connection`; the caller closes it (`conn.close()`)."""
        import openstack

        options = {
            "auth_url": self.auth_url,
            "username": self.username,
            "password": self.password.get_secret_value(),
            "project_name": self.project_name,
            "user_domain_name": self.user_domain_name,
            "project_domain_name": self.project_domain_name,
            "interface": self.interface,
            "verify": self.verify,
            "api_timeout": self.api_timeout,
        }
        if self.region_name:
            options["region_name"] = self.region_name
        return openstack.connect(load_yaml_config=False, load_envvars=False, **options)
