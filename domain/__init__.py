"""Prefect-free operations logic, imported by `tasks/` and `flows/` alike.

Nothing here imports Prefect, openstacksdk or a flow: these modules compute (plans, models,
verdicts) from plain values, so they are tested on real outputs without a server or a cloud.
"""
