"""One Prefect test server for the AWS site flows, and an account on the bed's moto server
holding what a site builds on (a VPC with a subnet, key pairs, the edxapp bucket, an earlier
tracking-logs bucket) plus the two blocks the flows load (credentials, RDS master password).

Heartbeats off: each flow call is 10x faster.
"""

from __future__ import annotations

import pytest
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from domain.aws_site import AwsSite

#: Distinctive fake secrets, so that a scan for them cannot match anything else.
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSECRETxKEY"
RDS_PASSWORD = "Rds-master-Pw-5c0e11a9"
BLOCK = "aws-test"


@pytest.fixture(scope="session", autouse=True)
def aws_prefect_harness():
    with (
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=60),
    ):
        yield


@pytest.fixture
def account(aws):
    """The moto account, reset, with a site's prerequisites; returns the site settings dict."""
    from prefect.blocks.system import Secret
    from prefect_aws import AwsClientParameters, AwsCredentials

    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    for name in ("analytics", "director"):
        ec2.create_key_pair(KeyName=name)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="client-name-edxapp")
    s3.create_bucket(Bucket="client-name-tracking-logs")  # the LMS writes there already
    s3.put_object(Bucket="client-name-tracking-logs", Key="logs/tracking.log.gz", Body=b"x")
    AwsCredentials(
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name=aws.region,
        aws_client_parameters=AwsClientParameters(endpoint_url=aws.endpoint_url),
    ).save(BLOCK, overwrite=True)
    Secret(value=RDS_PASSWORD).save("client-name-rds-master-password", overwrite=True)
    instance = {"volume_size": 50, "image_id": image}
    return {
        "client": "client-name",
        "region": aws.region,
        "vpc_id": vpc,
        "subnet_id": subnet,
        "director_ssh_cidr": "203.0.113.0/24",
        "analytics": {**instance, "instance_type": "t2.medium", "key_name": "analytics"},
        "director": {**instance, "instance_type": "t2.micro", "volume_size": 8,
                     "key_name": "director"},
        "rds": {"master_password_block": "client-name-rds-master-password"},
        "edxapp_bucket": "client-name-edxapp",
        "edxapp_user_arn": "arn:aws:iam::123456789012:user/edxapp",
    }  # fmt: skip


def site_of(settings: dict, **changes) -> AwsSite:
    return AwsSite.model_validate({**settings, **changes})
