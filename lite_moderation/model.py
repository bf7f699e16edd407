"""The moderator: TF-IDF features and one linear classifier per label, with tuned thresholds.

Every label (the 14 BeaverTails categories plus the binary "unsafe" head, or a model's own labels) is a logistic
regression over the same features. After fitting, the k weight vectors are kept as one (n_features, k) matrix, so scoring is a
single sparse product for all labels. Decision thresholds are tuned per label on out-of-fold predictions
of the training data (folds grouped by prompt), never on data the model is evaluated on.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, GroupShuffleSplit
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from .features import QAVectorizer
from .labels import LabelSet, label_set_of, label_set_of_columns
from .metrics import binary_metrics
from .model_checks import CLASSIFIER_PARAMS, check_classifier_param
from .progress import Progress
from .taxonomy import BEAVERTAILS, sigmoid
from .texts import char_weights, field_texts, group_keys, message_mask, nb_powers, scored_items, split_fields
from .thresholds import (
    DEFAULT_THRESHOLD,
    OPERATING_POINTS,
    best_fbeta_threshold,
    cut_offs,
    set_message_cut_offs,
    shrunk_threshold,
)

__all__ = ["LabelWarning", "ModerationClassifier", "as_label_matrix", "check_training_labels", "hash_prompts",
           "prompt_groups", "resolve_labels", "resolve_targets", "rows_outside_groups", "set_target", "with_labels"]


class LabelWarning(UserWarning):
    """Training labels a category cannot learn from: no positive row (never flagged) or no negative one."""


def hash_prompts(prompts: Sequence[str]) -> np.ndarray:
    """64-bit fingerprints of normalised prompts (case and whitespace folded), for the leak check."""
    normalised = (" ".join(p.split()).lower().encode("utf-8") for p in prompts)
    return np.array(
        [int.from_bytes(hashlib.sha256(p).digest()[:8], "little") for p in normalised], dtype=np.uint64
    )


def prompt_groups(X: Sequence) -> np.ndarray:
    """Group ids that put every row with the same prompt in the same fold (row-wise splits leak)."""
    keys = group_keys(X)
    # ids in sorted order of the keys, like np.unique, without its fixed-width string array (which takes
    # rows x longest prompt x 4 bytes: gigabytes at 300k rows)
    rank = {key: i for i, key in enumerate(sorted(set(keys)))}
    return np.fromiter(map(rank.__getitem__, keys), dtype=np.intp, count=len(keys))


def as_label_matrix(y: object, labels: LabelSet | Sequence[str] | None = None) -> np.ndarray:
    """(n, k+1) bool targets (categories, then the flag head) of ``y`` under ``labels`` (see
    :func:`resolve_targets`; the flag head is derived, any category set, when ``y`` lacks its column)."""
    label_set, columns = resolve_targets(y, labels)
    return label_set.matrix(y, columns)


def resolve_labels(y: object, labels: LabelSet | Sequence[str] | None = None) -> LabelSet:
    """The label set of targets ``y``: ``labels`` when given (a :class:`LabelSet`, or the names of y's columns, read
    by :func:`~lite_moderation.labels.label_set_of_columns`, the CLI's rule: ``is_safe`` is the flag head
    ``unsafe``, one other name alone a binary target of that name, others categories with ``unsafe`` derived), else
    guessed from the shape: (n,) or (n, 1) a binary target alone (flag head ``unsafe``), (n, 14) or (n, 15) the
    BeaverTails categories (then unsafe), (n, k) categories named ``label_0`` ... (then a derived ``unsafe``)."""
    if isinstance(labels, LabelSet):
        return labels
    if labels is not None:
        return label_set_of_columns(labels)
    shape = np.shape(y)
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return LabelSet(())
    if len(shape) == 2 and shape[1] in (len(BEAVERTAILS.categories), len(BEAVERTAILS)):
        return BEAVERTAILS
    if len(shape) != 2 or shape[1] < 1:
        raise ValueError(f"y must have shape (n,) or (n, k), got {shape}")
    return LabelSet(tuple(f"label_{j}" for j in range(shape[1])))


def resolve_targets(y: object, labels: LabelSet | Sequence[str] | None = None) -> tuple[LabelSet, tuple[str, ...]]:
    """The label set of targets ``y`` (:func:`resolve_labels`) and the head each of y's columns holds: the names
    given (plus the flag head when y has one more column), else by y's width (:meth:`LabelSet.columns_of`)."""
    label_set = resolve_labels(y, labels)
    shape = np.shape(y)
    width = 1 if len(shape) == 1 else shape[1] if len(shape) == 2 else -1
    names = None if labels is None or isinstance(labels, LabelSet) else [labels] if isinstance(labels, str) else labels
    return label_set, label_set.columns_of(width, names)


def with_labels(estimator: ModerationClassifier, labels: LabelSet) -> ModerationClassifier:
    """``estimator`` (a clone) set to train on ``labels``, the label set of the data it is given; refused when it
    was built for other labels."""
    own = estimator.get_params(deep=False).get("labels")
    own_names = None if own is None else resolve_labels(None, own).names  # given labels never look at y
    if own_names is not None and own_names != labels.names:
        raise ValueError(f"the estimator's labels ({list(own_names)[:5]} ...) are not the data's "
                         f"({list(labels.names)[:5]} ...)")
    return clone(estimator).set_params(labels=labels)


def check_training_labels(Y: np.ndarray, labels: LabelSet = BEAVERTAILS) -> str | None:
    """Refuse (ValueError) labels the unsafe head cannot learn from; say which categories have one class only.

    ``Y`` is the (n, k+1) label matrix of every training row. Returns None when every category has both
    positive and negative rows, else one sentence naming those that do not (a model that never, or always,
    flags them).
    """
    unsafe = Y[:, -1]
    if not unsafe.any() or unsafe.all():
        have, lack = ("safe", "unsafe") if not unsafe.any() else ("unsafe", "safe")
        raise ValueError(f"all {len(Y)} training rows are {have}: the flag head '{labels.flag}' needs {lack} "
                         f"rows too to learn from")
    positives = Y[:, :-1].sum(axis=0)
    never = [c for c, n in zip(labels.categories, positives) if n == 0]
    always = [c for c, n in zip(labels.categories, positives) if n == len(Y)]
    parts = []
    if never:
        parts.append(f"no training row is labelled {_names(never)}: the model will never flag "
                     f"{'it' if len(never) == 1 else 'them'}")
    if always:
        parts.append(f"every training row is labelled {_names(always)}: the model will always flag "
                     f"{'it' if len(always) == 1 else 'them'}")
    return "; ".join(parts) or None


def _names(labels: list[str]) -> str:
    """Label names quoted: several hold commas of their own."""
    return ", ".join(f"'{label}'" for label in labels)


def column_scales(vectorizer: QAVectorizer, char_weight: float | dict[str, float]) -> np.ndarray:
    """Each feature column's factor while fitting: ``char_weight`` (see :func:`char_weights`) on the fitted
    ``vectorizer``'s character blocks, 1 elsewhere (a factor of 1 changes no bit)."""
    weights = char_weights(char_weight)
    factors = [weights.get(field, weights.get("*", 1.0)) if analyzer != "word" else 1.0
               for field, analyzer, _ in vectorizer.blocks_]
    return np.concatenate([np.full(len(block.vocabulary_), f, dtype=np.float32)
                           for f, (_, _, block) in zip(factors, vectorizer.blocks_)])


def nb_scales(vectorizer: QAVectorizer, nb_power: float | dict[str, float], features: sp.csr_matrix,
              unsafe: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """Naive-Bayes feature weights (NBSVM, Wang & Manning 2012): each column's factor while fitting, the absolute
    log-ratio of how often its term occurs in unsafe and in safe rows (presence counts, each row counting its
    weight, +1 smoothing, each block's counts relative to the block's total), raised to its field's ``nb_power``
    (see :func:`nb_powers`) and divided by the block's mean, so a block keeps its overall scale and a discriminative
    term gets a lighter penalty. None when every power is 0 (plain logistic regression)."""
    powers = nb_powers(nb_power)
    block_powers = [powers.get(field, powers.get("*", 0.0)) for field, _, _ in vectorizer.blocks_]
    if not any(block_powers):
        return None
    unsafe = np.asarray(unsafe, dtype=bool)
    scales, start = np.ones(features.shape[1]), 0
    for power, (_, _, block) in zip(block_powers, vectorizer.blocks_):
        columns = slice(start, start + len(block.vocabulary_))
        start = columns.stop
        if power:  # counted on the block's own columns: the others' entries cost nothing
            present = features[:, columns]
            per_entry = np.diff(present.indptr)
            n_columns = present.shape[1]
            p = 1.0 + np.bincount(present.indices, np.repeat(weights * unsafe, per_entry), minlength=n_columns)
            q = 1.0 + np.bincount(present.indices, np.repeat(weights * ~unsafe, per_entry), minlength=n_columns)
            ratio = np.abs(np.log(p / p.sum()) - np.log(q / q.sum())) ** power
            scales[columns] = ratio / ratio.mean()
    return scales


class ModerationClassifier(ClassifierMixin, BaseEstimator):
    """Multi-label moderator for texts or (prompt, response) pairs: categories + one flag head ("unsafe").

    Its labels are data: the BeaverTails 14 categories + "unsafe" by default (targets of 14 or 15 columns),
    or any set (``labels``; see :mod:`lite_moderation.labels` for the flag rule).

    Every head is fitted and tuned whatever ``y`` is; scikit-learn's methods answer for y's columns as fitted, so
    its scorers (``roc_auc``, ``average_precision``, ``f1``, ``f1_micro`` ...) work in ``GridSearchCV`` and
    ``cross_val_score``:

    - fitted on a binary target (``y`` of shape (n,) or (n, 1)): a binary classifier, ``classes_`` the two classes
      of y, ``predict`` (n,) of them, ``predict_proba`` (n, 2) (column 1: ``classes_[1]``), ``decision_function``
      (n,) log-odds of ``classes_[1]``;
    - fitted on a label matrix (n, k): a multilabel classifier as ``OneVsRestClassifier``, ``classes_`` =
      ``np.arange(k)``, ``predict`` (n, k) 0/1 integers, ``predict_proba`` and ``decision_function`` (n, k), one
      column per column of y (14 BeaverTails columns give 14, 15 give 15; an ``is_safe`` column gives the flag head
      negated).

    ``moderate`` reads every head (its verdicts do not depend on y's shape), and ``reference_decision_function``
    gives every head's log-odds, (n, len(labels_)).

    Parameters
    ----------
    vectorizer : the feature extractor (default: ``QAVectorizer()``); cloned at fit.
    C : inverse regularisation strength of every logistic regression.
    class_weight : None or "balanced", passed to each logistic regression.
    threshold_folds : folds (grouped by prompt) of the out-of-fold predictions thresholds are tuned on;
        0 keeps every threshold at 0.5. Costs ``threshold_folds + 1`` fits per label.
    threshold_holdout : if set, a fraction of the prompt groups held out instead: the labels are fitted once
        on the rest and the thresholds tuned on the held-out rows (one fit per label, for large data sets
        where a tenth of the rows is plenty to tune on and refitting costs minutes). Overrides
        ``threshold_folds``.
    threshold_shrinkage : k of the category thresholds' pull toward the prevalence cut-off (weight
        k / (n_pos + k)); 0 keeps the plain F1-best cut-offs. The unsafe head always keeps its F1-best one.
    strict_beta : beta of the unsafe head's "strict" operating point, the cut-off with the best F-beta on
        the same tuning predictions (beta < 1 favours precision: fewer false flags, lower recall).
    max_iter : iteration cap of the solver.
    tol : stopping tolerance of the solver.
    dual : solve liblinear's dual problem (coordinate descent) instead of the primal (trust-region Newton):
        about twice as fast on large sparse data, the same optimum to within the tolerance.
    random_state : seed of the fold shuffle and the solver.
    n_jobs : the vectorizer's blocks fitted in that many worker processes, then the labels in parallel: threads
        with the primal solver (liblinear releases the GIL, so the features are shared, not copied), worker
        processes with ``dual`` (see ``_fit_labels``); None or 1 for one. The same model either way.
    verbose : 1 shows a progress bar on stderr while fitting.
    char_weight : how much character n-gram blocks weigh against word blocks while fitting: a number for every
        character block, or ``{field: number}`` for the named fields' blocks (the others 1). Their features are
        multiplied by it and the fitted weights by it too, so scoring needs no scaling; above 1 it lightens their L2
        penalty (by its square). The shipped ``default`` weighs its pairs' response characters 1.5
        (``benchmarks/results/pair_frontier.md``). 1 fits as plain logistic regression.
    nb_power : Naive-Bayes feature weighting (NBSVM) of the flag head: a number for every block, or ``{field: number}``
        for the named fields' blocks (the others 0). In each fit (every fold too) each column is multiplied by the
        absolute log-count ratio of its term between the fit's unsafe and safe rows, to this power, normalised to
        mean 1 per block (:func:`nb_scales`); the fitted weights are multiplied back, so scoring needs no scaling. The
        categories are fitted on the plain features (the ratio is the flag head's: on the categories of the shipped
        ``default`` it cost BeaverTails CV macro-F1 0.439 -> 0.433). 0 fits as plain logistic regression. The shipped
        ``default`` weighs its message blocks so at 0.5 (``benchmarks/results/message_recipes.md``).
    labels : the label set of the targets: a :class:`~lite_moderation.labels.LabelSet`, category names (the flag
        head ``unsafe`` derived from them when ``y`` has no column for it), or None to go by ``y``'s shape
        ((n,) binary; (n, 14) or (n, 15) BeaverTails; (n, k) ``label_0`` ...).

    Attributes
    ----------
    vectorizer_ : the fitted vectorizer.
    coef_ : (n_features, k) float32 weights, columns ordered as ``labels_``.
    intercept_ : (k,) float32 biases.
    thresholds_ : (k,) decision thresholds.
    operating_points_ : named cut-offs of the unsafe head: "default" (= ``thresholds_[-1]``, best F1) and
        "strict" (best F-beta with ``strict_beta``); pass a name as ``moderate(X, threshold="strict")``.
    message_thresholds_ : (k,) thresholds of single messages (a prompt alone or a text alone), tuned on the
        messages among the tuning rows; None when the model has none (its pair thresholds serve messages too).
    message_operating_points_ : the unsafe head's named cut-offs for single messages (None likewise).
    labels_ : the label names in column order (categories, then the flag head).
    classes_ : the two classes of a binary target, or ``np.arange(k)`` for a label matrix of k columns.
    target_type_ : "binary" or "multilabel-indicator" (scikit-learn's ``type_of_target`` names).
    target_columns_ : the head each column of y holds (a name of ``labels_``, or ``is_safe``: the flag head negated).
    label_set_ : the :class:`~lite_moderation.labels.LabelSet` (names, flag head, descriptions).
    train_prompt_hashes_ : sorted 64-bit fingerprints of the training prompts, and of the texts of single
        messages (leak check).
    """

    def __init__(
        self,
        vectorizer: QAVectorizer | None = None,
        C: float = 4.0,
        class_weight: str | None = None,
        threshold_folds: int = 5,
        threshold_shrinkage: float = 0.0,
        threshold_holdout: float | None = None,
        strict_beta: float = 0.5,
        max_iter: int = 1000,
        tol: float = 1e-4,
        dual: bool = False,
        random_state: int = 0,
        n_jobs: int | None = None,
        verbose: int = 0,
        labels: LabelSet | Sequence[str] | None = None,
        char_weight: float | dict[str, float] = 1.0,
        nb_power: float | dict[str, float] = 0.0,
    ) -> None:
        self.vectorizer = vectorizer
        self.C = C
        self.class_weight = class_weight
        self.threshold_folds = threshold_folds
        self.threshold_shrinkage = threshold_shrinkage
        self.threshold_holdout = threshold_holdout
        self.strict_beta = strict_beta
        self.max_iter = max_iter
        self.tol = tol
        self.dual = dual
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.labels = labels
        self.char_weight = char_weight
        self.nb_power = nb_power

    # ------------------------------------------------------------------------------------------ fitting

    def fit(self, X: Sequence, y: object, groups: np.ndarray | None = None, sample_weight: object = None,
            tuning_rows: object = None, vocabulary_rows: object = None,
            label_mask: object = None) -> ModerationClassifier:
        """Fit on texts or (prompt, response) pairs X and labels y ((n, 15) or (n, 14) for BeaverTails, else see ``labels``).

        ``groups`` keeps rows together in the threshold-tuning folds (default: one group per prompt).
        ``sample_weight`` weighs rows in every fit (e.g. 0.3 for an auxiliary source).
        ``tuning_rows`` (bool mask) names the rows thresholds are tuned on, split into folds by group; the
        other rows are trained on in every fold, except those sharing a group with the fold's held-out rows
        (e.g. a prompt-only copy of a held-out pair). Default: all rows.
        ``vocabulary_rows`` (bool mask) names the rows the vectorizer learns its vocabulary and idf from
        (default: all rows); every row is then featurised with it.
        ``label_mask`` ((n, k) bool) says which labels of each row are known: a row of a source labelled only
        safe/unsafe knows its unsafe label, not its categories, and teaches (and tunes) the unsafe head only.
        Default: every label of every row.

        Thresholds are tuned per input shape: the pairs among the tuning rows give ``thresholds_`` and
        ``operating_points_``, the single messages ``message_thresholds_`` and ``message_operating_points_``
        (None when no message is tuned on: pairs' cut-offs then serve every input; a model of messages only
        keeps its cut-offs in ``thresholds_``).

        An item of X with nothing to score (an empty or whitespace-only text, or a pair whose prompt and response
        are both so) is refused (ValueError naming its index), as ``predict`` refuses it.

        Labels whose unsafe column has no positive row, or no negative one, are refused (ValueError); a
        category with one class only over all rows gets a :class:`LabelWarning` naming it. A parameter out of its
        range is refused too (ValueError naming it and its range), by the rule the loader checks a model file's
        value with (:data:`~lite_moderation.model_checks.CLASSIFIER_PARAMS`): what fits saves and loads back.

        BLAS runs on one thread while fitting: its results depend on its thread count (by one float32 ulp in
        the saved weights), so a fixed count makes a model rebuild byte for byte on any machine. Parallelism
        comes from ``n_jobs`` label threads instead.
        """
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(X, y, groups, sample_weight, tuning_rows, vocabulary_rows, label_mask)

    def _fit(self, X: Sequence, y: object, groups: np.ndarray | None, sample_weight: object,
             tuning_rows: object, vocabulary_rows: object, label_mask: object) -> ModerationClassifier:
        self.__dict__.pop("_fast_scorer_", None)
        self._check_params()
        # X once as (prompt, response) tuples, whatever container it came in (an array, a Series with its own
        # index, a DataFrame): every step below reads it by position. The same fields the steps read from X itself;
        # an item with nothing to score is refused as predict refuses it (else cross-validation scores NaN folds)
        X = list(zip(*split_fields(X, require_text=True)))
        label_set, columns = resolve_targets(y, self.labels)
        Y = label_set.matrix(y, columns)
        if len(X) != len(Y):
            raise ValueError(f"X has {len(X)} items but y has {len(Y)} rows")
        problem = check_training_labels(Y, label_set)
        if problem:
            warnings.warn(problem, LabelWarning, stacklevel=2)
        groups = prompt_groups(X) if groups is None else np.asarray(groups)
        weights = _row_vector(sample_weight, len(Y), "sample_weight", np.float64, 1.0)
        tuning = _row_vector(tuning_rows, len(Y), "tuning_rows", bool, True)
        known = _label_mask(label_mask, Y.shape)
        if not tuning.any():
            raise ValueError("tuning_rows selects no row: thresholds need rows to be tuned on")
        n_folds = 0 if self.threshold_holdout else self._n_threshold_folds(groups[tuning])
        with Progress("training", total=Y.shape[1] * (n_folds + 1), enabled=bool(self.verbose),
                      unit="fits") as progress:
            self.vectorizer_ = clone(self.vectorizer if self.vectorizer is not None else QAVectorizer())
            features = self._features(X, vocabulary_rows)
            scales = column_scales(self.vectorizer_, self.char_weight)
            if (scales != 1.0).any():  # in place (the matrix is this fit's own), at a temporary the size of its data
                features.data *= scales[features.indices]
            rows = _Rows(features, Y, weights, groups, tuning, known)
            if self.threshold_holdout:
                coef, intercept, tuned_on = self._fit_with_holdout(rows, progress)
            else:
                tuned_on = self._out_of_fold(rows, n_folds, progress)
                coef, intercept = self._fit_labels(rows, np.arange(len(Y)), progress)
        self._tune_thresholds(rows, *tuned_on, message_mask(X))
        self.coef_ = (coef * scales[:, None]).astype(np.float32)  # the weights of unscaled features: the same scores
        self.intercept_ = intercept.astype(np.float32)
        self.label_set_ = label_set
        self.labels_ = list(label_set.names)
        set_target(self, columns, np.unique(y) if len(columns) == 1 else None)
        self.train_prompt_hashes_ = np.unique(hash_prompts(group_keys(X)))
        self.n_features_in_ = 1
        return self

    def _check_params(self) -> None:
        """Every parameter a model file saves, by the loader's rule of it (:data:`CLASSIFIER_PARAMS`); a
        ``numpy.random.RandomState`` is a ``random_state`` too, as in scikit-learn (such a model cannot be saved).
        ``char_weight`` and ``nb_power`` are checked by their own functions, which are their rules in the table."""
        char_weights(self.char_weight)
        nb_powers(self.nb_power)
        for key in CLASSIFIER_PARAMS:
            value = getattr(self, key)
            if key == "random_state" and isinstance(value, np.random.RandomState):
                continue
            problem = check_classifier_param(key, value)
            if problem:
                raise ValueError(f"{key} {problem}, got {value!r}")

    def _features(self, X: Sequence, vocabulary_rows: object) -> sp.csr_matrix:
        self._drop_unfilled_fields(X)
        if vocabulary_rows is None:
            return self.vectorizer_.fit_transform(X, n_jobs=self.n_jobs)
        mask = _row_vector(vocabulary_rows, len(X), "vocabulary_rows", bool, True)
        learned, others = np.flatnonzero(mask), np.flatnonzero(~mask)
        fitted = self.vectorizer_.fit_transform([X[i] for i in learned], n_jobs=self.n_jobs)
        if not len(others):
            return fitted
        # the vocabulary rows' features come from the fit itself (analysing every text twice cost a fifth of a
        # training run); only the other rows are transformed, and the rows are put back in their order
        transformed = self.vectorizer_.transform([X[i] for i in others], n_jobs=self.n_jobs)
        stacked = sp.vstack([fitted, transformed], format="csr")
        return stacked[np.argsort(np.concatenate([learned, others]), kind="stable")]

    def _drop_unfilled_fields(self, X: Sequence) -> None:
        """Fit no block on a field the training data never fills (the prompt of data made of single texts): it
        would have no terms. The fitted ``vectorizer_`` records the fields it reads; refused when none is left."""
        prompts, responses = self.vectorizer_.read(X)
        specs = self.vectorizer_.block_specs()
        filled = {field for field, _ in specs
                  if any(text.strip() for text in field_texts(field, prompts, responses))}
        if len(filled) == len({field for field, _ in specs}):
            return
        word = tuple(f for f in self.vectorizer_.word_fields if f in filled)
        char = tuple(f for f in self.vectorizer_.char_fields if f in filled)
        if not word and not char:
            raise ValueError(f"no feature block reads a field the training data fills: the recipe reads "
                             f"{sorted({f for f, _ in specs})}; single texts fill 'response' and 'lone_text', pairs "
                             "'prompt', 'response', 'pair_prompt', 'pair_response'")
        self.vectorizer_.set_params(word_fields=word, char_fields=char)

    def _n_threshold_folds(self, groups: np.ndarray) -> int:
        n_groups = len(np.unique(groups))
        return min(self.threshold_folds, n_groups) if self.threshold_folds >= 2 else 0

    def _new_logistic_regression(self) -> LogisticRegression:
        return LogisticRegression(
            C=self.C, class_weight=self.class_weight, solver="liblinear", max_iter=self.max_iter, tol=self.tol,
            dual=self.dual,
            random_state=self.random_state,
        )

    def _fit_labels(self, rows: _Rows, train: np.ndarray, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
        """One logistic regression per label on rows ``train`` (in parallel threads with n_jobs), gathered
        into one matrix.

        The threads share the features; scikit-learn sorts a non-canonical CSR matrix *in place* when it
        validates it, so it is made canonical here first (two threads sorting one matrix crash the process).
        """
        features = rows.features if len(train) == rows.features.shape[0] else rows.features[train]
        features.sum_duplicates()
        Y, weights, known = rows.Y[train], rows.weights[train], rows.known[train]
        flag = Y.shape[1] - 1
        nb = nb_scales(self.vectorizer_, self.nb_power, features, Y[:, flag], weights * known[:, flag])
        flag_features = features
        if nb is not None:  # the flag head's own values (the categories keep the plain ones), on the same columns
            values = np.take(nb.astype(features.dtype), features.indices)
            values *= features.data
            flag_features = sp.csr_matrix((values, features.indices, features.indptr), shape=features.shape)
            # the very same column arrays, not views of them: worker processes then map them from one file
            flag_features.indices, flag_features.indptr = features.indices, features.indptr
        coef = np.zeros((features.shape[1], Y.shape[1]))
        intercept = np.zeros(Y.shape[1])
        # liblinear's dual solver shuffles with the C library's global rand(), seeded at the start of each fit:
        # fits in threads would interleave its draws (measured: weights moved by up to 1.6e-5 from run to run), so
        # with n_jobs they run in worker processes instead, each with its own rand() (same weights as in turn)
        # a worker process gets the estimator's parameters only (pickling its fitted vocabularies for each of the
        # labels was a tenth of the work), and the flag head, the longest fit, goes first so no worker idles at the end
        fitter = self._without_learned_state() if self.dual else self
        order = [flag, *range(flag)]
        fits = Parallel(n_jobs=self.n_jobs, prefer="processes" if self.dual else "threads", return_as="generator")(
            delayed(fitter._fit_label)(flag_features if j == flag else features, Y[:, j], weights * known[:, j])
            for j in order
        )
        for j, (label_weights, bias) in zip(order, fits):
            coef[:, j], intercept[j] = label_weights, bias
            progress.update()
        if nb is not None:
            coef[:, flag] *= nb  # the flag head's weights of features without the Naive-Bayes factor
        return coef, intercept

    def _without_learned_state(self) -> ModerationClassifier:
        """A shallow copy holding what ``__init__`` set (a subclass's settings too), none of the learned state."""
        bare = object.__new__(type(self))
        bare.__dict__.update((k, v) for k, v in self.__dict__.items() if not k.endswith("_"))
        return bare

    def _fit_label(self, features: sp.csr_matrix, y: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
        """Weights of one label (rows of weight 0 do not count); a label with one class only gets a constant
        score (its base rate)."""
        counted = weights > 0
        if not counted.any():
            return np.zeros(features.shape[1]), float(np.log(1e-6 / (1 - 1e-6)))
        if y[counted].all() or not y[counted].any():
            rate = np.clip(np.average(y[counted], weights=weights[counted]), 1e-6, 1 - 1e-6)
            return np.zeros(features.shape[1]), float(np.log(rate / (1 - rate)))
        uniform = bool(np.all(weights == 1.0))
        model = self._new_logistic_regression().fit(features, y, sample_weight=None if uniform else weights)
        return model.coef_[0], float(model.intercept_[0])

    def _out_of_fold(self, rows: _Rows, n_folds: int, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
        """The tuning rows and their out-of-fold probabilities, to tune thresholds on (none without folds).

        The vectorizer is fitted once on all training rows (unsupervised, no labels seen); only the
        classifiers are refitted per fold.
        """
        if n_folds < 2:
            return np.zeros(0, np.intp), np.zeros((0, rows.Y.shape[1]))
        tuning = np.flatnonzero(rows.tuning)
        oof = np.zeros((len(tuning), rows.Y.shape[1]))
        splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=self.random_state)
        for _, test in splitter.split(tuning, groups=rows.groups[tuning]):
            coef, intercept = self._fit_labels(rows, rows.train_without(tuning[test]), progress)
            oof[test] = sigmoid(rows.features[tuning[test]] @ coef + intercept)
        return tuning, oof

    def _tune_thresholds(self, rows: _Rows, tuned: np.ndarray, proba: np.ndarray, messages: np.ndarray) -> None:
        """Per-label F1 thresholds and the unsafe head's operating points of each input shape, from the rows
        ``tuned`` and their out-of-fold ``proba`` (all 0.5 with nothing to tune on)."""
        is_message = messages[tuned]
        pair = self._shape_cut_offs(rows, tuned[~is_message], proba[~is_message])
        message = self._shape_cut_offs(rows, tuned[is_message], proba[is_message])
        if pair is None:
            pair, message = message, None
        if pair is None:
            pair = (np.full(rows.Y.shape[1], DEFAULT_THRESHOLD), dict.fromkeys(OPERATING_POINTS, DEFAULT_THRESHOLD))
        self.thresholds_, self.operating_points_ = pair
        set_message_cut_offs(self, message)

    def _shape_cut_offs(self, rows: _Rows, tuned: np.ndarray, proba: np.ndarray
                        ) -> tuple[np.ndarray, dict[str, float]] | None:
        """Thresholds (each label tuned on the rows that know it, each row counting its sample weight) and
        operating points of one shape's rows; None without rows of both classes to tune the unsafe head on."""
        Y, known, weights = rows.Y[tuned], rows.known[tuned], rows.weights[tuned]
        unsafe = Y[known[:, -1], -1]
        if not len(unsafe) or unsafe.all() or not unsafe.any():
            return None
        thresholds = np.array([
            shrunk_threshold(Y[known[:, j], j], proba[known[:, j], j],
                             self.threshold_shrinkage if j < Y.shape[1] - 1 else 0.0, weights[known[:, j]])
            for j in range(Y.shape[1])
        ])
        strict = best_fbeta_threshold(unsafe, proba[known[:, -1], -1], self.strict_beta, weights[known[:, -1]])
        return thresholds, dict(zip(OPERATING_POINTS, (float(thresholds[-1]), float(strict))))

    def _fit_with_holdout(self, rows: _Rows, progress: Progress
                          ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Weights fitted on all but a held-out fraction of the tuning rows' groups, and the held-out rows and
        their probabilities (what the thresholds are tuned on)."""
        tuning = np.flatnonzero(rows.tuning)
        splitter = GroupShuffleSplit(n_splits=1, test_size=self.threshold_holdout, random_state=self.random_state)
        _, held_out = next(splitter.split(tuning, groups=rows.groups[tuning]))
        held_out = tuning[held_out]
        coef, intercept = self._fit_labels(rows, rows.train_without(held_out), progress)
        return coef, intercept, (held_out, sigmoid(rows.features[held_out] @ coef + intercept))

    # ------------------------------------------------------------------------------------------ scoring

    def decision_function(self, X: Sequence) -> np.ndarray:
        """Log-odds of y's columns as fitted: (n,) of ``classes_[1]`` for a binary target, else (n, k) one column per
        column of y (an ``is_safe`` column: the flag head's, negated)."""
        heads, negated = self._target_heads()
        scores = self._label_scores(X)[:, heads]
        scores[:, negated] *= -1
        return scores[:, 0] if self.target_type_ == "binary" else scores

    def _label_scores(self, X: Sequence) -> np.ndarray:
        """(n, len(labels_)) log-odds of every head, through the fast path when the recipe allows it.

        The fast path (``lite_moderation.fast``) gives the reference path's scores to within 1e-9 while
        skipping scikit-learn's per-call overhead; recipes it cannot reproduce exactly use the reference.
        """
        check_is_fitted(self, "coef_")
        scorer = self._fast_scorer()
        return scorer.decision_function(X) if scorer is not None else self.reference_decision_function(X)

    def reference_decision_function(self, X: Sequence) -> np.ndarray:
        """(n, len(labels_)) log-odds of every head on the scikit-learn path, in float64: one sparse product for all
        labels (what the fast path matches)."""
        check_is_fitted(self, "coef_")
        prompts, responses = split_fields(X, require_text=True)
        features = self.vectorizer_.transform(list(zip(prompts, responses)), dtype=np.float64)
        return np.asarray(features @ self.coef_.astype(np.float64)) + self.intercept_

    def _fast_scorer(self):
        """The fast scorer of the fitted state, built once (about 0.05 s) and dropped on refit."""
        if "_fast_scorer_" not in self.__dict__:
            from .fast import FastScorer

            try:
                self.__dict__["_fast_scorer_"] = FastScorer.from_model(self)
            except ValueError:
                self.__dict__["_fast_scorer_"] = None
        return self.__dict__["_fast_scorer_"]

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_fast_scorer_", None)
        return state

    def predict_proba(self, X: Sequence) -> np.ndarray:
        """Probabilities of y's columns as fitted: (n, 2) of ``classes_`` for a binary target (as scikit-learn's
        binary classifiers), else (n, k), one column per column of y (as its multilabel ones)."""
        heads, negated = self._target_heads()
        proba = self._label_proba(X)[:, heads]
        proba[:, negated] = 1.0 - proba[:, negated]
        return np.column_stack([1.0 - proba[:, 0], proba[:, 0]]) if self.target_type_ == "binary" else proba

    def _label_proba(self, X: Sequence) -> np.ndarray:
        """(n, len(labels_)) probabilities of every head, columns ordered as ``labels_`` (categories, then the flag
        head): what ``moderate``, evaluation and the other internal callers read, whatever y was fitted on."""
        return sigmoid(self._label_scores(X))

    def predict(self, X: Sequence) -> np.ndarray:
        """Decisions at the tuned thresholds of each row's shape (pair or single message): (n,) of ``classes_``
        for a binary target, else (n, k) 0/1 integers, one column per column of y."""
        items, messages = scored_items(X)
        heads, negated = self._target_heads()
        decided = (self._label_proba(items) >= cut_offs(self, messages))[:, heads] ^ negated
        return self.classes_[decided[:, 0].astype(np.intp)] if self.target_type_ == "binary" else decided.astype(int)

    def _target_heads(self) -> tuple[np.ndarray, np.ndarray]:
        """The head of each of y's columns and whether it is negated (:meth:`LabelSet.heads_of`)."""
        check_is_fitted(self, "coef_")
        return label_set_of(self).heads_of(self.target_columns_)

    def score(self, X: Sequence, y: object, sample_weight: object = None) -> float:
        """F1 of the flag head (what GridSearchCV maximises by default); ``y`` as fitted (or any shape the labels
        take, see :meth:`LabelSet.columns_of`). NaN when undefined (no unsafe row and none flagged), as
        scikit-learn's ``f1_score(..., zero_division=np.nan)``: the metrics' rule (:mod:`lite_moderation.metrics`)."""
        check_is_fitted(self, "coef_")
        labels = label_set_of(self)
        width = 1 if np.ndim(y) == 1 else np.shape(y)[1]
        Y = labels.matrix(y, self.target_columns_ if width == len(self.target_columns_) else None)
        items, messages = scored_items(X)
        proba = self._label_proba(items)
        flagged = proba[:, -1] >= cut_offs(self, messages)[:, -1]
        f1 = binary_metrics(Y[:, -1], proba[:, -1], flagged)["f1"]
        return float("nan") if f1 is None else f1

    def moderate(self, X: Sequence, threshold: float | str | None = None) -> list[dict]:
        """One verdict per item: ``{"flagged", "unsafe_score", "categories", "category_scores"}``.

        ``threshold`` overrides the tuned cut-off of the unsafe head: a probability, or the name of one of
        ``operating_points_`` ("strict": fewer false flags, lower recall).
        """
        items, messages = scored_items(X)
        return label_set_of(self).results(self._label_proba(items), cut_offs(self, messages, threshold))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_label = True
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags



def set_target(model: ModerationClassifier, columns: Sequence[str], classes: object = None) -> None:
    """The target state scikit-learn's scorers read, from the heads of y's ``columns``: one column is a binary
    target (``classes_``: its two ``classes``, ``target_type_`` "binary"); more are a multilabel one (``classes_``
    np.arange(k) as OneVsRestClassifier's, "multilabel-indicator"). Fit and load both set it here."""
    model.target_columns_ = list(columns)
    binary = len(model.target_columns_) == 1
    model.target_type_ = "binary" if binary else "multilabel-indicator"
    model.classes_ = np.asarray(classes) if binary else np.arange(len(model.target_columns_))
    if binary and model.classes_.shape != (2,):
        raise ValueError(f"a binary target has two classes, got {model.classes_.tolist()[:5]}")


def _label_mask(values: object, shape: tuple[int, int]) -> np.ndarray:
    """``fit``'s ``label_mask`` as an (n, labels) bool array (every label known when None)."""
    if values is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(values)
    if mask.shape != shape or mask.dtype != bool:
        raise ValueError(f"label_mask must be a boolean array of shape {shape}, got {mask.dtype} {mask.shape}")
    if not mask[:, -1].any():
        raise ValueError("label_mask knows no row's unsafe label: nothing to train the unsafe head on")
    return mask


def _row_vector(values: object, n: int, name: str, dtype: type, fill: object) -> np.ndarray:
    """A per-row fit parameter as an (n,) array (``fill`` everywhere when None), checked for shape."""
    if values is None:
        return np.full(n, fill, dtype=dtype)
    array = np.asarray(values)
    if array.shape != (n,):
        raise ValueError(f"{name} must have one value per row ({n}), got shape {array.shape}")
    if dtype is bool and array.dtype != bool:
        raise ValueError(f"{name} must be a boolean mask, got dtype {array.dtype}")
    if dtype is not bool and (not np.isfinite(array.astype(np.float64)).all() or (array < 0).any()):
        raise ValueError(f"{name} must hold finite non-negative numbers")
    return array.astype(dtype)


@dataclass
class _Rows:
    """What every fit of one ``fit`` call reads: features, labels, row weights, groups, tuning mask."""

    features: sp.csr_matrix
    Y: np.ndarray
    weights: np.ndarray
    groups: np.ndarray
    tuning: np.ndarray
    known: np.ndarray

    def train_without(self, held_out: np.ndarray) -> np.ndarray:
        return rows_outside_groups(self.groups, held_out)


def rows_outside_groups(groups: np.ndarray, held_out: np.ndarray) -> np.ndarray:
    """Rows to train on while rows ``held_out`` are predicted: all but those sharing a group with them (a
    prompt's other answers, its prompt-alone and text-alone copies)."""
    return np.flatnonzero(~np.isin(groups, groups[held_out]))
