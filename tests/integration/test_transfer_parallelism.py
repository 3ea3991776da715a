"""Adaptive parallelism and the shared tail over real HTTP: the emulator's CDN, limited per connection as a
long path limits each TCP stream, as the source; a moto server as S3. Every copy must end byte-exact."""

from __future__ import annotations

import threading
import tracemalloc
from typing import TYPE_CHECKING

import urllib3

from polyv_retriever.polyv_emulator import EmulatorServer
from polyv_retriever.transfer.allowlist import DEFAULT_ALLOW, DownloadAllowList
from polyv_retriever.transfer.engine import MiB, TransferEngine, TransferSettings
from polyv_retriever.transfer.s3_multipart import S3Destination
from polyv_retriever.transfer.source import Ahead, Claim, HttpSource
from tests.integration.test_transfer_engine import FAST_PART_RETRY, Video, object_sha256

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class RecordingSource(HttpSource):
    """The real source, recording which ranges were read (start, bytes read) and on how many connections at
    once; reads nothing differently."""

    def __init__(self, video: Video) -> None:
        allow = DownloadAllowList(f"{DEFAULT_ALLOW},{video.emulator.base_url}")
        super().__init__(video.url, allow, urllib3.PoolManager(maxsize=32), FAST_PART_RETRY)
        self.reads: list[tuple[int, int]] = []
        self.concurrent = 0
        self.most_concurrent = 0
        self._count_lock = threading.Lock()

    def read_into(
        self, start: int, view: memoryview, claim: Claim | None = None, ahead: Ahead | None = None
    ) -> int:
        with self._count_lock:
            self.concurrent += 1
            self.most_concurrent = max(self.most_concurrent, self.concurrent)
        try:
            count = super().read_into(start, view, claim, ahead)
        finally:
            with self._count_lock:
                self.concurrent -= 1
        with self._count_lock:
            self.reads.append((start, count))
        return count


def test_on_a_path_that_limits_each_connection_the_engine_adds_connections(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    # 1.5 MB/s a connection: two connections give 3 MB/s, and every connection added pays.
    emulator.set_faults(dl_rate_bytes_per_second=1_500_000, dl_latency_ms=50)
    video = Video(emulator, "vlong", 60 * MiB)
    source = RecordingSource(video)
    settings = TransferSettings(
        min_part_size=5 * MiB, memory_budget=40 * MiB, max_workers=32, start_workers=2
    )

    result = TransferEngine(settings).copy(source, S3Destination(s3, bucket, "vlong.mp4"), metadata={})

    assert result.status == "COPIED"
    # From 2, towards what the budget allows (8 parts of 5 MiB); how far depends on the timing of the
    # measurements on a busy machine, so only the direction is asserted.
    assert 2 < result.workers <= 8
    assert source.most_concurrent > 2
    assert object_sha256(s3, bucket, "vlong.mp4") == video.sha256()


def test_the_last_parts_are_shared_between_connections_and_land_whole(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    # 3 parts on 2 connections (no adaptation): the two first parts end at about the same time; one
    # connection starts the last part, and the other, with no part left to start, takes over the second
    # half of it instead of leaving it to one connection's rate.
    # (A short first byte: no part is asked for ahead, whose body would already sit in socket buffers.)
    emulator.set_faults(dl_rate_bytes_per_second=4_000_000, dl_latency_ms=5)
    video = Video(emulator, "vtail", 3 * 5 * MiB)
    source = RecordingSource(video)
    settings = TransferSettings(min_part_size=5 * MiB, memory_budget=10 * MiB, max_workers=2, start_workers=2)

    result = TransferEngine(settings).copy(source, S3Destination(s3, bucket, "vtail.mp4"), metadata={})

    assert result.status == "COPIED"
    part_starts = {n * 5 * MiB for n in range(3)}
    helper_reads = [(start, count) for start, count in source.reads if start not in part_starts]
    assert helper_reads, f"no range was shared: {source.reads}"
    assert sum(count for _, count in source.reads) == video.size  # every byte read once, none twice
    assert object_sha256(s3, bucket, "vtail.mp4") == video.sha256()


def test_memory_stays_within_the_budget_with_many_connections(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    emulator.set_faults(dl_rate_bytes_per_second=1_500_000, dl_latency_ms=20)
    video = Video(emulator, "vmany", 72 * MiB + 1)
    source = RecordingSource(video)
    budget = 60 * MiB  # 12 parts of 5 MiB: the ceiling, where it starts, so that the count is certain
    settings = TransferSettings(min_part_size=5 * MiB, memory_budget=budget, max_workers=32, start_workers=32)

    tracemalloc.start()
    try:
        result = TransferEngine(settings).copy(source, S3Destination(s3, bucket, "vmany.mp4"), metadata={})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.workers == 12
    assert source.most_concurrent >= 12
    # Beyond the budget: the in-process emulator's own buffers for 12 connections (tracemalloc counts
    # them) and the requests'; one part buffer too many (5 MiB) would not fit in it.
    assert peak < budget + 4 * MiB, f"peak {peak / MiB:.1f} MiB with a {budget / MiB:.0f} MiB budget"
    assert object_sha256(s3, bucket, "vmany.mp4") == video.sha256()


class AskingAheadSource(RecordingSource):
    def __init__(self, video: Video) -> None:
        super().__init__(video)
        self.asked_ahead: list[int] = []

    def open_ahead(self, start: int, end: int) -> Ahead:
        self.asked_ahead.append(start)
        return super().open_ahead(start, end)


def test_on_a_path_with_a_long_first_byte_each_next_part_is_asked_for_ahead(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    emulator.set_faults(dl_latency_ms=60)
    video = Video(emulator, "vahead", 8 * 5 * MiB)
    source = AskingAheadSource(video)
    settings = TransferSettings(min_part_size=5 * MiB, memory_budget=10 * MiB, max_workers=2, start_workers=2)

    result = TransferEngine(settings).copy(source, S3Destination(s3, bucket, "vahead.mp4"), metadata={})

    assert result.status == "COPIED"
    assert len(source.asked_ahead) >= 4  # each worker asks for its next part while reading one
    assert object_sha256(s3, bucket, "vahead.mp4") == video.sha256()


def test_on_a_fast_path_nothing_is_asked_for_ahead(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    video = Video(emulator, "vnear", 4 * 5 * MiB)
    source = AskingAheadSource(video)
    settings = TransferSettings(min_part_size=5 * MiB, memory_budget=10 * MiB, max_workers=2, start_workers=2)

    TransferEngine(settings).copy(source, S3Destination(s3, bucket, "vnear.mp4"), metadata={})

    assert source.asked_ahead == []  # loopback: the extra connections would cost more than they save
    assert object_sha256(s3, bucket, "vnear.mp4") == video.sha256()


def test_a_part_asked_for_ahead_when_time_runs_out_is_left_to_the_next_invocation(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    emulator.set_faults(dl_latency_ms=60)
    video = Video(emulator, "vtime", 6 * 5 * MiB + 7)
    settings = TransferSettings(
        min_part_size=5 * MiB, memory_budget=10 * MiB, max_workers=2, start_workers=2, time_reserve_seconds=5
    )
    dest = S3Destination(s3, bucket, "vtime.mp4")
    continuation, moved, invocations = None, 0, 0
    while True:
        invocations += 1
        source = AskingAheadSource(video)
        # Always nearly out of time: the first round of parts is moved, then the parts asked for ahead
        # are dropped and the invocation hands over.
        result = TransferEngine(settings).copy(
            source, dest, metadata={}, continuation=continuation, time_left=lambda: 1.0
        )
        moved += result.bytes_transferred
        if result.status != "CONTINUE":
            break
        continuation = result.continuation
        assert invocations < 10

    assert result.status == "COPIED"
    assert invocations > 1
    assert moved == video.size  # no part lost, none moved twice
    assert object_sha256(s3, bucket, "vtime.mp4") == video.sha256()
