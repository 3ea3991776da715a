"""``polyv-retriever copy`` as a user runs it: the engine alone, against the emulator and a moto server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from polyv_retriever.polyv_emulator import EmulatorServer
from polyv_retriever.polyv_emulator.content import VideoContent

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CLI = str(Path(sys.executable).with_name("polyv-retriever"))


def copy(*args: str, allow: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POLYV_DOWNLOAD_ALLOW": allow, "TRANSFER_MIN_PART_MB": "5"}
    return subprocess.run(
        [CLI, "copy", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def download_url(emulator: EmulatorServer, vid: str, size: int) -> str:
    emulator.add_video(vid, size, ready_after=0)
    task_id = emulator.create_task([vid])
    time.sleep(0.01)
    return str(emulator.task_videos(task_id, emulator.base_url.removeprefix("http://"))[0]["url"])


def test_copy_prints_one_json_line_and_the_object_is_byte_exact(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    size = 12 * 1024 * 1024 + 3
    url = download_url(emulator, "clicopy", size)
    result = copy(
        url, f"s3://{bucket}/videos/clicopy.mp4", "--vid", "clicopy", "--json", allow=emulator.base_url
    )

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    answer = json.loads(result.stdout)
    assert answer["status"] == "COPIED"
    assert answer["size"] == size
    assert answer["uri"] == f"s3://{bucket}/videos/clicopy.mp4"
    body = s3.get_object(Bucket=bucket, Key="videos/clicopy.mp4")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == VideoContent("clicopy", size).sha256()
    assert "auth_key" not in result.stdout + result.stderr

    again = copy(url, f"s3://{bucket}/videos/clicopy.mp4", "--vid", "clicopy", allow=emulator.base_url)
    assert again.returncode == 0
    assert again.stdout.startswith("already there, intact:")


def test_copy_refuses_a_host_off_the_allow_list_in_one_line(emulator: EmulatorServer, bucket: str) -> None:
    url = download_url(emulator, "cliden", 1000)
    result = copy(url, f"s3://{bucket}/x.mp4", allow="*.videocc.net")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "DownloadNotAllowed: download from http://127.0.0.1" in result.stderr
    assert "auth_key" not in result.stderr
    assert emulator.state.downloads == 0


def test_copy_names_a_malformed_destination(emulator: EmulatorServer) -> None:
    result = copy("https://video-dl-2.videocc.net/x.mp4", "bucket/key", allow="*.videocc.net")
    assert result.returncode == 2
    assert "destination 'bucket/key' is not s3://BUCKET/KEY" in result.stderr
