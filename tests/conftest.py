"""Fixtures shared by every kind of test: a real Polyv emulator over HTTP and a client for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from polyv_retriever.polyv.client import PolyvClient, RetryPolicy
from polyv_retriever.polyv.credentials import Credentials
from polyv_retriever.polyv_emulator import EmulatorServer

# Retries fast enough for tests, with the same shape as production's.
FAST_RETRY = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.5, timeout_seconds=5)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    # 1 real second = 1,000 Polyv seconds: a video that takes Polyv 2 minutes is ready in 0.12 s.
    with EmulatorServer(time_scale=1000) as server:
        yield server


@pytest.fixture
def polyv(emulator: EmulatorServer) -> PolyvClient:
    return PolyvClient(
        Credentials(emulator.app_id, emulator.secret), base_url=emulator.base_url, retry=FAST_RETRY
    )
