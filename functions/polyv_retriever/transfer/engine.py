"""The transfer engine: a Polyv download URL into one S3 object, at any size, in bounded memory, verified.

How it goes:
1. Probe the source (size, ETag, whether Range is honoured) and plan parts within S3's rules and the memory
   budget. Where to start (skip, resume an upload, start afresh) is one pure function of what the probe,
   S3 and the journal say: :func:`polyv_retriever.transfer.resume.decide`. An empty file is one PutObject.
2. With Range, N workers each fetch one part by a ranged GET and upload it with its CRC32 (S3 verifies each
   part): downloads and uploads of different parts overlap, and memory is N parts whatever the file size.
   N adapts (transfer/parallelism.py): a few connections first, more while the total rate still grows, up
   to the memory budget's number of parts.
   Without Range, one stream feeds a bounded queue of parts to the uploaders.
3. When the invocation's time runs low, workers stop between parts and a :class:`Continuation` is returned;
   the next invocation lists the parts S3 already has and does only the rest. A journal object lets an
   invocation that crashed be picked up the same way.
4. Without an ETag to check every response against, read the first part again and compare its CRC: a file
   replaced mid-copy must not land as a mix of two versions. Complete with the full-object CRC32 (combined
   from the parts), then check size, CRC and metadata on the result. Any failure aborts the multipart
   upload (S3Destination.upload owns it): no object at the key unless it is whole and verified.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from polyv_retriever.errors import IntegrityError, SourceChanged, SourceUnavailable, TransferInterrupted
from polyv_retriever.observability import carry_context
from polyv_retriever.transfer import checksums, parallelism, resume
from polyv_retriever.transfer.resume import Continuation, JournalRecord
from polyv_retriever.transfer.s3_multipart import S3Destination, UploadedPart
from polyv_retriever.transfer.source import Ahead, HttpSource, SourceInfo
from polyv_retriever.vocabulary import TransferStatus

MiB = 1024 * 1024
S3_MIN_PART = 5 * MiB
S3_MAX_PART = 5 * 1024 * MiB
S3_MAX_PARTS = 10_000
#: A first byte slower than this (the probe's) is worth asking for each next part ahead; on a fast path
#: (loopback, a CDN nearby) the extra connections would cost more than they save.
ASK_AHEAD_FIRST_BYTE_SECONDS = 0.02


@dataclass(frozen=True)
class TransferSettings:
    #: Bytes of part buffers in flight at once; the default leaves room in a 1,024 MB Lambda.
    memory_budget: int = 192 * MiB
    min_part_size: int = 8 * MiB
    #: Connections (parts in flight) at most; the budget may allow fewer. See transfer/parallelism.py.
    max_workers: int = 32
    #: Connections at the start, before the controller has measured whether more pay.
    start_workers: int = 8
    #: Seconds kept in hand at the end of an invocation, beyond the slowest part seen so far.
    time_reserve_seconds: float = 20.0
    #: How S3 records the object's CRC32: FULL_OBJECT (the whole file's) or COMPOSITE (see s3_multipart).
    checksum_type: str = "FULL_OBJECT"

    @classmethod
    def from_env(cls) -> TransferSettings:
        env = os.environ
        return cls(
            memory_budget=int(env.get("TRANSFER_MEMORY_BUDGET_MB", "192")) * MiB,
            min_part_size=int(env.get("TRANSFER_MIN_PART_MB", "8")) * MiB,
            max_workers=int(env.get("TRANSFER_MAX_WORKERS", "32")),
            start_workers=int(env.get("TRANSFER_START_WORKERS", "8")),
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


@dataclass
class TransferResult:
    status: TransferStatus  # COPIED | SKIPPED | CONTINUE
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
    cancel: threading.Event | None = None
    keep_on_cancel: bool = False

    def may_start_part(self) -> bool:
        if self.stop.is_set():
            return False
        if self.cancel is not None and self.cancel.is_set():
            # Kept: hand over as when time runs out (the parts read so far are still uploaded, the journal
            # written). Not kept: stop as on a failure; the upload is aborted once the workers are done.
            self.stopped_for_time = self.keep_on_cancel
            self.stop.set()
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
        cancel: threading.Event | None = None,
        keep_on_cancel: bool = False,
    ) -> TransferResult:
        """``metadata`` names the source (vid, task); an existing object whose metadata, size and full CRC
        match is not copied again. ``time_left`` is the seconds this invocation may still run.

        ``cancel`` (the CLI's Ctrl-C) stops the workers between parts; then the upload is aborted and its
        journal deleted (:class:`TransferInterrupted`), or with ``keep_on_cancel`` kept and journalled as
        for a continuation, so that running the copy again resumes it. Once completion has begun it
        finishes: the object is then whole and verified."""
        began = time.monotonic()
        info = source.probe()
        the_plan = plan(info.size, self.settings, info.ranged)
        metadata = {**metadata, **_source_metadata(info)}
        decision = self._decide(dest, info, metadata, continuation, the_plan)
        result = TransferResult(
            TransferStatus.CONTINUE, dest.uri, info.size, parts=the_plan.part_count, ranged=info.ranged
        )
        if isinstance(decision, resume.Skip):
            dest.forget()
            result.status, result.s3_checksum = TransferStatus.SKIPPED, decision.checksum
            return result
        if isinstance(decision, resume.Changed):
            dest.forget()
            raise SourceChanged(decision.reason)
        if info.size == 0:
            checksum = dest.put_empty(metadata, info.content_type)
            self._verify_landed(dest, 0, checksum, metadata)
            result.status, result.parts, result.crc32, result.s3_checksum = (
                TransferStatus.COPIED,
                0,
                checksum,
                checksum,
            )
            result.seconds = time.monotonic() - began
            return result

        resumed = decision if isinstance(decision, resume.Resume) else None
        if cancel is not None and cancel.is_set() and resumed is None:
            # Nothing to undo yet. (An upload being resumed is stopped inside its context below, which
            # aborts it, or keeps it, as asked.)
            raise TransferInterrupted("stopped before anything was uploaded")
        with dest.upload(
            metadata, info.content_type, resume=resumed.upload_id if resumed else None
        ) as upload_id:
            done = dict(resumed.parts) if resumed else {}
            journal_writer = _Journal(
                dest,
                Continuation(upload_id, info.size, info.etag, the_plan.part_size, info.last_modified),
                done,
            )
            if resumed is None:
                journal_writer.write()  # before the first part: a crash from here on can be picked up
            run = _Run(
                the_plan,
                upload_id,
                time_left,
                self.settings.time_reserve_seconds,
                journal_writer,
                uploaded=done,
                cancel=cancel,
                keep_on_cancel=keep_on_cancel,
            )
            todo = [n for n in range(1, the_plan.part_count + 1) if n not in done]
            workers = the_plan.workers
            if info.ranged and todo:
                workers = self._ranged(source, dest, run, todo)
            elif todo:
                self._streamed(source, dest, run, todo)
            if run.error is not None:
                raise run.error
            interrupted = cancel is not None and cancel.is_set()
            if interrupted and not keep_on_cancel:
                raise TransferInterrupted(f"stopped after {len(run.uploaded)} of {the_plan.part_count} parts")
            result.bytes_transferred, result.workers = run.bytes, workers
            result.url_refreshes = source.refreshes
            if interrupted or (run.stopped_for_time and len(run.uploaded) < the_plan.part_count):
                journal_writer.write()
                result.continuation = journal_writer.continuation
                result.seconds = time.monotonic() - began
                return result
            self._recheck_first_part(source, run, info)
            full, result.s3_checksum = self._complete_and_verify(dest, run, info, metadata)
            result.crc32 = checksums.to_s3(full)
            result.status, result.seconds = TransferStatus.COPIED, time.monotonic() - began
            return result

    # --- steps -------------------------------------------------------------------------------------------

    @staticmethod
    def _decide(
        dest: S3Destination,
        info: SourceInfo,
        metadata: dict[str, str],
        continuation: Continuation | None,
        the_plan: Plan,
    ) -> resume.Decision:
        """Gather what S3 says (the object, the journal, the parts of each upload named), decide where to
        start, and abort the uploads the decision gives up."""
        journal = JournalRecord.parse(dest.recall())
        named = {c.upload_id for c in (continuation, journal.upload if journal else None) if c is not None}
        decision = resume.decide(
            probed=info,
            metadata=metadata,
            existing=dest.existing(),
            continuation=continuation,
            journal=journal,
            listed={upload_id: dest.list_parts(upload_id) for upload_id in sorted(named)},
            the_plan=the_plan,
        )
        for upload_id in decision.abort:
            dest.abort(upload_id)
        return decision

    def _upload(self, dest: S3Destination, run: _Run, number: int, data: bytearray, began: float) -> None:
        expected = _part_length(run.plan, number)
        if len(data) != expected:
            raise IntegrityError(f"part {number} is {len(data)} bytes, expected {expected}")
        part = dest.upload_part(run.upload_id, number, data, checksums.crc32(data))
        with run.lock:
            run.uploaded[number] = part
            run.bytes += len(data)
            run.slowest_part = max(run.slowest_part, time.monotonic() - began)
        run.journal.record(part)
        if self._on_progress:
            self._on_progress(len(data), run.plan.size)

    def _fetch_and_upload(
        self,
        source: HttpSource,
        dest: S3Destination,
        run: _Run,
        number: int,
        *,
        buffers: _Buffers,
        tail: _Tail,
        ahead: Ahead | None = None,
    ) -> None:
        # A function of its own so the part's buffer is released on return: a loop variable would keep it
        # alive while the next part downloads, doubling the memory per worker.
        began = time.monotonic()
        start, end = run.plan.bounds(number)
        pooled = end - start == run.plan.part_size
        if not pooled:  # the last part, shorter: a buffer of its own, in place of one the pool lets go
            buffers.retire()
        buffer = buffers.take() if pooled else bytearray(end - start)
        try:
            with memoryview(buffer) as view:
                fetch = tail.reading(start, view)
                try:
                    source.read_into(start, view, fetch.claim, ahead)
                finally:
                    tail.done(fetch)  # waits for its helpers: none may write into a buffer given back
                fetch.raise_for_helpers()
            self._upload(dest, run, number, buffer, began)
        finally:
            if pooled:
                buffers.give(buffer)

    def _ranged(self, source: HttpSource, dest: S3Destination, run: _Run, todo: list[int]) -> int:
        """Parts by ranged GETs, on as many connections as the controller finds worth it; returns the most
        connections used at once."""
        numbers: Iterator[int] = iter(todo)
        take = threading.Lock()
        controller = parallelism.Controller(self.settings.start_workers, min(run.plan.workers, len(todo)))
        buffers = _Buffers(run.plan.part_size)
        tail = _Tail()

        # Where the first byte takes long, each worker asks for its next part while reading the current one.
        ask_ahead = source.first_byte_seconds >= ASK_AHEAD_FIRST_BYTE_SECONDS

        def next_number() -> int | None:
            with take:
                return next(numbers, None)

        def worker(index: int) -> None:
            following: tuple[int, Ahead] | None = None
            try:
                while True:
                    if following is not None:
                        (number, ahead), following = following, None
                        if run.stop.is_set():
                            ahead.discard()
                            return
                    # A worker above the target (the controller stepped back) leaves between parts.
                    elif index < controller.target and run.may_start_part():
                        number_or_none, ahead = next_number(), None
                        if number_or_none is None:
                            # No part left to start: help finish the parts still downloading, then leave.
                            while not run.stop.is_set() and tail.help(source):
                                pass
                            return
                        number = number_or_none
                    else:
                        return
                    if ask_ahead and index < controller.target and run.may_start_part():
                        after = next_number()
                        if after is not None:
                            following = (after, source.open_ahead(*run.plan.bounds(after)))
                    self._fetch_and_upload(source, dest, run, number, buffers=buffers, tail=tail, ahead=ahead)
            except BaseException as exc:
                run.fail(exc)
            finally:
                if following is not None:
                    following[1].discard()

        threads: list[threading.Thread] = []

        def grow() -> None:
            while len(threads) < controller.target:
                index = len(threads)
                # carry_context: the worker's log lines and metrics belong to this invocation.
                thread = threading.Thread(
                    target=carry_context(functools.partial(worker, index)),
                    name=f"transfer-{index}",
                    daemon=True,
                )
                thread.start()
                threads.append(thread)

        _adapt(controller, source, threads, grow)
        for thread in threads:
            thread.join()
        return len(threads)

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

    @staticmethod
    def _recheck_first_part(source: HttpSource, run: _Run, info: SourceInfo) -> None:
        """Without an ETag, a file replaced by another of the same size (within Last-Modified's second, or
        with no Last-Modified at all) looks the same to every response. So the first part, read before any
        other, is read again after the last one: if its CRC is unchanged, the parts between came from one
        version. One part's extra download, only for such sources and only when there is more than one
        part (a single part is a single response, which cannot mix versions)."""
        if info.etag or run.plan.part_count == 1:
            return
        start, end = run.plan.bounds(1)
        if info.ranged:
            again = source.read_range(start, end)
        else:
            pieces = source.stream(start, end - start)
            try:
                again = next(pieces)
            finally:
                pieces.close()  # the rest of the body is not wanted: its connection is dropped
        if checksums.crc32(again) != run.uploaded[1].crc32:
            raise SourceChanged(
                "the source changed during the copy: it sends no ETag, and its first part reads differently "
                "now than when it was copied"
            )

    def _complete_and_verify(
        self, dest: S3Destination, run: _Run, info: SourceInfo, metadata: dict[str, str]
    ) -> tuple[int, str]:
        parts = [run.uploaded[n] for n in range(1, run.plan.part_count + 1)]
        if sum(p.size for p in parts) != info.size:
            raise IntegrityError(f"the parts add up to {sum(p.size for p in parts)} bytes, not {info.size}")
        full = 0
        for part in parts:
            assert part.crc32 is not None  # resume.reusable_parts admits no part without one
            full = checksums.crc32_combine(full, part.crc32, part.size)
        dest.complete(run.upload_id, parts, full)
        expected = dest.expected_checksum(parts, full)
        self._verify_landed(dest, info.size, expected, metadata)
        return full, expected

    @staticmethod
    def _verify_landed(dest: S3Destination, size: int, expected: str, metadata: dict[str, str]) -> None:
        """The object now at the key is what was read: its size, S3's checksum of it, the source it names.
        Anything else is deleted, not left for a user to trust."""
        landed = dest.existing()
        if (
            landed is None
            or landed.size != size
            or not dest.checksum_matches(landed.checksum, expected)
            or any(landed.metadata.get(k) != v for k, v in metadata.items())
        ):
            dest.delete_object()
            found = (landed.size, landed.checksum) if landed else None
            raise IntegrityError(
                f"{dest.uri} does not match the source after writing: {found} vs {size}, {expected}"
            )
        dest.forget()


class _Tail:
    """The end of a transfer, shared: a connection with no part left to start takes the second half of
    what remains of the part with the most left, and the owner of that part stops reading where it begins.

    Without it, the last parts each finish at one connection's rate while the others sit idle: on the long
    path (4 MiB/s a connection), the last 8 MiB part alone took 2 s at the end of a 10 s copy. Halving the
    longest remainder again and again ends every part at about the same time. Nothing but the download is
    shared: the owner waits for its helpers, then uploads its part whole, so parts, their sizes and the
    memory in use are as before.
    """

    #: Less than this left is not worth another request (its first byte alone: 200 ms on a long path).
    MIN_SHARE = 2 * MiB

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reading: list[_Fetch] = []

    def reading(self, start: int, view: memoryview) -> _Fetch:
        fetch = _Fetch(self._lock, start, view)
        with self._lock:
            self._reading.append(fetch)
        return fetch

    def done(self, fetch: _Fetch) -> None:
        """No helper joins the part from here on; returns once those that did have finished."""
        with self._lock:
            self._reading.remove(fetch)
        for helper in fetch.helpers:
            helper.finished.wait()

    def help(self, source: HttpSource) -> bool:
        """Take half of the longest remainder and read it; False when none is worth sharing."""
        with self._lock:
            fetch = max(self._reading, key=lambda f: f.limit - f.reading_to, default=None)
            if fetch is None or fetch.limit - fetch.reading_to < self.MIN_SHARE:
                return False
            cut = fetch.reading_to + (fetch.limit - fetch.reading_to) // 2
            helper = _Helper(cut, fetch.limit)
            fetch.limit = cut
            fetch.helpers.append(helper)
        try:
            with fetch.view[helper.start - fetch.start : helper.end - fetch.start] as piece:
                source.read_into(helper.start, piece)
        except BaseException as exc:
            helper.error = exc
            raise
        finally:
            helper.finished.set()
        return True


@dataclass
class _Helper:
    start: int
    end: int
    finished: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class _Fetch:
    """One part being read by its owner: how far it may read (``limit``, which helpers move down) and how
    far it has asked to (``reading_to``: a helper starts beyond it, never inside a slice being read)."""

    def __init__(self, lock: threading.Lock, start: int, view: memoryview) -> None:
        self._lock, self.start, self.view = lock, start, view
        self.limit = start + len(view)
        self.reading_to = start
        self.helpers: list[_Helper] = []

    def claim(self, read: int, wanted: int) -> int:
        with self._lock:
            allowed = max(0, min(wanted, self.limit - (self.start + read)))
            self.reading_to = self.start + read + allowed
            return allowed

    def raise_for_helpers(self) -> None:
        """After _Tail.done: a helper's failure is the part's (the helper's worker has failed the run)."""
        for helper in self.helpers:
            if helper.error is not None:
                raise SourceUnavailable(f"a shared piece of the part failed: {helper.error}")


class _Buffers:
    """Part buffers, reused from part to part: at most one per worker ever exists.

    A fresh 8 MiB bytearray for every part costs its zeroing and page faults, and with many threads it
    costs memory: glibc serves large blocks from per-thread arenas once it has seen them freed, and keeps
    what they free (measured: 24 workers with a 192 MiB budget peaked at 325 MiB RSS; reused, 263 MiB).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._free: list[bytearray] = []
        self._retired = 0
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(self._size)

    def retire(self) -> None:
        """One buffer fewer from now on (a free one is let go; if none is free, the next one given back)."""
        with self._lock:
            if self._free:
                self._free.pop()
            else:
                self._retired += 1

    def give(self, buffer: bytearray) -> None:
        with self._lock:
            if self._retired:
                self._retired -= 1
            else:
                self._free.append(buffer)


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


def _part_length(the_plan: Plan, number: int) -> int:
    start, end = the_plan.bounds(number)
    return end - start


def _source_metadata(info: SourceInfo) -> dict[str, str]:
    """What the object records of its source, so that a later run can tell it is that source's copy."""
    named = {"source-size": str(info.size), "source-etag": info.etag or ""}
    if info.last_modified:  # the source's validator when it has no ETag
        named["source-last-modified"] = info.last_modified
    return named


def _start_threads(target: Callable[[], None], count: int) -> list[threading.Thread]:
    # carry_context: the workers' log lines and metrics belong to the invocation that started them.
    threads = [
        threading.Thread(target=carry_context(target), name=f"transfer-{i}", daemon=True)
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads


def _adapt(
    controller: parallelism.Controller,
    source: HttpSource,
    threads: list[threading.Thread],
    grow: Callable[[], None],
) -> None:
    """Measure the rate window by window and let the controller set the number of workers, until it settles
    (or the parts run out)."""
    settle, measure = parallelism.window_seconds(source.first_byte_seconds)
    before = source.received.total
    grow()
    # The first window opens with the first bytes: before them is the path's latency, not its rate.
    first_bytes_by = time.monotonic() + settle + measure
    while source.received.total == before and time.monotonic() < first_bytes_by:
        if _wait_threads(threads, 0.02):
            return
    first = True
    while not controller.settled:
        if not first and _wait_threads(threads, settle):
            return
        first = False
        mark = source.received.mark()
        if _wait_threads(threads, measure):
            return
        controller.observe(source.received.rate_since(mark))
        grow()


def _wait_threads(threads: list[threading.Thread], seconds: float) -> bool:
    """Wait up to ``seconds``; True as soon as every thread has ended."""
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)
