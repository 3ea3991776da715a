"""The polling decision: growing, capped, jittered waits; the poll limit and the deadline."""

from __future__ import annotations

import json
import random

import pytest

from polyv_retriever.errors import PollLimitExceeded
from polyv_retriever.pipeline.polling import PollPolicy, poll_task
from polyv_retriever.pipeline.records import RetrievalLayout
from tests.fakes import FakePolyv, InMemoryRecords

LAYOUT = RetrievalLayout("polyv/", "0123456789abcdef0123456789abcdef")


def test_wait_starts_short_grows_geometrically_and_stops_at_the_cap() -> None:
    policy = PollPolicy(first_wait_seconds=30, max_wait_seconds=900, growth=1.5, jitter=0.0)
    waits = [policy.next_wait(n) for n in range(1, 15)]
    assert waits[:4] == [30, 45, 68, 101]
    assert waits == sorted(waits)
    assert max(waits) == 900
    assert waits[-1] == 900


def test_jitter_spreads_waits_within_bounds_and_never_above_the_cap() -> None:
    policy = PollPolicy(first_wait_seconds=100, max_wait_seconds=900, jitter=0.2)
    rng = random.Random(7)
    first = [policy.next_wait(1, rng) for _ in range(200)]
    assert min(first) >= 80
    assert max(first) <= 120
    assert len(set(first)) > 10  # executions started together do not poll in step
    capped = [policy.next_wait(30, rng) for _ in range(200)]
    assert max(capped) <= 900
    assert min(capped) >= 720


def test_a_day_long_task_stays_far_below_the_history_limit() -> None:
    policy = PollPolicy(jitter=0.0)
    elapsed, polls = 0.0, 0
    while elapsed < 86_400:
        polls += 1
        elapsed += policy.next_wait(polls)
    assert polls < 120
    assert polls * 9 < 25_000 / 20  # 9 history events per loop


def test_unfinished_task_gets_a_wait_and_carries_the_poll_state() -> None:
    polyv = FakePolyv({"a": "SUCCESS", "b": "PROCESS", "c": "INIT"})
    records = InMemoryRecords()
    result = poll_task(
        polyv, records=records, layout=LAYOUT, previous={"count": 0}, policy=PollPolicy(), now=1000.0
    )
    assert result["done"] is False
    assert result["count"] == 1
    assert result["startedAt"] == 1000.0
    assert 24 <= result["waitSeconds"] <= 36
    assert result["succeeded"] == ["a"]
    assert result["counts"] == {"INIT": 1, "PROCESS": 1, "SUCCESS": 1, "FAIL": 0}
    assert records.get_json(LAYOUT.status_key)["counts"]["PROCESS"] == 1  # type: ignore[index]

    again = poll_task(polyv, records=records, layout=LAYOUT, previous=result, policy=PollPolicy(), now=1040.0)
    assert again["count"] == 2
    assert again["startedAt"] == 1000.0


def test_terminal_task_is_done_with_success_and_fail_lists() -> None:
    polyv = FakePolyv({"a": "SUCCESS", "b": "FAIL"})
    result = poll_task(
        polyv, records=InMemoryRecords(), layout=LAYOUT, previous=None, policy=PollPolicy(), now=5.0
    )
    assert result["done"] is True
    assert result["succeeded"] == ["a"]
    assert result["failed"] == ["b"]
    assert result["waitSeconds"] == 0


def test_deadline_ends_the_loop_with_a_named_error_saying_what_is_left() -> None:
    polyv = FakePolyv({"a": "SUCCESS", "b": "PROCESS"})
    policy = PollPolicy(deadline_seconds=3600)
    with pytest.raises(PollLimitExceeded, match="1 of 2 videos unfinished"):
        poll_task(
            polyv,
            records=InMemoryRecords(),
            layout=LAYOUT,
            previous={"count": 5, "startedAt": 0},
            policy=policy,
            now=3600.0,
        )


def test_poll_limit_ends_the_loop() -> None:
    polyv = FakePolyv({"a": "INIT"})
    with pytest.raises(PollLimitExceeded, match="after 10 polls"):
        poll_task(
            polyv,
            records=InMemoryRecords(),
            layout=LAYOUT,
            previous={"count": 9, "startedAt": 0},
            policy=PollPolicy(max_polls=10),
            now=1.0,
        )


def test_the_last_wait_lands_on_the_deadline_not_past_it() -> None:
    polyv = FakePolyv({"a": "PROCESS"})
    policy = PollPolicy(first_wait_seconds=900, deadline_seconds=1000, jitter=0.0)
    result = poll_task(
        polyv,
        records=InMemoryRecords(),
        layout=LAYOUT,
        previous={"count": 1, "startedAt": 0},
        policy=policy,
        now=950.0,
    )
    assert result["waitSeconds"] == 50


def test_output_for_a_hundred_video_task_is_far_below_the_256_kib_limit() -> None:
    polyv = FakePolyv({f"{'f' * 32}_{i}": ("SUCCESS" if i % 3 else "FAIL") for i in range(100)})
    result = poll_task(
        polyv, records=InMemoryRecords(), layout=LAYOUT, previous=None, policy=PollPolicy(), now=0.0
    )
    size = len(json.dumps({"taskId": LAYOUT.task_id, "prefix": "polyv/", "poll": result}))
    assert size < 8 * 1024
    assert "auth_key" not in json.dumps(result)  # no signed URLs in the execution history
