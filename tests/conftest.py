"""Shared fixtures: paths to the real shared data, small synthetic data sets, a small trained model, and
in-process servers around the shipped model."""

from __future__ import annotations

import inspect
import json
import os
import random
import select
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import lite_moderation as lm
from lite_moderation import default_estimator, save, train
from lite_moderation.data import load_dataset
from lite_moderation.server import ModerationServer, make_app, make_server
from lite_moderation.taxonomy import CATEGORIES

#: The shared data (docs/data.md): ../shared/data from the project root, or LM_SHARED_DATA.
SHARED_DATA = Path(os.environ.get("LM_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
#: Names whose use in a test (or one of its fixtures) means it reads the shared data.
_SHARED_NAMES = ("SHARED_DATA", "BEAVERTAILS_TEST", "SAFERLHF", "XSTEST", "XSAFETY", "HATECHECK", "shared_data")
BEAVERTAILS_TEST = SHARED_DATA / "beavertails" / "30k_test.jsonl"
SAFERLHF = SHARED_DATA / "external" / "saferlhf_2000.jsonl"
XSTEST = SHARED_DATA / "external" / "xstest_response_harmful.jsonl"

_FILLER = ["the", "a", "of", "to", "and", "in", "is", "it", "that", "for", "on", "with", "as", "was", "at", "by", "an", "be", "this", "from", "or", "have", "are"]
_TOPICS = ["garden", "river", "kitchen", "music", "travel", "planet", "museum", "library", "bicycle", "weather", "cooking", "chess"]


def synthetic_records(n: int = 240, seed: int = 0) -> list[dict]:
    """Harmless made-up QA records whose categories are signalled by marker words (marker0..marker13).

    About 40% of rows are safe; prompts repeat so that grouping by prompt matters.
    """
    rng = random.Random(seed)
    prompts = [f"tell me about the {t} please" for t in _TOPICS]
    records = []
    for i in range(n):
        flags = [False] * len(CATEGORIES)
        if rng.random() > 0.4:
            for j in rng.sample(range(len(CATEGORIES)), k=rng.choice([1, 1, 2])):
                flags[j] = True
        words = [rng.choice(_FILLER + _TOPICS) for _ in range(12)]
        words += [f"marker{j}" for j, flag in enumerate(flags) if flag for _ in range(3)]
        rng.shuffle(words)
        records.append({
            "prompt": prompts[i % len(prompts)],
            "response": " ".join(words),
            "category": dict(zip(CATEGORIES, flags)),
            "is_safe": not any(flags),
        })
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic labelled training file."""
    return write_jsonl(tmp_path_factory.mktemp("data") / "tiny_train.jsonl", synthetic_records(240, seed=0))


@pytest.fixture(scope="session")
def tiny_eval_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic held-out data with different prompts than ``tiny_data``."""
    records = synthetic_records(90, seed=1)
    for r in records:
        r["prompt"] = "held out: " + r["prompt"]
    return write_jsonl(tmp_path_factory.mktemp("data") / "tiny_eval.jsonl", records)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A model trained on ``tiny_data`` with a fast word-only recipe, saved to disk."""
    dataset = load_dataset(tiny_data, require="categories")
    estimator = default_estimator(char_fields=(), min_df=1, threshold_folds=3)
    model, card = train(dataset, estimator, tiny_data, command="test fixture")
    return save(model, tmp_path_factory.mktemp("models") / "tiny", card)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# ---- servers around the shipped model (tests/test_server.py, tests/test_serve_engine.py)

SERVER_GUARD = 30  # seconds: a server thread that will not stop fails the test run instead of hanging it


@pytest.fixture(scope="module")
def model():
    """The shipped default model (a module may define its own ``model``)."""
    return lm.load()


@pytest.fixture(scope="module")
def start(model) -> Iterator[Callable[..., ModerationServer]]:
    """Start in-process servers around the shipped model; all are stopped when the module ends."""
    running: list[tuple[ModerationServer, threading.Thread]] = []

    def _start(threads: int = 4, read_timeout: float = 5.0, **app_options) -> ModerationServer:
        server = make_server(make_app(model, **app_options), "127.0.0.1", 0, threads=threads,
                             read_timeout=read_timeout)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return server

    yield _start
    for server, thread in running:
        server.shutdown()
        thread.join(SERVER_GUARD)


@pytest.fixture(scope="module")
def port(start) -> int:
    return start().server_port


def raw_exchange(port: int, payload: bytes, read_timeout: float = SERVER_GUARD) -> bytes:
    """Send raw bytes (possibly an incomplete request), then read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that reads the shared data says so when the data is missing: skipped with the reason (docs/data.md),
    or failed with it when LM_REQUIRE_SHARED_DATA=1 (CI), never a bare "no such file"."""
    if SHARED_DATA.is_dir() or not _reads_shared_data(item):
        return
    message = (f"needs the shared data at {SHARED_DATA}, which is missing: see docs/data.md for what it holds and where "
               "to get it, or set LM_SHARED_DATA to its folder")
    if os.environ.get("LM_REQUIRE_SHARED_DATA") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _reads_shared_data(item: pytest.Item) -> bool:
    functions = [getattr(item, "function", None)]
    for definitions in getattr(item, "_fixtureinfo", None).name2fixturedefs.values() if hasattr(item, "_fixtureinfo") else ():
        functions += [definition.func for definition in definitions]
    for function in filter(None, functions):
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            continue
        if any(name in source for name in _SHARED_NAMES):
            return True
    return False


# ---- running in parallel (pytest-xdist, configured in setup.cfg)


#: Workers of ``-n auto`` at most (see below).
MAX_WORKERS = 8


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker per CPU this run may use (1 on a one-CPU machine), not xdist's count of the
    machine's physical cores, which ignores CPU affinity and a container's CPU quota (a CI container limited to
    2 CPUs of a 64-core host would start 64 workers, each loading the shipped models). At most MAX_WORKERS: the
    rebuild of `default` alone takes minutes, and more workers only cost memory. PYTEST_XDIST_AUTO_NUM_WORKERS
    still wins."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:  # cgroup v2 quota, "max 100000" when unlimited
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, -(-int(quota) // int(period)))  # rounded up: 1.5 CPUs take 2 workers
    except (OSError, ValueError):
        pass
    return max(1, min(cpus, MAX_WORKERS))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``starts_first`` (the shipped models' rebuilds, minutes each) run first, in their own order.

    pytest-xdist hands tests to its workers in this order, a couple at a time: a long test handed out first runs
    beside the short ones on the other workers, instead of starting near the end and running alone. Every worker
    sorts its own collection the same way, so all workers agree on the order (xdist requires it).
    """
    items.sort(key=lambda item: item.get_closest_marker("starts_first") is None)


def read_terminal(leader: int, timeout: float) -> bytes:
    """All a command wrote to the pseudo-terminal ``leader`` (read as it comes, so that it never blocks on a full
    buffer) until the command closes it or ``timeout`` seconds pass with nothing; ``leader`` is closed."""
    out = b""
    try:
        while select.select([leader], [], [], timeout)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    return out
