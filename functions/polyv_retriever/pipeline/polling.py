"""One poll of a retrieval task and the decision that follows: done, or wait how long.

The wait starts short and grows geometrically to a cap, with jitter so that many executions started
together do not poll Polyv in step (its rate limit is per IP for the whole API). With the defaults a task
that takes a day costs about 105 polls; each loop is 9 history events, so even the 3-day deadline stays
near 3,000 events, far below Step Functions' 25,000.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

from polyv_retriever.errors import PollLimitExceeded
from polyv_retriever.pipeline.records import RecordStore, RetrievalLayout
from polyv_retriever.polyv.models import TaskReader, VideoStatus


@dataclass(frozen=True)
class PollPolicy:
    first_wait_seconds: float = 30
    max_wait_seconds: float = 900
    growth: float = 1.5
    jitter: float = 0.2
    max_polls: int = 1000
    deadline_seconds: float = 3 * 86400

    @classmethod
    def from_env(cls) -> PollPolicy:
        env, default = os.environ, cls()
        return cls(
            first_wait_seconds=float(env.get("POLL_FIRST_WAIT_SECONDS", default.first_wait_seconds)),
            max_wait_seconds=float(env.get("POLL_MAX_WAIT_SECONDS", default.max_wait_seconds)),
            max_polls=int(env.get("POLL_MAX_POLLS", default.max_polls)),
            deadline_seconds=float(env.get("POLL_DEADLINE_SECONDS", default.deadline_seconds)),
        )

    def next_wait(self, poll_count: int, rng: random.Random | None = None) -> int:
        """Seconds before poll ``poll_count + 1``: first * growth^(n-1), capped, +/- jitter, at least 1."""
        base = min(self.max_wait_seconds, self.first_wait_seconds * self.growth ** max(0, poll_count - 1))
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return max(1, round(min(base * spread, self.max_wait_seconds)))


@dataclass(frozen=True)
class PollState:
    count: int
    started_at: float  # epoch seconds of the first poll

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, now: float) -> PollState:
        if not data:
            return cls(0, now)
        return cls(int(data.get("count", 0)), float(data.get("startedAt", now)))


def poll_task(
    client: TaskReader,
    *,
    records: RecordStore,
    layout: RetrievalLayout,
    previous: dict[str, Any] | None,
    policy: PollPolicy,
    now: float,
) -> dict[str, Any]:
    """Query the task once, record Polyv's view for ``GET /retrievals``, and say what comes next. The result
    is what the state machine carries: vids and counts only (no download URLs: they are bearer credentials
    and would sit in the execution history)."""
    state = PollState.from_dict(previous, now)
    task_id = layout.task_id
    task = client.get_task(task_id)
    records.put_json(layout.status_key, {**task.public(), "done": task.all_terminal, "polledAt": now})
    count = state.count + 1
    elapsed = now - state.started_at
    succeeded = [v.vid for v in task.videos if v.status is VideoStatus.SUCCESS]
    failed = [v.vid for v in task.videos if v.status is VideoStatus.FAIL]
    result: dict[str, Any] = {
        "done": task.all_terminal,
        "counts": task.counts(),
        "succeeded": succeeded,
        "failed": failed,
        "count": count,
        "startedAt": state.started_at,
        "waitSeconds": 0,
    }
    if task.all_terminal:
        return result
    if count >= policy.max_polls or elapsed >= policy.deadline_seconds:
        pending = len(task.videos) - len(succeeded) - len(failed)
        raise PollLimitExceeded(
            f"task {task_id} still has {pending} of {len(task.videos)} videos unfinished after {count} polls "
            f"over {elapsed / 3600:.1f} h (limits: {policy.max_polls} polls, "
            f"{policy.deadline_seconds / 3600:.1f} h)"
        )
    # Never sleep past the deadline: the last poll lands on it.
    result["waitSeconds"] = max(1, min(policy.next_wait(count), round(policy.deadline_seconds - elapsed)))
    return result
