"""Ctrl-C during ``polyv-retriever copy`` (issue 9, item 11): the real command, a real SIGINT at many moments
(starting up, probing, creating the upload, mid-parts, completing), against the emulator's CDN (throttled,
so that a copy takes a few seconds) and a moto server. Whatever the moment, nothing is left behind: no
multipart upload, no journal, and no object unless a whole, verified one; ``--keep-on-interrupt`` keeps a
resumable upload and says how to resume it, and running again does resume it."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING

import pytest

from polyv_retriever import errors
from polyv_retriever.polyv_emulator import EmulatorServer
from polyv_retriever.polyv_emulator.content import VideoContent
from polyv_retriever.transfer.engine import TransferEngine
from polyv_retriever.transfer.s3_multipart import JOURNAL_PREFIX, S3Destination
from tests.integration.conftest import open_uploads
from tests.integration.test_cli_copy import CLI, download_url
from tests.integration.test_transfer_engine import SMALL_PARTS, Video, object_sha256

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SIZE = 30 * 1024 * 1024 + 7  # 7 parts of 5 MiB
RATE = 4 * 1024 * 1024  # bytes per second per connection: two workers take ~4 s over the parts


def start_copy(url: str, destination: str, allow: str, *extra: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "POLYV_DOWNLOAD_ALLOW": allow,
        "TRANSFER_MIN_PART_MB": "5",
        "TRANSFER_MAX_WORKERS": "2",
    }
    return subprocess.Popen(
        [CLI, "copy", url, destination, "--json", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def journals(s3: S3Client, bucket: str) -> int:
    return int(s3.list_objects_v2(Bucket=bucket, Prefix=JOURNAL_PREFIX).get("KeyCount", 0))


@pytest.mark.parametrize("presses", [1, 20], ids=["once", "impatiently"])
@pytest.mark.parametrize("after_seconds", [0.3, 1.2, 2.2, 3.2, 4.5])
def test_ctrl_c_at_any_moment_leaves_no_upload_no_journal_and_no_partial_object(
    emulator: EmulatorServer, s3: S3Client, bucket: str, after_seconds: float, presses: int
) -> None:
    emulator.set_faults(dl_rate_bytes_per_second=RATE)
    url = download_url(emulator, "vint", SIZE)
    process = start_copy(url, f"s3://{bucket}/vint.mp4", emulator.base_url)
    time.sleep(after_seconds)
    for _ in range(presses):  # pressed again and again, the later presses land in the clean-up itself
        process.send_signal(signal.SIGINT)
        time.sleep(0.004)
    stdout, stderr = process.communicate(timeout=120)

    assert open_uploads(s3, bucket) == []
    assert journals(s3, bucket) == 0
    if s3.list_objects_v2(Bucket=bucket, Prefix="vint.mp4").get("KeyCount", 0):
        # The Ctrl-C came after completion had begun: then the object is whole, and so reported (unless a
        # press landed as Python was already exiting, after the report: -2).
        assert object_sha256(s3, bucket, "vint.mp4") == VideoContent("vint", SIZE).sha256()
        assert process.returncode in (0, -signal.SIGINT), stderr
        assert json.loads(stdout)["status"] == "COPIED"
    else:
        # Presses while Python starts, before the copy is under way, end it by the signal itself (-2; a
        # shell reports that as 130 too): nothing had been created yet.
        assert process.returncode in (130, -signal.SIGINT), stderr
        if process.returncode == 130:
            assert stderr.strip().splitlines()[-1].startswith("polyv-retriever: interrupted")
    assert "auth_key" not in stdout + stderr


def test_keep_on_interrupt_keeps_a_resumable_upload_and_running_again_resumes_it(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    emulator.set_faults(dl_rate_bytes_per_second=RATE)
    url = download_url(emulator, "vkeep", SIZE)
    destination = f"s3://{bucket}/vkeep.mp4"
    process = start_copy(url, destination, emulator.base_url, "--keep-on-interrupt")
    deadline = time.monotonic() + 60
    while not _parts_uploaded(s3, bucket, "vkeep.mp4"):  # interrupt once some parts are in S3
        assert time.monotonic() < deadline, "no part was uploaded"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 130
    last = stderr.strip().splitlines()[-1]
    assert "kept multipart upload" in last
    assert "to resume, run the same command again" in last
    assert open_uploads(s3, bucket) == ["vkeep.mp4"]
    assert journals(s3, bucket) == 1

    emulator.set_faults(dl_rate_bytes_per_second=0)
    again = start_copy(url, destination, emulator.base_url)
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["status"] == "COPIED"
    assert 0 < result["bytes_transferred"] < SIZE  # only what the first run had not uploaded
    assert object_sha256(s3, bucket, "vkeep.mp4") == hashlib.sha256(_content("vkeep")).hexdigest()
    assert open_uploads(s3, bucket) == []
    assert journals(s3, bucket) == 0


def _parts_uploaded(s3: S3Client, bucket: str, key: str) -> bool:
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        if upload["Key"] == key:
            return bool(s3.list_parts(Bucket=bucket, Key=key, UploadId=upload["UploadId"]).get("Parts"))
    return False


def _content(vid: str) -> bytes:
    return b"".join(VideoContent(vid, SIZE).iter_range(0, SIZE, 1024 * 1024))


# --- the engine's side, each moment made exact --------------------------------------------------------


def test_a_stop_before_the_upload_exists_creates_nothing(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    stop = threading.Event()
    stop.set()
    dest = S3Destination(s3, bucket, "vnone.mp4")
    with pytest.raises(errors.TransferInterrupted, match="before anything was uploaded"):
        TransferEngine(SMALL_PARTS).copy(
            Video(emulator, "vnone", SIZE).source(), dest, metadata={}, cancel=stop
        )
    assert open_uploads(s3, bucket) == []
    assert journals(s3, bucket) == 0


def test_a_kept_upload_is_given_up_by_a_stop_without_keep_before_its_first_new_part(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vgive", SIZE)
    dest = S3Destination(s3, bucket, "vgive.mp4")
    stop = threading.Event()
    kept = TransferEngine(SMALL_PARTS, on_progress=lambda moved, total: stop.set()).copy(
        video.source(), dest, metadata={}, cancel=stop, keep_on_cancel=True
    )
    assert kept.status == "CONTINUE"
    assert kept.continuation is not None
    assert open_uploads(s3, bucket) == ["vgive.mp4"]
    assert journals(s3, bucket) == 1

    with pytest.raises(errors.TransferInterrupted):
        TransferEngine(SMALL_PARTS).copy(video.source(), dest, metadata={}, cancel=stop)
    assert open_uploads(s3, bucket) == []
    assert journals(s3, bucket) == 0
    assert s3.list_objects_v2(Bucket=bucket, Prefix="vgive.mp4").get("KeyCount", 0) == 0
