"""Where the pipeline reads and writes: local paths and ``s3://bucket/key`` URLs.

S3 goes through boto3, so the usual AWS settings apply (credentials chain, ``AWS_ENDPOINT_URL``
for S3-compatible stores). Writes are atomic: a local file is renamed into place once complete,
an S3 object is uploaded in one request once complete. Readers never see half a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from typing import IO, BinaryIO

from pipeline.errors import OperationFailed

S3_PREFIX = "s3://"


class StorageError(OperationFailed):
    """A location that cannot be read or written, with the location in the message."""


def is_s3(url: str) -> bool:
    return url.startswith(S3_PREFIX)


def check_supported(url: str) -> str:
    """Return ``url`` if this pipeline can use it, else raise naming it."""
    if not url:
        raise StorageError("empty location")
    if "://" in url and not is_s3(url) and not url.startswith("file://"):
        scheme = url.split("://", 1)[0]
        raise StorageError(f"{url}: unsupported scheme {scheme}://; use a local path or s3://")
    return url[len("file://") :] if url.startswith("file://") else url


def join(base: str, *parts: str) -> str:
    """Join path segments with '/', the way URLs and local paths both accept."""
    out = base
    for part in parts:
        out = out.rstrip("/") + "/" + part.lstrip("/")
    return out


def split_s3(url: str) -> tuple[str, str]:
    bucket, _, key = url[len(S3_PREFIX) :].partition("/")
    if not bucket:
        raise StorageError(f"{url}: no bucket in S3 URL")
    return bucket, key


_s3_client = None


def s3_client():
    """One boto3 S3 client per process (boto3 clients are thread-safe, sessions are not)."""
    global _s3_client
    if _s3_client is None:
        import boto3

        _s3_client = boto3.session.Session().client("s3")
    return _s3_client


def list_files(root: str, include_empty_keys: bool = False) -> Iterator[tuple[str, int]]:
    """Yield ``(url, size)`` for every regular file under ``root`` recursively, in sorted order.

    On S3, zero-byte keys (directory markers) are skipped unless ``include_empty_keys``. A local
    ``root`` that is a file yields itself. A missing root yields nothing. Entries that are not
    regular files (broken links, FIFOs, sockets) are left out: see :func:`list_entries`.
    """
    for url, size, kind in list_entries(root, include_empty_keys):
        if kind == REGULAR:
            yield url, size


REGULAR = "regular file"


def list_entries(root: str, include_empty_keys: bool = False) -> Iterator[tuple[str, int, str]]:
    """Like :func:`list_files`, but every entry, as ``(url, size, kind)``.

    ``kind`` is :data:`REGULAR`, or what else a local entry is ("broken symbolic link", "FIFO",
    "socket", "character device", "block device"): such entries cannot be read as logs, and
    opening a FIFO would block forever. Symbolic links to regular files are regular files.
    A directory that cannot be listed raises :class:`StorageError` naming it.
    """
    root = check_supported(root)
    if is_s3(root):
        bucket, prefix = split_s3(root)
        paginator = s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Size"] > 0 or include_empty_keys:
                    yield f"{S3_PREFIX}{bucket}/{obj['Key']}", obj["Size"], REGULAR
        return
    if not os.path.isdir(root):
        if os.path.lexists(root):
            yield (root, *_local_kind(root))
        return
    found = []
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    else:
                        found.append((entry.path, *_local_kind(entry.path)))
        except OSError as exc:
            raise StorageError(f"{directory}: cannot list: {exc.strerror}") from exc
    yield from sorted(found)


def _local_kind(path: str) -> tuple[int, str]:
    try:
        mode, size = (st := os.stat(path)).st_mode, st.st_size
    except FileNotFoundError:
        return 0, "broken symbolic link"
    except OSError as exc:
        raise StorageError(f"{path}: cannot stat: {exc.strerror}") from exc
    if stat.S_ISREG(mode):
        return size, REGULAR
    if stat.S_ISDIR(mode):  # a symbolic link to a directory: not followed, as before
        return 0, "symbolic link to a directory"
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            return 0, kind
    return 0, "special file"


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def location_exists(url: str) -> bool:
    """Whether a source exists: a local file or directory, or an S3 prefix with any key."""
    url = check_supported(url)
    if is_s3(url):
        bucket, prefix = split_s3(url)
        try:
            page = s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except Exception as exc:
            if _error_code(exc) == "NoSuchBucket":
                return False
            raise
        return bool(page.get("KeyCount") or page.get("Contents"))
    return os.path.exists(url)


def exists(url: str) -> bool:
    url = check_supported(url)
    if is_s3(url):
        bucket, key = split_s3(url)
        try:
            s3_client().head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:  # botocore ClientError 404
            if _is_not_found(exc):
                return False
            raise
    return os.path.exists(url)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _is_not_found(exc: Exception) -> bool:
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound")


def open_read(url: str) -> BinaryIO:
    """Open ``url`` for streaming binary reads."""
    url = check_supported(url)
    if is_s3(url):
        bucket, key = split_s3(url)
        try:
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as exc:
            raise StorageError(f"{url}: cannot read: {exc}") from exc
    try:
        # Non-blocking open, so that a FIFO put where a log was listed cannot hang the run.
        fd = os.open(url, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise StorageError(f"{url}: cannot read: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"{url}: cannot read: not a regular file")
    os.set_blocking(fd, True)
    return open(fd, "rb")


def read_text(url: str) -> str:
    with contextlib.closing(open_read(url)) as stream:
        return stream.read().decode("utf-8")


@contextlib.contextmanager
def atomic_write(url: str, mode: str = "w") -> Iterator[IO]:
    """Write ``url`` all-or-nothing: if the block raises, nothing appears at ``url``."""
    url = check_supported(url)
    text = "b" not in mode
    if is_s3(url):
        with tempfile.TemporaryDirectory(prefix="pipeline-upload-") as tmpdir:
            tmp = os.path.join(tmpdir, "part")
            with _open_local(tmp, text) as handle:
                yield handle
            bucket, key = split_s3(url)
            s3_client().upload_file(tmp, bucket, key)
        return
    directory = os.path.dirname(os.path.abspath(url))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(url) + "-", dir=directory)
    os.close(fd)
    try:
        with _open_local(tmp, text) as handle:
            yield handle
        os.chmod(tmp, 0o644)
        os.replace(tmp, url)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _open_local(path: str, text: bool) -> IO:
    # newline="" keeps '\n' as written: outputs are Unix TSV/CSV on every platform.
    return open(path, "w", encoding="utf-8", newline="") if text else open(path, "wb")


def remove(url: str) -> None:
    """Remove a file or a whole directory/prefix; missing is fine."""
    url = check_supported(url)
    if is_s3(url):
        bucket, prefix = split_s3(url)
        listing = list_files(url, include_empty_keys=True)
        keys = [{"Key": u[len(S3_PREFIX) + len(bucket) + 1 :]} for u, _ in listing]
        for start in range(0, len(keys), 1000):
            s3_client().delete_objects(
                Bucket=bucket, Delete={"Objects": keys[start : start + 1000]}
            )
        return
    if os.path.isdir(url):
        shutil.rmtree(url)
    elif os.path.exists(url):
        os.unlink(url)
