"""Where a retrieval's data and records live in the bucket, and the small JSON records themselves.

    {prefix}{taskId}/{vid}{ext}                  the source files
    {prefix}{taskId}/manifest.json               every video's outcome, written when the retrieval ends
    {prefix}{taskId}/_retrieval/status.json      Polyv's view at the last poll (counts, statuses)
    {prefix}{taskId}/_retrieval/videos/{vid}.json  each video's transfer progress or result
    {prefix}{taskId}/_retrieval/cancelled/{attempt}.json  an operator cancelled that attempt (DELETE)

Records are what ``GET /retrievals/{id}`` reads while an execution runs, so that it needs neither the
execution history nor Polyv.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from polyv_retriever.aws_errors import AWS_ERRORS, error_code, s3_error
from polyv_retriever.errors import CorruptRecord, InvalidInput

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEFAULT_PREFIX = "polyv/"
#: The bucket's lifecycle-managed prefix (template.yaml's expire-transfer-journals rule: objects under it are
#: deleted after 14 days): the transfer journals live there, and no retrieval may.
LIFECYCLE_PREFIX = "_polyv-retriever/"
_PREFIX = re.compile(r"^(?:[A-Za-z0-9!_.*'()-]+/)*$")
_EXTENSION = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


def validate_prefix(prefix: object) -> str:
    """A destination prefix: empty, or path segments of S3's safe characters, ending in '/'."""
    if prefix is None:
        return DEFAULT_PREFIX
    if not isinstance(prefix, str) or len(prefix) > 512 or ".." in prefix or not _PREFIX.fullmatch(prefix):
        raise InvalidInput(
            f"prefix {prefix!r} is malformed: use segments of letters, digits and !_.*'()- each ending in '/'"
        )
    # With the empty prefix a retrieval's keys start with its taskId, which cannot start with '_'
    # (polyv/models.py's TASK_ID_PATTERN): so no retrieval's key is ever under this prefix.
    if prefix.startswith(LIFECYCLE_PREFIX):
        raise InvalidInput(
            f"prefix {prefix!r} is under {LIFECYCLE_PREFIX!r}, which the bucket's lifecycle rule empties "
            "after 14 days: choose another prefix"
        )
    return prefix


def extension_of(url: str) -> str:
    """The source file's extension, from the download URL's path (Polyv serves the uploaded original)."""
    ext = posixpath.splitext(urlsplit(url).path)[1].lower()
    return ext if _EXTENSION.fullmatch(ext) else ""


@dataclass(frozen=True)
class RetrievalLayout:
    prefix: str
    task_id: str

    @property
    def root(self) -> str:
        return f"{self.prefix}{self.task_id}/"

    def video_key(self, vid: str, extension: str) -> str:
        return f"{self.root}{vid}{extension}"

    @property
    def manifest_key(self) -> str:
        return f"{self.root}manifest.json"

    @property
    def status_key(self) -> str:
        return f"{self.root}_retrieval/status.json"

    def video_record_key(self, vid: str) -> str:
        return f"{self.root}_retrieval/videos/{vid}.json"

    @property
    def video_records_prefix(self) -> str:
        return f"{self.root}_retrieval/videos/"

    def cancel_marker_key(self, attempt: int) -> str:
        return f"{self.root}_retrieval/cancelled/{attempt}.json"


class RecordStore(Protocol):
    """Small JSON documents by key: S3 in production, a dict in unit tests."""

    def put_json(self, key: str, document: dict[str, Any]) -> None: ...

    def get_json(self, key: str) -> dict[str, Any] | None: ...

    def list_json(self, prefix: str) -> list[dict[str, Any]]: ...


class S3RecordStore:
    def __init__(self, s3: S3Client, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def put_json(self, key: str, document: dict[str, Any]) -> None:
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(document, ensure_ascii=False, indent=1).encode(),
                ContentType="application/json",
            )
        except AWS_ERRORS as exc:
            raise s3_error(f"PutObject {key}", exc) from None

    def get_json(self, key: str) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except AWS_ERRORS as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise s3_error(f"GetObject {key}", exc) from None
        try:
            document = json.loads(body)
        except ValueError:  # not JSON, or not UTF-8
            raise CorruptRecord(f"s3://{self.bucket}/{key} is not JSON") from None
        if not isinstance(document, dict):
            raise CorruptRecord(f"s3://{self.bucket}/{key} is JSON but not an object")
        return document

    def list_json(self, prefix: str) -> list[dict[str, Any]]:
        documents = []
        try:
            keys = [
                item["Key"]
                for page in self.s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix
                )
                for item in page.get("Contents", [])
            ]
        except AWS_ERRORS as exc:
            raise s3_error(f"ListObjectsV2 {prefix}", exc) from None
        for key in keys:
            document = self.get_json(key)
            if document is not None:
                documents.append(document)
        return documents
