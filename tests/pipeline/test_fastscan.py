"""The C fast path of the total-events loop gives exactly the Python reference's results.

The C scanner only decides plain lines and hands everything else to the Python path; these tests
compare both on realistic lines, on every edge case of the parsing rules, and on many thousands
of randomly damaged lines.
"""

import os
import random

import pytest

from pipeline.core import events
from pipeline.samples import SampleSpec, generate_logs

EDGE_CASES = [
    b'{"time": "2014-08-01T17:09:59.941616+00:00", "event_type": "x"}',
    b'{"time": "2014-01-03T01:00:00-05:00"}',
    b'Aug  1 17:09:59 host lms: {"time": "2014-08-01T17:09:59+00:00", "event": {"a": 1}}  ',
    b'prefix {"time": "2014-08-01T17:09:59+00:00"} trailing',
    b'{"time": "2014-08-01T00:00:00", "agent": "tab\there"}',
    b'{"time": "2014-08-01T00:00:00", "username": "caf\xe9"}',
    b'{"time": "2014-08-01T00:00:00", "path": "C:\\q\\x"}',
    b'{"time": "2014-08-01T00:00:00", "name": "\\ud83d"}',
    b'{"time": "2014-08-01T00:00:00\xff"}',
    b'{"time": "2014-08-01\\u0054xx"}',
    b'{"ti\\u006de": "2014-08-01T00:00:00"}',
    b'{"time": "2014-01-01T00:00:00", "time": "2014-01-02T00:00:00"}',
    b'{"time": "2014-01-01T00:00:00", "x": {"time": "2099-01-01T00:00:00"}}',
    b'{"time": "no-t-in-here"}',
    b'{"time": "T-first"}',
    b'{"time": ""}',
    b'{"time": null}',
    b'{"time": false}',
    b'{"time": 0}',
    b'{"time": 0.0}',
    b'{"time": 1406913000}',
    b'{"time": ["2014-08-01"]}',
    b'{"time": {"t": 1}}',
    b'{"time": true}',
    b"{}",
    b"[1, 2, 3]",
    b'"just a string"',
    b"42",
    b"null",
    b"",
    b"   ",
    b"\r",
    b"\x00\x01\x02\xff\xfe binary junk",
    b'{"time": "2014-08-01T00:00:00"',
    b"[" * 1000,
    b'{"a": ' * 100 + b"1" + b"}" * 100,
    b'{"time": "2014-08-01T00:00:00", "n": 1e400}',
    b'{"time": "2014-08-01T00:00:00", "n": -0.5e-3, "m": 01}',
    b'{"time": "2014-08-01T00:00:00",}',
    b'{"time": "2014-08-01T00:00:00"} {"time": "2014-08-02T00:00:00"}',
    b'{"time": "2014-08-01T00:00:00", "a": NaN}',
    b'{"time": "2014-08-01T00:00:00", "a": tru}',
    b'\xef\xbb\xbf{"time": "2014-08-01T00:00:00"}',
    b'\t{"time" : "2014-08-01T00:00:00" }\r',
    b'{"time": "2014-08-01T00:00:00", "e": "\x7f"}',
    b'{"time": "2014-08-01T\x7f"}',
]
INTERESTING = [b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"\x00", b"\x1f", b"\x7f", b"\xff",
               b"T", b" ", b"\t", b"\r", b"0", b"-", b"e", b"u", b"n"]  # fmt: skip


def both(block: bytes):
    results = []
    for implementation in (events.count_event_dates, events.count_event_dates_python):
        counts, discards = {}, {}
        lines = implementation(block, counts, discards)
        results.append((lines, counts, discards))
    return results


def assert_same(block: bytes):
    fast, reference = both(block)
    assert fast == reference, block[:300]


def test_the_extension_is_built_and_used():
    if os.environ.get("PIPELINE_PURE_PYTHON"):
        pytest.fail("PIPELINE_PURE_PYTHON is set: this test checks the C path")
    assert events._count_dates_c is not None, "pipeline._fastscan was not built (uv sync builds it)"


@pytest.mark.parametrize("line", EDGE_CASES)
def test_edge_cases_agree(line):
    assert_same(line)


def test_realistic_logs_agree_line_by_line_and_as_blocks(tmp_path):
    import gzip

    (path,) = generate_logs(tmp_path, SampleSpec(days=1, servers=1, lines_per_file=4000))
    lines = gzip.decompress(path.read_bytes()).rstrip(b"\n").split(b"\n")
    assert_same(b"\n".join(lines))
    for line in lines[:500]:
        assert_same(line)


def test_randomly_damaged_lines_agree():
    import gzip
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        (path,) = generate_logs(Path(directory), SampleSpec(days=1, servers=1, lines_per_file=300))
        corpus = gzip.decompress(path.read_bytes()).rstrip(b"\n").split(b"\n") + EDGE_CASES
    rng = random.Random(1234)
    damaged = []
    for _ in range(20_000):
        line = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(line) + 1)
            action = rng.random()
            if action < 0.4 and line:
                line[min(position, len(line) - 1)] = rng.choice(INTERESTING)[0]
            elif action < 0.7:
                line[position:position] = rng.choice(INTERESTING)
            elif action < 0.85:
                del line[position : position + rng.randint(1, 20)]
            else:
                line[position:position] = b'"time": "2015-01-01T00:00:00", '
        damaged.append(bytes(line).replace(b"\n", b" "))
    for line in damaged:
        assert_same(line)
    assert_same(b"\n".join(damaged))
