"""Integration fixtures: a real moto server (a separate process, over HTTP) and boto3 aimed at it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
import urllib3

from polyv_retriever.handlers import runtime

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MOTO_SERVER = str(Path(sys.executable).with_name("moto_server"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib3.request("GET", endpoint + "/moto-api/", timeout=1, retries=False)
                break
            except urllib3.exceptions.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(autouse=True)
def aws_environment(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every boto3 client in the test (ours and the handlers') talks to the moto server."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for cached in (
        runtime.settings,
        runtime.s3,
        runtime.sfn,
        runtime.records,
        runtime.download_pool,
        runtime.events,
    ):
        cached.cache_clear()
    yield
    for cached in (
        runtime.settings,
        runtime.s3,
        runtime.sfn,
        runtime.records,
        runtime.download_pool,
        runtime.events,
    ):
        cached.cache_clear()


@pytest.fixture
def s3() -> S3Client:
    return boto3.client("s3")


@pytest.fixture
def bucket(s3: S3Client) -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def open_uploads(s3: S3Client, bucket: str) -> list[str]:
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
