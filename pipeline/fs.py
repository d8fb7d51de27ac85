"""Where the pipeline reads and writes: local paths and ``s3://bucket/key`` URLs.

S3 goes through boto3, so the usual AWS settings apply (credentials chain, ``AWS_ENDPOINT_URL``
for S3-compatible stores). Writes are atomic: a local file is renamed into place once complete,
an S3 object is uploaded in one request once complete. Readers never see half a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, BinaryIO

S3_PREFIX = "s3://"


class StorageError(Exception):
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
    """Yield ``(url, size)`` for every file under ``root`` recursively, in sorted order.

    On S3, zero-byte keys (directory markers) are skipped unless ``include_empty_keys``. A local
    ``root`` that is a file yields itself. A missing root yields nothing.
    """
    root = check_supported(root)
    if is_s3(root):
        bucket, prefix = split_s3(root)
        paginator = s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Size"] > 0 or include_empty_keys:
                    yield f"{S3_PREFIX}{bucket}/{obj['Key']}", obj["Size"]
        return
    if os.path.isfile(root):
        yield root, os.path.getsize(root)
        return
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            path = os.path.join(dirpath, name)
            found.append((path, os.path.getsize(path)))
    yield from sorted(found)


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


def _is_not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


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
        return open(url, "rb")
    except OSError as exc:
        raise StorageError(f"{url}: cannot read: {exc.strerror}") from exc


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
