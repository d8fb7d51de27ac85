"""The tasks' outputs own their writes: atomic files, part-00000 then _SUCCESS last."""

import pytest

from pipeline.targets import PartFileOutput, UrlTarget


def test_a_file_appears_only_once_its_writer_completed(tmp_path):
    target = UrlTarget(str(tmp_path / "out" / "report.csv"))
    with target.writing() as out:
        out.write("date,event_count\n")
        assert not target.exists()
    assert target.exists() and (tmp_path / "out" / "report.csv").read_text() == "date,event_count\n"


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = UrlTarget(str(tmp_path / "report.csv"))
    with target.writing() as out:
        out.write("old\n")
    with pytest.raises(RuntimeError), target.writing() as out:
        out.write("new, half")
        raise RuntimeError("the writer failed")
    assert (tmp_path / "report.csv").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]  # no temporary file left


def test_a_directory_is_complete_once_its_marker_is_written_last(tmp_path):
    output = PartFileOutput(str(tmp_path / "counts"), "2016-03-01-2016-03-03")
    with output.writing() as out:
        out.write("2016-03-01\t3\n")
        assert not output.exists()
        assert not (tmp_path / "counts" / "_SUCCESS").exists()
    assert output.exists()
    assert (tmp_path / "counts" / "part-00000").read_text() == "2016-03-01\t3\n"
    assert (tmp_path / "counts" / "_SUCCESS").read_text() == "2016-03-01-2016-03-03\n"


def test_a_marker_for_another_interval_does_not_count(tmp_path):
    with PartFileOutput(str(tmp_path), "2016-03-01-2016-03-02").writing() as out:
        out.write("2016-03-01\t3\n")
    assert not PartFileOutput(str(tmp_path), "2016-03-01-2016-03-03").exists()
    assert PartFileOutput(str(tmp_path), "2016-03-01-2016-03-02").exists()


def test_an_empty_marker_when_no_text_is_asked_for(tmp_path):
    output = PartFileOutput(str(tmp_path / "dt=2016-03-03"))
    with output.writing() as out:
        out.write("row\n")
    assert output.exists() and (tmp_path / "dt=2016-03-03" / "_SUCCESS").read_text() == ""


def test_rewriting_removes_the_marker_first_and_other_part_files(tmp_path):
    # an upstream Hadoop run's output: several part files, all summed by readers
    for name in ("part-00000", "part-00001", "_SUCCESS"):
        (tmp_path / name).write_text("2016-03-01\t1\n" if name.startswith("part") else "")
    output = PartFileOutput(str(tmp_path))
    with pytest.raises(RuntimeError), output.writing():
        raise RuntimeError("the counting failed")
    assert not output.exists()  # incomplete: the next run does the work again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000"]
    with output.writing() as out:
        out.write("2016-03-01\t5\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_SUCCESS", "part-00000"]
    assert (tmp_path / "part-00000").read_text() == "2016-03-01\t5\n"
