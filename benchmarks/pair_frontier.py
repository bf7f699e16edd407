"""Can one pair cut-off meet issue 20's pair targets together? BeaverTails CV F1 against XSTest's false flags.

    python benchmarks/pair_frontier.py [--setting SCALE:CHAR_WEIGHT[:NB_POWER[:PROMPT_WEIGHT]] ...]   # ~1.5 min a setting

Issue 20 asks, for pairs: BeaverTails CV unsafe F1 >= 0.75 and AUPRC >= 0.835, XSTest-response F1 >= 0.50 with
FPR <= 0.35, SafeRLHF AUROC >= 0.62. The shipped `default` misses the last two. This script rebuilds the shipped
recipe's pair rows (``sources.build_training_set`` on the card's ``--data`` list: BeaverTails pairs plus the
instruction and chit-chat pairs) and fits the pair side alone as the model does (``pair_prompt`` word 1-2,
``pair_response`` word 1-2 and char_wb 2-5 TF-IDF blocks, 50,000 terms each, liblinear dual logistic regression,
C=4, source weights): in the shipped model these blocks are zero on every single message, so the pair side is this
model plus a shared intercept. Only the unsafe head. 5 folds grouped by prompt give out-of-fold scores; the cut-off
is their F1-best point over every pair, weighted, as the shipped model's is tuned.

Reported: BeaverTails out-of-fold F1 (at that cut-off), AUPRC and AUROC; XSTest and SafeRLHF (never trained on)
at that cut-off; and at the cut-off that holds XSTest's FPR at 0.35 (chosen on XSTest: what is reachable, not a
shippable cut-off) the BeaverTails F1 and XSTest F1 then reached. A setting ``SCALE:CHAR_WEIGHT`` multiplies the weight
of the non-BeaverTails pairs by SCALE (0: BeaverTails pairs only; the shipped default's ``pair_weight`` options are
0.3 of its sources' weights) and weighs the character block by CHAR_WEIGHT while fitting (``--char-weight``; the
shipped default: 1.5); NB_POWER weighs the features by their Naive-Bayes log-count ratio to that power
(``--nb-power``; the shipped default weighs its message side so, at 0.5, not its pairs); PROMPT_WEIGHT weighs the
``pair_prompt`` word block so while fitting (a knob of this harness only, default 1: does leaning on the answer rather
than the question spare XSTest's harmless answers to scary-sounding questions?); C is the regression's inverse
penalty (the model's: 4). Writes
``benchmarks/results/pair_frontier.json`` and ``.md``; ``--setting`` reruns the named settings and keeps the others.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time

import numpy as np
from _common import SHARED_DATA, kept_results, write_results
from message_recipes import f1_best_cut, fit_flag_head, recipe_sources
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GroupKFold

import lite_moderation as lm
from lite_moderation.features import QAVectorizer
from lite_moderation.sources import build_training_set

EXTERNAL = SHARED_DATA / "external"


def fit(pairs: list, y: np.ndarray, w: np.ndarray, char_weight: float, nb_power: float, prompt_weight: float = 1.0,
        c: float = 4.0):
    vectorizer = QAVectorizer(word_fields=("pair_prompt", "pair_response"), char_fields=("pair_response",),
                              max_features=50000)
    return fit_flag_head(vectorizer, pairs, y, w, char_weight, nb_power, c, word_weights={"pair_prompt": prompt_weight})


#: (auxiliary pairs' weight scale, character block weight, Naive-Bayes power): the recipe before (1, 1, 0), the
#: shipped one (0.3, 1.5, 0), and the Naive-Bayes weighting the message side ships with, tried on the pairs
SETTINGS = [(1.0, 1.0, 0.0, 1.0, 4.0), (0.3, 1.0, 0.0, 1.0, 4.0), (0.0, 1.0, 0.0, 1.0, 4.0), (0.3, 1.5, 0.0, 1.0, 4.0),
            (0.0, 1.5, 0.0, 1.0, 4.0), (0.3, 1.5, 0.5, 1.0, 4.0)]


def _setting(text: str) -> tuple[float, float, float, float, float]:
    scale, char_weight, nb_power, prompt_weight, c = [*text.split(":"), "", "", "", ""][:5]
    return float(scale), float(char_weight or 1.0), float(nb_power or 0.0), float(prompt_weight or 1.0), float(c or 4.0)


def _key(result: dict) -> tuple[float, float, float, float, float]:
    return (result["auxiliary_scale"], result["char_weight"], result.get("nb_power", 0.0),
            result.get("prompt_weight", 1.0), result.get("c", 4.0))


def f1(flagged: np.ndarray, unsafe: np.ndarray) -> float:
    return float(2 * (flagged & unsafe).sum() / (flagged.sum() + unsafe.sum()))


@functools.lru_cache(maxsize=1)
def training_set():
    """The shipped recipe's training set with every source's pairs at its plain weight (the settings scale them)."""
    return build_training_set([dataclasses.replace(spec, pair_weight=None) for spec in recipe_sources()],
                              shapes=("pair", "text"), seed=0)


def measure(scale: float, char_weight: float, nb_power: float, prompt_weight: float = 1.0, c: float = 4.0) -> dict:
    start = time.time()
    ts = training_set()
    is_pair = np.array([not isinstance(p, str) and bool(p[0] and p[1]) for p in ts.pairs])
    rows = np.flatnonzero(is_pair & (ts.primary | (scale > 0)))
    pairs, y, groups, primary = [ts.pairs[i] for i in rows], ts.Y[rows, -1], ts.groups[rows], ts.primary[rows]
    w = np.where(primary, ts.weights[rows], ts.weights[rows] * scale)
    oof = np.zeros(len(pairs))
    for train, test in GroupKFold(5).split(pairs, y, groups):
        oof[test] = fit([pairs[i] for i in train], y[train], w[train], char_weight, nb_power, prompt_weight, c)(
            [pairs[i] for i in test])
    cut = f1_best_cut(y, oof, w)
    bt_y, bt_s = y[primary], oof[primary]
    score = fit(pairs, y, w, char_weight, nb_power, prompt_weight, c)
    result = {"auxiliary_scale": scale, "char_weight": char_weight, "nb_power": nb_power, "prompt_weight": prompt_weight, "c": c, "cut_off": round(cut, 4), "beavertails_cv": {
        "f1": round(f1(bt_s >= cut, bt_y), 4), "auprc": round(float(average_precision_score(bt_y, bt_s)), 4),
        "auroc": round(float(roc_auc_score(bt_y, bt_s)), 4)}}
    xstest = None
    for name in ("xstest_response_harmful", "saferlhf_2000"):
        dataset = lm.load_dataset(str(EXTERNAL / f"{name}.jsonl"))
        unsafe, s = np.asarray(dataset.unsafe_labels()), score(list(dataset.pairs))
        result[name] = {"auroc": round(float(roc_auc_score(unsafe, s)), 4), "f1": round(f1(s >= cut, unsafe), 4),
                        "fpr": round(float((s[~unsafe] >= cut).mean()), 4)}
        if name.startswith("xstest"):
            xstest = (unsafe, s)
    unsafe, s = xstest
    at = float(np.quantile(s[~unsafe], 0.65))
    result["xstest_fpr_0.35"] = {"cut_off": round(at, 4), "beavertails_cv_f1": round(f1(bt_s >= at, bt_y), 4),
                                 "xstest_f1": round(f1(s >= at, unsafe), 4)}
    result["seconds"] = round(time.time() - start)
    print(json.dumps(result), flush=True)
    return result


def markdown(results: list[dict]) -> str:
    lines = ["# Pair-side trade-off of `default` (issue 20)", "",
             "`python benchmarks/pair_frontier.py` (unsafe head of the pair blocks alone; see the script's docstring).",
             "", ("| auxiliary pairs' weight x | char weight | Naive-Bayes power | prompt weight | C | cut-off | BT CV F1 / AUPRC / AUROC | XSTest F1 / FPR / AUROC | "
                  "SafeRLHF AUROC | at XSTest FPR 0.35: cut-off, BT CV F1, XSTest F1 |"), "|---|---:|---:|---:|---:|---:|---|---|---:|---|"]
    for r in results:
        bt, xs, at = r["beavertails_cv"], r["xstest_response_harmful"], r["xstest_fpr_0.35"]
        lines.append(f"| {r['auxiliary_scale']:g} | {r['char_weight']:g} | {r.get('nb_power', 0.0):g} | {r.get('prompt_weight', 1.0):g} | {r.get('c', 4.0):g} | {r['cut_off']:.3f} | {bt['f1']:.3f} / {bt['auprc']:.3f} / "
                     f"{bt['auroc']:.3f} | {xs['f1']:.3f} / {xs['fpr']:.3f} / {xs['auroc']:.3f} | "
                     f"{r['saferlhf_2000']['auroc']:.3f} | {at['cut_off']:.3f}, {at['beavertails_cv_f1']:.3f}, "
                     f"{at['xstest_f1']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", type=_setting, nargs="+", default=SETTINGS,
                        help="SCALE:CHAR_WEIGHT[:NB_POWER[:PROMPT_WEIGHT[:C]]], e.g. 0.3:1.5 or 0.3:1.5:0:1:8")
    args = parser.parse_args()
    measured = {setting: measure(*setting) for setting in args.setting}
    kept = kept_results("pair_frontier", measured, key=_key)
    order = {setting: i for i, setting in enumerate(SETTINGS)}
    results = sorted(kept.values(), key=lambda r: (order.get(_key(r), len(order)), _key(r)))
    write_results("pair_frontier", results, markdown(results))


if __name__ == "__main__":
    main()
