"""ModerationClassifier follows scikit-learn's conventions and the documented Python API."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from conftest import synthetic_records
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline

import lite_moderation as lm
from lite_moderation.model import LabelWarning, as_label_matrix, prompt_groups
from lite_moderation.taxonomy import BEAVERTAILS
from lite_moderation.thresholds import best_f1_threshold, shrunk_threshold, tune_thresholds


@pytest.fixture(scope="module")
def xy():
    records = synthetic_records(200, seed=3)
    X = [(r["prompt"], r["response"]) for r in records]
    Y = np.array([[r["category"][c] for c in lm.CATEGORIES] for r in records])
    return X, Y


def fast_estimator(**params):
    return lm.default_estimator(char_fields=(), min_df=1, threshold_folds=3, **params)


def test_shipped_model_predict_proba_shape_and_label_order():
    model = lm.load()
    proba = model.predict_proba(["a text", ("a question", "an answer")])
    assert proba.shape == (2, 15)
    assert model.labels_ == [*lm.CATEGORIES, "unsafe"]
    assert ((proba >= 0) & (proba <= 1)).all()
    [verdict] = model.moderate([("a question", "an answer")])
    assert set(verdict) == {"flagged", "unsafe_score", "categories", "category_scores"}


def test_fit_learns_the_markers_and_sets_fitted_attributes(xy):
    X, Y = xy
    model = fast_estimator().fit(X, Y)
    assert model.coef_.shape[1] == 15 and model.thresholds_.shape == (15,)
    items = [("q", "marker7 marker7 garden"), ("q", "garden river chess")]
    pred = model.predict(items)
    assert pred.shape == (2, 14) and pred[0, 7] == 1 and pred[1, 7] == 0  # y's 14 columns
    assert [v["flagged"] for v in model.moderate(items)] == [True, False]


@pytest.mark.parametrize("method", ["predict_proba", "predict", "decision_function", "moderate", "score"])
def test_unfitted_model_raises_not_fitted(method):
    from sklearn.exceptions import NotFittedError

    args = (["x"], [1]) if method == "score" else (["x"],)
    with pytest.raises(NotFittedError):
        getattr(lm.ModerationClassifier(), method)(*args)


def test_clone_and_params_round_trip():
    model = fast_estimator(C=2.5)
    cloned = clone(model)
    assert cloned.get_params()["C"] == 2.5
    assert cloned.get_params()["vectorizer__char_fields"] == ()


def test_grid_search_with_groups(xy):
    X, Y = xy
    groups = prompt_groups(X)
    search = GridSearchCV(fast_estimator(), {"C": [0.5, 4.0], "vectorizer__min_df": [1, 2]}, cv=GroupKFold(3))
    search.fit(X, Y, groups=groups)
    assert set(search.best_params_) == {"C", "vectorizer__min_df"}
    assert 0.0 <= search.best_score_ <= 1.0


def test_inside_a_pipeline(xy):
    X, Y = xy
    pipe = Pipeline([("moderator", fast_estimator())]).fit(X, Y)
    assert pipe.predict_proba(X[:3]).shape == (3, 14)


def test_fourteen_category_labels_derive_unsafe():
    Y = np.zeros((3, 14), dtype=int)
    Y[0, 2] = 1
    full = as_label_matrix(Y)
    assert full.shape == (3, 15) and full[0, -1] and not full[1, -1]


@pytest.mark.parametrize("bad", [np.full((3, 15), 2), np.zeros((3, 2, 2)), np.array([["a", "b"]] * 3)])
def test_bad_label_shapes_are_rejected(bad):
    with pytest.raises(ValueError, match="y must"):
        as_label_matrix(bad)


@pytest.mark.parametrize(("y", "labels"), [(np.zeros((3, 5)), BEAVERTAILS), (np.zeros((3, 7)), ["a", "b", "c"])])
def test_targets_wider_or_narrower_than_the_label_set_are_rejected(y, labels):
    """Named labels fix the width of y: BeaverTails' 14 (or 15), or the names given (or one more: the flag head)."""
    with pytest.raises(ValueError, match="y must"):
        as_label_matrix(y, labels)


def test_bad_x_items_are_rejected(xy):
    model = fast_estimator().fit(*xy)
    with pytest.raises(TypeError, match=r"X\[1\]"):
        model.predict_proba(["fine", 42])
    with pytest.raises(TypeError, match="single string"):
        model.predict_proba("not a list")


def test_best_f1_threshold_separates_perfectly_separable_scores():
    y = np.array([0, 0, 1, 1])
    cut = best_f1_threshold(y, np.array([0.1, 0.2, 0.7, 0.9]))
    assert 0.2 < cut <= 0.7
    assert best_f1_threshold(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4])) == 0.5


def test_shrinkage_pulls_rare_label_thresholds_toward_prevalence():
    rng = np.random.default_rng(0)
    y = np.zeros(1000, dtype=bool)
    y[:12] = True
    scores = np.clip(rng.normal(0.2, 0.1, 1000) + 0.3 * y, 0.001, 0.999)
    plain = best_f1_threshold(y, scores)
    prevalence = np.sort(scores)[::-1][11]
    shrunk = shrunk_threshold(y, scores, 50.0)
    assert min(plain, prevalence) <= shrunk <= max(plain, prevalence)
    assert shrunk_threshold(y, scores, 0.0) == plain
    Y = np.column_stack([y, y])
    both = tune_thresholds(Y, np.column_stack([scores, scores]), 50.0, shrink_columns=[0])
    assert both[0] == shrunk and both[1] == plain


def test_threshold_holdout_fits_once_and_tunes_on_held_out_prompts(xy):
    X, Y = xy
    model = fast_estimator(threshold_holdout=0.25).fit(X, Y)
    items = [("q", "marker7 marker7 garden"), ("q", "garden river chess")]
    pred = model.predict(items)
    assert pred[0, 7] and model.moderate(items)[0]["flagged"] and not pred[1, 7]
    assert not np.array_equal(model.thresholds_, fast_estimator().fit(X, Y).thresholds_)
    with pytest.raises(ValueError, match="threshold_holdout must be a fraction"):
        fast_estimator(threshold_holdout=1.5).fit(X, Y)


def test_presets_are_named_overrides_of_the_default_recipe():
    fast = lm.default_estimator(preset="fast")
    assert fast.vectorizer.char_fields == () and fast.dual
    assert lm.default_estimator().vectorizer.char_fields == ("response",)
    assert lm.default_estimator(preset="fast", char_fields=("response",)).vectorizer.char_fields == ("response",)
    with pytest.raises(ValueError, match="unknown preset 'tiny'"):
        lm.default_estimator(preset="tiny")


def test_label_threads_give_the_same_model(xy):
    X, Y = xy
    one, two = fast_estimator().fit(X, Y), fast_estimator(n_jobs=2).fit(X, Y)
    np.testing.assert_array_equal(one.coef_, two.coef_)
    np.testing.assert_array_equal(one.thresholds_, two.thresholds_)


class HalvedWeights(lm.ModerationClassifier):
    """An extension through ``_fit_label``, with a setting of its own that ``__init__`` keeps out of the params."""

    def __init__(self, **params):
        super().__init__(**params)
        self.factor = 0.5

    def _fit_label(self, features, y, weights):
        label_weights, bias = super()._fit_label(features, y, weights)
        return label_weights * self.factor, bias


def test_worker_processes_fit_with_a_subclass_and_its_own_settings(xy):
    X, Y = xy
    params = fast_estimator().get_params(deep=False)
    plain = lm.ModerationClassifier(**params).fit(X, Y)
    one, two = HalvedWeights(**params).fit(X, Y), HalvedWeights(**{**params, "n_jobs": 2}).fit(X, Y)
    assert two.dual  # worker processes, each sent a copy of the estimator without its learned state
    np.testing.assert_array_equal(one.coef_, two.coef_)
    np.testing.assert_allclose(one.coef_, plain.coef_ * 0.5)


def test_fbeta_threshold_with_beta_one_is_the_f1_threshold_and_smaller_beta_is_stricter():
    from lite_moderation.thresholds import best_fbeta_threshold

    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.5
    scores = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    assert best_fbeta_threshold(y, scores, 1.0) == best_f1_threshold(y, scores)
    assert best_fbeta_threshold(y, scores, 0.5) > best_f1_threshold(y, scores)


def test_operating_points_are_learned_and_selectable_by_name(xy):
    X, Y = xy
    model = fast_estimator().fit(X, Y)
    assert model.operating_points_["default"] == model.thresholds_[-1]
    strict = model.operating_points_["strict"]
    proba = np.array([v["unsafe_score"] for v in model.moderate(X)])
    assert [v["flagged"] for v in model.moderate(X, threshold="strict")] == list(proba >= strict)
    with pytest.raises(ValueError, match="unknown operating point 'lenient': this model has default, strict"):
        model.moderate(X, threshold="lenient")
    untuned = lm.default_estimator(char_fields=(), min_df=1, threshold_folds=0).fit(X, Y)
    assert untuned.operating_points_ == {"default": 0.5, "strict": 0.5}


def test_cross_validation_keeps_each_fold_models_operating_points(tmp_path):
    from conftest import write_jsonl

    path = tmp_path / "data.jsonl"
    write_jsonl(path, synthetic_records(240, seed=5))
    data = lm.load_dataset(path, require="categories")
    cv = lm.cross_validate(data, n_folds=3, seed=0, estimator=fast_estimator())
    assert len(cv.operating_points) == 3
    cut = np.array([cv.operating_points[k]["default"] for k in cv.fold_of_row])
    np.testing.assert_array_equal(cv.predicted[:, -1], cv.proba[:, -1] >= cut)
    strict = lm.cross_validate(data, n_folds=3, seed=0, estimator=fast_estimator(), threshold="strict")
    strict_cut = np.array([cv.operating_points[k]["strict"] for k in cv.fold_of_row])
    np.testing.assert_array_equal(strict.predicted[:, -1], cv.proba[:, -1] >= strict_cut)


# ------------------------------------------------------------------------------------------ degenerate labels


def test_fit_warns_naming_each_category_without_positive_rows(xy):
    X, Y = xy
    Y = Y.copy()
    Y[:, [0, 5]] = False  # animal_abuse and (the sixth) discrimination: no positive row left
    with pytest.warns(LabelWarning) as caught:
        fast_estimator().fit(X, Y)
    [message] = [str(w.message) for w in caught if issubclass(w.category, LabelWarning)]
    assert f"'{lm.CATEGORIES[0]}', '{lm.CATEGORIES[5]}': the model will never flag them" in message
    assert not any(c in message for i, c in enumerate(lm.CATEGORIES) if i not in (0, 5))


def test_fit_counts_positives_over_all_rows_not_only_the_tuning_rows(xy):
    X, Y = xy
    tuning = ~Y[:, 0]  # the animal_abuse rows are trained on, never tuned on
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelWarning)
        fast_estimator().fit(X, Y, tuning_rows=tuning, sample_weight=np.where(tuning, 1.0, 0.5))


@pytest.mark.parametrize(("unsafe", "words"), [(False, "are safe"), (True, "are unsafe")])
def test_fit_refuses_an_unsafe_head_with_one_class(xy, unsafe, words):
    X, _ = xy
    Y = np.zeros((len(X), len(lm.LABELS)), bool)
    Y[:, -1] = unsafe
    with pytest.raises(ValueError, match=f"all {len(X)} training rows {words}"):
        fast_estimator().fit(X, Y)


def test_dual_solver_fits_are_the_same_with_label_threads():
    """liblinear's dual solver draws from one global C rand(): label threads made it irreproducible (real data:
    weights differed by up to 1.6e-5 between runs with n_jobs=2)."""
    from conftest import BEAVERTAILS_TEST

    data = lm.load_dataset(BEAVERTAILS_TEST, require="categories")
    one = lm.default_estimator(preset="fast", threshold_folds=0).fit(data.pairs, data.y)
    two = lm.default_estimator(preset="fast", threshold_folds=0, n_jobs=2).fit(data.pairs, data.y)
    np.testing.assert_array_equal(one.coef_, two.coef_)


def test_char_weight_fits_heavier_char_features_and_folds_the_factor_into_the_weights(xy):
    """A logistic regression on the features with character columns times w, stored as weights of the unscaled
    features: the model's scores are that regression's, and scoring needs no scaling."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    X, Y = xy
    y = Y.any(axis=1)
    model = lm.default_estimator(min_df=1, threshold_folds=0, char_weight=1.5, labels=["unsafe"]).fit(X, y)
    features = model.vectorizer_.transform(X, dtype=np.float64)
    scales = np.concatenate([np.full(len(block.vocabulary_), 1.5 if analyzer == "char_wb" else 1.0)
                             for _, analyzer, block in model.vectorizer_.blocks_])
    assert (scales == 1.5).any() and (scales == 1.0).any()
    reference = LogisticRegression(C=4.0, solver="liblinear", dual=True, max_iter=1000).fit(
        features @ sp.diags(scales), y)
    np.testing.assert_allclose(model.decision_function(X), reference.decision_function(features @ sp.diags(scales)),
                               atol=1e-4)
    plain = lm.default_estimator(min_df=1, threshold_folds=0, labels=["unsafe"]).fit(X, y)
    assert not np.allclose(model.coef_, plain.coef_)
    assert clone(model).get_params()["char_weight"] == 1.5
    by_field = lm.default_estimator(min_df=1, threshold_folds=0, char_weight={"response": 1.5},
                                    labels=["unsafe"]).fit(X, y)  # the recipe's one character block: the same fit
    np.testing.assert_array_equal(by_field.coef_, model.coef_)
    elsewhere = lm.default_estimator(min_df=1, threshold_folds=0, char_weight={"lone_text": 3.0},
                                     labels=["unsafe"]).fit(X, y)  # no block of that field: a plain fit
    np.testing.assert_array_equal(elsewhere.coef_, plain.coef_)


def _naive_bayes_factors(features, unsafe: np.ndarray, weights: np.ndarray, blocks, power: float) -> np.ndarray:
    """The NBSVM factor of each column, computed row by row (the model computes it from the sparse structure)."""
    present = (features.toarray() != 0).astype(float)
    in_unsafe = 1 + (weights * unsafe) @ present
    in_safe = 1 + (weights * ~unsafe) @ present
    factors, start = [], 0
    for _, _, block in blocks:
        p, q = in_unsafe[start:start + len(block.vocabulary_)], in_safe[start:start + len(block.vocabulary_)]
        ratio = np.abs(np.log((p / p.sum()) / (q / q.sum()))) ** power
        factors.append(ratio / ratio.mean())
        start += len(block.vocabulary_)
    return np.concatenate(factors)


def test_nb_power_fits_naive_bayes_weighted_features_and_folds_the_factor_into_the_weights(xy):
    """NBSVM: a logistic regression on features times |log-count ratio| ** p (per block, mean 1), the row weights
    counting in the ratio; stored as weights of the unscaled features, so scores are that regression's."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    X, Y = xy
    y = Y.any(axis=1)
    weights = np.where(np.arange(len(y)) % 3 == 0, 0.5, 1.0)
    model = lm.default_estimator(min_df=1, threshold_folds=0, nb_power=0.5, labels=["unsafe"]).fit(
        X, y, sample_weight=weights)
    features = model.vectorizer_.transform(X, dtype=np.float64)
    factors = _naive_bayes_factors(features, y, weights, model.vectorizer_.blocks_, 0.5)
    assert factors.std() > 0.1
    scaled = features @ sp.diags(factors)
    reference = LogisticRegression(C=4.0, solver="liblinear", dual=True, max_iter=1000).fit(
        scaled, y, sample_weight=weights)
    np.testing.assert_allclose(model.decision_function(X), reference.decision_function(scaled), atol=1e-4)
    plain = lm.default_estimator(min_df=1, threshold_folds=0, labels=["unsafe"]).fit(X, y, sample_weight=weights)
    assert not np.allclose(model.coef_, plain.coef_)
    assert clone(model).get_params()["nb_power"] == 0.5
    by_field = lm.default_estimator(min_df=1, threshold_folds=0, nb_power={"prompt": 0.5, "response": 0.5},
                                    labels=["unsafe"]).fit(X, y, sample_weight=weights)
    np.testing.assert_array_equal(by_field.coef_, model.coef_)
    elsewhere = lm.default_estimator(min_df=1, threshold_folds=0, nb_power={"lone_text": 1.0},
                                     labels=["unsafe"]).fit(X, y, sample_weight=weights)  # no block of that field
    np.testing.assert_array_equal(elsewhere.coef_, plain.coef_)


def test_nb_power_weighs_the_flag_head_alone_by_the_counts_of_the_fits_own_rows(xy):
    """The categories' regressions keep the plain features (the ratio is the flag head's), and the factors of a fit
    on some rows come from those rows' labels only (no held-out label leaks into a fold)."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    from lite_moderation.model import nb_scales

    X, Y = xy
    Y = np.column_stack([Y, Y.any(axis=1)])
    model = lm.default_estimator(min_df=1, threshold_folds=0, nb_power=1.0).fit(X, Y)
    plain = lm.default_estimator(min_df=1, threshold_folds=0).fit(X, Y)
    np.testing.assert_array_equal(model.coef_[:, :-1], plain.coef_[:, :-1])
    features = model.vectorizer_.transform(X, dtype=np.float64)
    factors = _naive_bayes_factors(features, Y[:, -1], np.ones(len(X)), model.vectorizer_.blocks_, 1.0)
    reference = LogisticRegression(C=4.0, solver="liblinear", dual=True, max_iter=1000).fit(
        features @ sp.diags(factors), Y[:, -1])
    np.testing.assert_allclose(model.coef_[:, -1], reference.coef_[0] * factors, atol=1e-4)
    half = np.arange(len(X)) < 120
    on_half = nb_scales(model.vectorizer_, 1.0, features[half].tocsr(), Y[half, -1], np.ones(half.sum()))
    expected = _naive_bayes_factors(features[half], Y[half, -1], np.ones(half.sum()), model.vectorizer_.blocks_, 1.0)
    np.testing.assert_allclose(on_half, expected, rtol=1e-9)
    assert not np.allclose(on_half, factors)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), {"response": -1.0}, {"answer": 1.0}, "1", True])
def test_nb_power_must_be_a_finite_number_0_or_above_of_known_fields(xy, bad):
    X, Y = xy
    message = "unknown fields" if isinstance(bad, dict) and "answer" in bad else "finite number 0 or above"
    with pytest.raises(ValueError, match=f"nb_power .*{message}"):
        fast_estimator(nb_power=bad).fit(X, Y)


@pytest.mark.parametrize(("bad", "message"), [
    (0.0, "finite number above 0"), (-1.0, "finite number above 0"), (float("nan"), "finite number above 0"),
    (float("inf"), "finite number above 0"), ({"response": 0.0}, "finite number above 0"),
    ({"answer": 2.0}, "unknown fields"), ("2", "finite number above 0")])
def test_char_weight_must_be_a_finite_positive_number_of_known_fields(xy, bad, message):
    X, Y = xy
    with pytest.raises(ValueError, match=f"char_weight .*{message}"):
        fast_estimator(char_weight=bad).fit(X, Y)


# ------------------------------------------------------------------------------------------ scikit-learn's scorers


def _rows(X, rows):
    return [X[i] for i in rows]


@pytest.fixture(scope="module")
def binary_target(xy):
    """A binary y (0/1 integers: any marker) of the module's data."""
    X, Y = xy
    return X, Y.any(axis=1).astype(int)


@pytest.fixture(scope="module")
def label_matrix(xy):
    """A label matrix of two categories (markers 7 and 10) and is_safe (no marker): columns a, b, is_safe."""
    X, Y = xy
    return X, np.column_stack([Y[:, 7], Y[:, 10], ~Y.any(axis=1)]).astype(int)


LABEL_MATRIX_NAMES = ["a", "b", "is_safe"]


def _estimator(y):
    return fast_estimator(labels=LABEL_MATRIX_NAMES) if np.ndim(y) == 2 else fast_estimator()


def _by_hand(X, y, scoring: str) -> list[float]:
    """Each grouped fold's score computed from the fold model's verdicts (``moderate``, every head), not from the
    methods scikit-learn calls: binary y is the flag head; the label matrix's columns are a, b and is_safe (the flag
    head negated), each decided at its own tuned cut-off."""
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    scores = []
    for train, test in GroupKFold(3).split(X, y, groups=prompt_groups(X)):
        model = clone(_estimator(y)).fit(_rows(X, train), y[train])
        verdicts = model.moderate(_rows(X, test))
        unsafe = np.array([v["unsafe_score"] for v in verdicts])
        if np.ndim(y) == 1:
            proba, decided = unsafe, np.array([v["flagged"] for v in verdicts])
        else:
            proba = np.column_stack([[v["category_scores"][c] for v in verdicts] for c in "ab"] + [1 - unsafe])
            decided = np.column_stack([proba[:, :2] >= model.thresholds_[:2], unsafe < model.thresholds_[-1]])
        metric = {"roc_auc": roc_auc_score, "average_precision": average_precision_score}.get(scoring)
        scores.append(metric(y[test], proba) if metric else f1_score(y[test], decided, average=scoring[3:] or "binary"))
    return scores


@pytest.mark.parametrize("scoring", ["roc_auc", "average_precision", "f1"])
def test_scorers_on_a_binary_target_give_the_scores_computed_by_hand(binary_target, scoring):
    """A 1-D binary y: GridSearchCV and cross_val_score gave NaN for every candidate (no classes_, (n, 1) predict)
    and still picked a best_params_."""
    from sklearn.model_selection import cross_val_score

    X, y = binary_target
    expected = _by_hand(X, y, scoring)
    groups = prompt_groups(X)
    scores = cross_val_score(fast_estimator(), X, y, groups=groups, cv=GroupKFold(3), scoring=scoring)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    search = GridSearchCV(fast_estimator(), {"C": [0.5, 4.0]}, cv=GroupKFold(3), scoring=scoring).fit(X, y, groups=groups)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    np.testing.assert_allclose([search.cv_results_[f"split{k}_test_score"][1] for k in range(3)], expected, rtol=1e-12)


@pytest.mark.parametrize("scoring", ["roc_auc", "average_precision", "f1_micro", "f1_macro"])
def test_scorers_on_a_label_matrix_give_the_scores_computed_by_hand(label_matrix, scoring):
    from sklearn.model_selection import cross_val_score

    X, Y = label_matrix
    expected = _by_hand(X, Y, scoring)
    groups = prompt_groups(X)
    scores = cross_val_score(_estimator(Y), X, Y, groups=groups, cv=GroupKFold(3), scoring=scoring)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    search = GridSearchCV(_estimator(Y), {"C": [0.5, 4.0]}, cv=GroupKFold(3), scoring=scoring).fit(X, Y, groups=groups)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    np.testing.assert_allclose([search.cv_results_[f"split{k}_test_score"][1] for k in range(3)], expected, rtol=1e-12)


def test_a_binary_target_gives_scikit_learns_binary_shapes(binary_target):
    X, y = binary_target
    model = fast_estimator().fit(X, y.astype(bool))
    assert model.target_type_ == "binary" and model.classes_.tolist() == [False, True]
    proba, scores, predicted = model.predict_proba(X), model.decision_function(X), model.predict(X)
    assert proba.shape == (len(X), 2) and scores.shape == predicted.shape == (len(X),) and predicted.dtype == bool
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], [v["unsafe_score"] for v in model.moderate(X)], rtol=1e-12)
    np.testing.assert_allclose(scores, np.log(proba[:, 1] / proba[:, 0]), atol=1e-9)
    np.testing.assert_array_equal(predicted, [v["flagged"] for v in model.moderate(X)])
    assert fast_estimator().fit(X, y[:, None]).predict(X[:2]).shape == (2,)  # a column vector is binary too


def test_a_label_matrix_gives_one_column_per_column_of_y_as_one_vs_rest(label_matrix):
    """0/1 integer decisions, probabilities and log-odds of y's own columns: the is_safe column is the flag head
    negated; ``moderate`` still reads every head."""
    X, Y = label_matrix
    model = _estimator(Y).fit(X, Y)
    assert model.target_type_ == "multilabel-indicator" and model.classes_.tolist() == [0, 1, 2]
    assert model.labels_ == ["a", "b", "unsafe"]
    proba, scores, predicted = model.predict_proba(X), model.decision_function(X), model.predict(X)
    assert proba.shape == scores.shape == predicted.shape == Y.shape and predicted.dtype.kind == "i"
    unsafe = np.array([v["unsafe_score"] for v in model.moderate(X)])
    np.testing.assert_allclose(proba[:, 2], 1 - unsafe, atol=1e-12)
    np.testing.assert_allclose(scores, np.log(proba / (1 - proba)), atol=1e-9)
    np.testing.assert_array_equal(predicted[:, 2], unsafe < model.thresholds_[-1])
    assert ((predicted == 0) | (predicted == 1)).all()


@pytest.mark.parametrize(("labels", "width", "message"), [
    (["spam", "is_safe"], 3, "y must have shape"),  # is_safe is the flag head: y has no further column for it
    (["is_safe", "is_safe"], 2, "label names repeat"),
    ([], 1, "at least one column"),
])
def test_label_names_that_cannot_name_the_columns_of_y_are_refused(labels, width, message):
    with pytest.raises(ValueError, match=message):
        as_label_matrix(np.zeros((3, width), dtype=int), labels)


@pytest.mark.parametrize("params, message", [
    ({"threshold_shrinkage": -1}, "threshold_shrinkage must be a number, 0 or above, got -1"),
    ({"strict_beta": 0}, "strict_beta must be a number above 0, got 0"),
    ({"strict_beta": -1}, "strict_beta must be a number above 0, got -1"),
    ({"max_iter": 0}, "max_iter must be a whole number above 0, got 0"),
    ({"threshold_holdout": 0}, "threshold_holdout must be a fraction between 0 and 1, or null, got 0"),
    ({"C": float("nan")}, "C must be a number above 0, got nan"),
    ({"tol": 0}, "tol must be a number above 0, got 0"),
    ({"class_weight": {0: 1, 1: 2}}, 'class_weight must be null or "balanced"'),
])
def test_fit_refuses_a_parameter_the_loader_would_refuse_naming_it_and_its_range(xy, params, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        fast_estimator(**params).fit(*xy)


def test_fit_takes_numpy_scalars_in_range_as_a_parameter_grid_gives_them(xy):
    grid = {"max_iter": np.arange(500, 501), "strict_beta": np.linspace(0.5, 0.5, 1, dtype=np.float32)}
    search = GridSearchCV(fast_estimator(), grid, cv=GroupKFold(2)).fit(*xy, groups=prompt_groups(xy[0]))
    assert search.best_params_["max_iter"] == 500


def test_a_fitted_model_with_parameters_at_the_edges_of_their_ranges_saves_and_loads(xy, tmp_path):
    model = fast_estimator(threshold_shrinkage=0, max_iter=1, strict_beta=1e-3).fit(*xy)
    lm.save(model, tmp_path / "m")
    assert lm.load(tmp_path / "m").get_params()["strict_beta"] == 1e-3


@pytest.mark.parametrize("container", ["array", "frame", "series"])
def test_vocabulary_rows_take_every_documented_input_container(xy, container):
    import pandas as pd

    X, Y = xy
    mask = np.arange(len(X)) % 2 == 0
    as_given = {"array": lambda: np.array(X, dtype=object),
                "frame": lambda: pd.DataFrame(X, columns=["prompt", "response"], index=np.arange(len(X)) + 10),
                "series": lambda: pd.Series([r for _, r in X], index=np.arange(len(X))[::-1])}[container]()
    items = X if container != "series" else [r for _, r in X]
    model = fast_estimator().fit(as_given, Y, vocabulary_rows=mask)
    expected = fast_estimator().fit(items, Y, vocabulary_rows=mask)
    assert model.vectorizer_.get_feature_names_out().tolist() == expected.vectorizer_.get_feature_names_out().tolist()
    np.testing.assert_array_equal(model.coef_, expected.coef_)


@pytest.mark.parametrize("blank", ["", "  \n", ("", " "), ("\t", "")])
def test_fit_refuses_an_item_with_nothing_to_score_as_predict_does(xy, blank):
    X, Y = xy
    X = [*X[:3], blank, *X[4:]]
    with pytest.raises(ValueError, match=r"X\[3\] .*nothing to score"):
        fast_estimator().fit(X, Y)

