"""Hostile input against the server (#22): each class of denial of service gets a real server on 127.0.0.1 and
an assertion on counted work, bytes held or answer size (never on wall-clock time).

- hash flooding: words crafted to share a home in the scorer's word table cost a bounded number of probes;
- amplification: /v1/explain answers within its limits, or refuses naming the limit;
- memory: huge words leave the caches within their byte budgets, and a long single text costs the work of
  its new words only (no slow path);
- a model directory changed on disk: the server keeps answering from the model it loaded at start.

Texts are made-up letters and harmless words.
"""

from __future__ import annotations

import http.client
import json
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import lite_moderation as lm
from lite_moderation.fast import FastScorer, _WordTable
from lite_moderation.persistence import DEFAULT_MODEL_DIR
from lite_moderation.server import (
    DEFAULT_MAX_EXPLAIN_BYTES,
    DEFAULT_MAX_EXPLAIN_CHARS,
    DEFAULT_THREADS,
    EXPLAIN_MAX_SPANS,
    EXPLAIN_MAX_TOP,
    ModerationServer,
    make_app,
    make_server,
)
from lite_moderation.taxonomy import LABELS

GUARD = 60  # seconds: a socket guard, so a server stuck in a slow path fails the test instead of hanging it
MODELS = Path(DEFAULT_MODEL_DIR).parent
WORDS = ["garden", "river", "kitchen", "music", "travel", "planet", "museum", "library", "bicycle", "weather",
         "the", "a", "of", "and", "is", "with", "quiet", "morning", "bread", "window"]


def post(port: int, path: str, body: dict) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


#: The app of each server a test started, by port (its thread scorers are what the tests read).
APPS: dict[int, object] = {}


@pytest.fixture(scope="module")
def serve() -> Iterator[Callable[[object], int]]:
    """Start a server around a scorer or model; returns its port. All stop when the module ends."""
    running: list[tuple[ModerationServer, threading.Thread]] = []

    def _serve(model: object, threads: int = 2) -> int:
        app = make_app(model)
        server = make_server(app, "127.0.0.1", 0, threads=threads, read_timeout=GUARD)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        APPS[server.server_port] = app
        return server.server_port

    yield _serve
    for server, thread in running:
        server.shutdown()
        thread.join(GUARD)


# ------------------------------------------------------------------------------------------------ hash flooding


def _eight_letter_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random lowercase 8-byte words as (n, 8) uint8."""
    return rng.integers(ord("a"), ord("z") + 1, size=(n, 8), dtype=np.uint8)


def _colliding_words(table: _WordTable, n: int, seed: int = 0) -> list[str]:
    """n distinct 8-letter words whose homes, under ``table``'s key at the size that will hold them, fall in the
    first 32 places: one probing cluster (what an attacker who knew the key would send)."""
    bits = max(table.bits + 1, int(np.ceil(np.log2(4 * n + 1))))  # the size insert grows to for n new words
    sized = _WordTable(bits, table.multipliers)
    rng, found = np.random.default_rng(seed), {}
    while len(found) < n:
        letters = _eight_letter_words(rng, 1 << 20)
        keys = np.zeros((len(letters), 3), dtype=np.uint64)
        keys[:, 0] = letters.view("<u8").reshape(-1)
        for row in letters[sized._home(keys) < 32]:
            found[bytes(row).decode()] = None
    return list(found)[:n]


def _texts(words: list[str]) -> list[str]:
    return [" ".join(words[i::16]) for i in range(16)]  # 16 texts: the numpy path of batches


def _response_caches(port: int) -> list:
    """The response-word caches of the server's worker threads (each thread scores with caches of its own)."""
    return [next(b.cache for b in scorer.blocks if b.fast and b.source == "response")
            for scorer in APPS[port].scorers()]


def _probes_of(port: int, words: list[str]) -> tuple[int, list[_WordTable], list[dict]]:
    """Send the words twice (the second time they are all cached); the probes the response tables counted."""
    for _ in range(2):
        status, raw = post(port, "/v1/moderations", {"input": _texts(words)})
        assert status == 200, raw
    tables = [cache.table for cache in _response_caches(port)]
    return sum(t.probes for t in tables), tables, json.loads(raw)["results"]


def test_words_crafted_to_collide_cost_bounded_probes_and_score_exactly(serve):
    n = 3000
    random_scorer, crafted_scorer, other_scorer = (lm.load_scorer("fast") for _ in range(3))
    rng = np.random.default_rng(1)
    random_words = list(dict.fromkeys(bytes(r).decode() for r in _eight_letter_words(rng, n)))
    random_probes, _, _ = _probes_of(serve(random_scorer, threads=1), random_words)

    # the threads' caches keep the scorer's table key: words crafted against it collide in theirs
    response_cache = next(b.cache for b in crafted_scorer.blocks if b.fast and b.source == "response")
    crafted = _colliding_words(response_cache.table, n)
    crafted_probes, tables, results = _probes_of(serve(crafted_scorer, threads=1), crafted)
    # unbounded linear probing costs ~n/2 probes per crafted word (about 400x a random set here)
    assert crafted_probes <= (2 * _WordTable.MAX_PROBES + 1) * n
    assert crafted_probes <= 12 * random_probes
    assert tables[0].overflow, "the crafted words did not collide: the test would prove nothing"

    reference = lm.load("fast").predict_proba(_texts(crafted))
    assert np.abs(np.array([r["unsafe_score"] for r in results]) - reference[:, -1]).max() < 1e-9

    # the same words, crafted against one table's key, do not collide in another's (keys are per table)
    other_probes, other_tables, _ = _probes_of(serve(other_scorer, threads=1), crafted)
    assert other_probes <= 2 * random_probes and not other_tables[0].overflow


# ------------------------------------------------------------------------------------------------ amplification


@pytest.fixture(scope="module")
def default_port(serve) -> int:
    return serve(lm.load_scorer())


def test_explain_refuses_more_text_than_its_limit_naming_it(default_port):
    status, raw = post(default_port, "/v1/explain", {"input": "word " * 199_000})  # ~1 MB
    error = json.loads(raw)["error"]
    assert status == 413 and error["code"] == "explain_input_too_large" and error["param"] == "input"
    assert str(DEFAULT_MAX_EXPLAIN_CHARS) in error["message"] and "995000" in error["message"]


def test_explain_answer_of_a_long_text_with_every_label_is_bounded_and_exact(default_port):
    rng = np.random.default_rng(2)
    text = " ".join(rng.choice(WORDS, size=15_000))  # ~90,000 characters: thousands of spans per term
    assert len(text) <= DEFAULT_MAX_EXPLAIN_CHARS
    status, raw = post(default_port, "/v1/explain", {"input": text, "labels": list(LABELS)})
    assert status == 200, raw[:300]
    assert len(raw) <= DEFAULT_MAX_EXPLAIN_BYTES
    [result] = json.loads(raw)["results"]
    assert [e["label"] for e in result["explanations"]] == list(LABELS)
    cut = False
    for entry in result["explanations"]:
        assert len(entry["contributions"]) <= EXPLAIN_MAX_TOP and entry["rest"]["count"] > 0
        total = entry["intercept"] + sum(c["contribution"] for c in entry["contributions"])
        assert abs(total + entry["rest"]["contribution"] - entry["logit"]) < 1e-9
        for c in entry["contributions"]:
            assert len(c["spans"]) <= EXPLAIN_MAX_SPANS and c["span_count"] >= len(c["spans"])
            cut |= c["span_count"] > EXPLAIN_MAX_SPANS
    assert cut, "no term occurred more often than the span limit: the test would prove nothing"
    status, raw = post(default_port, "/v1/moderations", {"input": text})
    assert abs(json.loads(raw)["results"][0]["unsafe_score"] - result["unsafe_score"]) < 1e-9


def test_explain_refuses_top_over_its_limit_and_an_answer_over_its_bytes(default_port):
    status, raw = post(default_port, "/v1/explain", {"input": "a note", "top": EXPLAIN_MAX_TOP + 1})
    error = json.loads(raw)["error"]
    assert status == 400 and error["param"] == "top" and str(EXPLAIN_MAX_TOP) in error["message"]

    rng = np.random.default_rng(3)
    items = [" ".join(rng.choice(WORDS, size=60)) for _ in range(256)]  # 256 items x 15 labels x 100 terms
    status, raw = post(default_port, "/v1/explain", {"input": items, "labels": list(LABELS)})
    error = json.loads(raw)["error"]
    assert status == 422 and error["code"] == "answer_too_large", error
    assert str(DEFAULT_MAX_EXPLAIN_BYTES) in error["message"] and "of 256" in error["message"]


# ------------------------------------------------------------------------------------------------ memory


def _held_bytes(scorer: FastScorer) -> int:
    """What the scorer's caches hold, counted from the objects themselves: every array of the word tables,
    pools and per-word sums, every word kept in a dict, and the single-request lists."""
    held = 0
    for cache in {id(b.cache): b.cache for b in scorer.blocks if b.fast}.values():
        owners = [cache.table, *cache.users, *(user.pool for user in cache.users)]
        held += sum(v.nbytes for owner in owners for v in vars(owner).values() if isinstance(v, np.ndarray))
        held += sum(map(sys.getsizeof, cache.words)) + sum(map(sys.getsizeof, cache.table.overflow))
    single = scorer.__dict__.get("_single")
    if single is not None:
        held += sum(sys.getsizeof(w) + sys.getsizeof(v) for memo in single.by_terms.values() for w, v in memo.items())
    return held


def _explainer_held_bytes(app_explainer: object) -> int:
    return sum(sys.getsizeof(word) + sum(map(sys.getsizeof, grams))
               for block in app_explainer.blocks if hasattr(block.analyse, "cache")
               for word, grams in block.analyse.cache.items())


def test_huge_words_leave_the_caches_within_their_byte_budgets(model):
    budget = 1 << 20
    scorer = FastScorer.from_model(model, cache_bytes=budget * DEFAULT_THREADS)  # each thread's copy: budget
    app = make_app(scorer)
    server = make_server(app, "127.0.0.1", 0, threads=1, read_timeout=GUARD)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_port
        assert post(port, "/v1/moderations", {"input": "warm up"})[0] == 200
        [scorer] = app.scorers()
        baseline = _held_bytes(scorer)
        rng = np.random.default_rng(4)
        for _ in range(10):  # each word alone holds about 1.3 MB of n-gram columns: 13 MB unbounded
            word = "".join(rng.choice(WORDS, size=6_000))[:40_000]
            status, raw = post(port, "/v1/moderations", {"input": word})
            assert status == 200
            assert abs(json.loads(raw)["results"][0]["unsafe_score"] - model.predict_proba([word])[0, -1]) < 1e-9
            assert post(port, "/v1/moderations", {"input": [{"prompt": "a question", "response": word}]})[0] == 200
            assert post(port, "/v1/explain", {"input": word, "top": 1})[0] == 200
        # the response words' cache within its budget plus the last request's words; the prompts' is tiny
        assert _held_bytes(scorer) - baseline <= 2 * budget + (2 << 20)
        assert _explainer_held_bytes(app.explainer) <= 1 << 20
    finally:
        server.shutdown()
        thread.join(GUARD)


def test_a_long_single_text_costs_the_work_of_its_new_words_only(serve):
    port = serve(lm.load_scorer("fast"), threads=1)  # one thread: both requests use its caches
    rng = np.random.default_rng(5)
    words = list(dict.fromkeys(bytes(r).decode() for r in _eight_letter_words(rng, 25_000)))
    status, raw = post(port, "/v1/moderations", {"input": " ".join(words)})
    assert status == 200, raw
    [scorer] = APPS[port].scorers()
    [cache] = _response_caches(port)
    computed = cache.size  # words whose n-grams were computed (one cache slot each)
    assert computed == len(words)
    # the same text with one word changed: one word's n-grams computed, not 25,000 (the old single-request
    # path emptied its 20,000-word memo and started over on every such text)
    status, raw = post(port, "/v1/moderations", {"input": " ".join([*words[:-1], "bicycles"])})
    assert status == 200 and cache.size == computed + 1
    single = scorer.__dict__.get("_single")
    assert single is None or sum(map(len, single.by_terms.values())) == 0


# ------------------------------------------------------------------------------------------------ model on disk


def test_a_model_changed_on_disk_is_still_explained_as_loaded(serve, tmp_path):
    directory = shutil.copytree(MODELS / "fast", tmp_path / "model")
    scorer = lm.load_scorer(directory)
    port = serve(scorer)
    text = "The garden by the river is quiet in the morning."
    expected = scorer.decision_function([text])[0]
    for name in ("model.json", "vocabulary.json", "arrays.npz"):  # another model in its place
        shutil.copyfile(MODELS / "default" / name, directory / name)
    assert not np.allclose(lm.load_scorer(directory).decision_function([text])[0], expected)
    for _ in range(2):
        status, raw = post(port, "/v1/explain", {"input": text, "labels": ["unsafe"]})
        assert status == 200, raw
        [entry] = json.loads(raw)["results"][0]["explanations"]
        assert abs(entry["logit"] - expected[-1]) < 1e-9
        shutil.rmtree(directory)  # then no model at all
        directory.mkdir()
    status, raw = post(port, "/v1/moderations", {"input": text})
    assert status == 200 and abs(json.loads(raw)["results"][0]["unsafe_score"] - 1 / (1 + np.exp(-expected[-1]))) < 1e-9
