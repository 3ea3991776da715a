"""The Polyv client over real HTTP against the emulator: errors, retries, re-signing, rate limits."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from polyv_retriever import errors
from polyv_retriever.polyv.client import PolyvClient, RetryPolicy
from polyv_retriever.polyv.credentials import Credentials
from polyv_retriever.polyv.models import VideoStatus, key_safe_vid
from polyv_retriever.polyv_emulator import EmulatorServer
from tests.conftest import FAST_RETRY


def api_requests(emulator: EmulatorServer) -> list[dict[str, str]]:
    return [r["params"] for r in emulator.state.requests if r["path"].startswith("/v3/")]


def test_create_then_query_until_every_video_is_terminal(
    emulator: EmulatorServer, polyv: PolyvClient
) -> None:
    emulator.add_video("ok1", 1000, ready_after=60)
    emulator.add_video("bad1", 1000, outcome="FAIL", ready_after=60)
    task_id = polyv.create_task(["ok1", "bad1"], expire_days=2)

    first = polyv.get_task(task_id)
    assert not first.all_terminal
    assert {v.status for v in first.videos} <= {VideoStatus.INIT, VideoStatus.PROCESS}
    assert all(v.url is None for v in first.videos)

    time.sleep(0.1)  # 100 Polyv seconds
    done = polyv.get_task(task_id)
    assert done.all_terminal
    assert done.counts() == {"INIT": 0, "PROCESS": 0, "SUCCESS": 1, "FAIL": 1}
    ok = done.video("ok1")
    assert ok is not None
    assert ok.url
    assert "auth_key=" in ok.url
    assert ok.success_time_ms is not None


def test_every_request_is_signed_with_appid_timestamp_and_sign(
    emulator: EmulatorServer, polyv: PolyvClient
) -> None:
    task_id = polyv.create_task(["v1"], expire_days=1)
    polyv.get_task(task_id)
    create, get = api_requests(emulator)
    assert set(create) == {"appId", "timestamp", "sign", "vids", "expireDays"}
    assert set(get) == {"appId", "timestamp", "sign", "taskId"}
    assert len(get["timestamp"]) == 13
    assert emulator.secret not in str(emulator.state.requests)


@pytest.mark.parametrize(
    ("setup", "error", "code"),
    [
        ("bad_app", errors.AppNotFound, 101),
        ("bad_secret", errors.InvalidSignature, 104),
        ("expired", errors.SubAccountExpired, 103),
        ("no-subaccount", errors.SubAccountNotFound, 102),
        ("limited", errors.PermissionDenied, 105),
        ("clock_skew", errors.InvalidTimestamp, 100),
    ],
)
def test_documented_auth_errors_are_typed_and_never_retried(
    emulator: EmulatorServer, setup: str, error: type[errors.PolyvAuthError], code: int
) -> None:
    app_id, secret, clock = emulator.app_id, emulator.secret, time.time
    if setup == "bad_app":
        app_id = "nobody"
    elif setup == "bad_secret":
        secret = "wrong"
    elif setup == "clock_skew":
        clock = lambda: time.time() - 600  # noqa: E731 - ten minutes slow
    else:
        emulator.state.apps["sub"] = {"secret": "sub-secret-value", "state": setup}
        app_id, secret = "sub", "sub-secret-value"
    client = PolyvClient(
        Credentials(app_id, secret), base_url=emulator.base_url, retry=FAST_RETRY, clock=clock
    )

    with pytest.raises(error) as caught:
        client.get_task("0123456789abcdef0123456789abcdef")

    assert caught.value.code == code
    assert not caught.value.retryable
    assert caught.value.hint
    assert len(api_requests(emulator)) == 1  # not retried
    assert secret not in str(caught.value)
    assert secret not in repr(client)


def test_unknown_task_is_a_business_error(polyv: PolyvClient) -> None:
    with pytest.raises(errors.PolyvBusinessError, match="task not found") as caught:
        polyv.get_task("0123456789abcdef0123456789abcdef")
    assert caught.value.code >= 3000


def test_transient_5xx_is_retried_with_a_fresh_timestamp_and_signature(
    emulator: EmulatorServer, polyv: PolyvClient
) -> None:
    task_id = emulator.create_task(["v1"])
    emulator.set_faults(api_5xx=2)
    real_clock = time.time
    ticks = iter(range(1000))
    polyv._clock = lambda: real_clock() + next(ticks) * 0.01  # distinct milliseconds per attempt

    task = polyv.get_task(task_id)

    assert task.task_id == task_id
    attempts = api_requests(emulator)
    assert len(attempts) == 3
    assert len({a["timestamp"] for a in attempts}) == 3
    assert len({a["sign"] for a in attempts}) == 3


def test_outage_longer_than_the_retries_is_a_transient_error(
    emulator: EmulatorServer, polyv: PolyvClient
) -> None:
    emulator.set_faults(api_5xx=50)
    with pytest.raises(errors.PolyvUnavailable, match="HTTP 502") as caught:
        polyv.get_task("0123456789abcdef0123456789abcdef")
    assert caught.value.retryable
    assert len(api_requests(emulator)) == FAST_RETRY.attempts


@pytest.mark.parametrize("fault", ["api_malformed", "api_truncated"])
def test_malformed_or_truncated_answers_are_retried_then_succeed(
    emulator: EmulatorServer, polyv: PolyvClient, fault: str
) -> None:
    task_id = emulator.create_task(["v1"])
    emulator.set_faults(**{fault: 1})
    assert polyv.get_task(task_id).task_id == task_id
    assert len(api_requests(emulator)) == 2


def test_malformed_answers_that_persist_are_named(emulator: EmulatorServer, polyv: PolyvClient) -> None:
    emulator.set_faults(api_malformed=50)
    with pytest.raises(errors.MalformedResponse, match="not Polyv's JSON envelope"):
        polyv.get_task("0123456789abcdef0123456789abcdef")


def test_rate_limit_block_is_not_slept_through_but_raised_with_retry_after(
    emulator: EmulatorServer, polyv: PolyvClient
) -> None:
    task_id = emulator.create_task(["v1"])
    emulator.set_faults(rate_limit=3, rate_block_seconds=300)
    for _ in range(3):
        polyv.get_task(task_id)
    started = time.monotonic()
    with pytest.raises(errors.RateLimited) as caught:
        polyv.get_task(task_id)
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 200
    assert time.monotonic() - started < 1  # a 5-minute block is the caller's to wait out
    assert len(api_requests(emulator)) == 4


def test_short_rate_limit_is_backed_off_honouring_retry_after(
    emulator: EmulatorServer, polyv: PolyvClient
) -> None:
    task_id = emulator.create_task(["v1"])
    emulator.set_faults(rate_limit=1, rate_block_seconds=0.2)
    polyv.get_task(task_id)
    polyv._retry = RetryPolicy(attempts=3, base_seconds=0.01, cap_seconds=5)  # a 1 s block fits under the cap
    slept: list[float] = []
    polyv._sleep = lambda seconds: (slept.append(seconds), time.sleep(seconds))[1]  # type: ignore[func-returns-value]

    assert polyv.get_task(task_id).task_id == task_id
    assert slept
    assert slept[0] >= 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.get_task("bad id"), "taskId 'bad id' is malformed"),
        (lambda c: c.create_task([], 1), "non-empty list"),
        (lambda c: c.create_task([f"v{i}" for i in range(101)], 1), "at most 100"),
        (lambda c: c.create_task(["a", "a"], 1), "given twice"),
        (lambda c: c.create_task(["a"], 8), "expireDays must be an integer from 1 to 7"),
    ],
)
def test_invalid_input_is_refused_before_anything_is_sent(
    emulator: EmulatorServer, polyv: PolyvClient, call: object, message: str
) -> None:
    with pytest.raises(errors.InvalidInput, match=message):
        call(polyv)  # type: ignore[operator]
    assert api_requests(emulator) == []


def test_connection_refused_is_a_transport_error_without_the_signature(polyv: PolyvClient) -> None:
    polyv.base_url = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(errors.PolyvTransportError) as caught:
        polyv.get_task("0123456789abcdef0123456789abcdef")
    assert "sign=" not in str(caught.value)


def test_a_vid_that_is_not_unicode_becomes_a_refusable_vid_not_a_failed_task() -> None:
    """JSON can escape a lone surrogate ("\\ud800"), which no UTF-8 record can hold: the client keeps its
    escape as text, so the dispatcher refuses that vid (INVALID_VID) and copies the others."""
    body = (
        b'{"code":200,"status":"success","data":[{"vid":"\\ud800","status":"SUCCESS","url":"https://a.videocc.net/x"},'
        b'{"vid":"ok","status":"PROCESS"}]}'
    )

    class Polyv(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Polyv)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = PolyvClient(Credentials("id", "secret"), base_url=f"http://127.0.0.1:{server.server_port}")
        task = client.get_task("0123456789abcdef0123456789abcdef")
    finally:
        server.shutdown()
    hostile, ok = task.videos
    assert hostile.vid == "\\ud800"
    assert key_safe_vid(hostile.vid) is not None  # refused as a key, per video
    assert ok.vid == "ok"
    json.dumps(task.public(), ensure_ascii=False).encode()  # what records.put_json does: no error
