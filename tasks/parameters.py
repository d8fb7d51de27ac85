"""Object parameters given in part keep the deployment's other values.

Prefect merges a run's parameters into its deployment's one level deep: a run started with
`--param server='{"image": "x", ...}'` gets exactly that object as `server`, and every field it
leaves out falls back to the model's default, not to the deployment's value (`hadoop_size: 50`
from prefect.yaml silently became 10). Each flow passes its model parameters through
`fill_from_deployment` first: fields the caller did not give (not in the model's
`model_fields_set`) are taken from the deployment's own parameters, at any depth, and logged.
Outside a deployment (a flow called directly, a test) nothing changes.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, runtime
from prefect.client.orchestration import get_client

from domain.parameters import complete


def deployment_parameters() -> dict[str, Any]:
    """The parameters of the deployment this flow run belongs to ({} outside a deployment).

    Not `prefect.runtime.deployment.parameters`: that is the run's own, already merged, set.
    """
    deployment_id = runtime.deployment.id
    if not deployment_id:
        return {}
    with get_client(sync_client=True) as client:
        return client.read_deployment(deployment_id).parameters or {}


def fill_from_deployment(**parameters: Any) -> tuple[Any, ...]:
    """The flow's model parameters, in the order given, completed from its deployment's.

    Call it first in a flow: `access, keys = fill_from_deployment(access=access, keys=keys)`.
    """
    names = list(parameters)
    deployed = deployment_parameters()
    if not deployed:
        return tuple(parameters.values())
    logger = get_run_logger()
    completed = []
    for name in names:
        value, taken = complete(parameters[name], deployed.get(name), name)
        for path, default in taken:
            logger.info("%s not given: the deployment's %r is used", path, default)
        completed.append(value)
    return tuple(completed)
