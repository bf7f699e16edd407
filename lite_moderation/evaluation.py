"""Honest evaluation: metrics on held-out data, grouped cross-validation, and the training-leak check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GroupKFold

from .data import Dataset
from .metrics import moderation_metrics
from .model import ModerationClassifier, hash_prompts, prompt_groups
from .progress import Progress
from .thresholds import resolve_threshold

__all__ = ["CVResult", "count_seen_prompts", "cross_validate", "evaluate", "grouped_folds"]


def count_seen_prompts(model: ModerationClassifier, prompts: Sequence[str]) -> int:
    """How many of ``prompts`` (distinct, normalised) the model saw in training."""
    distinct = np.unique(hash_prompts(prompts))
    return int(np.isin(distinct, model.train_prompt_hashes_).sum())


def evaluate(model: ModerationClassifier, dataset: Dataset, threshold: float | str | None = None) -> dict:
    """Metrics of ``model`` on labelled ``dataset`` (categories included when the data has them).

    ``threshold`` overrides the unsafe head's tuned threshold (a probability or an operating point's name).
    """
    proba = model.predict_proba(dataset.pairs)
    return moderation_metrics(_unsafe_truth(dataset), proba, proba >= _cut_offs(model, threshold), dataset.categories)


def _cut_offs(model: ModerationClassifier, threshold: float | str | None) -> np.ndarray:
    """The model's thresholds, the unsafe one overridden by ``threshold`` when given."""
    cuts = np.array(model.thresholds_, dtype=np.float64)
    cut = resolve_threshold(threshold, model)
    if cut is not None:
        cuts[-1] = cut
    return cuts


def _unsafe_truth(dataset: Dataset) -> np.ndarray:
    if dataset.unsafe is not None:
        return dataset.unsafe
    if dataset.categories is not None:
        return dataset.categories.any(axis=1)
    raise ValueError(f"{dataset.path}: the data has no labels (is_safe or category) to evaluate against")


def grouped_folds(pairs: Sequence, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test indices of k folds with every prompt's rows in one fold, shuffled by ``seed``."""
    groups = prompt_groups(pairs)
    n_groups = len(np.unique(groups))
    if not 2 <= n_folds <= n_groups:
        raise ValueError(f"--folds must be between 2 and the number of distinct prompts ({n_groups}), got {n_folds}")
    splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(pairs)), groups=groups))


@dataclass
class CVResult:
    """Out-of-fold predictions of a cross-validation, and their metrics."""

    metrics: dict
    proba: np.ndarray      # (n, 15) out-of-fold probabilities
    predicted: np.ndarray  # (n, 15) decisions, each row at its own fold model's thresholds
    fold_of_row: np.ndarray
    operating_points: list[dict]  # per fold, its model's named unsafe cut-offs ("default", "strict")


def cross_validate(dataset: Dataset, n_folds: int = 5, seed: int = 0,
                   estimator: ModerationClassifier | None = None, progress: bool = False,
                   threshold: float | str | None = None) -> CVResult:
    """k-fold cross-validation grouped by prompt; every row is predicted by a model that never saw it.

    Each fold's model tunes its thresholds inside its own training part, so the test fold stays unseen.
    ``threshold`` overrides the unsafe cut-off: a probability, or an operating point ("strict") that each
    fold's model learned from its own training part.
    """
    if estimator is None:
        from .training import default_estimator  # training builds on this module

        estimator = default_estimator()
    Y = dataset.y if dataset.categories is not None else None
    unsafe = _unsafe_truth(dataset)
    target = Y if Y is not None else np.column_stack([np.zeros((len(unsafe), 14), bool), unsafe])
    proba = np.zeros(target.shape)
    predicted = np.zeros(target.shape, dtype=bool)
    fold_of_row = np.zeros(len(unsafe), dtype=np.int64)
    operating_points = []
    pairs = dataset.pairs
    with Progress("cross-validation", total=n_folds, enabled=progress, unit="folds") as bar:
        for k, (train, test) in enumerate(grouped_folds(pairs, n_folds, seed)):
            model = clone(estimator).fit([pairs[i] for i in train], target[train])
            proba[test] = model.predict_proba([pairs[i] for i in test])
            predicted[test] = proba[test] >= _cut_offs(model, threshold)
            fold_of_row[test] = k
            operating_points.append(dict(model.operating_points_))
            bar.update()
    metrics = moderation_metrics(unsafe, proba, predicted, dataset.categories)
    return CVResult(metrics, proba, predicted, fold_of_row, operating_points)
