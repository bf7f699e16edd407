"""Fetch the BeaverTails splits from the Hugging Face hub at a pinned revision, verified and cached.

Standard library only (urllib; ``huggingface_hub`` would add a dependency and still not bound size or time).
Downloads resume from a ``.part`` file (HTTP Range), land in the cache by atomic rename once their size matches
what the server declared, and are checked against a known sha256 where one is known. ``HF_ENDPOINT`` points at
a mirror; ``HF_TOKEN`` is sent when set, to that origin only (never across a redirect to another host). Every
download is bounded in bytes and in total time, and the revision must be a commit or a ref name, never a path.
Offline, the error says to pass ``--data FILE`` instead. :func:`fetch` is the same download for any pinned file
(``bench`` fetches the guard suite's files with it, sending no token).
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .progress import Progress

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_SECONDS", "REPO_ID", "REVISION", "SPLITS", "DownloadError", "Split",
           "cache_dir", "check_revision", "download", "fetch"]

REPO_ID = "PKU-Alignment/BeaverTails"
REVISION = "8401fe609d288129cc684a9b3be6a93e41cfe678"
DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK_BYTES = 1 << 20
#: The largest file a download may be (BeaverTails' largest is far smaller): more is refused, so a server that
#: never stops sending cannot fill the disk.
DEFAULT_MAX_BYTES = 1 << 30
#: The longest a download may take, connection and all, so a server that trickles bytes cannot hold it forever.
DEFAULT_MAX_SECONDS = 3600.0
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REF_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")


@dataclass(frozen=True)
class Split:
    """One file of the dataset repository; ``sha256`` is None where no trusted checksum is known."""

    path: str
    sha256: str | None
    rows: int | None


SPLITS: dict[str, Split] = {
    "30k_train": Split("round0/30k/train.jsonl.gz", None, 27_186),
    "30k_test": Split("round0/30k/test.jsonl.gz", None, 3_021),
    "330k_train": Split("round0/330k/train.jsonl.xz",
                        "12f04c9200000929ebbc616c29cb53331f6df36e7341d73e4a12cffac0eb1c08", 300_567),
    "330k_test": Split("round0/330k/test.jsonl.xz",
                       "1c726c662b85bf4761913041fe9e098f80e5206344864597dbde86bc9a1bfc96", 33_396),
}


class DownloadError(RuntimeError):
    """The file could not be fetched or verified; the message says what to do instead."""


def cache_dir() -> Path:
    """``$LITE_MODERATION_CACHE``, else ``$XDG_CACHE_HOME/lite-moderation``, else ``~/.cache/lite-moderation``."""
    if os.environ.get("LITE_MODERATION_CACHE"):
        return Path(os.environ["LITE_MODERATION_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lite-moderation"


def check_revision(revision: str) -> str:
    """``revision`` when it is a commit hash or a ref name (``main``, ``refs/pr/1``): it goes into a URL and a
    cache path, so anything path-like (``..``, a leading ``/`` or ``.``, empty parts) is refused."""
    parts = revision.split("/")
    if _COMMIT.fullmatch(revision) or (
        len(revision) <= 255 and all(_REF_PART.fullmatch(p) and ".." not in p and not p.endswith(".lock")
                                     for p in parts)
    ):
        return revision
    raise DownloadError(f"revision {revision!r} is neither a 40-hex commit nor a ref name (letters, digits, '.', "
                        f"'_' and '-', parts joined by '/', no '..'); pass a commit of {REPO_ID} or a branch or tag")


def _revision_directory(revision: str) -> str:
    """One path component per revision: a commit as it is, a ref with its slashes escaped (``refs%2Fpr%2F1``)."""
    return urllib.parse.quote(check_revision(revision), safe="")


def file_url(path: str, revision: str = REVISION, endpoint: str | None = None) -> str:
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    return f"{endpoint}/datasets/{REPO_ID}/resolve/{_revision_directory(revision)}/{path}"


def download(split: str, cache: str | os.PathLike | None = None, revision: str = REVISION,
             sha256: str | None = None, force: bool = False, progress: bool = False,
             timeout: float = 30.0, max_bytes: int = DEFAULT_MAX_BYTES,
             max_seconds: float = DEFAULT_MAX_SECONDS) -> Path:
    """Path of the cached file of ``split``, downloading (or resuming) it first when needed.

    ``sha256`` overrides the known checksum (None: use the known one, if any). ``timeout`` bounds each network
    wait, ``max_seconds`` the whole download and ``max_bytes`` the file's size.
    """
    if split not in SPLITS:
        raise DownloadError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    spec = SPLITS[split]
    expected = sha256 or (spec.sha256 if revision == REVISION else None)
    target = Path(cache or cache_dir()) / "beavertails" / _revision_directory(revision) / spec.path
    return fetch(file_url(spec.path, revision), target, expected, force=force, progress=progress, timeout=timeout,
                 max_bytes=max_bytes, max_seconds=max_seconds, label=f"downloading {split}",
                 token=os.environ.get("HF_TOKEN"))


def fetch(url: str, target: Path, sha256: str | None, *, force: bool = False, progress: bool = False,
          timeout: float = 30.0, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS,
          label: str = "downloading", token: str | None = None, instead: str = "pass --data FILE") -> Path:
    """``target``, downloading (or resuming) ``url`` into it first when it is not there: bounded in bytes and
    time, as long as the server declared, checked against ``sha256`` (None: not checked), renamed into place
    only when whole. ``token`` is sent as a bearer token to ``url``'s origin only; ``instead`` is what the
    errors advise doing by hand (``pass --data FILE``)."""
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    if force and partial.exists():
        partial.unlink()
    deadline = _Deadline(max_seconds)
    try:
        _fetch_resuming(url, partial, _opener(deadline),
                        _Limits(min(timeout, max_seconds), max_bytes, token, instead), progress, label=label)
    except DownloadError:
        if deadline.expired.is_set():
            raise DownloadError(f"{url}: not done within {max_seconds:g} s (--max-time); run the same command "
                                f"again to resume, or allow more time") from None
        raise
    finally:
        deadline.cancel()
    _verify(partial, sha256, url, instead)
    os.replace(partial, target)
    return target


@dataclass(frozen=True)
class _Limits:
    """How one download is bounded, what it sends, and what its errors advise."""

    timeout: float  # seconds, for each network wait
    max_bytes: int  # of the whole file
    token: str | None = None  # bearer token for the download's own origin
    instead: str = "pass --data FILE"  # what to do by hand when the download cannot be done


class _Deadline:
    """Shuts every connection of one download once its time is up: a per-read timeout alone lets a server that
    sends one byte now and then (in the headers or the body) hold a download forever."""

    def __init__(self, seconds: float) -> None:
        self.expired = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired.is_set():
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired.set()
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read in the downloading thread
    except OSError:
        pass  # already closed


class _WatchedConnection:
    """An HTTP(S) connection whose socket the download's deadline can shut."""

    def __init__(self, *args: object, deadline: _Deadline, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._deadline.watch(self.sock)  # type: ignore[attr-defined]


class _WatchedHTTPConnection(_WatchedConnection, http.client.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnection, http.client.HTTPSConnection):
    pass


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_WatchedHTTPConnection, deadline=self._deadline), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_WatchedHTTPSConnection, deadline=self._deadline), req,
                            context=self._context)  # type: ignore[attr-defined]


class _CredentialsStayHome(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but drops ``Authorization`` when one leads to another origin (scheme, host or port):
    the hub sends files to a CDN by redirect, and the token is for the hub alone (as ``huggingface_hub`` does).
    A redirect to anything but http(s) is refused."""

    def redirect_request(self, req: urllib.request.Request, fp: object, code: int, msg: str, headers: object,
                         newurl: str) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(req.full_url, code, f"redirect to a non-HTTP address {newurl!r}",
                                         headers, None)  # type: ignore[arg-type]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_WatchedHTTPHandler(deadline), _WatchedHTTPSHandler(deadline),
                                       _CredentialsStayHome())


def _request(url: str, offset: int, token: str | None) -> urllib.request.Request:
    headers = {"User-Agent": "lite-moderation"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.Request(url, headers=headers)


class _TooLarge(Exception):
    """The body went past --max-bytes."""


def _fetch_resuming(url: str, partial: Path, opener: urllib.request.OpenerDirector, limits: _Limits,
                    progress: bool, label: str) -> None:
    """Append to ``partial`` from where it stopped (206), or restart it when the server ignores Range (200);
    ``partial`` ends up exactly as long as the server says the file is, or an error is raised."""
    offset = partial.stat().st_size if partial.exists() else 0
    try:
        response = opener.open(_request(url, offset, limits.token), timeout=limits.timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            _after_unsatisfiable_range(exc, url, partial, opener, limits, progress, label)
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; download it by hand and {limits.instead}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc or type(exc).__name__
        raise DownloadError(
            f"cannot reach {url} ({reason}): you may be offline. Download the file elsewhere and {limits.instead}"
        ) from None
    with response:
        start, total = _extent(response, offset, url, partial, limits)
        with partial.open("ab" if start else "wb") as out, Progress(
            label, total=total, enabled=progress, unit="bytes"
        ) as bar:
            bar.update(start)
            try:
                _copy(response, out, bar, url, start, total, limits.max_bytes)
            except _TooLarge:
                out.close()
                partial.unlink()
                raise DownloadError(f"{url}: the server sent more than {limits.max_bytes} bytes (--max-bytes) and did "
                                    f"not stop; the partial file was removed. Allow more bytes if the file is that "
                                    f"large, or use another mirror") from None


def _after_unsatisfiable_range(exc: urllib.error.HTTPError, url: str, partial: Path,
                               opener: urllib.request.OpenerDirector, limits: _Limits, progress: bool,
                               label: str) -> None:
    """HTTP 416 to a resume: the part file is whole only if the server says the file has exactly its size
    (``Content-Range: bytes */SIZE``); otherwise the part is stale (or a server misbehaves) and the download
    starts again from byte 0."""
    offset = partial.stat().st_size
    match = _UNSATISFIED_RANGE.fullmatch((exc.headers or {}).get("Content-Range", "").strip())
    if match and int(match.group(1)) == offset:
        return
    partial.unlink()
    _fetch_resuming(url, partial, opener, limits, progress, label)


def _extent(response: http.client.HTTPResponse, offset: int, url: str, partial: Path,
            limits: _Limits) -> tuple[int, int | None]:
    """(first byte, size of the whole file) of a response, checked: a 206 must resume exactly at ``offset``
    up to the end, a body must have a length (or chunked framing) so a cut one is seen, and the file must fit
    in ``max_bytes``. A size of None means chunked, its end checked by the framing."""
    max_bytes = limits.max_bytes
    length = _content_length(response, url, limits.instead)
    if response.status == 200:
        start, total = 0, length
    elif response.status == 206:
        start, total = _resumed_range(response, offset, length, url, partial)
    else:
        raise DownloadError(f"{url}: unexpected HTTP {response.status} {response.reason}; download it by hand and "
                            f"{limits.instead}")
    if total is not None and total > max_bytes:
        raise DownloadError(f"{url}: the file is {total} bytes, more than --max-bytes {max_bytes}; allow more bytes "
                            "if it really is that large")
    return start, total


def _content_length(response: http.client.HTTPResponse, url: str, instead: str) -> int | None:
    declared = response.headers.get("Content-Length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise DownloadError(f"{url}: the server sent an invalid Content-Length {declared!r}; try again later "
                                "or use another mirror")
        return int(declared)
    if response.chunked:
        return None
    raise DownloadError(f"{url}: the server did not say how long the file is (no Content-Length), so a cut-short "
                        f"download could not be told from a whole one; use another mirror or {instead}")


def _resumed_range(response: http.client.HTTPResponse, offset: int, length: int | None, url: str,
                   partial: Path) -> tuple[int, int]:
    """(first byte, size of the whole file) of a 206, whose Content-Range must be ``offset``-end/size."""
    header = response.headers.get("Content-Range", "")
    match = _CONTENT_RANGE.fullmatch(header.strip())
    first, last, total = map(int, match.groups()) if match else (-1, -1, -1)
    if not match or first != offset or last != total - 1 or (length is not None and length != last - first + 1):
        if partial.exists():
            partial.unlink()
        raise DownloadError(f"{url}: asked to resume at byte {offset}, the server answered 206 with Content-Range "
                            f"{header!r} and Content-Length {length}, which do not fit; the partial file was "
                            "removed, run the same command again to download from the start")
    return first, total


def _copy(response: http.client.HTTPResponse, out: object, bar: Progress, url: str, start: int,
          total: int | None, max_bytes: int) -> None:
    """Copy the body, reading what has arrived (``read1``: a slow server still lets the progress move),
    stopping past ``max_bytes``; the result must be ``total`` bytes long."""
    written = start
    try:
        while chunk := response.read1(CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                raise _TooLarge
            out.write(chunk)  # type: ignore[attr-defined]
            bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: connection lost ({exc or type(exc).__name__}); run the same command again "
                            "to resume") from None
    if total is not None and written != total:
        raise DownloadError(f"{url}: the connection ended after {written} of {total} bytes; run the same command "
                            "again to resume")


def _verify(path: Path, expected: str | None, url: str, instead: str) -> None:
    if expected is None:
        return
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        path.unlink()
        raise DownloadError(
            f"{url}: sha256 {digest.hexdigest()} does not match the expected {expected}; the partial file was "
            f"removed, try again or {instead}"
        )
