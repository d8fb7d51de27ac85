"""Reading tracking logs: gzip or plain by content, bounded memory, errors naming the file."""

import gzip

import pytest

from pipeline.core import reader


@pytest.fixture(params=[False, True], ids=["inline", "decompress-thread"])
def threaded(request):
    return request.param


def read_all(path, **kwargs):
    counters = {}
    blocks = reader.iter_blocks(str(path), counters, **kwargs)
    lines = [line for block in blocks for line in block.split(b"\n")]
    return lines, counters


def test_gzip_and_plain_are_detected_by_content(tmp_path, threaded):
    data = b'{"a": 1}\n{"b": 2}\n'
    (tmp_path / "plain.gz").write_bytes(data)  # misleading name: still plain
    (tmp_path / "packed").write_bytes(gzip.compress(data))
    assert read_all(tmp_path / "plain.gz", decompress_thread=threaded)[0] == [
        b'{"a": 1}',
        b'{"b": 2}',
    ]
    assert read_all(tmp_path / "packed", decompress_thread=threaded)[0] == [
        b'{"a": 1}',
        b'{"b": 2}',
    ]


def test_concatenated_gzip_members_are_all_read(tmp_path, threaded):
    (tmp_path / "multi.gz").write_bytes(gzip.compress(b"1\n2\n") + gzip.compress(b"3\n"))
    assert read_all(tmp_path / "multi.gz", decompress_thread=threaded)[0] == [b"1", b"2", b"3"]


def test_last_line_without_newline_is_kept_and_lines_span_blocks(tmp_path):
    lines = [b"x" * n for n in (10, 5000, 3, 70000, 1)]
    (tmp_path / "f").write_bytes(b"\n".join(lines))
    got, counters = read_all(tmp_path / "f", block_bytes=4096, max_line_bytes=100_000)
    assert got == lines
    assert counters == {}


def test_over_long_lines_are_dropped_and_counted(tmp_path):
    lines = [b"short", b"y" * 50_000, b"after", b"z" * 9_000, b"end"]
    (tmp_path / "f").write_bytes(b"\n".join(lines) + b"\n")
    reader_args = {"block_bytes": 1024, "max_line_bytes": 1024}
    # max_line_bytes is raised to the block size at least: 1024 here
    got, counters = read_all(tmp_path / "f", **reader_args)
    assert got == [b"short", b"after", b"end"]
    assert counters == {reader.LINE_TOO_LONG: 2}


def test_truncated_gzip_names_the_file(tmp_path, threaded):
    packed = gzip.compress(b'{"time": "2016-01-01T00:00:00"}\n' * 20000)
    path = tmp_path / "tracking.log-20160101.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(reader.InputFileError, match="tracking.log-20160101.gz.*truncated"):
        read_all(path, decompress_thread=threaded)


def test_corrupt_gzip_names_the_file(tmp_path, threaded):
    packed = bytearray(gzip.compress(b'{"time": "2016-01-01T00:00:00"}\n' * 20000))
    packed[-8:-4] = bytes(b ^ 0xFF for b in packed[-8:-4])  # the member's CRC32
    path = tmp_path / "tracking.log-20160102.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(reader.InputFileError, match="tracking.log-20160102.gz.*corrupt"):
        read_all(path, decompress_thread=threaded)


@pytest.mark.parametrize("seed", range(20))
def test_blocks_split_into_exactly_the_file_lines(tmp_path, seed):
    import random

    rng = random.Random(seed)
    block, limit = rng.choice([16, 64, 1000]), rng.choice([64, 2000])
    lines = [
        bytes([97 + rng.randrange(26)]) * rng.choice([0, 1, 5, 63, 64, 65, 700, 3000])
        for _ in range(rng.randrange(1, 60))
    ]
    ending = rng.choice([b"", b"\n"])
    (tmp_path / "f").write_bytes(b"\n".join(lines) + ending)
    got, counters = read_all(tmp_path / "f", block_bytes=block, max_line_bytes=limit)
    effective = max(block, limit)
    expected = [line for line in lines if len(line) <= effective]
    if ending == b"" and expected and lines[-1] == b"" and expected[-1] == b"":
        expected.pop()  # an empty last line without newline is no line at all
    assert got == expected
    assert counters.get(reader.LINE_TOO_LONG, 0) == sum(len(x) > effective for x in lines)
