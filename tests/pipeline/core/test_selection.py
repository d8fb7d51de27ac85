"""Which files a task reads for an interval."""

import datetime as dt
import gzip

import pytest

from pipeline.core import selection

GZ = r".*tracking.log-(?P<date>\d{8}).*\.gz"


def make_tree(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(b"{}\n"))


def selected_names(root, patterns, a, b, expand="2 days", **kwargs):
    files = selection.select_files([str(root) + "/"], patterns, a, b, expand, **kwargs).files
    return [f.url[len(str(root)) + 1 :] for f in files]


def test_interval_is_widened_by_expand_interval_on_both_sides(tmp_path):
    make_tree(tmp_path, [f"g/tracking.log-201603{d:02d}.gz" for d in range(1, 20)])
    names = selected_names(tmp_path, [GZ], dt.date(2016, 3, 5), dt.date(2016, 3, 8))
    # [03-05, 03-08) widened by 2 days is [03-03, 03-10)
    assert names == [f"g/tracking.log-201603{d:02d}.gz" for d in range(3, 10)]


def test_zero_expand_interval_keeps_exact_half_open_range(tmp_path):
    make_tree(tmp_path, [f"tracking.log-201603{d:02d}.gz" for d in range(1, 10)])
    names = selected_names(tmp_path, [GZ], dt.date(2016, 3, 5), dt.date(2016, 3, 7), "0 days")
    assert names == ["tracking.log-20160305.gz", "tracking.log-20160306.gz"]


def test_sources_are_listed_recursively(tmp_path):
    make_tree(tmp_path, ["a/b/c/tracking.log-20160301.gz", "x/tracking.log-20160301-1456790400.gz"])
    names = selected_names(tmp_path, [GZ], dt.date(2016, 3, 1), dt.date(2016, 3, 2))
    assert names == ["a/b/c/tracking.log-20160301.gz", "x/tracking.log-20160301-1456790400.gz"]


def test_file_no_pattern_matches_is_excluded(tmp_path):
    make_tree(
        tmp_path, ["tracking.log-20160301.gz", "other.log-20160301.gz", "tracking.log-20160301"]
    )
    names = selected_names(tmp_path, [GZ], dt.date(2016, 3, 1), dt.date(2016, 3, 2))
    assert names == ["tracking.log-20160301.gz"]


def test_pattern_is_anchored_at_start_only(tmp_path):
    make_tree(tmp_path, ["logs/tracking.log-20160301.gz.bak"])
    # re.match: anchored at the start of the full path, not at its end
    assert selected_names(
        tmp_path, [r".*tracking.log-(?P<date>\d{8})"], dt.date(2016, 3, 1), dt.date(2016, 3, 2)
    ) == ["logs/tracking.log-20160301.gz.bak"]
    # a pattern that does not match from the start of the path selects nothing
    assert (
        selected_names(
            tmp_path, [r"tracking.log-(?P<date>\d{8})"], dt.date(2016, 3, 1), dt.date(2016, 3, 2)
        )
        == []
    )


def test_first_matching_pattern_decides(tmp_path):
    make_tree(tmp_path, ["tracking.log-20150101.gz"])
    patterns = [r".*tracking.log-(?P<date>\d{8}).*", r".*\.gz"]
    # the first pattern matches with an out-of-range date: the second is never tried
    assert selected_names(tmp_path, patterns, dt.date(2016, 3, 1), dt.date(2016, 3, 2)) == []


def test_pattern_without_date_group_keeps_every_match(tmp_path):
    make_tree(tmp_path, ["a.gz", "b.gz"])
    assert selected_names(tmp_path, [r".*\.gz"], dt.date(2016, 3, 1), dt.date(2016, 3, 2)) == [
        "a.gz",
        "b.gz",
    ]


def test_timestamp_group_is_unix_seconds_utc(tmp_path):
    inside = int(dt.datetime(2016, 3, 1, 23, 59, tzinfo=dt.UTC).timestamp())
    outside = int(dt.datetime(2016, 3, 2, 0, 0, tzinfo=dt.UTC).timestamp())
    make_tree(tmp_path, [f"tracking.log-{inside}.gz", f"tracking.log-{outside}.gz"])
    pattern = r".*tracking.log-(?P<timestamp>\d{10})\.gz"
    names = selected_names(tmp_path, [pattern], dt.date(2016, 3, 1), dt.date(2016, 3, 2), "0 days")
    assert names == [f"tracking.log-{inside}.gz"]


def test_date_pattern_is_configurable(tmp_path):
    make_tree(tmp_path, ["tracking.log-2016-03-01.gz"])
    names = selected_names(
        tmp_path,
        [r".*tracking.log-(?P<date>[\d-]{10})\.gz"],
        dt.date(2016, 3, 1),
        dt.date(2016, 3, 2),
        date_pattern="%Y-%m-%d",
    )
    assert names == ["tracking.log-2016-03-01.gz"]


def test_unparseable_date_group_excludes_the_file(tmp_path):
    make_tree(tmp_path, ["tracking.log-20161399.gz"])
    assert selected_names(tmp_path, [GZ], dt.date(2016, 1, 1), dt.date(2017, 1, 1)) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2 days", dt.timedelta(days=2)),
        ("1 week", dt.timedelta(weeks=1)),
        ("36 hours", dt.timedelta(hours=36)),
        ("0", dt.timedelta(0)),
    ],
)
def test_expand_interval_forms(text, expected):
    assert selection.parse_expand_interval(text) == expected


def test_hours_reach_into_the_neighbouring_day(tmp_path):
    make_tree(
        tmp_path,
        ["tracking.log-20160228.gz", "tracking.log-20160229.gz", "tracking.log-20160302.gz"],
    )
    names = selected_names(tmp_path, [GZ], dt.date(2016, 3, 1), dt.date(2016, 3, 2), "12 hours")
    assert names == ["tracking.log-20160229.gz", "tracking.log-20160302.gz"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patterns": ["(unclosed"]}, "pattern '(unclosed'"),
        ({"patterns": []}, "no pattern"),
        ({"sources": []}, "no source"),
        ({"sources": ["hdfs://localhost:9000/data/"]}, "hdfs://localhost:9000/data/"),
        ({"expand_interval": "two days"}, "expand_interval 'two days'"),
    ],
)
def test_bad_settings_are_named_in_the_error(tmp_path, kwargs, message):
    args = {"sources": [str(tmp_path)], "patterns": [GZ], "expand_interval": "2 days"} | kwargs
    with pytest.raises(selection.SelectionError, match=message.replace("(", r"\(")):
        selection.select_files(
            args["sources"],
            args["patterns"],
            dt.date(2016, 1, 1),
            dt.date(2016, 1, 2),
            args["expand_interval"],
        )
