"""The transfer engine against sources that bend the rules, over real HTTP (the emulator's CDN) into a moto
server: an empty file, a CDN without ETag, a node that ignores Range once.

Each test ends in a verified object or a named failure with nothing at the key and no upload left open.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import pytest

from polyv_retriever import errors
from polyv_retriever.polyv_emulator import EmulatorServer
from polyv_retriever.transfer import checksums
from polyv_retriever.transfer.engine import MiB, TransferEngine, TransferSettings
from polyv_retriever.transfer.s3_multipart import JOURNAL_PREFIX, S3Destination
from polyv_retriever.transfer.source import HttpSource, SourceInfo
from tests.integration.conftest import open_uploads
from tests.integration.test_transfer_engine import SMALL_PARTS, Video, assert_clean_failure, object_sha256

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ONE_AT_A_TIME = TransferSettings(min_part_size=5 * MiB, max_workers=1, time_reserve_seconds=5)
CRC_OF_NOTHING = checksums.to_s3(zlib.crc32(b""))


# --- 6: an empty source file ----------------------------------------------------------------------------


@pytest.mark.parametrize("checksum_type", ["FULL_OBJECT", "COMPOSITE"])
@pytest.mark.parametrize(
    "faults",
    [
        {"dl_unsatisfiable": "416"},  # RFC 9110: 416 with Content-Range: bytes */0
        {"dl_unsatisfiable": "416-bare"},  # 416 without the size, as S3 answers
        {"dl_unsatisfiable": "200"},  # an empty 200 for an unsatisfiable range
        {"dl_ignore_range": True},  # a server that ignores Range altogether
    ],
    ids=["416", "416-without-size", "empty-200", "ignores-range"],
)
def test_an_empty_source_becomes_an_empty_verified_object_once(
    emulator: EmulatorServer, s3: S3Client, bucket: str, faults: dict[str, object], checksum_type: str
) -> None:
    emulator.set_faults(**faults)
    video = Video(emulator, "vempty", 0)
    dest = S3Destination(s3, bucket, "out/vempty.mp4", checksum_type)

    result = TransferEngine(SMALL_PARTS).copy(video.source(), dest, metadata={"polyv-vid": "vempty"})

    assert (result.status, result.size, result.crc32, result.s3_checksum) == (
        "COPIED",
        0,
        CRC_OF_NOTHING,
        CRC_OF_NOTHING,
    )
    head = s3.head_object(Bucket=bucket, Key="out/vempty.mp4", ChecksumMode="ENABLED")
    assert head["ContentLength"] == 0
    assert head["ChecksumCRC32"] == CRC_OF_NOTHING
    assert head["Metadata"]["polyv-vid"] == "vempty"
    assert head["Metadata"]["source-size"] == "0"
    assert s3.get_object(Bucket=bucket, Key="out/vempty.mp4")["Body"].read() == b""
    assert open_uploads(s3, bucket) == []
    assert s3.list_objects_v2(Bucket=bucket, Prefix=JOURNAL_PREFIX).get("KeyCount", 0) == 0

    downloads = emulator.state.downloads
    again = TransferEngine(SMALL_PARTS).copy(video.source(), dest, metadata={"polyv-vid": "vempty"})
    assert (again.status, again.s3_checksum) == ("SKIPPED", CRC_OF_NOTHING)
    assert emulator.state.downloads - downloads <= 2  # the probe only (two requests for a bare 416)


def test_an_empty_source_replaces_a_journal_left_by_an_older_version(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vshrunk", 0)
    dest = S3Destination(s3, bucket, "vshrunk.mp4")
    stale = s3.create_multipart_upload(Bucket=bucket, Key="vshrunk.mp4")["UploadId"]
    dest.remember({"upload_id": stale, "size": 6 * MiB, "etag": '"old"', "part_size": 5 * MiB})

    result = TransferEngine(SMALL_PARTS).copy(video.source(), dest, metadata={})

    assert result.status == "COPIED"
    assert s3.head_object(Bucket=bucket, Key="vshrunk.mp4")["ContentLength"] == 0
    assert open_uploads(s3, bucket) == []
    assert s3.list_objects_v2(Bucket=bucket, Prefix=JOURNAL_PREFIX).get("KeyCount", 0) == 0


# --- 7: a CDN that sends no ETag ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_modified", "caught_by"),
    [(True, "Last-Modified changed"), (False, "first part reads differently")],
    ids=["last-modified-changes", "nothing-but-the-bytes-changes"],
)
def test_without_an_etag_a_change_mid_copy_fails_clearly(
    emulator: EmulatorServer, s3: S3Client, bucket: str, last_modified: bool, caught_by: str
) -> None:
    video = Video(emulator, "vnoetag", 16 * MiB)
    # The probe and the first part see one version; every later request sees another of the same size.
    emulator.set_faults(dl_no_etag=True, dl_no_last_modified=not last_modified, dl_change_after=2)

    with pytest.raises(errors.SourceChanged, match=caught_by):
        TransferEngine(ONE_AT_A_TIME).copy(
            video.source(), S3Destination(s3, bucket, "vnoetag.mp4"), metadata={}
        )

    assert_clean_failure(s3, bucket, "vnoetag.mp4")


@pytest.mark.parametrize("ranges", [True, False], ids=["ranged", "single-stream"])
def test_without_an_etag_a_change_between_invocations_fails_clearly(
    emulator: EmulatorServer, s3: S3Client, bucket: str, ranges: bool
) -> None:
    video = Video(emulator, "vnoetag2", 21 * MiB)
    emulator.set_faults(dl_no_etag=True, dl_no_last_modified=True, dl_ignore_range=not ranges)
    engine = TransferEngine(ONE_AT_A_TIME)
    dest = S3Destination(s3, bucket, "vnoetag2.mp4")
    first = engine.copy(video.source(), dest, metadata={}, time_left=lambda: 1.0)
    assert first.status == "CONTINUE"
    assert first.continuation is not None
    emulator.set_faults(dl_change_after=0)  # replaced by a file of the same size before the next invocation

    with pytest.raises(errors.SourceChanged, match="first part reads differently"):
        engine.copy(video.source(), dest, metadata={}, continuation=first.continuation)

    assert_clean_failure(s3, bucket, "vnoetag2.mp4")


@pytest.mark.parametrize("ranges", [True, False], ids=["ranged", "single-stream"])
def test_without_an_etag_an_unchanged_source_is_copied_at_the_cost_of_one_part(
    emulator: EmulatorServer, s3: S3Client, bucket: str, ranges: bool
) -> None:
    video = Video(emulator, "vplain", 16 * MiB + 5)
    emulator.set_faults(dl_no_etag=True, dl_no_last_modified=True, dl_ignore_range=not ranges)

    result = TransferEngine(ONE_AT_A_TIME).copy(
        video.source(), S3Destination(s3, bucket, "vplain.mp4"), metadata={}
    )

    assert result.status == "COPIED"
    assert object_sha256(s3, bucket, "vplain.mp4") == video.sha256()
    # The probe, then the parts (one stream without Range), then the first part again.
    assert emulator.state.downloads == (1 + result.parts + 1 if ranges else 1 + 1 + 1)


# --- 8: a part answered 200 instead of 206 ------------------------------------------------------------


def faults_after_the_probe(video: Video, **faults: object) -> HttpSource:
    """A source whose server starts misbehaving right after the engine's probe (which is a ranged request
    too), so that the fault hits the parts."""
    source = video.source()
    probe = source.probe

    def probe_then_misbehave() -> SourceInfo:
        info = probe()
        video.emulator.set_faults(**faults)
        return info

    source.probe = probe_then_misbehave  # type: ignore[method-assign]
    return source


@pytest.mark.parametrize(
    ("size", "downloads"),
    # Many parts: the probe, the 200 (dropped unread), part 1 again, parts 2..4. One part: a 200 is the whole
    # file, which is exactly that part: the probe and the one 200.
    [(16 * MiB + 1, 1 + 1 + 4), (3 * MiB, 1 + 1)],
    ids=["many-parts", "one-part"],
)
def test_a_part_answered_200_is_asked_again_and_the_upload_goes_on(
    emulator: EmulatorServer, s3: S3Client, bucket: str, size: int, downloads: int
) -> None:
    video = Video(emulator, "vnode", size)
    source = faults_after_the_probe(video, dl_range_ignored=1)  # the first part's request gets a 200

    result = TransferEngine(ONE_AT_A_TIME).copy(source, S3Destination(s3, bucket, "vnode.mp4"), metadata={})

    assert result.status == "COPIED"
    assert emulator.state.faults.dl_range_ignored == 0
    assert emulator.state.downloads == downloads
    assert result.bytes_transferred == size  # nothing uploaded twice, nothing started over
    assert object_sha256(s3, bucket, "vnode.mp4") == video.sha256()
    assert open_uploads(s3, bucket) == []


def test_a_server_that_stops_honouring_range_for_good_fails_cleanly(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vnorange", 12 * MiB)
    source = faults_after_the_probe(video, dl_range_ignored=1000)

    with pytest.raises(errors.SourceUnavailable, match="ignored Range"):
        TransferEngine(SMALL_PARTS).copy(source, S3Destination(s3, bucket, "vnorange.mp4"), metadata={})

    assert_clean_failure(s3, bucket, "vnorange.mp4")
