"""The course catalog: the discovery service's course runs, for ``course_meta_summary_enrollment``.

Switch: ``[course-summary-enrollment] enable_course_catalog`` (default false; off, the catalog
columns are NULL). With it on, ``PullDiscoveryCourseRunsAPIData`` keeps one snapshot per
``date`` (default today, UTC) at ``{warehouse}/discovery_api_raw/dt={date}/course_runs.json``,
one course-run record (JSON object) per line, as upstream does. A snapshot already there is
used as it is (another run that day, or a file put there by hand); otherwise it comes from:

- ``[course-catalog-api] course_runs_file``: a local or ``s3://`` file of such records, or
- the discovery REST API: ``GET {api_root_url}/course_runs/`` with ``limit``/``offset``,
  following ``next`` page by page; per partner when ``partner_short_codes`` is set (each with
  its own root in ``partner_api_urls``, same order, when given). OAuth2 client credentials
  (upstream's ``[edx-rest-api] auth_url, client_id, client_secret``) are used when
  ``client_id`` is set; the secret and the token are read at run time and never logged.

Per run: ``course_id`` = ``key``, ``catalog_course_title`` = ``title`` (whitespace normalized),
``catalog_course`` = ``course``, ``start_time``/``end_time`` from ``start``/``end`` (UTC,
``YYYY-MM-DD HH:MM:SS``), ``pacing_type``, ``availability``.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import luigi

from pipeline import config
from pipeline.common import ReportingMixin, WarehouseMixin, configured
from pipeline.core import fs
from pipeline.errors import OperationFailed
from pipeline.targets import UrlTarget

log = logging.getLogger(__name__)

RAW_TABLE = "discovery_api_raw"
RAW_FILE = "course_runs.json"
# Responses worth asking again for: timeouts, rate limits, a service restarting.
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
FIELD_LENGTH = 255
NO_CATALOG = (None, None, None, None, None, None)


class CatalogError(OperationFailed):
    """A catalog source that cannot be used, named in the message (never with a secret)."""


class SnapshotDateParameter(luigi.DateParameter):
    """A date defaulting to today (UTC) when the task is created, not when it was imported."""

    def _value_iterator(self, task_name, param_name):
        yield from super()._value_iterator(task_name, param_name)
        yield (dt.datetime.now(dt.UTC).date(), None)


def _catalog_api(parameter_class, name: str, default, description: str, significant=True):
    """A parameter of upstream's ``[course-catalog-api]`` section."""
    return configured(parameter_class, "course-catalog-api", name, default=default,
                      significant=significant, description=description)  # fmt: skip


class CourseCatalogMixin(WarehouseMixin):
    """Where the catalog comes from: upstream's ``[course-catalog-api]`` section."""

    date = SnapshotDateParameter(
        description="Catalog snapshot date (partition dt=); default today, UTC."
    )
    api_root_url = _catalog_api(
        luigi.Parameter, "api_root_url", "",
        "Discovery API root, e.g. https://discovery.example.com/api/v1/.",
    )  # fmt: skip
    api_page_size = _catalog_api(
        luigi.IntParameter, "page_size", 100, "Course runs requested per page.", significant=False
    )
    partner_short_codes = _catalog_api(
        luigi.ListParameter, "partner_short_codes", [],
        "Partners to fetch course runs for (JSON list); empty = one unfiltered pass.",
    )  # fmt: skip
    partner_api_urls = _catalog_api(
        luigi.ListParameter, "partner_api_urls", [],
        "API root per partner, in the order of partner_short_codes (JSON list).",
    )  # fmt: skip
    course_runs_file = _catalog_api(
        luigi.Parameter, "course_runs_file", "",
        "A local or s3:// file of course-run records, one JSON object per line; used instead of "
        "the API when set.",
    )  # fmt: skip
    api_timeout = _catalog_api(
        luigi.FloatParameter, "timeout", 60.0, "Seconds to wait for each HTTP response.",
        significant=False,
    )  # fmt: skip
    api_retries = _catalog_api(
        luigi.IntParameter, "retries", 3,
        "Retries of a request that timed out, failed to connect or got 408/429/5xx.",
        significant=False,
    )  # fmt: skip

    def snapshot_url(self) -> str:
        return fs.join(self.warehouse_path, RAW_TABLE, f"dt={self.date.isoformat()}", RAW_FILE)


class CourseCatalogSwitchMixin(CourseCatalogMixin):
    enable_course_catalog = configured(
        luigi.BoolParameter, "course-summary-enrollment", "enable_course_catalog", default=False,
        description="Fill the catalog columns of course_meta_summary_enrollment from the "
        "discovery service (else NULL).",
    )  # fmt: skip


@dataclass(frozen=True)
class ClientCredentials:
    """OAuth2 client credentials; the secret is excluded from repr so it never reaches a log."""

    auth_url: str
    client_id: str
    client_secret: str = field(repr=False)


def client_credentials() -> ClientCredentials | None:
    """``[edx-rest-api]`` credentials, or None when no ``client_id`` is configured."""
    client_id = config.get("edx-rest-api", "client_id")
    if not client_id:
        return None
    missing = [k for k in ("auth_url", "client_secret") if not config.get("edx-rest-api", k)]
    if missing:
        raise CatalogError(
            f"[edx-rest-api] client_id is set but {' and '.join(missing)} is not "
            "(all three are needed for the discovery API's OAuth2 token)"
        )
    return ClientCredentials(
        config.get("edx-rest-api", "auth_url"),
        client_id,
        config.get("edx-rest-api", "client_secret"),
    )


def public_url(url: str) -> str:
    """``url`` without any user:password part, for messages."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class DiscoveryClient:
    """GETs JSON from the discovery API: own timeouts, bounded retries, optional OAuth2 token."""

    def __init__(
        self,
        credentials: ClientCredentials | None,
        timeout: float,
        retries: int,
        backoff: float = 1.0,
    ):
        self.credentials = credentials
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._token: str | None = None
        self._expires = 0.0

    def _request(self, request: urllib.request.Request) -> dict:
        """Send with retries on errors that can go away; the parsed JSON object."""
        url = public_url(request.full_url)
        if urllib.parse.urlsplit(request.full_url).scheme not in ("http", "https"):
            # urllib would also open file:// and ftp:// URLs, say from a 'next' link
            raise CatalogError(f"{request.method} {url}: not an http:// or https:// URL")
        for attempt in range(self.retries + 1):
            retry_in = self.backoff * 2**attempt if attempt < self.retries else None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body = response.read()
                break
            except urllib.error.HTTPError as exc:
                if exc.code in RETRY_STATUSES and retry_in is not None:
                    log.warning(
                        "%s %s: HTTP %d, again in %.0fs", request.method, url, exc.code, retry_in
                    )
                    time.sleep(retry_in)
                    continue
                hint = ""
                if exc.code in (401, 403):
                    hint = " (check [edx-rest-api] client_id, client_secret and auth_url)"
                raise CatalogError(
                    f"{request.method} {url}: HTTP {exc.code} {exc.reason}{hint}"
                ) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
                    reason = f"no response within {self.timeout:g}s"
                if retry_in is not None:
                    log.warning("%s %s: %s, again in %.0fs", request.method, url, reason, retry_in)
                    time.sleep(retry_in)
                    continue
                raise CatalogError(f"{request.method} {url}: {reason}") from None
        where = f"{request.method} {url}"
        return _json_object(body, where, "the response is not JSON", "a JSON object")

    def _authorization(self) -> dict[str, str]:
        if self.credentials is None:
            return {}
        if self._token is None or time.monotonic() >= self._expires:
            c = self.credentials
            form = urllib.parse.urlencode(
                {
                    "grant_type": "client_credentials",
                    "client_id": c.client_id,
                    "client_secret": c.client_secret,
                    "token_type": "jwt",
                }
            ).encode()
            data = self._request(urllib.request.Request(c.auth_url, data=form, method="POST"))
            token = data.get("access_token")
            if not isinstance(token, str) or not token:
                raise CatalogError(
                    f"POST {public_url(c.auth_url)}: no access_token in the response"
                )
            try:
                lifetime = float(data.get("expires_in", 300))
            except (TypeError, ValueError):
                lifetime = 300.0
            # Renew a little early so a token never expires between check and use.
            self._token, self._expires = token, time.monotonic() + max(lifetime - 30, 1)
            log.info("course catalog: token from %s", public_url(c.auth_url))
        return {"Authorization": f"JWT {self._token}"}

    def get(self, url: str) -> dict:
        headers = {"Accept": "application/json", **self._authorization()}
        return self._request(urllib.request.Request(url, headers=headers, method="GET"))

    def pages(self, url: str) -> Iterator[list]:
        """The ``results`` of each page, following ``next`` until it is empty."""
        seen = set()
        while url:
            if url in seen:
                raise CatalogError(f"GET {public_url(url)}: 'next' loops back to an earlier page")
            seen.add(url)
            data = self.get(url)
            results = data.get("results")
            if not isinstance(results, list):
                raise CatalogError(f"GET {public_url(url)}: no 'results' list in the response")
            yield results
            following = data.get("next")
            url = urllib.parse.urljoin(url, following) if following else ""


def api_roots(task: CourseCatalogMixin) -> list[tuple[str | None, str]]:
    """``(partner or None, API root)`` pairs to fetch, checked against upstream's rules."""
    codes, urls = list(task.partner_short_codes), list(task.partner_api_urls)
    if urls and len(urls) != len(codes):
        raise CatalogError(
            f"[course-catalog-api] partner_api_urls has {len(urls)} entries but "
            f"partner_short_codes has {len(codes)}: they must match one to one"
        )
    if not urls and not task.api_root_url:
        raise CatalogError(
            "the course catalog is enabled ([course-summary-enrollment] enable_course_catalog) "
            "but has no source: set [course-catalog-api] api_root_url (or partner_api_urls), "
            "or course_runs_file"
        )
    if urls:
        return list(zip(codes, urls, strict=True))
    return [(code, task.api_root_url) for code in codes] or [(None, task.api_root_url)]


def fetch_course_runs(task: CourseCatalogMixin, out: IO[str]) -> tuple[int, int]:
    """Write every course run the API lists to ``out``; ``(pages, records)``."""
    client = DiscoveryClient(client_credentials(), task.api_timeout, task.api_retries)
    pages = records = 0
    for partner, root in api_roots(task):
        params = {"limit": task.api_page_size, "exclude_utm": 1}
        if partner is not None:
            params["partner"] = partner
        url = fs.join(root, "course_runs") + "/?" + urllib.parse.urlencode(params)
        for results in client.pages(url):
            pages += 1
            for run in results:
                if partner is not None and isinstance(run, dict):
                    run = {**run, "partner_short_code": partner}
                out.write(json.dumps(run, ensure_ascii=False) + "\n")
                records += 1
        log.info("course catalog: %d course runs after %s", records, public_url(url))
    return pages, records


def copy_course_runs(source: str, out: IO[str]) -> int:
    """Copy a file of course runs, checking each line is a JSON object; the record count."""
    records = 0
    for run in _json_lines(source):
        if run is not None:
            out.write(json.dumps(run, ensure_ascii=False) + "\n")
            records += 1
    return records


def _json_lines(url: str) -> Iterator[dict | None]:
    """Each line of ``url`` as a JSON object (None for blank lines); errors name file and line."""
    try:
        text = fs.read_text(url)
    except UnicodeDecodeError:
        raise CatalogError(f"{url}: not UTF-8 text") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            yield None
            continue
        yield _json_object(
            line, f"{url}, line {number}", "not valid JSON", "a JSON object (a course run)"
        )


def _json_object(text, where: str, not_json: str, expected: str) -> dict:
    """``text`` as a JSON object; a :class:`CatalogError` beginning with ``where`` if not."""
    try:
        value = json.loads(text)
    except ValueError:
        raise CatalogError(f"{where}: {not_json}") from None
    if not isinstance(value, dict):
        raise CatalogError(f"{where}: expected {expected}")
    return value


class PullDiscoveryCourseRunsAPIData(CourseCatalogMixin, ReportingMixin, luigi.Task):
    """The catalog snapshot of ``date``: every course run, one JSON object per line."""

    def output(self):
        return UrlTarget(self.snapshot_url())

    def run(self):
        started = time.monotonic()
        # All or nothing: a failure on any page leaves no snapshot behind.
        with self.output().writing() as out:
            if self.course_runs_file:
                pages, records = 1, copy_course_runs(self.course_runs_file, out)
                source = self.course_runs_file
            else:
                pages, records = fetch_course_runs(self, out)
                source = public_url(self.api_root_url or ", ".join(self.partner_api_urls))
        log.info(
            "course catalog: %d course runs from %s into %s", records, source, self.snapshot_url()
        )
        self.record_run(started, pages, records, {}, course_runs=records)


def _text(value, normalize: bool = False) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if normalize:
        text = " ".join(text.split())
    return text[:FIELD_LENGTH]


def _datetime(value) -> tuple[str | None, bool]:
    """``(YYYY-MM-DD HH:MM:SS in UTC, ok)``; None for null/empty, ok False if unparseable."""
    if value is None or value == "":
        return None, True
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None, False
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S"), True


def read_catalog(url: str) -> tuple[dict[str, tuple], dict[str, int]]:
    """``{course_id: (title, catalog_course, start, end, pacing_type, availability)}`` and
    the records skipped (or dates set NULL) per reason."""
    catalog: dict[str, tuple] = {}
    discards: dict[str, int] = {}

    def count(reason: str) -> None:
        discards[reason] = discards.get(reason, 0) + 1

    for run in _json_lines(url):
        if run is None:
            continue
        key = run.get("key")
        if not isinstance(key, str) or not key.strip():
            count("course run without key")
            continue
        key = key.strip()
        if key in catalog:
            count("duplicate course run")
            continue
        start, start_ok = _datetime(run.get("start"))
        end, end_ok = _datetime(run.get("end"))
        if not (start_ok and end_ok):
            count("unparseable start or end (NULL)")
        catalog[key] = (
            _text(run.get("title"), normalize=True),
            _text(run.get("course")),
            start,
            end,
            _text(run.get("pacing_type")),
            _text(run.get("availability")),
        )
    return catalog, discards
