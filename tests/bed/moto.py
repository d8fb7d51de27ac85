"""A moto server (fake AWS APIs over HTTP) on 127.0.0.1 for tests and for subprocesses.

`MotoServer` runs moto's WSGI server in a thread of this process, on a free port; it starts in
milliseconds. State lives in the server until `reset()` (`POST /moto-api/reset`). Code under
test reaches it through `env()` (AWS_ENDPOINT_URL and fake credentials, honoured by boto3 and by
subprocesses) or `client_kwargs()` for `boto3.client(service, **kwargs)`.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when used: moto and boto3 take about 0.5 s to import
    from moto.server import ThreadedMotoServer

REGION = "us-east-1"
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"


@dataclass
class MotoServer:
    """A started-on-demand ThreadedMotoServer with helpers to point AWS clients at it."""

    ip_address: str = "127.0.0.1"
    port: int = 0
    region: str = REGION
    _server: ThreadedMotoServer | None = field(default=None, repr=False)

    def start(self) -> MotoServer:
        if self._server is None:
            from moto.server import ThreadedMotoServer

            self._server = ThreadedMotoServer(ip_address=self.ip_address, port=self.port,
                                              verbose=False)  # fmt: skip
            self._server.start()
            self.ip_address, self.port = self._server.get_host_and_port()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("moto server not started")
        return f"http://{self.ip_address}:{self.port}"

    def reset(self) -> None:
        """Forget every resource in every service (moto's `POST /moto-api/reset`)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def env(self) -> dict[str, str]:
        """Environment variables that send boto3/botocore (and the AWS CLI) to this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            # never read the developer's real profiles
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for `boto3.client(service, **kwargs)` / `boto3.resource(...)`."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": FAKE_ACCESS_KEY_ID,
            "aws_secret_access_key": FAKE_SECRET_ACCESS_KEY,
            "region_name": self.region,
        }

    def client(self, service: str, **overrides):
        """A boto3 client for `service` talking to this server."""
        import boto3

        return boto3.client(service, **{**self.client_kwargs(), **overrides})

    def resource(self, service: str, **overrides):
        """A boto3 resource for `service` talking to this server."""
        import boto3

        return boto3.resource(service, **{**self.client_kwargs(), **overrides})


def emr_cluster(emr, name: str, tags: dict[str, str] | None = None) -> str:
    """A one-node EMR cluster named `name` (moto: WAITING at once), kept alive; its id."""
    master = {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1,
              "Market": "ON_DEMAND"}  # fmt: skip
    return emr.run_job_flow(
        Name=name, ReleaseLabel="emr-7.5.0", JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
        Tags=[{"Key": key, "Value": value} for key, value in (tags or {}).items()],
        Instances={"InstanceGroups": [master], "KeepJobFlowAliveWhenNoSteps": True},
    )["JobFlowId"]  # fmt: skip
