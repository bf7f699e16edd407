"""Recipes measured by the benchmarks: the library's default, and candidate changes prototyped outside the library.

A candidate is a ModerationClassifier subclass that overrides only the hooks the change touches, so the
library's own ``cross_validate`` / folds / metrics measure it exactly as they measure the default.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import GroupKFold

from lite_moderation import ModerationClassifier, default_estimator
from lite_moderation.thresholds import best_f1_threshold


def nb_ratio(features: sp.csr_matrix, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """|log-count ratio| of each feature for one label (NB-SVM, Wang & Manning 2012), from binarised counts."""
    present = (features > 0).astype(np.float64)
    p = alpha + np.asarray(present[y].sum(axis=0)).ravel()
    q = alpha + np.asarray(present[~y].sum(axis=0)).ravel()
    return np.abs(np.log((p / p.sum()) / (q / q.sum())))


def shrunk_thresholds(Y: np.ndarray, oof: np.ndarray, k: float = 50.0) -> np.ndarray:
    """Per category, the F1-best cut-off pulled in logit space toward the cut-off that flags as many rows as
    there are positives, with weight n_pos / (n_pos + k): rare labels lean on the stable one. The last
    column (the unsafe head, over a thousand positives) keeps its plain F1-best cut-off."""
    out = np.zeros(Y.shape[1])
    out[-1] = best_f1_threshold(Y[:, -1].astype(bool), oof[:, -1])
    for j in range(Y.shape[1] - 1):
        y, s = Y[:, j].astype(bool), oof[:, j]
        n_pos = int(y.sum())
        f1_cut = best_f1_threshold(y, s)
        if n_pos == 0 or n_pos == len(y):
            out[j] = f1_cut
            continue
        prevalence_cut = np.sort(s)[::-1][n_pos - 1]
        w = n_pos / (n_pos + k)
        out[j] = _sigmoid(w * _logit(f1_cut) + (1 - w) * _logit(prevalence_cut))
    return out


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


def _sigmoid(z: float) -> float:
    return float(0.5 * (1.0 + np.tanh(0.5 * z)))


class CandidateClassifier(ModerationClassifier):
    """ModerationClassifier with optional NB log-count-ratio scaling per label and shrunk thresholds.

    ``nb``: each label's LR is fitted on features scaled by that label's |log-count ratio|; the scaling is
    folded back into the weights (w * r), so the saved model is still one (n_features, 15) matrix.
    ``shrink_k``: 0 keeps plain F1-best thresholds; > 0 uses :func:`shrunk_thresholds`.
    """

    def __init__(self, vectorizer=None, C: float = 4.0, class_weight=None, threshold_folds: int = 5,
                 max_iter: int = 1000, random_state: int = 0, verbose: int = 0, nb: bool = False,
                 nb_alpha: float = 1.0, shrink_k: float = 0.0) -> None:
        super().__init__(vectorizer=vectorizer, C=C, class_weight=class_weight, threshold_folds=threshold_folds,
                         max_iter=max_iter, random_state=random_state, verbose=verbose)
        self.nb = nb
        self.nb_alpha = nb_alpha
        self.shrink_k = shrink_k

    def _fit_label(self, features: sp.csr_matrix, y: np.ndarray) -> tuple[np.ndarray, float]:
        if not self.nb or y.all() or not y.any():
            return super()._fit_label(features, y)
        r = nb_ratio(features, y.astype(bool), self.nb_alpha)
        model = self._new_logistic_regression().fit(features @ sp.diags(r), y)
        return model.coef_[0] * r, float(model.intercept_[0])

    def _tuned_thresholds(self, features, Y, groups, n_folds, progress) -> np.ndarray:
        """The library's out-of-fold scores (same folds), with the shrunk cut-off rule when shrink_k > 0."""
        if not self.shrink_k or n_folds < 2:
            return super()._tuned_thresholds(features, Y, groups, n_folds, progress)
        oof = np.zeros(Y.shape)
        splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=self.random_state)
        for train, test in splitter.split(features, groups=groups):
            coef, intercept = self._fit_labels(features[train], Y[train], progress)
            oof[test] = _sigmoid_array(features[test] @ coef + intercept)
        return shrunk_thresholds(Y, oof, self.shrink_k)


def _sigmoid_array(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z)))

def build(name: str) -> ModerationClassifier:
    """The estimator of a named recipe."""
    if name == "default":
        return default_estimator()
    if name in RECIPES:
        vec, params = RECIPES[name]
        return CandidateClassifier(vectorizer=default_estimator(**vec).vectorizer, **params)
    raise KeyError(f"unknown recipe {name!r}: expected 'default' or one of {sorted(RECIPES)}")


#: name -> (QAVectorizer params, CandidateClassifier params); filled from the experiment log's winners.
RECIPES: dict[str, tuple[dict, dict]] = {
    "shrunk": ({}, {"shrink_k": 50.0}),
    "nb-shrunk": ({}, {"nb": True, "shrink_k": 50.0}),
}
