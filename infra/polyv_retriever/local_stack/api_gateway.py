"""An API Gateway (REST, proxy integration) front on a local port: HTTP requests become the proxy events
the API function receives in AWS, and its answers become HTTP responses.

IAM auth is not emulated (there is no IAM here): every local request is treated as signed. Unknown routes
answer 403 "Missing Authentication Token", as API Gateway does.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from polyv_retriever.local_stack.moto_server import LocalContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _route_pattern(resource: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(resource)) + "$")


class ApiGatewayFront:
    def __init__(
        self,
        handler: Handler,
        *,
        routes: list[tuple[str, str]],
        timeout_seconds: float,
        host: str = "127.0.0.1",
        port: int = 0,
        stage: str = "v1",
    ) -> None:
        self.handler, self.timeout, self.stage = handler, timeout_seconds, stage
        self.routes = [(method, resource, _route_pattern(resource)) for method, resource in routes]
        front = self

        class _Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                front._serve(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        self._server = ThreadingHTTPServer((host, port), _Request)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{self.stage}"

    def start(self) -> ApiGatewayFront:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="api-gateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        path = url.path.removeprefix(f"/{self.stage}") or "/"
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        for method, resource, pattern in self.routes:
            match = pattern.match(path)
            if match and method == request.command:
                event = self._event(
                    request,
                    resource=resource,
                    path=path,
                    path_parameters=match.groupdict(),
                    query=url.query,
                    body=body,
                )
                try:
                    answer = self.handler(event, LocalContext("ApiFunction", self.timeout))
                except Exception as exc:
                    return _respond(
                        request,
                        502,
                        {"Content-Type": "application/json"},
                        json.dumps({"message": f"Internal server error ({type(exc).__name__})"}).encode(),
                    )
                payload = answer.get("body") or ""
                data = base64.b64decode(payload) if answer.get("isBase64Encoded") else payload.encode()
                headers = {**answer.get("headers", {})}
                for name, values in (answer.get("multiValueHeaders") or {}).items():
                    headers[name] = ", ".join(values)
                return _respond(request, int(answer.get("statusCode", 200)), headers, data)
        _respond(
            request, 403, {"Content-Type": "application/json"}, b'{"message":"Missing Authentication Token"}'
        )

    def _event(
        self,
        request: BaseHTTPRequestHandler,
        *,
        resource: str,
        path: str,
        path_parameters: dict[str, str],
        query: str,
        body: bytes,
    ) -> dict[str, Any]:
        multi_query = parse_qs(query, keep_blank_values=True)
        headers = dict(request.headers.items())
        return {
            "resource": resource,
            "path": path,
            "httpMethod": request.command,
            "headers": headers,
            "multiValueHeaders": {k: request.headers.get_all(k) or [] for k in headers},
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": resource,
                "httpMethod": request.command,
                "path": f"/{self.stage}{path}",
                "stage": self.stage,
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": int(time.time() * 1000),
                "identity": {"sourceIp": request.client_address[0], "userArn": "local"},
                "accountId": "123456789012",
                "apiId": "local",
            },
            "body": body.decode("utf-8", "replace") if body else None,
            "isBase64Encoded": False,
        }


def _respond(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
    request.send_response(status)
    for name, value in headers.items():
        if name.lower() != "content-length":
            request.send_header(name, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)
