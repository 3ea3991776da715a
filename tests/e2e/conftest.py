"""The local stack in a process of its own (as `make demo` runs it), and handles on each of its parts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3

# One part per Transfer invocation (10 s Lambda, 30 s reserve): every video of more than two parts goes
# through the state machine's continuation loop.
STACK_ARGS = [
    "--emulator-time-scale",
    "1000",
    "--function-timeout",
    "TransferFunction=10",
    "--env",
    "TRANSFER_TIME_RESERVE_SECONDS=30",
    "--env",
    "TRANSFER_MAX_WORKERS=2",
    "--env",
    "TRANSFER_MIN_PART_MB=5",
]


class Stack:
    def __init__(self, description: dict[str, Any], log: Path) -> None:
        self.info, self.log = description, log
        self.http = urllib3.PoolManager()
        kwargs = {
            "endpoint_url": description["awsEndpoint"],
            "region_name": "us-east-1",
            "aws_access_key_id": "e2e",
            "aws_secret_access_key": "e2e",
        }
        self.s3 = boto3.client("s3", **kwargs)
        self.sfn = boto3.client("stepfunctions", **kwargs)
        self.bucket = description["bucket"]

    # --- the API, as a client uses it -----------------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        response = self.http.request(
            method,
            self.info["apiUrl"] + path,
            body=data,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        return response.status, json.loads(response.data or b"{}")

    def wait(self, retrieval_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.api("GET", f"/retrievals/{retrieval_id}")
            assert status == 200, body
            if body["status"] != "RUNNING":
                return body
            assert time.monotonic() < deadline, f"still running: {body}"
            time.sleep(0.3)

    # --- the Polyv emulator's admin API ----------------------------------------------------------------

    def emulator(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(
            method,
            f"{self.info['polyvEmulator']}/_emulator/{path}",
            body=json.dumps(body) if body is not None else None,
        )
        assert response.status == 200, response.data
        return json.loads(response.data)

    def task(self, videos: list[dict[str, Any]]) -> str:
        self.emulator("POST", "videos", videos)
        task_id: str = self.emulator("POST", "tasks", {"vids": [v["vid"] for v in videos]})["taskId"]
        return task_id

    def served_sha256(self, vid: str) -> str:
        return str(self.emulator("GET", f"videos/{vid}")["sha256"])

    def object_sha256(self, key: str) -> str:
        import hashlib

        digest = hashlib.sha256()
        for chunk in self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].iter_chunks(1024 * 1024):
            digest.update(chunk)
        return digest.hexdigest()

    def manifest(self, retrieval: dict[str, Any]) -> dict[str, Any]:
        key = retrieval["result"]["manifest"].removeprefix(f"s3://{self.bucket}/")
        return dict(json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log = tmp_path_factory.mktemp("local-stack") / "stack.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "polyv_retriever.local_stack", "--exit-on-stdin-close", *STACK_ARGS],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not (first := log.read_text().partition("\n"))[1]:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the local stack did not start in 60 s"
            time.sleep(0.1)
        yield Stack(json.loads(first[0]), log)
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the stack's signal to stop
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, log.read_text()[-3000:]
