"""The local engine: results, progress inside long files, and failures that stop the map."""

import functools
import gzip
import json
import os

import pytest

from pipeline.core import engine
from pipeline.core.extraction import count_file
from pipeline.core.reader import InputFileError
from pipeline.core.selection import SelectedFile


def write_log(path, lines):
    events = ({"time": f"2016-03-01T{i % 24:02d}:00:00", "pad": os.urandom(200).hex()}
              for i in range(lines))  # fmt: skip
    body = "".join(json.dumps(event) + "\n" for event in events)
    path.write_bytes(gzip.compress(body.encode(), compresslevel=1))
    return SelectedFile(str(path), path.stat().st_size)


@pytest.mark.parametrize("processes", [1, 2])
def test_progress_is_reported_inside_files_and_reaches_the_whole_input(
    tmp_path, monkeypatch, processes
):
    monkeypatch.setattr(engine, "PROGRESS_EVERY_SECONDS", 0.0)
    # files big enough to take a while each, so the parent sees them half-read even when the
    # workers keep both cores busy
    files = [write_log(tmp_path / f"tracking.log-2016030{i}.gz", 100_000) for i in range(1, 4)]
    seen = []
    mapper = functools.partial(count_file, max_line_bytes=1 << 20)
    results = list(engine.map_files(mapper, files, processes, progress=seen.append))
    assert sorted(r.value["2016-03-01"] for r in results) == [100_000] * 3
    assert seen[-1].fraction == 1.0 and seen[-1].files_done == 3 and seen[-1].lines == 300_000
    # some reports came while a file was only partly read
    assert any(0 < s.bytes_done < s.bytes_total and s.bytes_done not in
               {f.size for f in files} for s in seen)  # fmt: skip
    fractions = [s.fraction for s in seen]
    assert fractions == sorted(fractions)


def test_a_bad_file_stops_the_map_with_its_name(tmp_path):
    good = [write_log(tmp_path / f"tracking.log-2016030{i}.gz", 2000) for i in range(1, 4)]
    bad = tmp_path / "tracking.log-20160309.gz"
    bad.write_bytes(gzip.compress(b'{"time": "2016-03-09T00:00:00"}\n' * 1000)[:-20])
    files = [*good, SelectedFile(str(bad), bad.stat().st_size)]
    mapper = functools.partial(count_file, max_line_bytes=1 << 20)
    with pytest.raises(InputFileError, match="tracking.log-20160309.gz"):
        list(engine.map_files(mapper, files, 2))
