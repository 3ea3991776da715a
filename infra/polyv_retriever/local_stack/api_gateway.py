"""An API Gateway (REST, proxy integration) front on a local port: HTTP requests become the proxy events
the API function receives in AWS, and its answers become HTTP responses.

IAM auth, as far as it can be without IAM: a request that carries a SigV4 signature has it checked (with
the local stack's own AWS credentials, the ones its moto accepts) and is refused with 403 when it does not
match, as API Gateway refuses it; an unsigned request is let through (the local tools do not sign), since
there are no IAM policies here to decide on it. Unknown routes answer 403 "Missing Authentication Token".
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
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.handler, self.timeout, self.stage = handler, timeout_seconds, stage
        #: access key id -> secret: who may sign requests (the local stack's own credentials).
        self.credentials: dict[str, str] = dict(credentials or {})
        self.routes = [(method, resource, _route_pattern(resource)) for method, resource in routes]
        front = self

        class _Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def __getattr__(self, name: str) -> Any:
                # Every method (TRACE, OPTIONS, made-up ones) goes where API Gateway sends it: to a route, or
                # to its 403 for none; http.server's own 501 page is no answer API Gateway gives.
                if name.startswith("do_"):
                    return lambda: front._serve(self)
                raise AttributeError(name)

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
        refused = signature_problem(request, body, self.credentials)
        if refused:
            return _respond(request, 403, {"Content-Type": "application/json"}, json.dumps(refused).encode())
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
            # Bytes that are not UTF-8 stay visible (as lone surrogates) for the function to refuse; a
            # replacement character would turn a malformed request into a different, valid one.
            "body": body.decode("utf-8", "surrogateescape") if body else None,
            "isBase64Encoded": False,
        }


_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/"
    r"aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?Signature=(?P<signature>[0-9a-f]{64})$"
)
_SKEW_SECONDS = 15 * 60


def signature_problem(
    request: BaseHTTPRequestHandler, body: bytes, credentials: dict[str, str]
) -> dict[str, str] | None:
    """None if the request is unsigned or its SigV4 signature is right; else API Gateway's refusal."""
    import hmac
    from datetime import UTC, datetime

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    header = request.headers.get("Authorization")
    if header is None:
        return None
    match = _AUTHORIZATION.match(header)
    if not match or match["service"] != "execute-api":
        return {"message": "Authorization header requires a SigV4 signature for execute-api"}
    secret = credentials.get(match["key"])
    if secret is None:
        return {"message": "The security token included in the request is invalid."}
    stamp = request.headers.get("X-Amz-Date", "")
    try:
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return {"message": "X-Amz-Date is missing or malformed"}
    if abs((datetime.now(UTC) - signed_at).total_seconds()) > _SKEW_SECONDS:
        return {"message": "Signature expired: the request's X-Amz-Date is more than 15 minutes off"}
    names = match["signed"].split(";")
    headers = {name: request.headers.get(name, "") for name in names}
    signed = AWSRequest(method=request.command, url=f"http://{headers.get('host')}{request.path}", data=body)
    for name, value in headers.items():
        signed.headers[name] = value
    signed.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(match["key"], secret), match["service"], match["region"])
    canonical = signer.canonical_request(signed)
    expected = signer.signature(signer.string_to_sign(signed, canonical), signed)
    if not hmac.compare_digest(expected, match["signature"]):
        return {
            "message": "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        }
    return None


def _respond(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
    request.send_response(status)
    for name, value in headers.items():
        if name.lower() != "content-length":
            request.send_header(name, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    if request.command != "HEAD":  # a HEAD answer has the headers of a GET, never its body
        request.wfile.write(body)
