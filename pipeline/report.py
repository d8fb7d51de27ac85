"""What each task read and discarded, gathered for the end of a run.

Tasks may run in other processes (luigi ``--workers``), so each task writes its record as a
JSON file into the run's report directory; :func:`collect` reads them back. The directory is the
one bound to the current context (:func:`records_into`, by :class:`pipeline.run.PipelineRun`),
else ``$PIPELINE_REPORT_DIR`` (set by ``launch-task`` for its process, or by whoever starts it).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

ENV_VAR = "PIPELINE_REPORT_DIR"

_bound: contextvars.ContextVar[str | None] = contextvars.ContextVar("report_dir", default=None)


@contextlib.contextmanager
def records_into(path: str | os.PathLike) -> Iterator[None]:
    """Records made inside this block, in this context only, go into ``path``."""
    token = _bound.set(os.fspath(path))
    try:
        yield
    finally:
        _bound.reset(token)


def record(task_id: str, data: dict, suffix: str = ".json") -> None:
    directory = _bound.get() or os.environ.get(ENV_VAR)
    if not directory:
        return
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", task_id)[:200] + suffix
    path = Path(directory) / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"task_id": task_id, **data}, sort_keys=True))
    tmp.replace(path)


def record_failure(task_id: str, family: str, message: str) -> None:
    """Record that a task failed, with the one-line cause, for the end-of-run summary."""
    record(task_id, {"task": family, "failed": message}, suffix=".failed.json")


def collect(directory: str | os.PathLike) -> list[dict]:
    records = []
    for path in sorted(Path(directory).glob("*.json")):
        records.append(json.loads(path.read_text()))
    return records


def discards_by_task(records: list[dict]) -> dict[str, dict[str, int]]:
    """``{task family: {reason: lines}}`` for the tasks that discarded anything."""
    totals: dict[str, dict[str, int]] = {}
    for rec in records:
        for reason, count in rec.get("discards", {}).items():
            per_task = totals.setdefault(rec["task"], {})
            per_task[reason] = per_task.get(reason, 0) + count
    return totals


def format_summary(records: list[dict]) -> str:
    """A plain-text table of the run: one line per task that ran, then discards per reason."""
    failures = [rec for rec in records if "failed" in rec]
    records = [rec for rec in records if "failed" not in rec]
    if not records and not failures:
        return "No pipeline task finished in this run (already complete, or failed: see above)."
    lines = ["Pipeline run summary:"] if records else []
    for rec in records:
        rate = rec["lines"] / rec["seconds"] if rec.get("seconds") else 0
        lines.append(
            f"  {rec['task']}: {rec['files']} files, {rec['lines']:,} lines, "
            f"{rec['seconds']:.1f}s ({rate:,.0f} lines/s)"
        )
        for reason, count in rec.get("discards", {}).items():
            lines.append(f"      discarded {count:,} ({reason})")
        for kind, count in rec.get("skipped_entries", {}).items():
            lines.append(f"      skipped {count:,} entries under the sources: {kind} (not read)")
        for warning in rec.get("warnings", []):
            lines.append(f"      warning: {warning}")
    for rec in failures:
        lines.append(f"FAILED {rec['task']}: {rec['failed']}")
    return "\n".join(lines)
