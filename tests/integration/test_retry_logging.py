"""Every retry is logged so that an operator can see why a transfer or a poll was slow, and no log line has
a signed query (issue 9, item 15): over real HTTP, the emulator's API and CDN misbehaving on purpose."""

from __future__ import annotations

import logging

import pytest

from polyv_retriever.polyv.client import PolyvClient
from polyv_retriever.polyv_emulator import EmulatorServer
from tests.integration.test_transfer_engine import Video


def test_a_download_retry_is_logged_with_the_reason_and_without_the_signed_query(
    emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    video = Video(emulator, "vretry", 4096)
    source = video.source()
    emulator.set_faults(dl_5xx=2, dl_403=1)
    with caplog.at_level(logging.WARNING):
        source.probe()
        source.read_range(0, 4096)

    messages = [r.getMessage() for r in caplog.records]
    retries = [m for m in messages if m.startswith("retrying ")]
    assert len(retries) == 2
    assert retries[0].startswith(f"retrying {emulator.base_url}/dl/vretry.mp4 in ")
    assert "(attempt 1 of 5 failed: the download server answered HTTP 503)" in retries[0]
    assert "(attempt 2 of 5 failed" in retries[1]
    assert any("expired (403): asking for a fresh one" in m for m in messages)
    assert "auth_key" not in caplog.text


def test_a_polyv_retry_is_logged_without_the_signature_or_the_secret(
    emulator: EmulatorServer, polyv: PolyvClient, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = emulator.create_task(["v1"])
    emulator.set_faults(api_5xx=1, api_malformed=1)
    with caplog.at_level(logging.WARNING):
        polyv.get_task(task_id)

    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying ")]
    assert len(retries) == 2
    assert retries[0].startswith(f"retrying {emulator.base_url}/v3/video/source-file-task/get in ")
    assert "attempt 1 of 4 failed" in retries[0]
    for secret in ("sign=", "timestamp=", emulator.secret, "appId="):
        assert secret not in caplog.text
