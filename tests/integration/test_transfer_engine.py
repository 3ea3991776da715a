"""The transfer engine over real HTTP: the emulator's CDN as the source, a moto server as S3.

Every test ends in either a verified object (byte for byte against what the emulator serves) or a named
failure with no multipart upload left open and no object at the key.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import boto3
import pytest
import urllib3
from botocore.config import Config

from polyv_retriever import errors
from polyv_retriever.polyv.client import PolyvClient
from polyv_retriever.polyv.credentials import Credentials
from polyv_retriever.polyv_emulator import EmulatorServer
from polyv_retriever.polyv_emulator.content import VideoContent
from polyv_retriever.retry import Backoff
from polyv_retriever.transfer import checksums
from polyv_retriever.transfer.allowlist import DEFAULT_ALLOW, DownloadAllowList
from polyv_retriever.transfer.engine import MiB, TransferEngine, TransferSettings
from polyv_retriever.transfer.resume import Continuation
from polyv_retriever.transfer.s3_multipart import JOURNAL_PREFIX, S3Destination
from polyv_retriever.transfer.source import HttpSource
from tests.integration.conftest import open_uploads

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SMALL_PARTS = TransferSettings(min_part_size=5 * MiB, max_workers=3, memory_budget=16 * MiB)
FAST_PART_RETRY = Backoff(attempts=5, base_seconds=0.01, cap_seconds=0.1)


class Video:
    """One video on the emulator, with a URL provider as the Lambda has one (it asks the task again)."""

    def __init__(self, emulator: EmulatorServer, vid: str, size: int) -> None:
        self.emulator, self.vid, self.size = emulator, vid, size
        emulator.add_video(vid, size, ready_after=0)
        self.task_id = emulator.create_task([vid])
        self.url_requests = 0

    def url(self) -> str:
        self.url_requests += 1
        host = self.emulator.base_url.removeprefix("http://")
        return str(self.emulator.task_videos(self.task_id, host)[0]["url"])

    def source(self, url_provider: Callable[[], str] | None = None) -> HttpSource:
        allow = DownloadAllowList(f"{DEFAULT_ALLOW},{self.emulator.base_url}")
        return HttpSource(url_provider or self.url, allow, urllib3.PoolManager(maxsize=8), FAST_PART_RETRY)

    def sha256(self) -> str:
        return VideoContent(self.vid, self.size, self.emulator.video(self.vid).version).sha256()


def object_sha256(s3: S3Client, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


def assert_clean_failure(s3: S3Client, bucket: str, key: str) -> None:
    assert open_uploads(s3, bucket) == []
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) == 0
    assert s3.list_objects_v2(Bucket=bucket, Prefix=JOURNAL_PREFIX).get("KeyCount", 0) == 0


@pytest.mark.parametrize("ranges", [True, False], ids=["ranged", "single-stream"])
@pytest.mark.parametrize("checksum_type", ["FULL_OBJECT", "COMPOSITE"])
def test_copy_is_byte_exact_with_the_checksum_s3_verified(
    emulator: EmulatorServer, s3: S3Client, bucket: str, ranges: bool, checksum_type: str
) -> None:
    emulator.set_faults(dl_ignore_range=not ranges)
    video = Video(emulator, "vexact", 17 * MiB + 12345)
    dest = S3Destination(s3, bucket, "out/vexact.mp4", checksum_type)

    result = TransferEngine(SMALL_PARTS).copy(video.source(), dest, metadata={"polyv-vid": "vexact"})

    assert result.status == "COPIED"
    assert result.ranged is ranges
    assert result.parts == 4
    assert object_sha256(s3, bucket, "out/vexact.mp4") == video.sha256()
    head = s3.head_object(Bucket=bucket, Key="out/vexact.mp4", ChecksumMode="ENABLED")
    assert head["ContentLength"] == video.size
    assert S3Destination.checksum_matches(head["ChecksumCRC32"], str(result.s3_checksum))
    assert result.crc32 == checksums.to_s3(zlib.crc32(VideoContent("vexact", video.size).read()))
    if checksum_type == "FULL_OBJECT":
        assert head["ChecksumCRC32"] == result.crc32  # S3's whole-file CRC equals the one we combined
    else:
        assert str(result.s3_checksum).endswith("-4")  # a CRC of the 4 part CRCs
    assert head["Metadata"]["polyv-vid"] == "vexact"
    assert head["Metadata"]["source-size"] == str(video.size)
    assert open_uploads(s3, bucket) == []


def test_an_object_already_there_and_intact_is_not_copied_again(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vskip", 6 * MiB)
    dest = S3Destination(s3, bucket, "vskip.mp4")
    TransferEngine(SMALL_PARTS).copy(video.source(), dest, metadata={"polyv-vid": "vskip"})
    downloads_after_first = emulator.state.downloads

    again = TransferEngine(SMALL_PARTS).copy(video.source(), dest, metadata={"polyv-vid": "vskip"})

    assert again.status == "SKIPPED"
    assert emulator.state.downloads == downloads_after_first + 1  # the probe only
    other = TransferEngine(SMALL_PARTS).copy(video.source(), dest, metadata={"polyv-vid": "another-vid"})
    assert other.status == "COPIED"  # same key, different video: copied


def test_a_disallowed_host_is_refused_before_any_request(emulator: EmulatorServer) -> None:
    video = Video(emulator, "vdeny", MiB)
    with pytest.raises(errors.DownloadNotAllowed, match="is not allowed"):
        HttpSource(video.url, DownloadAllowList(DEFAULT_ALLOW), urllib3.PoolManager())
    assert emulator.state.downloads == 0


def test_an_expired_url_is_refreshed_and_the_copy_goes_on(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vexpire", 16 * MiB)
    expired = []

    def expire_once(_moved: int, _total: int) -> None:
        if not expired:
            expired.append(True)
            emulator.expire_urls()  # every URL handed out so far now answers 403

    engine = TransferEngine(TransferSettings(min_part_size=5 * MiB, max_workers=1), on_progress=expire_once)
    source = video.source()
    result = engine.copy(source, S3Destination(s3, bucket, "vexpire.mp4"), metadata={"polyv-vid": "vexpire"})

    assert result.status == "COPIED"
    assert source.refreshes == 1
    assert video.url_requests == 2
    assert object_sha256(s3, bucket, "vexpire.mp4") == video.sha256()


def test_an_expired_url_that_cannot_be_refreshed_fails_cleanly(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vdead", 16 * MiB)
    fixed = video.url()
    one_at_a_time = TransferSettings(min_part_size=5 * MiB, max_workers=1)
    engine = TransferEngine(one_at_a_time, on_progress=lambda *_: emulator.expire_urls())
    with pytest.raises(errors.SourceExpired):
        engine.copy(video.source(lambda: fixed), S3Destination(s3, bucket, "vdead.mp4"), metadata={})
    assert_clean_failure(s3, bucket, "vdead.mp4")


@pytest.mark.parametrize("ranges", [True, False], ids=["ranged", "single-stream"])
def test_resets_short_bodies_and_5xx_are_retried_for_that_part_only(
    emulator: EmulatorServer, s3: S3Client, bucket: str, ranges: bool
) -> None:
    video = Video(emulator, "vflaky", 16 * MiB + 1)
    emulator.set_faults(dl_ignore_range=not ranges)
    source = video.source()
    source.probe()
    emulator.set_faults(dl_reset=1, dl_short_body=1, dl_5xx=2)

    result = TransferEngine(SMALL_PARTS).copy(source, S3Destination(s3, bucket, "vflaky.mp4"), metadata={})

    assert result.status == "COPIED"
    assert (
        emulator.state.faults.dl_reset
        == emulator.state.faults.dl_short_body
        == emulator.state.faults.dl_5xx
        == 0
    )
    assert object_sha256(s3, bucket, "vflaky.mp4") == video.sha256()


def test_a_download_that_keeps_failing_aborts_the_upload(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vbroken", 12 * MiB)
    source = video.source()
    source.probe()
    emulator.set_faults(dl_5xx=1000)
    with pytest.raises(errors.SourceUnavailable, match="HTTP 503"):
        TransferEngine(SMALL_PARTS).copy(source, S3Destination(s3, bucket, "vbroken.mp4"), metadata={})
    assert_clean_failure(s3, bucket, "vbroken.mp4")


@pytest.mark.parametrize(
    ("ranges", "change_after"),
    # Ranged: the probe and one part see the old file, the next part a new one. Single stream: the probe
    # sees the old file, the stream the new one (a change inside one response cannot be seen).
    [(True, 2), (False, 1)],
    ids=["ranged", "single-stream"],
)
def test_a_source_that_changes_mid_transfer_fails_clearly(
    emulator: EmulatorServer, s3: S3Client, bucket: str, ranges: bool, change_after: int
) -> None:
    video = Video(emulator, "vchange", 16 * MiB)
    emulator.set_faults(dl_ignore_range=not ranges, dl_change_after=change_after)
    with pytest.raises(errors.SourceChanged, match="changed"):
        TransferEngine(TransferSettings(min_part_size=5 * MiB, max_workers=1)).copy(
            video.source(), S3Destination(s3, bucket, "vchange.mp4"), metadata={}
        )
    assert_clean_failure(s3, bucket, "vchange.mp4")


def test_s3_failing_a_part_aborts_the_upload(emulator: EmulatorServer, s3: S3Client, bucket: str) -> None:
    class FailingThirdPart(S3Destination):
        def upload_part(self, upload_id: str, number: int, data: bytes | bytearray, crc32: int):  # type: ignore[no-untyped-def]
            if number == 3:
                raise errors.StorageError("S3 UploadPart 3 failed: InternalError")
            return super().upload_part(upload_id, number, data, crc32)

    video = Video(emulator, "vs3fail", 16 * MiB)
    with pytest.raises(errors.StorageError, match="UploadPart 3"):
        TransferEngine(SMALL_PARTS).copy(
            video.source(), FailingThirdPart(s3, bucket, "vs3fail.mp4"), metadata={}
        )
    assert_clean_failure(s3, bucket, "vs3fail.mp4")


@pytest.mark.parametrize(
    ("look", "action"),
    [
        (lambda dest: dest.existing(), "HeadObject"),
        (lambda dest: dest.recall(), "GetObject"),
        (lambda dest: dest.list_parts("an-upload"), "ListParts"),
    ],
    ids=["existing", "journal", "parts"],
)
def test_an_unreachable_s3_is_a_named_storage_error_not_an_absent_object(
    look: Callable[[S3Destination], object], action: str
) -> None:
    # The lookups that treat "not found" as an answer must not treat "no answer" as one too.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    config = Config(retries={"max_attempts": 1}, connect_timeout=1)
    unreachable = boto3.client("s3", endpoint_url=endpoint, config=config)
    with pytest.raises(errors.StorageError, match=f"S3 {action}.* failed: EndpointConnectionError"):
        look(S3Destination(unreachable, "bucket", "key.mp4"))


def test_a_transfer_stopped_for_time_continues_to_a_verified_object(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vlong", 20 * MiB + 3)
    engine = TransferEngine(TransferSettings(min_part_size=5 * MiB, max_workers=1, time_reserve_seconds=5))
    dest = S3Destination(s3, bucket, "vlong.mp4")
    invocations, continuation, moved = 0, None, 0
    while True:
        invocations += 1
        # An invocation that is always nearly out of time: it moves its first part, then hands over.
        result = engine.copy(
            video.source(),
            dest,
            metadata={"polyv-vid": "vlong"},
            continuation=continuation,
            time_left=lambda: 1.0,
        )
        moved += result.bytes_transferred
        if result.status != "CONTINUE":
            break
        assert result.continuation is not None
        continuation = Continuation.from_dict(
            result.continuation.to_dict()
        )  # through JSON, as in Step Functions
        assert invocations < 10

    assert result.status == "COPIED"
    assert invocations == 5
    assert moved == video.size  # nothing moved twice
    assert object_sha256(s3, bucket, "vlong.mp4") == video.sha256()
    assert_clean_failure(s3, bucket, "nothing-else")  # no open upload, no journal left behind


def test_a_crashed_invocation_is_picked_up_not_redone(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vcrash", 25 * MiB)
    url = video.url()
    # The source trickles so that the child is killed mid-transfer, as a Lambda timeout would kill it.
    emulator.set_faults(dl_rate_bytes_per_second=4 * MiB)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import boto3, urllib3
            from polyv_retriever.transfer.allowlist import DownloadAllowList
            from polyv_retriever.transfer.engine import TransferEngine, TransferSettings, MiB
            from polyv_retriever.transfer.s3_multipart import S3Destination
            from polyv_retriever.transfer.source import HttpSource
            allow = DownloadAllowList({emulator.base_url!r})
            source = HttpSource(lambda: {url!r}, allow, urllib3.PoolManager())
            engine = TransferEngine(TransferSettings(min_part_size=5 * MiB, max_workers=1))
            engine.copy(source, S3Destination(boto3.client("s3"), {bucket!r}, "vcrash.mp4"), metadata={{}})
        """),
        ],
    )
    journal = S3Destination(s3, bucket, "vcrash.mp4")
    try:
        deadline = time.monotonic() + 60
        while len((journal.recall() or {}).get("parts", {})) < 2:  # two parts landed and were recorded
            assert time.monotonic() < deadline, "the child never uploaded two parts"
            assert child.poll() is None, "the child finished before it could be killed"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    emulator.set_faults(dl_rate_bytes_per_second=0)

    result = TransferEngine(TransferSettings(min_part_size=5 * MiB, max_workers=1)).copy(
        video.source(), S3Destination(s3, bucket, "vcrash.mp4"), metadata={}
    )

    assert result.status == "COPIED"
    assert result.bytes_transferred <= video.size - 2 * 5 * MiB  # the parts the dead one uploaded were kept
    assert object_sha256(s3, bucket, "vcrash.mp4") == video.sha256()
    assert open_uploads(s3, bucket) == []


def test_memory_stays_within_the_budget_for_a_file_many_times_larger(s3: S3Client, bucket: str) -> None:
    budget = 10 * MiB
    # The emulator in a process of its own, so that what is measured here is the engine alone.
    emulator = subprocess.Popen(
        [sys.executable, "-m", "polyv_retriever.polyv_emulator", "--port", "0", "--time-scale", "1e9"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        base_url = emulator.stdout.readline().split()[3]
        http = urllib3.PoolManager()
        http.request(
            "POST", f"{base_url}/_emulator/videos", json=[{"vid": "vbig", "size": 96 * MiB, "readyAfter": 0}]
        )
        task_id = http.request("POST", f"{base_url}/_emulator/tasks", json={"vids": ["vbig"]}).json()[
            "taskId"
        ]
        client = PolyvClient(Credentials("emulatorApp", "emulator-secret"), base_url=base_url)
        url = client.get_task(task_id).videos[0].url
        assert url is not None
        source = HttpSource(lambda: url, DownloadAllowList(base_url), urllib3.PoolManager())
        engine = TransferEngine(TransferSettings(memory_budget=budget, min_part_size=5 * MiB, max_workers=8))

        tracemalloc.start()
        try:
            result = engine.copy(source, S3Destination(s3, bucket, "vbig.mp4"), metadata={})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        expected = http.request("GET", f"{base_url}/_emulator/videos/vbig").json()["sha256"]
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)

    assert result.workers == 2  # the budget, not the file, decides how many parts are in flight
    # Over plain HTTP (this moto server) botocore SHA-256-signs each part's payload, reading it in 1 MiB
    # chunks (botocore.auth's PAYLOAD_BUFFER; the last chunk is alive while the next is read): up to 2 MiB
    # more per part in flight. Over HTTPS, as in AWS, payload signing is off. (awscrt, which the tests once
    # got from the SAM CLI's dependencies and Lambda never had, signed in C where tracemalloc cannot see.)
    allowance = 2 * MiB + result.workers * 2 * MiB
    assert peak < budget + allowance, f"peak {peak / MiB:.1f} MiB for a {result.size / MiB:.0f} MiB file"
    assert object_sha256(s3, bucket, "vbig.mp4") == expected


def test_a_stale_journal_from_an_older_source_is_abandoned_not_fatal(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vstale", 12 * MiB)
    dest = S3Destination(s3, bucket, "vstale.mp4")
    stale_upload = s3.create_multipart_upload(Bucket=bucket, Key="vstale.mp4")["UploadId"]
    dest.remember(
        Continuation(stale_upload, 999, '"old"', 5 * MiB).to_dict()
    )  # an attempt on another version

    result = TransferEngine(SMALL_PARTS).copy(video.source(), dest, metadata={})

    assert result.status == "COPIED"
    assert object_sha256(s3, bucket, "vstale.mp4") == video.sha256()
    assert open_uploads(s3, bucket) == []


def test_a_continuation_whose_upload_already_completed_is_recognised(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vdone", 6 * MiB)
    dest = S3Destination(s3, bucket, "vdone.mp4")
    engine = TransferEngine(SMALL_PARTS)
    first = engine.copy(video.source(), dest, metadata={"polyv-vid": "vdone"})
    # The invocation completed the upload but died before returning; Step Functions retries its input.
    leftover = Continuation("gone-upload-id", video.size, video.source().probe().etag, 5 * MiB)
    again = engine.copy(video.source(), dest, metadata={"polyv-vid": "vdone"}, continuation=leftover)
    assert (first.status, again.status) == ("COPIED", "SKIPPED")
