"""The one backoff policy (issue 9, item 15): capped full jitter, Retry-After honoured up to the cap, and
every retry logged with its reason and attempt, and the URL without its query."""

from __future__ import annotations

import logging

import pytest

from polyv_retriever.polyv.client import RetryPolicy
from polyv_retriever.retry import Backoff, without_query
from polyv_retriever.transfer.source import PART_RETRY


def test_the_delay_is_full_jitter_under_a_capped_exponential() -> None:
    backoff = Backoff(attempts=10, base_seconds=0.5, cap_seconds=4.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        delays = [backoff.delay(attempt) for _ in range(400)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range, not a fixed step
        assert min(delays) < ceiling * 0.2


def test_retry_after_is_honoured_when_longer_than_the_drawn_delay() -> None:
    assert Backoff(base_seconds=0.01, cap_seconds=5).delay(1, retry_after=3.0) == 3.0


def test_pause_sleeps_logs_and_says_when_to_give_up(caplog: pytest.LogCaptureFixture) -> None:
    backoff = Backoff(attempts=3, base_seconds=0.01, cap_seconds=1.0)
    slept: list[float] = []
    url = "https://video-dl-2.videocc.net/1b/x.mp4?auth_key=SECRET-SIGNATURE"
    with caplog.at_level(logging.WARNING, logger="polyv_retriever.retry"):
        assert backoff.pause(1, url=url, reason="HTTP 503", sleep=slept.append)
        assert backoff.pause(2, url=url, reason="HTTP 503", sleep=slept.append)
        assert not backoff.pause(3, url=url, reason="HTTP 503", sleep=slept.append)  # tries spent
        # A server asking for a wait longer than the cap: that wait is the caller's.
        assert not backoff.pause(1, url=url, reason="429", retry_after=300, sleep=slept.append)
    assert len(slept) == 2
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("retrying https://video-dl-2.videocc.net/1b/x.mp4 in ")
    assert "(attempt 1 of 3 failed: HTTP 503)" in lines[0]
    assert "SECRET" not in caplog.text
    assert caplog.records[0].retry_attempt == 1  # type: ignore[attr-defined]


def test_without_query_keeps_scheme_host_port_and_path_only() -> None:
    assert without_query("http://127.0.0.1:8090/dl/v.mp4?auth_key=x#y") == "http://127.0.0.1:8090/dl/v.mp4"
    assert without_query("https://api.polyv.net/v3/x?sign=S&appId=A") == "https://api.polyv.net/v3/x"


def test_the_polyv_client_and_the_download_source_share_the_one_policy() -> None:
    assert isinstance(RetryPolicy(), Backoff)
    assert isinstance(PART_RETRY, Backoff)
