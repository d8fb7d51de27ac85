"""Sorting more rows than fit in memory: sorted runs spilled to temp files, then merged.

Rows are tuples of strings without tabs or newlines (the warehouse's TSV fields).
"""

from __future__ import annotations

import heapq
import os
import tempfile
from collections.abc import Iterable, Iterator

DEFAULT_RUN_ROWS = 500_000


def _spill(rows: list[tuple[str, ...]], directory: str) -> str:
    rows.sort()
    fd, path = tempfile.mkstemp(prefix="run-", suffix=".tsv", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
        for row in rows:
            out.write("\t".join(row))
            out.write("\n")
    return path


def _read_run(path: str) -> Iterator[tuple[str, ...]]:
    with open(path, encoding="utf-8", newline="") as handle:
        for line in handle:
            yield tuple(line[:-1].split("\t"))


def sorted_rows(
    rows: Iterable[tuple[str, ...]], run_rows: int = DEFAULT_RUN_ROWS
) -> Iterator[tuple]:
    """Yield ``rows`` in tuple order using at most about ``run_rows`` rows of memory."""
    buffer: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="pipeline-sort-") as directory:
        runs: list[str] = []
        for row in rows:
            buffer.append(row)
            if len(buffer) >= run_rows:
                runs.append(_spill(buffer, directory))
                buffer = []
        if not runs:
            buffer.sort()
            yield from buffer
            return
        if buffer:
            runs.append(_spill(buffer, directory))
            buffer = []
        yield from heapq.merge(*(_read_run(path) for path in runs))
