"""Tests for lite_moderation.fast: the fast path reproduces the scikit-learn path on the real data.

``ModerationClassifier.predict_proba`` goes through the fast path; the reference is the model's
``reference_decision_function`` (scikit-learn's TfidfVectorizer + one sparse product, in float64).
The contract: probabilities equal to 1e-9.
"""

from __future__ import annotations

import copy
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

import lite_moderation as lm
from lite_moderation.data import load_dataset
from lite_moderation.fast import FastScorer
from lite_moderation.features import QAVectorizer
from lite_moderation.taxonomy import results_from_proba

SHARED = Path(__file__).parent.parent.parent / "shared" / "data"
BEAVERTAILS = SHARED / "beavertails" / "30k_test.jsonl"
EXTERNAL = [SHARED / "external" / "saferlhf_2000.jsonl", SHARED / "external" / "xstest_response_harmful.jsonl"]
EXACT = 1e-9

#: Synthetic edge cases for the analysers (no dataset text): empty, whitespace, unicode case rules, short
#: words, underscores, digits, a NUL word, long words, repeated terms.
EDGE_TEXTS = [
    "", " ", "\t\n  \r", "a", "ab", "a b c", "I", "x\x00y \x00 z", "snake_case and CamelCase",
    "İstanbul ΣΑΣ ΟΔΟΣ Straße ǅemal", "2024-01-01 12:30, $5.99!", "very " * 40 + "long",
    "supercalifragilisticexpialidocious", "don't won't can't", "tab\tseparated\nlines\r\nhere",
    "émoji 🙂 and — dashes “quotes”", "the the the the the", "knife knife gun",
]
#: What can be scored of them: a blank text alone is refused (nothing to score, as in the CLI), so blank
#: texts reach the analysers as the blank prompt or the blank response of a pair.
SCORABLE_EDGE = ([t for t in EDGE_TEXTS if t.strip()] + [(t, "ab") for t in EDGE_TEXTS if not t.strip()]
                 + [("ab", t) for t in EDGE_TEXTS if not t.strip()])


def reference_proba(model: lm.ModerationClassifier, X: list) -> np.ndarray:
    """Probabilities of the scikit-learn reference path (never the fast path)."""
    return expit(model.reference_decision_function(X))


@pytest.fixture(scope="module")
def shipped() -> lm.ModerationClassifier:
    return lm.load()


@pytest.fixture(scope="module")
def scorer(shipped: lm.ModerationClassifier) -> FastScorer:
    return FastScorer.from_model(shipped)


@pytest.fixture(scope="module")
def beavertails_pairs() -> list:
    return load_dataset(BEAVERTAILS).pairs


def test_shipped_model_uses_the_fast_analysers(scorer: FastScorer) -> None:
    assert scorer.exact_analyzers == ["fast"] * len(scorer.blocks)


def test_equals_sklearn_on_all_of_beavertails_30k_test(shipped, scorer, beavertails_pairs) -> None:
    fast = scorer.predict_proba(beavertails_pairs)
    assert fast.shape == (len(beavertails_pairs), len(lm.LABELS))
    np.testing.assert_allclose(fast, reference_proba(shipped, beavertails_pairs), rtol=0, atol=EXACT)
    np.testing.assert_array_equal(fast, shipped.predict_proba(beavertails_pairs))  # the model uses the fast path


@pytest.mark.parametrize("path", EXTERNAL, ids=lambda p: p.stem)
def test_equals_sklearn_on_the_external_sets(shipped, scorer, path: Path) -> None:
    pairs = load_dataset(path).pairs
    np.testing.assert_allclose(scorer.predict_proba(pairs), reference_proba(shipped, pairs), rtol=0, atol=EXACT)


def test_single_requests_equal_the_batch(scorer, beavertails_pairs) -> None:
    rows = list(range(0, len(beavertails_pairs), 97))
    batch = scorer.predict_proba([beavertails_pairs[i] for i in rows])
    single = np.vstack([scorer.predict_proba([beavertails_pairs[i]]) for i in rows])
    np.testing.assert_allclose(single, batch, rtol=0, atol=1e-12)


def test_a_tiny_word_cache_changes_nothing(shipped, beavertails_pairs) -> None:
    """The char n-gram cache empties itself when full: results must not depend on it."""
    tiny = FastScorer.from_model(shipped, cache_size=50)
    pairs = beavertails_pairs[:300]
    expected = reference_proba(shipped, pairs)
    for start in range(0, len(pairs), 60):
        got = tiny.predict_proba(pairs[start:start + 60])
        np.testing.assert_allclose(got, expected[start:start + 60], rtol=0, atol=EXACT)


def test_edge_case_texts_and_single_texts(shipped, scorer) -> None:
    items = SCORABLE_EDGE + [(a, b) for a, b in zip(EDGE_TEXTS, reversed(EDGE_TEXTS))]
    np.testing.assert_allclose(scorer.predict_proba(items), reference_proba(shipped, items), rtol=0, atol=EXACT)
    for item in items:
        np.testing.assert_allclose(scorer.predict_proba([item]), reference_proba(shipped, [item]), rtol=0, atol=EXACT)


def test_empty_batch(scorer) -> None:
    assert scorer.predict_proba([]).shape == (0, len(lm.LABELS))
    assert scorer.moderate([]) == []


def test_predict_and_moderate_match_the_reference(shipped, scorer, beavertails_pairs) -> None:
    pairs = beavertails_pairs[:500]
    expected = reference_proba(shipped, pairs)
    np.testing.assert_array_equal(scorer.predict(pairs), expected >= shipped.thresholds_)
    fast, slow = scorer.moderate(pairs, threshold=0.3), results_from_proba(expected, shipped.thresholds_, 0.3)
    assert [r["flagged"] for r in fast] == [r["flagged"] for r in slow]
    assert [r["categories"] for r in fast] == [r["categories"] for r in slow]
    for a, b in zip(fast, slow):
        assert a["unsafe_score"] == pytest.approx(b["unsafe_score"], abs=EXACT)
    assert scorer.labels_ == list(lm.LABELS)


def test_single_string_is_rejected_like_the_model(scorer: FastScorer) -> None:
    with pytest.raises(TypeError, match="not a single string"):
        scorer.predict_proba("one text")


class AccentStrippingVectorizer(QAVectorizer):
    """Blocks with strip_accents: a setting the fast analysers do not reproduce (sklearn fallback)."""

    def make_block(self, analyzer: str):
        return super().make_block(analyzer).set_params(strip_accents="unicode")


@pytest.mark.parametrize("vectorizer", [
    QAVectorizer(word_fields=("prompt", "response", "joint"), word_ngram_range=(1, 3),
                 char_fields=("prompt", "joint"), char_ngram_range=(1, 4), sublinear_tf=False),
    QAVectorizer(char_fields=()),
    AccentStrippingVectorizer(char_ngram_range=(3, 3)),
], ids=["joint-trigrams-raw-tf", "word-only", "sklearn-fallback"])
def test_other_recipes_are_exact(vectorizer: QAVectorizer, beavertails_pairs) -> None:
    pairs = beavertails_pairs[:800]
    y = load_dataset(BEAVERTAILS).y[:800]
    model = lm.ModerationClassifier(vectorizer=vectorizer, threshold_folds=0).fit(pairs, y)
    scorer = FastScorer.from_model(model)
    expected_kind = "sklearn" if isinstance(vectorizer, AccentStrippingVectorizer) else "fast"
    assert set(scorer.exact_analyzers) == {expected_kind}
    held_out = beavertails_pairs[800:1400] + SCORABLE_EDGE
    np.testing.assert_allclose(scorer.predict_proba(held_out), reference_proba(model, held_out),
                               rtol=0, atol=EXACT)


def test_load_reads_a_saved_model(tmp_path: Path, shipped, beavertails_pairs) -> None:
    lm.save(shipped, tmp_path / "model")
    scorer = FastScorer.load(tmp_path / "model")
    pairs = beavertails_pairs[:200]
    np.testing.assert_allclose(scorer.predict_proba(pairs), reference_proba(shipped, pairs), rtol=0, atol=EXACT)


def test_threads_sharing_one_scorer_get_the_same_numbers(shipped, beavertails_pairs) -> None:
    """A server shares one scorer between worker threads while its word caches grow."""
    scorer = FastScorer.from_model(shipped, cache_size=500)
    pairs = beavertails_pairs[:400]
    expected = FastScorer.from_model(shipped).predict_proba(pairs)
    results: dict[int, tuple[np.ndarray, list[int]]] = {}

    def work(k: int) -> None:
        order = list(range(k, len(pairs), 4))
        rows = [scorer.predict_proba([pairs[i]])[0] if i % 2 else scorer.predict_proba(pairs[i:i + 2])[0]
                for i in order]
        results[k] = np.asarray(rows), order

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for rows, order in results.values():
        np.testing.assert_allclose(rows, expected[order], rtol=0, atol=1e-12)


def test_a_scorer_survives_pickle_and_deepcopy(scorer, beavertails_pairs) -> None:
    pairs = beavertails_pairs[:50]
    expected = scorer.predict_proba(pairs)
    for clone in (pickle.loads(pickle.dumps(scorer)), copy.deepcopy(scorer)):
        np.testing.assert_allclose(clone.predict_proba(pairs), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_keys", [0, 1, 7, 5000])
def test_key_table_finds_every_key_and_only_those(n_keys: int) -> None:
    from lite_moderation.fast import _KeyTable

    rng = np.random.default_rng(n_keys)
    keys = np.unique(rng.integers(0, 2**62, size=n_keys))
    keys = np.concatenate([keys, np.arange(64, dtype=np.int64) * 2**40])  # clustered keys collide more
    values = rng.integers(0, 10**6, size=len(keys))
    table = _KeyTable(keys, values)
    absent = rng.integers(0, 2**62, size=2000)
    absent = absent[~np.isin(absent, keys)]
    for start in range(0, len(keys), 97):  # short queries (one request) take the binary-search path
        np.testing.assert_array_equal(table.lookup(keys[start:start + 97]), values[start:start + 97])
    np.testing.assert_array_equal(table.lookup(keys), values)
    np.testing.assert_array_equal(table.lookup(absent), -1)
    np.testing.assert_array_equal(table.lookup(absent[:5]), -1)
    assert table.lookup(np.empty(0, dtype=np.int64)).shape == (0,)
