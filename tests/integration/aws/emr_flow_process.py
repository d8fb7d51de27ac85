"""A flow process for the EMR cancel test to signal: runs run-pipeline-on-emr with the
parameters in a JSON file, against the Prefect server in PREFECT_API_URL, as a worker's flow
process would (the AwsCredentials block there points at the test's moto server).

    python -m tests.integration.aws.emr_flow_process PARAMETERS.json

Prints the final state on its last line (when it gets that far).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from flows.pipeline_on_emr import run_pipeline_on_emr


def main(parameters_path: str) -> int:
    parameters = json.loads(Path(parameters_path).read_text())
    state = run_pipeline_on_emr(**parameters, return_state=True)
    print(f"final state: {state.type.value}: {state.message}", flush=True)
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
