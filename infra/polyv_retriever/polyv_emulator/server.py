"""The emulator's HTTP server: Polyv's two task calls, the download CDN, and an admin API for tests.

Polyv side (as documented in shared/docs/polyv-api.md):
  GET  /v3/video/source-file-task/get      appId, timestamp, sign, taskId [, expireDays]
  POST /v3/video/source-file-task/create   appId, timestamp, sign, vids, expireDays (form body)
CDN side:
  GET|HEAD /dl/<vid>.mp4?auth_key=<expiry>-<rand>-<generation>-<md5>   (403 once expired; honours Range;
                                                                        ETag and Last-Modified per version)
Admin (JSON, for tests, the local stack and the demo; not part of Polyv):
  POST /_emulator/videos   [{vid, size, outcome, readyAfter}]   what a vid is, how it ends, when
  POST /_emulator/apps     {appId, secret, state}              state: ok | expired | no-subaccount | limited
  POST /_emulator/faults   {name: value, ...}                  see Faults
  POST /_emulator/expire-urls                                  every URL handed out so far answers 403
  GET  /_emulator/requests                                     the API requests seen (for retry tests)
  GET  /_emulator/videos/<vid>                                 size, version, sha256 of what is served
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import struct
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from polyv_retriever.polyv.signing import sign
from polyv_retriever.polyv_emulator.content import VideoContent

TIMESTAMP_WINDOW_MS = 3 * 60 * 1000
_CDN_KEY = "emulator-cdn-private-key"
_LAST_MODIFIED_BASE = 1_700_000_000  # a video's Last-Modified: this, plus an hour per content change


@dataclass
class VideoSpec:
    vid: str
    size: int = 1024 * 1024
    outcome: str = "SUCCESS"  # or FAIL
    ready_after: float = 120.0  # Polyv seconds after the task is created
    version: int = 0

    def content(self) -> VideoContent:
        return VideoContent(self.vid, self.size, self.version)


@dataclass
class Faults:
    """Switchable misbehaviour. Counters are "the next N requests"; they count down as they fire."""

    api_5xx: int = 0
    api_malformed: int = 0
    api_truncated: int = 0
    api_slow_seconds: float = 0.0
    rate_limit: int = 1500  # requests per 10 s window, per client IP
    rate_block_seconds: float = 300.0
    dl_ignore_range: bool = False
    dl_range_ignored: int = 0  # the next N ranged requests get 200 and the whole file (a node ignoring Range)
    dl_unsatisfiable: str = "416"  # a range past the end: "416" (with the size), "416-bare" (no size), "200"
    dl_no_etag: bool = False  # a CDN that sends no ETag
    dl_no_last_modified: bool = False  # ... nor Last-Modified: then only size and content tell versions apart
    dl_5xx: int = 0
    dl_403: int = 0
    dl_short_body: int = 0
    dl_reset: int = 0
    dl_change_after: int = -1  # after N more download requests, the content of every video changes
    dl_rate_bytes_per_second: int = 0  # per connection; 0 = unlimited (the long-path model)
    dl_latency_ms: int = 0  # before each response's first byte


@dataclass
class _Task:
    task_id: str
    vids: list[str]
    expire_days: int
    created: float  # emulator clock
    created_epoch: float = field(default_factory=time.time)


@dataclass
class EmulatorState:
    apps: dict[str, dict[str, str]] = field(default_factory=dict)
    videos: dict[str, VideoSpec] = field(default_factory=dict)
    tasks: dict[str, _Task] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    requests: list[dict[str, Any]] = field(default_factory=list)
    downloads: int = 0  # download requests seen, of any outcome
    url_generation: int = 0
    url_ttl_seconds: float = 3600.0
    init_seconds: float = 10.0  # Polyv seconds a video stays INIT before PROCESS
    default_ready_after: float = 120.0
    rate_windows: dict[str, list[float]] = field(default_factory=dict)
    blocked_until: dict[str, float] = field(default_factory=dict)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hang up mid-body on purpose (cancelled parts, fault tests): not worth a traceback."""


class EmulatorServer:
    """Runs the emulator on a daemon thread. ``time_scale`` > 1 makes Polyv's clock run faster than ours."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        app_id: str = "emulatorApp",
        secret: str = "emulator-secret",  # noqa: S107 - the emulator's own test app
        time_scale: float = 1.0,
        url_ttl_seconds: float = 3600.0,
    ) -> None:
        self.state = EmulatorState(url_ttl_seconds=url_ttl_seconds)
        self.state.apps[app_id] = {"secret": secret, "state": "ok"}
        self.app_id, self.secret = app_id, secret
        self.time_scale = time_scale
        self._started = time.monotonic()
        self.lock = threading.RLock()
        self.httpd = _QuietServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.emulator = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="polyv-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- clock and configuration (also used in-process by tests) ------------------------------------------

    def now(self) -> float:
        """Polyv seconds since the emulator started."""
        return (time.monotonic() - self._started) * self.time_scale

    def add_video(
        self, vid: str, size: int, outcome: str = "SUCCESS", ready_after: float | None = None
    ) -> None:
        with self.lock:
            after = self.state.default_ready_after if ready_after is None else ready_after
            self.state.videos[vid] = VideoSpec(vid, size, outcome, after)

    def video(self, vid: str) -> VideoSpec:
        with self.lock:
            return self.state.videos.setdefault(
                vid, VideoSpec(vid, ready_after=self.state.default_ready_after)
            )

    def set_faults(self, **changes: Any) -> None:
        with self.lock:
            for name, value in changes.items():
                if not hasattr(self.state.faults, name):
                    raise ValueError(f"unknown fault {name!r}")
                setattr(self.state.faults, name, value)

    def expire_urls(self) -> None:
        with self.lock:
            self.state.url_generation += 1

    def create_task(self, vids: list[str], expire_days: int = 1) -> str:
        task_id = uuid.uuid4().hex
        with self.lock:
            for vid in vids:
                self.video(vid)
            self.state.tasks[task_id] = _Task(task_id, list(vids), expire_days, self.now())
        return task_id

    def task_videos(self, task_id: str, host: str) -> list[dict[str, Any]]:
        with self.lock:
            task = self.state.tasks[task_id]
            result = []
            for vid in task.vids:
                spec = self.video(vid)
                elapsed = self.now() - task.created
                created_ms = int(task.created_epoch * 1000)
                if elapsed < min(self.state.init_seconds, spec.ready_after):
                    status = "INIT"
                elif elapsed < spec.ready_after:
                    status = "PROCESS"
                else:
                    status = spec.outcome
                success = status == "SUCCESS"
                result.append(
                    {
                        "vid": vid,
                        "url": self.download_url(vid, host) if success else None,
                        "status": status,
                        "createTime": created_ms,
                        # When it became ready, in real time (the emulator's clock may run faster).
                        "successTime": int((task.created_epoch + spec.ready_after / self.time_scale) * 1000)
                        if success
                        else None,
                    }
                )
            return result

    def download_url(self, vid: str, host: str) -> str:
        expiry = int(time.time() + self.state.url_ttl_seconds)
        rand = secrets.token_hex(5)
        generation = self.state.url_generation
        path = f"/dl/{vid}.mp4"
        digest = _cdn_md5(path, expiry, rand, generation)
        return f"http://{host}{path}?auth_key={expiry}-{rand}-{generation}-{digest}"

    # --- rate limiting ----------------------------------------------------------------------------------

    def rate_limited(self, client: str) -> float | None:
        """Seconds the client stays blocked, or None when the request may pass."""
        now = time.monotonic()
        with self.lock:
            until = self.state.blocked_until.get(client, 0.0)
            if until > now:
                return until - now
            window = [t for t in self.state.rate_windows.get(client, []) if t > now - 10.0]
            window.append(now)
            self.state.rate_windows[client] = window
            if len(window) > self.state.faults.rate_limit:
                self.state.blocked_until[client] = now + self.state.faults.rate_block_seconds
                self.state.rate_windows[client] = []  # the block, not the window, decides what happens next
                return self.state.faults.rate_block_seconds
            return None

    def take(self, fault: str) -> bool:
        """Consume one firing of a counted fault."""
        with self.lock:
            left = getattr(self.state.faults, fault)
            if left > 0:
                setattr(self.state.faults, fault, left - 1)
                return True
            return False


def _cdn_md5(path: str, expiry: int, rand: str, generation: int) -> str:
    # The shape of a CDN "type A" auth key: md5 over path, expiry, rand, uid and a private key.
    return hashlib.md5(
        f"{path}-{expiry}-{rand}-{generation}-{_CDN_KEY}".encode(), usedforsecurity=False
    ).hexdigest()


def _envelope(data: Any = None, *, error: tuple[int, str] | None = None, outer: int = 200) -> dict[str, Any]:
    return {
        "requestId": str(uuid.uuid4()),
        "code": outer if error else 200,
        "status": "error" if error else "success",
        "error": {"code": error[0], "desc": error[1]} if error else None,
        "data": None if error else data,
    }


_APP_STATE_ERRORS = {
    "expired": (103, "sub-account expired", 403),
    "no-subaccount": (102, "sub-account does not exist", 400),
    "limited": (105, "permission limited", 403),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PolyvEmulator/1.0"

    @property
    def emu(self) -> EmulatorServer:
        return self.server.emulator  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read /_emulator/requests instead."""

    # --- dispatch ---------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path.startswith("/_emulator/"):
                self._admin(url.path)
            elif url.path.startswith("/dl/"):
                self._download(url.path, dict(parse_qsl(url.query)))
            elif url.path.startswith("/v3/video/source-file-task/"):
                self._api(url.path, url.query)
            else:
                self._json(404, {"message": f"no route {url.path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    # --- Polyv API ----------------------------------------------------------------------------------------

    def _api(self, path: str, query: str) -> None:
        body = self._body().decode("utf-8", "replace")
        params = dict(parse_qsl(query if self.command == "GET" else body, keep_blank_values=True))
        with self.emu.lock:
            self.emu.state.requests.append({"method": self.command, "path": path, "params": dict(params)})
        blocked = self.emu.rate_limited(self.client_address[0])
        if blocked is not None:
            return self._raw(429, b"Too Many Requests", headers={"Retry-After": str(int(blocked) + 1)})
        faults = self.emu.state.faults
        if faults.api_slow_seconds:
            time.sleep(faults.api_slow_seconds)
        if self.emu.take("api_5xx"):
            return self._raw(502, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if self.emu.take("api_malformed"):
            return self._raw(200, b'{"requestId": "x", "code": 200, "status": "succ', "application/json")
        if self.emu.take("api_truncated"):
            return self._cut_short(b'{"requestId": "x", "code": 200, "status": "success", "data": []}')

        error = self._check_auth(params)
        if error:
            return self._json(error[2], _envelope(error=error[:2], outer=error[2]))
        if path.endswith("/get") and self.command == "GET":
            task_id = params.get("taskId", "")
            if task_id not in self.emu.state.tasks:
                return self._json(400, _envelope(error=(3002, f"task not found: {task_id}"), outer=400))
            return self._json(200, _envelope(self.emu.task_videos(task_id, self.headers.get("Host", ""))))
        if path.endswith("/create") and self.command == "POST":
            vids = [v for v in params.get("vids", "").split(",") if v]
            try:
                expire_days = int(params.get("expireDays", ""))
            except ValueError:
                expire_days = 0
            if not vids or len(vids) > 100:
                return self._json(400, _envelope(error=(3000, "vids: 1 to 100 required"), outer=400))
            if not 1 <= expire_days <= 7:
                return self._json(400, _envelope(error=(3001, "expireDays must be 1-7"), outer=400))
            return self._json(200, _envelope({"taskId": self.emu.create_task(vids, expire_days)}))
        return self._json(405, {"message": "method not allowed"})

    def _check_auth(self, params: dict[str, str]) -> tuple[int, str, int] | None:
        app = self.emu.state.apps.get(params.get("appId", ""))
        if app is None:
            return (101, "application not exist", 400)
        try:
            timestamp = int(params.get("timestamp", ""))
        except ValueError:
            return (100, "invalid timestamp", 400)
        if abs(time.time() * 1000 - timestamp) > TIMESTAMP_WINDOW_MS:
            return (100, "invalid timestamp", 400)
        if params.get("sign") != sign(params, app["secret"]):
            return (104, "invalid signature", 403)
        return _APP_STATE_ERRORS.get(app["state"])

    # --- CDN ----------------------------------------------------------------------------------------------

    def _download(self, path: str, query: dict[str, str]) -> None:
        self._body()
        emu = self.emu
        with emu.lock:
            emu.state.downloads += 1
        if emu.state.faults.dl_latency_ms:
            time.sleep(emu.state.faults.dl_latency_ms / 1000)
        vid = path.removeprefix("/dl/").removesuffix(".mp4")
        if not self._auth_key_valid(path, query.get("auth_key", "")) or emu.take("dl_403"):
            emu.expire_urls()  # a 403 means that URL is dead for good, as on the real CDN
            return self._raw(403, b"<html>403 Forbidden</html>", "text/html")
        if emu.take("dl_5xx"):
            return self._raw(503, b"<html>503 Service Unavailable</html>", "text/html")
        with emu.lock:
            spec = emu.state.videos.get(vid)
            if spec is None:
                return self._raw(404, b"not found", "text/plain")
            if emu.state.faults.dl_change_after == 0:
                for video in emu.state.videos.values():
                    video.version += 1
            if emu.state.faults.dl_change_after >= 0:
                emu.state.faults.dl_change_after -= 1
            content = spec.content()

        faults = emu.state.faults
        start, end, status = 0, content.size, 200
        range_header = self.headers.get("Range")
        if range_header and not faults.dl_ignore_range and not emu.take("dl_range_ignored"):
            parsed = _parse_range(range_header, content.size)
            if parsed is None and faults.dl_unsatisfiable.startswith("416"):
                total = (
                    {}
                    if faults.dl_unsatisfiable == "416-bare"
                    else {"Content-Range": f"bytes */{content.size}"}
                )
                return self._raw(416, b"", headers=total)
            if parsed is not None:
                start, end, status = parsed[0], parsed[1], 206
        headers = {
            "Content-Type": "video/mp4",
            "Content-Length": str(end - start),
            "Accept-Ranges": "none" if faults.dl_ignore_range else "bytes",
        }
        if not faults.dl_no_etag:
            headers["ETag"] = content.etag
        if not faults.dl_no_last_modified:
            headers["Last-Modified"] = formatdate(_LAST_MODIFIED_BASE + 3600 * content.version, usegmt=True)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{content.size}"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        self._send_body(content, start, end)

    def _send_body(self, content: VideoContent, start: int, end: int) -> None:
        emu = self.emu
        short = emu.take("dl_short_body")
        reset = not short and emu.take("dl_reset")
        cut_at = start + (end - start) // 2 if short or reset else None
        rate = emu.state.faults.dl_rate_bytes_per_second
        chunk = 64 * 1024 if rate else 1024 * 1024
        began, sent = time.monotonic(), 0
        for piece in content.iter_range(start, cut_at if cut_at is not None else end, chunk):
            self.wfile.write(piece)
            sent += len(piece)
            if rate:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        if cut_at is not None:
            self.close_connection = True
            if reset:
                # SO_LINGER 0: close() sends RST, a reset mid-body as a broken middlebox does.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)

    def _auth_key_valid(self, path: str, auth_key: str) -> bool:
        try:
            expiry_text, rand, generation_text, digest = auth_key.split("-")
            expiry, generation = int(expiry_text), int(generation_text)
        except ValueError:
            return False
        return (
            expiry >= time.time()
            and generation == self.emu.state.url_generation
            and secrets.compare_digest(digest, _cdn_md5(path, expiry, rand, generation))
        )

    # --- admin --------------------------------------------------------------------------------------------

    def _admin(self, path: str) -> None:
        emu = self.emu
        raw = self._body()
        payload = json.loads(raw) if raw else {}
        name = path.removeprefix("/_emulator/")
        if name == "videos" and self.command == "POST":
            for item in payload:
                emu.add_video(
                    item["vid"], int(item["size"]), item.get("outcome", "SUCCESS"), item.get("readyAfter")
                )
            return self._json(200, {"videos": len(payload)})
        if name.startswith("videos/"):
            spec = emu.video(name.removeprefix("videos/"))
            return self._json(200, {**asdict(spec), "sha256": spec.content().sha256()})
        if name == "apps":
            emu.state.apps[payload["appId"]] = {
                "secret": payload["secret"],
                "state": payload.get("state", "ok"),
            }
            return self._json(200, {"ok": True})
        if name == "faults":
            try:
                emu.set_faults(**payload)
            except ValueError as exc:
                return self._json(400, {"message": str(exc)})
            return self._json(200, asdict(emu.state.faults))
        if name == "expire-urls":
            emu.expire_urls()
            return self._json(200, {"generation": emu.state.url_generation})
        if name == "requests":
            with emu.lock:
                return self._json(200, list(emu.state.requests))
        if name == "tasks" and self.command == "POST":
            task_id = emu.create_task(payload["vids"], payload.get("expireDays", 1))
            return self._json(200, {"taskId": task_id})
        return self._json(404, {"message": f"no admin route {name}"})

    # --- plumbing -----------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, status: int, payload: Any) -> None:
        self._raw(status, json.dumps(payload, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _raw(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _cut_short(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range as [start, end), or None when unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    if first == "":
        length = int(last)
        return (max(0, size - length), size) if length > 0 else None
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    return (start, end) if start < end else None
