"""`download` against a real HTTP server on 127.0.0.1 that serves files in the hub's layout (with Range)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import synthetic_records

from lite_moderation.cli import main
from lite_moderation.data import load_dataset
from lite_moderation.hub import REVISION, SPLITS, DownloadError, download


class _HubHandler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[dict]] = []

    def do_GET(self) -> None:
        self.requests.append({"path": self.path, "range": self.headers.get("Range")})
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    """A hub on 127.0.0.1 serving a small gzipped 30k_train and a 330k_test with the wrong bytes."""
    records = synthetic_records(50, seed=7)
    payload = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode(), mtime=0)
    prefix = f"/datasets/PKU-Alignment/BeaverTails/resolve/{REVISION}/"
    _HubHandler.files = {prefix + SPLITS["30k_train"].path: payload,
                         prefix + SPLITS["330k_test"].path: b"not the real file"}
    _HubHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield payload
    server.shutdown()
    server.server_close()


def test_download_caches_the_file_and_it_loads(hub, tmp_path):
    path = download("30k_train", tmp_path)
    assert path.read_bytes() == hub
    assert path == tmp_path / "beavertails" / REVISION / "round0/30k/train.jsonl.gz"
    assert len(load_dataset(path, require="categories")) == 50
    requests_before = len(_HubHandler.requests)
    assert download("30k_train", tmp_path) == path  # cached: no new request
    assert len(_HubHandler.requests) == requests_before


def test_download_resumes_from_a_partial_file(hub, tmp_path):
    target = tmp_path / "beavertails" / REVISION / "round0/30k/train.jsonl.gz"
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(hub[:100])
    path = download("30k_train", tmp_path, sha256=hashlib.sha256(hub).hexdigest())
    assert path.read_bytes() == hub
    assert _HubHandler.requests[-1]["range"] == "bytes=100-"


def test_checksum_mismatch_is_refused_and_leaves_no_file(hub, tmp_path):
    with pytest.raises(DownloadError, match="sha256"):
        download("330k_test", tmp_path)
    assert not list((tmp_path / "beavertails").rglob("test.jsonl.xz*"))


def test_cli_prints_the_path_on_stdout(hub, tmp_path, runner):
    result = runner.invoke(main, ["download", "--split", "30k_train", "--cache-dir", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()).read_bytes() == hub
    assert "not verified" in result.stderr


def test_offline_gives_a_clear_message(tmp_path, runner, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    result = runner.invoke(main, ["download", "--split", "30k_train", "--cache-dir", str(tmp_path), "-q"])
    assert result.exit_code == 2
    assert "pass --data FILE" in result.stderr and "Traceback" not in result.output


def test_missing_file_on_the_hub(hub, tmp_path, runner):
    result = runner.invoke(main, ["download", "--split", "330k_train", "--cache-dir", str(tmp_path), "-q"])
    assert result.exit_code == 2
    assert "HTTP 404" in result.stderr


# ------------------------------------------------------------------------------------------ hostile servers

TRAIN_PATH = f"/datasets/PKU-Alignment/BeaverTails/resolve/{REVISION}/{SPLITS['30k_train'].path}"
PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes
TRICKLE_STEPS = 400  # a trickling server stops after this many steps of 0.05 s: a regression fails, never hangs


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    """Answers with the test's ``answer(handler)``; records each request's path, Range and Authorization."""

    answer: ClassVar = None
    seen: ClassVar[list[dict]] = []

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, "range": self.headers.get("Range"),
                          "authorization": self.headers.get("Authorization")})
        try:
            type(self).answer(self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def log_message(self, *args: object) -> None:
        pass


def _send(handler: http.server.BaseHTTPRequestHandler, body: bytes, status: int = 200,
          headers: dict | None = None) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch):
    """``serve(answer)`` starts a server on 127.0.0.1 answering every GET with ``answer(handler)`` and returns
    (its URL, its list of requests); the first one started is HF_ENDPOINT."""
    servers = []

    def start(answer) -> tuple[str, list[dict]]:
        handler = type("Handler", (_ScriptedHandler,), {"answer": staticmethod(answer), "seen": []})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        if not servers:
            monkeypatch.setenv("HF_ENDPOINT", url)
        servers.append(server)
        return url, handler.seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _target(cache: Path) -> Path:
    return cache / "beavertails" / REVISION / SPLITS["30k_train"].path


def _part(cache: Path) -> Path:
    target = _target(cache)
    return target.with_name(target.name + ".part")


def test_the_token_goes_to_the_hub_only_never_across_a_redirect_to_another_host(serve, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")

    def hub(handler):
        if handler.path == TRAIN_PATH:
            _send(handler, b"", 302, {"Location": "/moved"})  # same host: the token may follow
        else:
            _send(handler, b"", 302, {"Location": f"{cdn_url}/file"})

    _, hub_seen = serve(hub)
    cdn_url, cdn_seen = serve(lambda handler: _send(handler, PAYLOAD))
    path = download("30k_train", tmp_path, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert path.read_bytes() == PAYLOAD
    assert [r["authorization"] for r in hub_seen] == ["Bearer hf_test_token"] * 2
    assert [r["authorization"] for r in cdn_seen] == [None]


def test_a_redirect_to_anything_but_http_is_refused(serve, tmp_path):
    serve(lambda handler: _send(handler, b"", 302, {"Location": "ftp://127.0.0.1/file"}))
    with pytest.raises(DownloadError, match="non-HTTP"):
        download("30k_train", tmp_path)


def test_a_body_shorter_than_its_content_length_is_not_cached(serve, tmp_path, runner):
    def cut_short(handler):
        _send(handler, PAYLOAD[:100], headers={"Content-Length": str(len(PAYLOAD))})

    serve(cut_short)
    result = runner.invoke(main, ["download", "--split", "30k_train", "--cache-dir", str(tmp_path), "-q"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"ended after 100 of {len(PAYLOAD)} bytes" in result.stderr and "resume" in result.stderr
    assert not _target(tmp_path).exists()
    assert _part(tmp_path).read_bytes() == PAYLOAD[:100]  # kept, for the next run to resume from


@pytest.mark.parametrize("content_range", [f"bytes 0-{len(PAYLOAD) - 1}/{len(PAYLOAD)}",  # not where asked
                                           f"bytes 100-199/{len(PAYLOAD)}",  # stops before the end
                                           "bytes 100-199/*", "100-199", None])
def test_a_206_whose_range_is_not_the_one_asked_for_is_refused(serve, tmp_path, content_range):
    def wrong_range(handler):
        _send(handler, PAYLOAD[100:200], 206, {"Content-Range": content_range} if content_range else {})

    _, seen = serve(wrong_range)
    _part(tmp_path).parent.mkdir(parents=True)
    _part(tmp_path).write_bytes(PAYLOAD[:100])
    with pytest.raises(DownloadError, match="asked to resume at byte 100"):
        download("30k_train", tmp_path)
    assert seen[0]["range"] == "bytes=100-"
    assert not _target(tmp_path).exists() and not _part(tmp_path).exists()


@pytest.mark.parametrize("content_range", [None, "bytes */5000", "bytes */x"])
def test_a_416_that_does_not_confirm_the_size_starts_over(serve, tmp_path, content_range):
    def refuse_ranges(handler):
        if handler.headers.get("Range"):
            _send(handler, b"", 416, {"Content-Range": content_range} if content_range else {})
        else:
            _send(handler, PAYLOAD)

    _, seen = serve(refuse_ranges)
    _part(tmp_path).parent.mkdir(parents=True)
    _part(tmp_path).write_bytes(b"stale" * 20)
    assert download("30k_train", tmp_path).read_bytes() == PAYLOAD
    assert [r["range"] for r in seen] == ["bytes=100-", None]


def test_a_416_that_confirms_the_size_keeps_the_whole_part_file(serve, tmp_path):
    _, seen = serve(lambda handler: _send(handler, b"", 416, {"Content-Range": f"bytes */{len(PAYLOAD)}"}))
    _part(tmp_path).parent.mkdir(parents=True)
    _part(tmp_path).write_bytes(PAYLOAD)
    assert download("30k_train", tmp_path, sha256=hashlib.sha256(PAYLOAD).hexdigest()).read_bytes() == PAYLOAD
    assert len(seen) == 1


def _endless_chunks(handler):
    handler.protocol_version = "HTTP/1.1"
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Connection", "close")
    handler.end_headers()
    chunk = b"x" * 65536
    for _ in range(2000):  # 128 MB at most: a regression fails on its size, it does not fill the disk
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    handler.wfile.write(b"0\r\n\r\n")


def _endless_without_length(handler):
    handler.send_response(200)
    handler.end_headers()
    for _ in range(2000):
        handler.wfile.write(b"x" * 65536)


def _huge_length(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", str(10**12))
    handler.end_headers()
    handler.wfile.write(b"x" * 65536)


@pytest.mark.parametrize(("answer", "message"), [(_endless_chunks, "more than 1000000 bytes (--max-bytes)"),
                                                 (_endless_without_length, "no Content-Length"),
                                                 (_huge_length, f"{10**12} bytes, more than --max-bytes")])
def test_a_body_without_end_is_cut_at_max_bytes_and_not_kept(serve, tmp_path, runner, answer, message):
    serve(answer)
    result = runner.invoke(main, ["download", "--split", "30k_train", "--cache-dir", str(tmp_path), "-q",
                                  "--max-bytes", "1000000"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.stderr
    assert not _target(tmp_path).exists() and not _part(tmp_path).exists()


def _trickled_body(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", str(TRICKLE_STEPS))
    handler.end_headers()
    for _ in range(TRICKLE_STEPS):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.05)


def _trickled_headers(handler):
    handler.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
    for _ in range(TRICKLE_STEPS):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.05)
    handler.wfile.write(b"\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("answer", [_trickled_body, _trickled_headers])
def test_a_trickle_is_stopped_at_max_time(serve, tmp_path, runner, answer):
    serve(answer)
    result = runner.invoke(main, ["download", "--split", "30k_train", "--cache-dir", str(tmp_path), "-q",
                                  "--max-time", "0.5"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "not done within 0.5 s (--max-time)" in result.stderr
    assert not _target(tmp_path).exists()


@pytest.mark.parametrize("revision", ["../../x", "..", "/etc", "a//b", ".hidden", "main/../../x", "x\ny", "",
                                      "refs/heads/x.lock", "a b", "C:\\x"])
def test_a_revision_that_is_not_a_commit_or_ref_name_is_refused_before_anything_is_written(hub, tmp_path, runner,
                                                                                           revision):
    cache = tmp_path / "cache"
    result = runner.invoke(main, ["download", "--split", "30k_train", "--cache-dir", str(cache), "-q",
                                  "--revision", revision])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "neither a 40-hex commit nor a ref name" in result.stderr
    assert list(tmp_path.iterdir()) == [] and _HubHandler.requests == []


def test_a_ref_name_is_fetched_into_one_cache_directory(hub, tmp_path):
    _HubHandler.files["/datasets/PKU-Alignment/BeaverTails/resolve/refs%2Fpr%2F1/round0/30k/train.jsonl.gz"] = hub
    path = download("30k_train", tmp_path, revision="refs/pr/1")
    assert path == tmp_path / "beavertails" / "refs%2Fpr%2F1" / "round0/30k/train.jsonl.gz"
    assert path.read_bytes() == hub
