"""Tests for lite_moderation.fast: the fast path reproduces the scikit-learn path on the real data.

``ModerationClassifier.predict_proba`` goes through the fast path; the reference is the model's
``reference_decision_function`` (scikit-learn's TfidfVectorizer + one sparse product, in float64).
The contract: probabilities equal to 1e-9.
"""

from __future__ import annotations

import copy
import json
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
from lite_moderation.texts import message_mask
from lite_moderation.thresholds import cut_offs

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
    np.testing.assert_array_equal(scorer.predict(pairs), expected >= cut_offs(shipped, message_mask(pairs)))
    fast, slow = scorer.moderate(pairs, threshold=0.3), results_from_proba(expected, cut_offs(shipped, message_mask(pairs), 0.3))
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


# ------------------------------------------------------------------------------------------------ issue 13 paths
#
# The batch path finds words in numpy over UTF-8 bytes (batches of 16 texts or more), small batches and texts
# numpy cannot split take str.split and a dict, single requests run in plain Python: every path, both shipped
# models, every input shape, against the scikit-learn reference on the real shared data.

SHARED_SETS = sorted(SHARED.rglob("*.jsonl"))


@pytest.fixture(scope="module", params=["default", "fast"])
def shipped_pair(request) -> tuple[lm.ModerationClassifier, FastScorer]:
    model = lm.load(request.param)
    return model, lm.load_scorer(request.param)


def _items_of(path: Path) -> list[tuple[str, str]]:
    """Every row of a shared data file as (prompt, response): a text alone has an empty prompt."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return [(r.get("prompt", ""), r.get("response", r.get("text", ""))) for r in rows]


#: Items per shape and set the every-set test compares (evenly spaced through the file): the scikit-learn reference
#: is the slow side, and the largest sets' every row cost a minute of the suite's ten (the 30k_test pairs are
#: compared in full by test_equals_sklearn_on_all_of_beavertails_30k_test).
MAX_ITEMS_PER_SHAPE = 4000


def _spread(items: list, limit: int = MAX_ITEMS_PER_SHAPE) -> list:
    """At most ``limit`` of ``items``, evenly spaced (the first and the last kept)."""
    if len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def _shapes(items: list[tuple[str, str]]) -> dict[str, list]:
    """The three input shapes of the same rows: pairs, prompts alone, texts alone (bare strings)."""
    return {"pair": [(p, r) for p, r in items if p.strip() and r.strip()],
            "prompt alone": [(p, "") for p, _ in items if p.strip()],
            "text alone": [r for _, r in items if r.strip()]}


@pytest.mark.parametrize("path", SHARED_SETS, ids=lambda p: p.stem)
def test_batches_equal_sklearn_on_every_shared_set_and_shape(shipped_pair, path: Path) -> None:
    model, scorer = shipped_pair
    for shape, items in _shapes(_items_of(path)).items():
        items = _spread(items)
        if items:
            np.testing.assert_allclose(scorer.predict_proba(items), reference_proba(model, items), rtol=0,
                                       atol=EXACT, err_msg=f"{path.name}, {shape}")


def test_single_requests_and_small_batches_equal_sklearn_in_every_shape(shipped_pair, beavertails_pairs) -> None:
    model, _ = shipped_pair
    scorer = FastScorer.from_model(model)  # a fresh cache: single requests meet new words
    for shape, items in _shapes(beavertails_pairs[::29]).items():
        expected = reference_proba(model, items)
        single = np.vstack([scorer.predict_proba([item]) for item in items])
        np.testing.assert_allclose(single, expected, rtol=0, atol=EXACT, err_msg=shape)
        small = np.vstack([scorer.predict_proba(items[i:i + 5]) for i in range(0, len(items), 5)])
        np.testing.assert_allclose(small, expected, rtol=0, atol=EXACT, err_msg=shape)


def test_mixed_shapes_in_one_batch(shipped_pair, beavertails_pairs) -> None:
    """Shape-gated fields (pair_prompt, lone_prompt) select rows of a batch holding every shape."""
    model, scorer = shipped_pair
    items = []
    for i, (p, r) in enumerate(beavertails_pairs[:300]):
        items.append([(p, r), (p, ""), r, ("", r)][i % 4])
    np.testing.assert_allclose(scorer.predict_proba(items), reference_proba(model, items), rtol=0, atol=EXACT)


#: Texts the byte path cannot take or must split with care: NUL bytes, lone surrogates, non-ASCII spaces,
#: words of exactly 8, 16 and 24 bytes and longer, multi-byte letters across the 8-byte key words, final sigma.
AWKWARD_TEXTS = [
    "x\x00y \x00 z", "nul\x00 inside", "lone \ud800 surrogate", "a\u2003b\xa0c\u3000d\x85e\u2028f\u202fg",
    "spaces\u1680and\u205f\u2000\u200a", "abcdefgh abcdefghijklmnop abcdefghijklmnopqrstuvwx",
    "abcdefghi abcdefghijklmnopq abcdefghijklmnopqrstuvwxy " + "z" * 60, "éééé ééééé " + "é" * 13,
    "ΟΔΟΣ ΣΑΣ Σ σ ς", "İstanbul ǅemal Straße", "x\x1cy\x1dz\x1e\x1fw", "tab\tnew\nline\rcr\x0bvt\x0cff",
    "🙂🙂🙂🙂 emoji🙂word", "snake_case_words_over_twenty_four_bytes long", "a b c d", "knife" * 7,
]


def test_awkward_texts_in_batches_and_alone(shipped_pair, beavertails_pairs) -> None:
    model, _ = shipped_pair
    scorer = FastScorer.from_model(model)
    items = AWKWARD_TEXTS + [(t, "an answer") for t in AWKWARD_TEXTS] + [("a question", t) for t in AWKWARD_TEXTS]
    items += beavertails_pairs[:20]
    expected = reference_proba(model, items)
    np.testing.assert_allclose(scorer.predict_proba(items), expected, rtol=0, atol=EXACT)
    clean = [item for item in items if "\x00" not in str(item) and "\ud800" not in str(item)]
    np.testing.assert_allclose(scorer.predict_proba(clean), reference_proba(model, clean), rtol=0, atol=EXACT)
    for item, row in zip(items, expected):
        np.testing.assert_allclose(scorer.predict_proba([item])[0], row, rtol=0, atol=EXACT)


def test_unicode_spaces_are_exactly_what_str_split_splits_at() -> None:
    from lite_moderation.fast import _WORD_BYTE, UNICODE_SPACES

    spaces = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    ascii_spaces = {c for c in spaces if c.isascii()}
    assert set(UNICODE_SPACES) == spaces - ascii_spaces
    assert {chr(b) for b in range(128) if not _WORD_BYTE[b]} == ascii_spaces | {"\x00"}


def test_evicting_word_caches_change_nothing(shipped_pair, beavertails_pairs) -> None:
    """Caches of 50 words empty themselves again and again, in batches and single requests."""
    model, _ = shipped_pair
    tiny = FastScorer.from_model(model, cache_size=50)
    pairs = beavertails_pairs[:240]
    expected = reference_proba(model, pairs)
    for start in range(0, len(pairs), 40):
        got = tiny.predict_proba(pairs[start:start + 40])
        np.testing.assert_allclose(got, expected[start:start + 40], rtol=0, atol=EXACT)
        np.testing.assert_allclose(tiny.predict_proba([pairs[start]])[0], expected[start], rtol=0, atol=EXACT)
    one = FastScorer.from_model(model, cache_size=1)
    np.testing.assert_allclose(one.predict_proba(pairs[:64]), expected[:64], rtol=0, atol=EXACT)


def test_batches_larger_than_the_scorer_batch(shipped_pair, beavertails_pairs) -> None:
    model, scorer = shipped_pair
    pairs = beavertails_pairs * 2  # 6,042 rows: several internal batches, the second pass all cached
    got = scorer.predict_proba(pairs)
    half = len(beavertails_pairs)
    np.testing.assert_array_equal(got[:half], got[half:])
    np.testing.assert_allclose(got[:half], reference_proba(model, beavertails_pairs), rtol=0, atol=EXACT)


def test_threads_mixing_batches_and_single_requests(shipped_pair, beavertails_pairs) -> None:
    model, reference_scorer = shipped_pair
    scorer = FastScorer.from_model(model, cache_size=800)
    pairs = beavertails_pairs[:480]
    expected = reference_scorer.predict_proba(pairs)
    results: dict[int, list] = {}

    def work(k: int) -> None:
        out = []
        for start in range(k * 24, len(pairs), 96):
            rows = list(range(start, min(start + 24, len(pairs))))
            batch = scorer.predict_proba([pairs[i] for i in rows])
            single = [scorer.predict_proba([pairs[i]])[0] for i in rows[:3]]
            out.append((rows, batch, single))
        results[k] = out

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for out in results.values():
        for rows, batch, single in out:
            np.testing.assert_allclose(batch, expected[rows], rtol=0, atol=1e-12)
            np.testing.assert_allclose(single, expected[rows[:3]], rtol=0, atol=1e-12)


def test_word_table_finds_every_key_and_grows() -> None:
    from lite_moderation.fast import _WordTable

    rng = np.random.default_rng(0)
    table = _WordTable(bits=4)
    keys = np.unique(rng.integers(0, 2**63, size=(6000, 3), dtype=np.uint64), axis=0)
    keys[:50, 1:] = 0  # short words: two zero key words
    keys[50:100, 0] = keys[0, 0]  # keys sharing their first word
    keys = np.unique(keys, axis=0)
    slots = rng.permutation(len(keys)).astype(np.int32)
    for start in range(0, len(keys), 1000):  # grown several times
        table.insert(keys[start:start + 1000], slots[start:start + 1000])
    np.testing.assert_array_equal(table.lookup(keys), slots)
    absent = keys.copy()
    absent[:, 2] ^= np.uint64(1 << 63)  # the stored keys are below 2**63
    assert (table.lookup(absent) == -1).all()


def test_scores_equal_the_fast_path_of_commit_1ba1bba(shipped_pair, beavertails_pairs) -> None:
    """The rewrite of issue 13 keeps the scores of the fast path before it, to 1e-12 (log-odds).

    benchmarks/check_fast.py does this for every row of every shared set; here the BeaverTails rows."""
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    try:
        subprocess.run(["git", "cat-file", "-e", "1ba1bba:lite_moderation/fast.py"], cwd=root, check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git history with commit 1ba1bba is not available (a shallow clone)")
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        from check_fast import old_fast_module
    finally:
        sys.path.pop(0)
    model, scorer = shipped_pair
    before = old_fast_module("1ba1bba").FastScorer.from_model(model)
    items = beavertails_pairs + [p for p, _ in beavertails_pairs[:500]] + [(p, "") for p, _ in beavertails_pairs[:500]]
    read = [_normalized_item(item, model.vectorizer_.normalize) for item in items]  # 1ba1bba had no normalisation
    np.testing.assert_allclose(scorer.decision_function(items), before.decision_function(read), rtol=0, atol=1e-12)
    for item, item_read in list(zip(items, read))[::97]:
        np.testing.assert_allclose(scorer.decision_function([item]), before.decision_function([item_read]), rtol=0,
                                   atol=1e-12)


def _normalized_item(item: str | tuple[str, str], form: str | None) -> str | tuple[str, str]:
    from lite_moderation.normalize import normalized

    return normalized(item, form) if isinstance(item, str) else tuple(normalized(text, form) for text in item)


def test_the_fast_check_of_pair_lists_names_bad_items_like_the_item_loop(scorer, beavertails_pairs) -> None:
    from lite_moderation.texts import split_fields

    pairs = beavertails_pairs[:20]
    assert split_fields(pairs, require_text=True) == ([p for p, _ in pairs], [r for _, r in pairs])
    assert split_fields(tuple(pairs)) == split_fields(list(pairs))
    for bad, error, message in [((" ", "\n"), ValueError, r"X\[7\] has a prompt and a response both empty"),
                                (("a", 3), TypeError, r"X\[7\] is a tuple"), (("a",), TypeError, r"X\[7\] is a tuple")]:
        items = pairs[:7] + [bad] + pairs[7:]
        with pytest.raises(error, match=message):
            scorer.predict_proba(items)
    shapes = [("", "a text"), ("a prompt", ""), ("", " x"), (" x", "")]
    # every single message comes out as a text alone (issue 20: one verdict per message)
    assert split_fields(shapes, require_text=True) == (["", "", "", ""], ["a text", "a prompt", " x", " x"])
