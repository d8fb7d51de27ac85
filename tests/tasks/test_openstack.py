"""Which cloud errors the OpenStack tasks retry, and the families of their own errors."""

from __future__ import annotations

import warnings

import pytest
from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk
from openstack.warnings import RemovedInSDK50Warning
from prefect.states import Completed, Failed

from pipeline.errors import NotFound, OperationFailed, OperationTimeout
from tasks.openstack import (
    CloudLookupError,
    RotationFailed,
    SnapshotDeleteFailed,
    SnapshotDeleteTimeout,
    SnapshotFailed,
    SnapshotTimeout,
    is_transient_cloud_error,
    retry_on_transient_cloud_error,
)

# -- which cloud errors are retried ------------------------------------------------------------


# openstacksdk deprecates http_status= (a real error takes it from the response); these
# errors are built at collection time, where pytest marks do not filter warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RemovedInSDK50Warning)
    CLOUD_ERRORS = [
        (sdk.HttpException("x", http_status=503), True),
        (sdk.HttpException("x", http_status=500), True),
        (sdk.HttpException("x", http_status=429), True),
        (sdk.BadRequestException("x", http_status=400), False),
        (sdk.NotFoundException("x", http_status=404), False),
        (ksa.ServiceUnavailable(http_status=503), True),
        (ksa.Unauthorized(http_status=401), False),
        (ksa.ConnectFailure("refused"), True),
        (ksa.ConnectTimeout("slow"), True),
        (ksa.SSLError("bad certificate"), False),
        (sdk.ResourceTimeout("waited"), False),
        (ValueError("bug"), False),
    ]


@pytest.mark.parametrize(("error", "transient"), CLOUD_ERRORS)
def test_only_transient_cloud_errors_are_retried(error, transient):
    assert is_transient_cloud_error(error) is transient
    assert retry_on_transient_cloud_error(None, None, Failed(data=error)) is transient


def test_an_unreachable_keystone_is_transient_through_its_cause():
    try:
        try:
            raise ksa.ConnectFailure("Unable to establish connection")
        except ksa.ConnectFailure as cause:
            raise ksa.DiscoveryFailure("Could not find versioned identity endpoints") from cause
    except ksa.DiscoveryFailure as error:
        assert is_transient_cloud_error(error)


def test_a_completed_state_is_not_retried():
    assert retry_on_transient_cloud_error(None, None, Completed(data=1)) is False


@pytest.mark.parametrize(
    "error",
    [SnapshotTimeout("late"), SnapshotDeleteTimeout("still there"), CloudLookupError("none")],
)
def test_our_own_errors_timeouts_included_are_never_retried(error):
    assert is_transient_cloud_error(error) is False
    assert retry_on_transient_cloud_error(None, None, Failed(data=error)) is False


def test_the_errors_are_in_the_project_families():
    assert issubclass(CloudLookupError, NotFound) and issubclass(CloudLookupError, LookupError)
    for failure in (SnapshotFailed, SnapshotDeleteFailed, RotationFailed):
        assert issubclass(failure, OperationFailed)
    assert issubclass(SnapshotTimeout, OperationTimeout)
    # a delete that timed out is still caught as a failed delete
    assert issubclass(SnapshotDeleteTimeout, SnapshotDeleteFailed)
    assert issubclass(SnapshotDeleteTimeout, OperationTimeout)
