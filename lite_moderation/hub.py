"""Fetch the BeaverTails splits from the Hugging Face hub at a pinned revision, verified and cached.

Standard library only. Downloads resume from a ``.part`` file (HTTP Range), land in the cache by atomic
rename, and are checked against a known sha256 where one is known. ``HF_ENDPOINT`` points at a mirror,
``HF_TOKEN`` is sent when set. Offline, the error says to pass ``--data FILE`` instead.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .progress import Progress

__all__ = ["REPO_ID", "REVISION", "SPLITS", "DownloadError", "Split", "cache_dir", "download"]

REPO_ID = "PKU-Alignment/BeaverTails"
REVISION = "8401fe609d288129cc684a9b3be6a93e41cfe678"
DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK_BYTES = 1 << 20


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


def file_url(path: str, revision: str = REVISION, endpoint: str | None = None) -> str:
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    return f"{endpoint}/datasets/{REPO_ID}/resolve/{revision}/{path}"


def download(split: str, cache: str | os.PathLike | None = None, revision: str = REVISION,
             sha256: str | None = None, force: bool = False, progress: bool = False,
             timeout: float = 30.0) -> Path:
    """Path of the cached file of ``split``, downloading (or resuming) it first when needed.

    ``sha256`` overrides the known checksum (None: use the known one, if any).
    """
    if split not in SPLITS:
        raise DownloadError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    spec = SPLITS[split]
    expected = sha256 or (spec.sha256 if revision == REVISION else None)
    target = Path(cache or cache_dir()) / "beavertails" / revision / spec.path
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    if force and partial.exists():
        partial.unlink()
    url = file_url(spec.path, revision)
    _fetch_resuming(url, partial, timeout, progress, label=f"downloading {split}")
    _verify(partial, expected, url)
    os.replace(partial, target)
    return target


def _request(url: str, offset: int) -> urllib.request.Request:
    headers = {"User-Agent": "lite-moderation"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    token = os.environ.get("HF_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.Request(url, headers=headers)


def _fetch_resuming(url: str, partial: Path, timeout: float, progress: bool, label: str) -> None:
    """Append to ``partial`` from where it stopped (206), or restart it when the server ignores Range (200)."""
    offset = partial.stat().st_size if partial.exists() else 0
    try:
        response = urllib.request.urlopen(_request(url, offset), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to fetch: the part file is already whole
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; download it by hand and pass --data FILE") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot reach {url} ({reason}): you may be offline. Download the file elsewhere and pass --data FILE"
        ) from None
    with response:
        resumed = response.status == 206
        total = _total_size(response, offset if resumed else 0)
        with partial.open("ab" if resumed else "wb") as out, Progress(
            label, total=total, enabled=progress, unit="bytes"
        ) as bar:
            bar.update(offset if resumed else 0)
            _copy(response, out, bar, url)


def _total_size(response: object, already: int) -> int | None:
    length = response.headers.get("Content-Length")  # type: ignore[attr-defined]
    return already + int(length) if length and length.isdigit() else None


def _copy(response: object, out: object, bar: Progress, url: str) -> None:
    try:
        while chunk := response.read(CHUNK_BYTES):  # type: ignore[attr-defined]
            out.write(chunk)  # type: ignore[attr-defined]
            bar.update(len(chunk))
    except (OSError, TimeoutError) as exc:
        raise DownloadError(f"{url}: connection lost ({exc}); run the same command again to resume") from None


def _verify(path: Path, expected: str | None, url: str) -> None:
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
            "removed, try again or pass --data FILE"
        )
