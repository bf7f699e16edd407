"""Training on your own labels (#21): any text column, any label set, a binary target alone.

Data: small made-up files (harmless words standing for each class) and real public data with another taxonomy
(``messages/xsafety_train.jsonl``'s categories, ``messages/hatecheck_train.jsonl`` as a binary target).
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA, write_jsonl

import lite_moderation as lm
from lite_moderation.cli import main
from lite_moderation.data import Columns, DataError, load_dataset
from lite_moderation.labels import LabelSet
from lite_moderation.model import as_label_matrix
from lite_moderation.sources import SourceSpec, build_training_set
from lite_moderation.training import PRESETS, default_estimator

XSAFETY = SHARED_DATA / "messages" / "xsafety_train.jsonl"
HATECHECK = SHARED_DATA / "messages" / "hatecheck_train.jsonl"

#: Made-up words standing for each class of a user's taxonomy (no real harmful text needed to test the plumbing).
CLASS_WORDS = {"toxic": "grumble snarl", "insult": "dolt nitwit", "spam": "coupon winner click", "ok": "garden tea"}


def _rows(n: int = 160, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    fillers = ["today", "again", "please", "maybe", "really", "now", "later", "here"]
    rows = []
    for i in range(n):
        label = list(CLASS_WORDS)[i % 4]
        words = [*CLASS_WORDS[label].split(), *rng.choice(fillers, 3)]
        rng.shuffle(words)
        rows.append({"id": i, "comment": " ".join(words) + f" {i}", "label": label})
    return rows


@pytest.fixture(scope="module")
def comments_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("own") / "mine.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["id", "comment", "label"])
        writer.writeheader()
        writer.writerows(_rows())
    return path


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lite_moderation", *args], capture_output=True, text=True,
                          timeout=600, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


MULTI_CLASS = ("--text-column", "comment", "--label-column", "label", "--safe-class", "ok")


@pytest.fixture(scope="module")
def own_model(comments_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("own_model") / "m"
    _cli("train", "--data", str(comments_csv), *MULTI_CLASS, "--min-df", "1", "--cv-folds", "3", "-q",
         "--output", str(out))
    return out


def test_a_text_label_csv_trains_cross_validates_and_scores_under_its_own_names(own_model, comments_csv):
    card = lm.read_card(own_model)
    assert card["labels"] == ["insult", "spam", "toxic", "unsafe"]
    assert card["label_set"]["categories"] == ["insult", "spam", "toxic"]
    cv = card["metrics"]["cv"]
    assert set(cv["categories"]["per_category"]) == {"insult", "spam", "toxic"}
    assert "--label-column label --safe-class ok" in card["recipe"]["command"]
    out = _cli("score", "--model", str(own_model), "-i", str(comments_csv), "--text-column", "comment",
               "--format", "jsonl").stdout.splitlines()
    rows = [json.loads(line) for line in out]
    assert len(rows) == 160 and set(rows[0]["categories"]) == {"insult", "spam", "toxic"}
    truth = [r["label"] for r in _rows()]
    assert sum(r["flagged"] == (t != "ok") for r, t in zip(rows, truth)) >= 150  # the words are the classes
    header = _cli("score", "--model", str(own_model), "-i", str(comments_csv), "--text-column", "comment",
                  "--format", "csv").stdout.splitlines()[0]
    assert header == "line,id,flagged,unsafe_score,insult,spam,toxic"  # the file's id column comes back
    info = _cli("info", "--model", str(own_model)).stdout
    assert "labels: 3 categories (insult, spam, toxic)" in info and "Trained on: mine.csv" in info


def test_cv_gives_intervals_and_per_label_metrics_and_evaluate_reads_the_same_columns(own_model, comments_csv,
                                                                                        tmp_path):
    metrics = json.loads(_cli("cv", "--data", str(comments_csv), *MULTI_CLASS, "--min-df", "1", "--folds", "3",
                              "--bootstrap", "200", "--json", "-", "-q").stdout)
    assert metrics["unsafe"]["ci"]["f1"][0] <= metrics["unsafe"]["f1"] <= metrics["unsafe"]["ci"]["f1"][1]
    assert "ci" in metrics["categories"] and set(metrics["categories"]["per_category"]) == {"insult", "spam", "toxic"}
    evaluated = json.loads(_cli("evaluate", "--model", str(own_model), "--data", str(comments_csv), *MULTI_CLASS,
                                "--json", "-").stdout)
    assert set(evaluated["categories"]["per_category"]) == {"insult", "spam", "toxic"}
    unknown = tmp_path / "other.csv"
    unknown.write_text("comment,label\ngarden tea,ok\ngrumble,shouting\n", encoding="utf-8")
    refused = _cli("evaluate", "--model", str(own_model), "--data", str(unknown), *MULTI_CLASS, check=False)
    assert refused.returncode == 2 and "other.csv:3" in refused.stderr and "'shouting'" in refused.stderr


def test_a_missing_safe_class_or_column_says_what_to_pass(comments_csv):
    no_safe = _cli("train", "--data", str(comments_csv), "--text-column", "comment", "--label-column", "label",
                   "--output", "unused", check=False)
    assert no_safe.returncode == 2 and "--safe-class" in no_safe.stderr and "'ok'" in no_safe.stderr
    no_text = _cli("train", "--data", str(comments_csv), "--label-column", "label", "--safe-class", "ok",
                   "--output", "unused", check=False)
    assert no_text.returncode == 2 and "--text-column" in no_text.stderr and "'comment'" in no_text.stderr
    wrong = _cli("train", "--data", str(comments_csv), "--text-column", "body", "--label-columns", "label",
                 "--output", "unused", check=False)
    assert wrong.returncode == 2 and "'body'" in wrong.stderr


@pytest.mark.parametrize("shape", [(4,), (1,), ()])
def test_fit_takes_any_number_of_label_columns(shape):
    rows = _rows()
    X = [r["comment"] for r in rows]
    classes = ["toxic", "insult", "spam"]
    onehot = np.array([[r["label"] == c for c in classes] for r in rows])
    if shape == (4,):
        Y, names = np.column_stack([onehot, onehot.any(axis=1)]), LabelSet(tuple(classes))
    elif shape == (1,):
        Y, names = onehot.any(axis=1)[:, None], None
    else:
        Y, names = onehot.any(axis=1), ["flag"]
    model = default_estimator(min_df=1, threshold_folds=3, labels=names).fit(X, Y)
    expected = {(4,): [*classes, "unsafe"], (1,): ["unsafe"], (): ["flag"]}[shape]
    assert model.labels_ == expected and model.coef_.shape[1] == len(expected)
    verdict = model.moderate(["coupon winner click now"])[0]
    assert verdict["flagged"] and list(verdict["categories"]) == expected[:-1]


def test_a_saved_model_keeps_its_labels_and_descriptions(tmp_path):
    rows = _rows()
    labels = LabelSet(("spam",), "flag", {"spam": "Unwanted advertising.", "flag": "Anything to hide."})
    Y = np.array([[r["label"] == "spam", r["label"] != "ok"] for r in rows])
    model = default_estimator(min_df=1, threshold_folds=3, labels=labels).fit([r["comment"] for r in rows], Y)
    lm.save(model, tmp_path / "m")
    for loaded in (lm.load(tmp_path / "m"), lm.load_scorer(tmp_path / "m")):
        assert loaded.label_set_ == labels and loaded.label_set_.descriptions == labels.descriptions
    assert np.array_equal(lm.load(tmp_path / "m").predict_proba(["garden tea"]), model.predict_proba(["garden tea"]))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_single_texts_train_with_every_preset(tmp_path, preset):
    """No prompt block is required: blocks of fields single texts never fill are not fitted."""
    path = write_jsonl(tmp_path / "texts.jsonl",
                       [{"text": r["comment"], "is_safe": r["label"] == "ok"} for r in _rows()])
    dataset = load_dataset(path)
    assert dataset.labels == LabelSet(())  # is_safe alone: a binary target
    model = default_estimator(preset=preset, min_df=1, threshold_folds=3).fit(dataset.pairs, dataset.y)
    fields = {f for f, _, _ in model.vectorizer_.blocks_}
    assert fields and fields <= {"response", "lone_text"}
    lm.save(model, tmp_path / "m")
    assert lm.load_scorer(tmp_path / "m").moderate(["garden tea today"])[0]["flagged"] is False


def test_a_binary_source_joins_a_categorised_one_and_another_taxonomy_is_refused(tmp_path, comments_csv):
    extra = write_jsonl(tmp_path / "extra.jsonl", [{"comment": f"garden tea {i}", "is_safe": True} for i in range(30)])
    columns = Columns(text="comment", label="label", safe_class="ok")
    ts = build_training_set([SourceSpec(str(comments_csv)), SourceSpec(str(extra), 0.5)], columns=columns)
    assert ts.labels.categories == ("insult", "spam", "toxic") and len(ts) == 190
    other = write_jsonl(tmp_path / "other.jsonl", [{"comment": "x", "label": "rude"}, {"comment": "y", "label": "ok"}])
    with pytest.raises(DataError, match="differ from the first source's"):
        build_training_set([SourceSpec(str(comments_csv)), SourceSpec(str(other))], columns=columns)


@pytest.mark.skipif(not XSAFETY.exists(), reason="needs ../shared/data/messages (real data with another taxonomy)")
def test_real_data_with_another_taxonomy_xsafety_categories_as_classes(tmp_path):
    """XSafety's six categories (from its ``source`` field) as a multi-class target, 'none' for its safe rows;
    grouped CV measures every category."""
    rows = [json.loads(line) for line in XSAFETY.read_text(encoding="utf-8").split("\n") if line]
    made = [{"message": r["prompt"], "harm": "none" if r["is_safe"] else r["source"].split(":")[2], "group": r["group"]}
            for r in rows if r["source"].split(":")[1] in ("en", "de", "fr")]
    path = write_jsonl(tmp_path / "xsafety_classes.jsonl", made)
    metrics = json.loads(_cli("cv", "--data", str(path), "--text-column", "message", "--label-column", "harm",
                              "--safe-class", "none", "--preset", "fast", "--folds", "3", "--bootstrap", "0",
                              "--json", "-", "-q").stdout)
    per = metrics["categories"]["per_category"]
    assert len(per) == len({m["harm"] for m in made}) - 1 >= 3  # the categories with unsafe rows
    assert all(m["support"] > 0 for m in per.values())
    assert metrics["unsafe"]["auroc"] > 0.6  # measured 0.8+ here: far from chance, in three languages


@pytest.mark.skipif(not HATECHECK.exists(), reason="needs ../shared/data/messages")
def test_real_binary_data_serves_its_flag_through_the_openai_endpoint(tmp_path):
    from test_server import ServeProcess, call, moderate

    out = tmp_path / "hate"
    _cli("train", "--data", f"{HATECHECK},rows=800", "--preset", "fast", "-q", "--output", str(out))
    assert lm.read_card(out)["labels"] == ["unsafe"]
    server = ServeProcess("--model", str(out), "--threads", "1")
    try:
        answer = moderate(server.port, {"input": ["a short note about the garden"]})
        assert answer["results"][0]["categories"] == {} and 0 <= answer["results"][0]["unsafe_score"] <= 1
        status, _, body = call(server.port, "GET", "/v1/models")
        assert status == 200 and "unsafe" in json.dumps(body)
    finally:
        assert server.stop(signal.SIGTERM) == 0


def test_the_server_answers_with_the_models_own_category_names(own_model):
    from test_server import ServeProcess, moderate

    server = ServeProcess("--model", str(own_model), "--threads", "1")
    try:
        result = moderate(server.port, {"input": ["coupon winner click today"]})["results"][0]
    finally:
        server.stop(signal.SIGTERM)
    assert result["flagged"] and result["categories"] == {"insult": False, "spam": True, "toxic": False}
    assert set(result["category_scores"]) == {"insult", "spam", "toxic"}


# ------------------------------------------------------------------------------------------------ round of a user


def _multi_label_csv(path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["comment", "spam", "insult"])
        for row in _rows():
            writer.writerow([row["comment"], row["label"] == "spam", row["label"] == "insult"])
    return path


def test_evaluating_one_of_a_models_label_columns_is_refused_not_read_as_its_flag(tmp_path):
    data = _multi_label_csv(tmp_path / "multi.csv")
    model = tmp_path / "m"
    runner = CliRunner()
    trained = runner.invoke(main, ["train", "--data", str(data), "--text-column", "comment", "--label-columns",
                                   "spam,insult", "--min-df", "1", "--threshold-folds", "0", "-q", "--output",
                                   str(model)])
    assert trained.exit_code == 0, trained.stderr
    refused = runner.invoke(main, ["evaluate", "--model", str(model), "--data", str(data), "--text-column", "comment",
                                   "--label-columns", "spam"])
    assert refused.exit_code == 2 and "one label column 'spam'" in refused.stderr and "info" in refused.stderr
    whole = runner.invoke(main, ["evaluate", "--model", str(model), "--data", str(data), "--text-column", "comment",
                                 "--label-columns", "spam,insult", "--json", "-"])
    assert set(json.loads(whole.stdout)["categories"]["per_category"]) == {"spam", "insult"}


def test_classes_safe_and_unsafe_are_a_binary_target_and_a_class_named_unsafe_among_others_is_explained(tmp_path):
    path = tmp_path / "verdicts.jsonl"
    write_jsonl(path, [{"text": r["comment"], "verdict": "safe" if r["label"] == "ok" else "unsafe"} for r in _rows()])
    dataset = load_dataset(path, text_column="text", label_column="verdict", safe_class="safe")
    assert dataset.labels.categories == () and dataset.labels.flag == "unsafe" and dataset.categories is None
    assert dataset.unsafe_labels().sum() == 120
    mixed = tmp_path / "mixed.jsonl"
    write_jsonl(mixed, [{"text": r["comment"], "verdict": {"ok": "safe", "spam": "spam"}.get(r["label"], "unsafe")}
                        for r in _rows()])
    with pytest.raises(DataError, match=r"mixed.jsonl: field 'verdict': a label is named 'unsafe'.*Rename"):
        load_dataset(mixed, text_column="text", label_column="verdict", safe_class="safe")


def test_info_escapes_a_card_value_holding_line_breaks_and_reports_a_malformed_card(tiny_model_dir, tmp_path):
    from lite_moderation.persistence import _metadata_checksum

    lm.save(lm.load(tiny_model_dir), tmp_path / "m", {**lm.read_card(tiny_model_dir),
                                                       "license": "MIT\nthresholds: unsafe 0.999"})
    shown = _cli("info", "--model", str(tmp_path / "m")).stdout
    assert "MIT\\nthresholds: unsafe 0.999" in shown
    assert not any(line.startswith("thresholds: unsafe 0.999") for line in shown.splitlines())
    path = tmp_path / "m" / "model.json"
    metadata = json.loads(path.read_text())
    metadata["card"]["training_data"] = ["not", "an", "object"]
    metadata["checksum"] = _metadata_checksum(metadata)  # a consistent file, re-signed by hand
    path.write_text(json.dumps(metadata))
    broken = _cli("info", "--model", str(tmp_path / "m"), check=False)
    assert broken.returncode == 2 and "model card is malformed" in broken.stderr and "Traceback" not in broken.stderr


def test_a_class_outside_the_models_says_to_name_the_safe_class(own_model, comments_csv):
    refused = _cli("evaluate", "--model", str(own_model), "--data", str(comments_csv), "--text-column", "comment",
                   "--label-column", "label", check=False)
    assert refused.returncode == 2 and "pass --safe-class 'ok'" in refused.stderr


def _is_safe_csv(path: Path, names: tuple[str, ...]) -> Path:
    """Boolean columns ``names`` of the made-up rows: ``spam`` set on spam rows, ``is_safe`` on the 'ok' rows."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["comment", *names])
        for row in _rows():
            writer.writerow([row["comment"], *({"spam": row["label"] == "spam", "is_safe": row["label"] == "ok"}[n]
                                               for n in names)])
    return path


@pytest.mark.parametrize("names", [("spam", "is_safe"), ("is_safe", "spam"), ("is_safe",)])
def test_an_is_safe_column_is_the_flag_head_in_python_as_in_the_cli(tmp_path, names):
    """``labels=[..., "is_safe"]`` in Python and ``--label-columns ...,is_safe`` in the CLI give one label set: is_safe
    is the flag head ``unsafe`` (negated), not a category whose rows would all be flagged."""
    data = _is_safe_csv(tmp_path / "labels.csv", names)
    out = tmp_path / "m"
    trained = CliRunner().invoke(main, ["train", "--data", str(data), "--text-column", "comment", "--label-columns",
                                        ",".join(names), "--min-df", "1", "--threshold-folds", "0", "-q", "--output",
                                        str(out)])
    assert trained.exit_code == 0, trained.stderr
    dataset = load_dataset(data, text_column="comment", label_columns=",".join(names))
    rows = _rows()
    Y = np.array([[{"spam": r["label"] == "spam", "is_safe": r["label"] == "ok"}[n] for n in names] for r in rows])
    model = default_estimator(min_df=1, threshold_folds=0, labels=list(names)).fit([r["comment"] for r in rows], Y)
    assert model.labels_ == lm.read_card(out)["labels"] == list(dataset.labels.names)
    assert model.labels_ == (["spam", "unsafe"] if "spam" in names else ["unsafe"])
    np.testing.assert_array_equal(as_label_matrix(Y, list(names)), dataset.y)
    assert [v["flagged"] for v in model.moderate(["garden tea today", "coupon winner click now"])] == [False, True]


def test_class_names_that_differ_only_by_case_stay_apart_and_are_warned_of_where_each_first_occurs(tmp_path):
    """A user test: "Spam" and "spam" in a --label-column became two categories without a word (the user's labels
    are theirs: they are not merged), while "ok " became "ok" (a class is trimmed of the spaces around it)."""
    path = tmp_path / "cased.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["comment", "label"])
        for i, row in enumerate(_rows()):
            label = {(0, "spam"): "Spam", (1, "ok"): "ok "}.get((i // 4 % 2, row["label"]), row["label"])
            writer.writerow([row["comment"], label])  # row i is on line i + 2: "Spam" first on 4, "spam" on 8
    out = tmp_path / "m"
    trained = CliRunner().invoke(main, ["train", "--data", str(path), "--text-column", "comment", "--label-column",
                                        "label", "--safe-class", "ok", "--min-df", "1", "--threshold-folds", "0",
                                        "-q", "--output", str(out)])
    assert trained.exit_code == 0, trained.stderr
    assert lm.read_card(out)["label_set"]["categories"] == ["Spam", "insult", "spam", "toxic"]  # not merged
    [warning] = [line for line in trained.stderr.splitlines() if line.startswith("warning:")]
    assert f"{path}: field 'label': class names that differ only by case" in warning
    assert "'Spam' first at line 4, 'spam' first at line 8" in warning and "'ok'" not in warning  # 'ok ' is 'ok' ...
    assert "trimmed of the spaces around it" in warning  # ... and the warning says so
    with pytest.warns(UserWarning, match="'Spam' first at line 4, 'spam' first at line 8"):
        load_dataset(path, text_column="comment", label_column="label", safe_class="ok")


@pytest.mark.parametrize("options, message", [
    (["--label-column", "label", "--label-columns", "spam,ok"],
     "--label-column (one class per row) and --label-columns (boolean columns) are two ways to label rows: give one"),
    (["--safe-class", "ok"], "--safe-class names a class of the --label-column column: give --label-column too"),
    (["--label-columns", "spam,spam"], "--label-columns must name distinct columns, got ['spam', 'spam']"),
], ids=["class and boolean columns", "a safe class alone", "a column twice"])
@pytest.mark.parametrize("command", ["train", "cv", "evaluate"])
def test_label_options_that_do_not_go_together_are_named_by_their_flags(comments_csv, tmp_path, command, options,
                                                                        message):
    """A user test: both kinds of label columns said `name one class column (label) or boolean columns (labels)`,
    Python's parameter names; the CLI names its flags (Python's Columns keeps its own names)."""
    output = ["--output", str(tmp_path / "m")] if command == "train" else []
    result = CliRunner().invoke(main, [command, "--data", str(comments_csv), "--text-column", "comment", *output,
                                       *options])
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert "safe_class" not in result.stderr and "(label" not in result.stderr
    with pytest.raises(ValueError, match=r"name one class column \(label\) or boolean columns \(labels\)"):
        Columns(label="label", labels=("spam", "ok"))


def test_info_names_the_operating_points_of_a_models_own_flag_head(tmp_path):
    """A model of one boolean column has that column as its flag head: info names its operating points so."""
    data = _multi_label_csv(tmp_path / "multi.csv")
    model = tmp_path / "m"
    trained = CliRunner().invoke(main, ["train", "--data", str(data), "--text-column", "comment", "--label-columns",
                                        "spam", "--min-df", "1", "-q", "--output", str(model)])
    assert trained.exit_code == 0, trained.stderr
    shown = _cli("info", "--model", str(model)).stdout
    assert "spam operating points (--threshold NAME)" in shown, shown
    assert "unsafe" not in shown.split("thresholds:")[-1], shown
