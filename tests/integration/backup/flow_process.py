"""A flow process for the crash tests to kill: runs backup-backend-node (or the flow FLOW names,
`module:function`) with the parameters in a JSON file, against the Prefect server in
PREFECT_API_URL, as a worker's flow process would.

    python -m tests.integration.backup.flow_process PARAMETERS.json [FLOW]

Prints the final state on its last line (when it gets that far).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path


def main(parameters_path: str, flow: str = "flows.backup:backup_backend_node") -> int:
    parameters = json.loads(Path(parameters_path).read_text())
    module, _, name = flow.partition(":")
    state = getattr(importlib.import_module(module), name)(**parameters, return_state=True)
    print(f"final state: {state.type.value}: {state.message}", flush=True)
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
