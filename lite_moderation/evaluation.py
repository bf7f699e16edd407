"""Honest evaluation: metrics on held-out data, grouped cross-validation, and the training-leak check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GroupKFold

from .data import Dataset
from .labels import LabelSet, label_set_of
from .metrics import moderation_metrics
from .model import ModerationClassifier, hash_prompts, prompt_groups, rows_outside_groups, with_labels
from .progress import Progress
from .sources import TrainingSet
from .texts import message_mask
from .thresholds import cut_offs

__all__ = ["CVResult", "count_seen_prompts", "cross_validate", "cross_validate_repeats", "evaluate", "evaluate_rows",
           "grouped_folds"]


def count_seen_prompts(model: ModerationClassifier, prompts: Sequence[str]) -> int:
    """How many of ``prompts`` (distinct, normalised) the model saw in training."""
    distinct = np.unique(hash_prompts(prompts))
    return int(np.isin(distinct, model.train_prompt_hashes_).sum())


def evaluate(model: ModerationClassifier, dataset: Dataset, threshold: float | str | None = None) -> dict:
    """Metrics of ``model`` on labelled ``dataset`` (categories included when the data has them: each head at its
    own cut-off, and as reported, see :mod:`lite_moderation.metrics`).

    ``threshold`` overrides the unsafe head's tuned threshold (a probability or an operating point's name).
    """
    return evaluate_rows(model, dataset, threshold)[0]


def evaluate_rows(model: ModerationClassifier, dataset: Dataset, threshold: float | str | None = None
                  ) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`evaluate`'s metrics, with the (n, k+1) probabilities, each head's decisions (its score at its
    cut-off) and the rows' (n, k+1) cut-offs they were computed from. The verdicts users get are
    ``label_set_of(model).decide(proba, cut_offs)``, as ``score`` and ``moderate()`` decide them."""
    labels = label_set_of(model)
    categories = _comparable_categories(labels, dataset)
    proba = model._label_proba(dataset.pairs)
    cuts = _row_cut_offs(model, dataset.pairs, threshold)
    predicted = proba >= cuts
    metrics = moderation_metrics(dataset.unsafe_labels(), proba, predicted, categories, labels.categories,
                                 reported_categories=labels.decide(proba, cuts)[1])
    return metrics, proba, predicted, cuts


def _comparable_categories(labels: LabelSet, dataset: Dataset) -> np.ndarray | None:
    """The data's category truth when it names the model's categories; None when it has none (the flag head is
    measured alone); a ValueError when it names others (comparing them column by column would mean nothing)."""
    if dataset.categories is None or not dataset.labels.categories:
        return None
    if dataset.labels.categories != labels.categories:
        raise ValueError(f"{dataset.path or 'the data'}: its categories ({list(dataset.labels.categories)[:5]} ...) "
                         f"are not the model's ({list(labels.categories)[:5]} ...); evaluate it on is_safe alone, or "
                         "map its label columns to the model's")
    return dataset.categories


def _row_cut_offs(model: ModerationClassifier, items: Sequence, threshold: float | str | None) -> np.ndarray:
    """Each item's cut-offs: its shape's thresholds, the unsafe one overridden by ``threshold`` when given."""
    return cut_offs(model, message_mask(items), threshold)


def grouped_folds(pairs: Sequence, n_folds: int, seed: int,
                  groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test indices of k folds with every prompt's rows (or every group's, given ``groups``) in one fold,
    shuffled by ``seed``."""
    groups = prompt_groups(pairs) if groups is None else groups
    n_groups = len(np.unique(groups))
    if not 2 <= n_folds <= n_groups:
        raise ValueError(f"n_folds must be between 2 and the number of distinct prompts or groups ({n_groups}), got "
                         f"{n_folds}")
    splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


@dataclass
class CVResult:
    """Out-of-fold predictions of a cross-validation (primary rows only), and their metrics."""

    metrics: dict
    proba: np.ndarray      # (n, k+1) out-of-fold probabilities
    predicted: np.ndarray  # (n, k+1) each head's decision, each row at its own fold model's thresholds
    fold_of_row: np.ndarray
    operating_points: list[dict]  # per fold, its model's named unsafe cut-offs ("default", "strict")
    #: (n, k+1) each row's cut-offs (its fold model's, ``threshold`` applied): the verdicts users would get are
    #: ``labels.decide(proba, cut_offs)``.
    cut_offs: np.ndarray


def cross_validate(data: Dataset | TrainingSet, n_folds: int = 5, seed: int = 0,
                   estimator: ModerationClassifier | None = None, progress: bool = False,
                   threshold: float | str | None = None) -> CVResult:
    """k-fold cross-validation grouped by prompt (or by the data's group column, see
    :func:`~lite_moderation.sources.row_groups`); every row is predicted by a model that never saw it.

    ``data`` is one labelled Dataset or a multi-source :class:`~lite_moderation.sources.TrainingSet`: then
    only the primary source's pairs are split into folds and reported on; the other sources' rows are trained
    on in every fold (their copies of a held-out prompt excepted). Each fold's model tunes its thresholds
    inside its own training part, so the test fold stays unseen. ``threshold`` overrides the unsafe cut-off:
    a probability, or an operating point ("strict") that each fold's model learned from its own training part.
    """
    from .training import check_fitted, default_estimator  # training builds on this module

    if estimator is None:
        estimator = default_estimator()
    training_set = data if isinstance(data, TrainingSet) else TrainingSet.from_dataset(data)
    estimator = with_labels(estimator, training_set.labels)
    evaluated = np.flatnonzero(training_set.primary)
    target = training_set.Y[evaluated]
    proba = np.zeros(target.shape)
    cuts = np.zeros(target.shape)
    fold_of_row = np.zeros(len(evaluated), dtype=np.int64)
    operating_points = []
    folds = grouped_folds(None, n_folds, seed, groups=training_set.groups[evaluated])
    with Progress("cross-validation", total=n_folds, enabled=progress, unit="folds") as bar:
        for k, (_, test) in enumerate(folds):
            held_out = evaluated[test]
            train = rows_outside_groups(training_set.groups, held_out)
            pairs, Y = training_set.subset(train)
            model = clone(estimator).fit(pairs, Y, **training_set.fit_params(train))
            check_fitted(model)  # NaN cut-offs would report garbage metrics as if they were real
            items = training_set.subset(held_out)[0]
            proba[test] = model._label_proba(items)
            cuts[test] = _row_cut_offs(model, items, threshold)
            fold_of_row[test] = k
            operating_points.append(dict(model.operating_points_))
            bar.update()
    predicted = proba >= cuts
    categories = target[:, :-1] if training_set.has_categories else None
    labels = training_set.labels
    metrics = moderation_metrics(target[:, -1], proba, predicted, categories, labels.categories,
                                 reported_categories=labels.decide(proba, cuts)[1])
    return CVResult(metrics, proba, predicted, fold_of_row, operating_points, cuts)


def cross_validate_repeats(data: Dataset | TrainingSet, n_folds: int = 5, seeds: Sequence[int] = (0,),
                           estimator: ModerationClassifier | None = None, progress: bool = False,
                           threshold: float | str | None = None) -> list[CVResult]:
    """:func:`cross_validate` once per fold seed: how much the figures move with the split alone
    (summarise with :func:`lite_moderation.stats.repeat_summary`)."""
    return [cross_validate(data, n_folds, seed, estimator=estimator, progress=progress, threshold=threshold)
            for seed in seeds]
