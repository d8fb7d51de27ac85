"""The tasks' outputs, each owning how it is written.

Every write is atomic (:func:`pipeline.core.fs.atomic_write`: a temporary file renamed into
place, or one S3 upload once complete): a reader never sees half a file, and a write that
fails leaves what was there before. A directory in upstream's Hadoop layout (``part-00000``,
then the ``_SUCCESS`` marker that makes it complete) is replaced only through
:meth:`PartFileOutput.writing`, the one place that knows the order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO

import luigi

from pipeline.core import fs

PART_FILE = "part-00000"
SUCCESS_MARKER = "_SUCCESS"


class UrlTarget(luigi.Target):
    """A file (local or s3://) that exists once its writer finished."""

    def __init__(self, url: str):
        self.url = fs.check_supported(url)

    def exists(self) -> bool:
        return fs.exists(self.url)

    @contextlib.contextmanager
    def writing(self, mode: str = "w") -> Iterator[IO]:
        """The file's new content: it replaces the old one only if the block completes."""
        with fs.atomic_write(self.url, mode) as out:
            yield out

    def __repr__(self) -> str:
        return f"UrlTarget({self.url!r})"


class PartFileOutput(luigi.Target):
    """A directory holding ``part-00000``, complete once its ``_SUCCESS`` marker is there.

    With ``marker_text`` (an interval, say), the marker holds it and the directory is complete
    only for that text: outputs of another interval at the same place (yesterday's, with a
    fixed output directory) do not make this one complete.
    """

    def __init__(self, directory: str, marker_text: str = ""):
        self.directory = fs.check_supported(directory)
        self.part = UrlTarget(fs.join(directory, PART_FILE))
        self.marker = UrlTarget(fs.join(directory, SUCCESS_MARKER))
        self.marker_text = marker_text

    def exists(self) -> bool:
        if not self.marker.exists():
            return False
        return not self.marker_text or fs.read_text(self.marker.url).strip() == self.marker_text

    @contextlib.contextmanager
    def writing(self) -> Iterator[IO]:
        """Replace the directory's output with what the block writes to ``part-00000``.

        The marker goes first (the directory is incomplete from then on), then every other
        part file (an upstream Hadoop run's: readers sum them all); the marker is written
        last, once the block completed. Other files the marker vouches for (a report) are
        written inside the block.
        """
        fs.remove(self.marker.url)
        for url, _ in fs.list_files(self.directory.rstrip("/") + "/"):
            name = url.rsplit("/", 1)[-1]
            if name.startswith("part-") and name != PART_FILE:
                fs.remove(url)
        with self.part.writing() as out:
            yield out
        with self.marker.writing() as marker:
            marker.write(self.marker_text + "\n" if self.marker_text else "")

    def __repr__(self) -> str:
        return f"PartFileOutput({self.directory!r})"
