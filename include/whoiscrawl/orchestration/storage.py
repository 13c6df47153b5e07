"""A run's files in S3 (``s3_prefix`` Param), through S3Hook: workers and users need no coordinator files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.orchestration.aws import s3_hook

log = logging.getLogger(__name__)


class StorageError(WhoiscrawlError):
    """The S3 prefix is malformed or a copy failed."""


def split_prefix(prefix: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, ``some/prefix``)."""
    if not prefix.startswith("s3://") or not prefix[5:].split("/", 1)[0]:
        raise StorageError(f"s3_prefix {prefix!r}: use s3://bucket/prefix")
    bucket, _, key = prefix[5:].partition("/")
    return bucket, key.strip("/")


def copy_to_s3(params: dict[str, Any], run: str, path: Path) -> str | None:
    """Copy ``path`` to ``<s3_prefix>/<run>/<name>``; its URL, or None when no prefix is given."""
    prefix = params.get("s3_prefix")
    if not prefix:
        return None
    bucket, base = split_prefix(prefix)
    key = "/".join(p for p in (base, run, Path(path).name) if p)
    s3_hook().load_file(filename=str(path), key=key, bucket_name=bucket, replace=True)
    url = f"s3://{bucket}/{key}"
    log.info("copied %s to %s", path, url)
    return url
