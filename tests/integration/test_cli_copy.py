"""``polyv-retriever copy`` as a user runs it: the engine alone, against the emulator and a moto server."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
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


def test_copy_draws_its_progress_bar_on_a_terminal_and_off_one_does_not_even_load_rich(
    emulator: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    """On a terminal the user sees the bar (the file's name, the bytes moved); in a pipe (a script, CI,
    the benchmark) nothing is drawn and rich, ~80 ms of CPU to import, is never loaded."""
    size = 6 * 1024 * 1024
    url = download_url(emulator, "clibar", size)
    env = {**os.environ, "POLYV_DOWNLOAD_ALLOW": emulator.base_url, "TRANSFER_MIN_PART_MB": "5"}

    leader, follower = pty.openpty()
    try:
        drawn = subprocess.run(
            [CLI, "copy", url, f"s3://{bucket}/bar/on-a-terminal.mp4"],
            env={**env, "COLUMNS": "120"},
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
            check=False,
        )
        os.close(follower)
        follower = -1
        screen = b""
        while select.select([leader], [], [], 0.5)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal is gone once the command and its output are
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert drawn.returncode == 0
    assert b"on-a-terminal.mp4" in screen
    assert b"6.3" in screen  # its 6.3 MB

    probe = (
        "import sys; from polyv_retriever.cli.main import main; "
        f"code = main(['copy', {url!r}, 's3://{bucket}/bar/in-a-pipe.mp4']); "
        "print('rich loaded' if 'rich' in sys.modules else 'no rich', code)"
    )
    piped = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert piped.stdout.splitlines()[-1] == "no rich 0", piped.stderr
    assert "━" not in piped.stderr
    for key in ("bar/on-a-terminal.mp4", "bar/in-a-pipe.mp4"):
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == size
