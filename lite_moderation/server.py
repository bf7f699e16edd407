"""An OpenAI-compatible moderation endpoint on the waitress HTTP server.

Applications that already call OpenAI's ``POST /v1/moderations`` switch to the local CPU moderator by changing
one base URL. The app is a plain WSGI callable (``make_app``), so it also runs under any WSGI server:

    LITE_MODERATION_MODEL=/path/to/model waitress-serve --call 'lite_moderation.server:create_app'

``serve`` runs it on waitress (pure Python): one asynchronous I/O thread buffers each whole request before a
worker thread sees it, so slow or idle clients hold a socket, not a worker. Around waitress this module adds
what it lacks: errors of the HTTP layer in the OpenAI JSON shape, a deadline for a whole request (waitress only
times out idle sockets), ``--workers N`` processes sharing one listening socket, a graceful stop on SIGTERM,
SIGHUP or Ctrl-C that answers every request already sent, including those still waiting in the kernel's listen
queue, and a refusal of any request whose body length a proxy could read otherwise (request smuggling).
The app itself answers only Host names it is told are its own (DNS rebinding) and no other page's Origin, and
its page runs under a Content-Security-Policy. Requests are logged (method, path, status, latency, item count)
through ``logging``, each client-sent part bounded and escaped; their text never is.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import errno
import functools
import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError, get_header_lines
from waitress.rfc7230 import HEADER_FIELD_RE
from waitress.server import create_server
from waitress.task import ErrorTask, WSGITask

from .data import json_type, parse_json_text
from .explain import explainer_for, resolve_labels
from .fast import DEFAULT_CACHE_BYTES
from .labels import LabelSet, label_set_of
from .persistence import load_scorer
from .taxonomy import openai_categories, short_name
from .thresholds import checked_threshold, message_cut_offs

if TYPE_CHECKING:
    from .fast import FastScorer
    from .model import ModerationClassifier

__all__ = [
    "DEFAULT_MAX_BATCH", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_READ_TIMEOUT", "DEFAULT_THREADS", "DEFAULT_WORKERS",
    "ModerationApp", "ModerationServer", "ServerFailed", "bind_socket", "create_app", "make_app", "make_server", "serve",
]

logger = logging.getLogger(__name__)
#: One line per request (method, path, status, latency, item count; never the text): ``serve --quiet`` drops them.
request_logger = logging.getLogger(f"{__name__}.requests")

DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_MAX_BATCH = 256
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_THREADS = 4
DEFAULT_WORKERS = 1
DEFAULT_CONNECTION_LIMIT = 10_000
#: /v1/explain bounds its work and its answer (an explanation is many times the size of its input):
#: characters explained per request (prompts and responses together), terms shown per label (``top``; the
#: others are summed into ``rest``), spans listed per term (``span_count`` gives them all), answer bytes.
DEFAULT_MAX_EXPLAIN_CHARS = 100_000
EXPLAIN_MAX_TOP = 100
EXPLAIN_MAX_SPANS = 20
DEFAULT_MAX_EXPLAIN_BYTES = 4_000_000
SERVER_IDENT = "lite-moderation"
MODEL_ENV = "LITE_MODERATION_MODEL"
READ_TIMEOUT_KEY = "lite_moderation.read_timeout"
_CHUNK = 64 * 1024
_JSON = [("Content-Type", "application/json")]
_NOSNIFF = [("X-Content-Type-Options", "nosniff")]

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

    One instance is shared by every worker thread: scoring only reads the model. Everything a request needs
    (the scorer, the explainer, the model card, the page) is read once, here: a model directory changed on
    disk later changes nothing a running server answers. A request is answered only
    when its Host is a loopback name or address or one of ``allowed_hosts`` (421 otherwise: a page that
    rebinds its own domain to this address still sends that domain) and, when it has an Origin, that is the
    server's own page or one of ``allowed_origins`` (403 otherwise: a foreign page's text/plain POST needs no
    preflight). Every answer says ``X-Content-Type-Options: nosniff``; the page comes with a CSP.
    """

    def __init__(self, model: ModerationClassifier | FastScorer, *, model_name: str | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_batch: int = DEFAULT_MAX_BATCH,
                 threshold: float | str | None = None, allowed_hosts: Iterable[str] = (),
                 allowed_origins: Iterable[str] = ()) -> None:
        self.model = model
        self._thread_scorers = threading.local()
        self._scorers: list = []  # every thread's, for diagnostics (scorers())
        self.threshold = checked_threshold(threshold, model)  # checked at start-up, not per request
        self.model_name = model_name or _model_name(model)
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        self.allowed_hosts = checked_hosts(allowed_hosts)
        self.allowed_origins = checked_origins(allowed_origins)
        self.max_explain_chars = DEFAULT_MAX_EXPLAIN_CHARS
        self.max_explain_bytes = DEFAULT_MAX_EXPLAIN_BYTES
        self._model_entry = _model_entry(model, self.model_name, self.threshold)
        self.explainer, self._unexplainable = _explainer_of(model)
        try_it_page()
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
            self._check_caller(environ)
            extra_headers = self._cors_headers(environ)
            if method == "OPTIONS" and path in self._routes:
                return self._preflight(environ, path, extra_headers, start_response)
            payload, items = self._dispatch("GET" if method == "HEAD" else method, path, environ)
            status = 200
        except ApiError as error:
            payload, status, extra_headers = error.payload(), error.status, error.headers
        except Exception:  # a bug, not the client's fault: answer 500 and keep serving
            logger.exception("unexpected error on %s %s", _loggable_method(method), _loggable_path(path, self._routes))
            error = ApiError(500, "internal server error")
            payload, status = error.payload(), error.status
        if isinstance(payload, Page):
            body, content_type = payload.body, [("Content-Type", payload.content_type), *page_headers()]
        else:
            body, content_type = json.dumps(payload).encode("utf-8"), _JSON
        headers = [*content_type, ("Content-Length", str(len(body))), *_NOSNIFF, *extra_headers]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        request_logger.info("%s %s %d %.1fms items=%d", _loggable_method(method), _loggable_path(path, self._routes), status,
                    (time.perf_counter() - started) * 1000, items)
        return [b""] if method == "HEAD" else [body]  # HEAD: GET's headers, no content (RFC 9110 9.3.2)

    def _cors_headers(self, environ: dict) -> list[tuple[str, str]]:
        """A page of an ``--allowed-origin`` may read the answers (CORS); other origins were refused before."""
        origin = environ.get("HTTP_ORIGIN")
        if origin is None or not self.allowed_origins:
            return []
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]

    def _preflight(self, environ: dict, path: str, cors: list[tuple[str, str]],
                   start_response: StartResponse) -> Iterable[bytes]:
        """OPTIONS: the methods of ``path``; for an allowed origin's preflight, the methods and headers it may use
        (the OpenAI SDK sends an Authorization and its own x- headers)."""
        allowed = ", ".join(self._routes[path])
        headers = [("Allow", allowed), ("Content-Length", "0"), *_NOSNIFF, *cors]
        if cors:
            asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
            names = [n.strip() for n in asked.split(",") if n.strip()]
            valid = all(HEADER_NAME.fullmatch(n) for n in names) and len(asked) <= 2048
            headers += [("Access-Control-Allow-Methods", allowed),
                        ("Access-Control-Allow-Headers", ", ".join(names) if names and valid else "Content-Type"),
                        ("Access-Control-Max-Age", "600")]
        start_response("204 No Content", headers)
        request_logger.info("OPTIONS %s 204", _loggable_path(path, self._routes))
        return [b""]

    def _check_caller(self, environ: dict) -> None:
        """Refuse a Host this server does not answer to (a DNS-rebinding page names its own domain), in the Host
        header or in an absolute-form request target (``GET http://name/path``, whose authority is the request's
        host, RFC 9112 3.2.2), and an Origin other than the server's own page (a foreign page posting text/plain
        needs no preflight)."""
        host = environ.get("HTTP_HOST")
        if host is not None:
            self._check_host(host, "Host header")
        authority = target_authority(environ.get("REQUEST_URI") or environ.get("RAW_URI") or "")
        if authority is not None:
            self._check_host(authority, "request target's host")
            host = authority
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not origin_allowed(origin, host, self.allowed_origins):
            raise ApiError(403, f"Origin {_shown(origin)} is not this server's own page: cross-origin requests are "
                                f"refused; to accept that page's requests, start serve with --allowed-origin "
                                f"{_shown(origin)} (another WSGI server: {ALLOWED_ORIGINS_ENV})",
                           code="origin_not_allowed")

    def _check_host(self, host: str, what: str) -> None:
        """400 for a malformed ``host``, 421 for one that is not an allowed name (``what`` says where it was)."""
        name = host_name(host)
        if name is None:
            raise ApiError(400, f"{what} {_shown(host)} is malformed", code="bad_host")
        if not host_allowed(name, self.allowed_hosts):
            raise ApiError(421, f"{what} {_shown(name)} is not a name this server answers to (a guard against DNS "
                                f"rebinding); if it is this server's, start serve with --allowed-host "
                                f"{_shown(name)} (another WSGI server: {ALLOWED_HOSTS_ENV})",
                           code="host_not_allowed")

    def _dispatch(self, method: str, path: str, environ: dict) -> tuple[dict, int]:
        methods = self._routes.get(path)
        if methods is None and path.startswith("/v1/models/"):
            raise ApiError(404, f"no model {_shown(path[len('/v1/models/'):], 80)!r} here: this server's model is "
                                f"{self.model_name!r} (GET /v1/models)", param="model", code="model_not_found")
        if methods is None:
            raise ApiError(404, "no such endpoint; try POST /v1/moderations, POST /v1/explain, GET /v1/models, GET /healthz or GET /",
                           code="not_found")
        handler = methods.get(method)
        if handler is None:
            allowed = ", ".join(methods)
            raise ApiError(405, f"method {_loggable_method(method)} not allowed here (allowed: {allowed})",
                           code="method_not_allowed", headers=[("Allow", allowed)])
        return handler(environ)

    # -------------------------------------------------------------------------------------- endpoints

    def _moderations(self, environ: dict) -> tuple[dict, int]:
        request = _parse_json(self._read_body(environ))
        items = parse_moderation_request(request, self.max_batch)
        cut = request_threshold(request, self.model, self.threshold)
        labels = label_set_of(self.model)
        results = [_openai_result(r, labels) for r in self._scorer().moderate(items, threshold=cut)]
        return {"id": f"modr-{uuid.uuid4().hex}", "model": self.model_name, "results": results}, len(items)

    def _scorer(self) -> ModerationClassifier | FastScorer:
        """This worker thread's scorer: a fast scorer's copy with word caches of its own (each bounded by an equal
        share of the model's), so threads score at once and a long request never holds the others."""
        scorer = getattr(self._thread_scorers, "scorer", None)
        if scorer is None:
            # a scikit-learn model scores through its fast scorer: the same numbers and verdicts
            fast = self.model if hasattr(self.model, "with_own_caches") else getattr(
                self.model, "_fast_scorer", lambda: None)()
            if fast is None:
                return self.model
            budget = getattr(fast, "cache_bytes", DEFAULT_CACHE_BYTES)
            scorer = self._thread_scorers.scorer = fast.with_own_caches(max(budget // DEFAULT_THREADS, 1))
            self._scorers.append(scorer)
        return scorer

    def scorers(self) -> list:
        """The scorers the worker threads made so far (their caches: what a memory or probe count reads)."""
        return list(self._scorers)

    def _explain(self, environ: dict) -> tuple[Page, int]:
        """Each item's verdict and its exact explanation (see ``lite_moderation.explain``), within the limits
        of ``DEFAULT_MAX_EXPLAIN_CHARS``, ``EXPLAIN_MAX_TOP``, ``EXPLAIN_MAX_SPANS`` and the answer's bytes."""
        request = _parse_json(self._read_body(environ))
        items = parse_moderation_request(request, self.max_batch)
        if self.explainer is None:
            raise ApiError(501, f"this server's model cannot be explained: {self._unexplainable}",
                           code="not_implemented")
        _check_explain_size(items, self.max_explain_chars)
        options = explain_options(request, self.model, self.threshold)
        return self._explained(items, options), len(items)

    def _explained(self, items: list, options: dict) -> Page:
        """The answer as JSON, built an item at a time and refused (422) as soon as it passes
        ``max_explain_bytes``: the work and the memory stop there."""
        head = json.dumps({"id": f"modr-{uuid.uuid4().hex}", "model": self.model_name})[:-1] + ', "results": ['
        parts, size = [], len(head) + 2
        for index, item in enumerate(items):
            [result] = self.explainer.explain([item], max_spans=EXPLAIN_MAX_SPANS, **options)
            part = json.dumps(result)  # ASCII: its length is its size in bytes
            size += len(part) + 2
            if size > self.max_explain_bytes:
                raise ApiError(422, f"the explanation passed the limit of {self.max_explain_bytes} bytes at "
                                    f"input[{index}] of {len(items)}; ask for fewer items or labels, or a "
                                    f"smaller 'top'", param="input", code="answer_too_large")
            parts.append(part)
        return Page((head + ", ".join(parts) + "]}").encode("ascii"), "application/json")

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

        ``serve`` (waitress) has buffered the whole body before the app runs; under a server that streams it,
        the deadline (``lite_moderation.read_timeout`` in the environ, else 10 s) cuts off a trickling client.
        """
        coding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
        if coding not in ("", "identity"):
            raise ApiError(415, f"Content-Encoding {_shown(coding, 40)} is not supported: send the body uncompressed",
                           code="unsupported_content_encoding")
        length = _content_length(environ.get("CONTENT_LENGTH"))
        if length > self.max_body_bytes:
            raise ApiError(413, f"request body is {length} bytes; the limit is {self.max_body_bytes}",
                           code="body_too_large")
        timeout = environ.get(READ_TIMEOUT_KEY, DEFAULT_READ_TIMEOUT)
        return _read_exactly(environ["wsgi.input"], length, timeout)


#: An HTTP header name (RFC 9110 token), as a preflight may ask for one.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")


class Page(NamedTuple):
    """A response that is not JSON: its bytes and content type."""

    body: bytes
    content_type: str


@functools.cache
def try_it_page() -> bytes:
    return (resources.files(__package__) / "static" / "index.html").read_bytes()


@functools.cache
def page_headers() -> tuple[tuple[str, str], ...]:
    """The page's Content-Security-Policy: its own inline script and style elements (by hash) and requests to
    this server only; nothing else runs, loads or frames it. Style attributes stay allowed: the script sets
    them (bar widths, mark shades), and they run no code."""
    page = try_it_page().decode("utf-8")
    scripts, styles = (" ".join(_csp_hash(body) for body in re.findall(f"<{tag}>(.*?)</{tag}>", page, re.DOTALL))
                       for tag in ("script", "style"))
    policy = (f"default-src 'none'; script-src {scripts or _NONE}; style-src {styles or _NONE}; "  # CSP 2 browsers
              f"style-src-elem {styles or _NONE}; style-src-attr 'unsafe-inline'; connect-src 'self'; "
              "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return (("Content-Security-Policy", policy), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"))


_NONE = "'none'"


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


# ------------------------------------------------------------------------------------------------ who may call


#: Host names every server answers to: a DNS-rebinding page can only send its own domain name as Host.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: In --allowed-host or --allowed-origin: accept any.
ANY = "*"
ALLOWED_HOSTS_ENV = "LITE_MODERATION_ALLOWED_HOSTS"
ALLOWED_ORIGINS_ENV = "LITE_MODERATION_ALLOWED_ORIGINS"
_WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::"})
_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


#: An absolute-form request target: a scheme, "//" and the authority up to the path, query or fragment.
_ABSOLUTE_TARGET = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)")


def target_authority(target: str) -> str | None:
    """The authority of an absolute-form request target (``http://evil.example/v1/models``: ``evil.example``; ""
    when empty), None for the usual origin form (``/v1/models``) or ``*``."""
    match = _ABSOLUTE_TARGET.match(target)
    return match.group(1) if match else None


def host_name(value: str) -> str | None:
    """The name in a Host header or an --allowed-host value (lower case; no port, brackets or final dot), or
    None when it is not one."""
    found = _host_and_port(value, 0)
    return found[0] if found else None


def _host_and_port(value: str, default_port: int) -> tuple[str, int] | None:
    match = _HOST_RE.fullmatch(value.strip())
    if not match:
        return None
    return match.group(1).strip("[]").rstrip(".").lower(), int(match.group(2)) if match.group(2) else default_port


def checked_hosts(names: Iterable[str]) -> frozenset[str]:
    """The loopback names plus ``names`` (a wildcard address such as 0.0.0.0 admits any IP address, "*" any
    Host at all); ValueError names a malformed one."""
    allowed = set(LOOPBACK_HOSTS)
    for value in names:
        name = ANY if value.strip() == ANY else host_name(value)
        if not name:
            raise ValueError(f"allowed host {value!r} is not a host name or address (like example.com, "
                             "10.0.0.5 or [::1]; '*' for any)")
        allowed.add(name)
    return frozenset(allowed)


def host_allowed(name: str, allowed: frozenset[str]) -> bool:
    """``name`` is listed, or an IP address (loopback; any, if a wildcard address is listed: such a server is
    reached by whatever address the client routes to, and an address cannot be rebound as a name can)."""
    if ANY in allowed or name in allowed:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or not allowed.isdisjoint(_WILDCARD_ADDRESSES)


def checked_origins(origins: Iterable[str]) -> frozenset[str]:
    """Origins like ``https://app.example.com`` (scheme, host, optional port) or "*"; ValueError otherwise."""
    allowed = set()
    for value in origins:
        origin = value.strip().rstrip("/").lower()
        if origin != ANY and _authority(origin) is None:
            raise ValueError(f"allowed origin {value!r} is not an origin like https://app.example.com[:port] "
                             "('*' for any)")
        allowed.add(origin)
    return frozenset(allowed)


def origin_allowed(origin: str, host: str | None, allowed: frozenset[str]) -> bool:
    """An Origin header is the server's own page (the same host and port as the Host header), or listed."""
    normal = origin.strip().rstrip("/").lower()
    if ANY in allowed or normal in allowed:
        return True
    own = _authority(normal)
    return own is not None and host is not None and own[1:] == _host_and_port(host, _DEFAULT_PORTS[own[0]])


def _authority(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host name, port) of an http(s) origin, or None."""
    try:
        parts = urlsplit(origin)
    except ValueError:  # e.g. an unclosed [
        return None
    if parts.scheme not in _DEFAULT_PORTS or parts.path or parts.query or parts.fragment:
        return None
    found = _host_and_port(parts.netloc, _DEFAULT_PORTS[parts.scheme])
    return (parts.scheme, *found) if found else None


def _shown(value: str, limit: int = 100) -> str:
    """A client-sent value, bounded and escaped, for a message or a log line."""
    return _plain(value[:limit]) + ("..." if len(value) > limit else "")


def explain_options(request: dict, model: object, threshold: float | str | None) -> dict:
    """The explain options of a request: ``labels`` (names), ``top`` (0 to ``EXPLAIN_MAX_TOP``; absent or
    null: that limit) and ``threshold`` (a probability or one of the model's operating points; default: the
    server's cut-off)."""
    labels, top = request.get("labels"), request.get("top")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise ApiError(400, f"'labels' must be a list of label names, got {json_type(labels)}", param="labels")
    if top is None:
        top = EXPLAIN_MAX_TOP
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ApiError(400, f"'top' must be a whole number >= 0 or null, got {_shown(json.dumps(top), 60)}",
                       param="top")
    if top > EXPLAIN_MAX_TOP:
        raise ApiError(400, f"'top' is {top}; the limit is {EXPLAIN_MAX_TOP} terms per label (the others are "
                            "summed into 'rest')", param="top", code="top_too_large")
    try:
        asked = resolve_labels(labels, label_set_of(model)) if labels else None
    except ValueError as exc:
        raise ApiError(400, str(exc), param="labels") from None
    return {"labels": asked, "top": top, "threshold": request_threshold(request, model, threshold)}


def request_threshold(request: dict, model: object, threshold: float | str | None) -> float | str | None:
    """The unsafe cut-off a request (/v1/moderations, /v1/explain) is judged at: its ``threshold`` (a probability
    or one of the model's operating points; an extension of OpenAI's API), else (absent or null) the server's."""
    if request.get("threshold") is None:
        return threshold
    try:
        return checked_threshold(request["threshold"], model)
    except ValueError as exc:
        raise ApiError(400, str(exc), param="threshold") from None


def _check_explain_size(items: list, limit: int) -> None:
    """Refuse (413) a request with more characters to explain than ``limit``: an explanation costs about ten
    times a verdict, and its span lists grow with the text."""
    size = sum(len(item) if isinstance(item, str) else len(item[0]) + len(item[1]) for item in items)
    if size > limit:
        raise ApiError(413, f"/v1/explain reads at most {limit} characters per request (prompts and responses "
                            f"together); this one has {size}. Send less text, or use /v1/moderations for "
                            "verdicts alone", param="input", code="explain_input_too_large")


def _explainer_of(model: ModerationClassifier | FastScorer) -> tuple[Any, str | None]:
    """The model's explainer, built now (from the files it was loaded from), or None and why it cannot be."""
    try:
        return explainer_for(model), None
    except (ValueError, OSError) as exc:
        logger.warning("/v1/explain is off: %s", exc)
        return None, str(exc)


def _content_length(value: str | None) -> int:
    if value is None or not value.strip():
        raise ApiError(411, "a Content-Length header (or a chunked body) is required",
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
        return parse_json_text(text)  # the file readers' parser: no RecursionError, no int-digits traceback
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                       code="invalid_json") from None
    except ValueError as exc:  # nested too deeply, or an integer longer than Python's int-string limit
        raise ApiError(400, f"body is not valid JSON: {exc}", code="invalid_json") from None


def parse_moderation_request(request: Any, max_batch: int) -> list[str | tuple[str, str]]:
    """The items of an OpenAI moderation request: texts and QA pairs, or one input of ``{"type": "text"}`` parts.

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
        return [_whole_text(raw, "input")]
    if not isinstance(raw, list):
        raise ApiError(400, f"'input' must be a string or a list, got {json_type(raw)}", param="input")
    if not raw:
        raise ApiError(400, "'input' is an empty list: nothing to moderate", param="input")
    if len(raw) > max_batch:
        raise ApiError(400, f"'input' has {len(raw)} items; the limit is {max_batch} per request",
                       param="input", code="batch_too_large")
    if any(isinstance(value, dict) and "type" in value for value in raw):
        return [_parts_text(raw)]
    return [_item(value, f"input[{i}]") for i, value in enumerate(raw)]


def _parts_text(parts: list) -> str:
    """OpenAI's multi-modal input: a list of parts is one input with one result, as OpenAI answers it; its text
    parts are read as one message, joined by line breaks. Images are not read: such a part is refused, never
    skipped (a verdict on the text alone would pass an image unseen)."""
    texts = []
    for i, part in enumerate(parts):
        param = f"input[{i}]"
        if not isinstance(part, dict) or "type" not in part:
            raise ApiError(400, f"{param}: a list of {{'type': ...}} parts is one input and holds parts only; send "
                                f"texts and pairs in a list of their own", param=param)
        if part["type"] != "text":
            kind = repr(_shown(part["type"], 40)) if isinstance(part["type"], str) else json_type(part["type"])
            raise ApiError(400, f"{param}: only text parts are supported, got type {kind} (this model reads text, "
                                f"not images)", param=param, code="unsupported_input")
        texts.append(_text(part.get("text"), f"{param}.text"))
    text = "\n".join(texts)
    if not text.strip():
        raise ApiError(400, "input: its text parts are empty or only whitespace: nothing to moderate", param="input")
    return text


def _whole_text(value: Any, param: str) -> str:
    """A text scored alone: as a pair's two fields, it must hold something to moderate (the scorers refuse a blank
    one, which would otherwise surface as a 500)."""
    text = _text(value, param)
    if not text.strip():
        raise ApiError(400, f"{param} is empty or only whitespace: nothing to moderate", param=param)
    return text


def _item(value: Any, param: str) -> str | tuple[str, str]:
    if isinstance(value, str):
        return _whole_text(value, param)
    if not isinstance(value, dict):
        raise ApiError(400, f"{param} must be a string or an object, got {json_type(value)}", param=param)
    if "prompt" in value or "response" in value:  # either alone: a prompt alone, or a text alone
        prompt = _text(value.get("prompt", ""), f"{param}.prompt")
        response = _text(value.get("response", ""), f"{param}.response")
        if not prompt.strip() and not response.strip():
            raise ApiError(400, f"{param}: prompt and response are both empty: nothing to moderate", param=param)
        return prompt, response
    raise ApiError(400, f"{param} must be a string or a {{'prompt', 'response'}} pair (a list of {{'type': 'text'}} "
                        f"parts is one input)", param=param)


def _text(value: Any, param: str) -> str:
    """A text must be a string that encodes to UTF-8 (no lone surrogates from \\ud800 escapes)."""
    if not isinstance(value, str):
        raise ApiError(400, f"{param} must be a string, got {json_type(value)}", param=param)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(400, f"{param} contains an unpaired surrogate at character {exc.start}", param=param) from None
    return value


def _openai_result(result: dict, labels: LabelSet) -> dict:
    """OpenAI's result fields first, then extras: ``unsafe_score`` (what ``flagged`` is decided on) and the model's
    own ``model_categories`` / ``model_category_scores``.

    A BeaverTails model fills OpenAI's 13 categories (``taxonomy.OPENAI_CATEGORIES``) and gives its own under their
    short names (no commas: CSV columns, pandas and the SDK's extras stay clean). A model of other labels has no
    mapping to OpenAI's: its ``categories`` are its own names.
    """
    own, own_scores = result["categories"], result["category_scores"]
    if labels.is_beavertails:
        categories, scores = openai_categories(own, own_scores)
        own = {short_name(k): v for k, v in own.items()}
        own_scores = {short_name(k): v for k, v in own_scores.items()}
    else:
        categories, scores = own, own_scores
    return {"flagged": result["flagged"], "categories": categories, "category_scores": scores,
            "category_applied_input_types": {name: ["text"] for name in categories},
            "unsafe_score": result["unsafe_score"], "model_categories": own, "model_category_scores": own_scores}


def _model_name(model: ModerationClassifier | FastScorer) -> str:
    path = getattr(model, "path_", None)
    return f"lite-moderation-{Path(path).name}" if path else "lite-moderation"


def _model_entry(model: ModerationClassifier | FastScorer, name: str, threshold: float | str | None) -> dict:
    """The /v1/models entry: OpenAI's fields, the server's ``threshold`` (its unsafe cut-off for a request that
    names none, as checked at start-up: a probability, an operating point's name, or None for the model's own
    cut-offs) and the model card (no file-system path)."""
    card = {**getattr(model, "card_", {}), "labels": list(model.labels_),
            "thresholds": dict(zip(model.labels_, map(float, model.thresholds_))),
            "operating_points": dict(getattr(model, "operating_points_", {}))}
    message_cut = message_cut_offs(model)
    if message_cut is not None:
        card["message_thresholds"] = dict(zip(model.labels_, map(float, message_cut[0])))
        card["message_operating_points"] = message_cut[1]
    path = getattr(model, "path_", None)
    created = int(os.stat(Path(path) / "model.json").st_mtime) if path else 0
    return {"id": name, "object": "model", "created": created, "owned_by": "lite-moderation", "threshold": threshold,
            "card": card}


def _loggable_path(path: str, routes: dict) -> str:
    """Known routes as they are; anything else shortened and escaped (a path is client-controlled)."""
    return path if path in routes else ascii(path[:60])


def _loggable_method(method: str) -> str:
    """A method as sent, shortened and escaped: waitress takes any token, up to the 256 KiB header limit."""
    return _shown(method, 16)


# ------------------------------------------------------------------------------------------------ factories


def make_app(model: ModerationClassifier | FastScorer | None = None, *, model_name: str | None = None,
             max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_batch: int = DEFAULT_MAX_BATCH,
             threshold: float | str | None = None, allowed_hosts: Iterable[str] = (),
             allowed_origins: Iterable[str] = ()) -> ModerationApp:
    """The WSGI app around ``model`` (default: the shipped model); ``threshold`` overrides its unsafe cut-off
    (a probability or an operating point such as "strict"). It answers requests whose Host is a loopback name
    or one of ``allowed_hosts``, and, from browsers, only its own page or ``allowed_origins``."""
    return ModerationApp(load_scorer() if model is None else model, model_name=model_name,
                         max_body_bytes=max_body_bytes, max_batch=max_batch, threshold=threshold,
                         allowed_hosts=allowed_hosts, allowed_origins=allowed_origins)


def create_app() -> ModerationApp:
    """WSGI factory for other servers: ``waitress-serve --call lite_moderation.server:create_app``, or gunicorn.

    Settings come from the environment, since a factory takes no arguments: LITE_MODERATION_MODEL (model
    directory, default: the shipped model), LITE_MODERATION_MAX_BODY_BYTES, LITE_MODERATION_MAX_BATCH,
    LITE_MODERATION_THRESHOLD (a probability or an operating point such as "strict"),
    LITE_MODERATION_ALLOWED_HOSTS and LITE_MODERATION_ALLOWED_ORIGINS (comma-separated).
    """
    configure_logging()
    model_path = os.environ.get(MODEL_ENV) or None
    return make_app(
        load_scorer(model_path),
        max_body_bytes=int(os.environ.get("LITE_MODERATION_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
        max_batch=int(os.environ.get("LITE_MODERATION_MAX_BATCH", DEFAULT_MAX_BATCH)),
        threshold=_threshold_from_env(os.environ.get("LITE_MODERATION_THRESHOLD")),
        allowed_hosts=_list_from_env(ALLOWED_HOSTS_ENV), allowed_origins=_list_from_env(ALLOWED_ORIGINS_ENV),
    )


def _list_from_env(name: str) -> list[str]:
    return [item for item in os.environ.get(name, "").split(",") if item.strip()]


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

_SWEEP_SECONDS = 0.25  # how often stalled requests and drained connections are looked for
_DRAIN_IDLE_SECONDS = 0.5  # while draining, a keep-alive connection quiet this long is closed
_THREAD_STOP_SECONDS = 0.5  # after the drain, how long worker threads get to finish
_LINGER_SECONDS = 1.0
_ACCEPT_BURST = 64


def _json_response(task: Any, error: ApiError, method: str, path: str, started: float) -> None:
    """Write ``error`` as the OpenAI-shaped JSON answer of a waitress task, close the connection, log one line."""
    body = json.dumps(error.payload()).encode("utf-8")
    task.status = f"{error.status} {HTTPStatus(error.status).phrase}"
    task.response_headers.extend([*_JSON, *_NOSNIFF, *error.headers])
    task.set_close_on_finish()  # adds "Connection: close"
    task.request.headers.pop("CONNECTION", None)  # else waitress adds "Keep-Alive" too for an HTTP/1.0 keep-alive
    task.content_length = len(body)
    task.write(body)
    request_logger.info("%s %s %d %.1fms items=0", method, path, error.status, (time.perf_counter() - started) * 1000)


def _request_line(request: Any) -> tuple[str, str]:
    """Method and path of a (possibly malformed) request, safe to log: a path is client-controlled."""
    method = getattr(request, "command", "") or "-"
    path = getattr(request, "path", "") or "-"
    return _plain(method[:16]), _plain(path[:60])


def _plain(text: str) -> str:
    return text if text.isascii() and text.isprintable() and " " not in text else ascii(text)


class _JsonErrorTask(ErrorTask):
    """waitress's answer to a request it cannot parse (400, 413, 431, 501) or to an app that raised (500),
    as JSON instead of plain text."""

    def execute(self) -> None:
        started = time.perf_counter()
        error, adj = self.request.error, self.channel.adj
        if error.code == 413:
            limit = adj.max_request_body_size - 1
            length = getattr(self.request, "content_length", 0)
            size = f"request body is {length} bytes" if length > limit else "request body is too large"
            api = ApiError(413, f"{size}; the limit is {limit}", code="body_too_large")
        elif error.code == 431:
            api = ApiError(431, f"request headers are larger than the limit of {adj.max_request_header_size} "
                                "bytes", code="headers_too_large")
        elif error.code == 501:
            api = ApiError(501, f"not implemented: {error.body}", code="not_implemented")
        elif error.code >= 500:  # the app raised (ModerationApp never does): no details for the client
            api = ApiError(500, "internal server error")
        else:
            api = ApiError(error.code, f"malformed HTTP request: {error.body}", code="bad_request")
        _json_response(self, api, *_request_line(self.request), started)


class _Task(WSGITask):
    """Runs the app, except while the server drains: then a JSON 503 with ``Connection: close``."""

    def execute(self) -> None:
        if getattr(self.channel.server, "draining", False):
            api = ApiError(503, "the server is shutting down; send the request again", code="shutting_down")
            self.complete = True  # what start_response would have set
            _json_response(self, api, *_request_line(self.request), time.perf_counter())
            return
        super().execute()


class _Parser(HTTPRequestParser):
    """waitress's request parser, strict about how long a body is (RFC 9112 section 6): a request whose length a
    proxy in front could read differently (request smuggling) is refused with 400, and the connection closed
    with whatever follows it unread. waitress itself lets Transfer-Encoding win over Content-Length, reads
    ``chunked, chunked`` as chunked once, and ignores Transfer-Encoding in HTTP/1.0."""

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        problem = _framing_problem(self.version, _transfer_codings(header_plus), "CONTENT_LENGTH" in self.headers)
        if problem:
            raise ParsingError(problem)


def _transfer_codings(header_plus: bytes) -> list[str] | None:
    """The transfer codings of all Transfer-Encoding fields, in order; None without any such field."""
    codings = None
    for line in get_header_lines(header_plus.partition(b"\r\n")[2]):
        match = HEADER_FIELD_RE.match(line)
        if match and match.group("name").lower() == b"transfer-encoding":
            value = match.group("value").decode("latin-1")
            codings = (codings or []) + [c.strip(" \t").lower() for c in value.split(",") if c.strip(" \t")]
    return codings


def _framing_problem(version: str, codings: list[str] | None, has_content_length: bool) -> str | None:
    if codings is None:
        return None
    if version != "1.1":
        return f"Transfer-Encoding in an HTTP/{version} request (HTTP/1.1 only): the body length is ambiguous"
    if has_content_length:
        return "both Transfer-Encoding and Content-Length: the body length is ambiguous; send one of them"
    if not codings:
        return "Transfer-Encoding is empty"
    if codings.count("chunked") > 1:
        return "Transfer-Encoding applies chunked more than once"
    return None


class _Channel(HTTPChannel):
    """A waitress connection that remembers when the request being received began (for the whole-request
    deadline: waitress's own timeout only counts silence, so a byte a second would hold a socket forever)."""

    task_class = _Task
    error_task_class = _JsonErrorTask
    parser_class = _Parser
    request_started: float | None = None
    linger_until: float | None = None

    def handle_close(self) -> None:
        """Close after a lingering half-close: a client still sending (say, an oversized body) then reads
        our answer instead of a connection reset. Reads are discarded for at most ``_LINGER_SECONDS``."""
        if self.linger_until is not None or not self.connected or self.socket is None:
            self.close_now()
            return
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self.close_now()
            return
        self.linger_until = time.monotonic() + _LINGER_SECONDS

    def close_now(self) -> None:
        HTTPChannel.handle_close(self)

    def readable(self) -> bool:
        return True if self.linger_until is not None else super().readable()

    def writable(self) -> bool:
        return False if self.linger_until is not None else super().writable()

    def handle_read(self) -> None:
        if self.linger_until is None:
            super().handle_read()
            return
        try:
            data = self.socket.recv(_CHUNK)
        except OSError:
            data = b""
        if not data or time.monotonic() > self.linger_until:
            self.close_now()

    def time_out(self, read_timeout: float) -> None:
        """Answer a request not received in time with a JSON 408 and close (no task is running: the I/O
        thread may write the answer itself)."""
        request, started = self.request, time.perf_counter()
        method, path = _request_line(request)
        received = ""
        if getattr(request, "headers_finished", False) and getattr(request, "content_length", 0):
            received = f" ({request.body_bytes_received} of {request.content_length} body bytes received)"
        error = ApiError(408, f"timed out reading the request within {read_timeout:g}s{received}",
                         code="read_timeout")
        body = json.dumps(error.payload()).encode("utf-8")
        head = (f"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
                f"\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\nServer: {self.adj.ident}\r\n\r\n"
                ).encode("ascii")
        with self.outbuf_lock:
            self.outbufs[-1].append(head + body)
            self.total_outbufs_len += len(head) + len(body)
        self.request = self.request_started = None
        self.close_when_flushed = True
        request_logger.info("%s %s 408 %.1fms items=0", method, path, (time.perf_counter() - started) * 1000)

    def lingered_enough(self, now: float) -> bool:
        return self.linger_until is not None and now > self.linger_until

    def received(self, data: bytes) -> bool:
        was_between_requests = self.request is None
        result = super().received(data)
        if self.request is None:
            self.request_started = None
        elif was_between_requests:
            self.request_started = time.monotonic()
        return result

    def is_quiet(self) -> bool:
        """No request being received, none being answered, nothing left to send."""
        return self.request is None and not self.requests and not self.total_outbufs_len


class ModerationServer:
    """waitress around a listening socket, with a whole-request deadline and a draining stop.

    ``serve_forever`` runs waitress's I/O loop in the calling thread until ``stop`` (signal-safe) or
    ``shutdown`` (from another thread); it then drains and returns within ``read_timeout`` + about 0.5 s.
    """

    def __init__(self, app: Callable, sock: socket.socket, *, threads: int = DEFAULT_THREADS,
                 read_timeout: float = DEFAULT_READ_TIMEOUT, connection_limit: int = DEFAULT_CONNECTION_LIMIT) -> None:
        self.socket = sock
        self.read_timeout = read_timeout
        self.server_address = sock.getsockname()[:2]
        self.server_port = self.server_address[1]
        self._map: dict = {}
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._closed = False
        max_body = getattr(app, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)
        self._waitress = create_server(
            app, map=self._map, sockets=[sock], threads=threads, ident=SERVER_IDENT, expose_tracebacks=False,
            channel_timeout=math.ceil(read_timeout) + 1,  # whole seconds; the sweep below is exact
            connection_limit=connection_limit, asyncore_use_poll=True, max_request_body_size=max_body + 1,
            clear_untrusted_proxy_headers=False, log_socket_errors=False,
        )
        self._waitress.channel_class = _Channel
        self._waitress.draining = False
        self._waitress.handle_accept = self._accept_burst  # waitress accepts one connection per poll

    def serve_forever(self) -> None:
        next_sweep = 0.0
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=_SWEEP_SECONDS, map=self._map, use_poll=True, count=1)
                if (now := time.monotonic()) >= next_sweep:
                    next_sweep = now + _SWEEP_SECONDS
                    self._cut_off_stalled_requests(now)
            self._drain()
        finally:
            self._stopped.set()

    def stop(self) -> None:
        """Ask ``serve_forever`` to drain and return; safe in a signal handler (no locks)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._waitress.pull_trigger()  # wakes the poll; without a thunk it takes no lock

    def shutdown(self) -> None:
        """Stop from another thread and wait until ``serve_forever`` has returned."""
        self.stop()
        self._stopped.wait()

    def server_close(self) -> None:
        """Close every socket and stop the worker threads (``serve_forever`` does this itself on its way out)."""
        if self._closed:
            return
        self._closed = True
        for channel in list(self._waitress.active_channels.values()):
            channel.close_now()
        with contextlib.suppress(OSError):
            wasyncore.dispatcher.close(self._waitress)  # the listening socket
        self._waitress.trigger.close()
        self._waitress.task_dispatcher.shutdown(cancel_pending=True, timeout=_THREAD_STOP_SECONDS)

    # -------------------------------------------------------------------------------------- internals

    def _channels(self) -> list[_Channel]:
        return list(self._waitress.active_channels.values())

    def _cut_off_stalled_requests(self, now: float) -> None:
        """A request not received within the read timeout gets a 408; a connection idle as long is closed."""
        cutoff, idle_cutoff = now - self.read_timeout, time.time() - self.read_timeout
        for channel in self._channels():
            if channel.lingered_enough(now):
                channel.close_now()
            elif channel.request_started is not None and channel.request_started < cutoff and not channel.requests:
                channel.time_out(self.read_timeout)
            elif channel.is_quiet() and channel.linger_until is None and channel.last_activity < idle_cutoff:
                channel.will_close = True

    def _drain(self) -> None:
        """Answer every request already sent, then close: the listen queue too (waitress would drop it).

        New connections are refused first (Linux: a socket filter; elsewhere the window is the few
        microseconds between the last accept and the close), then the queue is accepted, then each
        connection is served until quiet; whatever is still incomplete at the deadline is cut off.
        """
        deadline = time.monotonic() + self.read_timeout
        self._waitress.draining = True
        _refuse_new_connections(self.socket)
        accepted = self._accept_queued()
        with contextlib.suppress(OSError):
            wasyncore.dispatcher.close(self._waitress)
        logger.info("draining %d connection(s) (%d from the listen queue)", len(self._channels()), accepted)
        while (channels := self._channels()) and time.monotonic() < deadline:
            quiet_before, now = time.time() - _DRAIN_IDLE_SECONDS, time.monotonic()
            for channel in channels:
                if channel.lingered_enough(now):
                    channel.close_now()
                elif channel.is_quiet() and channel.last_activity < quiet_before and channel.linger_until is None:
                    channel.will_close = True
            wasyncore.loop(timeout=0.05, map=self._map, use_poll=True, count=1)
        self.server_close()

    def _accept_burst(self) -> None:
        """Accept up to ``_ACCEPT_BURST`` waiting connections per poll, not one: each poll walks every open
        connection, so after a burst of thousands of connects the queue would otherwise drain slowly."""
        room = self._waitress.adj.connection_limit - len(self._map)
        self._accept_queued(max(1, min(_ACCEPT_BURST, room)))

    def _accept_queued(self, limit: int | None = None) -> int:
        """Accept the connections waiting in the kernel's listen queue, all or ``limit`` (another process may
        take some)."""
        server, count = self._waitress, 0
        while limit is None or count < limit:
            try:
                accepted = server.accept()
            except OSError:
                break
            if accepted is None:
                break
            conn, addr = accepted
            with contextlib.suppress(OSError):
                server.set_socket_options(conn)
            server.channel_class(server, conn, server.fix_addr(addr), server.adj, map=self._map)
            count += 1
        return count


def _refuse_new_connections(sock: socket.socket) -> None:
    """Attach a drop-everything socket filter (Linux), so the kernel queues no new connection while the
    queued ones are accepted: a client then sees a refused connection, never a reset after sending."""
    if not sys.platform.startswith("linux"):
        return
    so_attach_filter = 26
    drop_all = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))  # BPF_RET | BPF_K, return 0
    program = struct.pack("HL", 1, ctypes.addressof(drop_all))  # struct sock_fprog {len; filter *}
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, so_attach_filter, program)


def bind_socket(host: str = "127.0.0.1", port: int = 8000, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket (port 0 picks a free one), to share between worker processes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        # name the address: "Address already in use" alone does not say which port, nor what to do
        advice = "; another process holds this port: stop it or pass --port" if exc.errno == errno.EADDRINUSE else ""
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}{advice}") from None
    return sock


def make_server(app: Callable, host: str = "127.0.0.1", port: int = 8000, threads: int = DEFAULT_THREADS,
                read_timeout: float = DEFAULT_READ_TIMEOUT) -> ModerationServer:
    """A bound, not yet running server (port 0 picks a free port: see ``server.server_port``)."""
    _quiet_waitress_logs()
    return ModerationServer(app, bind_socket(host, port), threads=threads, read_timeout=read_timeout,
                            connection_limit=_connection_limit())


class ServerFailed(RuntimeError):
    """``serve`` could not keep serving (its workers kept dying): a supervisor should restart it."""


def serve(model_path: str | os.PathLike | None = None, host: str = "127.0.0.1", port: int = 8000,
          threads: int = DEFAULT_THREADS, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
          max_batch: int = DEFAULT_MAX_BATCH, read_timeout: float = DEFAULT_READ_TIMEOUT,
          threshold: float | str | None = None, workers: int = DEFAULT_WORKERS, allowed_hosts: Iterable[str] = (),
          allowed_origins: Iterable[str] = (), quiet: bool = False) -> None:
    """Load the model and serve until Ctrl-C, SIGTERM or SIGHUP, then drain and return within ``read_timeout``
    + 1 s. Requests naming this server by a name other than a loopback one, ``host`` or ``allowed_hosts`` are
    refused (see :class:`ModerationApp`).

    ``workers`` > 1 forks that many processes (Unix) sharing the listening socket, each with its own copy of
    the model loaded here; the parent only supervises them, and raises :class:`ServerFailed` after stopping
    them all if they keep dying.
    """
    configure_logging()
    _quiet_waitress_logs()
    request_logger.setLevel(logging.WARNING if quiet else logging.NOTSET)  # quiet: start, stop and errors only
    if workers > 1 and not hasattr(os, "fork"):
        raise ValueError("--workers above 1 needs os.fork (Linux, macOS); run one process per port instead")
    app = make_app(load_scorer(model_path), max_body_bytes=max_body_bytes, max_batch=max_batch, threshold=threshold,
                   allowed_hosts=[*([host] if host_name(host) else []), *allowed_hosts],  # not fe80::1%eth0
                   allowed_origins=allowed_origins)
    sock = bind_socket(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    connection_limit = _connection_limit()
    try:
        if workers == 1:
            server = ModerationServer(app, sock, threads=threads, read_timeout=read_timeout,
                                      connection_limit=connection_limit)
            with _on_signals(server.stop):  # before the "serving" line: a signal right after it must stop cleanly
                logger.info("serving %s on http://%s:%d (threads=%d): the try-it page at /, POST /v1/moderations, "
                            "POST /v1/explain; stop with Ctrl-C, SIGTERM or SIGHUP", app.model_name,
                            shown_host, sock.getsockname()[1], threads)
                server.serve_forever()
        else:
            _supervise(workers, lambda: ModerationServer(app, sock, threads=threads, read_timeout=read_timeout,
                                                         connection_limit=connection_limit), read_timeout,
                       lambda: logger.info("serving %s on http://%s:%d (workers=%d, threads=%d each): the try-it page "
                                           "at /, POST /v1/moderations, POST /v1/explain; stop with Ctrl-C, SIGTERM or "
                                           "SIGHUP", app.model_name, shown_host, sock.getsockname()[1],
                                           workers, threads))
    finally:
        sock.close()
    logger.info("stopped")


def _supervise(workers: int, make: Callable[[], ModerationServer], read_timeout: float,
               started: Callable[[], None]) -> None:
    """Fork ``workers`` processes serving the shared socket; on SIGTERM/SIGINT/SIGHUP tell each to drain, wait
    for all.

    The stop signal is repeated every half second until each worker has exited (a signal that reaches a child
    in the instant after fork is lost), and a worker still alive a second after its drain deadline is killed.
    A worker that dies while serving is replaced; one that dies within a second of starting stops them all
    (a crash loop helps no one) and raises :class:`ServerFailed` once they have stopped: a service manager
    restarts a process that fails, not one that exits 0.
    """
    parent, children = os.getpid(), {}
    stop_requested: list[float] = []
    failure: list[str] = []

    def stop_all() -> None:
        if os.getpid() != parent:  # a child before its own handlers: it stops as soon as it has them
            _EARLY_SIGNAL.append(True)
            return
        if not stop_requested:
            stop_requested.append(time.monotonic())
        _signal_all(children, signal.SIGTERM)

    with _on_signals(stop_all):
        for index in range(workers):
            children[_fork_worker(make, index)] = (index, time.monotonic())
        started()
        next_signal = 0.0
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if stop_requested and (now := time.monotonic()) >= next_signal:
                    next_signal = now + 0.5
                    late = now > stop_requested[0] + read_timeout + 1.0
                    _signal_all(children, signal.SIGKILL if late else signal.SIGTERM)
                time.sleep(0.02)
                continue
            index, born = children.pop(pid)
            if stop_requested:
                continue
            logger.error("worker %d (pid %d) exited with %d", index, pid, os.waitstatus_to_exitcode(status))
            if time.monotonic() - born < 1.0:
                failure.append(f"worker {index} (pid {pid}) died within a second of starting; stopped every "
                               "worker")
                logger.error("%s", failure[0])
                stop_all()
            else:
                children[_fork_worker(make, index)] = (index, time.monotonic())
    if failure:
        raise ServerFailed(failure[0])


def _signal_all(children: dict, signum: int) -> None:
    for pid in list(children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


_EARLY_SIGNAL: list[bool] = []  # in a child: a stop signal arrived before it had its own handlers


def _fork_worker(make: Callable[[], ModerationServer], index: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        _stop_with_parent()
        server = make()
        with _on_signals(server.stop):
            if _EARLY_SIGNAL:
                server.stop()
            server.serve_forever()
    except BaseException:  # a child must never return into the parent's code
        logger.exception("worker %d failed", index)
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


def _stop_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the supervisor dies (even by SIGKILL), instead of serving on as an orphan."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the call
        _EARLY_SIGNAL.append(True)


def _connection_limit() -> int:
    """Open connections waitress accepts: as many as the file limit allows (raised to its hard maximum)."""
    try:
        import resource
    except ImportError:  # Windows
        return DEFAULT_CONNECTION_LIMIT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = DEFAULT_CONNECTION_LIMIT + 100
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            soft = new_soft
    return max(16, min(DEFAULT_CONNECTION_LIMIT, soft - 100)) if soft != resource.RLIM_INFINITY \
        else DEFAULT_CONNECTION_LIMIT


def _quiet_waitress_logs() -> None:
    """waitress warns on every queued task ("Task queue depth is N"): normal under load, not news."""
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def _stop_signals() -> list[int]:
    """SIGTERM, SIGINT and SIGHUP (a closed terminal: drain, do not die mid-request), except a SIGHUP that is
    ignored on purpose (``nohup``). A SIGINT inherited as ignored is still taken: a shell ignores it in the
    background jobs it starts."""
    signals = [signal.SIGTERM, signal.SIGINT]
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is not None and signal.getsignal(hangup) is not signal.SIG_IGN:
        signals.append(hangup)
    return signals


@contextlib.contextmanager
def _on_signals(action: Callable[[], None]) -> Iterator[None]:
    """The stop signals (``_stop_signals``) call ``action``; only the main thread can install handlers. Later
    signals repeat the call, which changes nothing: the drain is bounded by the read timeout anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, lambda signum, frame: action()) for signum in _stop_signals()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
