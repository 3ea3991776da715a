"""The transfer engine: a Polyv download URL into one S3 object, at any size, in bounded memory, verified.

How it goes:
1. Probe the source (size, ETag, whether Range is honoured) and plan parts within S3's rules and the memory
   budget. An object already at the key with the same vid, size and a full-object CRC is left alone.
2. With Range, N workers each fetch one part by a ranged GET and upload it with its CRC32 (S3 verifies each
   part): downloads and uploads of different parts overlap, and memory is N parts whatever the file size.
   Without Range, one stream feeds a bounded queue of parts to the uploaders.
3. When the invocation's time runs low, workers stop between parts and a :class:`Continuation` is returned;
   the next invocation lists the parts S3 already has and does only the rest. A journal object lets an
   invocation that crashed be picked up the same way.
4. Complete with the full-object CRC32 (combined from the parts), then check size and CRC on the result.
   Any failure aborts the multipart upload: no object at the key unless it is whole and verified.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from polyv_retriever.errors import IntegrityError, SourceChanged
from polyv_retriever.transfer import checksums
from polyv_retriever.transfer.s3_multipart import S3Destination, UploadedPart
from polyv_retriever.transfer.source import HttpSource, SourceInfo

MiB = 1024 * 1024
S3_MIN_PART = 5 * MiB
S3_MAX_PART = 5 * 1024 * MiB
S3_MAX_PARTS = 10_000


@dataclass(frozen=True)
class TransferSettings:
    #: Bytes of part buffers in flight at once; the default leaves room in a 1,024 MB Lambda.
    memory_budget: int = 128 * MiB
    min_part_size: int = 8 * MiB
    max_workers: int = 8
    #: Seconds kept in hand at the end of an invocation, beyond the slowest part seen so far.
    time_reserve_seconds: float = 20.0
    #: How S3 records the object's CRC32: FULL_OBJECT (the whole file's) or COMPOSITE (see s3_multipart).
    checksum_type: str = "FULL_OBJECT"

    @classmethod
    def from_env(cls) -> TransferSettings:
        env = os.environ
        return cls(
            memory_budget=int(env.get("TRANSFER_MEMORY_BUDGET_MB", "128")) * MiB,
            min_part_size=int(env.get("TRANSFER_MIN_PART_MB", "8")) * MiB,
            max_workers=int(env.get("TRANSFER_MAX_WORKERS", "8")),
            time_reserve_seconds=float(env.get("TRANSFER_TIME_RESERVE_SECONDS", "20")),
            checksum_type=env.get("TRANSFER_CHECKSUM_TYPE", "FULL_OBJECT"),
        )


@dataclass(frozen=True)
class Plan:
    size: int
    part_size: int
    part_count: int
    workers: int

    def bounds(self, number: int) -> tuple[int, int]:
        start = (number - 1) * self.part_size
        return start, min(start + self.part_size, self.size)


def plan(size: int, settings: TransferSettings, ranged: bool) -> Plan:
    """Part size: at least the minimum, large enough for S3's 10,000 parts, a whole number of MiB."""
    part = max(settings.min_part_size, S3_MIN_PART, -(-size // S3_MAX_PARTS))
    part = min(-(-part // MiB) * MiB, S3_MAX_PART)
    count = max(1, -(-size // part))
    # A streamed source holds parts in the queue as well as in the uploaders: twice the buffers per worker.
    per_worker = part if ranged else 2 * part
    workers = max(1, min(settings.max_workers, settings.memory_budget // per_worker, count))
    return Plan(size, part, count, workers)


@dataclass(frozen=True)
class Continuation:
    """What the next invocation needs to go on; the parts themselves are listed back from S3."""

    upload_id: str
    size: int
    etag: str | None
    part_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Continuation:
        return cls(str(data["upload_id"]), int(data["size"]), data.get("etag"), int(data["part_size"]))


@dataclass
class TransferResult:
    status: str  # COPIED | SKIPPED | CONTINUE
    uri: str
    size: int
    bytes_transferred: int = 0
    seconds: float = 0.0
    parts: int = 0
    workers: int = 0
    ranged: bool = True
    url_refreshes: int = 0
    crc32: str | None = None  # the whole file's CRC32, combined from the parts as we read them
    s3_checksum: str | None = None  # what S3 reports (and we verified) for the object
    continuation: Continuation | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["continuation"] = self.continuation.to_dict() if self.continuation else None
        return data


@dataclass
class _Run:
    """The state one invocation's workers share."""

    plan: Plan
    upload_id: str
    time_left: Callable[[], float] | None
    reserve: float
    journal: _Journal
    uploaded: dict[int, UploadedPart] = field(default_factory=dict)
    error: BaseException | None = None
    stopped_for_time: bool = False
    slowest_part: float = 0.0
    started: int = 0
    bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def may_start_part(self) -> bool:
        if self.stop.is_set():
            return False
        with self.lock:
            # Each invocation moves at least one round of parts, so a chain of continuations always ends.
            first_round = self.started < self.plan.workers
            self.started += 1
        if first_round or self.time_left is None:
            return True
        if self.time_left() < self.reserve + 2 * self.slowest_part:
            self.stopped_for_time = True
            self.stop.set()
            return False
        return True

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            self.error = self.error or exc
        self.stop.set()


class TransferEngine:
    def __init__(
        self,
        settings: TransferSettings | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """``on_progress(bytes_just_moved, total_size)`` is called from the workers after each part."""
        self.settings = settings or TransferSettings()
        self._on_progress = on_progress

    def with_progress(self, on_progress: Callable[[int, int], None]) -> TransferEngine:
        return TransferEngine(self.settings, on_progress)

    def copy(
        self,
        source: HttpSource,
        dest: S3Destination,
        *,
        metadata: dict[str, str],
        continuation: Continuation | None = None,
        time_left: Callable[[], float] | None = None,
    ) -> TransferResult:
        """``metadata`` names the source (vid, task); an existing object whose metadata, size and full CRC
        match is not copied again. ``time_left`` is the seconds this invocation may still run."""
        began = time.monotonic()
        info = source.probe()
        the_plan = plan(info.size, self.settings, info.ranged)
        metadata = {**metadata, "source-size": str(info.size), "source-etag": info.etag or ""}

        # Checked with a continuation too: an invocation may have completed the upload and died before
        # it could say so.
        existing = dest.existing()
        if (
            existing is not None
            and existing.size == info.size
            and existing.checksum is not None  # only a multipart upload that completed has one
            and all(existing.metadata.get(k) == v for k, v in metadata.items())
        ):
            dest.forget()
            return TransferResult(
                "SKIPPED",
                dest.uri,
                info.size,
                parts=the_plan.part_count,
                ranged=info.ranged,
                s3_checksum=existing.checksum,
            )
        # The journal names the upload (crash recovery) and the CRC of every part recorded so far.
        recorded = dest.recall()
        if continuation is None and recorded:
            stale = Continuation.from_dict(recorded)
            if (stale.size, stale.etag) == (info.size, info.etag):
                continuation = stale
            else:
                # An earlier attempt, on a source that has changed since: nothing of it can be kept.
                dest.abort(stale.upload_id)
                recorded = None
        known_crcs: dict[int, int] = {}
        if recorded and continuation and recorded.get("upload_id") == continuation.upload_id:
            known_crcs = {int(n): int(crc) for n, crc in recorded.get("parts", {}).items()}

        upload_id, done = self._resume_or_create(
            dest,
            info=info,
            the_plan=the_plan,
            metadata=metadata,
            continuation=continuation,
            known_crcs=known_crcs,
        )
        journal = _Journal(dest, Continuation(upload_id, info.size, info.etag, the_plan.part_size), done)
        run = _Run(the_plan, upload_id, time_left, self.settings.time_reserve_seconds, journal, uploaded=done)
        todo = [n for n in range(1, the_plan.part_count + 1) if n not in done]
        try:
            if info.ranged:
                self._ranged(source, dest, run, todo)
            else:
                self._streamed(source, dest, run, todo)
            if run.error is not None:
                raise run.error
            result = TransferResult(
                "CONTINUE",
                dest.uri,
                info.size,
                run.bytes,
                time.monotonic() - began,
                the_plan.part_count,
                the_plan.workers,
                info.ranged,
                source.refreshes,
            )
            if run.stopped_for_time and len(run.uploaded) < the_plan.part_count:
                journal.write()
                result.continuation = journal.continuation
                return result
            full, result.s3_checksum = self._complete_and_verify(dest, run, info)
            result.crc32 = checksums.to_s3(full)
            result.status, result.seconds = "COPIED", time.monotonic() - began
            return result
        except BaseException:
            dest.abort(upload_id)
            raise

    # --- steps -------------------------------------------------------------------------------------------

    def _resume_or_create(
        self,
        dest: S3Destination,
        *,
        info: SourceInfo,
        the_plan: Plan,
        metadata: dict[str, str],
        continuation: Continuation | None,
        known_crcs: dict[int, int],
    ) -> tuple[str, dict[int, UploadedPart]]:
        if continuation is not None:
            if continuation.size != info.size or (continuation.etag or None) != (info.etag or None):
                dest.abort(continuation.upload_id)
                raise SourceChanged(
                    f"the source changed between invocations (size {continuation.size} -> {info.size}, "
                    f"ETag {continuation.etag} -> {info.etag})"
                )
            listed = dest.list_parts(continuation.upload_id)
            if listed is not None and continuation.part_size == the_plan.part_size:
                return continuation.upload_id, _reusable_parts(listed, known_crcs, the_plan)
            if listed is not None:
                dest.abort(continuation.upload_id)
        upload_id = dest.create(metadata, info.content_type)
        dest.remember(Continuation(upload_id, info.size, info.etag, the_plan.part_size).to_dict())
        return upload_id, {}

    def _upload(self, dest: S3Destination, run: _Run, number: int, data: bytearray, began: float) -> None:
        expected = _part_length(run.plan, number)
        if len(data) != expected:
            raise IntegrityError(f"part {number} is {len(data)} bytes, expected {expected}")
        part = dest.upload_part(run.upload_id, number, data, zlib.crc32(data))
        with run.lock:
            run.uploaded[number] = part
            run.bytes += len(data)
            run.slowest_part = max(run.slowest_part, time.monotonic() - began)
        run.journal.record(part)
        if self._on_progress:
            self._on_progress(len(data), run.plan.size)

    def _fetch_and_upload(self, source: HttpSource, dest: S3Destination, run: _Run, number: int) -> None:
        # A function of its own so the part's buffer is released on return: a loop variable would keep it
        # alive while the next part downloads, doubling the memory per worker.
        began = time.monotonic()
        self._upload(dest, run, number, source.read_range(*run.plan.bounds(number)), began)

    def _ranged(self, source: HttpSource, dest: S3Destination, run: _Run, todo: list[int]) -> None:
        numbers: Iterator[int] = iter(todo)
        take = threading.Lock()

        def worker() -> None:
            while run.may_start_part():
                with take:
                    number = next(numbers, None)
                if number is None:
                    return
                try:
                    self._fetch_and_upload(source, dest, run, number)
                except BaseException as exc:
                    run.fail(exc)
                    return

        _run_threads(worker, run.plan.workers)

    def _streamed(self, source: HttpSource, dest: S3Destination, run: _Run, todo: list[int]) -> None:
        if not todo:
            return
        parts: queue.Queue[tuple[int, bytearray, float] | None] = queue.Queue(maxsize=run.plan.workers)
        wanted = set(todo)

        def uploader() -> None:
            while True:
                item = parts.get()
                if item is None:
                    return
                if not run.stop.is_set() or run.stopped_for_time:
                    try:
                        self._upload(dest, run, *item)
                    except BaseException as exc:
                        run.fail(exc)
                del item  # not held while waiting for the next part

        threads = _start_threads(uploader, run.plan.workers)
        try:
            number = todo[0]
            pieces = source.stream(run.plan.bounds(number)[0], run.plan.part_size)
            while True:
                began = time.monotonic()
                data = next(pieces, None)
                if data is None:
                    break
                if number in wanted:
                    parts.put((number, data, began))
                del data  # the queue holds it now; the next part must not be read while we do too
                number += 1
                if not run.may_start_part():
                    pieces.close()
                    break
        except BaseException as exc:
            run.fail(exc)
        finally:
            for _ in threads:
                parts.put(None)
            for thread in threads:
                thread.join()

    def _complete_and_verify(self, dest: S3Destination, run: _Run, info: SourceInfo) -> tuple[int, str]:
        parts = [run.uploaded[n] for n in range(1, run.plan.part_count + 1)]
        if sum(p.size for p in parts) != info.size:
            raise IntegrityError(f"the parts add up to {sum(p.size for p in parts)} bytes, not {info.size}")
        full = 0
        for part in parts:
            assert part.crc32 is not None  # _reusable_parts admits no part without one
            full = checksums.crc32_combine(full, part.crc32, part.size)
        dest.complete(run.upload_id, parts, full)
        landed, expected = dest.existing(), dest.expected_checksum(parts, full)
        if landed is None or landed.size != info.size or not dest.checksum_matches(landed.checksum, expected):
            dest.delete_object()
            found = (landed.size, landed.checksum) if landed else None
            raise IntegrityError(
                f"{dest.uri} does not match the source after completion: {found} vs {info.size}, {expected}"
            )
        dest.forget()
        return full, expected


class _Journal:
    """The upload's identity and every part's CRC, in S3 beside the upload (see S3Destination.remember).

    Written at most once a second while parts land, and whenever an invocation hands over: an invocation
    that crashes loses at most the last second's parts, which the next one uploads again.
    """

    MIN_INTERVAL_SECONDS = 1.0

    def __init__(
        self, dest: S3Destination, continuation: Continuation, done: dict[int, UploadedPart]
    ) -> None:
        self.dest, self.continuation = dest, continuation
        self._crcs = {n: p.crc32 for n, p in done.items() if p.crc32 is not None}
        self._lock = threading.Lock()
        self._written = 0.0

    def record(self, part: UploadedPart) -> None:
        with self._lock:
            if part.crc32 is not None:
                self._crcs[part.number] = part.crc32
            if time.monotonic() - self._written >= self.MIN_INTERVAL_SECONDS:
                self._write_locked()

    def write(self) -> None:
        with self._lock:
            self._write_locked()

    def _write_locked(self) -> None:
        self.dest.remember(
            {**self.continuation.to_dict(), "parts": {str(n): c for n, c in sorted(self._crcs.items())}}
        )
        self._written = time.monotonic()


def _reusable_parts(
    listed: dict[int, UploadedPart], known_crcs: dict[int, int], the_plan: Plan
) -> dict[int, UploadedPart]:
    """Parts S3 holds that can be kept: of exactly the planned size, with a CRC from S3 or the journal (when
    both say, they must agree). Any other is uploaded again under the same number, replacing it."""
    reusable = {}
    for number, part in listed.items():
        crc = part.crc32 if part.crc32 is not None else known_crcs.get(number)
        agreed = part.crc32 is None or number not in known_crcs or known_crcs[number] == part.crc32
        if crc is not None and agreed and part.size == _part_length(the_plan, number):
            reusable[number] = UploadedPart(number, part.etag, crc, part.size)
    return reusable


def _part_length(the_plan: Plan, number: int) -> int:
    start, end = the_plan.bounds(number)
    return end - start


def _start_threads(target: Callable[[], None], count: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, name=f"transfer-{i}", daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _run_threads(target: Callable[[], None], count: int) -> None:
    for thread in _start_threads(target, count):
        thread.join()
