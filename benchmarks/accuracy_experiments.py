"""Accuracy experiments: recipe variants measured on the library's own grouped folds (5 folds, seed 0).

Why a harness and not ``lite-moderation cv`` per variant: most variants change only the classifier, the
post-processing or the thresholds, so each (features, base head) pair is fitted once per outer fold and its
inner out-of-fold scores (used for thresholds, stacking, C choice) and its test-fold scores are cached on
disk. Everything a variant learns comes from the outer training part only (inner folds grouped by prompt,
as ``ModerationClassifier`` does); the outer test fold is only ever scored.

    python benchmarks/accuracy_experiments.py base-c4 nb-c4 ...   # run variants, append to runs.jsonl
    python benchmarks/accuracy_experiments.py --list
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from lite_moderation import QAVectorizer, load_dataset
from lite_moderation.evaluation import grouped_folds
from lite_moderation.metrics import binary_metrics, moderation_metrics
from lite_moderation.model import prompt_groups
from lite_moderation.taxonomy import CATEGORIES, LABELS
from lite_moderation.thresholds import best_f1_threshold, tune_thresholds

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "beavertails" / "30k_test.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "accuracy_runs.jsonl"
CACHE = Path("/tmp/lite_moderation_accuracy_cache")
EXTERNAL = {
    "saferlhf": ROOT.parent / "shared" / "data" / "external" / "saferlhf_2000.jsonl",
    "xstest": ROOT.parent / "shared" / "data" / "external" / "xstest_response_harmful.jsonl",
}
N_FOLDS, SEED, INNER_FOLDS = 5, 0, 5
N_CAT = len(CATEGORIES)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


# ------------------------------------------------------------------------------------------------ features


class BlockWeighted:
    """A fitted-on-demand QAVectorizer whose blocks' columns are multiplied by fixed weights after transform.

    Why: with L2-regularised LR, scaling a block by ``a`` equals penalising its weights by ``1 / a**2``, a clean
    knob for how much the classifier may lean on that block (``a = 0``: the block is ignored). Experiment
    only; the library's QAVectorizer has no such parameter.
    """

    def __init__(self, vec: QAVectorizer, weights: dict[tuple[str, str], float]) -> None:
        self.vec = vec
        self.weights = weights

    def _scale(self, X: sp.csr_matrix) -> sp.csr_matrix:
        scale = np.concatenate([np.full(len(block.vocabulary_), self.weights.get((f, a), 1.0), dtype=X.dtype)
                                for f, a, block in self.vec.blocks_])
        out = (X @ sp.diags(scale)).tocsr()
        out.eliminate_zeros()
        return out

    def fit_transform(self, X: list) -> sp.csr_matrix:
        return self._scale(self.vec.fit_transform(X))

    def transform(self, X: list) -> sp.csr_matrix:
        return self._scale(self.vec.transform(X))


def make_vectorizer(vec_params: dict) -> QAVectorizer | BlockWeighted:
    """QAVectorizer from harness params; the harness-only key ``prompt_weight`` scales the prompt word block."""
    params = dict(vec_params)
    weight = params.pop("prompt_weight", None)
    vec = QAVectorizer(**params)
    return vec if weight is None else BlockWeighted(vec, {("prompt", "word"): float(weight)})


# ---------------------------------------------------------------------------------------------- base heads


def fit_lr(F: sp.csr_matrix, y: np.ndarray, C: float, class_weight: str | None = None) -> tuple[np.ndarray, float]:
    """One liblinear logistic regression, as ModerationClassifier fits it (constant score for one class)."""
    if y.all() or not y.any():
        rate = np.clip(y.mean(), 1e-6, 1 - 1e-6)
        return np.zeros(F.shape[1]), float(np.log(rate / (1 - rate)))
    model = LogisticRegression(C=C, class_weight=class_weight, solver="liblinear", max_iter=1000, random_state=0)
    model.fit(F, y)
    return model.coef_[0], float(model.intercept_[0])


def nb_ratio(F: sp.csr_matrix, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """NB-SVM log-count ratio r = log((p/|p|) / (q/|q|)) of each feature for one label (binarised counts)."""
    B = (F > 0).astype(np.float64)
    p = alpha + np.asarray(B[y].sum(axis=0)).ravel()
    q = alpha + np.asarray(B[~y].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


@dataclass
class Head:
    """A base classifier: (features, (n,15) labels) -> a function giving (n,15) logits."""

    name: str
    C: float = 4.0
    class_weight: str | None = None
    nb: bool = False            # NB-LR: scale features by the label's log-count ratio (folds into coef)
    nb_alpha: float = 1.0
    nb_interp: float = 1.0      # |r| ** interp: 1 = full NB scaling, 0 = plain LR
    conditional: bool = False   # categories trained on unsafe rows only; P(cat) = P(unsafe) * P(cat | unsafe)
    c_unsafe: float | None = None

    def fit(self, F: sp.csr_matrix, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coef = np.zeros((F.shape[1], Y.shape[1]))
        intercept = np.zeros(Y.shape[1])
        unsafe_rows = Y[:, -1]
        for j in range(Y.shape[1]):
            C = self.c_unsafe if (j == N_CAT and self.c_unsafe) else self.C
            rows = unsafe_rows if (self.conditional and j < N_CAT) else slice(None)
            Fj, yj = F[rows], Y[rows, j]
            if self.nb and yj.any() and not yj.all():
                # scale only (the sign is learnt by the LR), so the transform folds into the weights
                r = np.abs(nb_ratio(Fj, yj, self.nb_alpha)) ** self.nb_interp
                w, b = fit_lr(Fj @ sp.diags(r), yj, C, self.class_weight)
                coef[:, j], intercept[j] = w * r, b
            else:
                coef[:, j], intercept[j] = fit_lr(Fj, yj, C, self.class_weight)
        return coef, intercept

    def logits(self, coef: np.ndarray, intercept: np.ndarray, F: sp.csr_matrix) -> np.ndarray:
        z = np.asarray(F @ coef) + intercept
        if self.conditional:
            p = sigmoid(z)
            p[:, :N_CAT] *= p[:, [N_CAT]]
            z = logit(p)
        return z


# ----------------------------------------------------------------------------------------- cached scoring


@dataclass
class FoldScores:
    """Per outer fold: inner out-of-fold logits of the training part, and logits of the test part."""

    train: np.ndarray
    test: np.ndarray
    oof: np.ndarray
    test_logits: np.ndarray


class Experiment:
    """Data, outer folds, and the cache of (vectorizer, head) scores."""

    def __init__(self, data: Path = DATA, fraction: float = 1.0) -> None:
        self.dataset = load_dataset(data, require="categories")
        self.pairs = self.dataset.pairs
        self.Y = self.dataset.y
        self.folds = grouped_folds(self.pairs, N_FOLDS, SEED)
        self.fraction = fraction
        self._features: dict[str, list] = {}

    def features(self, vec_params: dict) -> list[tuple[sp.csr_matrix, sp.csr_matrix]]:
        key = json.dumps(vec_params, sort_keys=True)
        if key not in self._features:
            out = []
            for train, test in self.folds:
                train = self.subsample(train)
                vec = make_vectorizer(vec_params)
                out.append((vec.fit_transform([self.pairs[i] for i in train]),
                            vec.transform([self.pairs[i] for i in test])))
            self._features[key] = out
        return self._features[key]

    def subsample(self, train: np.ndarray) -> np.ndarray:
        """The first ``fraction`` of a training fold's prompt groups (whole groups, seeded shuffle)."""
        if self.fraction >= 1.0:
            return train
        groups = prompt_groups([self.pairs[i] for i in train])
        uniq = np.random.default_rng(SEED).permutation(np.unique(groups))
        keep = set(uniq[: max(2, round(self.fraction * len(uniq)))])
        return train[np.array([g in keep for g in groups])]

    def scores(self, vec_params: dict, head: Head) -> list[FoldScores]:
        key = hashlib.sha1(json.dumps([vec_params, head.__dict__, self.fraction], sort_keys=True,
                                      default=str).encode()).hexdigest()[:16]
        path = CACHE / f"{key}.npz"
        feats = self.features(vec_params) if not path.exists() else None
        if path.exists():
            z = np.load(path, allow_pickle=False)
            return [FoldScores(z[f"tr{k}"], z[f"te{k}"], z[f"oof{k}"], z[f"tl{k}"]) for k in range(N_FOLDS)]
        out = []
        for k, (train, test) in enumerate(self.folds):
            train = self.subsample(train)
            Ftr, Fte = feats[k]
            Ytr = self.Y[train]
            groups = prompt_groups([self.pairs[i] for i in train])
            oof = np.zeros(Ytr.shape)
            splitter = GroupKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=0)
            for itr, ite in splitter.split(Ftr, groups=groups):
                coef, b = head.fit(Ftr[itr], Ytr[itr])
                oof[ite] = head.logits(coef, b, Ftr[ite])
            coef, b = head.fit(Ftr, Ytr)
            out.append(FoldScores(train, test, oof, head.logits(coef, b, Fte)))
        CACHE.mkdir(exist_ok=True)
        np.savez(path, **{f"{n}{k}": getattr(s, a) for k, s in enumerate(out)
                          for n, a in (("tr", "train"), ("te", "test"), ("oof", "oof"), ("tl", "test_logits"))})
        return out


    def external(self, vec_params: dict, head: Head) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Fit on all rows (thresholds from inner grouped OOF) and score the external sets:
        name -> (truth, unsafe probability, unsafe threshold)."""
        key = hashlib.sha1(json.dumps(["ext", vec_params, head.__dict__], sort_keys=True,
                                      default=str).encode()).hexdigest()[:16]
        path = CACHE / f"{key}.npz"
        if not path.exists():
            vec = make_vectorizer(vec_params)
            F = vec.fit_transform(self.pairs)
            groups = prompt_groups(self.pairs)
            oof = np.zeros(self.Y.shape)
            for itr, ite in GroupKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=0).split(F, groups=groups):
                coef, b = head.fit(F[itr], self.Y[itr])
                oof[ite] = head.logits(coef, b, F[ite])
            coef, b = head.fit(F, self.Y)
            arrays = {"oof": oof}
            for name, ext in EXTERNAL.items():
                ds = load_dataset(ext)
                arrays[f"{name}_y"] = ds.unsafe
                arrays[f"{name}_z"] = head.logits(coef, b, vec.transform(ds.pairs))[:, -1]
            np.savez(path, **arrays)
        z = np.load(path)
        return {name: (z[f"{name}_y"], z[f"{name}_z"], z["oof"]) for name in EXTERNAL}


# --------------------------------------------------------------------------------- post-processing rules
# A post-processor maps (oof logits of the training part, its labels, test logits) to
# (training-part scores to tune thresholds on, test scores); thresholds never see the test fold.

Post = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def post_identity(oof, Ytr, test, groups):
    return sigmoid(oof), sigmoid(test)


def _stack_design(Z: np.ndarray) -> np.ndarray:
    return Z


def post_stack(C: float = 1.0) -> Post:
    """Second stage per category: LR on all 15 first-stage logits (label co-occurrence + the unsafe head).

    Its own threshold scores come from a grouped cross-fit over the inner out-of-fold logits.
    """
    def run(oof, Ytr, test, groups):
        fit_on = np.zeros(oof.shape)
        out = np.zeros(test.shape)
        for j in range(Ytr.shape[1]):
            fit_on[:, j], out[:, j] = _stack_one(oof, Ytr[:, j], test, groups, C)
        return fit_on, out
    return run


def _stack_one(oof, y, test, groups, C):
    if y.all() or not y.any():
        return sigmoid(oof[:, 0]) * 0 + y.mean(), np.full(len(test), y.mean())
    cross = np.zeros(len(y))
    for itr, ite in GroupKFold(n_splits=5, shuffle=True, random_state=1).split(oof, groups=groups):
        if y[itr].any():
            m = LogisticRegression(C=C, max_iter=1000).fit(_stack_design(oof[itr]), y[itr])
            cross[ite] = m.predict_proba(_stack_design(oof[ite]))[:, 1]
    m = LogisticRegression(C=C, max_iter=1000).fit(_stack_design(oof), y)
    return cross, m.predict_proba(_stack_design(test))[:, 1]


def post_gate(oof, Ytr, test, groups):
    """Category score times unsafe probability (a category implies unsafe)."""
    p_oof, p_test = sigmoid(oof), sigmoid(test)
    p_oof[:, :N_CAT] *= p_oof[:, [N_CAT]]
    p_test[:, :N_CAT] *= p_test[:, [N_CAT]]
    return p_oof, p_test


# --------------------------------------------------------------------------------------- threshold rules


def thr_f1(Ytr: np.ndarray, S: np.ndarray) -> np.ndarray:
    return tune_thresholds(Ytr, S)


def thr_shrunk(k: float = 50.0) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """F1-best threshold shrunk (in logit space) toward the prevalence-matching one, weight n_pos/(n_pos+k).

    Why: with 15-60 positives the F1 curve is flat and noisy; flagging as many rows as there are
    positives is a stable cut-off that the F1 optimum rarely beats by much.
    """
    def rule(Ytr, S):
        out = np.zeros(Ytr.shape[1])
        for j in range(Ytr.shape[1]):
            n_pos = int(Ytr[:, j].sum())
            f1_t = best_f1_threshold(Ytr[:, j], S[:, j])
            if n_pos == 0:
                out[j] = f1_t
                continue
            prev_t = np.sort(S[:, j])[::-1][n_pos - 1]
            w = n_pos / (n_pos + k)
            out[j] = sigmoid(w * logit(np.array(f1_t)) + (1 - w) * logit(np.array(prev_t)))
        return out
    return rule


def thr_shrunk_categories(k: float = 50.0) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """:func:`thr_shrunk` on the 14 categories; the unsafe head keeps its F1-best cut-off."""
    def rule(Ytr, S):
        out = thr_shrunk(k)(Ytr, S)
        out[-1] = best_f1_threshold(Ytr[:, -1], S[:, -1])
        return out
    return rule


def best_fbeta_threshold(y: np.ndarray, s: np.ndarray, beta: float) -> float:
    """:func:`best_f1_threshold` for F-beta (beta < 1 weighs precision more: fewer flags)."""
    y = np.asarray(y, dtype=bool)
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    tp = np.cumsum(y[order])
    distinct = np.r_[ss[1:] != ss[:-1], True]
    b2 = beta * beta
    f = np.where(distinct, (1 + b2) * tp / (np.arange(1, len(s) + 1) + b2 * y.sum()), -1.0)
    best = int(np.argmax(f))
    return float((ss[best] + (ss[best + 1] if best + 1 < len(ss) else 0.0)) / 2)


def thr_shrunk_categories_fbeta(k: float = 50.0, beta: float = 0.5) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """:func:`thr_shrunk_categories` with the unsafe cut-off at the best F-beta instead of F1.

    Why: the F1-best cut-off at BeaverTails' 57% unsafe rate flags ~half of the safe rows, which on
    out-of-domain sets with fewer unsafe rows (XSTest: 17%) becomes the false-positive rate.
    """
    def rule(Ytr, S):
        out = thr_shrunk(k)(Ytr, S)
        out[-1] = best_fbeta_threshold(Ytr[:, -1], S[:, -1], beta)
        return out
    return rule


def thr_prevalence(Ytr, S):
    return thr_shrunk(1e9)(Ytr, S)


def thr_smoothed(width: int = 5) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Threshold at the maximum of the F1-vs-number-flagged curve smoothed by a moving average."""
    def rule(Ytr, S):
        out = np.zeros(Ytr.shape[1])
        for j in range(Ytr.shape[1]):
            y, s = Ytr[:, j].astype(bool), S[:, j]
            order = np.argsort(-s, kind="stable")
            tp = np.cumsum(y[order])
            f1 = 2 * tp / (np.arange(1, len(s) + 1) + y.sum())
            w = max(1, int(width * np.sqrt(max(y.sum(), 1)) / 3))
            sm = np.convolve(f1, np.ones(w) / w, mode="same")
            best = int(np.argmax(sm))
            ss = s[order]
            out[j] = (ss[best] + ss[min(best + 1, len(ss) - 1)]) / 2
        return out
    return rule


# --------------------------------------------------------------------------------------------- variants

DEFAULT_VEC: dict = {}
WORD_ONLY = {"char_fields": []}


@dataclass
class Variant:
    name: str
    note: str
    vec: dict = field(default_factory=dict)
    head: Head = field(default_factory=lambda: Head("lr"))
    post: Post = post_identity
    thresholds: Callable = thr_f1
    c_choice: tuple[float, ...] = ()   # nested per-label C choice by inner out-of-fold log-loss
    blend: tuple = ()  # extra (vectorizer params, Head) members whose logits are averaged in
    cats_from: tuple = ()  # (vectorizer params, Head) whose logits replace the 14 category columns


def run_variant(exp: Experiment, v: Variant, with_external: bool = False) -> dict:
    """Out-of-fold scores and decisions over the outer folds, then the library's metrics."""
    n = len(exp.pairs)
    proba = np.zeros((n, len(LABELS)))
    pred = np.zeros((n, len(LABELS)), dtype=bool)
    chosen = []
    if v.c_choice:
        per_c = [exp.scores(v.vec, Head(**{**v.head.__dict__, "C": c})) for c in v.c_choice]
    else:
        per_c = [exp.scores(v.vec, v.head)]
    if v.blend:
        members = [per_c[0]] + [exp.scores(vec, head) for vec, head in v.blend]
        per_c = [[FoldScores(m[0].train, m[0].test, np.mean([x.oof for x in m], axis=0),
                             np.mean([x.test_logits for x in m], axis=0)) for m in zip(*members)]]
    cats = exp.scores(*v.cats_from) if v.cats_from else None
    for k in range(N_FOLDS):
        fs = _choose_c(per_c, k, exp.Y, chosen)
        if cats is not None:
            fs = FoldScores(fs.train, fs.test, np.hstack([cats[k].oof[:, :N_CAT], fs.oof[:, N_CAT:]]),
                            np.hstack([cats[k].test_logits[:, :N_CAT], fs.test_logits[:, N_CAT:]]))
        Ytr = exp.Y[fs.train]
        groups = prompt_groups([exp.pairs[i] for i in fs.train])
        s_tr, s_te = v.post(fs.oof, Ytr, fs.test_logits, groups)
        thr = v.thresholds(Ytr, s_tr)
        proba[fs.test] = s_te
        pred[fs.test] = s_te >= thr
    m = moderation_metrics(exp.Y[:, -1], proba, pred, exp.dataset.categories)
    if with_external and not v.c_choice:
        m["external"] = {}
        for name, (y, z, oof) in exp.external(v.vec, v.head).items():
            groups = prompt_groups(exp.pairs)
            s_tr, _ = v.post(oof, exp.Y, oof, groups)
            thr = v.thresholds(exp.Y, s_tr)[-1]
            m["external"][name] = binary_metrics(y, sigmoid(z), sigmoid(z) >= thr)
    if chosen:
        m["chosen_C"] = chosen
    return m, proba, pred


def _choose_c(per_c: list[list[FoldScores]], k: int, Y: np.ndarray, chosen: list) -> FoldScores:
    if len(per_c) == 1:
        return per_c[0][k]
    train = per_c[0][k].train
    Ytr = Y[train]
    oof = np.zeros_like(per_c[0][k].oof)
    test = np.zeros_like(per_c[0][k].test_logits)
    picks = []
    for j in range(Ytr.shape[1]):
        losses = [_logloss(Ytr[:, j], s[k].oof[:, j]) for s in per_c]
        best = int(np.argmin(losses))
        picks.append(best)
        oof[:, j], test[:, j] = per_c[best][k].oof[:, j], per_c[best][k].test_logits[:, j]
    chosen.append(picks)
    return FoldScores(train, per_c[0][k].test, oof, test)


def _logloss(y: np.ndarray, z: np.ndarray) -> float:
    p = np.clip(sigmoid(z), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def summary(m: dict) -> dict:
    cats = m["categories"]["per_category"]
    low = {c.split(",")[0]: round(v["f1"], 3) for c, v in cats.items() if v["support"] >= 40 and v["f1"] < 0.35}
    return {
        "unsafe_f1": round(m["unsafe"]["f1"], 4), "unsafe_auprc": round(m["unsafe"]["auprc"], 4),
        "unsafe_auroc": round(m["unsafe"]["auroc"], 4), "macro_f1": round(m["categories"]["macro_f1"], 4),
        **{f"unsafe_{n}": round(m["unsafe"][n], 4) for n in ("precision", "recall", "fpr")},
        "micro_f1": round(m["categories"]["micro_f1"], 4),
        "mean_cat_auprc": round(float(np.mean([v["auprc"] for v in cats.values()])), 4),
        "below_0.35_with_40+": low,
        **{f"{k}_{n}": round(v[n], 3) for k, v in m.get("external", {}).items() for n in ("auroc", "auprc", "f1", "fpr",
                                                                                 "precision", "recall")},
    }


VARIANTS: dict[str, Variant] = {}


def register(*vs: Variant) -> None:
    for v in vs:
        VARIANTS[v.name] = v


register(
    Variant("base-c4", "shipped recipe: word 1-2 prompt+response, char_wb 2-5 response, LR C=4, F1 thresholds"),
    *[Variant(f"base-c{c:g}", f"shipped features, C={c:g}", head=Head("lr", C=float(c))) for c in (1, 2, 8, 16, 32)],
    Variant("base-balanced", "shipped, class_weight=balanced", head=Head("lr", class_weight="balanced")),
    Variant("base-cnested", "shipped, C per label from {1,4,16} by inner OOF log-loss", c_choice=(1.0, 4.0, 16.0)),
    Variant("base-prev", "shipped, prevalence-matching thresholds", thresholds=thr_prevalence),
    Variant("base-shrunk50", "shipped, F1 threshold shrunk to prevalence (k=50)", thresholds=thr_shrunk(50)),
    Variant("base-shrunk200", "shipped, F1 threshold shrunk to prevalence (k=200)", thresholds=thr_shrunk(200)),
    *[Variant(f"base-shrunkcat{k}", f"shipped, category thresholds shrunk to prevalence (k={k}), unsafe F1-best",
              thresholds=thr_shrunk_categories(k)) for k in (25, 50, 100)],
    Variant("base-smooth", "shipped, smoothed F1 curve threshold", thresholds=thr_smoothed()),
    Variant("base-gate", "shipped, category prob x unsafe prob", post=post_gate),
    Variant("base-stack", "shipped + per-label stacking LR on the 15 logits", post=post_stack()),
    Variant("cond", "categories trained on unsafe rows, P(cat)=P(unsafe)P(cat|unsafe)", head=Head("cond", conditional=True)),
    Variant("nb-c4", "NB-LR (log-count ratio scaling), C=4", head=Head("nb", nb=True)),
    Variant("nb-c1", "NB-LR, C=1", head=Head("nb", nb=True, C=1.0)),
    Variant("nb-c16", "NB-LR, C=16", head=Head("nb", nb=True, C=16.0)),
    Variant("blend-lr-nb", "mean logit of LR C=4 and NB-LR C=4", blend=(({}, Head("nb", nb=True)),)),
    Variant("feat-promptchar", "+ char_wb 2-5 of the prompt", vec={"char_fields": ["prompt", "response"]}),
    Variant("feat-joint", "+ word 1-2 of joint prompt+response", vec={"word_fields": ["prompt", "response", "joint"]}),
    Variant("feat-mindf1", "min_df=1", vec={"min_df": 1}),
    Variant("feat-word13", "word 1-3 grams", vec={"word_ngram_range": [1, 3]}),
    Variant("feat-response-only", "response blocks only (no prompt)", vec={"word_fields": ["response"]}),
    Variant("word-c4", "screen: word 1-2 prompt+response only, C=4", vec=WORD_ONLY),
    Variant("word-nb-c4", "screen: word-only NB-LR C=4", vec=WORD_ONLY, head=Head("nb", nb=True)),
    Variant("word-c4-shrunkcat50", "screen: word-only LR C=4, category thresholds shrunk (k=50)", vec=WORD_ONLY,
            thresholds=thr_shrunk_categories(50)),
    Variant("word-nb-c4-shrunkcat50", "screen: word-only NB-LR C=4, category thresholds shrunk (k=50)",
            vec=WORD_ONLY, head=Head("nb", nb=True), thresholds=thr_shrunk_categories(50)),
)
# The shipped threshold rule on each candidate base model: reuses the cached logits, so it costs ~0.1 s once
# the plain variant has run.
SHRUNK_COUNTERPARTS = ("base-c1", "base-c16", "base-balanced", "base-cnested", "feat-promptchar", "feat-joint",
                       "feat-mindf1", "feat-word13")
register(Variant("mix-promptchar-cats-shrunkcat50", "categories from feat-promptchar, unsafe head from base-c4; "
                 "category thresholds shrunk (k=50)", cats_from=({"char_fields": ["prompt", "response"]}, Head("lr")),
                 thresholds=thr_shrunk_categories(50)))
register(*[replace(VARIANTS[name], name=f"{name}-shrunkcat50", thresholds=thr_shrunk_categories(50),
                   note=f"{VARIANTS[name].note}; category thresholds shrunk (k=50)")
           for name in SHRUNK_COUNTERPARTS])

# Prompt down-weighting (session 2): the prompt word block scaled by alpha, shipped threshold rule. BeaverTails
# prompts are all red-team questions, so prompt n-grams push every answer toward "unsafe"; alpha = 1 is
# base-shrunkcat50, alpha = 0 is the response-only feature set.
PROMPT_WEIGHTS = (0.5, 0.25, 0.0)
register(*[Variant(f"pw{a:g}-shrunkcat50", f"prompt word block x {a:g}; category thresholds shrunk (k=50)",
                   vec={"prompt_weight": a}, thresholds=thr_shrunk_categories(50)) for a in PROMPT_WEIGHTS])
# Only the unsafe head down-weights the prompt; the 14 category heads keep the shipped features (a harm category
# is largely the topic of the question). Folds into the (n_features, 15) weights, so the model format would not
# change.
register(Variant("pw0.5-unsafe-shrunkcat50", "unsafe head: prompt word block x 0.5; categories: shipped features; "
                 "category thresholds shrunk (k=50)", vec={"prompt_weight": 0.5}, cats_from=({}, Head("lr")),
                 thresholds=thr_shrunk_categories(50)))
# Control for the prompt-weight result: the shipped features with a precision-leaning unsafe cut-off (F0.5).
register(Variant("base-f0.5-shrunkcat50", "shipped features; unsafe threshold F0.5-best; category thresholds "
                 "shrunk (k=50)", thresholds=thr_shrunk_categories_fbeta(50, 0.5)))


def operating_points(exp: Experiment, names: list[str]) -> None:
    """Separate ranking from cut-off on the external sets: the unsafe threshold each variant tunes, the FPR at a
    recall shared by all variants, and the best F1 any cut-off reaches with FPR <= 0.15 (hindsight, on the
    external labels: a ceiling, not a result). Plus the unsafe AUPRC of each outer fold (its spread is the noise)."""
    for name in names:
        v = VARIANTS[name]
        ext = exp.external(v.vec, v.head)
        oof = next(iter(ext.values()))[2]
        s_tr, _ = v.post(oof, exp.Y, oof, prompt_groups(exp.pairs))
        thr = v.thresholds(exp.Y, s_tr)[-1]
        row = {"variant": name, "unsafe_threshold": round(float(thr), 3)}
        for set_name, (y, z, _) in ext.items():
            row[set_name] = _external_operating_points(y.astype(bool), sigmoid(z), 0.82 if set_name == "xstest" else 0.70)
        row["fold_auprc"] = [round(float(_auprc(exp.Y[f.test, -1], f.test_logits[:, -1])), 3)
                             for f in exp.scores(v.vec, v.head)]
        print(json.dumps(row))


def _auprc(y: np.ndarray, s: np.ndarray) -> float:
    return binary_metrics(y, s, s >= 0)["auprc"]


def _external_operating_points(y: np.ndarray, p: np.ndarray, recall: float) -> dict:
    order = np.sort(p[y])[::-1]
    cut = order[int(np.ceil(recall * y.sum())) - 1]
    best_f1, best_fpr = 0.0, None
    for t in np.unique(p):
        flag = p >= t
        fpr = (flag & ~y).sum() / (~y).sum()
        f1 = 2 * (flag & y).sum() / (flag.sum() + y.sum())
        if fpr <= 0.15 and f1 > best_f1:
            best_f1, best_fpr = f1, fpr
    return {f"fpr_at_recall_{recall}": round(float(((p >= cut) & ~y).sum() / (~y).sum()), 3),
            "hindsight_best_f1_fpr_le_0.15": round(float(best_f1), 3),
            "its_fpr": None if best_fpr is None else round(float(best_fpr), 3)}


def report_table() -> str:
    """Markdown table of the latest run of every variant in runs.jsonl (the experiment log's numbers)."""
    latest: dict[str, dict] = {}
    for line in RUNS.read_text().splitlines():
        row = json.loads(line)
        latest[(row["variant"], row["fraction"])] = row
    head = ("| variant | change | unsafe F1 | AUPRC | AUROC | macro-F1 | micro-F1 | mean cat AUPRC | "
            "F1 < 0.35 (>= 40 positives) | SafeRLHF AUROC | XSTest F1 / FPR |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in latest.values():
        low = ", ".join(f"{k} {v:.2f}" for k, v in row["below_0.35_with_40+"].items()) or "none"
        ext = (f"{row['saferlhf_auroc']:.3f} | {row['xstest_f1']:.3f} / {row['xstest_fpr']:.3f}"
               if "saferlhf_auroc" in row else " | ")
        lines.append(f"| {row['variant']} | {row['note']} | {row['unsafe_f1']:.3f} | {row['unsafe_auprc']:.3f} | "
                     f"{row['unsafe_auroc']:.3f} | {row['macro_f1']:.3f} | {row['micro_f1']:.3f} | "
                     f"{row['mean_cat_auprc']:.3f} | {low} | {ext} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--table", action="store_true", help="print the Markdown table of every logged run")
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--external", action="store_true", help="also fit on all rows and score the external sets")
    ap.add_argument("--operating-points", action="store_true",
                    help="external-set threshold diagnostics of the given variants (prints, logs nothing)")
    args = ap.parse_args(argv)
    if args.table:
        print(report_table())
        return
    if args.list:
        for v in VARIANTS.values():
            print(f"{v.name:20s} {v.note}")
        return
    exp = Experiment(fraction=args.fraction)
    if args.operating_points:
        operating_points(exp, args.variants)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        v = VARIANTS[name]
        t0 = time.perf_counter()
        m, _, _ = run_variant(exp, v, args.external)
        row = {"variant": name, "note": v.note, "fraction": args.fraction, **summary(m),
               "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), flush=True)
        with RUNS.open("a") as fh:
            fh.write(json.dumps({**row, "per_category_f1": {c.split(",")[0]: round(x["f1"], 3) for c, x in
                                                            m["categories"]["per_category"].items()}}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
