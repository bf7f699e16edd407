"""The statistics of a trustworthy baseline: group-bootstrap intervals, paired differences, McNemar's test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, bootstrap
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from lite_moderation.metrics import binary_metrics, category_metrics
from lite_moderation.stats import (
    BOOTSTRAP_METRICS,
    Bootstrap,
    interval,
    mcnemar,
    metric_intervals,
    metric_samples,
    paired_difference,
    point_metrics,
    repeat_summary,
    resample_counts,
    with_intervals,
)


def _noisy_system(n: int, seed: int, n_groups: int | None = None):
    """Labels, scores (rounded, so that ties occur), verdicts and prompt groups of an imperfect system."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    scores = np.round(np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1), 2)
    groups = rng.integers(0, n_groups or max(2, n * 4 // 5), n)
    return y, scores, scores >= 0.5, groups


def test_point_estimates_through_the_bootstrap_code_equal_metrics_py() -> None:
    y, scores, verdicts, groups = _noisy_system(500, 0)
    _, group_of_row = resample_counts(groups, 1, 0)
    rng = np.random.default_rng(1)
    Y, P = rng.random((500, 14)) < 0.2, rng.random((500, 14)) < 0.2
    ours = point_metrics(group_of_row, y, scores=scores, verdicts=verdicts, categories_true=Y, categories_pred=P)
    expected = binary_metrics(y, scores, verdicts)
    for name in BOOTSTRAP_METRICS:
        assert ours[name] == pytest.approx(expected[name], abs=1e-12), name
    assert ours["macro_f1"] == pytest.approx(category_metrics(Y, np.zeros((500, 14)), P)["macro_f1"], abs=1e-12)


def test_a_resample_is_the_weighted_metric_of_its_drawn_groups() -> None:
    """Each resample's metrics equal scikit-learn's with each row weighted by how often its group was drawn."""
    y, scores, verdicts, groups = _noisy_system(400, 2)
    counts, group_of_row = resample_counts(groups, 5, 7)
    assert (counts.sum(axis=1) == counts.shape[1]).all()  # G groups drawn per resample
    samples = metric_samples(counts, group_of_row, y, scores, verdicts)
    for b in range(5):
        w = counts[b][group_of_row]
        assert samples["auprc"][b] == pytest.approx(average_precision_score(y, scores, sample_weight=w))
        assert samples["auroc"][b] == pytest.approx(roc_auc_score(y, scores, sample_weight=w))
        assert samples["f1"][b] == pytest.approx(f1_score(y, verdicts, sample_weight=w))


def _intervals(n: int, seed: int = 0) -> tuple[dict, dict]:
    y, scores, verdicts, groups = _noisy_system(n, seed)
    proba, predicted = scores[:, None], verdicts[:, None]
    return metric_intervals(y, proba, predicted, groups)["unsafe"], binary_metrics(y, scores, verdicts)


def test_intervals_contain_the_point_estimate_and_narrow_as_rows_grow() -> None:
    small, small_points = _intervals(300)
    large, large_points = _intervals(3000)
    for name in BOOTSTRAP_METRICS:
        for ci, points in ((small, small_points), (large, large_points)):
            assert ci[name][0] <= points[name] <= ci[name][1], name
        assert large[name][1] - large[name][0] < 0.6 * (small[name][1] - small[name][0]), name


def test_copies_of_a_row_in_its_group_do_not_narrow_the_interval() -> None:
    """Five answers to one prompt are one draw, not five: the grouped interval does not shrink, the row-level
    interval of the same rows would."""
    y, scores, verdicts, groups = _noisy_system(300, 3, n_groups=300)
    groups = np.arange(300)
    once = metric_intervals(y, scores[:, None], verdicts[:, None], groups)["unsafe"]
    rep = np.repeat
    five = metric_intervals(rep(y, 5), rep(scores, 5)[:, None], rep(verdicts, 5)[:, None], rep(groups, 5))["unsafe"]
    rows = metric_intervals(rep(y, 5), rep(scores, 5)[:, None], rep(verdicts, 5)[:, None], np.arange(1500))["unsafe"]
    for name in ("f1", "fpr", "auroc"):
        assert five[name] == pytest.approx(once[name]), name
        assert rows[name][1] - rows[name][0] < 0.7 * (once[name][1] - once[name][0]), name


def test_one_row_per_group_agrees_with_scipy_bootstrap() -> None:
    """With every row its own group this is the ordinary bootstrap: accuracy's interval matches
    scipy.stats.bootstrap's percentile interval of the mean of the correct verdicts (different random draws)."""
    y, scores, verdicts, _ = _noisy_system(600, 4)
    ours = metric_intervals(y, scores[:, None], verdicts[:, None], np.arange(600), bootstrap=Bootstrap(4000, 0))
    correct = (verdicts == y).astype(float)
    theirs = bootstrap((correct,), np.mean, n_resamples=4000, method="percentile", random_state=0)
    low, high = ours["unsafe"]["accuracy"]
    assert low == pytest.approx(theirs.confidence_interval.low, abs=0.006)
    assert high == pytest.approx(theirs.confidence_interval.high, abs=0.006)


def test_seeded_and_reproducible() -> None:
    y, scores, verdicts, groups = _noisy_system(300, 5)
    args = (y, scores[:, None], verdicts[:, None], groups)
    assert metric_intervals(*args, bootstrap=Bootstrap(500, 1)) == metric_intervals(*args, bootstrap=Bootstrap(500, 1))
    assert metric_intervals(*args, bootstrap=Bootstrap(500, 1)) != metric_intervals(*args, bootstrap=Bootstrap(500, 2))


def test_undefined_resamples_are_left_out_and_a_never_defined_metric_has_no_interval() -> None:
    assert interval(np.array([np.nan, 0.2, 0.4, np.nan])) == pytest.approx([0.205, 0.395])
    assert interval(np.array([np.nan, np.nan])) is None
    y = np.zeros(20, dtype=bool)  # no positives: AUROC, recall (and, nothing flagged, precision and F1) undefined
    cis = metric_intervals(y, np.linspace(0, 1, 20)[:, None], np.zeros((20, 1), bool), np.arange(20))["unsafe"]
    assert cis["auroc"] is None and cis["fpr"] == [0.0, 0.0]
    assert cis["recall"] is None and cis["precision"] is None and cis["f1"] is None


def test_a_perfect_classifier_has_a_perfect_interval() -> None:
    """Resamples that draw no unsafe row were counted as F1, precision and recall 0: a classifier right on all 50
    rows (2 unsafe) got [0, 1]. Undefined there, they are left out, as AUPRC/AUROC's always were."""
    y = np.arange(50) < 2
    cis = metric_intervals(y, np.where(y, 0.9, 0.1)[:, None], y[:, None], np.arange(50))["unsafe"]
    for name in BOOTSTRAP_METRICS:
        assert cis[name] == ([0.0, 0.0] if name == "fpr" else [1.0, 1.0]), name


def _sklearn_point(name: str, y: np.ndarray, pred: np.ndarray) -> float:
    """scikit-learn's value with zero_division=np.nan (FPR: the recall of the negatives)."""
    from sklearn.metrics import accuracy_score, precision_score, recall_score

    score = {"f1": f1_score, "precision": precision_score, "recall": recall_score}.get(name)
    if name == "fpr":
        return recall_score(~y, pred, pos_label=True, zero_division=np.nan) if (~y).any() else np.nan
    return accuracy_score(y, pred) if name == "accuracy" else score(y, pred, zero_division=np.nan)


@pytest.mark.parametrize(("unsafe", "flagged"), [(0, 0), (0, 3), (20, 20), (20, 0), (5, 0)])
def test_undefined_point_metrics_are_none_as_scikit_learns_zero_division_nan(unsafe, flagged) -> None:
    """evaluate on an all-safe file printed recall 0.000 [0.000, 0.000], on an all-unsafe one fpr 0.000."""
    y, pred = np.arange(20) < unsafe, np.arange(20) >= 20 - flagged
    points = binary_metrics(y, np.where(pred, 0.9, 0.1), pred)
    through_bootstrap = point_metrics(np.arange(20), y, verdicts=pred)
    for name in ("f1", "precision", "recall", "fpr", "accuracy"):
        expected = _sklearn_point(name, y, pred)
        for ours in (points[name], through_bootstrap[name]):
            assert (ours is None) if np.isnan(expected) else ours == pytest.approx(expected), (name, ours, expected)


def test_macro_f1_averages_the_categories_whose_f1_is_defined() -> None:
    rng = np.random.default_rng(3)
    Y, P = rng.random((60, 4)) < 0.3, rng.random((60, 4)) < 0.3
    Y[:, 2] = P[:, 2] = False  # no support and never predicted: undefined, not 0
    metrics = category_metrics(Y, np.zeros((60, 4)), P, ["a", "b", "c", "d"])
    assert metrics["per_category"]["c"]["f1"] is None and metrics["per_category"]["c"]["precision"] is None
    expected = f1_score(Y, P, average="macro", zero_division=np.nan)
    assert metrics["macro_f1"] == pytest.approx(expected)
    ours = point_metrics(np.arange(60), Y[:, 0], verdicts=P[:, 0], categories_true=Y, categories_pred=P)
    assert ours["macro_f1"] == pytest.approx(expected)
    none = category_metrics(Y[:, 2:3], np.zeros((60, 1)), P[:, 2:3], ["c"])
    assert none["macro_f1"] is None and none["micro_f1"] is None


def test_paired_difference_uses_the_same_resamples() -> None:
    """A system against itself differs by exactly 0 in every resample; against a worse one, the interval of the
    difference is narrower than the two intervals side by side suggest (the pairing removes shared noise)."""
    y, scores, verdicts, groups = _noisy_system(800, 6)
    counts, group_of_row = resample_counts(groups, 1000, 0)
    a = metric_samples(counts, group_of_row, y, scores, verdicts)
    flipped = verdicts.copy()
    flipped[::10] = ~flipped[::10]
    b = metric_samples(counts, group_of_row, y, scores, flipped)
    same = paired_difference(a["f1"], a["f1"], 0.7, 0.7)
    assert same == {"difference": 0.0, "ci": [0.0, 0.0]}
    diff = paired_difference(a["f1"], b["f1"], 0.7, 0.6)
    width_a, width_b = np.diff(interval(a["f1"]))[0], np.diff(interval(b["f1"]))[0]
    assert np.diff(diff["ci"])[0] < np.hypot(width_a, width_b)
    assert diff["difference"] == pytest.approx(0.1)


def test_mcnemar_on_a_worked_example() -> None:
    """8 discordant pairs, 1 against 7: the exact two-sided p is 2 * P(X <= 1 | Bin(8, 1/2)) = 2 * 9 / 256."""
    a = np.array([True] * 1 + [False] * 7 + [True] * 30 + [False] * 5)
    b = np.array([False] * 1 + [True] * 7 + [True] * 30 + [False] * 5)
    result = mcnemar(a, b)
    assert (result["a_only"], result["b_only"]) == (1, 7)
    assert result["p_value"] == pytest.approx(18 / 256)
    assert mcnemar(b, a)["p_value"] == pytest.approx(18 / 256)
    assert mcnemar(a, a)["p_value"] == 1.0


def test_mcnemar_matches_scipy_on_a_textbook_table() -> None:
    """Agresti, Categorical Data Analysis, Table 10.1 (presidential approval, 1,600 people): discordant 150 / 86;
    the chi-square statistic is (150 - 86)^2 / 236 = 17.36 (p < 0.001); the exact test agrees."""
    a = np.r_[np.ones(794 + 150, bool), np.zeros(86 + 570, bool)]
    b = np.r_[np.ones(794, bool), np.zeros(150, bool), np.ones(86, bool), np.zeros(570, bool)]
    result = mcnemar(a, b)
    assert (result["a_only"], result["b_only"]) == (150, 86)
    assert result["p_value"] == pytest.approx(binomtest(86, 236, 0.5).pvalue)
    assert result["p_value"] < 1e-3


def test_with_intervals_adds_and_keeps() -> None:
    metrics = {"n": 3, "unsafe": {"f1": 0.5}, "categories": {"macro_f1": 0.2}}
    out = with_intervals(metrics, {"unsafe": {"f1": [0.4, 0.6]}, "categories": {"macro_f1": [0.1, 0.3]}},
                         {"resamples": 10})
    assert out["unsafe"] == {"f1": 0.5, "ci": {"f1": [0.4, 0.6]}} and out["bootstrap"] == {"resamples": 10}
    assert metrics == {"n": 3, "unsafe": {"f1": 0.5}, "categories": {"macro_f1": 0.2}}


def test_repeat_summary() -> None:
    runs = [{"unsafe": {m: v for m in BOOTSTRAP_METRICS}, "categories": {"macro_f1": v, "micro_f1": v}}
            for v in (0.5, 0.7)]
    summary = repeat_summary(runs, [0, 1])
    assert summary["seeds"] == [0, 1]
    assert summary["mean"]["unsafe"]["f1"] == pytest.approx(0.6)
    assert summary["std"]["categories"]["macro_f1"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
