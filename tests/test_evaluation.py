"""`evaluate` and `cv` measure the decisions users get: their --predictions files hold `score`'s verdict of each
row, and their category metrics come twice, per head at its own cut-off (what a model card records) and as
reported (OpenAI's rule: categories only on flagged items, a flagged item names at least one).

The real CLI on real files: the shipped model on the shared AdvBench file (rows referred to by index), and a small
model of made-up labels trained here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

import lite_moderation as lm
from lite_moderation.cli import main

ADVBENCH = SHARED_DATA / "everyday" / "advbench_harmful_behaviors.jsonl"

#: Made-up words standing for each class of a user's taxonomy (no harmful text needed to test the plumbing).
CLASS_WORDS = {"toxic": "grumble snarl", "insult": "dolt nitwit", "spam": "coupon winner click", "ok": "garden tea"}
CLASSES = ("insult", "spam", "toxic")
OWN_LABELS = ("--text-column", "comment", "--label-column", "label", "--safe-class", "ok")
QUICK = ("--min-df", "1", "--char-ngrams", "none", "--threshold-folds", "3")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _comments(n: int, seed: int, tag: str) -> list[dict]:
    """Rows of a made-up 3-class taxonomy plus a safe class; a few rows borrow another class's word, so no head
    is perfect."""
    rng = np.random.default_rng(seed)
    fillers = ["today", "again", "please", "maybe", "really", "now", "later", "here", "tea", "click"]
    rows = []
    for i in range(n):
        label = list(CLASS_WORDS)[i % 4]
        words = [*CLASS_WORDS[label].split(), *rng.choice(fillers, 3)]
        if rng.random() < 0.2:
            words.append(rng.choice(" ".join(CLASS_WORDS.values()).split()))
        rng.shuffle(words)
        rows.append({"comment": " ".join(words) + f" {tag}{i}", "label": label})
    return rows


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["comment", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def own_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(training CSV, held-out CSV, model trained on the first with --cv-folds 3) of made-up labels."""
    root = tmp_path_factory.mktemp("own")
    train_csv = _write_csv(root / "train.csv", _comments(160, 0, "t"))
    held_out = _write_csv(root / "held_out.csv", _comments(80, 1, "h"))
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["train", "--data", str(train_csv), *OWN_LABELS, *QUICK, "--cv-folds", "3",
                                       "--output", str(root / "model"), "-q"])
    assert result.exit_code == 0, result.output
    return train_csv, held_out, root / "model"


def _verdict(row: dict) -> tuple:
    """A --predictions row as (line, flagged, named categories, every score)."""
    return row["line"], row["flagged"], row["categories"], row["scores"]


def _score_verdict(row: dict, flag: str) -> tuple:
    """A `score` JSONL row in the same terms."""
    return (row["line"], row["flagged"], [c for c, on in row["categories"].items() if on],
            {**row["category_scores"], flag: row["unsafe_score"]})


def _assert_same_verdicts(predictions: list[dict], scored: list[dict], flag: str = "unsafe") -> None:
    assert len(predictions) == len(scored)
    differ = [p["row"] for p, s in zip(predictions, scored) if _verdict(p) != _score_verdict(s, flag)]
    flagged_unnamed = sum(p["flagged"] and not p["categories"] for p in predictions)
    named_unflagged = sum(not p["flagged"] and bool(p["categories"]) for p in predictions)
    assert not differ, (f"{len(differ)} of {len(scored)} rows differ from score's verdict (first rows {differ[:5]}); "
                        f"{flagged_unnamed} flagged rows name no category, {named_unflagged} unflagged rows name one")


def _decision_metrics(truth: list[set[str]], named: list[set[str]], categories: tuple[str, ...]) -> dict:
    """F1/precision/recall/support per category and macro/micro F1 of verdicts against the truth, counted here
    (None where undefined, as the package reports it)."""
    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    per, totals = {}, np.zeros(3, dtype=int)
    for c in categories:
        tp = sum(c in t and c in n for t, n in zip(truth, named))
        fp = sum(c not in t and c in n for t, n in zip(truth, named))
        fn = sum(c in t and c not in n for t, n in zip(truth, named))
        totals += (tp, fp, fn)
        per[c] = {"f1": ratio(2 * tp, 2 * tp + fp + fn), "precision": ratio(tp, tp + fp),
                  "recall": ratio(tp, tp + fn), "support": tp + fn}
    f1s = [m["f1"] for m in per.values() if m["f1"] is not None]
    return {"macro_f1": sum(f1s) / len(f1s) if f1s else None,
            "micro_f1": ratio(2 * totals[0], 2 * totals[0] + totals[1] + totals[2]), "per_category": per}


def _same_numbers(got: object, expected: object) -> bool:
    """Equal structures whose numbers agree to 1e-12 (None where undefined in both)."""
    if isinstance(expected, dict):
        return isinstance(got, dict) and set(got) == set(expected) and all(
            _same_numbers(got[k], expected[k]) for k in expected)
    if expected is None or got is None:
        return got is expected
    return abs(got - expected) <= 1e-12


def _assert_reported_metrics(metrics: dict, expected: dict) -> None:
    reported = {k: v for k, v in metrics["reported_categories"].items() if k != "ci"}
    assert _same_numbers(reported, expected), (reported, expected)


# ------------------------------------------------------------------------------------------ --predictions


@pytest.mark.parametrize("threshold", [None, "strict"], ids=["default cut-off", "strict"])
def test_evaluate_predictions_are_scores_verdicts_on_the_first_300_advbench_rows(runner, tmp_path, threshold):
    """A user's round: 120 of these rows were flagged with no category in evaluate's file, 2 named one unflagged;
    score, on the same rows, 0 and 0."""
    data = tmp_path / "advbench_300.jsonl"
    data.write_text("".join(ADVBENCH.read_text(encoding="utf-8").splitlines(keepends=True)[:300]), encoding="utf-8")
    cut = ["--threshold", threshold] if threshold else []
    predictions, scored = tmp_path / "p.jsonl", tmp_path / "s.jsonl"
    result = runner.invoke(main, ["evaluate", "--data", str(data), "--predictions", str(predictions),
                                  "--bootstrap", "0", "-q", *cut])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["score", "-i", str(data), "-o", str(scored), *cut])
    assert result.exit_code == 0, result.output
    _assert_same_verdicts(_jsonl(predictions), _jsonl(scored))


def test_evaluate_predictions_of_a_model_of_own_labels_at_a_high_cut_off_are_scores(runner, tmp_path, own_files):
    _, held_out, model = own_files
    predictions, scored = tmp_path / "p.jsonl", tmp_path / "s.jsonl"
    result = runner.invoke(main, ["evaluate", "--model", str(model), "--data", str(held_out), *OWN_LABELS,
                                  "--threshold", "0.99", "--predictions", str(predictions), "--bootstrap", "0", "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["score", "--model", str(model), "-i", str(held_out), "--text-column", "comment",
                                  "--threshold", "0.99", "-o", str(scored)])
    assert result.exit_code == 0, result.output
    _assert_same_verdicts(_jsonl(predictions), _jsonl(scored))


# ------------------------------------------------------------------------------------------ category metrics


def test_evaluate_reports_the_category_metrics_of_scores_verdicts_beside_the_per_head_ones(runner, tmp_path,
                                                                                          own_files):
    """At --threshold 0.99 evaluate gave category macro-F1 1.000 while score named no category on any row."""
    _, held_out, model = own_files
    out, scored = tmp_path / "m.json", tmp_path / "s.jsonl"
    result = runner.invoke(main, ["evaluate", "--model", str(model), "--data", str(held_out), *OWN_LABELS,
                                  "--threshold", "0.99", "--json", str(out), "--bootstrap", "200", "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"n", "unsafe", "categories", "reported_categories", "bootstrap"}
    assert set(metrics["categories"]["per_category"]) == set(CLASSES)  # per head, at its own cut-off: kept
    scored_result = runner.invoke(main, ["score", "--model", str(model), "-i", str(held_out), "--text-column",
                                         "comment", "--threshold", "0.99", "-o", str(scored)])
    assert scored_result.exit_code == 0, scored_result.output
    truth = [{row["label"]} - {"ok"} for row in csv.DictReader(held_out.open(encoding="utf-8"))]
    named = [{c for c, on in row["categories"].items() if on} for row in _jsonl(scored)]
    _assert_reported_metrics(metrics, _decision_metrics(truth, named, CLASSES))
    assert metrics["reported_categories"]["macro_f1"] != metrics["categories"]["macro_f1"]  # the two differ here
    low, high = metrics["reported_categories"]["ci"]["macro_f1"]
    assert low <= metrics["reported_categories"]["macro_f1"] <= high
    reported = metrics["reported_categories"]
    assert (f"categories as reported: macro-F1 {reported['macro_f1']:.3f}" in result.stdout
            and f"micro-F1 {reported['micro_f1']:.3f}" in result.stdout)
    assert "categories, each head at its own cut-off: macro-F1" in result.stdout


def test_cv_predictions_follow_the_rule_and_its_reported_metrics_are_theirs(runner, tmp_path, own_files):
    train_csv, _, _ = own_files
    predictions, out = tmp_path / "oof.jsonl", tmp_path / "cv.json"
    result = runner.invoke(main, ["cv", "--data", str(train_csv), *OWN_LABELS, *QUICK, "--folds", "3",
                                  "--threshold", "0.99", "--predictions", str(predictions), "--json", str(out),
                                  "--bootstrap", "0", "-q"])
    assert result.exit_code == 0, result.output
    rows = _jsonl(predictions)
    flagged_unnamed = [r["row"] for r in rows if r["flagged"] and not r["categories"]]
    named_unflagged = [r["row"] for r in rows if not r["flagged"] and r["categories"]]
    assert (flagged_unnamed, named_unflagged) == ([], []), (len(flagged_unnamed), len(named_unflagged))
    metrics = json.loads(out.read_text())
    truth = [{row["label"]} - {"ok"} for row in csv.DictReader(train_csv.open(encoding="utf-8"))]
    named = [set(r["categories"]) for r in rows]
    _assert_reported_metrics(metrics, _decision_metrics(truth, named, CLASSES))
    assert set(metrics["categories"]["per_category"]) == set(CLASSES)
    assert "categories as reported: macro-F1" in result.stdout


def test_the_card_records_cvs_per_head_metrics_and_nothing_more(runner, own_files):
    """The card's metrics.cv is cv's JSON of the same run without the reported-decision metrics, which cards do
    not record (the shipped models' cards are rebuilt byte for byte)."""
    train_csv, _, model = own_files
    result = runner.invoke(main, ["cv", "--data", str(train_csv), *OWN_LABELS, *QUICK, "--folds", "3", "--seed",
                                  "0", "--bootstrap", "0", "--json", "-", "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert "reported_categories" in metrics
    card = lm.read_card(model)["metrics"]["cv"]
    assert set(card) == {"folds", "seed", "grouped_by", "n", "unsafe", "categories"}
    assert card == {"folds": 3, "seed": 0, "grouped_by": "prompt",
                    **{k: v for k, v in metrics.items() if k != "reported_categories"}}


def test_cv_repeats_summarise_the_reported_category_metrics_too(runner, own_files):
    train_csv, _, _ = own_files
    common = ["cv", "--data", str(train_csv), *OWN_LABELS, *QUICK, "--folds", "3", "--bootstrap", "0", "-q"]
    result = runner.invoke(main, [*common, "--seed", "0", "--repeats", "2", "--json", "-"])
    assert result.exit_code == 0, result.output
    repeats = json.loads(result.stdout)["repeats"]
    single = [json.loads(runner.invoke(main, [*common, "--seed", str(s), "--json", "-"]).stdout) for s in (0, 1)]
    values = [s["reported_categories"]["macro_f1"] for s in single]
    assert repeats["mean"]["reported_categories"]["macro_f1"] == pytest.approx(sum(values) / 2)
    assert repeats["mean"]["categories"]["macro_f1"] == pytest.approx(
        sum(s["categories"]["macro_f1"] for s in single) / 2)
