"""Recipes measured by the benchmarks: the library's default, and candidate changes prototyped outside the library.

A candidate is a ModerationClassifier subclass that overrides only the hooks the change touches, so the
library's own ``cross_validate`` / folds / metrics measure it exactly as they measure the default.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lite_moderation import ModerationClassifier, default_estimator


def nb_ratio(features: sp.csr_matrix, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """|log-count ratio| of each feature for one label (NB-SVM, Wang & Manning 2012), from binarised counts."""
    present = (features > 0).astype(np.float64)
    p = alpha + np.asarray(present[y].sum(axis=0)).ravel()
    q = alpha + np.asarray(present[~y].sum(axis=0)).ravel()
    return np.abs(np.log((p / p.sum()) / (q / q.sum())))


class CandidateClassifier(ModerationClassifier):
    """ModerationClassifier with optional NB log-count-ratio scaling per label and shrunk thresholds.

    ``nb``: each label's LR is fitted on features scaled by that label's |log-count ratio|; the scaling is
    folded back into the weights (w * r), so the saved model is still one (n_features, 15) matrix.
    ``shrink_k``: the library's ``threshold_shrinkage`` (the shrunk cut-off rule this candidate prototyped,
    since adopted); 0 keeps plain F1-best thresholds.
    """

    def __init__(self, vectorizer=None, C: float = 4.0, class_weight=None, threshold_folds: int = 5,
                 max_iter: int = 1000, random_state: int = 0, verbose: int = 0, nb: bool = False,
                 nb_alpha: float = 1.0, shrink_k: float = 0.0) -> None:
        super().__init__(vectorizer=vectorizer, C=C, class_weight=class_weight, threshold_folds=threshold_folds,
                         threshold_shrinkage=shrink_k, max_iter=max_iter, random_state=random_state, verbose=verbose)
        self.nb = nb
        self.nb_alpha = nb_alpha
        self.shrink_k = shrink_k

    def _fit_label(self, features: sp.csr_matrix, y: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
        if not self.nb or y.all() or not y.any():
            return super()._fit_label(features, y, weights)
        r = nb_ratio(features, y.astype(bool), self.nb_alpha)
        model = self._new_logistic_regression().fit(features @ sp.diags(r), y, sample_weight=weights)
        return model.coef_[0] * r, float(model.intercept_[0])


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
