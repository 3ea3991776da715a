"""A small real HTTP/1.1 download server for tests of the source's connection handling: keep-alive, Range,
configurable redirects with bodies, and counts of requests (per path) and of connections accepted.

    server = DownloadServer().start()
    server.add_file("/v.mp4", data)
    server.redirect("/old.mp4", "/v.mp4", status=302, body=b"x" * 1000)
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class _Redirect:
    location: str
    status: int
    body: bytes
    chunked: bool


@dataclass
class _State:
    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, _Redirect] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.state.lock:
            self.state.connections += 1
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients drop connections on purpose here (a redirect's body not wanted): no traceback."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: connection reuse is what the tests are about
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.partition("?")[0]
        with state.lock:
            state.requests[path] += 1
            redirect = state.redirects.get(path)
            data = state.files.get(path)
        if redirect is not None:
            self.send_response(redirect.status)
            self.send_header("Location", redirect.location)
            self.send_header("Content-Type", "text/html")
            if redirect.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(redirect.body), redirect.body))
            else:
                self.send_header("Content-Length", str(len(redirect.body)))
                self.end_headers()
                self.wfile.write(redirect.body)
            return
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end, status = 0, len(data), 200
        header = self.headers.get("Range", "")
        if header.startswith("bytes="):
            first, _, last = header.removeprefix("bytes=").partition("-")
            start, end, status = int(first), min(int(last) + 1, len(data)), 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:end])


class DownloadServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = _Server((host, port), _Handler)
        self._httpd.state = _State()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def state(self) -> _State:
        return self._httpd.state

    @property
    def origin(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> DownloadServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> DownloadServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def add_file(self, path: str, data: bytes) -> None:
        with self.state.lock:
            self.state.files[path] = data

    def redirect(
        self, path: str, location: str, *, status: int = 302, body: bytes = b"", chunked: bool = False
    ) -> None:
        with self.state.lock:
            self.state.redirects[path] = _Redirect(location, status, body, chunked)

    def requests(self, path: str) -> int:
        with self.state.lock:
            return self.state.requests[path]
