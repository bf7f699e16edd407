"""The default training recipe and the model card that records what a model was trained on and how."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .data import Dataset, sha256_file
from .taxonomy import LABELS

if TYPE_CHECKING:  # scikit-learn is imported when a model is built, not when the CLI starts
    from .model import ModerationClassifier

__all__ = ["BEAVERTAILS_LICENSE", "DEFAULT_PRESET", "PRESETS", "build_card", "default_estimator", "train"]

BEAVERTAILS_LICENSE = (
    "Trained on BeaverTails (PKU-Alignment), licensed CC BY-NC 4.0: the model is derived from that data "
    "and is for non-commercial use under the same terms. The lite-moderation code is MIT-licensed."
)

DEFAULT_THRESHOLD_SHRINKAGE = 50.0

#: Named recipes: parameter overrides of the default recipe. "accurate" is the default and the shipped
#: model (best CV quality); "fast" drops the response's character n-grams and fits with liblinear's dual
#: solver, for faster scoring and much faster training at a small cost in quality (measured numbers:
#: README, benchmarks/results/speed.md and train_scale.md).
PRESETS: dict[str, dict[str, object]] = {
    "accurate": {},
    "fast": {"char_fields": (), "dual": True},
}
DEFAULT_PRESET = "accurate"


def default_estimator(verbose: int = 0, preset: str = DEFAULT_PRESET, **params: object) -> ModerationClassifier:
    """The default recipe: word 1-2 grams of prompt and response, char 2-5 grams of the response,
    sublinear TF-IDF, one L2 logistic regression (C=4) per label, thresholds tuned on 5 grouped folds
    (category thresholds shrunk toward prevalence with k=50; see benchmarks/results/accuracy.md).

    ``preset`` picks a named variant (:data:`PRESETS`); ``params`` override vectorizer parameters
    (``vectorizer__*``-free names such as ``min_df``) or classifier parameters (``C``, ``n_jobs``...).
    """
    from .features import QAVectorizer
    from .model import ModerationClassifier

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: expected one of {sorted(PRESETS)}")
    params = {**PRESETS[preset], **params}
    vec_names = set(QAVectorizer().get_params())
    vec_params = {k: v for k, v in params.items() if k in vec_names}
    clf_params = {"threshold_shrinkage": DEFAULT_THRESHOLD_SHRINKAGE}
    clf_params.update({k: v for k, v in params.items() if k not in vec_names})
    return ModerationClassifier(vectorizer=QAVectorizer(**vec_params), verbose=verbose, **clf_params)


def train(dataset: Dataset, estimator: ModerationClassifier | None = None, data_path: str | os.PathLike = "",
          cv_folds: int = 0, seed: int = 0, license_text: str = BEAVERTAILS_LICENSE,
          command: str = "", progress: bool = False) -> tuple[ModerationClassifier, dict]:
    """Fit ``estimator`` (default recipe) on all of ``dataset``; with ``cv_folds`` >= 2 also measure it
    by grouped cross-validation first, so the card carries honest metrics. Returns (model, card)."""
    from .evaluation import cross_validate

    estimator = estimator if estimator is not None else default_estimator()
    cv_metrics = None
    if cv_folds:
        cv = cross_validate(dataset, cv_folds, seed, estimator=estimator, progress=progress)
        cv_metrics = {"folds": cv_folds, "seed": seed, "grouped_by": "prompt", **cv.metrics}
    if progress:
        estimator = estimator.set_params(verbose=1)
    model = estimator.fit(dataset.pairs, dataset.y)
    model.set_params(verbose=0)
    card = build_card(dataset, data_path, cv_metrics, license_text, command)
    return model, card


def build_card(dataset: Dataset, data_path: str | os.PathLike, cv_metrics: dict | None,
               license_text: str, command: str) -> dict:
    """What a user needs to trust a model: its data (name + sha256), recipe, metrics, license, caveats.

    Only the file's name is recorded, never its directory, so the card is the same on every machine.
    """
    Y = dataset.y
    name = Path(data_path).name if data_path else dataset.path
    sha = sha256_file(data_path) if data_path and Path(data_path).is_file() else None
    return {
        "library_version": __version__,
        "training_data": {
            "file": name,
            "sha256": sha,
            "rows": len(dataset),
            "distinct_prompts": len(set(dataset.prompts)),
            "positives": {label: int(n) for label, n in zip(LABELS, np.sum(Y, axis=0))},
        },
        "recipe": {"command": command},
        "metrics": {"cv": cv_metrics} if cv_metrics else {},
        "license": license_text,
        "notes": [_memorisation_note(name)],
    }


def _memorisation_note(name: str) -> str:
    return (
        f"Trained on every row of {name}: evaluating this model on that file measures memorisation, "
        "not quality. Its honest quality is the grouped cross-validation in metrics.cv (lite-moderation cv)."
    )
