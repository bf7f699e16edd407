"""Per-label decision thresholds chosen to maximise F1 on out-of-fold scores.

Why not 0.5: rare categories (a few dozen positives in thousands) have calibrated probabilities that
rarely cross 0.5, so a fixed cut-off flags almost nothing. Thresholds are tuned on out-of-fold
predictions of the training data only, never on the data being evaluated.
"""

from __future__ import annotations

import numbers
import reprlib
from collections.abc import Sequence

import numpy as np

__all__ = [
    "CUT_OFF_SHAPES",
    "DEFAULT_THRESHOLD",
    "OPERATING_POINTS",
    "best_f1_threshold",
    "best_fbeta_threshold",
    "checked_threshold",
    "cut_offs",
    "message_cut_offs",
    "portable",
    "prevalence_threshold",
    "resolve_threshold",
    "set_message_cut_offs",
    "shape_thresholds",
    "shrunk_threshold",
    "tune_thresholds",
]

DEFAULT_THRESHOLD = 0.5

#: Names of the unsafe head's operating points, in the order models store them: the F1-best cut-off, then
#: the precision-favouring F-beta one.
OPERATING_POINTS = ("default", "strict")


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """The score cut-off with the highest F1 (predict positive when score >= threshold).

    Ties go to the highest threshold (fewest flags). The cut-off sits halfway between the chosen score
    and the next lower one so that it generalises rather than sitting exactly on a training score. With
    no positives, F1 is undefined and the default 0.5 is returned. ``sample_weight``: each row counts this
    much (the weights it was trained with: a source weighed down counts less here too); default 1.
    """
    return best_fbeta_threshold(y_true, scores, beta=1.0, sample_weight=sample_weight)


def best_fbeta_threshold(y_true: np.ndarray, scores: np.ndarray, beta: float,
                         sample_weight: np.ndarray | None = None) -> float:
    """The cut-off with the highest F-beta (beta < 1 weighs precision more), chosen as :func:`best_f1_threshold`."""
    y_true = np.asarray(y_true, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(y_true.sum())
    if n_pos == 0 or n_pos == len(y_true):
        return DEFAULT_THRESHOLD
    weight = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    true_pos = np.cumsum(np.where(y_true, weight, 0.0)[order])
    # Only the last index of each run of equal scores is a valid cut.
    distinct = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    flagged = np.cumsum(weight[order])
    n_pos = true_pos[-1]
    b2 = beta * beta
    fbeta = np.where(distinct, (1 + b2) * true_pos / (flagged + b2 * n_pos), -1.0)
    best = int(np.argmax(fbeta))
    lower = sorted_scores[best + 1] if best + 1 < len(scores) else 0.0
    return portable((sorted_scores[best] + lower) / 2)


def portable(cut_off: float) -> float:
    """A tuned cut-off rounded to 10 significant digits, so a model rebuilds byte for byte on any CPU.

    Why: the scores cut-offs are tuned on pass through numpy's tanh and exp, whose SIMD code (AVX-512, AVX2,
    none) differs in the last bit; a cut-off halfway between two scores would move with it. Rounded, it moves
    only when a score sits within 1e-10 of a rounding boundary, and decisions change by less than that.
    """
    return float(f"{float(cut_off):.10g}")


def prevalence_threshold(y_true: np.ndarray, scores: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """The cut-off that flags as many rows (as much weight) as there are positives (stable with few positives)."""
    y_true = np.asarray(y_true, dtype=bool)
    if not y_true.any():
        return DEFAULT_THRESHOLD
    weight = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    flagged = np.cumsum(weight[order])
    last = min(int(np.searchsorted(flagged, weight[y_true].sum() - 1e-9)), len(order) - 1)
    return float(np.asarray(scores, dtype=np.float64)[order][last])


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


def shrunk_threshold(y_true: np.ndarray, scores: np.ndarray, shrinkage: float,
                     sample_weight: np.ndarray | None = None) -> float:
    """The F1-best cut-off pulled, in logit space, toward the prevalence cut-off with weight k / (n_pos + k).

    Why: with a few dozen positives the F1-best cut-off is noisy (one lucky example moves it a lot); a label
    with many positives keeps nearly its F1-best cut-off. Measured in benchmarks/results/accuracy.md.
    """
    y_true = np.asarray(y_true, dtype=bool)
    f1_cut = best_f1_threshold(y_true, scores, sample_weight)
    n_pos = int(y_true.sum())
    if shrinkage <= 0 or n_pos == 0 or n_pos == len(y_true):
        return f1_cut
    weight = n_pos / (n_pos + shrinkage)
    mixed = weight * _logit(f1_cut) + (1 - weight) * _logit(prevalence_threshold(y_true, scores, sample_weight))
    return portable(1 / (1 + np.exp(-mixed)))


def tune_thresholds(Y_true: np.ndarray, scores: np.ndarray, shrinkage: float = 0.0,
                    shrink_columns: Sequence[int] = ()) -> np.ndarray:
    """One threshold per column: F1-best, or shrunk toward prevalence (``shrinkage``) in ``shrink_columns``."""
    Y_true = np.asarray(Y_true)
    scores = np.asarray(scores)
    if Y_true.shape != scores.shape:
        raise ValueError(f"labels have shape {Y_true.shape} but scores have shape {scores.shape}")
    shrunk = set(shrink_columns)
    return np.array([
        shrunk_threshold(Y_true[:, j], scores[:, j], shrinkage if j in shrunk else 0.0)
        for j in range(Y_true.shape[1])
    ])


#: The input shapes a model keeps cut-offs for: a (prompt, response) pair, and a single message (a prompt alone
#: or a text alone, one shape: see ``texts.single_message``). Tuned on each shape's own held-out rows.
CUT_OFF_SHAPES = ("pair", "message")


def shape_thresholds(model: object, shape: str) -> tuple[np.ndarray, dict[str, float]]:
    """The (15,) tuned thresholds and named unsafe operating points of one shape. A model without cut-offs of
    its own for messages (trained on pairs only, or by an older version) uses its pair cut-offs for both."""
    if shape not in CUT_OFF_SHAPES:
        raise ValueError(f"unknown shape {shape!r}: expected one of {CUT_OFF_SHAPES}")
    own = message_cut_offs(model) if shape == "message" else None
    if own is None:
        return np.asarray(model.thresholds_, dtype=np.float64), dict(getattr(model, "operating_points_", None) or {})
    return own


def resolve_threshold(threshold: float | str | None, model: object, shape: str = "pair") -> float | None:
    """An unsafe cut-off given as a probability or as the name of one of the model's operating points of
    ``shape`` (a named point means each shape's own cut-off).

    A number must be a probability in [0, 1] (not NaN, not a bool): the same rule as the CLI's --threshold.
    """
    if threshold is None:
        return None
    if not isinstance(threshold, str):
        return _probability(threshold)
    points = shape_thresholds(model, shape)[1]
    if threshold not in points:
        known = ", ".join(sorted(points)) or "none (trained by an older version: retrain it)"
        raise ValueError(f"unknown operating point {reprlib.repr(threshold)}: this model has {known}")
    return points[threshold]


def message_cut_offs(model: object) -> tuple[np.ndarray, dict[str, float]] | None:
    """A model's own cut-offs for single messages (thresholds, operating points), None when it has none."""
    thresholds = getattr(model, "message_thresholds_", None)
    if thresholds is None:
        return None
    return np.asarray(thresholds, dtype=np.float64), dict(getattr(model, "message_operating_points_", None) or {})


def set_message_cut_offs(target: object, cut: tuple[np.ndarray, dict[str, float]] | None) -> None:
    """Give a scorer (model, fast scorer, explainer) the message cut-offs :func:`message_cut_offs` read."""
    target.message_thresholds_ = None if cut is None else np.asarray(cut[0], dtype=np.float64)
    target.message_operating_points_ = None if cut is None else dict(cut[1])


def checked_threshold(threshold: float | str | None, model: object) -> float | str | None:
    """``threshold`` as given (a probability, or an operating point's name that each shape resolves to its own
    cut-off), after checking it for every shape: a ValueError names what is wrong."""
    for shape in CUT_OFF_SHAPES:
        resolve_threshold(threshold, model, shape)
    return threshold if isinstance(threshold, str) or threshold is None else float(threshold)


def cut_offs(model: object, messages: np.ndarray, threshold: float | str | None = None) -> np.ndarray:
    """(n, 15) cut-offs of n rows: each row's shape's thresholds (``messages``: which rows are single messages,
    see ``texts.message_rows``), the unsafe one replaced by ``threshold`` (a probability, or a named operating
    point of each shape). What every decision (``moderate``, files, the server, explain) is made with."""
    rows = []
    for shape in CUT_OFF_SHAPES:
        thresholds = shape_thresholds(model, shape)[0].copy()
        unsafe = resolve_threshold(threshold, model, shape)
        if unsafe is not None:
            thresholds[-1] = unsafe
        rows.append(thresholds)
    pair, message = rows
    return np.where(np.asarray(messages, dtype=bool)[:, None], message, pair)


def _probability(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError("threshold must be a probability between 0 and 1 or an operating point name, got "
                         f"{reprlib.repr(value)}")  # clipped: a value sent to the server may be a megabyte
    return float(value)
