"""Generated tracking logs and a matching LMS database, for demos and benchmarks.

The mix imitates a real LMS: mostly browser events (video, navigation, problems) and server
page requests, about 1.1 KB a line on average, a few enrollment events (about 1 in 400 lines),
and a sprinkle of lines a real log also has: syslog prefixes, non-object JSON, missing time.

    python -m pipeline.samples --out demo/ --days 3 --lines-per-file 20000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from isal import igzip

COURSES = [f"course-v1:DemoOrg+C{n:03d}+2016_T1" for n in range(40)] + [
    f"DemoOrg/Legacy{n:02d}/2015" for n in range(10)
]
MODES = ["audit", "honor", "verified", "professional", "credit"]
GENDERS = ["m", "f", "o", "", None]
EDUCATION = ["el", "jhs", "hs", "a", "b", "m", "p", "p_se", "none", "other", "", None]
AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/112.0.0.0 Safari/537.36"
)


@dataclass(frozen=True)
class SampleSpec:
    """What to generate: ``days`` days from ``start``, ``servers`` log files a day."""

    start: dt.date = dt.date(2016, 3, 1)
    days: int = 3
    servers: int = 2
    lines_per_file: int = 20_000
    users: int = 5_000
    seed: int = 20160301


def _context(rng: random.Random, user: int, course: str, path: str) -> dict:
    return {
        "user_id": user,
        "org_id": course.split(":")[-1].split("+")[0].split("/")[0],
        "course_id": course,
        "path": path,
        "course_user_tags": {},
        "enterprise_uuid": "",
        "module": {
            "display_name": f"Unit {rng.randint(1, 60)}",
            "usage_key": _block(course, "html"),
        },
    }


def _block(course: str, kind: str) -> str:
    return f"block-v1:{course.split(':')[-1]}+type@{kind}+block@{os.urandom(8).hex()}"


def _visitor(rng, user, referer: str, language: str) -> dict:
    """The fields a browser's request puts first in every event it causes."""
    return {
        "username": f"learner{user}",
        "session": os.urandom(16).hex(),
        "ip": _ip(rng),
        "agent": AGENT,
        "host": "lms.example.org",
        "referer": referer,
        "accept_language": language,
    }


def _browser_event(rng, when, user, course):
    name = rng.choice(
        [
            "play_video",
            "pause_video",
            "seek_video",
            "seq_goto",
            "page_close",
            "problem_show",
            "load_video",
            "speed_change_video",
        ]
    )
    if "video" in name:
        data = {
            "id": os.urandom(16).hex(),
            "currentTime": round(rng.random() * 900, 3),
            "code": rng.choice(["html5", "mobile", "hls"]),
            "duration": 612.3,
        }
    else:
        data = {
            "old": rng.randint(1, 9),
            "new": rng.randint(1, 9),
            "id": _block(course, "sequential"),
        }
    page = f"https://lms.example.org/courses/{course}/courseware/{os.urandom(6).hex()}/"
    return {
        **_visitor(rng, user, page, "en-US,en;q=0.9"),
        "event": json.dumps(data),
        "event_source": "browser",
        "event_type": name,
        "name": name,
        "time": when,
        "page": page,
        "context": _context(rng, user, course, "/event"),
    }


def _server_event(rng, when, user, course):
    path = (
        f"/courses/{course}/xblock/{_block(course, 'problem')}/handler/xmodule_handler/problem_get"
    )
    return {
        **_visitor(rng, user, "https://lms.example.org/dashboard", "en-US,en;q=0.9"),
        "event": {"GET": {}, "POST": {}},
        "event_source": "server",
        "event_type": path,
        "time": when,
        "page": None,
        "context": _context(rng, user, course, path),
    }


def _problem_check(rng, when, user, course):
    problem = _block(course, "problem")
    answers = {f"{problem}_2_{i}": f"choice_{rng.randint(0, 3)}" for i in range(1, 4)}
    return {
        **_visitor(rng, user, "https://lms.example.org/", "en"),
        "event_source": "server",
        "event_type": "problem_check",
        "time": when,
        "page": f"x_module_{problem}",
        "event": {
            "problem_id": problem,
            "answers": answers,
            "attempts": rng.randint(1, 3),
            "grade": rng.randint(0, 3),
            "max_grade": 3,
            "success": "incorrect",
            "correct_map": {
                k: {
                    "correctness": "incorrect",
                    "npoints": None,
                    "msg": "",
                    "hint": "",
                    "hintmode": None,
                    "queuestate": None,
                }
                for k in answers
            },
        },
        "context": _context(rng, user, course, "/event"),
    }


def _enrollment_event(rng, when, user, course):
    kind = rng.choices(["activated", "deactivated", "mode_changed"], weights=[6, 2, 1])[0]
    return {
        "username": f"learner{user}",
        "event_source": "server",
        "ip": _ip(rng),
        "agent": AGENT,
        "host": "lms.example.org",
        "event_type": f"edx.course.enrollment.{kind}",
        "name": f"edx.course.enrollment.{kind}",
        "time": when,
        "page": None,
        "event": {"course_id": course, "user_id": user, "mode": rng.choice(MODES)},
        "context": _context(rng, user, course, "/change_enrollment"),
    }


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _odd_line(rng: random.Random, when: str) -> bytes:
    choice = rng.randint(0, 3)
    if choice == 0:
        return f'Mar  1 10:00:00 lms-1 tracking: {{"time": "{when}", "event_type": "x"}}'.encode()
    if choice == 1:
        return b'["not", "an", "object"]'
    if choice == 2:
        return b'{"event_type": "no_time_here", "event": {}}'
    return b"\x00\x17binary junk\xff"


def generate_file(path: Path, day: dt.date, spec: SampleSpec, rng: random.Random) -> int:
    """Write one gzip tracking log for ``day``; returns the bytes written uncompressed."""
    start = dt.datetime.combine(day, dt.time())
    step = 86400 / spec.lines_per_file
    written = 0
    with igzip.open(path, "wb", compresslevel=2) as out:
        batch = []
        for index in range(spec.lines_per_file):
            moment = start + dt.timedelta(seconds=index * step + rng.random() * step)
            when = moment.isoformat(timespec="microseconds") + "+00:00"
            user = rng.randint(1, spec.users)
            course = COURSES[min(int(rng.paretovariate(1.2)) - 1, len(COURSES) - 1)]
            roll = rng.random()
            if roll < 0.0025:
                line = json.dumps(_enrollment_event(rng, when, user, course)).encode()
            elif roll < 0.0027:
                line = _odd_line(rng, when)
            elif roll < 0.55:
                line = json.dumps(_browser_event(rng, when, user, course)).encode()
            elif roll < 0.85:
                line = json.dumps(_server_event(rng, when, user, course)).encode()
            else:
                line = json.dumps(_problem_check(rng, when, user, course)).encode()
            batch.append(line)
            if len(batch) >= 5000:
                chunk = b"\n".join(batch) + b"\n"
                out.write(chunk)
                written += len(chunk)
                batch = []
        if batch:
            chunk = b"\n".join(batch) + b"\n"
            out.write(chunk)
            written += len(chunk)
    return written


def generate_logs(out_dir: Path, spec: SampleSpec, progress=None) -> list[Path]:
    """Write ``days * servers`` logs as ``<out>/lms-N/tracking.log-YYYYMMDD.gz``; idempotent."""
    rng = random.Random(spec.seed)
    paths = []
    for offset in range(spec.days):
        day = spec.start + dt.timedelta(days=offset)
        for server in range(1, spec.servers + 1):
            path = out_dir / f"lms-{server}" / f"tracking.log-{day:%Y%m%d}.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".gz.partial")
            generate_file(tmp, day, spec, random.Random(rng.random()))
            tmp.replace(path)
            paths.append(path)
            if progress:
                progress(path)
    return paths


def generate_lms_database(path: Path, spec: SampleSpec) -> Path:
    """A SQLite LMS with ``auth_userprofile`` and ``grades_persistentcoursegrade`` rows."""
    rng = random.Random(spec.seed + 1)
    tmp = path.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    connection = sqlite3.connect(tmp)
    connection.executescript(
        "CREATE TABLE auth_userprofile (id INTEGER PRIMARY KEY, user_id INT NOT NULL UNIQUE, "
        "gender VARCHAR(6), year_of_birth INT, level_of_education VARCHAR(6));"
        "CREATE TABLE grades_persistentcoursegrade (id INTEGER PRIMARY KEY, user_id INT NOT NULL, "
        "course_id VARCHAR(255) NOT NULL, percent_grade DOUBLE NOT NULL, "
        "letter_grade VARCHAR(255) NOT NULL, passed_timestamp DATETIME);"
    )
    connection.executemany(
        "INSERT INTO auth_userprofile (user_id, gender, year_of_birth, level_of_education) "
        "VALUES (?, ?, ?, ?)",
        [
            (u, rng.choice(GENDERS), rng.choice([None, *range(1950, 2006)]), rng.choice(EDUCATION))
            for u in range(1, spec.users + 1)
        ],
    )
    grades = []
    for user in range(1, spec.users + 1, 3):
        course = rng.choice(COURSES)
        passed = rng.random() < 0.4
        grades.append(
            (
                user,
                course,
                0.8 if passed else 0.2,
                "Pass" if passed else "",
                "2016-03-02 00:00:00" if passed else None,
            )
        )
    connection.executemany(
        "INSERT INTO grades_persistentcoursegrade (user_id, course_id, percent_grade, "
        "letter_grade, passed_timestamp) VALUES (?, ?, ?, ?, ?)",
        grades,
    )
    connection.commit()
    connection.close()
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the logs")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=SampleSpec.start)
    parser.add_argument("--days", type=int, default=SampleSpec.days)
    parser.add_argument("--servers", type=int, default=SampleSpec.servers)
    parser.add_argument("--lines-per-file", type=int, default=SampleSpec.lines_per_file)
    parser.add_argument("--lms-db", type=Path, help="also write a SQLite LMS database here")
    args = parser.parse_args(argv)
    for name in ("days", "servers", "lines_per_file"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    spec = SampleSpec(args.start, args.days, args.servers, args.lines_per_file)
    generate_logs(args.out, spec, progress=lambda p: print(f"wrote {p}"))
    if args.lms_db:
        generate_lms_database(args.lms_db, spec)
        print(f"wrote {args.lms_db}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
