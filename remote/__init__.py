"""Prefect-free remote operations shared by the flows and the `remote-task` command."""
