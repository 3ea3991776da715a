"""moto in server mode over real HTTP, optionally with Lambda invocations routed to local handlers.

moto cannot run Lambda code without Docker, but its Step Functions interpreter invokes Lambda over HTTP at
``localhost:$MOTO_PORT``. A WSGI middleware in front of moto's app answers those invocations by calling the
project's handler in-process and passes every other request to moto.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

#: A Lambda handler as the runtime calls it; the context is a small stand-in (see LocalContext).
Handler = Callable[[Any, Any], Any]
_INVOKE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
_StartResponse = Callable[..., Any]


class LocalContext:
    """The part of Lambda's context object our handlers use."""

    def __init__(self, function_name: str, timeout_seconds: float, memory_mb: int = 1024) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaRouter:
    """Invocations of known function names (or ARNs ending in them) go to local handlers."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.handlers: dict[str, tuple[Handler, float, int]] = {}  # name -> (handler, timeout s, memory MB)

    def __call__(self, environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        match = _INVOKE.match(environ.get("PATH_INFO", ""))
        if not match or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        name = match["name"]
        if name.startswith("arn:"):  # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
            name = name.split(":")[6]
        if name not in self.handlers:
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        handler, timeout, memory = self.handlers[name]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b"{}"
        event = json.loads(raw or b"{}")
        headers = [("Content-Type", "application/json"), ("X-Amz-Executed-Version", "$LATEST")]
        try:
            body = json.dumps(handler(event, LocalContext(name, timeout, memory))).encode()
        except Exception as exc:
            body = json.dumps(
                {
                    "errorType": type(exc).__name__,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_exception(exc)[-3:],
                }
            ).encode()
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
        return [body]


class _QuietHandler(MotoRequestHandler):
    def log_request(self, *_: Any) -> None:
        """One line per S3 part would drown the demo's output."""


class MotoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = DomainDispatcherApplication(create_backend_app)
        self.router = LambdaRouter(self.app)
        self._server = make_server(host, port, self.router, threaded=True, request_handler=_QuietHandler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, execute_state_machines: bool = True) -> MotoServer:
        # moto's interpreter calls Lambda (and other services) at localhost:$MOTO_PORT: this server.
        os.environ["MOTO_PORT"] = str(self.port)
        if execute_state_machines:
            from moto.core.config import default_user_config

            default_user_config["stepfunctions"] = {"execute_state_machine": True}
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()
        return self

    def register_function(self, name: str, handler: Handler, timeout_seconds: float, memory_mb: int) -> None:
        self.router.handlers[name] = (handler, timeout_seconds, memory_mb)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
