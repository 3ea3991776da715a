"""The dispatcher: growing, capped, jittered polls; a transfer per ready video at once; limits; deadlines."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from polyv_retriever.contracts import CheckStatusEvent, PollProgress, load, to_json
from polyv_retriever.errors import PollLimitExceeded, RetrievalTimedOut
from polyv_retriever.pipeline.polling import PollPolicy, advance, transfer_execution_name
from polyv_retriever.pipeline.records import RetrievalLayout
from polyv_retriever.vocabulary import VideoState
from tests.fakes import FakeLauncher, FakePolyv, InMemoryRecords

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
    # Each loop is 5 history events (TaskScheduled/Started/Succeeded, Choice, Wait); a day is ~1/40 of 25,000.
    assert polls * 5 < 25_000 / 40


def step(
    polyv: FakePolyv,
    launcher: FakeLauncher,
    previous: PollProgress | None,
    now: float,
    policy: PollPolicy | None = None,
    records: InMemoryRecords | None = None,
    **event: object,
) -> PollProgress:
    request = load(
        CheckStatusEvent, {"taskId": LAYOUT.task_id, "prefix": LAYOUT.prefix, "poll": previous, **event}
    )
    return advance(
        polyv,
        launcher,
        records=records or InMemoryRecords(),
        event=request,
        policy=policy or PollPolicy(jitter=0.0, transfer_check_seconds=10),
        now=now,
    )


def test_a_ready_video_starts_its_transfer_while_others_still_thaw() -> None:
    polyv, launcher, records = (
        FakePolyv({"a": "SUCCESS", "b": "PROCESS", "c": "INIT"}),
        FakeLauncher(),
        InMemoryRecords(),
    )
    first = step(polyv, launcher, None, 1000.0, records=records)
    assert first.done is False
    assert launcher.started == [transfer_execution_name(LAYOUT.task_id, 1, "a")]
    assert first.videos["a"].state is VideoState.RUNNING
    assert first.counts == {"INIT": 1, "PROCESS": 1, "SUCCESS": 1, "FAIL": 0}
    assert records.get_json(LAYOUT.status_key)["counts"]["PROCESS"] == 1  # type: ignore[index]
    # Polyv's next poll is 30 s away, the running transfer is looked at in 10.
    assert first.nextPollAt == 1030.0
    assert first.waitSeconds == 10

    # The transfer ends before Polyv is due: no Polyv query, the result is collected.
    launcher.finish("a", {"status": "COPIED", "result": {"key": "k/a.mp4", "size": 3, "crc32": "x"}})
    second = step(polyv, launcher, first, 1010.0)
    assert polyv.calls == 1
    assert second.videos["a"].state is VideoState.COPIED
    assert second.videos["a"].size == 3
    assert second.waitSeconds == 20  # to Polyv's poll

    polyv.statuses.update(b="SUCCESS", c="FAIL")
    third = step(polyv, launcher, second, 1030.0)
    assert launcher.started[-1] == transfer_execution_name(LAYOUT.task_id, 1, "b")
    assert third.polyvFailed == ["c"]
    assert third.nextPollAt == 0  # Polyv is done: never asked again
    assert third.done is False  # b's transfer runs

    launcher.finish("b", {"vid": "b", "status": "FAILED", "error": {"Error": "SourceChanged", "Cause": "x"}})
    fourth = step(polyv, launcher, third, 1040.0)
    assert polyv.calls == 2
    assert fourth.done is True
    assert fourth.videos["b"].error is not None
    assert fourth.videos["b"].error.name == "SourceChanged"


def test_concurrency_caps_running_transfers_and_queued_ones_start_as_slots_free() -> None:
    polyv, launcher = FakePolyv({v: "SUCCESS" for v in "abcde"}), FakeLauncher()
    policy = PollPolicy(concurrency=2, transfer_check_seconds=5)
    first = step(polyv, launcher, None, 0.0, policy)
    assert len(launcher.started) == 2
    assert sorted(v.state for v in first.videos.values()) == ["QUEUED"] * 3 + ["RUNNING"] * 2
    launcher.finish("a", {"status": "SKIPPED", "result": {"key": "k", "size": 1}})
    second = step(polyv, launcher, first, 5.0, policy)
    assert len(launcher.started) == 3
    assert second.waitSeconds == 5


def test_a_transfer_execution_that_already_exists_is_not_started_twice() -> None:
    polyv, launcher = FakePolyv({"a": "SUCCESS"}), FakeLauncher()
    first = step(polyv, launcher, None, 0.0)
    # The step crashed after starting and is retried with the state before it: same name, nothing new.
    retried = step(polyv, launcher, None, 1.0)
    assert launcher.started == [first.videos["a"].execution] == [retried.videos["a"].execution]
    assert launcher.start_calls == 2


def test_a_transfer_execution_that_died_is_a_named_failure() -> None:
    polyv, launcher = FakePolyv({"a": "SUCCESS"}), FakeLauncher()
    first = step(polyv, launcher, None, 0.0)
    launcher.end("a", "TIMED_OUT")
    second = step(polyv, launcher, first, 10.0)
    assert second.done is True
    assert second.videos["a"].state is VideoState.FAILED
    assert second.videos["a"].error is not None
    assert second.videos["a"].error.name == "TransferTimedOut"


def test_retry_failed_transfers_only_the_videos_named() -> None:
    polyv, launcher = FakePolyv({"a": "SUCCESS", "b": "SUCCESS", "c": "FAIL"}), FakeLauncher()
    result = step(polyv, launcher, None, 0.0, attempt=2, only=["b"])
    assert launcher.started == [transfer_execution_name(LAYOUT.task_id, 2, "b")]
    assert list(result.videos) == ["b"]
    assert result.polyvFailed == []


@pytest.mark.parametrize(
    "vid",
    ["../escape", "a/b", "x\x00y", "_retrieval", "manifest", "MANIFEST", "a" * 65, "", " ", "a.b", "%2e%2e"],
)
def test_a_hostile_vid_from_polyv_is_refused_never_transferred(vid: str) -> None:
    polyv, launcher = FakePolyv({vid: "SUCCESS", "ok": "SUCCESS"}), FakeLauncher()
    result = step(polyv, launcher, None, 0.0)
    assert result.invalid == [vid]
    assert vid not in result.videos
    assert launcher.started == [transfer_execution_name(LAYOUT.task_id, 1, "ok")]


def test_execution_names_are_unique_valid_and_short() -> None:
    long_vid = "v" * 64
    names = {transfer_execution_name("t" * 64, n, long_vid + str(n)[:0]) for n in (1, 2)}
    assert len(names) == 2
    assert all(len(n) <= 80 for n in names)
    assert transfer_execution_name("abc", 1, "v") == "abc.1.v"


def test_deadline_ends_the_loop_with_a_named_error_saying_what_is_left() -> None:
    polyv = FakePolyv({"a": "SUCCESS", "b": "PROCESS"})
    previous = PollProgress(done=False, count=5, startedAt=0, waitSeconds=1, nextPollAt=3600)
    with pytest.raises(PollLimitExceeded, match="1 of 2 videos unfinished"):
        step(polyv, FakeLauncher(), previous, 3600.0, PollPolicy(deadline_seconds=3600))


def test_poll_limit_ends_the_loop() -> None:
    previous = PollProgress(done=False, count=9, startedAt=0, waitSeconds=1, nextPollAt=1)
    with pytest.raises(PollLimitExceeded, match="after 10 polls"):
        step(FakePolyv({"a": "INIT"}), FakeLauncher(), previous, 1.0, PollPolicy(max_polls=10))


def test_the_attempt_budget_ends_it_as_timed_out_even_while_transfers_run() -> None:
    previous = PollProgress(done=False, count=3, startedAt=0, waitSeconds=1, nextPollAt=0)
    with pytest.raises(RetrievalTimedOut, match="budget"):
        step(FakePolyv({"a": "SUCCESS"}), FakeLauncher(), previous, 1000.0, PollPolicy(budget_seconds=1000))


def test_the_last_wait_lands_on_the_deadline_not_past_it() -> None:
    policy = PollPolicy(first_wait_seconds=900, deadline_seconds=1000, jitter=0.0)
    previous = PollProgress(done=False, count=1, startedAt=0, waitSeconds=1, nextPollAt=950)
    result = step(FakePolyv({"a": "PROCESS"}), FakeLauncher(), previous, 950.0, policy)
    assert result.waitSeconds == 50


def test_the_state_for_a_hundred_video_task_is_far_below_the_256_kib_limit() -> None:
    """Every video at its largest ledger entry (long vid, finished with a key and checksums, or failed with
    a cause at its 300-character cap): the state document stays a fraction of Step Functions' 256 KiB."""
    vids = [f"{'f' * 60}_{i:03d}" for i in range(100)]
    polyv, launcher = FakePolyv(dict.fromkeys(vids, "SUCCESS")), FakeLauncher()
    progress = step(polyv, launcher, None, 0.0, PollPolicy(concurrency=100))
    for i, vid in enumerate(vids):
        if i % 2:
            launcher.finish(
                vid,
                {
                    "status": "COPIED",
                    "result": {
                        "key": "k" * 300,
                        "size": 2**40,
                        "crc32": "AAAAAA==",
                        "s3Checksum": "AAAAAA==-10000",
                    },
                },
            )
        else:
            launcher.finish(
                vid,
                {"vid": vid, "status": "FAILED", "error": {"Error": "SourceChanged", "Cause": "c" * 5000}},
            )
    progress = step(polyv, launcher, progress, 1.0, PollPolicy(concurrency=100))
    document = {
        "taskId": "t" * 64,
        "prefix": "p" * 512,
        "attempt": 1,
        "poll": to_json(progress),
    }
    size = len(json.dumps(document))
    assert size < 256 * 1024 / 2
    assert "auth_key" not in json.dumps(document)  # no signed URLs in the execution history


def test_a_week_of_trickling_thaws_and_long_transfers_stays_far_below_the_history_limit() -> None:
    """The worst case for the loop: 100 videos thawing one by one over 6 days (the longest deadline), each
    transfer taking hours, 10 at once, so that transfers run the whole time. Every step is the real
    dispatcher; each loop is 9 history events (Task 5, Choice 2, Wait 2) of Step Functions' 25,000."""
    rng = random.Random(11)
    ready_at = {f"v{i:03d}": 6 * 86400 * i / 99 for i in range(100)}
    duration = {vid: rng.uniform(600, 6 * 3600) for vid in ready_at}
    policy = PollPolicy(deadline_seconds=6 * 86400 + 60, budget_seconds=7 * 86400 - 3600)
    loops, _, _ = _run_to_done(ready_at, duration, policy)
    assert loops * 9 < 25_000 / 2, loops


def _run_to_done(
    ready_at: dict[str, float], duration: dict[str, float], policy: PollPolicy
) -> tuple[int, dict[str, float], dict[str, float]]:
    """Loop the real dispatcher on a simulated clock, the way the state machine does (CheckStatus, Wait
    ``waitSeconds``). Each transfer ends ``duration`` after its start. Returns (loops, start and end time of
    each transfer as the dispatcher saw them)."""
    began: dict[str, float] = {}
    ended: dict[str, float] = {}

    class Polyv(FakePolyv):
        now = 0.0

        def get_task(self, task_id: str) -> Any:
            self.statuses = {v: ("SUCCESS" if self.now >= t else "PROCESS") for v, t in ready_at.items()}
            return super().get_task(task_id)

    polyv, launcher = Polyv(), FakeLauncher()
    progress, now, loops = None, 0.0, 0
    while progress is None or not progress.done:
        loops += 1
        polyv.now = now
        for vid, name in launcher.by_vid.items():
            if launcher.executions[name].status == "RUNNING" and now >= began[vid] + duration[vid]:
                launcher.finish(vid, {"status": "COPIED", "result": {"key": vid, "size": 1}})
                ended[vid] = began[vid] + duration[vid]
        progress = step(polyv, launcher, progress, now, policy)
        for vid in launcher.by_vid:
            began.setdefault(vid, now)
        now += progress.waitSeconds
    assert all(v.state is VideoState.COPIED for v in progress.videos.values())
    return loops, began, ended


def _slots_taken(
    began: dict[str, float], ended: dict[str, float], concurrency: int
) -> list[tuple[str, float]]:
    """(vid, when the slot it took was freed) for every video that waited for a slot: the n-th of them in
    start order took the n-th slot to free."""
    waited = sorted(began, key=lambda v: began[v])[concurrency:]
    return list(zip(waited, sorted(ended.values()), strict=False))


def test_a_freed_slot_is_refilled_within_the_first_wait_while_videos_are_queued() -> None:
    """30 videos ready together, 40 s each, 10 at once: back to back that is 120 s. The look at the
    transfers used to double while nothing changed (30, 60, ...), so the second ten started 50 s after the
    first ten ended, and the task took 270 s."""
    vids = [f"v{i:02d}" for i in range(30)]
    policy = PollPolicy(jitter=0.0, concurrency=10, transfer_check_seconds=30)
    _, began, ended = _run_to_done(dict.fromkeys(vids, 0.0), dict.fromkeys(vids, 40.0), policy)
    for vid, freed in _slots_taken(began, ended, policy.concurrency):
        assert began[vid] - freed <= policy.transfer_check_seconds, vid
    assert max(ended.values()) <= 120 + 3 * policy.transfer_check_seconds


def test_the_worst_queue_stays_far_below_the_history_limit() -> None:
    """100 videos ready at once, copies of 10 min to 6 h, 10 at once: a queue for most of two days, looked
    at often. Each loop is 9 history events of Step Functions' 25,000."""
    rng = random.Random(5)
    vids = [f"v{i:03d}" for i in range(100)]
    duration = {vid: rng.uniform(600, 6 * 3600) for vid in vids}
    policy = PollPolicy(deadline_seconds=6 * 86400 + 60, budget_seconds=7 * 86400 - 3600)
    loops, _, _ = _run_to_done(dict.fromkeys(vids, 0.0), duration, policy)
    assert loops * 9 < 25_000 / 2, loops
