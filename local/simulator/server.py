"""The WSGI app (routing, auth, faults, call log, error envelope) and its loopback server."""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response
from werkzeug.wsgi import ClosingIterator

from . import errors
from .faults import CallLog, Fault, FaultPlan
from .handlers import Handlers
from .multipart import SpoolingRequest

log = logging.getLogger(__name__)

# (method, OpenAI path template, Handlers method name)
ROUTES = (
    ("POST", "/v1/files", "create_file"),
    ("GET", "/v1/files", "list_files"),
    ("GET", "/v1/files/{file_id}", "retrieve_file"),
    ("DELETE", "/v1/files/{file_id}", "delete_file"),
    ("GET", "/v1/files/{file_id}/content", "file_content"),
    ("POST", "/v1/uploads", "create_upload"),
    ("POST", "/v1/uploads/{upload_id}/parts", "add_upload_part"),
    ("POST", "/v1/uploads/{upload_id}/complete", "complete_upload"),
    ("POST", "/v1/uploads/{upload_id}/cancel", "cancel_upload"),
    ("POST", "/v1/batches", "create_batch"),
    ("GET", "/v1/batches", "list_batches"),
    ("GET", "/v1/batches/{batch_id}", "retrieve_batch"),
    ("POST", "/v1/batches/{batch_id}/cancel", "cancel_batch"),
    ("GET", "/v1/videos/{video_id}/content", "video_content"),
)


def build_url_map() -> Map:
    rules = []
    for method, template, name in ROUTES:
        werkzeug_path = template.replace("{", "<").replace("}", ">")
        rules.append(Rule(werkzeug_path, methods=[method], endpoint=(method, template, name)))
    return Map(rules, strict_slashes=False)


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


class DropConnection(Exception):
    """A scripted fault asks for the connection to be reset instead of answered."""


class FailFirst(Exception):
    """A scripted fault delivers its failure before (if it lands late) the call is performed."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.kind)
        self.fault = fault


def reset_connection(environ: dict[str, Any]) -> None:
    """Reset the TCP connection so the client sees no response at all."""
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)


def drop_connection(environ: dict[str, Any]) -> None:
    reset_connection(environ)
    # A ConnectionError is how werkzeug's handler learns the connection is gone.
    raise ConnectionAbortedError("simulated connection drop")


def wait_for_client_close(environ: dict[str, Any], cap: float) -> None:
    """Block until the client closes its end (a peek sees EOF), or `cap` seconds pass. The
    request has been read in full, so the client has nothing more to send while it waits."""
    sock = environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        return
    sock.settimeout(cap)
    # EOF, a reset, or the cap: either way the client is no longer listening for an answer.
    with contextlib.suppress(OSError):
        sock.recv(1, socket.MSG_PEEK)


def read_whole_request(request: SpoolingRequest) -> None:
    """Take in the body now, so the call can still be performed once the connection is gone."""
    request.files  # noqa: B018 - parses (and spools) a multipart body
    request.get_data(cache=True)  # any other body


class RateLimitedStream(io.RawIOBase):
    """A request body that arrives no faster than `rate` bytes per second."""

    def __init__(self, stream: Any, rate: float) -> None:
        self._stream = stream
        self._rate = rate
        self._started = time.monotonic()
        self._arrived = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        if data:
            self._arrived += len(data)
            if (due := self._started + self._arrived / self._rate - time.monotonic()) > 0:
                time.sleep(due)
        return len(data)


class SimulatorApp:
    def __init__(
        self,
        handlers: Handlers,
        api_key: str,
        faults: FaultPlan,
        calls: CallLog,
        spool_dir: Path,
        latency: Callable[[], float],
        link_rate: Callable[[], float | None],
    ) -> None:
        self.handlers = handlers
        self.api_key = api_key
        self.faults = faults
        self.calls = calls
        self.spool_dir = spool_dir
        self.latency = latency
        self.link_rate = link_rate
        self.urls = build_url_map().bind("127.0.0.1")

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if (rate := self.link_rate()) is not None:
            environ["wsgi.input"] = RateLimitedStream(environ["wsgi.input"], rate)
        request = SpoolingRequest(environ, self.spool_dir)
        method = request.method
        template, name, params = self._match(request)
        try:
            response = self._serve(request, method, template, name, params)
        except DropConnection:
            # Logged before the reset, so a client that has seen the drop also sees it logged.
            self.calls.append((method, template, 0))
            request.discard_spooled()
            drop_connection(environ)
            raise
        except FailFirst as failing:
            perform = partial(self._perform, request, method, template, name, params)
            return self._fail_first(failing.fault, request, environ, start_response, perform)
        except BaseException:
            request.discard_spooled()
            raise
        request.discard_spooled()
        self.calls.append((method, template, response.status_code))
        return response(environ, start_response)

    def _fail_first(
        self,
        fault: Fault,
        request: SpoolingRequest,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        perform: Callable[[], Response],
    ) -> Iterable[bytes]:
        """Deliver the fault's failure; then, if it lands late, perform the call for real. The
        call lands on a thread of its own, so a held one keeps no connection busy."""

        def perform_late() -> None:
            try:
                fault.wait_until_released()
                fault.record_landing(perform().status_code)
            finally:
                request.discard_spooled()

        def land() -> None:
            if not fault.lands_late:
                request.discard_spooled()
                return
            threading.Thread(target=perform_late, name="late-landing", daemon=True).start()

        read_whole_request(request)
        method, template = request.method, self._match(request)[0]  # as the log names calls
        if fault.kind in {"drop", "hang"}:
            if fault.kind == "hang":
                wait_for_client_close(environ, fault.hang_seconds)
            self.calls.append((method, template, 0))
            reset_connection(environ)
            land()
            raise ConnectionAbortedError(f"simulated {fault.kind}")
        failure = errors.server_error(int(fault.kind))
        self.calls.append((method, template, failure.status))
        answered = json_response(failure.status, failure.body(), failure.headers)
        # werkzeug calls close() once the answer is written: only then does the call land.
        return ClosingIterator(answered(environ, start_response), [land])

    def _match(self, request: SpoolingRequest) -> tuple[str, str | None, dict[str, Any]]:
        try:
            endpoint, params = self.urls.match(request.path, method=request.method)
        except HTTPException:
            return request.path, None, {}
        _, template, name = endpoint
        return str(template), str(name), dict(params)

    def _serve(
        self,
        request: SpoolingRequest,
        method: str,
        template: str,
        name: str | None,
        params: dict[str, Any],
    ) -> Response:
        try:
            self._apply_faults(f"{method} {template}", params)
        except errors.ApiError as failure:
            return json_response(failure.status, failure.body(), failure.headers)
        return self._perform(request, method, template, name, params)

    def _perform(
        self,
        request: SpoolingRequest,
        method: str,
        template: str,
        name: str | None,
        params: dict[str, Any],
    ) -> Response:
        """The call itself, past any fault: authenticated, routed, and answered."""
        try:
            self._authenticate(request)
            if name is None:
                raise errors.invalid_url(method, request.path)
            result = getattr(self.handlers, name)(request, **params)
        except errors.ApiError as failure:
            return json_response(failure.status, failure.body(), failure.headers)
        except Exception:
            log.exception("simulator handler failed: %s %s", method, template)
            crash = errors.server_error(500)
            return json_response(crash.status, crash.body())
        if isinstance(result, Response):
            return result
        return json_response(200, result)

    def _apply_faults(self, route: str, params: dict[str, Any] | None = None) -> None:
        """Persistent latency, then the next scripted fault for this route, if any."""
        if (delay := self.latency()) > 0:
            time.sleep(delay)
        fault = self.faults.take(
            route, {name: str(value) for name, value in (params or {}).items()}
        )
        if fault is None:
            return
        if fault.lands_late or fault.kind == "hang":
            raise FailFirst(fault)
        if fault.kind == "drop":
            raise DropConnection
        if fault.kind == "latency":
            time.sleep(fault.delay)
        elif fault.kind == "429":
            raise errors.rate_limited(fault.retry_after)
        else:
            raise errors.server_error(int(fault.kind))

    def _authenticate(self, request: SpoolingRequest) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise errors.missing_api_key()
        if not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
            raise errors.incorrect_api_key(given.strip())


class QuietRequestHandler(WSGIRequestHandler):
    """No per-request access log lines: tests and benchmarks make thousands of calls."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


# How often serve_forever checks for shutdown; stop() waits up to this long.
SHUTDOWN_POLL_SECONDS = 0.02


class LoopbackServer:
    def __init__(self, app: SimulatorApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=QuietRequestHandler
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
            name="openai-batch-simulator",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
