"""The S3 side of a transfer: one multipart upload with per-part CRC32s that S3 verifies, and a small
journal object so that an invocation that died (a crash, a timeout) can be picked up, not redone.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

from botocore.compat import HAS_CRT

from polyv_retriever.aws_errors import AWS_ERRORS, error_code, s3_error
from polyv_retriever.errors import InvalidInput
from polyv_retriever.transfer import checksums

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: FULL_OBJECT: S3 keeps the whole file's CRC32 (what a user can check a download against). COMPOSITE: a CRC
#: of the part CRCs ("...-N"), what boto3's upload_file uses; cheaper on moto, the same on S3.
CHECKSUM_TYPES = ("FULL_OBJECT", "COMPOSITE")

#: Journals live beside the data, under one prefix that a lifecycle rule expires.
JOURNAL_PREFIX = "_polyv-retriever/uploads/"


def part_body(data: bytes | bytearray) -> IO[bytes]:
    """What to hand botocore as a part's body.

    The buffer itself where botocore signs in Python (the Lambda runtime, which has no awscrt): urllib3
    sends it in one ``sendall``, with no ``Expect: 100-continue`` round trip. A file-like body instead
    costs a Python round trip and two copies per 16 KiB (urllib3 reads it by ``blocksize``): 0.3 CPU s
    more per GiB. Where awscrt is installed, botocore's CRT signer copies a buffer body into a BytesIO
    (a second part in memory per upload in flight), so there the stream is the lesser cost.
    """
    # (Typed as a stream: the stubs omit bytearray, which botocore takes as it takes bytes.)
    return cast(IO[bytes], PartBody(data) if HAS_CRT else data)


class PartBody(io.RawIOBase):
    """A part buffer as a seekable stream, without copying it (see part_body)."""

    def __init__(self, data: bytes | bytearray) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._position = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), len(self._view) - self._position))
        buffer[:count] = self._view[self._position : self._position + count]
        self._position += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position


@dataclass(frozen=True)
class UploadedPart:
    number: int
    etag: str
    crc32: int | None  # None when S3's ListParts does not say (moto does not; S3 does)
    size: int


@dataclass(frozen=True)
class ExistingObject:
    size: int
    metadata: dict[str, str]
    checksum: str | None  # S3's ChecksumCRC32 as it reports it: full-object, or composite ("...-N")


def s3_client() -> S3Client:
    """The S3 client for transfers (the Lambdas' and the CLI's).

    Payload signing is off: every part carries its CRC32 in a signed header and S3 verifies the body against
    it, so SigV4's SHA-256 over the body adds CPU and no integrity. Over HTTPS botocore already sends
    UNSIGNED-PAYLOAD; this makes plain-HTTP endpoints (the local stack) behave the same.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=32,
        s3={"payload_signing_enabled": False},
    )
    return boto3.client("s3", config=config)


class S3Destination:
    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        key: str,
        checksum_type: str = "FULL_OBJECT",
        object_args: dict[str, str] | None = None,
    ) -> None:
        """``object_args``: how the object is stored (StorageClass, Tagging, ServerSideEncryption,
        SSEKMSKeyId), passed as they are to the request that creates it (pipeline/video_transfer.py)."""
        if checksum_type not in CHECKSUM_TYPES:
            raise InvalidInput(f"checksum type {checksum_type!r}: use one of {', '.join(CHECKSUM_TYPES)}")
        self.s3, self.bucket, self.key, self.checksum_type = s3, bucket, key, checksum_type
        self.object_args: dict[str, Any] = dict(object_args or {})

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def journal_key(self) -> str:
        return JOURNAL_PREFIX + self.key + ".json"

    def existing(self) -> ExistingObject | None:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key, ChecksumMode="ENABLED")
        except AWS_ERRORS as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise s3_error("HeadObject", exc) from None
        return ExistingObject(
            size=head["ContentLength"], metadata=head.get("Metadata", {}), checksum=head.get("ChecksumCRC32")
        )

    def put_empty(self, metadata: dict[str, str], content_type: str) -> str:
        """An empty object, in one PutObject; returns the checksum S3 must then report for it.

        Not multipart: an upload needs at least one part, so an empty file would cost three requests and an
        upload to abort if any fails, while a PutObject is atomic and S3 checks its (empty) body against the
        CRC32 given, as it does each part's. ChecksumAlgorithm too, so that S3 keeps the CRC32 and reports
        it on HEAD (moto keeps it only then), which the idempotent skip relies on.
        """
        crc = checksums.to_s3(checksums.crc32(b""))
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=b"",
                Metadata=metadata,
                ContentType=content_type,
                ChecksumAlgorithm="CRC32",
                ChecksumCRC32=crc,
                **self.object_args,
            )
        except AWS_ERRORS as exc:
            raise s3_error("PutObject", exc) from None
        return crc

    # --- the multipart upload --------------------------------------------------------------------------

    @contextlib.contextmanager
    def upload(self, metadata: dict[str, str], content_type: str, resume: str | None = None) -> Iterator[str]:
        """The multipart upload to write into: ``resume``, or one created now. It is owned here, the one place
        that undoes it: whatever fails inside aborts the upload and forgets its journal, so no failure
        leaves either behind. A normal exit leaves it as it is: completed, or open for the next invocation.
        """
        upload_id = resume or self.create(metadata, content_type)
        try:
            yield upload_id
        except BaseException:
            self.abort(upload_id)
            self.forget()
            raise

    def create(self, metadata: dict[str, str], content_type: str) -> str:
        try:
            created = self.s3.create_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                Metadata=metadata,
                ContentType=content_type,
                ChecksumAlgorithm="CRC32",
                ChecksumType=self.checksum_type,  # type: ignore[arg-type]
                **self.object_args,
            )
        except AWS_ERRORS as exc:
            raise s3_error("CreateMultipartUpload", exc) from None
        return created["UploadId"]

    def upload_part(self, upload_id: str, number: int, data: bytes | bytearray, crc32: int) -> UploadedPart:
        try:
            answer = self.s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part_body(data),
                ChecksumCRC32=checksums.to_s3(crc32),
            )
        except AWS_ERRORS as exc:
            raise s3_error(f"UploadPart {number}", exc) from None
        return UploadedPart(number, answer["ETag"], crc32, len(data))

    def list_parts(self, upload_id: str) -> dict[int, UploadedPart] | None:
        """The parts S3 holds for the upload, or None when the upload is gone (completed or aborted)."""
        parts: dict[int, UploadedPart] = {}
        marker = 0
        try:
            while True:
                page = self.s3.list_parts(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id, PartNumberMarker=marker
                )
                for part in page.get("Parts", []):
                    crc = part.get("ChecksumCRC32")
                    number = part["PartNumber"]
                    parts[number] = UploadedPart(
                        number, part["ETag"], checksums.from_s3(crc) if crc else None, part["Size"]
                    )
                if not page.get("IsTruncated"):
                    return parts
                marker = int(page["NextPartNumberMarker"])
        except AWS_ERRORS as exc:
            if error_code(exc) == "NoSuchUpload":
                return None
            raise s3_error("ListParts", exc) from None

    def expected_checksum(self, parts: list[UploadedPart], full_crc32: int) -> str:
        """What S3 must report for the completed object, in this upload's checksum type."""
        if self.checksum_type == "FULL_OBJECT":
            return checksums.to_s3(full_crc32)
        return checksums.composite([p.crc32 or 0 for p in parts])

    @staticmethod
    def checksum_matches(reported: str | None, expected: str) -> bool:
        """S3 reports a composite checksum as "<crc>-<parts>"; moto leaves the "-<parts>" off."""
        return reported is None or reported in (expected, expected.partition("-")[0])

    def complete(self, upload_id: str, parts: list[UploadedPart], full_crc32: int) -> None:
        # FULL_OBJECT: S3 refuses to complete unless the parts combine to our whole-file CRC32.
        whole = {"ChecksumCRC32": checksums.to_s3(full_crc32), "ChecksumType": "FULL_OBJECT"}
        try:
            self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=upload_id,
                **(whole if self.checksum_type == "FULL_OBJECT" else {}),  # type: ignore[arg-type]
                MultipartUpload={
                    "Parts": [
                        {
                            "PartNumber": p.number,
                            "ETag": p.etag,
                            "ChecksumCRC32": checksums.to_s3(p.crc32 or 0),
                        }
                        for p in parts
                    ]
                },
            )
        except AWS_ERRORS as exc:
            raise s3_error("CompleteMultipartUpload", exc) from None

    def abort(self, upload_id: str) -> None:
        """Best effort: the bucket's lifecycle rule is the backstop for an abort that fails. The journal is
        left alone: it may already name another upload, the one going on."""
        with contextlib.suppress(*AWS_ERRORS):
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)

    def delete_object(self) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key)
        except AWS_ERRORS as exc:
            raise s3_error("DeleteObject", exc) from None

    # --- the journal -------------------------------------------------------------------------------------

    def remember(self, journal: dict[str, Any]) -> None:
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.journal_key,
                Body=json.dumps(journal).encode(),
                ContentType="application/json",
            )
        except AWS_ERRORS as exc:
            raise s3_error("PutObject (journal)", exc) from None

    def recall(self) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.journal_key)["Body"].read()
        except AWS_ERRORS as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise s3_error("GetObject (journal)", exc) from None
        try:
            journal = json.loads(body)
        except ValueError:
            return None
        return journal if isinstance(journal, dict) else None

    def forget(self) -> None:
        with contextlib.suppress(*AWS_ERRORS):
            self.s3.delete_object(Bucket=self.bucket, Key=self.journal_key)
