"""The default training recipe and the model card that records what a model was trained on and how."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .data import Dataset

if TYPE_CHECKING:  # scikit-learn is imported when a model is built, not when the CLI starts
    from .model import ModerationClassifier
    from .sources import TrainingSet

__all__ = ["BEAVERTAILS_LICENSE", "DEFAULT_PRESET", "PRESETS", "build_card", "default_estimator", "train"]

BEAVERTAILS_LICENSE = (
    "Trained on BeaverTails (PKU-Alignment), licensed CC BY-NC 4.0: the model is derived from that data "
    "and is for non-commercial use under the same terms. The lite-moderation code is MIT-licensed."
)

DEFAULT_THRESHOLD_SHRINKAGE = 50.0

#: The parts of a cross-validation's metrics a model card records (``metrics.cv``): the flag head and each category
#: head at its own cut-off, i.e. how good each head is. The categories as reported (``reported_categories``: only on
#: flagged items, at least one on each) are ``cv``'s and ``evaluate``'s, not recorded: the cards of the shipped models
#: are rebuilt byte for byte, and what a card records keeps its meaning.
CARD_CV_METRICS = ("n", "unsafe", "categories")

#: Named recipes: parameter overrides of the default recipe. "accurate" is the default and the shipped
#: model (best CV quality); "fast" drops the response's character n-grams, for faster scoring at a small
#: cost in quality (measured numbers: README, benchmarks/results/speed.md and train_scale.md).
#: "shapes" and "shapes-fast" are the same two for training on pairs and single messages (``--shapes pair,text``):
#: a pair's prompt, a pair's response and a single message (a prompt alone or a text alone: one shape, see
#: ``texts.single_message``) each get blocks of their own, so the linear model holds a pair model and a
#: message model side by side, and each shape gets cut-offs tuned on its own rows.
#: Every preset fits with liblinear's dual solver: the primal one (trust-region Newton) computes its dot
#: products with the machine's BLAS kernel, so its weights move by a float32 ulp between CPUs (AVX2 vs
#: AVX-512) and a model no longer rebuilds byte for byte; the dual solver uses no BLAS and reaches the same
#: optimum within ``tol`` (measured on 30k_test: CV metrics equal to 1e-6). ``--primal`` keeps the other.
_DUAL = {"dual": True}
PRESETS: dict[str, dict[str, object]] = {
    "accurate": {**_DUAL},
    "fast": {"char_fields": (), **_DUAL},
    "shapes": {"word_fields": ("pair_prompt", "pair_response", "lone_text"),
               "char_fields": ("pair_response", "lone_text"), **_DUAL},
    "shapes-fast": {"word_fields": ("pair_prompt", "pair_response", "lone_text"), "char_fields": (), **_DUAL},
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


def train(data: Dataset | TrainingSet, estimator: ModerationClassifier | None = None,
          data_path: str | os.PathLike = "", cv_folds: int = 0, seed: int = 0, license_text: str | None = None,
          command: str = "", progress: bool = False) -> tuple[ModerationClassifier, dict]:
    """Fit ``estimator`` (default recipe) on all of ``data``; with ``cv_folds`` >= 2 also measure it
    by grouped cross-validation first, so the card carries honest metrics. Returns (model, card).

    ``data`` is one labelled Dataset (read from ``data_path``) or a multi-source
    :class:`~lite_moderation.sources.TrainingSet` (see :func:`~lite_moderation.sources.build_training_set`):
    then thresholds are tuned and CV reports on the primary (first) source's rows only.
    """
    from .evaluation import cross_validate
    from .sources import TrainingSet

    if isinstance(data, TrainingSet):
        training_set = data
    else:
        training_set = TrainingSet.from_dataset(data)
        training_set.sources = [describe_file(data_path, data)]
    estimator = estimator if estimator is not None else default_estimator()
    cv_metrics = None
    if cv_folds:
        cv = cross_validate(training_set, cv_folds, seed, estimator=estimator, progress=progress)
        cv_metrics = {"folds": cv_folds, "seed": seed, "grouped_by": training_set.grouped_by,
                      **{k: v for k, v in cv.metrics.items() if k in CARD_CV_METRICS}}
        if len(training_set.sources) > 1:
            cv_metrics["evaluated_on"] = training_set.sources[0]["name"]
    from .model import with_labels

    estimator = with_labels(estimator, training_set.labels)
    if progress:
        estimator = estimator.set_params(verbose=1)
    model = estimator.fit(training_set.pairs, training_set.Y, **training_set.fit_params())
    model.set_params(verbose=0)
    check_fitted(model)
    card = build_card(training_set, cv_metrics, license_text, command)
    return model, card


def check_fitted(model: ModerationClassifier) -> None:
    """Refuse a fit the loader would refuse (NaN or infinite weights or cut-offs), before it is saved or reported:
    extreme inputs (a source weight of 1e308, a NaN option) make the solver overflow without an error."""
    cut_offs = [model.thresholds_, *model.operating_points_.values()]
    if getattr(model, "message_thresholds_", None) is not None:
        cut_offs += [model.message_thresholds_, *(model.message_operating_points_ or {}).values()]
    arrays = [model.coef_, model.intercept_, *(block.idf_ for _, _, block in model.vectorizer_.blocks_)]
    probabilities = np.concatenate([np.ravel(np.asarray(c, dtype=np.float64)) for c in cut_offs])
    if not all(np.isfinite(np.asarray(a, dtype=np.float32)).all() for a in arrays) \
            or not (np.isfinite(probabilities).all() and ((probabilities >= 0) & (probabilities <= 1)).all()):
        raise ValueError("training produced NaN or infinite weights or thresholds (the source weights or the "
                         "recipe's numbers are too extreme); nothing was saved: use smaller weights or options")


def describe_file(data_path: str | os.PathLike, dataset: Dataset) -> dict:
    """The card entry of a single training file (name only, never its directory: the same on every machine)."""
    from .sources import describe_source

    return describe_source(str(data_path) if data_path else dataset.path, len(dataset), len(dataset), len(dataset))


def build_card(training_set: TrainingSet, cv_metrics: dict | None, license_text: str | None,
               command: str) -> dict:
    """What a user needs to trust a model: its data (every source with rows, sha256 and license), recipe,
    metrics, license, caveats."""
    primary = training_set.primary
    Y = training_set.Y[primary]
    first = training_set.sources[0]
    from .texts import group_keys

    prompts = set(group_keys([training_set.pairs[i] for i in np.flatnonzero(primary)]))
    data = {
        "file": first["name"],
        "sha256": first["sha256"],
        "rows": int(primary.sum()),
        "distinct_prompts": len(prompts),
        "positives": {label: int(n) for label, n in zip(training_set.labels.names, np.sum(Y, axis=0))},
    }
    if training_set.grouped_by != "prompt":  # what the threshold (and cv) folds kept together
        data["grouped_by"] = training_set.grouped_by
    if not training_set.labels.is_beavertails:
        data["labels"] = training_set.labels.describe()
    if len(training_set.sources) > 1 or training_set.shapes != ("pair",):
        data.update(training_rows=len(training_set), shapes=list(training_set.shapes), sources=training_set.sources)
    return {
        "library_version": __version__,
        "training_data": data,
        "recipe": {"command": command},
        "metrics": {"cv": cv_metrics} if cv_metrics else {},
        "license": license_text if license_text is not None else model_license(training_set.sources,
                                                                                  training_set.labels.is_beavertails),
        "notes": [_memorisation_note(training_set.sources)],
    }


def model_license(sources: list[dict], beavertails: bool = True) -> str:
    """The license statement of a model: it follows the licenses its sources record. BeaverTails' terms (with
    the license of every other source) when the first source is BeaverTails' data (its recorded license names
    BeaverTails: the known BeaverTails files by sha256, or a ``license`` field that says so) and the model is one
    of BeaverTails' labels (``beavertails``); otherwise every source with its own license, "license unknown"
    when a source records none. A model is never given BeaverTails' terms for its labels' schema alone."""
    named = [f"{_source_name(s)} ({s['license'] or 'license unknown: check the source'})" for s in sources]
    if not (beavertails and sources and is_beavertails_source(sources[0])):
        return (f"Trained on: {'; '.join(named)}. The model is derived from that data and follows its terms. "
                "The lite-moderation code is MIT-licensed.")
    others = named[1:]
    if not others:
        return BEAVERTAILS_LICENSE
    return f"{BEAVERTAILS_LICENSE} Also trained on: {'; '.join(others)}."


def is_beavertails_source(source: dict) -> bool:
    """Whether a card's source entry is BeaverTails' data: its recorded license says so (``sources.KNOWN_LICENSES``
    gives the BeaverTails files theirs, e.g. "CC BY-NC 4.0 (BeaverTails 30k_test)")."""
    return "beavertails" in (source.get("license") or "").lower()


def _source_name(source: dict) -> str:
    return "stdin" if source["name"] == "-" else source["name"]


def _memorisation_note(sources: list[dict]) -> str:
    """Which files the model saw (every row, or a sample), so nobody evaluates it on them."""
    seen = ", ".join(f"{_source_name(s)} ({'every row' if s['rows_sampled'] >= s['rows_in_source'] else str(s['rows_sampled']) + ' sampled rows'})"
                     for s in sources)
    return (
        f"Trained on {seen}: evaluating this model on those rows measures memorisation, not quality. Its honest "
        "quality is the grouped cross-validation in metrics.cv (lite-moderation cv)."
    )
