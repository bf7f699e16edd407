"""The metrics published moderators report, in the one JSON shape benchmarks and checks read.

Shape (the category parts only when the data has the model's categories)::

    {"n": int,
     "unsafe": {"f1", "precision", "recall", "fpr", "accuracy", "auprc", "auroc"},
     "categories": {"macro_f1", "micro_f1",
                    "per_category": {NAME: {"f1", "precision", "recall", "auprc", "support"}}},
     "reported_categories": {"macro_f1", "micro_f1",
                             "per_category": {NAME: {"f1", "precision", "recall", "support"}}}}

Two measures of the categories, of two different decisions. ``categories``: each category head on its own, at its
own cut-off, on every row (what a model card records of its cross-validation: how good each head is).
``reported_categories``: the categories as a verdict reports them (``score``, ``moderate()``, the server), by
:meth:`lite_moderation.labels.LabelSet.decide`: only on flagged items, and a flagged item names at least one (the
nearest when none is at its cut-off); there is no AUPRC, as the scores are the same. The ``unsafe`` part is the same
decision in both: ``flagged`` is the flag head at its cut-off.

A metric with nothing to count is undefined, not 0, and reported as None (null in JSON, n/a in tables): recall
without a positive row, precision without a flagged one, FPR without a negative, F1 without either, AUPRC
without a positive, AUROC without both classes. That is scikit-learn's ``zero_division=np.nan``; a macro average
leaves the undefined out, as scikit-learn's does then. :func:`ratio` and :func:`mean_of_defined` are the rule,
for these points and for every bootstrap resample (:mod:`lite_moderation.stats`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .taxonomy import CATEGORIES

__all__ = ["binary_metrics", "category_metrics", "mean_of_defined", "moderation_metrics", "ratio", "reported"]


def ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    """numerator / denominator, NaN (undefined) where the denominator is 0: a count of nothing is no evidence, and
    0 would read as a failure (a perfect classifier's F1 interval was [0, 1] from the resamples without a
    positive). Elementwise over arrays of counts (the bootstrap's resamples)."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, dtype=np.float64),
                                                 np.asarray(denominator, dtype=np.float64))
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def mean_of_defined(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean of the defined (non-NaN) values along ``axis``, NaN where none is (a macro average)."""
    defined = ~np.isnan(values)
    return ratio(np.where(defined, values, 0.0).sum(axis=axis), defined.sum(axis=axis))


def reported(value: np.ndarray | float) -> float | None:
    """A metric as reported: a float, or None when undefined (NaN)."""
    return None if np.isnan(value) else float(value)


def _ratio(numerator: float, denominator: float) -> float | None:
    return reported(ratio(numerator, denominator))


def _counts(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(np.sum(y_true & y_pred))
    fp = int(np.sum(~y_true & y_pred))
    fn = int(np.sum(y_true & ~y_pred))
    tn = int(np.sum(~y_true & ~y_pred))
    return tp, fp, fn, tn


def _f1(tp: int, fp: int, fn: int) -> float | None:
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _auprc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision; None when there are no positives (undefined)."""
    return float(average_precision_score(y_true, scores)) if y_true.any() else None


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    """F1, precision, recall, false-positive rate, accuracy, AUPRC and AUROC of one binary head; None where
    undefined (see the module's rule)."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp, fp, fn, tn = _counts(y_true, y_pred)
    both_classes = y_true.any() and not y_true.all()
    return {
        "f1": _f1(tp, fp, fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "fpr": _ratio(fp, fp + tn),
        "accuracy": _ratio(tp + tn, len(y_true)),
        "auprc": _auprc(y_true, scores),
        "auroc": float(roc_auc_score(y_true, scores)) if both_classes else None,
    }


def category_metrics(Y_true: np.ndarray, scores: np.ndarray | None, Y_pred: np.ndarray,
                     names: Sequence[str] = CATEGORIES) -> dict:
    """Per-category F1/precision/recall/AUPRC/support plus macro and micro F1 over the categories ``names``
    (the columns of the arrays; default the BeaverTails 14); macro-F1 over the categories whose F1 is defined.
    Without ``scores`` (None), no AUPRC: the metrics of decisions alone."""
    Y_true = np.asarray(Y_true, dtype=bool)
    Y_pred = np.asarray(Y_pred, dtype=bool)
    per_category = {}
    totals = np.zeros(3, dtype=np.int64)
    for j, name in enumerate(names):
        tp, fp, fn, _ = _counts(Y_true[:, j], Y_pred[:, j])
        totals += (tp, fp, fn)
        per_category[name] = {
            "f1": _f1(tp, fp, fn),
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            **({} if scores is None else {"auprc": _auprc(Y_true[:, j], scores[:, j])}),
            "support": int(Y_true[:, j].sum()),
        }
    f1s = np.array([np.nan if m["f1"] is None else m["f1"] for m in per_category.values()])
    return {
        "macro_f1": reported(mean_of_defined(f1s)),
        "micro_f1": _f1(*totals),
        "per_category": per_category,
    }


def moderation_metrics(
    unsafe_true: np.ndarray,
    proba: np.ndarray,
    predicted: np.ndarray,
    categories_true: np.ndarray | None = None,
    category_names: Sequence[str] = CATEGORIES,
    reported_categories: np.ndarray | None = None,
) -> dict:
    """All metrics of a model's (n, k+1) scores and decisions against the truth.

    ``predicted`` holds each head's own decision (its score at its cut-off): the ``unsafe`` and ``categories``
    parts. ``categories_true`` is the (n, k) category truth (columns named ``category_names``), or None for data
    labelled only safe/unsafe. ``reported_categories``, the (n, k) categories a verdict reports
    (:meth:`~lite_moderation.labels.LabelSet.decide`), adds the ``reported_categories`` part (see the module).
    """
    proba = np.asarray(proba)
    predicted = np.asarray(predicted, dtype=bool)
    result: dict = {
        "n": len(unsafe_true),
        "unsafe": binary_metrics(unsafe_true, proba[:, -1], predicted[:, -1]),
    }
    if categories_true is not None:
        n_cat = len(category_names)
        if n_cat:
            result["categories"] = category_metrics(categories_true, proba[:, :n_cat], predicted[:, :n_cat],
                                                    category_names)
            if reported_categories is not None:
                result["reported_categories"] = category_metrics(categories_true, None, reported_categories,
                                                                 category_names)
    return result
