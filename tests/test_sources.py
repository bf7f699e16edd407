"""Training on several sources: source specs, input-shape copies, row weights, tuning rows, CV on the primary."""

from __future__ import annotations

import itertools
import json
import shutil
import sys

import numpy as np
import pytest
from conftest import BEAVERTAILS_TEST, SHARED_DATA, synthetic_records, write_jsonl

from lite_moderation import cross_validate, default_estimator, load
from lite_moderation.cli import main
from lite_moderation.data import DataError
from lite_moderation.sources import (
    SourceSpec,
    _chatterbot_corpus,  # the parse cache, cleared where a test hides the package
    build_training_set,
    chatterbot_conversations,
    chatterbot_pairs,
    chatterbot_turns,
    chitchat_pairs,
    parse_source,
)
from lite_moderation.taxonomy import CATEGORIES
from lite_moderation.texts import field_text


def _everyday(n: int = 40) -> list[dict]:
    return [{"prompt": f"what time does the {w} open {i}", "response": f"the {w} opens at nine {i}",
             "is_safe": True} for i, w in enumerate(["museum", "library", "bakery", "garden"] * (n // 4))]


@pytest.fixture
def two_sources(tmp_path, tiny_data):
    return tiny_data, write_jsonl(tmp_path / "everyday.jsonl", _everyday())


def test_parse_source_reads_weight_and_rows_after_the_path():
    assert parse_source("a,b.jsonl,weight=0.3,rows=100") == SourceSpec("a,b.jsonl", 0.3, 100)
    assert parse_source("x.jsonl") == SourceSpec("x.jsonl")
    assert parse_source("x.jsonl,weight=2").spec_text("x.jsonl") == "x.jsonl,weight=2"


@pytest.mark.parametrize("bad", ["x.jsonl,weight=0", "x.jsonl,weight=abc", "x.jsonl,rows=0", ",weight=1",
                                 "x.jsonl,weight=1,weight=2", "x.jsonl,weight=nan", "x.jsonl,pair_weight=0",
                                 "x.jsonl,pair_weight=inf", "x.jsonl,pair_weight=abc",
                                 "x.jsonl,prompt_alone_weight=0", "x.jsonl,prompt_alone_weight=-1"])
def test_parse_source_rejects_bad_options(bad):
    with pytest.raises(ValueError):
        parse_source(bad)


def test_shape_copies_follow_their_prompt_and_only_primary_pairs_are_tuned_on(two_sources):
    primary, everyday = two_sources
    ts = build_training_set([SourceSpec(str(primary)), SourceSpec(str(everyday), 0.5)],
                            shapes=("pair", "prompt", "text"))
    records = [json.loads(line) for line in primary.read_text().splitlines()]
    n_prompts = len({r["prompt"] for r in records})
    assert ts.primary.sum() == len(records)
    assert all(isinstance(ts.pairs[i], tuple) and all(ts.pairs[i]) for i in np.flatnonzero(ts.primary))
    first = ts.source_of_row == 0
    # one prompt-alone row per distinct prompt, one text-alone row per response, safe prompts as texts too
    prompt_alone = [i for i in np.flatnonzero(first) if ts.pairs[i][1] == ""]
    assert len(prompt_alone) == n_prompts
    for i in prompt_alone:  # unsafe when any of the prompt's answers is, and grouped with that prompt
        rows = [j for j in np.flatnonzero(ts.primary) if ts.pairs[j][0] == ts.pairs[i][0]]
        assert ts.Y[i, -1] == ts.Y[rows, -1].any()
        assert set(ts.groups[rows]) == {ts.groups[i]}
    texts = {ts.pairs[i][1] for i in np.flatnonzero(first) if ts.pairs[i][0] == ""}
    assert {r["response"] for r in records} <= texts
    # the other source: all safe, weighed, never tuned on, in groups of its own
    other = ts.source_of_row == 1
    assert not ts.Y[other].any() and set(ts.weights[other]) == {0.5} and not ts.primary[other].any()
    assert not set(ts.groups[other]) & set(ts.groups[first])
    assert [s["training_rows"] for s in ts.sources] == [first.sum(), other.sum()]


def test_red_team_prompts_are_not_made_texts_alone(tmp_path):
    records = synthetic_records(60, seed=3)
    ts = build_training_set([SourceSpec(str(write_jsonl(tmp_path / "p.jsonl", records)))], shapes=("pair", "text"))
    unsafe_prompts = {r["prompt"] for r in records if not r["is_safe"]}
    assert not unsafe_prompts & {p[1] for p in ts.pairs if p[0] == ""} - {r["response"] for r in records}


@pytest.mark.parametrize("shapes", [("pair", "text", "prompt"), ("pair", "text", "prompt_categories")])
def test_a_pair_with_a_blank_field_makes_no_blank_copy_and_trains(tmp_path, shapes):
    records = synthetic_records(60, seed=3)
    records[0] = {**records[0], "prompt": "   "}
    records[1] = {**records[1], "response": " \t"}
    ts = build_training_set([SourceSpec(str(write_jsonl(tmp_path / "p.jsonl", records)))], shapes=shapes)
    assert not [p for p in ts.pairs if not p[0].strip() and not p[1].strip()]
    default_estimator(char_fields=(), min_df=1, threshold_folds=2).fit(ts.pairs, ts.Y, **ts.fit_params())


def test_a_single_pair_source_builds_what_the_dataset_holds(tiny_data):
    ts = build_training_set([SourceSpec(str(tiny_data))])
    assert ts.primary.all() and (ts.weights == 1).all() and len(ts) == 240


def test_rows_keeps_a_seeded_sample(two_sources):
    primary, everyday = two_sources
    a = build_training_set([SourceSpec(str(primary)), SourceSpec(str(everyday), rows=10)], seed=1)
    b = build_training_set([SourceSpec(str(primary)), SourceSpec(str(everyday), rows=10)], seed=1)
    assert (a.source_of_row == 1).sum() == 10 and a.pairs == b.pairs


def test_an_unsafe_row_without_categories_teaches_the_unsafe_head_alone(tmp_path, tiny_data):
    binary = write_jsonl(tmp_path / "binary.jsonl", [{"prompt": "q", "response": "r", "is_safe": True},
                                                     {"prompt": "q2", "response": "r2", "is_safe": False}])
    ts = build_training_set([SourceSpec(str(tiny_data)), SourceSpec(str(binary))])
    extra = np.flatnonzero(ts.source_of_row == 1)
    assert ts.label_mask[extra[0]].all()  # a safe row: no category, known
    assert not ts.label_mask[extra[1], :-1].any() and ts.label_mask[extra[1], -1]  # unsafe: which harm is unknown
    unlabelled = write_jsonl(tmp_path / "none.jsonl", [{"prompt": "q", "response": "r"}])
    with pytest.raises(DataError, match="none.jsonl"):
        build_training_set([SourceSpec(str(tiny_data)), SourceSpec(str(unlabelled))])


def test_an_is_safe_only_primary_source_is_a_binary_target_and_a_partly_categorised_one_is_refused(tmp_path):
    only_binary = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "q", "response": "r", "is_safe": True},
                                                    {"prompt": "q2", "response": "r2", "is_safe": False}])
    ts = build_training_set([SourceSpec(str(only_binary))])
    assert ts.labels.categories == () and ts.labels.flag == "unsafe" and ts.Y.tolist() == [[False], [True]]
    category = dict.fromkeys(CATEGORIES, False)
    partly = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "response": "r", "is_safe": True, "category": category},
                                               {"prompt": "q2", "response": "r2", "is_safe": False}])
    with pytest.raises(DataError, match="category"):
        build_training_set([SourceSpec(str(partly))])


def test_weights_and_tuning_rows_change_the_fit(two_sources):
    primary, everyday = two_sources
    ts = build_training_set([SourceSpec(str(primary)), SourceSpec(str(everyday), 0.2)])
    est = default_estimator(char_fields=(), min_df=1, threshold_folds=3)
    weighted = est.fit(ts.pairs, ts.Y, **ts.fit_params())
    unweighted = default_estimator(char_fields=(), min_df=1, threshold_folds=3).fit(
        ts.pairs, ts.Y, groups=ts.groups)
    assert not np.allclose(weighted.coef_, unweighted.coef_)
    assert not np.allclose(weighted.thresholds_, unweighted.thresholds_)


def test_fit_rejects_bad_weights_and_masks(xy_small):
    X, Y = xy_small
    est = default_estimator(char_fields=(), min_df=1, threshold_folds=0)
    with pytest.raises(ValueError, match="sample_weight"):
        est.fit(X, Y, sample_weight=np.ones(len(X) - 1))
    with pytest.raises(ValueError, match="sample_weight"):
        est.fit(X, Y, sample_weight=-np.ones(len(X)))
    with pytest.raises(ValueError, match="tuning_rows"):
        est.fit(X, Y, tuning_rows=np.zeros(len(X), bool))
    with pytest.raises(ValueError, match="boolean"):
        est.fit(X, Y, tuning_rows=np.ones(len(X)))


@pytest.fixture
def xy_small():
    records = synthetic_records(80, seed=2)
    X = [(r["prompt"], r["response"]) for r in records]
    Y = np.array([[*r["category"].values()] for r in records])
    return X, Y


def test_cv_reports_on_primary_rows_only_and_extra_rows_only_train(two_sources):
    primary, everyday = two_sources
    ts = build_training_set([SourceSpec(str(primary)), SourceSpec(str(everyday), 0.5)], shapes=("pair", "prompt"))
    result = cross_validate(ts, 3, 0, estimator=default_estimator(char_fields=(), min_df=1, threshold_folds=2))
    assert len(result.proba) == ts.primary.sum() == 240
    assert result.metrics["n"] == 240


def test_shape_fields_are_empty_outside_their_shape():
    assert field_text("lone_prompt", "q", "") == "q" and field_text("lone_prompt", "q", "a") == ""
    assert field_text("lone_text", "", "t") == "t" and field_text("lone_text", "q", "t") == ""
    assert field_text("pair_prompt", "q", "a") == "q" and field_text("pair_prompt", "q", "") == ""
    assert field_text("pair_response", "q", "a") == "a" and field_text("pair_response", "", "a") == ""
    with pytest.raises(ValueError, match="unknown field"):
        field_text("nope", "q", "a")


def test_shape_blocks_score_the_same_on_the_fast_and_reference_paths(two_sources):
    primary, everyday = two_sources
    ts = build_training_set([SourceSpec(str(primary)), SourceSpec(str(everyday), 0.5)],
                            shapes=("pair", "prompt", "text"))
    est = default_estimator(preset="shapes", min_df=1, threshold_folds=2)
    model = est.fit(ts.pairs, ts.Y, **ts.fit_params())
    X = [*ts.pairs[:50], ("a question alone", ""), "a text alone", ("", "another text")]
    assert model._fast_scorer() is not None
    assert np.abs(model.decision_function(X) - model.reference_decision_function(X)).max() < 1e-9


def test_chitchat_package_pairs_are_consecutive_messages():
    pytest.importorskip("chitchat_dataset")
    pairs = chitchat_pairs()
    assert len(pairs) > 100_000
    assert all(a and b for _, a, b in pairs[:1000])
    same_conv = [(a, b, c, d) for (c1, a, b), (c2, c, d) in itertools.pairwise(pairs) if c1 == c2]
    # each reply is the next pair's message (but where an empty message was left out)
    assert np.mean([b == c for _, b, c, _ in same_conv]) > 0.99


def test_chatterbot_package_parts_are_disjoint_and_keep_translations_together():
    pytest.importorskip("chatterbot_corpus")
    train, held = chatterbot_turns(), chatterbot_turns(heldout=True)
    assert len(train) > 5_000 and len(held) > 1_000
    assert not {t for _, _, t in train} & {t for _, _, t in held}  # no held-out text is ever a training row
    assert {c for c, _, _ in train}.isdisjoint({c for c, _, _ in held})  # a conversation is in one part
    # a conversation's translations share its name, so they fall in one part: many languages per held-out name
    languages = {}
    for conversation, language, _ in held:
        languages.setdefault(conversation, set()).add(language)
    assert max(map(len, languages.values())) > 10
    assert chatterbot_turns() == train  # the same rows on every call


def test_chatterbot_pairs_are_consecutive_turns_of_the_training_part_only():
    pytest.importorskip("chatterbot_corpus")
    pairs = chatterbot_pairs()
    held = {t for _, _, t in chatterbot_turns(heldout=True)}
    assert len(pairs) > 3_000 and len({(a, b) for _, a, b in pairs}) == len(pairs)
    assert not any(a in held or b in held for _, a, b in pairs)
    consecutive = {(name, a, b) for name, _, turns in chatterbot_conversations() for a, b in itertools.pairwise(turns)}
    assert all(p in consecutive for p in pairs)
    ts = build_training_set([parse_source("pkg:chatterbot-corpus-pairs,weight=0.15,shapes=pair")],
                            shapes=("pair", "text"), seed=0)
    assert len(ts) == len(pairs) and all(p and r for p, r in ts.pairs) and not ts.Y.any()  # pairs only


@pytest.mark.parametrize("source, module, missing", [
    ("pkg:chatterbot-corpus", "chatterbot_corpus", "the package chatterbot-corpus is not installed"),
    ("pkg:chatterbot-corpus-pairs", "yaml", "yaml, which chatterbot-corpus needs, is not installed"),
    ("pkg:chitchat-dataset", "chitchat_dataset", "the package chitchat-dataset is not installed")])
def test_a_package_source_not_installed_says_what_to_install(monkeypatch, source, module, missing):
    monkeypatch.setitem(sys.modules, module, None)  # the import fails as if the package were absent
    _chatterbot_corpus.cache_clear()  # a corpus parsed earlier in this process would be served from memory
    with pytest.raises(DataError, match=r"lite-moderation\[everyday\].*==") as caught:
        build_training_set([SourceSpec(source)], shapes=("pair", "text"), seed=0)
    assert source in str(caught.value) and missing in str(caught.value)


def test_chatterbot_package_source_trains_as_harmless_messages_alone():
    pytest.importorskip("chatterbot_corpus")
    ts = build_training_set([SourceSpec("pkg:chatterbot-corpus", rows=300)], shapes=("pair", "text"), seed=0)
    assert len(ts) == 300 and not ts.Y.any()
    assert all(isinstance(p, str) or not (p[0] and p[1]) for p in ts.pairs)  # single messages, no pairs


def _train(runner, out, primary, extra: str, *options: str):
    """The real `train` CLI on a primary and one extra source, with a small word-only recipe."""
    result = runner.invoke(main, ["train", "--data", str(primary), "--data", extra, *options, "--output", str(out),
                                  "--char-ngrams", "none", "--min-df", "1", "--threshold-folds", "2", "--quiet"])
    assert result.exit_code == 0, result.output


def test_train_cli_with_several_sources_records_each_in_the_card(runner, two_sources, tmp_path):
    primary, everyday = two_sources
    out = tmp_path / "m"
    _train(runner, out, primary, f"{everyday},weight=0.5,rows=20", "--shapes", "pair,prompt,text")
    card = json.loads((out / "model.json").read_text())["card"]
    data = card["training_data"]
    assert data["rows"] == 240 and data["shapes"] == ["pair", "prompt", "text"]
    assert [s["name"] for s in data["sources"]] == [primary.name, everyday.name]
    assert data["sources"][1]["weight"] == 0.5 and data["sources"][1]["rows_sampled"] == 20
    assert all(len(s["sha256"]) == 64 for s in data["sources"])
    assert card["recipe"]["command"].startswith(
        f"lite-moderation train --data {primary.name} --data {everyday.name},weight=0.5,rows=20 "
        "--shapes pair,prompt,text --output MODEL_DIR")
    # the primary is made-up data (no license recorded), not BeaverTails': every source is named with its license
    assert card["license"].startswith(f"Trained on: {primary.name} (license unknown: check the source); everyday.jsonl (")
    info = runner.invoke(main, ["info", "--model", str(out)])
    assert "also: everyday.jsonl (weight 0.5" in info.output and "input shapes trained: pair, prompt, text" in info.output


def test_train_cli_rejects_a_bad_source_or_shape(runner, tiny_data, tmp_path):
    result = runner.invoke(main, ["train", "--data", f"{tiny_data},weight=-1", "--output", str(tmp_path / "m")])
    assert result.exit_code == 2 and "weight" in result.output
    result = runner.invoke(main, ["train", "--data", str(tiny_data), "--shapes", "prompt", "--output",
                                  str(tmp_path / "m")])
    assert result.exit_code == 2 and "pair" in result.output


@pytest.mark.parametrize("command", ["train", "cv"])
def test_a_misspelt_source_option_is_named_not_reported_as_a_missing_file(runner, tiny_data, tmp_path, command):
    """`--data comments.csv,weigth=0.3` said "comments.csv,weigth=0.3: no such file"."""
    data = shutil.copy(tiny_data, tmp_path / "comments.jsonl")
    out = ["--output", str(tmp_path / "m")] if command == "train" else []
    for source, file in ((f"{data},weigth=0.3", data), ("pkg:chitchat-dataset,weigth=0.3", "pkg:chitchat-dataset")):
        result = runner.invoke(main, [command, "--data", source, *out, "-q"])
        assert result.exit_code == 2, result.output
        assert (f"unknown option 'weigth' (did you mean 'weight'?) after the file name '{file}'; the options are weight, "
                "pair_weight, prompt_alone_weight, rows, shapes, category, group") in result.stderr
        assert "no such file" not in result.stderr
    result = runner.invoke(main, [command, "--data", f"{data},rows=50,Weight=2,rowz=1", *out, "-q"])
    assert result.exit_code == 2 and "unknown options 'Weight' (did you mean 'weight'?), 'rowz'" in result.stderr
    missing = tmp_path / "absent.jsonl"
    result = runner.invoke(main, [command, "--data", f"{missing},weigth=0.3", *out, "-q"])  # neither is a file
    assert result.exit_code == 2 and "unknown option 'weigth'" in result.stderr
    assert f"or, if '{missing},weigth=0.3' is one file name: no such file" in result.stderr
    assert not (tmp_path / "m").exists()


def test_a_file_whose_name_holds_a_comma_and_an_equals_sign_is_still_read(runner, tiny_data, tmp_path):
    """Only a trailing part that is not a real file is taken for a misspelt option."""
    data = shutil.copy(tiny_data, tmp_path / "run,lr=0.1.jsonl")
    assert parse_source(str(data)) == SourceSpec(str(data))
    assert parse_source(f"{data},weight=0.5") == SourceSpec(str(data), 0.5)
    result = runner.invoke(main, ["train", "--data", f"{data},rows=100", "--output", str(tmp_path / "m"),
                                  "--char-ngrams", "none", "--min-df", "1", "--threshold-folds", "0", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "model.json").read_text())["card"]["training_data"]["rows"] == 100


def test_cv_predictions_are_one_line_per_primary_row(runner, two_sources, tmp_path):
    primary, everyday = two_sources
    predictions = tmp_path / "oof.jsonl"
    result = runner.invoke(main, ["cv", "--data", str(primary), "--data", f"{everyday},weight=0.5", "--folds", "3",
                                  "--char-ngrams", "none", "--min-df", "1", "--threshold-folds", "2",
                                  "--predictions", str(predictions), "--json", str(tmp_path / "m.json"), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [r["row"] for r in rows] == list(range(240))
    assert [r["line"] for r in rows] == list(range(1, 241))
    assert {r["fold"] for r in rows} == {0, 1, 2} and len(rows[0]["scores"]) == 15
    metrics = json.loads((tmp_path / "m.json").read_text())
    truth = [not json.loads(line)["is_safe"] for line in primary.read_text().splitlines()]
    true_positives = sum(r["flagged"] and t for r, t in zip(rows, truth))
    assert metrics["n"] == 240
    assert true_positives == pytest.approx(metrics["unsafe"]["recall"] * sum(truth))


#: A small, fast recipe for the CLI tests of one source.
_QUICK = ["--char-ngrams", "none", "--min-df", "1", "--threshold-folds", "2", "--seed", "3", "-q"]


def test_cv_on_one_source_reads_its_options_as_train_does(runner, tmp_path):
    """cv --data FILE,rows=N with one source and the default shapes cross-validated every row of FILE at weight 1
    (a source's options were read only with several): it must cross-validate the N rows train samples, weighed as
    train weighs them, so its figures are train --cv-folds' on the same --data."""
    data = write_jsonl(tmp_path / "data.jsonl", synthetic_records(240))
    spec = f"{data},rows=90,weight=0.05"
    result = runner.invoke(main, ["cv", "--data", spec, "--folds", "3", "--bootstrap", "0", "--json", "-", *_QUICK])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 90
    out = tmp_path / "model"
    result = runner.invoke(main, ["train", "--data", spec, "--cv-folds", "3", "--output", str(out), *_QUICK])
    assert result.exit_code == 0, result.output
    card_cv = json.loads((out / "model.json").read_text())["card"]["metrics"]["cv"]
    assert card_cv["n"] == 90
    assert (card_cv["unsafe"], card_cv["categories"]) == (metrics["unsafe"], metrics["categories"])


@pytest.mark.parametrize(("rows", "message"), [
    (synthetic_records(60), "category=hate_speech: its rows have categories of their own"),
    ([{"text": f"garden walk {i}", "is_safe": i % 3 > 0} for i in range(60)], "not one of the model's categories"),
], ids=["categorised", "is_safe only"])
def test_cv_on_one_source_refuses_a_category_as_train_does(runner, tmp_path, rows, message):
    """category= on the first source was silently dropped by cv with one source; train refuses it (it names the
    category of a further source labelled only is_safe), and so must cv."""
    spec = f"{write_jsonl(tmp_path / 'data.jsonl', rows)},category=hate_speech"
    for command in (["train", "--output", str(tmp_path / "model")], ["cv", "--folds", "2", "--bootstrap", "0"]):
        result = runner.invoke(main, [*command, "--data", spec, *_QUICK])
        assert result.exit_code == 2, (command, result.output)
        assert message in result.stderr and "Traceback" not in result.output


def test_everyday_files_train_as_extra_sources_on_real_data():
    """The shared everyday file trains as a safe source; the BeaverTails-Evaluation prompts keep categories."""
    ts = build_training_set([SourceSpec(str(BEAVERTAILS_TEST)),
                             SourceSpec(str(SHARED_DATA / "beavertails" / "evaluation_700.jsonl")),
                             SourceSpec(str(SHARED_DATA / "everyday" / "instruction_train.jsonl"), 0.3, 200)],
                            shapes=("pair", "prompt"))
    evaluation = ts.source_of_row == 1
    assert evaluation.sum() == 700 and ts.Y[evaluation, -1].all() and (ts.Y[evaluation, :-1].sum(axis=1) == 1).all()
    assert not ts.Y[ts.source_of_row == 2].any()
    assert ts.sources[2]["license"] and "CC BY-NC 4.0" in ts.sources[0]["license"]


def test_vocabulary_from_the_first_source_leaves_the_others_words_out(runner, two_sources, tmp_path):
    primary, everyday = two_sources
    out = tmp_path / "m"
    _train(runner, out, primary, f"{everyday},weight=0.5", "--vocabulary-from", "first")
    terms = {t for block in json.loads((out / "vocabulary.json").read_text())["blocks"] for t in block}
    assert "bakery" not in terms and "museum" in terms  # "museum" is also a topic of the primary source
    card = json.loads((out / "model.json").read_text())["card"]
    assert "--vocabulary-from first" in card["recipe"]["command"]


def test_vocabulary_rows_must_be_a_mask_of_the_rows(xy_small):
    X, Y = xy_small
    est = default_estimator(char_fields=(), min_df=1, threshold_folds=0)
    with pytest.raises(ValueError, match="vocabulary_rows"):
        est.fit(X, Y, vocabulary_rows=np.ones(3, bool))


@pytest.mark.filterwarnings("ignore::lite_moderation.model.LabelWarning")  # 60 rows: a category has no positive
def test_a_responses_text_alone_copy_does_not_count_toward_min_df(tmp_path):
    records = synthetic_records(60, seed=4)
    records[0]["response"] += " zyxwonce"  # a term of one answer only
    path = write_jsonl(tmp_path / "p.jsonl", records)
    ts = build_training_set([SourceSpec(str(path))], shapes=("pair", "text"))
    est = default_estimator(char_fields=(), min_df=2, threshold_folds=0)
    model = est.fit(ts.pairs, ts.Y, **ts.fit_params())
    assert not any("zyxwonce" in t for t in model.vectorizer_.get_feature_names_out())
    assert ts.response_copy.sum() == 60


def test_a_pair_weight_weighs_a_sources_pairs_and_leaves_its_messages_at_weight(runner, two_sources, tmp_path):
    primary, everyday = two_sources
    spec = parse_source(f"{everyday},weight=0.5,pair_weight=0.2")
    assert spec == SourceSpec(str(everyday), 0.5, None, None, 0.2)
    assert spec.spec_text("e.jsonl") == "e.jsonl,weight=0.5,pair_weight=0.2"
    ts = build_training_set([SourceSpec(str(primary)), spec], shapes=("pair", "text"))
    rows = np.flatnonzero(ts.source_of_row == 1)
    is_pair = np.array([bool(ts.pairs[i][0] and ts.pairs[i][1]) for i in rows])
    assert is_pair.any() and (~is_pair).any()
    assert set(ts.weights[rows[is_pair]]) == {0.2} and set(ts.weights[rows[~is_pair]]) == {0.5}
    assert set(ts.weights[ts.source_of_row == 0]) == {1.0}
    out = tmp_path / "m"
    _train(runner, out, primary, f"{everyday},weight=0.5,pair_weight=0.2", "--shapes", "pair,text")
    card = json.loads((out / "model.json").read_text())["card"]
    assert card["training_data"]["sources"][1]["pair_weight"] == 0.2
    assert "pair_weight" not in card["training_data"]["sources"][0]
    assert f"--data {everyday.name},weight=0.5,pair_weight=0.2 " in card["recipe"]["command"]
    info = runner.invoke(main, ["info", "--model", str(out)])
    assert "also: everyday.jsonl (weight 0.5, pairs 0.2," in info.output


def test_a_prompt_alone_weight_weighs_only_the_messages_made_of_a_sources_prompts(runner, tmp_path):
    records = synthetic_records(240, seed=0)
    for i, record in enumerate(records[::3]):  # prompts whose every answer is safe: texts alone with shapes=text
        record.update(prompt=f"what is the tallest tree number {i % 20}", is_safe=True,
                      category={key: False for key in record["category"]})
    tiny_data = write_jsonl(tmp_path / "p.jsonl", records)
    spec = parse_source(f"{tiny_data},prompt_alone_weight=0.3")
    assert spec == SourceSpec(str(tiny_data), 1.0, None, None, None, 0.3)
    assert spec.spec_text("p.jsonl") == "p.jsonl,prompt_alone_weight=0.3"
    for shapes in (("pair", "text"), ("pair", "prompt", "text")):
        plain = build_training_set([SourceSpec(str(tiny_data))], shapes=shapes)
        ts = build_training_set([spec], shapes=shapes)
        assert ts.pairs == plain.pairs and (ts.Y == plain.Y).all()
        prompt_alone = np.array([not ts.response_copy[i] and not ts.primary[i] for i in range(len(ts))])
        assert prompt_alone.any() and all(bool(ts.pairs[i][0]) != bool(ts.pairs[i][1]) for i in np.flatnonzero(prompt_alone))
        assert set(ts.weights[prompt_alone]) == {0.3} and set(ts.weights[~prompt_alone]) == {1.0}
    out = tmp_path / "m"
    result = runner.invoke(main, ["train", "--data", f"{tiny_data},prompt_alone_weight=0.3", "--shapes", "pair,text",
                                  "--output", str(out), "--char-ngrams", "none", "--min-df", "1",
                                  "--threshold-folds", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model.json").read_text())["card"]
    assert card["training_data"]["sources"][0]["prompt_alone_weight"] == 0.3
    assert f"--data {tiny_data.name},prompt_alone_weight=0.3 " in card["recipe"]["command"]
    assert ", prompts alone 0.3)" in runner.invoke(main, ["info", "--model", str(out)]).output


def test_a_source_can_show_its_own_shapes(two_sources):
    primary, everyday = two_sources
    spec = parse_source(f"{everyday},weight=0.5,shapes=text")
    assert spec.shapes == ("text",) and spec.spec_text("e.jsonl") == "e.jsonl,weight=0.5,shapes=text"
    ts = build_training_set([SourceSpec(str(primary)), spec], shapes=("pair", "text"))
    rows = np.flatnonzero(ts.source_of_row == 1)
    assert rows.size and all(not ts.pairs[i][0] for i in rows)  # only single messages, no pair
    assert not ts.response_copy[rows].any()  # they are the source's rows, so they teach the vocabulary
    with pytest.raises(ValueError, match="shapes must be among"):
        parse_source(f"{everyday},shapes=pair+nonsense")
    with pytest.raises(ValueError, match="first source"):
        build_training_set([parse_source(f"{primary},shapes=text")])


def test_a_source_category_labels_its_unsafe_rows_and_leaves_the_other_categories_unknown(tmp_path, tiny_data):
    binary = write_jsonl(tmp_path / "abuse.jsonl", [{"prompt": "", "response": "you are a useless bot", "is_safe": False},
                                                    {"prompt": "", "response": "thanks, that helped", "is_safe": True}])
    spec = parse_source(f"{binary},weight=0.5,category=hate_speech")
    assert spec.category == "hate_speech" and spec.spec_text("abuse.jsonl") == "abuse.jsonl,weight=0.5,category=hate_speech"
    ts = build_training_set([SourceSpec(str(tiny_data)), spec])
    unsafe, safe = np.flatnonzero(ts.source_of_row == 1)
    hate = CATEGORIES.index("hate_speech,offensive_language")
    assert np.flatnonzero(ts.Y[unsafe, :-1]).tolist() == [hate] and ts.Y[unsafe, -1]
    assert np.flatnonzero(ts.label_mask[unsafe, :-1]).tolist() == [hate] and ts.label_mask[unsafe, -1]
    assert ts.label_mask[safe].all() and not ts.Y[safe].any()
    assert ts.sources[1]["category"] == "hate_speech"


@pytest.mark.parametrize(("option", "message"), [("category=no_such_harm", "not one of the model's categories"),
                                                 ("category=hate_speech", "categories of their own")])
def test_a_source_category_is_refused_when_unknown_or_when_the_source_has_its_own(tmp_path, tiny_data, option,
                                                                                 message):
    own = "category=no_such_harm" not in option
    source = tiny_data if own else write_jsonl(tmp_path / "b.jsonl", [{"prompt": "q", "response": "", "is_safe": False}])
    with pytest.raises(DataError, match=message) as error:
        build_training_set([SourceSpec(str(tiny_data)), parse_source(f"{source},{option}")])
    assert "hate_speech" in str(error.value) or own  # the choices are listed


def test_train_cli_teaches_a_source_category_and_the_card_says_so(runner, tiny_data, tmp_path):
    """Insults as a binary source: with category=hate_speech the hate_speech head learns them, without it the
    head never sees them as positives."""
    insults = [f"you are a {w} {k} bot" for k, w in enumerate(["useless", "stupid", "pathetic", "worthless"] * 10)]
    rows = [{"prompt": "", "response": t, "is_safe": False} for t in insults]
    rows += [{"prompt": "", "response": f"thanks {k}, the {w} helped", "is_safe": True}
             for k, w in enumerate(["map", "recipe", "answer", "list"] * 10)]
    binary = write_jsonl(tmp_path / "abuse.jsonl", rows)
    scores = {}
    for option in ("", ",category=hate_speech"):
        out = tmp_path / f"m{bool(option)}"
        _train(runner, out, tiny_data, f"{binary}{option}", "--shapes", "pair,text")
        proba = load(str(out)).predict_proba(["you are a useless and stupid bot"])[0]
        scores[option] = proba[CATEGORIES.index("hate_speech,offensive_language")]
    assert scores[",category=hate_speech"] > scores[""] + 0.2
    card = json.loads((tmp_path / "mTrue" / "model.json").read_text())["card"]
    assert card["recipe"]["command"].split(" --shapes")[0].endswith("abuse.jsonl,category=hate_speech")
    info = runner.invoke(main, ["info", "--model", str(tmp_path / "mTrue")])
    assert "unsafe rows are hate_speech" in info.output


def test_prompt_categories_shape_adds_each_harmful_prompt_teaching_its_answers_categories_only(tiny_data):
    records = [json.loads(line) for line in tiny_data.read_text().splitlines()]
    union: dict[str, set] = {}
    for r in records:
        if not r["is_safe"]:
            union.setdefault(r["prompt"], set()).update(c for c, on in r["category"].items() if on)
    plain = build_training_set([SourceSpec(str(tiny_data))], shapes=("pair", "text"))
    ts = build_training_set([SourceSpec(str(tiny_data))], shapes=("pair", "text", "prompt_categories"))
    added = np.arange(len(plain), len(ts))
    assert len(ts) == len(plain) + len(union) and ts.pairs[:len(plain)] == plain.pairs
    assert {ts.pairs[i] for i in added} == {(p, "") for p in union}
    for i in added:
        assert {CATEGORIES[j] for j in np.flatnonzero(ts.Y[i, :-1])} == union[ts.pairs[i][0]]
        assert ts.label_mask[i, :-1].all() and not ts.label_mask[i, -1]  # the flag head learns nothing from it
    assert not ts.vocabulary_rows()[added].any() and not ts.primary[added].any()
    groups = {ts.pairs[i][0]: ts.groups[i] for i in range(len(plain)) if ts.primary[i]}
    assert all(ts.groups[i] == groups[ts.pairs[i][0]] for i in added)  # out of the folds with its prompt
    with_prompts = build_training_set([SourceSpec(str(tiny_data))], shapes=("pair", "prompt", "prompt_categories"))
    assert with_prompts.label_mask[:, -1].all()  # prompts already messages (unsafe when any answer is): no copy


def test_prompt_categories_shape_leaves_the_unsafe_head_exactly_as_it_was(tiny_data):
    """The rows it adds have no flag label and no vocabulary vote: the unsafe head's weights and cut-offs are the
    same to the bit; a category head is not."""
    models = []
    for shapes in (("pair", "text"), ("pair", "text", "prompt_categories")):
        ts = build_training_set([SourceSpec(str(tiny_data))], shapes=shapes)
        estimator = default_estimator(preset="fast", min_df=1, threshold_folds=2)
        models.append(estimator.fit(ts.pairs, ts.Y, **ts.fit_params()))
    before, after = models
    assert np.array_equal(before.coef_[:, -1], after.coef_[:, -1]) and before.intercept_[-1] == after.intercept_[-1]
    assert before.thresholds_[-1] == after.thresholds_[-1]
    assert before.message_thresholds_[-1] == after.message_thresholds_[-1]
    assert not np.array_equal(before.coef_[:, :-1], after.coef_[:, :-1])


# ------------------------------------------------------------------------------- folds grouped by a column


def _translations(n_questions: int = 12, languages: int = 4) -> list[dict]:
    """Questions asked in several made-up languages: each row's text differs, its ``question`` field is shared (as
    XSafety's ``group``). Half the questions carry a marker word and are unsafe."""
    return [{"text": f"{'marker word' if q % 2 else 'garden walk'} {q} in tongue{lang} number {q * 10 + lang}",
             "is_safe": not q % 2, "question": f"q{q}"} for q in range(n_questions) for lang in range(languages)]


def _folds_of_questions(runner, data: str, tmp_path, folds: int = 3) -> dict[str, set[int]]:
    """The real `cv` CLI's out-of-fold predictions: the folds each question's rows landed in."""
    predictions = tmp_path / "oof.jsonl"
    result = runner.invoke(main, ["cv", "--data", data, "--folds", str(folds), "--char-ngrams", "none", "--min-df", "1",
                                  "--threshold-folds", "2", "--bootstrap", "10", "--predictions", str(predictions),
                                  "--json", str(tmp_path / "m.json"), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    records = _translations()
    folds_of: dict[str, set[int]] = {}
    for row in rows:
        folds_of.setdefault(records[row["line"] - 1]["question"], set()).add(row["fold"])
    return folds_of


def test_parse_source_reads_a_group_column_and_a_package_source_refuses_one():
    spec = parse_source("a.jsonl,weight=2,group=question")
    assert spec == SourceSpec("a.jsonl", 2.0, group="question")
    assert spec.spec_text("a.jsonl") == "a.jsonl,weight=2,group=question"
    with pytest.raises(ValueError, match="package source"):
        parse_source("pkg:chitchat-dataset,group=x")


def test_cv_folds_keep_a_group_column_together(runner, tmp_path):
    """Translations of one question must share a fold: by text they scatter, with group=question they do not."""
    path = write_jsonl(tmp_path / "translations.jsonl", _translations())
    by_text = _folds_of_questions(runner, str(path), tmp_path)
    assert any(len(folds) > 1 for folds in by_text.values())  # the file is one where grouping matters
    by_question = _folds_of_questions(runner, f"{path},group=question", tmp_path)
    assert len(by_question) == 12 and all(len(folds) == 1 for folds in by_question.values())
    assert len({next(iter(f)) for f in by_question.values()}) == 3
    bootstrap = json.loads((tmp_path / "m.json").read_text())["bootstrap"]  # the intervals resample questions too
    assert bootstrap["groups"] == 12 and bootstrap["method"] == "percentile bootstrap over groups of the column 'question'"


def test_train_tunes_thresholds_in_folds_of_the_group_column_and_the_card_says_so(runner, tmp_path):
    path = write_jsonl(tmp_path / "translations.jsonl", _translations())
    ts = build_training_set([parse_source(f"{path},group=question")], shapes=("pair", "text"))
    questions = [r["question"] for r in _translations()]
    assert all((ts.groups == ts.groups[i]).sum() == 4 for i in range(len(ts)))  # what fit's threshold folds split
    assert len(set(ts.groups.tolist())) == len(set(questions)) == 12 and ts.grouped_by == "column 'question'"
    out = tmp_path / "m"
    result = runner.invoke(main, ["train", "--data", f"{path},group=question", "--cv-folds", "3", "--output", str(out),
                                  "--char-ngrams", "none", "--min-df", "1", "--threshold-folds", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model.json").read_text())["card"]
    assert card["metrics"]["cv"]["grouped_by"] == "column 'question'"
    assert card["recipe"]["command"].startswith("lite-moderation train --data translations.jsonl,group=question ")
    assert card["training_data"]["grouped_by"] == "column 'question'"
    info = runner.invoke(main, ["info", "--model", str(out)])
    assert "3 folds grouped by column 'question'" in info.output and "folds grouped by column 'question')" in info.output


def test_a_prompt_in_two_groups_joins_them():
    """A prompt the column puts in two groups would sit on both sides of a fold: the groups are merged."""
    from lite_moderation.data import Dataset
    from lite_moderation.sources import TrainingSet, row_groups

    pairs = ["hello a", "hello b", "hello a", "other c", "other d"]
    dataset = Dataset(pairs, None, np.zeros(5, bool), [1, 2, 3, 4, 5], pairs, "x", groups=["g2", "g2", "g1", "g3", "g4"],
                      group_column="grp")
    assert row_groups(dataset) == ["g1", "g1", "g1", "g3", "g4"]
    assert TrainingSet.from_dataset(dataset).groups.tolist() == [0, 0, 0, 1, 2]


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_missing_group_column_is_a_located_error(runner, tmp_path, suffix):
    rows = [{"text": "garden walk", "is_safe": "true", "question": "q1"}, {"text": "marker word", "is_safe": "false"}]
    path = tmp_path / f"in.{suffix}"
    if suffix == "csv":
        path.write_text("text,is_safe\ngarden walk,true\nmarker word,false\n")
        where = "in.csv:1: field 'question': missing column 'question' (named as the group column"
    else:
        write_jsonl(path, [{**r, "is_safe": r["is_safe"] == "true"} for r in rows])
        where = "in.jsonl:2: field 'question': missing. Every record needs a value in the group column 'question'"
    for command in (["cv", "--folds", "2"], ["train", "--output", str(tmp_path / "m")]):
        result = runner.invoke(main, [*command, "--data", f"{path},group=question"])
        assert result.exit_code == 2, result.output
        assert where in result.stderr and "Traceback" not in result.output
