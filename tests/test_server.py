"""Tests for lite_moderation.server: real HTTP servers on 127.0.0.1, the real openai client, and the real CLI.

Most tests talk to servers started in this process (one thread each, free ports); the CLI and signal tests
start ``lite-moderation serve`` as a subprocess. Texts are harmless made-up sentences.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA, raw_exchange

from lite_moderation.cli import main
from lite_moderation.persistence import DEFAULT_MODEL_DIR
from lite_moderation.server import MODEL_ENV, create_app, make_app, make_server, try_it_page
from lite_moderation.taxonomy import CATEGORIES, OPENAI_CATEGORIES, OPENAI_MAPPED, openai_categories, short_name

TEXTS = ["The weather is lovely today.", "Please pass the salt and pepper."]
PAIR = {"prompt": "How do I water a cactus?", "response": "Sparingly, about once a month."}
GUARD = 30  # seconds: a socket guard so a broken server fails the test instead of hanging it


def call(port: int, method: str, path: str, body: bytes | dict | None = None,
         headers: dict | None = None) -> tuple[int, dict, object]:
    """One HTTP request; returns status, headers and the parsed JSON body."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD)
    try:
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def moderate(port: int, body: dict) -> dict:
    status, _, answer = call(port, "POST", "/v1/moderations", body)
    assert status == 200, answer
    return answer


# ------------------------------------------------------------------------------------------------ the API


def test_single_text_has_openai_shape_and_matches_the_library(port, model):
    answer = moderate(port, {"input": TEXTS[0]})
    assert answer["id"].startswith("modr-")
    assert answer["model"] == "lite-moderation-default"
    [result] = answer["results"]
    expected = model.moderate([TEXTS[0]])[0]
    assert list(result["categories"]) == list(OPENAI_CATEGORIES) == list(result["category_scores"])
    assert all(isinstance(v, bool) for v in result["categories"].values())
    assert result["flagged"] is expected["flagged"]
    own = {short_name(k): v for k, v in expected["categories"].items()}
    assert result["model_categories"] == own and all("," not in k for k in own)
    assert result["model_category_scores"] == pytest.approx({short_name(k): v for k, v in
                                                             expected["category_scores"].items()})
    assert result["unsafe_score"] == pytest.approx(expected["unsafe_score"])
    assert (result["categories"], result["category_scores"]) == openai_categories(expected["categories"],
                                                                                  expected["category_scores"])


def test_batch_of_texts_and_pairs_keeps_order(port, model):
    body = {"input": [TEXTS[0], PAIR, TEXTS[1]], "model": "omni-moderation-latest"}
    answer = moderate(port, body)
    expected = model.moderate([TEXTS[0], (PAIR["prompt"], PAIR["response"]), TEXTS[1]])
    assert answer["model"] == "lite-moderation-default"
    assert [r["unsafe_score"] for r in answer["results"]] == pytest.approx([e["unsafe_score"] for e in expected])
    assert [r["flagged"] for r in answer["results"]] == [e["flagged"] for e in expected]


def test_a_list_of_text_parts_is_one_input_as_openai_answers_it(port, model):
    """OpenAI's multi-modal input: its parts are one input with one result (code reads results[0])."""
    parts = [{"type": "text", "text": TEXTS[0]}, {"type": "text", "text": TEXTS[1]}]
    answer = moderate(port, {"input": parts})
    [expected] = model.moderate([TEXTS[0] + "\n" + TEXTS[1]])
    assert len(answer["results"]) == 1
    assert answer["results"][0]["unsafe_score"] == pytest.approx(expected["unsafe_score"], abs=1e-12)


def test_a_prompt_or_a_response_alone_is_that_input_shape(port, model):
    body = {"input": [{"prompt": PAIR["prompt"]}, {"response": PAIR["response"]}]}
    answer = moderate(port, body)
    expected = model.moderate([(PAIR["prompt"], ""), ("", PAIR["response"])])
    assert [r["unsafe_score"] for r in answer["results"]] == pytest.approx([e["unsafe_score"] for e in expected])


def test_ids_are_unique(port):
    assert moderate(port, {"input": "a"})["id"] != moderate(port, {"input": "a"})["id"]


def test_flagged_follows_the_model_on_real_rows(port, model):
    """Rows of the shared BeaverTails file, by index (their text stays out of the test output)."""
    path = Path(__file__).parent.parent.parent / "shared" / "data" / "beavertails" / "30k_test.jsonl"
    if not path.exists():
        pytest.skip("shared BeaverTails data not available")
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(40)]
    items = [(r["prompt"], r["response"]) for r in rows]
    answer = moderate(port, {"input": [{"prompt": p, "response": r} for p, r in items]})
    assert [r["flagged"] for r in answer["results"]] == [e["flagged"] for e in model.moderate(items)]
    assert any(r["flagged"] for r in answer["results"]) and not all(r["flagged"] for r in answer["results"])


def test_openai_async_client_gets_every_openai_field(port, model):
    import asyncio

    from openai import AsyncOpenAI

    async def ask():
        async with AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                               timeout=GUARD) as client:
            return await client.moderations.create(input=[TEXTS[0], TEXTS[1]])

    response = asyncio.run(ask())
    assert len(response.results) == 2
    for result, text in zip(response.results, TEXTS[:2]):
        verdict = model.moderate([text])[0]
        flags, scores = openai_categories(verdict["categories"], verdict["category_scores"])
        assert result.flagged is verdict["flagged"]
        assert result.categories.model_dump(by_alias=True) == flags
        assert result.category_scores.model_dump(by_alias=True) == pytest.approx(scores)


def test_openai_categories_follow_the_documented_rule():
    """"any" fields take their sources' highest score and flag with any of them; "/threatening" needs both."""
    scores = dict.fromkeys(CATEGORIES, 0.1)
    scores.update({"hate_speech,offensive_language": 0.9, "self_harm": 0.7})
    flags = {c: c in ("hate_speech,offensive_language", "self_harm") for c in CATEGORIES}
    categories, values = openai_categories(flags, scores)
    assert categories["hate"] and categories["harassment"] and not categories["hate/threatening"]
    assert values["hate"] == 0.9 and values["hate/threatening"] == 0.1
    assert categories["self-harm"] and categories["self-harm/intent"] and categories["self-harm/instructions"]
    assert not categories["violence"] and not categories["sexual/minors"]
    flags["violence,aiding_and_abetting,incitement"] = True
    categories, _ = openai_categories(flags, scores)
    assert categories["hate/threatening"] and categories["harassment/threatening"] and categories["violence"]


def test_a_verdict_naming_only_categories_openai_lacks_names_its_most_probable_mapped_one():
    """privacy_violation (no OpenAI counterpart) alone: OpenAI's fields name the most probable category that has
    one (here hate_speech), so a flagged result never reads as "no category"."""
    scores = dict.fromkeys(CATEGORIES, 0.01)
    scores.update({"privacy_violation": 0.4, "hate_speech,offensive_language": 0.03, "self_harm": 0.02})
    flags = {c: c == "privacy_violation" for c in CATEGORIES}
    categories, values = openai_categories(flags, scores)
    assert [name for name, on in categories.items() if on] == ["harassment", "hate"]
    assert values["hate"] == 0.03  # the scores stay the model's
    assert not any(openai_categories(dict.fromkeys(CATEGORIES, False), scores)[0].values())


def test_every_flagged_real_message_names_an_openai_category(port):
    """The first 120 held-out jailbreak prompts and 120 held-out HateCheck messages, by index (their text stays out
    of the output): the model names privacy_violation, non_violent_unethical_behavior... for many of them, which
    have no OpenAI counterpart. In OpenAI's shape, flagged holds exactly when some category does."""
    messages = SHARED_DATA / "messages"
    texts = []
    for name in ("jailbreak_prompts_heldout.jsonl", "hatecheck_heldout.jsonl"):
        with open(messages / name, encoding="utf-8") as fh:
            texts += [json.loads(line)["prompt"] for line, _ in zip(fh, range(120))]
    results = []
    for start in range(0, len(texts), 60):
        results += moderate(port, {"input": texts[start:start + 60]})["results"]
    unmapped = [i for i, r in enumerate(results)
                if r["flagged"] and not any(r["model_categories"][short_name(c)] for c in OPENAI_MAPPED)]
    assert unmapped, "no verdict named only categories OpenAI lacks: this test checks nothing"
    assert [i for i, r in enumerate(results) if r["flagged"] != any(r["categories"].values())] == []


def test_openai_client_parses_the_answer(port):
    from openai import BadRequestError, OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=GUARD)
    response = client.moderations.create(input=TEXTS, model="omni-moderation-latest")
    assert response.id.startswith("modr-")
    assert response.model == "lite-moderation-default"
    assert len(response.results) == 2
    result = response.results[0]
    assert isinstance(result.flagged, bool)
    # every field of OpenAI's categories is filled (None would read as "not flagged"), and no other name is there
    for name in type(result.categories).model_fields:
        assert isinstance(getattr(result.categories, name), bool), name
        assert 0.0 <= getattr(result.category_scores, name) <= 1.0, name
    assert set(result.categories.model_extra) <= set(OPENAI_CATEGORIES)  # the SDK keeps aliased keys as extras too
    assert set(result.model_extra["model_categories"]) == {short_name(c) for c in CATEGORIES}
    raw = client.moderations.with_raw_response.create(input=TEXTS[0]).http_response.json()
    assert list(raw["results"][0]["categories"]) == list(OPENAI_CATEGORIES)
    single = client.moderations.create(input=TEXTS[0])
    assert len(single.results) == 1
    assert [m.id for m in client.models.list().data] == ["lite-moderation-default"]
    with pytest.raises(BadRequestError, match="empty list"):
        client.moderations.create(input=[])


def test_healthz(port):
    status, headers, answer = call(port, "GET", "/healthz")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert answer == {"status": "ok", "model": "lite-moderation-default"}


def test_models_lists_the_model_and_its_card(port):
    status, _, answer = call(port, "GET", "/v1/models")
    assert status == 200
    [entry] = answer["data"]
    assert entry["id"] == "lite-moderation-default" and entry["object"] == "model"
    assert entry["card"]["labels"] == [*CATEGORIES, "unsafe"]
    assert set(entry["card"]["thresholds"]) == {*CATEGORIES, "unsafe"}
    assert set(entry["card"]["operating_points"]) == {"default", "strict"}
    assert "license" in entry["card"]
    assert call(port, "GET", "/v1/models/lite-moderation-default")[2] == entry


@pytest.mark.parametrize("threshold", [None, "strict", 0.5])
def test_models_says_the_cut_off_the_server_applies(start, threshold):
    """The entry's ``threshold`` is the server's own unsafe cut-off (``serve --threshold``), applied to a request
    that names none: what the try-it page uses by default. null: the model's own cut-offs."""
    port = start(threshold=threshold).server_port
    [entry] = call(port, "GET", "/v1/models")[2]["data"]
    assert entry["threshold"] == threshold and type(entry["threshold"]) is type(threshold)
    assert call(port, "GET", "/v1/models/lite-moderation-default")[2] == entry


# ------------------------------------------------------------------------------------------------ limits and bad input


def assert_error(reply: tuple[int, dict, object], expected_status: int, fragment: str) -> None:
    """``reply`` is what ``call`` returns: an OpenAI-style JSON error with this status and message."""
    status, _, answer = reply
    assert status == expected_status, answer
    assert isinstance(answer, dict) and answer["error"]["type"] == "invalid_request_error"
    assert fragment in answer["error"]["message"]


BAD_BODIES = {
    "malformed-json": (b'{"input": "a",', "not valid JSON"),
    "invalid-utf8": (b'{"input": "caf\xe9"}', "not valid UTF-8 (byte offset 14)"),
    "top-level-list": (b'["a"]', "must be a JSON object, got array"),
    "missing-input": (b'{"model": "x"}', "missing required field 'input'"),
    "input-number": (b'{"input": 3}', "'input' must be a string or a list, got number"),
    "input-null": (b'{"input": null}', "got null"),
    "empty-list": (b'{"input": []}', "empty list"),
    "item-number": (b'{"input": ["a", 7]}', "input[1] must be a string or an object, got number"),
    "item-nested-list": (b'{"input": [["a"]]}', "input[0] must be a string or an object, got array"),
    "pair-null-response": (b'{"input": [{"prompt": "a", "response": null}]}',
                           "input[0].response must be a string, got null"),
    "pair-both-empty": (b'{"input": [{"prompt": " ", "response": ""}]}', "both empty"),
    "blank-text": (b'{"input": " "}', "input is empty or only whitespace"),
    "blank-item": (b'{"input": ["a", "\\t"]}', "input[1] is empty or only whitespace"),
    "pair-wrong-type": (b'{"input": [{"prompt": "a", "response": false}]}', "got boolean"),
    "image-part": (b'{"input": [{"type": "image_url", "image_url": {"url": "x"}}]}', "only text parts"),
    "text-and-image-parts": ((b'{"input": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": '
                              b'{"url": "x"}}]}'), "input[1]: only text parts are supported, got type 'image_url'"),
    "parts-mixed-with-texts": (b'{"input": ["a", {"type": "text", "text": "b"}]}', "input[0]: a list of"),
    "blank-parts": (b'{"input": [{"type": "text", "text": " "}, {"type": "text", "text": ""}]}', "only whitespace"),
    "unknown-object": (b'{"input": [{"foo": "a"}]}', "input[0] must be a string or a"),
    "model-not-string": (b'{"input": "a", "model": 5}', "'model' must be a string"),
    "lone-surrogate": (b'{"input": "a\\ud800b"}', "unpaired surrogate at character 1"),
    "deep-nesting": (b'{"input": ' + b"[" * 100_000 + b"}", "not valid JSON"),
    "empty-body": (b"", "not valid JSON"),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_bodies_get_400_with_a_json_message(port, name):
    body, fragment = BAD_BODIES[name]
    assert_error(call(port, "POST", "/v1/moderations", body, {"Content-Type": "application/json"}), 400, fragment)


def test_body_over_the_limit_gets_413(start):
    small = start(max_body_bytes=100_000).server_port
    body = json.dumps({"input": ["word " * 100] * 2000}).encode()
    assert len(body) > 1_000_000
    assert_error(call(small, "POST", "/v1/moderations", body), 413, "limit is 100000")
    assert moderate(small, {"input": TEXTS})["results"]


def test_default_body_limit_is_1_mb(port):
    body = json.dumps({"input": "x" * 1_000_000}).encode()
    assert_error(call(port, "POST", "/v1/moderations", body), 413, "limit is 1000000")


def test_batch_over_the_limit_gets_400(start):
    limited = start(max_batch=4).server_port
    reply = call(limited, "POST", "/v1/moderations", {"input": ["a"] * 5})
    assert_error(reply, 400, "5 items; the limit is 4")
    assert reply[2]["error"]["code"] == "batch_too_large"
    assert len(moderate(limited, {"input": ["a"] * 4})["results"]) == 4


def test_unknown_path_gets_404(port):
    assert_error(call(port, "GET", "/v1/completions"), 404, "no such endpoint")
    assert_error(call(port, "POST", "/moderations", {"input": "a"}), 404, "no such endpoint")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/v1/moderations", "POST"), ("PUT", "/v1/moderations", "POST"), ("POST", "/healthz", "GET"),
    ("DELETE", "/v1/models", "GET"),
])
def test_wrong_method_gets_405_with_allow(port, method, path, allowed):
    reply = call(port, method, path, b"{}")
    assert_error(reply, 405, f"method {method} not allowed")
    assert reply[1]["Allow"] == allowed


def test_missing_or_bad_content_length(port):
    request = b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    assert raw_exchange(port, request).startswith(b"HTTP/1.1 411 ")
    request = b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: lots\r\n\r\n"
    reply = raw_exchange(port, request)
    assert reply.startswith(b"HTTP/1.1 400 ") and b"Content-Length is invalid" in reply


def test_stalled_body_is_cut_off_and_frees_the_thread(start):
    """Half a body, then silence: answered 408 at the read timeout; the single worker was never held."""
    server = start(threads=1, read_timeout=0.3)
    body = json.dumps({"input": TEXTS}).encode()
    head = f"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    reply = raw_exchange(server.server_port, head + body[: len(body) // 2])
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b"timed out reading the request" in reply
    assert len(moderate(server.server_port, {"input": TEXTS})["results"]) == 2


def test_trickling_body_is_cut_off_by_the_whole_body_deadline(start):
    """A client sending a byte at a time, never silent for long, still gets 408 at the whole-request deadline."""
    server = start(threads=1, read_timeout=0.5)
    body = json.dumps({"input": TEXTS}).encode()
    head = f"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=GUARD) as sock:
        sock.sendall(head)
        reply = b""
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(0.2)
            try:
                reply = sock.recv(65536)
            except TimeoutError:
                continue
            break
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert len(moderate(server.server_port, {"input": TEXTS})["results"]) == 2


def test_silent_connections_do_not_hold_the_workers(start):
    """Clients that connect and never send a request line are closed after the read timeout."""
    server = start(threads=2, read_timeout=0.3)
    idle = [socket.create_connection(("127.0.0.1", server.server_port), timeout=GUARD) for _ in range(3)]
    try:
        assert moderate(server.server_port, {"input": TEXTS[0]})["results"]
        assert idle[0].recv(1) == b""  # closed by the server
    finally:
        for sock in idle:
            sock.close()


def test_good_requests_succeed_after_a_barrage_of_bad_ones(start, model):
    server = start(threads=2, read_timeout=0.3, max_body_bytes=10_000, max_batch=8)
    p = server.server_port
    for round_ in range(10):
        for body, _ in BAD_BODIES.values():
            call(p, "POST", "/v1/moderations", body[:20_000])
        call(p, "POST", "/v1/moderations", b"x" * 50_000)
        call(p, "POST", "/v1/moderations", {"input": ["a"] * 9})
        call(p, "GET", "/nowhere")
        raw_exchange(p, b"\x00\xff garbage that is not HTTP\r\n\r\n")
        raw_exchange(p, b"POST /v1/moderations HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"in")
        with socket.create_connection(("127.0.0.1", p)) as sock:  # hang up mid-request
            sock.sendall(b"POST /v1/moderations HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    expected = model.moderate(TEXTS)
    for _ in range(10):
        answer = moderate(p, {"input": TEXTS})
        assert [r["unsafe_score"] for r in answer["results"]] == pytest.approx([e["unsafe_score"] for e in expected])
    assert call(p, "GET", "/healthz")[0] == 200


# ------------------------------------------------------------------------------------------------ logging


def test_requests_are_logged_without_their_text(port, caplog):
    marker = "zebra-marker-7f3a"
    with caplog.at_level(logging.INFO, logger="lite_moderation.server"):
        moderate(port, {"input": [f"{marker} one", {"prompt": marker, "response": f"{marker} two"}]})
        call(port, "POST", "/v1/moderations", {"input": [marker, 5]})
        call(port, "GET", f"/{marker}")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("lite_moderation.server")]
    assert any(m.startswith("POST /v1/moderations 200 ") and m.endswith("items=2") for m in messages), messages
    assert any(m.startswith("POST /v1/moderations 400 ") for m in messages), messages
    assert any(" 404 " in m for m in messages), messages
    assert all("ms items=" in m for m in messages)
    assert not any(marker in m and "404" not in m for m in messages)


# ------------------------------------------------------------------------------------------------ WSGI factory


def test_create_app_reads_the_model_from_the_environment(monkeypatch, model):
    monkeypatch.setenv(MODEL_ENV, str(DEFAULT_MODEL_DIR))
    monkeypatch.setenv("LITE_MODERATION_MAX_BATCH", "3")
    monkeypatch.setenv("LITE_MODERATION_THRESHOLD", "0.5")
    app = create_app()
    assert app.max_batch == 3 and app.model_name == "lite-moderation-default"
    server = make_server(app, "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert len(moderate(server.server_port, {"input": TEXTS})["results"]) == 2
        assert call(server.server_port, "GET", "/v1/models")[2]["data"][0]["threshold"] == 0.5  # a number
        assert call(server.server_port, "POST", "/v1/moderations", {"input": ["a"] * 4})[0] == 400
    finally:
        server.shutdown()
        thread.join(GUARD)


# ------------------------------------------------------------------------------------------------ CLI


class ServeProcess:
    """``lite-moderation serve`` in a subprocess; stderr lines are collected by a reader thread."""

    def __init__(self, *args: str, sigint_ignored: bool = False) -> None:
        command = [sys.executable, "-m", "lite_moderation.cli", "serve", "--port", "0", *args]
        if sigint_ignored:  # as a shell's background job: SIGINT ignored, kept across exec
            keep_ignored = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); " \
                           "os.execv(sys.argv[1], sys.argv[1:])"
            command = [sys.executable, "-c", keep_ignored, *command]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = int(re.search(r"http://\S+:([0-9]+) ", self.wait_for("serving ")).group(1))

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, fragment: str) -> str:
        while True:
            line = self.lines.get(timeout=60)
            self.seen.append(line)
            if fragment in line:
                return line

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=60)
        self.reader.join(GUARD)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_and_stops_cleanly_on_signal(signum):
    marker = "zebra-marker-cli"
    server = ServeProcess("--threads", "2", "--max-batch", "2")
    try:
        assert moderate(server.port, {"input": [f"{marker} a", f"{marker} b"]})["results"]
        assert call(server.port, "POST", "/v1/moderations", {"input": ["a"] * 3})[0] == 400
        server.wait_for("items=2")
    finally:
        code = server.stop(signum)
    assert code == 0
    log = "".join(server.seen)
    assert "POST /v1/moderations 200" in log and "stopped" in log
    assert marker not in log
    assert "Traceback" not in log


def test_cli_stops_on_sigint_even_when_started_with_sigint_ignored():
    server = ServeProcess("--threads", "1", sigint_ignored=True)
    try:
        assert moderate(server.port, {"input": ["a made-up sentence"]})["results"]
    finally:
        code = server.stop(signal.SIGINT)
    assert code == 0 and "stopped" in "".join(server.seen)


def test_cli_stops_cleanly_with_a_stalled_client_connected():
    server = ServeProcess("--threads", "1", "--read-timeout", "0.5")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=GUARD)
    try:
        sock.sendall(b"POST /v1/moderations HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    finally:
        code = server.stop(signal.SIGTERM)
        sock.close()
    assert code == 0


def test_cli_bad_model_exits_2_with_one_line(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "missing"), "--port", "0"])
    assert result.exit_code == 2
    assert "no such model directory" in result.output


def test_cli_port_in_use_exits_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = CliRunner().invoke(main, ["serve", "--port", str(taken.getsockname()[1])])
    assert result.exit_code == 2
    assert "Address already in use" in result.output


def test_cli_help_lists_the_limits():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "--threads", "--max-body-bytes", "--max-batch", "--read-timeout",
                   "--model"):
        assert option in result.output


def test_strict_threshold_flags_only_scores_above_the_strict_cut(start, model):
    """--threshold strict on the server: the same scores, judged at the model's strict operating point."""
    strict_port = start(threshold="strict").server_port
    texts = [f"a made-up sentence number {i} about gardens and rivers" for i in range(12)]
    status, _, default_body = call(start().server_port, "POST", "/v1/moderations", {"input": texts})
    status_strict, _, strict_body = call(strict_port, "POST", "/v1/moderations", {"input": texts})
    assert status == status_strict == 200
    cut = model.operating_points_["strict"]
    for plain, strict in zip(default_body["results"], strict_body["results"]):
        assert strict["unsafe_score"] == plain["unsafe_score"]
        assert strict["flagged"] == (strict["unsafe_score"] >= cut)


def test_moderations_honours_a_threshold_in_the_request_as_explain_does(start, model):
    """``threshold`` in a /v1/moderations body was ignored: {"input": "hello there", "threshold": 0.001} came back
    not flagged, while /v1/explain judged the same body at 0.001. Both now judge a request at its own cut-off (a
    probability or an operating point's name), and at the server's when it names none or null."""
    port = start(threshold="strict").server_port  # the server's own cut-off: the model's strict point
    pair = [{"prompt": PAIR["prompt"], "response": "About once a month."}]  # flagged at default, not at strict

    def verdicts(body: dict) -> list[tuple[bool, float]]:
        answers = [call(port, "POST", path, body) for path in ("/v1/moderations", "/v1/explain")]
        assert [status for status, _, _ in answers] == [200, 200], answers
        return [(r["flagged"], r["unsafe_score"]) for _, _, answer in answers for r in answer["results"]]

    [(plain, score), explained] = verdicts({"input": "hello there"})
    assert not plain and 0.001 < score < model.operating_points_["strict"] and explained == (plain, score)
    assert verdicts({"input": "hello there", "threshold": 0.001}) == [(True, score)] * 2
    assert model.moderate(["hello there"], threshold=0.001)[0]["flagged"]
    [(at_server, _), _] = verdicts({"input": pair, "threshold": None})
    assert not at_server and verdicts({"input": pair}) == verdicts({"input": pair, "threshold": None})
    [(at_default, _), same] = verdicts({"input": pair, "threshold": "default", "model": "omni-moderation-latest"})
    assert at_default and same[0]
    from openai import OpenAI  # as docs/serve.md shows it: the SDK sends the field in extra_body

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=GUARD)
    assert client.moderations.create(input="hello there", extra_body={"threshold": 0.001}).results[0].flagged


@pytest.mark.parametrize("threshold", ["lax", "0.5", 1.5, -0.1, True, [0.5], {"cut": 0.5}])
def test_a_bad_threshold_is_refused_by_moderations_as_by_explain(port, threshold):
    """The same check and the same 400 (param "threshold") on both endpoints."""
    body = {"input": TEXTS[0], "threshold": threshold}
    replies = [call(port, "POST", path, body) for path in ("/v1/moderations", "/v1/explain")]
    assert [status for status, _, _ in replies] == [400, 400], replies
    errors = [answer["error"] for _, _, answer in replies]
    assert errors[0] == errors[1] and errors[0]["param"] == "threshold", errors
    assert "operating point" in errors[0]["message"]


@pytest.mark.parametrize("threshold", ["x" * 200_000, [0.5] * 50_000])
def test_a_huge_bad_threshold_is_not_echoed_whole(port, threshold):
    """The 400 names the bad value clipped: a request near the body limit does not get an answer as large."""
    status, _, answer = call(port, "POST", "/v1/moderations", {"input": TEXTS[0], "threshold": threshold})
    assert status == 400 and answer["error"]["param"] == "threshold"
    assert len(answer["error"]["message"]) < 300, len(answer["error"]["message"])


def test_unknown_operating_point_is_refused_at_start_up(model):
    with pytest.raises(ValueError, match="unknown operating point 'lenient'"):
        make_app(model, threshold="lenient")


# ------------------------------------------------------------------------------------------------ hostile callers (#22)


def _status(port: int, host: str | None = None, origin: str | None = None, method: str = "POST",
            path: str = "/v1/moderations") -> int:
    headers = {"Content-Type": "text/plain"}  # a "simple" request: a browser sends it cross-origin unasked
    if host is not None:
        headers["Host"] = host
    if origin is not None:
        headers["Origin"] = origin
    return call(port, method, path, {"input": TEXTS[0]} if method == "POST" else None, headers)[0]


def test_a_host_that_is_not_this_servers_is_refused(start):
    """DNS rebinding: a page on evil.example re-resolves its own name to 127.0.0.1 and calls the server with
    Host: evil.example. Only loopback names and addresses are answered by default."""
    p = start().server_port
    for host in ("evil.example", f"evil.example:{p}", "localhost.evil.example", "127.0.0.1.evil.example",
                 "10.0.0.1", f"[fe80::1]:{p}"):
        assert _status(p, host) == 421, host
        assert _status(p, host, method="GET", path="/") == 421, host
    _, _, answer = call(p, "GET", "/healthz", headers={"Host": "evil.example"})
    assert answer["error"]["code"] == "host_not_allowed" and "--allowed-host evil.example" in answer["error"]["message"]
    for host in (f"127.0.0.1:{p}", "localhost", f"LOCALHOST.:{p}", "[::1]", "127.0.0.2"):
        assert _status(p, host) == 200, host
    for host in ("a b", "user@127.0.0.1", "127.0.0.1:80:80", "[::1"):
        assert _status(p, host) == 400, host


def test_an_absolute_form_target_naming_another_host_is_refused_like_a_bad_host(start):
    """``GET http://evil.example/... HTTP/1.1`` with a good Host header: the target's authority is the request's
    host (RFC 9112 3.2.2), so it is checked as a Host header is: 421, or 400 when malformed."""
    p = start().server_port

    def status(target: str, host: str | None = f"127.0.0.1:{p}") -> tuple[bytes, bytes]:
        head = f"GET {target} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host else "") + "Connection: close\r\n\r\n"
        reply = raw_exchange(p, head.encode())
        return reply.split(b" ", 2)[1], reply
    for target in ("http://evil.example/v1/models", f"http://evil.example:{p}/healthz", "HTTPS://EVIL.EXAMPLE/",
                   "http://10.0.0.1/healthz"):
        code, reply = status(target)
        assert code == b"421", (target, reply[:200])
        assert b"host_not_allowed" in reply and b"--allowed-host" in reply
        assert status(target, host=None)[0] == b"421", target  # no Host header at all: the target still decides
    for target in ("http://user@127.0.0.1/healthz", "http:///healthz"):
        assert status(target)[0] == b"400", target
    for target in (f"http://127.0.0.1:{p}/healthz", "http://localhost/healthz", "/healthz"):
        assert status(target)[0] == b"200", target


def test_a_cross_origin_page_cannot_post(start):
    """A foreign page's text/plain POST needs no CORS preflight: it must be refused, not scored."""
    p = start().server_port
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{p + 1}", f"http://localhost:{p}",
                   f"http://127.0.0.1:{p}/path", "http://127.0.0.1", "not an origin", f"http://evil.example:{p}"):
        assert _status(p, f"127.0.0.1:{p}", origin) == 403, origin
    assert _status(p, f"127.0.0.1:{p}", f"http://127.0.0.1:{p}") == 200  # the server's own page
    assert _status(p, f"localhost:{p}", f"http://LOCALHOST:{p}") == 200
    assert _status(p, f"127.0.0.1:{p}", f"https://127.0.0.1:{p}") == 200  # a TLS proxy in front: same host and port


def test_allowed_hosts_and_origins_are_configured_and_a_wildcard_bind_admits_addresses(start, model):
    p = start(allowed_hosts=["moderation.internal"], allowed_origins=["https://app.example.com"]).server_port
    assert _status(p, "moderation.internal:8000") == 200
    assert _status(p, "moderation.internal", "https://app.example.com") == 200
    assert _status(p, "other.internal") == 421 and _status(p, "moderation.internal", "https://other.example") == 403
    anywhere = start(allowed_hosts=["0.0.0.0"]).server_port  # what serve --host 0.0.0.0 passes
    assert _status(anywhere, "192.0.2.7:8000") == 200 and _status(anywhere, "[2001:db8::1]") == 200
    assert _status(anywhere, "evil.example") == 421
    with pytest.raises(ValueError, match="not a host name"):
        make_app(model, allowed_hosts=["a b"])


def test_the_page_allows_only_its_own_inline_code_and_nothing_is_sniffed(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
    finally:
        conn.close()
    policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    page = try_it_page().decode("utf-8")
    script = re.search(r"<script>(.*?)</script>", page, re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"  # no 'unsafe-inline', no other source
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    assert headers["x-content-type-options"] == "nosniff"
    assert call(port, "GET", "/healthz")[1]["X-Content-Type-Options"] == "nosniff"
    assert call(port, "GET", "/nowhere")[1]["X-Content-Type-Options"] == "nosniff"
    assert b"X-Content-Type-Options: nosniff" in raw_exchange(port, b"\x00 not http\r\n\r\n")


def test_a_huge_method_is_neither_logged_nor_echoed_in_full(port, caplog):
    huge = "X" * 200_000
    with caplog.at_level(logging.INFO, logger="lite_moderation.server"):
        answered = raw_exchange(port, f"{huge} /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      f"Connection: close\r\n\r\n".encode())
        malformed = raw_exchange(port, f"{huge} /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                       f"bad header line\r\n\r\n".encode())
    assert answered.startswith(b"HTTP/1.1 405 ") and len(answered) < 1_000
    assert malformed.split(b"\r\n")[0].endswith(b" 400 Bad Request") and len(malformed) < 1_000
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("lite_moderation.server")]
    assert len(messages) >= 2 and all(len(m) < 200 for m in messages), [m[:80] for m in messages]


@pytest.mark.parametrize("option,value", [
    ("--read-timeout", "inf"), ("--read-timeout", "nan"), ("--read-timeout", "-inf"), ("--read-timeout", "0"),
    ("--read-timeout", "1e309"), ("--read-timeout", "86400"), ("--workers", "0"), ("--workers", "100000"),
    ("--threads", "100000"), ("--max-body-bytes", "1000000000000"), ("--max-batch", "1000000000"),
    ("--host", ""), ("--host", " "), ("--allowed-host", "a b"), ("--allowed-host", "user@host"),
    ("--allowed-origin", "evil.example"), ("--allowed-origin", "https://app.example.com/path"),
])
def test_cli_serve_refuses_out_of_range_options(tmp_path, option, value):
    """Each is refused by option parsing (exit 2, naming the option): the missing model is never reached."""
    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "missing"), "--port", "0", option, value])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output, result.output
    assert "Traceback" not in result.output


def test_cli_serve_on_a_wildcard_address_takes_allowed_hosts_and_origins():
    server = ServeProcess("--host", "0.0.0.0", "--threads", "1", "--read-timeout", "1",
                          "--allowed-host", "moderation.internal", "--allowed-origin", "https://app.example.com")
    try:
        assert _status(server.port, "192.0.2.7") == 200  # bound to every address: any address names it
        assert _status(server.port, "moderation.internal", "https://app.example.com") == 200
        assert _status(server.port, "evil.example") == 421
        assert _status(server.port, "moderation.internal", "http://evil.example") == 403
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0


# ------------------------------------------------------------------------------------------------ round of a user


def test_head_is_get_without_content(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD)
    try:
        for path, status in (("/healthz", 200), ("/", 200), ("/v1/moderations", 405)):
            conn.request("HEAD", path)
            reply = conn.getresponse()
            assert reply.status == status and reply.read() == b""
            assert int(reply.getheader("Content-Length")) > 0  # GET's length: the connection stays in step
        conn.request("GET", "/healthz")  # the same keep-alive connection: nothing was left unread
        assert json.loads(conn.getresponse().read())["status"] == "ok"
    finally:
        conn.close()


def test_an_allowed_origin_can_read_answers_and_pass_its_preflight(start):
    origin = "https://app.example"
    allowed = start(allowed_origins=[origin]).server_port
    status, headers, _ = call(allowed, "POST", "/v1/moderations", {"input": TEXTS[0]},
                              {"Origin": origin, "Content-Type": "application/json"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == origin and headers["Vary"] == "Origin"
    conn = http.client.HTTPConnection("127.0.0.1", allowed, timeout=GUARD)
    try:
        conn.request("OPTIONS", "/v1/moderations", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-lang"})
        reply = conn.getresponse()
        assert reply.status == 204 and reply.read() == b""
        assert reply.getheader("Access-Control-Allow-Origin") == origin
        assert reply.getheader("Access-Control-Allow-Methods") == "POST"
        assert reply.getheader("Access-Control-Allow-Headers") == "authorization, content-type, x-stainless-lang"
    finally:
        conn.close()
    status, headers, _ = call(allowed, "POST", "/v1/moderations", {"input": TEXTS[0]},
                              {"Origin": "https://other.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_a_long_request_does_not_hold_a_short_one(start):
    """Half a megabyte of words never seen takes seconds to score (a Python step per new word: about 3 s here); a
    short request sent half a second after it, on another connection, is answered first: each thread has its own scorer.
    An order of answers, not a timing. Before, the short one waited for the long one's scorer lock."""
    busy = start(threads=4, max_body_bytes=2_000_000).server_port
    long_text = " ".join(f"w{i:x}q{i * 7919 % 100003:x}" for i in range(60_000))
    finished: queue.Queue = queue.Queue()

    def long_request() -> None:
        call(busy, "POST", "/v1/moderations", {"input": long_text})
        finished.put("long")

    worker = threading.Thread(target=long_request)
    worker.start()
    time.sleep(0.5)  # the long request is uploaded and parsed by then, and being scored
    moderate(busy, {"input": TEXTS[0]})
    finished.put("short")
    worker.join(timeout=GUARD)
    assert [finished.get(timeout=GUARD) for _ in range(2)] == ["short", "long"]


def test_a_compressed_body_and_another_models_name_get_their_own_errors(port):
    status, _, answer = call(port, "POST", "/v1/moderations", b"\x1f\x8b\x08\x00", {"Content-Encoding": "gzip"})
    assert status == 415 and answer["error"]["code"] == "unsupported_content_encoding"
    status, _, answer = call(port, "GET", "/v1/models/omni-moderation-latest")
    assert status == 404 and answer["error"]["code"] == "model_not_found"
    assert "lite-moderation-default" in answer["error"]["message"]
    status, _, answer = call(port, "POST", "/v1/explain", {"input": "a note", "top": "x" * 100_000})
    assert status == 400 and len(answer["error"]["message"]) < 200
