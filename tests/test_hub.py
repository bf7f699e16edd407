"""`download` against a real HTTP server on 127.0.0.1 that serves files in the hub's layout (with Range)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import threading
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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
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
