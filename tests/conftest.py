"""Shared fixtures: paths to the real shared data, small synthetic data sets, and a small trained model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from lite_moderation import default_estimator, save, train
from lite_moderation.data import load_dataset
from lite_moderation.taxonomy import CATEGORIES

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
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
