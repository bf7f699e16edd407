"""lite-moderation: TF-IDF + linear moderators for BeaverTails question-answer pairs, on CPU.

>>> import lite_moderation as lm
>>> model = lm.load()                      # the shipped default model, offline
>>> model.moderate(["some text", ("a question", "an answer")])
>>> scorer = lm.load_scorer()              # scoring only: same scores, scikit-learn never imported
>>> lm.Explainer.load().explain(["some text"])   # why: each label's logit as intercept + one term per n-gram

Names are imported on first use, so ``import lite_moderation`` stays cheap and scoring-only processes
never load scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "DataError": "data", "Dataset": "data", "Record": "data", "load_dataset": "data", "read_records": "data",
    "System": "compare", "compare_systems": "compare", "comparison_tables": "compare", "plot_curves": "compare",
    "read_system": "compare",
    "cross_validate": "evaluation", "cross_validate_repeats": "evaluation", "evaluate": "evaluation",
    "Explainer": "explain",
    "FastScorer": "fast",
    "QAVectorizer": "features",
    "ModerationClassifier": "model",
    "ModelFormatError": "persistence", "load": "persistence", "load_scorer": "persistence",
    "read_card": "persistence", "save": "persistence",
    "Bootstrap": "stats", "mcnemar": "stats", "metric_intervals": "stats", "repeat_summary": "stats",
    "Table": "tables", "metrics_tables": "tables", "render_table": "tables",
    "SourceSpec": "sources", "TrainingSet": "sources", "build_training_set": "sources", "parse_source": "sources",
    "CATEGORIES": "taxonomy", "LABELS": "taxonomy", "UNSAFE": "taxonomy",
    "default_estimator": "training", "train": "training",
}

__all__ = [
    "CATEGORIES", "LABELS", "UNSAFE", "Bootstrap", "DataError", "Dataset", "Explainer", "FastScorer",
    "ModelFormatError", "ModerationClassifier", "QAVectorizer", "Record", "SourceSpec", "System", "Table", "TrainingSet",
    "build_training_set", "compare_systems", "comparison_tables", "cross_validate", "cross_validate_repeats",
    "default_estimator", "evaluate", "load", "load_dataset", "load_scorer", "mcnemar", "metric_intervals",
    "metrics_tables", "parse_source", "plot_curves", "read_card", "read_records", "read_system", "render_table",
    "repeat_summary", "save", "train",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names only (not the helpers this module imports for itself, such as ``Any``)."""
    return sorted([*__all__, "__version__"])


if TYPE_CHECKING:
    from .compare import System, compare_systems, comparison_tables, plot_curves, read_system
    from .data import DataError, Dataset, Record, load_dataset, read_records
    from .evaluation import cross_validate, cross_validate_repeats, evaluate
    from .explain import Explainer
    from .fast import FastScorer
    from .features import QAVectorizer
    from .model import ModerationClassifier
    from .persistence import ModelFormatError, load, load_scorer, read_card, save
    from .sources import SourceSpec, TrainingSet, build_training_set, parse_source
    from .stats import Bootstrap, mcnemar, metric_intervals, repeat_summary
    from .tables import Table, metrics_tables, render_table
    from .taxonomy import CATEGORIES, LABELS, UNSAFE
    from .training import default_estimator, train
