"""Uncertainty of the metrics: bootstrap confidence intervals over prompt groups, paired differences, McNemar.

Rows that share a prompt are not independent (a prompt's answers are judged alike), so the bootstrap resamples
whole prompt groups: each resample draws as many groups as there are, with replacement, and a group drawn k
times weighs k in every count. All resamples are drawn at once as a (resamples, groups) matrix of counts, and
every metric is computed from it with matrix products, so 1,000 resamples of 3,000 rows take well under a second.
The same matrix serves every system of a comparison: differences are paired (same resampled groups).

Why not ``scipy.stats.bootstrap``: it resamples observations, not groups (passing group ids as the
observations works, but then each system and metric is its own call), its BCa interval returns NaN on a
degenerate distribution (an FPR of 0 in every resample), and it has no notion of a metric undefined in one
resample (no positives drawn). A metric undefined in a resample is NaN there, by the rule of the point values
(:func:`lite_moderation.metrics.ratio`: never 0), and the percentile interval is that of the resamples where it
is defined (None when it is defined in none).
The paired test on verdicts is McNemar's exact (binomial) test, from ``scipy.stats.binomtest``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import mean_of_defined, ratio, reported

__all__ = ["BOOTSTRAP_METRICS", "Bootstrap", "interval", "mcnemar", "metric_intervals", "metric_samples",
           "paired_difference", "point_metrics", "repeat_summary", "resample_counts", "with_intervals"]

#: The unsafe-head metrics that get intervals (threshold metrics need verdicts, rank metrics need scores).
THRESHOLD_METRICS = ("f1", "precision", "recall", "fpr", "accuracy")
RANK_METRICS = ("auprc", "auroc")
BOOTSTRAP_METRICS = (*THRESHOLD_METRICS, *RANK_METRICS)
#: Cells of the row-weight matrix computed at once by the rank metrics (memory bound, ~32 MB of float64).
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class Bootstrap:
    """Settings of a group bootstrap: resamples, seed, confidence level."""

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be at least 1, got {self.n_resamples}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be between 0 and 1, got {self.level}")

    def describe(self, n_groups: int, grouped_by: str = "prompt") -> dict:
        """The card's account of the intervals; ``grouped_by``: what a group is (a prompt, or a group column)."""
        groups = "prompt groups" if grouped_by == "prompt" else f"groups of the {grouped_by}"
        return {"method": f"percentile bootstrap over {groups}", "resamples": self.n_resamples,
                "seed": self.seed, "level": self.level, "groups": int(n_groups)}


DEFAULT_BOOTSTRAP = Bootstrap()


def resample_counts(groups: np.ndarray, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts, group_of_row): counts[b, g] = how often resample b drew group g; group_of_row indexes columns.

    Drawing G groups with replacement is a multinomial draw of G over G equal cells, done for all resamples
    at once.
    """
    _, group_of_row = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(group_of_row.max()) + 1 if len(group_of_row) else 0
    if n_groups == 0:
        raise ValueError("cannot bootstrap zero rows")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_resamples)
    return counts.astype(np.float64), group_of_row.ravel()


def _group_sums(values: np.ndarray, group_of_row: np.ndarray, n_groups: int) -> np.ndarray:
    """(G, k) sums of the rows' (n, k) values by group."""
    sums = np.zeros((n_groups, values.shape[1]))
    np.add.at(sums, group_of_row, values)
    return sums


def _threshold_samples(counts: np.ndarray, group_of_row: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict:
    cells = np.stack([y & pred, ~y & pred, y & ~pred, ~y & ~pred], axis=1).astype(np.float64)
    tp, fp, fn, tn = (counts @ _group_sums(cells, group_of_row, counts.shape[1])).T
    return {"f1": ratio(2 * tp, 2 * tp + fp + fn), "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
            "fpr": ratio(fp, fp + tn), "accuracy": ratio(tp + tn, tp + fp + fn + tn)}


def _rank_samples(counts: np.ndarray, group_of_row: np.ndarray, y: np.ndarray, scores: np.ndarray) -> dict:
    """Weighted average precision (sklearn's definition) and AUROC (ties count half), NaN when undefined."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_y, sorted_group = scores[order], y[order], group_of_row[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # one level per distinct score
    auprc, auroc = np.empty(len(counts)), np.empty(len(counts))
    step = max(1, _CHUNK_CELLS // max(1, len(scores)))
    for lo in range(0, len(counts), step):
        weights = counts[lo:lo + step][:, sorted_group]
        pos = np.add.reduceat(weights * sorted_y, starts, axis=1)
        neg = np.add.reduceat(weights * ~sorted_y, starts, axis=1)
        tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        n_pos, n_neg = tp[:, -1], fp[:, -1]
        precision = np.nan_to_num(ratio(tp, tp + fp))  # undefined only at levels no drawn row reaches: pos 0 there
        auprc[lo:lo + step] = ratio((pos * precision).sum(axis=1), n_pos)
        below = n_neg[:, None] - fp  # negatives scored strictly lower than this level
        area = (pos * (below + 0.5 * neg)).sum(axis=1)
        auroc[lo:lo + step] = ratio(area, n_pos * n_neg)
    return {"auprc": auprc, "auroc": auroc}


def _macro_f1_samples(counts: np.ndarray, group_of_row: np.ndarray, Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    n_cat = Y.shape[1]
    cells = np.concatenate([Y & P, ~Y & P, Y & ~P], axis=1).astype(np.float64)
    sums = counts @ _group_sums(cells, group_of_row, counts.shape[1])
    tp, fp, fn = sums[:, :n_cat], sums[:, n_cat:2 * n_cat], sums[:, 2 * n_cat:]
    return mean_of_defined(ratio(2 * tp, 2 * tp + fp + fn), axis=1)


def metric_samples(counts: np.ndarray, group_of_row: np.ndarray, unsafe_true: np.ndarray,
                   scores: np.ndarray | None = None, verdicts: np.ndarray | None = None,
                   categories_true: np.ndarray | None = None, categories_pred: np.ndarray | None = None) -> dict:
    """Each metric in each resample: {name: (resamples,) array}, ``macro_f1`` when categories are given.

    Threshold metrics need ``verdicts``, AUPRC/AUROC need ``scores``; a row of all-ones ``counts`` gives the
    point estimates of :mod:`lite_moderation.metrics`.
    """
    y = np.asarray(unsafe_true, dtype=bool)
    out: dict[str, np.ndarray] = {}
    if verdicts is not None:
        out.update(_threshold_samples(counts, group_of_row, y, np.asarray(verdicts, dtype=bool)))
    if scores is not None:
        out.update(_rank_samples(counts, group_of_row, y, np.asarray(scores, dtype=np.float64)))
    if categories_true is not None and categories_pred is not None:
        out["macro_f1"] = _macro_f1_samples(counts, group_of_row, np.asarray(categories_true, dtype=bool),
                                            np.asarray(categories_pred, dtype=bool))
    return out


def interval(samples: np.ndarray, level: float = 0.95) -> list[float] | None:
    """The percentile interval of the defined (non-NaN) resamples, or None when none is defined."""
    defined = samples[~np.isnan(samples)]
    if not len(defined):
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return [float(low), float(high)]


def metric_intervals(unsafe_true: np.ndarray, proba: np.ndarray, predicted: np.ndarray, groups: np.ndarray,
                     categories_true: np.ndarray | None = None, bootstrap: Bootstrap | None = None,
                     reported_categories: np.ndarray | None = None) -> dict:
    """95% (``bootstrap.level``) intervals of a model's metrics, in the shape of ``moderation_metrics``:
    ``{"unsafe": {metric: [low, high]}, "categories": {"macro_f1": [low, high]}}``, and
    ``"reported_categories": {"macro_f1": [low, high]}`` given the (n, k) categories as reported.

    ``proba``/``predicted`` are the (n, k+1) scores and each head's decisions; ``groups`` the rows' prompt groups.
    """
    bootstrap = bootstrap or DEFAULT_BOOTSTRAP
    proba, predicted = np.asarray(proba), np.asarray(predicted, dtype=bool)
    counts, group_of_row = resample_counts(groups, bootstrap.n_resamples, bootstrap.seed)
    has_categories = categories_true is not None
    samples = metric_samples(counts, group_of_row, unsafe_true, proba[:, -1], predicted[:, -1],
                             categories_true, predicted[:, :-1] if has_categories else None)
    result = {"unsafe": {name: interval(samples[name], bootstrap.level) for name in BOOTSTRAP_METRICS}}
    if has_categories:
        result["categories"] = {"macro_f1": interval(samples["macro_f1"], bootstrap.level)}
    if has_categories and reported_categories is not None:  # the same resamples
        reported_samples = _macro_f1_samples(counts, group_of_row, np.asarray(categories_true, dtype=bool),
                                             np.asarray(reported_categories, dtype=bool))
        result["reported_categories"] = {"macro_f1": interval(reported_samples, bootstrap.level)}
    return result


def with_intervals(metrics: dict, intervals: dict, info: dict) -> dict:
    """``metrics`` with a ``"ci"`` object beside the metrics of each part and the method under ``"bootstrap"``
    (every existing key kept as it was)."""
    out = {**metrics, "bootstrap": info}
    for part, cis in intervals.items():
        if part in out:
            out[part] = {**out[part], "ci": cis}
    return out


def paired_difference(samples_a: np.ndarray, samples_b: np.ndarray, point_a: float | None, point_b: float | None,
                      level: float = 0.95) -> dict:
    """A - B with the interval of the per-resample differences (both systems on the same resampled groups)."""
    diff = None if point_a is None or point_b is None else float(point_a - point_b)
    return {"difference": diff, "ci": interval(samples_a - samples_b, level)}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact test of two systems' verdicts on the same rows (two-sided binomial test of the
    discordant pairs, exact for every count: the chi-square approximation is not used).

    ``a_only``: rows only A got right; ``b_only``: rows only B got right.
    """
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = a_only + b_only
    p_value = 1.0 if discordant == 0 else float(binomtest(a_only, discordant, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p_value, "test": "McNemar exact (binomial), two-sided"}


def point_metrics(group_of_row: np.ndarray, unsafe_true: np.ndarray, **arrays: np.ndarray | None) -> dict:
    """The metrics on the rows as they are (every group once), through the same code as the resamples."""
    ones = np.ones((1, int(group_of_row.max()) + 1))
    return {name: reported(v[0]) for name, v in metric_samples(ones, group_of_row, unsafe_true, **arrays).items()}


def repeat_summary(runs: Sequence[dict], seeds: Sequence[int]) -> dict:
    """Mean and standard deviation (ddof 1; 0 for one run) of each metric over runs of ``moderation_metrics``
    (cross-validations with different fold seeds), in its shape: ``{"seeds", "mean": {...}, "std": {...}}``."""
    parts = {"unsafe": BOOTSTRAP_METRICS, "categories": ("macro_f1", "micro_f1"),
             "reported_categories": ("macro_f1", "micro_f1")}
    mean: dict = {}
    std: dict = {}
    for part, names in parts.items():
        if part not in runs[0]:
            continue
        values = {n: [run[part][n] for run in runs] for n in names}
        defined = {n: np.array(v, dtype=np.float64) for n, v in values.items() if None not in v}
        mean[part] = {n: float(v.mean()) for n, v in defined.items()}
        std[part] = {n: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for n, v in defined.items()}
    return {"seeds": [int(s) for s in seeds], "mean": mean, "std": std}
