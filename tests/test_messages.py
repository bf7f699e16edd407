"""One verdict per message: a single message is scored and judged the same way whatever shape it arrives in
(a CLI argument, --prompt alone, a {"text"} or {"prompt"} record, a string or a part sent to the server), with
cut-offs of its own; pairs keep theirs. Also: flagged and categories agree on every verdict, sources labelled only
is_safe train the unsafe head alone, and a vocabulary cut is the same on every CPU.

Rows of the shared data are referred to by index, never quoted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import BEAVERTAILS_TEST, SHARED_DATA, synthetic_records, write_jsonl

import lite_moderation as lm
from lite_moderation.features import QAVectorizer, StableTfidfVectorizer
from lite_moderation.persistence import _metadata_checksum
from lite_moderation.taxonomy import CATEGORIES, decide
from lite_moderation.texts import message_mask, single_message, split_fields
from lite_moderation.thresholds import cut_offs

SMOKE = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "smoke_messages.jsonl"
EVERYDAY = SHARED_DATA / "everyday"


def _smoke() -> tuple[list[str], np.ndarray]:
    rows = [json.loads(line) for line in SMOKE.read_text().splitlines()]
    return [r["text"] for r in rows], np.array([not r["is_safe"] for r in rows])


@pytest.fixture(scope="module")
def default_scorer():
    return lm.load_scorer("default")


# ---------------------------------------------------------------------------------------- one shape


@pytest.mark.parametrize("item, expected", [
    ("a text", ("", "a text")), (("a prompt", ""), ("", "a prompt")), (("a prompt", " \n"), ("", "a prompt")),
    (("  ", "a text"), ("", "a text")), (("q", "a"), ("q", "a")),
])
def test_every_single_message_becomes_a_text_alone(item, expected) -> None:
    prompts, responses = split_fields([item])
    assert (prompts[0], responses[0]) == expected
    assert message_mask([item])[0] == (expected[0] == "")
    assert (single_message(*item) is not None) == (expected[0] == "") if isinstance(item, tuple) else True


@pytest.mark.parametrize("name", ["default", "fast", "beavertails"])
def test_a_message_gets_the_same_scores_and_verdict_in_every_shape(name) -> None:
    texts, _ = _smoke()
    model = lm.load(name)
    shapes = [texts, [(t, "") for t in texts], [("", t) for t in texts], [(t, "   ") for t in texts]]
    probas = [model.predict_proba(items) for items in shapes]
    for proba in probas[1:]:
        np.testing.assert_array_equal(proba, probas[0])
    verdicts = [model.moderate(items) for items in shapes]
    assert all(v == verdicts[0] for v in verdicts[1:])
    scorer = lm.load_scorer(name)
    assert all(scorer.moderate(items) == verdicts[0] for items in shapes)


def test_the_cli_judges_a_message_alike_as_text_and_as_prompt(tmp_path) -> None:
    texts, _ = _smoke()
    by_text = write_jsonl(tmp_path / "texts.jsonl", [{"text": t} for t in texts])
    by_prompt = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": t} for t in texts])
    outputs = []
    for source in (by_text, by_prompt):
        proc = subprocess.run([sys.executable, "-m", "lite_moderation", "score", "-i", str(source), "--format",
                               "jsonl", "--quiet"], capture_output=True, text=True, check=False)
        assert proc.returncode in (0, 1), proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == len(texts)
    single = [subprocess.run([sys.executable, "-m", "lite_moderation", "score", *args, "--format", "json"],
                             capture_output=True, text=True, check=False).stdout
              for args in ([texts[0]], ["--prompt", texts[0]], ["--response", texts[0]])]
    assert single[0] == single[1] == single[2] and json.loads(single[0])


def test_the_server_judges_a_message_alike_in_every_form(port) -> None:
    texts, _ = _smoke()
    def ask(form: object) -> list[bool]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/moderations",
                                         data=json.dumps({"input": form}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return [r["flagged"] for r in json.load(response)["results"]]

    answers = [ask(texts), [flag for t in texts for flag in ask([{"type": "text", "text": t}])],
               [flag for t in texts for flag in ask(t)]]
    assert answers[0] == answers[1] == answers[2]
    assert answers[0] == [r["flagged"] for r in lm.load().moderate(texts)]


# ---------------------------------------------------------------------------------------- cut-offs


def test_messages_and_pairs_keep_their_own_cut_offs(default_scorer) -> None:
    card = lm.read_card("default")
    assert set(card["message_operating_points"]) == {"default", "strict"}
    assert card["message_thresholds"]["unsafe"] == card["message_operating_points"]["default"]
    cuts = cut_offs(default_scorer, np.array([False, True]), "strict")
    assert cuts[0, -1] == card["operating_points"]["strict"]
    assert cuts[1, -1] == card["message_operating_points"]["strict"]
    assert cuts[1, -1] != cuts[0, -1]


def test_a_model_of_pairs_judges_messages_at_its_pair_cut_offs() -> None:
    card = lm.read_card("beavertails")
    assert "message_thresholds" not in card
    model = lm.load("beavertails")
    np.testing.assert_array_equal(cut_offs(model, np.array([True]))[0], model.thresholds_)


def test_message_cut_offs_survive_a_save_and_load(tmp_path) -> None:
    model = lm.load("default")
    lm.save(model, tmp_path / "copy", lm.read_card("default"))
    loaded, scorer = lm.load(tmp_path / "copy"), lm.load_scorer(tmp_path / "copy")
    for other in (loaded, scorer, lm.Explainer.load(tmp_path / "copy")):
        np.testing.assert_array_equal(other.message_thresholds_, model.message_thresholds_)
        assert other.message_operating_points_ == model.message_operating_points_


def test_a_damaged_message_cut_off_is_refused(tmp_path) -> None:
    lm.save(lm.load("default"), tmp_path / "m", lm.read_card("default"))
    path = tmp_path / "m" / "model.json"
    metadata = json.loads(path.read_text())
    metadata["message_cut_offs"]["thresholds"][3] = 7.0
    metadata["checksum"] = _metadata_checksum(metadata)  # a consistent file: the field check must catch it
    path.write_text(json.dumps(metadata))
    with pytest.raises(lm.ModelFormatError, match="message_cut_offs.thresholds"):
        lm.load(tmp_path / "m")


# ---------------------------------------------------------------------------------------- flagged and categories


def test_flagged_and_categories_agree_on_every_verdict(default_scorer) -> None:
    items = list(lm.load_dataset(BEAVERTAILS_TEST).pairs)
    for name in ("clinc150_queries.jsonl", "dailydialog_test.jsonl"):
        items += list(lm.load_dataset(EVERYDAY / name).pairs)
    for threshold in (None, "strict", 0.05, 0.95):
        verdicts = default_scorer.moderate(items, threshold=threshold)
        assert all(any(v["categories"].values()) == v["flagged"] for v in verdicts)


def test_a_flagged_item_with_no_category_at_its_cut_off_names_the_closest() -> None:
    proba = np.full((2, len(CATEGORIES) + 1), 0.1)
    proba[:, -1] = [0.9, 0.2]
    proba[0, 4], proba[1, 2] = 0.3, 0.99
    cuts = np.full(len(CATEGORIES) + 1, 0.5)
    flagged, categories = decide(proba, cuts)
    assert flagged.tolist() == [True, False]
    assert np.flatnonzero(categories[0]).tolist() == [4] and not categories[1].any()


# ---------------------------------------------------------------------------------------- training


def test_a_source_labelled_only_is_safe_trains_the_unsafe_head_alone(tmp_path) -> None:
    primary = write_jsonl(tmp_path / "primary.jsonl", synthetic_records(240, seed=0))
    binary = [{"prompt": f"shout{i % 7} at the marker{i % 3} people", "is_safe": False} for i in range(60)]
    binary += [{"prompt": f"a calm note about the garden {i}", "is_safe": True} for i in range(60)]
    extra = write_jsonl(tmp_path / "binary.jsonl", binary)
    specs = [lm.SourceSpec(str(primary)), lm.SourceSpec(str(extra))]
    training_set = lm.build_training_set(specs, shapes=("pair", "text"))
    params = training_set.fit_params()
    messages = message_mask(training_set.pairs)
    unsafe_messages = messages & training_set.Y[:, -1] & (training_set.source_of_row == 1)
    assert not params["label_mask"][unsafe_messages, :-1].any() and params["label_mask"][:, -1].all()
    assert params["tuning_rows"][messages].all()
    model = lm.default_estimator(char_fields=(), min_df=1, threshold_folds=3).fit(
        training_set.pairs, training_set.Y, **params)
    assert model.message_thresholds_ is not None and model.message_operating_points_["default"] > 0
    assert [r["flagged"] for r in model.moderate(["shout3 at the marker1 people", "a calm note about the garden"])] \
        == [True, False]


# ---------------------------------------------------------------------------------------- vocabulary on any CPU


def test_the_vocabulary_cut_breaks_ties_by_term() -> None:
    docs = ["bb aa cc dd", "aa bb ee ff", "cc dd gg hh", "zz yy xx ww"]
    vocabulary = StableTfidfVectorizer(max_features=5).fit(docs).vocabulary_
    assert vocabulary == {"aa": 0, "bb": 1, "cc": 2, "dd": 3, "ee": 4}
    shuffled = StableTfidfVectorizer(max_features=5).fit(docs[::-1]).vocabulary_
    assert shuffled == vocabulary


@pytest.mark.parametrize("ngram_range", [(2, 5), (1, 3)])
def test_cached_character_ngrams_equal_scikit_learns_on_shared_texts(ngram_range) -> None:
    """StableTfidfVectorizer takes each word's char_wb n-grams from a cache: the same list, in the same order, as
    scikit-learn's analyser, on real texts in 15 languages, long answers and awkward strings. (The shipped models'
    byte-for-byte rebuilds check it on all their training data.)"""
    from sklearn.feature_extraction.text import TfidfVectorizer

    files = ["messages/xsafety_heldout.jsonl", "messages/multijail_heldout.jsonl", "beavertails/30k_test.jsonl"]
    texts = [text for name in files for pair in lm.load_dataset(str(SHARED_DATA / name)).pairs[::2]
             for text in ([pair] if isinstance(pair, str) else pair) if text]
    texts += ["", " ", "a", "ab", "abcd", "abcde", "x" * 17, "y" * 16, "  two\t\tspaces\n\nand\u00a0nbsp\u2003", "a\x00b"]
    ours = StableTfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range).build_analyzer()
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range).build_analyzer()
    assert len(texts) > 3_000
    assert [i for i, text in enumerate(texts) if ours(text) != reference(text)] == []


@pytest.mark.parametrize("analyzer, max_features", [("char_wb", 3000), ("word", None)])
def test_fit_transform_gives_the_bytes_transform_gives(analyzer, max_features) -> None:
    """Training reuses fit_transform's features for the rows the vocabulary is learned from: they must be
    transform's, column order included (tf-idf row norms are sums in that order), with and without a term cap."""
    texts = [r for _, r in lm.load_dataset(str(BEAVERTAILS_TEST)).pairs[:800]]
    vectorizer = StableTfidfVectorizer(analyzer=analyzer, max_features=max_features, min_df=2, sublinear_tf=True)
    fitted, transformed = vectorizer.fit_transform(texts), vectorizer.transform(texts)
    for part in ("indptr", "indices", "data"):
        assert getattr(fitted, part).tobytes() == getattr(transformed, part).tobytes(), part


def test_blocks_fitted_in_worker_processes_give_the_same_features_and_vocabularies() -> None:
    """``n_jobs`` fits and transforms the blocks in worker processes: the same bytes, the same vocabularies."""
    pairs = list(lm.load_dataset(str(BEAVERTAILS_TEST)).pairs[:600])
    one, two = QAVectorizer(char_fields=("response",)), QAVectorizer(char_fields=("response",))
    fitted_one, fitted_two = one.fit_transform(pairs), two.fit_transform(pairs, n_jobs=2)
    unseen = list(lm.load_dataset(str(BEAVERTAILS_TEST)).pairs[600:900])
    pairs_of_matrices = [(fitted_one, fitted_two), (one.transform(unseen), two.transform(unseen, n_jobs=2))]
    for a, b in pairs_of_matrices:
        for part in ("indptr", "indices", "data"):
            assert getattr(a, part).tobytes() == getattr(b, part).tobytes(), part
    assert [(f, a, b.vocabulary_) for f, a, b in one.blocks_] == [(f, a, b.vocabulary_) for f, a, b in two.blocks_]
    assert len(two.blocks_) == 3 and all(np.array_equal(a.idf_, b.idf_) for (*_, a), (*_, b) in
                                         zip(one.blocks_, two.blocks_))


def test_a_huge_word_is_not_kept_in_the_ngram_cache() -> None:
    from lite_moderation.features import _word_char_ngrams

    before = _word_char_ngrams.cache_info().currsize
    grams = StableTfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()("y" * 200_000 + " short")
    assert len(grams) > 700_000
    assert _word_char_ngrams.cache_info().currsize <= before + 1


def test_the_vocabulary_cut_is_the_same_without_simd(tmp_path) -> None:
    """numpy's sort runs CPU-specific SIMD code: the cut must not depend on it (AVX-512, AVX2, none)."""
    script = ("import json, sys; from lite_moderation.features import StableTfidfVectorizer; "
              "import lite_moderation as lm; "
              f"texts = [r for _, r in lm.load_dataset({str(BEAVERTAILS_TEST)!r}).pairs]; "
              "v = StableTfidfVectorizer(max_features=3000, analyzer='char_wb', ngram_range=(2, 4)).fit(texts); "
              "print(json.dumps(sorted(v.vocabulary_.items())))")
    outputs = []
    for disabled in ("", "X86_V4 AVX512_ICL AVX512_SPR", "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"):
        env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled}
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1] == outputs[2]


def test_the_leak_check_covers_the_texts_a_model_was_trained_on(tmp_path, runner) -> None:
    from lite_moderation.cli import main

    records = synthetic_records(200, seed=3)
    texts = [{"text": f"{r['prompt']} {r['response']}", "category": r["category"], "is_safe": r["is_safe"]}
             for r in records]
    data = write_jsonl(tmp_path / "texts.jsonl", texts)
    dataset = lm.load_dataset(data, require="categories")
    model = lm.default_estimator(word_fields=("lone_text",), char_fields=(), min_df=1, threshold_folds=2).fit(
        dataset.pairs, dataset.y)
    lm.save(model, tmp_path / "m")
    result = runner.invoke(main, ["evaluate", "--model", str(tmp_path / "m"), "--data", str(data)])
    distinct = len({t["text"] for t in texts})
    assert f"leak check: {distinct} of {distinct} distinct evaluation prompts and texts" in result.output
