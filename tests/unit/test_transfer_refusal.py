"""The Transfer function's core refuses a download URL whose host parsers could read differently with the
named error, records it as the video's failure, and never lets the signed query into either (item 1)."""

from __future__ import annotations

from typing import Any, cast

import pytest
import urllib3

from polyv_retriever.contracts import TransferEvent
from polyv_retriever.errors import DownloadNotAllowed
from polyv_retriever.pipeline.video_transfer import StorageDefaults, transfer_video
from polyv_retriever.transfer.allowlist import DEFAULT_ALLOW, DownloadAllowList
from polyv_retriever.transfer.engine import TransferEngine
from tests.fakes import FakePolyv, InMemoryRecords


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\.videocc.net/x.mp4?auth_key=SECRET",
        "https://x.videocc.net@169.254.169.254/x.mp4?auth_key=SECRET",
        "https://169.254.169.254%2f.videocc.net/x.mp4?auth_key=SECRET",
    ],
)
def test_a_hostile_download_url_fails_the_video_with_a_named_error(url: str) -> None:
    records = InMemoryRecords()
    with pytest.raises(DownloadNotAllowed) as caught:
        transfer_video(
            client=FakePolyv({"v1": "SUCCESS"}, url=url),
            engine=TransferEngine(),
            allowlist=DownloadAllowList(DEFAULT_ALLOW),
            pool=urllib3.PoolManager(),
            s3=cast(Any, None),  # never reached: the URL is refused first
            bucket="b",
            records=records,
            event=TransferEvent(taskId="16661c08b9564c1ea6f4544ccd568e58", vid="v1", prefix="p/"),
            storage=StorageDefaults(),
            time_left=None,
        )
    record = records.get_json("p/16661c08b9564c1ea6f4544ccd568e58/_retrieval/videos/v1.json")
    assert record is not None
    assert (record["status"], record["error"]) == ("FAILED", "DownloadNotAllowed")
    assert "download URL refused" in record["message"]
    assert "SECRET" not in str(caught.value) + str(record)
