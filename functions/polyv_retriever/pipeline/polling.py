"""One step of a retrieval's dispatcher: ask Polyv (when it is time), start a transfer for every video that
became ready, collect the transfers that ended, and say what comes next.

The retrieval state machine loops this step (CheckStatus -> Done? -> Wait) until every video is terminal on
Polyv and every transfer has ended. Each ready video gets a transfer execution of its own (the transfer
state machine), named after task, attempt and vid: Step Functions keeps names unique, so a video can never
be transferred twice at once, and a step that crashed after starting one finds it again instead of
starting another.

Polyv is queried on its own schedule: the wait starts short and grows geometrically to a cap, with jitter so
that many executions started together do not poll in step (its rate limit is per IP for the whole API).
While transfers run, the loop also wakes to start the next queued video and to notice the end, without
querying Polyv any more often: ``transfer_check_seconds`` after a transfer started or ended, doubling to the
poll cap while nothing changes, but while a video waits for a slot never more than a quarter of the
youngest running transfer's age (so a freed slot is refilled within 30 s for short copies, within a quarter
of a long copy's time for long ones). So a task whose transfers run for days still costs at most ~1,300
loops (9 history events each) of Step Functions' 25,000 events (unit tests run the worst cases).
"""

from __future__ import annotations

import copy
import hashlib
import os
import random
from dataclasses import dataclass
from typing import Any, Protocol

from polyv_retriever.contracts import (
    CheckStatusEvent,
    ErrorInfo,
    PollProgress,
    TransferEvent,
    TransferFailure,
    TransferResult,
    VideoProgress,
    load,
)
from polyv_retriever.errors import PollLimitExceeded, RetrievalTimedOut
from polyv_retriever.pipeline.manifest import readable_cause
from polyv_retriever.pipeline.records import RecordStore, RetrievalLayout
from polyv_retriever.polyv.models import TaskReader, VideoStatus, key_safe_vid
from polyv_retriever.vocabulary import ENDED_UNSUCCESSFULLY, ExecutionStatus, TransferStatus, VideoState


@dataclass(frozen=True)
class PollPolicy:
    first_wait_seconds: float = 30
    max_wait_seconds: float = 900
    growth: float = 1.5
    jitter: float = 0.2
    max_polls: int = 1000
    deadline_seconds: float = 3 * 86400
    #: How many of one retrieval's videos are transferred at once (template: TransferConcurrency).
    concurrency: int = 10
    #: How often the loop looks at running transfers (Polyv is not queried for it).
    transfer_check_seconds: float = 30
    #: The attempt's whole budget: just under the execution's TimeoutSeconds, so that the state machine
    #: itself records a timed-out attempt (an execution killed by its timeout could not write a manifest).
    budget_seconds: float = 7 * 86400 - 3600  # the ASL's TimeoutSeconds is 7 days (604800)

    @classmethod
    def from_env(cls) -> PollPolicy:
        env, default = os.environ, cls()
        first = float(env.get("POLL_FIRST_WAIT_SECONDS", default.first_wait_seconds))
        return cls(
            first_wait_seconds=first,
            max_wait_seconds=float(env.get("POLL_MAX_WAIT_SECONDS", default.max_wait_seconds)),
            max_polls=int(env.get("POLL_MAX_POLLS", default.max_polls)),
            deadline_seconds=float(env.get("POLL_DEADLINE_SECONDS", default.deadline_seconds)),
            concurrency=int(env.get("TRANSFER_CONCURRENCY", default.concurrency)),
            transfer_check_seconds=float(env.get("TRANSFER_CHECK_SECONDS", first)),
            budget_seconds=float(env.get("RETRIEVAL_BUDGET_SECONDS", default.budget_seconds)),
        )

    def next_wait(self, poll_count: int, rng: random.Random | None = None) -> int:
        """Seconds before poll ``poll_count + 1``: first * growth^(n-1), capped, +/- jitter, at least 1."""
        base = min(self.max_wait_seconds, self.first_wait_seconds * self.growth ** max(0, poll_count - 1))
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return max(1, round(min(base * spread, self.max_wait_seconds)))


class ExecutionView(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def output(self) -> dict[str, Any] | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def cause(self) -> str | None: ...


class TransferLauncher(Protocol):
    """Starts and looks at transfer executions (Step Functions in production, a fake in unit tests)."""

    def start(self, name: str, event: TransferEvent) -> None:
        """Start the named execution; one that already exists with that name counts as started."""

    def describe(self, name: str) -> ExecutionView | None: ...


_NAME_LIMIT = 80  # Step Functions' limit for execution names
#: While videos are queued for a slot, the transfers are looked at after at most this share of the youngest
#: running transfer's age (see ``_queue_wait``).
QUEUE_LOOK_FRACTION = 0.25


def transfer_execution_name(task_id: str, attempt: int, vid: str) -> str:
    """Unique per (task, attempt, vid), deterministic, within Step Functions' 80 characters."""
    name = f"{task_id}.{attempt}.{vid}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[: _NAME_LIMIT - 17]}-{digest}"


def advance(
    client: TaskReader,
    launcher: TransferLauncher,
    *,
    records: RecordStore,
    event: CheckStatusEvent,
    policy: PollPolicy,
    now: float,
) -> PollProgress:
    """One step of the dispatcher. The result is what the state machine carries: vids, states and small
    results only (no download URLs: they are bearer credentials and would sit in the execution history)."""
    layout = RetrievalLayout(event.prefix, event.taskId)
    # The step changes the ledger's videos in place: the event's own stays as it came.
    progress = copy.deepcopy(event.poll) or PollProgress(done=False, count=0, startedAt=now, waitSeconds=0)
    if progress.count == 0:
        progress.startedAt = now
    elapsed = now - progress.startedAt
    if elapsed >= policy.budget_seconds:
        raise RetrievalTimedOut(
            f"retrieval {event.taskId} attempt {event.attempt} ran {elapsed / 3600:.1f} h, its budget is "
            f"{policy.budget_seconds / 3600:.1f} h"
        )

    polyv_done = progress.count > 0 and progress.nextPollAt == 0
    if not polyv_done and now >= progress.nextPollAt:
        polyv_done = _poll_polyv(client, records, layout, event, progress, policy, now)

    changed = _collect_ended(launcher, event, progress)
    changed += _start_queued(launcher, event, progress, policy, now)

    states = [v.state for v in progress.videos.values()]
    transfers_pending = any(not s.terminal for s in states)
    progress.done = polyv_done and not transfers_pending
    if progress.done:
        progress.waitSeconds = 0
        return progress
    waits = []
    if not polyv_done:
        waits.append(progress.nextPollAt - now)
    if transfers_pending:
        progress.checkWait = (
            policy.transfer_check_seconds
            if changed or not progress.checkWait
            else min(policy.max_wait_seconds, progress.checkWait * 2)
        )
        waits.append(progress.checkWait)
        queue_wait = _queue_wait(progress, policy, now)
        if queue_wait is not None:
            waits.append(queue_wait)
    progress.waitSeconds = max(1, round(min(waits)))
    return progress


def _queue_wait(progress: PollProgress, policy: PollPolicy, now: float) -> float | None:
    """While a video waits for a slot, the next look at the transfers: at most a quarter of the youngest
    running transfer's age (never under ``transfer_check_seconds``). None when nothing is queued.

    A transfer that ends before that look is at least as old as the youngest, so its slot stands idle at
    most max(transfer_check_seconds, a quarter of its own duration): a queue of 40-second copies moves
    every 30 s, while six-hour copies are looked at about every 1.25x of their age (a few dozen loops per
    start, not one every 30 s for days, which would pass Step Functions' 25,000 history events).
    """
    if not any(v.state is VideoState.QUEUED for v in progress.videos.values()):
        return None
    ages = [
        now - v.startedAt
        for v in progress.videos.values()
        if v.state is VideoState.RUNNING and v.startedAt is not None
    ]
    youngest = min(ages, default=0.0)
    return max(policy.transfer_check_seconds, youngest * QUEUE_LOOK_FRACTION)


def _poll_polyv(  # noqa: PLR0917 - one step's whole context, private
    client: TaskReader,
    records: RecordStore,
    layout: RetrievalLayout,
    event: CheckStatusEvent,
    progress: PollProgress,
    policy: PollPolicy,
    now: float,
) -> bool:
    """Query the task, record Polyv's view for ``GET /retrievals``, queue what became ready. True when every
    video is terminal on Polyv."""
    task = client.get_task(event.taskId)
    records.put_json(layout.status_key, {**task.public(), "done": task.all_terminal, "polledAt": now})
    progress.count += 1
    progress.counts = task.counts()
    wanted = set(event.only) if event.only is not None else None
    for video in task.videos:
        if wanted is not None and video.vid not in wanted:
            continue
        if video.status is VideoStatus.FAIL and video.vid not in progress.polyvFailed:
            progress.polyvFailed.append(video.vid)
        if video.status is not VideoStatus.SUCCESS or video.vid in progress.videos:
            continue
        if key_safe_vid(video.vid) is not None:
            if video.vid not in progress.invalid:
                progress.invalid.append(video.vid)
            continue
        progress.videos[video.vid] = VideoProgress(state=VideoState.QUEUED)
    if task.all_terminal:
        progress.nextPollAt = 0
        return True
    elapsed = now - progress.startedAt
    if progress.count >= policy.max_polls or elapsed >= policy.deadline_seconds:
        pending = sum(1 for v in task.videos if not v.status.terminal)
        raise PollLimitExceeded(
            f"task {event.taskId} still has {pending} of {len(task.videos)} videos unfinished after "
            f"{progress.count} polls over {elapsed / 3600:.1f} h (limits: {policy.max_polls} polls, "
            f"{policy.deadline_seconds / 3600:.1f} h)"
        )
    # Never sleep past the deadline: the last poll lands on it.
    wait = max(1, min(policy.next_wait(progress.count), round(policy.deadline_seconds - elapsed)))
    progress.nextPollAt = now + wait
    return False


def _collect_ended(launcher: TransferLauncher, event: CheckStatusEvent, progress: PollProgress) -> int:
    """How many transfers ended since the last step (their results are now in the ledger)."""
    ended = 0
    for vid, video in progress.videos.items():
        if video.state is not VideoState.RUNNING or video.execution is None:
            continue
        execution = launcher.describe(video.execution)
        if execution is None or execution.status == ExecutionStatus.RUNNING:
            continue
        progress.videos[vid] = _ended(video.execution, execution)
        ended += 1
    return ended


def _ended(name: str, execution: ExecutionView) -> VideoProgress:
    if execution.status in ENDED_UNSUCCESSFULLY or not execution.output:
        return VideoProgress(
            state=VideoState.FAILED,
            execution=name,
            error=ErrorInfo(
                name=execution.error or f"Transfer{execution.status.title().replace('_', '')}",
                cause=readable_cause(execution.cause)[:300],
            ),
        )
    output = execution.output
    if output.get("status") == TransferStatus.FAILED:
        failure = load(TransferFailure, output)
        return VideoProgress(
            state=VideoState.FAILED,
            execution=name,
            error=ErrorInfo(name=failure.error.Error, cause=readable_cause(failure.error.Cause)[:300]),
        )
    result = load(TransferResult, output)
    return VideoProgress(
        state=VideoState(result.status.value),
        execution=name,
        key=result.result.key,
        size=result.result.size,
        crc32=result.result.crc32,
        s3Checksum=result.result.s3Checksum,
    )


def _start_queued(
    launcher: TransferLauncher,
    event: CheckStatusEvent,
    progress: PollProgress,
    policy: PollPolicy,
    now: float,
) -> int:
    """Start queued videos while slots are free; how many were started."""
    running = sum(1 for v in progress.videos.values() if v.state is VideoState.RUNNING)
    started = 0
    for vid, video in progress.videos.items():
        if running >= policy.concurrency:
            break
        if video.state is not VideoState.QUEUED:
            continue
        name = transfer_execution_name(event.taskId, event.attempt, vid)
        launcher.start(
            name,
            TransferEvent(
                taskId=event.taskId,
                vid=vid,
                prefix=event.prefix,
                attempt=event.attempt,
                options=event.options,
            ),
        )
        video.state, video.execution, video.startedAt = VideoState.RUNNING, name, now
        running += 1
        started += 1
    return started
