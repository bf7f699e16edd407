"""An OpenAI-compatible moderation endpoint, standard library only.

Applications that already call OpenAI's ``POST /v1/moderations`` switch to the local CPU moderator by changing
one base URL. The app is a plain WSGI callable (``make_app``), so it also runs under gunicorn or any WSGI server:

    LITE_MODERATION_MODEL=/path/to/model gunicorn 'lite_moderation.server:create_app()'

``serve`` runs it on a small built-in server: a bounded pool of worker threads, a per-read socket timeout and a
whole-body deadline (a stalled client cannot hold a thread forever), and a clean stop on Ctrl-C or SIGTERM.
Requests are logged (method, path, status, latency, item count) through ``logging``; their text never is.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from .data import json_type
from .explain import explain, resolve_labels
from .persistence import load_scorer
from .thresholds import resolve_threshold

if TYPE_CHECKING:
    from .fast import FastScorer
    from .model import ModerationClassifier

__all__ = [
    "DEFAULT_MAX_BATCH", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_READ_TIMEOUT", "DEFAULT_THREADS", "ModerationApp",
    "ModerationServer", "create_app", "make_app", "make_server", "serve",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_MAX_BATCH = 256
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_THREADS = 8
MODEL_ENV = "LITE_MODERATION_MODEL"
READ_TIMEOUT_KEY = "lite_moderation.read_timeout"
_CHUNK = 64 * 1024
_LINGER_SECONDS = 1.0
_JSON = [("Content-Type", "application/json")]

StartResponse = Callable[..., Any]


class ApiError(Exception):
    """A request the API refuses, answered as OpenAI does: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.headers = headers or []

    def payload(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


# ------------------------------------------------------------------------------------------------ the app


class ModerationApp:
    """The WSGI application: routes, request limits and the OpenAI response shape around one loaded model.

    One instance is shared by every worker thread: scoring only reads the model.
    """

    def __init__(self, model: ModerationClassifier | FastScorer, *, model_name: str | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_batch: int = DEFAULT_MAX_BATCH,
                 threshold: float | str | None = None) -> None:
        self.model = model
        self.threshold = resolve_threshold(threshold, model)  # checked at start-up, not per request
        self.model_name = model_name or _model_name(model)
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        self._model_entry = _model_entry(model, self.model_name)
        self._routes: dict[str, dict[str, Callable[[dict], tuple[dict, int]]]] = {
            "/v1/moderations": {"POST": self._moderations},
            "/v1/explain": {"POST": self._explain},
            "/": {"GET": self._page},
            "/healthz": {"GET": self._health},
            "/v1/models": {"GET": self._models},
            f"/v1/models/{self.model_name}": {"GET": self._model},
        }

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        items, extra_headers = 0, []
        try:
            payload, items = self._dispatch(method, path, environ)
            status = 200
        except ApiError as error:
            payload, status, extra_headers = error.payload(), error.status, error.headers
        except Exception:  # a bug, not the client's fault: answer 500 and keep serving
            logger.exception("unexpected error on %s %s", method, _loggable_path(path, self._routes))
            error = ApiError(500, "internal server error")
            payload, status = error.payload(), error.status
        if isinstance(payload, Page):
            body, content_type = payload.body, [("Content-Type", payload.content_type)]
        else:
            body, content_type = json.dumps(payload).encode("utf-8"), _JSON
        headers = [*content_type, ("Content-Length", str(len(body))), *extra_headers]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        logger.info("%s %s %d %.1fms items=%d", method, _loggable_path(path, self._routes), status,
                    (time.perf_counter() - started) * 1000, items)
        return [body]

    def _dispatch(self, method: str, path: str, environ: dict) -> tuple[dict, int]:
        methods = self._routes.get(path)
        if methods is None:
            raise ApiError(404, "no such endpoint; try POST /v1/moderations, GET /v1/models or GET /healthz",
                           code="not_found")
        handler = methods.get(method)
        if handler is None:
            allowed = ", ".join(methods)
            raise ApiError(405, f"method {method} not allowed here (allowed: {allowed})",
                           code="method_not_allowed", headers=[("Allow", allowed)])
        return handler(environ)

    # -------------------------------------------------------------------------------------- endpoints

    def _moderations(self, environ: dict) -> tuple[dict, int]:
        request = _parse_json(self._read_body(environ))
        items = parse_moderation_request(request, self.max_batch)
        results = [_openai_result(r) for r in self.model.moderate(items, threshold=self.threshold)]
        return {"id": f"modr-{uuid.uuid4().hex}", "model": self.model_name, "results": results}, len(items)

    def _explain(self, environ: dict) -> tuple[dict, int]:
        """Each item's verdict and its exact explanation (see ``lite_moderation.explain``)."""
        request = _parse_json(self._read_body(environ))
        items = parse_moderation_request(request, self.max_batch)
        options = explain_options(request, self.model, self.threshold)
        for i, item in enumerate(items):
            if not "".join(item if isinstance(item, tuple) else (item,)).strip():
                where = "input" if isinstance(request["input"], str) else f"input[{i}]"
                raise ApiError(400, f"{where} is empty or only whitespace: nothing to explain", param=where)
        results = explain(self.model, items, **options)
        return {"id": f"modr-{uuid.uuid4().hex}", "model": self.model_name, "results": results}, len(items)

    def _page(self, environ: dict) -> tuple[Page, int]:
        """The try-it page: one self-contained HTML file (no external asset)."""
        return Page(try_it_page(), "text/html; charset=utf-8"), 0

    def _health(self, environ: dict) -> tuple[dict, int]:
        return {"status": "ok", "model": self.model_name}, 0

    def _models(self, environ: dict) -> tuple[dict, int]:
        return {"object": "list", "data": [self._model_entry]}, 0

    def _model(self, environ: dict) -> tuple[dict, int]:
        return self._model_entry, 0

    # -------------------------------------------------------------------------------------- body

    def _read_body(self, environ: dict) -> bytes:
        """The request body, refused early when too large and cut off when the client stalls.

        The deadline is the server's read timeout (``ModerationServer`` puts it in the environ), so one
        setting bounds both each socket read and the whole body.
        """
        length = _content_length(environ.get("CONTENT_LENGTH"))
        if length > self.max_body_bytes:
            raise ApiError(413, f"request body is {length} bytes; the limit is {self.max_body_bytes}",
                           code="body_too_large")
        timeout = environ.get(READ_TIMEOUT_KEY, DEFAULT_READ_TIMEOUT)
        return _read_exactly(environ["wsgi.input"], length, timeout)


class Page(NamedTuple):
    """A response that is not JSON: its bytes and content type."""

    body: bytes
    content_type: str


@functools.cache
def try_it_page() -> bytes:
    return (resources.files(__package__) / "static" / "index.html").read_bytes()


def explain_options(request: dict, model: object, threshold: float | None) -> dict:
    """The explain options of a request: ``labels`` (names), ``top`` (int >= 0 or null: all) and ``threshold``
    (a probability or one of the model's operating points; default: the server's cut-off)."""
    labels, top = request.get("labels"), request.get("top")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise ApiError(400, f"'labels' must be a list of label names, got {json_type(labels)}", param="labels")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 0):
        raise ApiError(400, f"'top' must be a whole number >= 0 or null, got {json.dumps(top)}", param="top")
    try:
        asked = resolve_labels(labels) if labels else None
    except ValueError as exc:
        raise ApiError(400, str(exc), param="labels") from None
    try:
        cut = resolve_threshold(request["threshold"], model) if request.get("threshold") is not None else threshold
    except ValueError as exc:
        raise ApiError(400, str(exc), param="threshold") from None
    return {"labels": asked, "top": top, "threshold": cut}


def _content_length(value: str | None) -> int:
    if value is None or not value.strip():
        raise ApiError(411, "a Content-Length header is required (chunked bodies are not supported)",
                       code="length_required")
    try:
        length = int(value)
    except ValueError:
        raise ApiError(400, "Content-Length is not an integer", code="bad_content_length") from None
    if length < 0:
        raise ApiError(400, "Content-Length is negative", code="bad_content_length")
    return length


def _read_exactly(stream: Any, length: int, timeout: float) -> bytes:
    """Read ``length`` bytes within ``timeout`` seconds in all: a trickling client is cut off too.

    ``read1`` (one socket read at most) lets the deadline be checked between reads; servers whose input
    has no ``read1`` fall back to ``read`` and their own timeouts.
    """
    read = getattr(stream, "read1", None) or stream.read
    deadline = time.monotonic() + timeout
    chunks, received = [], 0
    while received < length:
        if time.monotonic() > deadline:
            raise _timeout(received, length)
        try:
            chunk = read(min(length - received, _CHUNK))
        except (TimeoutError, OSError):
            raise _timeout(received, length) from None
        if not chunk:
            raise ApiError(400, f"body ended after {received} of {length} bytes", code="incomplete_body")
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


def _timeout(received: int, length: int) -> ApiError:
    return ApiError(408, f"timed out reading the body ({received} of {length} bytes received)",
                    code="read_timeout")


# ------------------------------------------------------------------------------------------------ request and answer


def _parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body is not valid UTF-8 (byte offset {exc.start})", code="invalid_utf8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                       code="invalid_json") from None
    except RecursionError:
        raise ApiError(400, "body is not valid JSON: nested too deeply", code="invalid_json") from None


def parse_moderation_request(request: Any, max_batch: int) -> list[str | tuple[str, str]]:
    """The items of an OpenAI moderation request: texts, QA pairs, or ``{"type": "text"}`` parts.

    ``model`` may name any model (clients often send OpenAI's names); this server answers with its own.
    """
    if not isinstance(request, dict):
        raise ApiError(400, f"body must be a JSON object, got {json_type(request)}")
    if "input" not in request:
        raise ApiError(400, "missing required field 'input' (a string or a list)", param="input")
    model = request.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, f"'model' must be a string, got {json_type(model)}", param="model")
    raw = request["input"]
    if isinstance(raw, str):
        return [_text(raw, "input")]
    if not isinstance(raw, list):
        raise ApiError(400, f"'input' must be a string or a list, got {json_type(raw)}", param="input")
    if not raw:
        raise ApiError(400, "'input' is an empty list: nothing to moderate", param="input")
    if len(raw) > max_batch:
        raise ApiError(400, f"'input' has {len(raw)} items; the limit is {max_batch} per request",
                       param="input", code="batch_too_large")
    return [_item(value, f"input[{i}]") for i, value in enumerate(raw)]


def _item(value: Any, param: str) -> str | tuple[str, str]:
    if isinstance(value, str):
        return _text(value, param)
    if not isinstance(value, dict):
        raise ApiError(400, f"{param} must be a string or an object, got {json_type(value)}", param=param)
    if "prompt" in value or "response" in value:  # either alone: a prompt alone, or a text alone
        prompt = _text(value.get("prompt", ""), f"{param}.prompt")
        response = _text(value.get("response", ""), f"{param}.response")
        if not prompt.strip() and not response.strip():
            raise ApiError(400, f"{param}: prompt and response are both empty: nothing to moderate", param=param)
        return prompt, response
    if value.get("type") == "text":
        return _text(value.get("text"), f"{param}.text")
    if "type" in value:
        raise ApiError(400, f"{param}: only text inputs are supported", param=param, code="unsupported_input")
    raise ApiError(400, f"{param} must be a string, a {{'prompt', 'response'}} pair or a {{'type': 'text'}} part",
                   param=param)


def _text(value: Any, param: str) -> str:
    """A text must be a string that encodes to UTF-8 (no lone surrogates from \\ud800 escapes)."""
    if not isinstance(value, str):
        raise ApiError(400, f"{param} must be a string, got {json_type(value)}", param=param)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(400, f"{param} contains an unpaired surrogate at character {exc.start}", param=param) from None
    return value


def _openai_result(result: dict) -> dict:
    """OpenAI's result fields first; ``unsafe_score`` (what ``flagged`` is decided on) is an extra."""
    return {"flagged": result["flagged"], "categories": result["categories"],
            "category_scores": result["category_scores"], "unsafe_score": result["unsafe_score"]}


def _model_name(model: ModerationClassifier | FastScorer) -> str:
    path = getattr(model, "path_", None)
    return f"lite-moderation-{Path(path).name}" if path else "lite-moderation"


def _model_entry(model: ModerationClassifier | FastScorer, name: str) -> dict:
    """The /v1/models entry: OpenAI's fields plus the model card (no file-system path)."""
    card = {**getattr(model, "card_", {}), "labels": list(model.labels_),
            "thresholds": dict(zip(model.labels_, map(float, model.thresholds_))),
            "operating_points": dict(getattr(model, "operating_points_", {}))}
    path = getattr(model, "path_", None)
    created = int(os.stat(Path(path) / "model.json").st_mtime) if path else 0
    return {"id": name, "object": "model", "created": created, "owned_by": "lite-moderation", "card": card}


def _loggable_path(path: str, routes: dict) -> str:
    """Known routes as they are; anything else shortened and escaped (a path is client-controlled)."""
    return path if path in routes else ascii(path[:60])


# ------------------------------------------------------------------------------------------------ factories


def make_app(model: ModerationClassifier | FastScorer | None = None, *, model_name: str | None = None,
             max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_batch: int = DEFAULT_MAX_BATCH,
             threshold: float | str | None = None) -> ModerationApp:
    """The WSGI app around ``model`` (default: the shipped model); ``threshold`` overrides its unsafe cut-off
    (a probability or an operating point such as "strict")."""
    return ModerationApp(load_scorer() if model is None else model, model_name=model_name,
                         max_body_bytes=max_body_bytes, max_batch=max_batch, threshold=threshold)


def create_app() -> ModerationApp:
    """WSGI factory for gunicorn & co.: ``gunicorn 'lite_moderation.server:create_app()'``.

    Settings come from the environment, since a factory takes no arguments: LITE_MODERATION_MODEL (model
    directory, default: the shipped model), LITE_MODERATION_MAX_BODY_BYTES, LITE_MODERATION_MAX_BATCH,
    LITE_MODERATION_THRESHOLD (a probability or an operating point such as "strict").
    """
    configure_logging()
    model_path = os.environ.get(MODEL_ENV) or None
    return make_app(
        load_scorer(model_path),
        max_body_bytes=int(os.environ.get("LITE_MODERATION_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
        max_batch=int(os.environ.get("LITE_MODERATION_MAX_BATCH", DEFAULT_MAX_BATCH)),
        threshold=_threshold_from_env(os.environ.get("LITE_MODERATION_THRESHOLD")),
    )


def _threshold_from_env(value: str | None) -> float | str | None:
    """A probability stays a number; anything else is an operating point's name (checked by the app)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def configure_logging() -> None:
    """Request logs to stderr, unless the host program has set up logging itself."""
    if logging.getLogger().handlers or logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


# ------------------------------------------------------------------------------------------------ the server


class _RequestHandler(WSGIRequestHandler):
    """wsgiref's handler with timeouts on every read and a lingering close.

    The socket timeout bounds each read (headers included); the app bounds the whole body. Closing after
    a short drain lets a client that is still sending (e.g. an oversized body) read its 413 instead of
    a connection reset.
    """

    def setup(self) -> None:
        self.timeout = self.server.read_timeout
        super().setup()

    def handle(self) -> None:
        try:
            self._handle_one()
        except (TimeoutError, ConnectionError):
            logger.info("- - connection closed: no complete request within %.1fs or client went away",
                        self.server.read_timeout)

    def _handle_one(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = ServerHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True)
        handler.request_handler = self
        handler.run(self.server.get_app())

    def finish(self) -> None:
        super().finish()
        _linger(self.connection)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """The app logs every request it answers; this layer only logs what it refuses itself."""

    def log_error(self, format: str, *args: Any) -> None:
        logger.info("- - %s (malformed HTTP request)", getattr(self, "command", "") or "-")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence wsgiref's own access log (it would print the request line)."""


def _linger(connection: socket.socket) -> None:
    """Half-close, then read and discard what the client still sends, for at most a second."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            connection.settimeout(left)
            if not connection.recv(_CHUNK):
                break


class ModerationServer(WSGIServer):
    """A WSGI server with a bounded pool of worker threads.

    When every worker is busy the accept loop waits, and new connections queue in the kernel backlog
    instead of spawning unbounded threads.
    """

    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Callable, threads: int = DEFAULT_THREADS,
                 read_timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(threads)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="lite-moderation")
        super().__init__(address, _RequestHandler)
        self.set_app(app)

    def server_bind(self) -> None:
        """Skip HTTPServer's reverse-DNS lookup of the host name (slow or hanging on some networks)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]
        self.setup_environ()
        self.base_environ[READ_TIMEOUT_KEY] = self.read_timeout

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        self._slots.acquire()
        self._pool.submit(self._work, request, client_address)

    def _work(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            logger.exception("error handling a connection")
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def server_close(self) -> None:
        """Stop listening, then let the requests in flight finish (each is bounded by the read timeout)."""
        super().server_close()
        self._pool.shutdown(wait=True)


def make_server(app: Callable, host: str = "127.0.0.1", port: int = 8000, threads: int = DEFAULT_THREADS,
                read_timeout: float = DEFAULT_READ_TIMEOUT) -> ModerationServer:
    """A bound, not yet running server (port 0 picks a free port: see ``server.server_port``)."""
    return ModerationServer((host, port), app, threads=threads, read_timeout=read_timeout)


def serve(model_path: str | os.PathLike | None = None, host: str = "127.0.0.1", port: int = 8000,
          threads: int = DEFAULT_THREADS, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
          max_batch: int = DEFAULT_MAX_BATCH, read_timeout: float = DEFAULT_READ_TIMEOUT,
          threshold: float | str | None = None) -> None:
    """Load the model and serve until Ctrl-C or SIGTERM, then return after requests in flight finish."""
    configure_logging()
    app = make_app(load_scorer(model_path), max_body_bytes=max_body_bytes, max_batch=max_batch, threshold=threshold)
    server = make_server(app, host, port, threads=threads, read_timeout=read_timeout)
    shown_host = f"[{host}]" if ":" in host else host
    with _interrupt_on_signals():  # before the "serving" line: a signal right after it must stop cleanly
        try:
            logger.info("serving %s on http://%s:%d (threads=%d); stop with Ctrl-C or SIGTERM", app.model_name,
                        shown_host, server.server_port, threads)
            server.serve_forever()
        except KeyboardInterrupt:
            logger.info("shutting down (a second Ctrl-C or SIGTERM aborts)")
        finally:
            server.server_close()
    logger.info("stopped")


@contextlib.contextmanager
def _interrupt_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT stop the server the way Ctrl-C does, even when SIGINT was inherited as ignored
    (a process started in the background by a shell ignores it); only the main thread can install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
