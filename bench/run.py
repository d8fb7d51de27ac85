"""Benchmark of the pipeline's local engine, end to end through launch-task.

    make bench                      # or: uv run python bench/run.py --size-mb 1100

Generates realistic gzip tracking logs once (bench/data/, reused while the spec is unchanged),
then measures, in the same run:
- a reference: a single-core loop of isal decompression + ``orjson.loads`` per line;
- ``launch-task TotalEventsDailyTask`` and ``launch-task CourseEnrollmentEventsTask``: wall
  time from process start to exit and lines/s (a run nothing else watches), then peak RSS of the
  whole process tree, workers included (a second run, sampled every 100 ms);
- with ``--spark``: the Spark engine in ``local[2]`` against the local engine (bench/spark.py).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil
from isal import igzip

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.samples import SampleSpec, generate_logs  # noqa: E402

BYTES_PER_LINE = 1130  # what pipeline.samples writes on average
PATTERN = r".*tracking.log-(?P<date>\d{8}).*\.gz"


def ensure_data(data_dir: Path, size_mb: int, files: int) -> tuple[list[Path], int]:
    days, servers = max(1, files // 2), 2 if files > 1 else 1
    per_file = max(1, size_mb * 1_000_000 // (BYTES_PER_LINE * days * servers))
    spec = SampleSpec(days=days, servers=servers, lines_per_file=per_file)
    manifest = data_dir / "manifest.json"
    wanted = {"days": days, "servers": servers, "lines_per_file": per_file, "seed": spec.seed}
    if manifest.exists() and json.loads(manifest.read_text()) == wanted:
        paths = sorted(data_dir.glob("lms-*/tracking.log-*.gz"))
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        print(f"generating {days * servers} files x {per_file:,} lines in {data_dir}", flush=True)
        started = time.monotonic()
        paths = generate_logs(data_dir, spec)
        manifest.write_text(json.dumps(wanted))
        print(f"  generated in {time.monotonic() - started:.0f}s", flush=True)
    return paths, days * servers * per_file


def reference_loop(paths: list[Path]) -> tuple[int, float]:
    """Single core: decompress with isal and orjson.loads every line, counting per date."""
    counts: dict[str, int] = {}
    lines = 0
    started = time.perf_counter()
    for path in paths:
        with igzip.open(path, "rb") as stream:
            carry = b""
            while block := stream.read(4 << 20):
                parts = (carry + block).split(b"\n")
                carry = parts.pop()
                for line in parts:
                    lines += 1
                    try:
                        event = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    when = event.get("time") if isinstance(event, dict) else None
                    if isinstance(when, str):
                        day = when.partition("T")[0]
                        counts[day] = counts.get(day, 0) + 1
    return lines, time.perf_counter() - started


def run_timed(args: list[str], cwd: Path) -> tuple[int, float, str, int]:
    """Run a command with nothing else watching it.

    Returns (exit status, seconds, stderr tail, lines the task reports having read).
    """
    report_dir = cwd / "report"
    report_dir.mkdir(exist_ok=True)
    env = {**os.environ, "PIPELINE_REPORT_DIR": str(report_dir)}
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    lines = sum(json.loads(p.read_text())["lines"] for p in report_dir.glob("*.json"))
    shutil.rmtree(report_dir)
    return proc.returncode, seconds, proc.stderr.decode(errors="replace")[-3000:], lines


def peak_tree_rss(args: list[str], cwd: Path) -> int:
    """Run a command again, sampling the RSS of its whole process tree every 100 ms; the peak.

    A separate run: scanning /proc costs CPU that would slow the timed run on a small machine.
    """
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            rss = 0
            for member in [parent, *parent.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    rss += member.memory_info().rss
            peak = max(peak, rss)
        time.sleep(0.1)
    return peak


def data_arguments(description: str) -> argparse.ArgumentParser:
    """A parser with the options of the generated logs (shared with bench/spark.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--size-mb", type=int, default=1100, help="uncompressed size of the logs")
    parser.add_argument("--files", type=int, default=8, help="number of log files")
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT / "bench" / "data",
        help="directory of the generated logs, reused while size and files are unchanged "
        "(default: bench/data)",
    )
    return parser


def prepared_input(args) -> tuple[list[Path], int]:
    """The logs ``args`` ask for (generated once), described in one printed line."""
    paths, expected_lines = ensure_data(args.data, args.size_mb, args.files)
    raw = sum(p.stat().st_size for p in paths)
    print(
        f"input: {len(paths)} files, {expected_lines:,} lines, {raw / 1e6:,.0f} MB gzip, "
        f"about {expected_lines * BYTES_PER_LINE / 1e9:.2f} GB uncompressed; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return paths, expected_lines


def main() -> int:
    parser = data_arguments("Benchmark the pipeline end to end.")
    parser.add_argument("--processes", type=int, default=0, help="engine workers; 0 = every core")
    parser.add_argument("--spark", action="store_true", help="also Spark local[2] vs local")
    args = parser.parse_args()
    args.data = args.data.resolve()  # the tasks run in a scratch directory

    paths, expected_lines = prepared_input(args)

    lines, seconds = reference_loop(paths)
    print(
        f"reference  single-core isal + orjson.loads loop: {lines / seconds:>10,.0f} lines/s "
        f"({seconds:.1f}s)",
        flush=True,
    )

    launch = [sys.executable, "-m", "pipeline.launch"]
    common = [
        "--local-scheduler",
        "--interval",
        "2016-03",
        "--source",
        json.dumps([str(args.data) + "/"]),
        "--pattern",
        json.dumps([PATTERN]),
        "--processes",
        str(args.processes),
    ]
    failures = 0
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as scratch:
        work = Path(scratch)
        for task, extra in [
            ("TotalEventsDailyTask", ["--output-root", str(work / "total") + "/"]),
            ("CourseEnrollmentEventsTask", ["--warehouse-path", str(work / "warehouse") + "/"]),
        ]:
            command = [*launch, task, *common, *extra]
            status, seconds, tail, read = run_timed(command, work)
            if status != 0 or read != expected_lines:
                failures += 1
                print(f"{task} FAILED (exit {status}, read {read:,} lines):\n{tail}")
                continue
            shutil.rmtree(work / "total", ignore_errors=True)
            shutil.rmtree(work / "warehouse", ignore_errors=True)
            peak = peak_tree_rss(command, work)
            print(
                f"{task:<27} end to end: {expected_lines / seconds:>10,.0f} lines/s "
                f"({seconds:.1f}s), peak RSS {peak / 2**20:,.0f} MB (process tree)",
                flush=True,
            )
    if args.spark:
        from bench.spark import compare

        failures += compare(paths, expected_lines)
    print(f"measured {dt.datetime.now():%Y-%m-%d %H:%M}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
