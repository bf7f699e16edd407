"""The quality benchmark: our grouped CV on BeaverTails 30k_test beside published transformer moderators.

One command regenerates ``benchmarks/results/quality.md``, ``quality.json`` and the PNG plots:

    python benchmarks/quality.py [--recipe default|<candidate in recipes.py>]

It measures (all with the library's own ``grouped_folds`` / ``cross_validate`` / ``moderation_metrics``):
- 5-fold CV grouped by prompt (seed 0): unsafe F1/precision/recall/FPR/AUPRC/AUROC and per-category F1;
- the external sets (SafeRLHF-2000, XSTest-response) with the model trained on all of 30k_test, at its
  tuned thresholds;
- operating points and presets: the unsafe head at each fold model's "strict" cut-off (best F0.5) beside its
  default (best F1), for this recipe and for the shipped "fast" preset, in CV and on the external sets;
- a learning curve: the same CV with 10%..100% of each training fold (whole prompt groups kept);
- all-MiniLM-L6-v2 + LR on the same folds and sets, read from ``minilm.json`` (benchmarks/minilm_baseline.py);
- GuardReasoner 1B/3B/8B (reasoning guards, verdicts from ../shared/reference/peers/) beside our shipped models on
  the identical 446 XSTest-response rows, with 95% group-bootstrap intervals, paired differences and McNemar's
  exact test (``lite_moderation.compare``): ``quality_peers.md``, ``.json``, ``.png``. Only that part:
  ``python benchmarks/quality.py --peers-only``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.metrics import precision_recall_curve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_figure, write_text
from recipes import build

from lite_moderation import cross_validate, default_estimator, evaluate, load, load_dataset
from lite_moderation.compare import System, compare_systems, comparison_tables, plot_curves, read_system
from lite_moderation.evaluation import evaluate_rows, grouped_folds
from lite_moderation.metrics import moderation_metrics
from lite_moderation.model import prompt_groups
from lite_moderation.stats import Bootstrap
from lite_moderation.tables import render_all
from lite_moderation.taxonomy import CATEGORIES, short_name

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TRAIN = DATA / "beavertails" / "30k_test.jsonl"
EXTERNAL = {
    "SafeRLHF-2000": DATA / "external" / "saferlhf_2000.jsonl",
    "XSTest-response": DATA / "external" / "xstest_response_harmful.jsonl",
}
RESULTS = ROOT / "benchmarks" / "results"
PEERS = ROOT.parent / "shared" / "reference" / "peers" / "xstest_response_harmful.guardreasoner.jsonl"
PEER_NAMES = ("GuardReasoner-1B", "GuardReasoner-3B", "GuardReasoner-8B")
SHIPPED = ("default", "fast", "beavertails")
FOLDS, SEED = 5, 0
FRACTIONS = (0.1, 0.25, 0.5, 1.0)

#: Published unsafe-response F1 on BeaverTails 30k test (../shared/reference/published_results.md).
PUBLISHED = [
    ("Beaver-Dam-7B", "7B", 0.899, None, None, "WildGuard paper arXiv 2406.18495 Table 3 (second-hand)",
     "trained on BeaverTails 330k train; evaluated on the 30k test split, no CV"),
    ("MD-Judge-v0.1", "7B", 0.866, None, None, "MD-Judge model card (read directly)",
     "fine-tuned on its own safety mix; whole 30k test, no CV"),
    ("MD-Judge-v0.1", "7B", 0.849, 0.098, None, "Llama Guard 2 model card Table 3/4 (read directly)",
     "Meta's own re-split of BeaverTails 30k"),
    ("Llama Guard 2 (fine-tuned on BeaverTails train)", "8B", 0.852, 0.101, None,
     "Llama Guard 2 model card Table 4 (read directly)", "Meta's re-split; trained on the 27k train split"),
    ("GPT-4 (prompted judge)", "-", 0.842, None, None, "MD-Judge model card (read directly)",
     "zero-shot prompt, whole 30k test"),
    ("GPT-4 (prompted judge)", "-", 0.802, 0.256, None, "Llama Guard 2 model card Table 3 (read directly)",
     "zero-shot, Meta's re-split"),
    ("WildGuard", "7B", 0.844, None, None, "WildGuard paper Table 3 (second-hand)", "zero-shot on BeaverTails"),
    ("Qwen3Guard-8B (strict)", "8B", 0.866, None, None, "Qwen3Guard report arXiv 2510.14276 Table 3 (second-hand)",
     "zero-shot on BeaverTails"),
    ("Granite Guardian 8B", "8B", 0.776, None, 0.895, "Granite Guardian arXiv 2412.07724 Table 7 (second-hand)",
     "zero-shot on BeaverTails"),
    ("Llama Guard 2", "8B", 0.736, 0.059, None, "Llama Guard 2 model card Table 3 (read directly)",
     "zero-shot, its own policy, Meta's re-split"),
    ("Llama Guard 3 8B", "8B", 0.677, None, 0.831, "Granite Guardian Table 7 (second-hand)", "zero-shot"),
    ("Llama Guard (1)", "7B", 0.599, 0.035, None, "Llama Guard 2 model card Table 3 (read directly)",
     "zero-shot, its own policy"),
    ("ShieldGemma 27B", "27B", 0.513, None, 0.757, "Granite Guardian Table 7 (second-hand)", "zero-shot"),
    ("OpenAI Moderation API", "-", 0.284, 0.056, None, "Llama Guard 2 model card Table 3 (read directly)",
     "zero-shot, other policy"),
    ("Keyword matching", "-", 0.012, None, None, "MD-Judge model card (read directly)", "-"),
]


def learning_curve(estimator, dataset, folds, full_cv) -> list[dict]:
    """CV metrics when each training fold keeps only a fraction of its prompt groups (seeded); the 100%
    point is the full cross-validation already run."""
    pairs, Y = dataset.pairs, dataset.y
    out = []
    for frac in FRACTIONS:
        if frac >= 1.0:
            m = full_cv.metrics
            out.append({"fraction": 1.0, "mean_train_rows": float(np.mean([len(tr) for tr, _ in folds])),
                        "unsafe_f1": m["unsafe"]["f1"], "unsafe_auprc": m["unsafe"]["auprc"],
                        "macro_f1": m["categories"]["macro_f1"]})
            continue
        proba, pred = np.zeros(Y.shape), np.zeros(Y.shape, dtype=bool)
        n_train = []
        for train, test in folds:
            train = _subsample(pairs, train, frac)
            n_train.append(len(train))
            model = clone(estimator).fit([pairs[i] for i in train], Y[train])
            proba[test] = model.predict_proba([pairs[i] for i in test])
            pred[test] = proba[test] >= model.thresholds_
        m = moderation_metrics(Y[:, -1], proba, pred, dataset.categories)
        out.append({"fraction": frac, "mean_train_rows": float(np.mean(n_train)), "unsafe_f1": m["unsafe"]["f1"],
                    "unsafe_auprc": m["unsafe"]["auprc"], "macro_f1": m["categories"]["macro_f1"]})
        print(f"  learning curve {frac:.0%}: {out[-1]}", file=sys.stderr, flush=True)
    return out


def _subsample(pairs, train: np.ndarray, frac: float) -> np.ndarray:
    if frac >= 1.0:
        return train
    groups = prompt_groups([pairs[i] for i in train])
    order = np.random.default_rng(SEED).permutation(np.unique(groups))
    keep = np.isin(groups, order[: max(2, round(frac * len(order)))])
    return train[keep]


def extrapolate(curve: list[dict], key: str, rows: float) -> float:
    """Fit metric = a + b*log(rows) to the curve and read it at ``rows`` (a log-linear extrapolation)."""
    x = np.log([c["mean_train_rows"] for c in curve])
    b, a = np.polyfit(x, [c[key] for c in curve], 1)
    return float(min(1.0, a + b * np.log(rows)))


def plots(cv, curve, minilm, extrap) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    # per-category F1
    cats = cv["metrics"]["categories"]["per_category"]
    labels = [f"{short_name(c)} ({cats[c]['support']})" for c in CATEGORIES]
    fig, ax = plt.subplots(figsize=(9, 5))
    y = np.arange(len(CATEGORIES))
    ax.barh(y - 0.2, [cats[c]["f1"] for c in CATEGORIES], 0.4, label="lite-moderation (TF-IDF + LR)")
    if minilm:
        mc = minilm["cv"]["categories"]["per_category"]
        ax.barh(y + 0.2, [mc[c]["f1"] for c in CATEGORIES], 0.4, label="all-MiniLM-L6-v2 + LR")
    ax.axvline(0.35, color="grey", ls="--", lw=1)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("F1 (5-fold grouped CV on 30k_test; support in brackets)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, RESULTS / "quality_category_f1.png", 110)
    names.append("quality_category_f1.png")
    # PR curve of the unsafe head
    fig, ax = plt.subplots(figsize=(6, 5))
    p, r, _ = precision_recall_curve(cv["unsafe_true"], cv["unsafe_scores"])
    u = cv["metrics"]["unsafe"]
    ax.plot(r, p, label=f"lite-moderation (AUPRC {u['auprc']:.3f})")
    ax.plot([u["recall"]], [u["precision"]], "o", label=f"tuned operating point (F1 {u['f1']:.3f})")
    if minilm and "pr" in minilm:
        ax.plot(minilm["pr"]["recall"], minilm["pr"]["precision"], label="MiniLM + LR")
    ax.axhline(np.mean(cv["unsafe_true"]), color="grey", ls=":", lw=1, label="base rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("unsafe head, out-of-fold (5-fold grouped CV)")
    ax.legend(loc="lower left")
    fig.tight_layout()
    save_figure(fig, RESULTS / "quality_unsafe_pr.png", 110)
    names.append("quality_unsafe_pr.png")
    if not curve:
        plt.close("all")
        return names
    # learning curve
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    x = [c["mean_train_rows"] for c in curve]
    for key, label in (("unsafe_f1", "unsafe F1"), ("macro_f1", "14-category macro-F1")):
        line, = ax.plot(x, [c[key] for c in curve], "o-", label=label)
        ex = [x[-1], 27186, 300567]
        ax.plot(ex, [curve[-1][key], extrap[key]["27k"], extrap[key]["300k"]], "--", color=line.get_color(),
                alpha=0.6, label=f"{label}: log-linear extrapolation (not measured)")
    ax.set_xscale("log")
    ax.set_xlabel("training rows (per fold)")
    ax.set_ylabel("CV score")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, RESULTS / "quality_learning_curve.png", 110)
    names.append("quality_learning_curve.png")
    plt.close("all")
    return names


def operating_point_rows(name: str, estimator, dataset, cv=None) -> list[dict]:
    """The unsafe head of ``estimator`` at its "default" and "strict" cut-offs: grouped CV (each row judged at its
    own fold model's cut-off) and the external sets (model trained on all of 30k_test)."""
    cv = cv if cv is not None else cross_validate(dataset, FOLDS, SEED, estimator=estimator)
    model = clone(estimator).fit(dataset.pairs, dataset.y)
    rows = []
    for point in ("default", "strict"):
        cut = np.array([cv.operating_points[k][point] for k in cv.fold_of_row])
        predicted = cv.predicted.copy()
        predicted[:, -1] = cv.proba[:, -1] >= cut
        metrics = moderation_metrics(dataset.y[:, -1], cv.proba, predicted, dataset.categories)
        external = {set_name: evaluate(model, load_dataset(path), threshold=point)["unsafe"]
                    for set_name, path in EXTERNAL.items()}
        rows.append({"preset": name, "operating_point": point, "threshold_all_rows": model.operating_points_[point],
                     "cv_unsafe": metrics["unsafe"], "external": external})
    return rows


def fmt(x) -> str:
    return "" if x is None else f"{x:.3f}"


def markdown(result: dict) -> str:
    cv = result["cv"]
    u = cv["unsafe"]
    mini = result.get("minilm")
    lines = [
        "# Quality: lite-moderation beside published transformer moderators",
        "",
        f"Command: `{result['command']}` ({result['seconds']:.0f} s on a shared 2-core machine).",
        f"Recipe: `{result['recipe']}` — {result['recipe_params']}.",
        "",
        "## Unsafe-response detection on BeaverTails 30k_test",
        "",
        "Ours: 5-fold cross-validation grouped by prompt (seed 0), each fold's thresholds tuned inside its",
        "training part; every row is scored by a model that never saw its prompt. The published figures score",
        "the whole 30k_test (or a re-split) with models trained on other data: they are reference points, not",
        "measurements on identical data.",
        "",
        "| model | params | unsafe F1 | FPR | AUPRC | AUROC | source | setup difference |",
        "|---|---|---|---|---|---|---|---|",
        (f"| **lite-moderation (TF-IDF + LR), this repo** | linear, {result['n_features']:,} features | "
         f"**{u['f1']:.3f}** | {u['fpr']:.3f} | {u['auprc']:.3f} | {u['auroc']:.3f} | measured here | "
         "5-fold grouped CV on 30k_test (trained on ~2.4k rows per fold) |"),
    ]
    if mini:
        mu = mini["cv"]["unsafe"]
        lines.append(f"| all-MiniLM-L6-v2 + LR, measured here | 22M + linear | {mu['f1']:.3f} | {mu['fpr']:.3f} | "
                     f"{mu['auprc']:.3f} | {mu['auroc']:.3f} | measured here | identical folds and thresholds rule |")
    for name, params, f1, fpr, auc, source, diff in PUBLISHED:
        lines.append(f"| {name} | {params} | {f1:.3f} | {fmt(fpr)} | | {fmt(auc)} | {source} | {diff} |")
    cats = cv["categories"]
    lines += ["", "## Harm categories (same CV)", "",
              f"Macro-F1 over the 14 categories: **{cats['macro_f1']:.3f}** (micro-F1 {cats['micro_f1']:.3f})"
              + (f"; MiniLM + LR: {mini['cv']['categories']['macro_f1']:.3f}." if mini else "."), "",
              "| category | support | F1 | precision | recall | AUPRC |" + (" MiniLM F1 |" if mini else ""),
              "|---|---|---|---|---|---|" + ("---|" if mini else "")]
    for c in CATEGORIES:
        m = cats["per_category"][c]
        row = f"| {short_name(c)} | {m['support']} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | " \
              f"{fmt(m['auprc'])} |"
        if mini:
            row += f" {mini['cv']['categories']['per_category'][c]['f1']:.3f} |"
        lines.append(row)
    lines += ["", "![per-category F1](quality_category_f1.png) ![unsafe PR curve](quality_unsafe_pr.png)", "",
              "## External sets (model trained on all of 30k_test, at its tuned thresholds)", "",
              "| set | rows | F1 | precision | recall | FPR | AUROC | AUPRC |" + (" MiniLM F1 / FPR / AUROC |" if mini else ""),
              "|---|---|---|---|---|---|---|---|" + ("---|" if mini else "")]
    for name, m in result["external"].items():
        e = m["unsafe"]
        row = f"| {name} | {m['n']} | {e['f1']:.3f} | {e['precision']:.3f} | {e['recall']:.3f} | {e['fpr']:.3f} | " \
              f"{e['auroc']:.3f} | {e['auprc']:.3f} |"
        if mini:
            me = mini["external"][_minilm_key(name)]
            row += f" {me['f1']:.3f} / {me['fpr']:.3f} / {me['auroc']:.3f} |"
        lines.append(row)
    lines += operating_points_markdown(result.get("operating_points", []))
    if result.get("peers"):
        lines += ["", "## Transformer guards on identical rows (XSTest-response)", "",
                  "GuardReasoner 1B/3B/8B and our shipped models on the same 446 rows, with 95% bootstrap intervals,",
                  "paired differences and McNemar's test: see [quality_peers.md](quality_peers.md)."]
    if not result["learning_curve"]:
        return "\n".join(lines + ["", "(learning curve skipped: --no-learning-curve)", ""])
    lines += ["", "## Learning curve (what more data buys)", "",
              "| share of each training fold | mean training rows | unsafe F1 | unsafe AUPRC | macro-F1 |",
              "|---|---|---|---|---|"]
    for c in result["learning_curve"]:
        lines.append(f"| {c['fraction']:.0%} | {c['mean_train_rows']:.0f} | {c['unsafe_f1']:.3f} | "
                     f"{c['unsafe_auprc']:.3f} | {c['macro_f1']:.3f} |")
    ex = result["extrapolation"]
    lines += ["", "**Extrapolation, not a measurement**: a straight line in log(training rows) fitted to the points",
              (f"above reads unsafe F1 ≈ {ex['unsafe_f1']['27k']:.2f} at the 27k train split and "
               f"≈ {ex['unsafe_f1']['300k']:.2f} at 300k; macro-F1 ≈ {ex['macro_f1']['27k']:.2f} / "
               f"{ex['macro_f1']['300k']:.2f}. Linear models usually flatten earlier than a log-linear fit assumes,"),
              "and the 30k_test rows are not the train split's distribution, so treat these as optimistic bounds.",
              "", "![learning curve](quality_learning_curve.png)", ""]
    return "\n".join(lines)


def operating_points_markdown(points: list[dict]) -> list[str]:
    if not points:
        return []
    lines = ["", "## Operating points and presets (unsafe head)", "",
             ("`default` = the F1-best cut-off, `strict` = the F0.5-best one (precision weighs more), both tuned on "
             "out-of-fold predictions of the training data (`--threshold strict`). CV rows: each row judged at its own "
             "fold model's cut-off; external rows: the model trained on all of 30k_test."), "",
             ("| preset | point | cut-off (all rows) | CV F1 | CV precision | CV recall | CV FPR | SafeRLHF F1 / FPR "
             "| XSTest F1 / FPR |"), "|---|---|---|---|---|---|---|---|---|"]
    for row in points:
        u, ext = row["cv_unsafe"], row["external"]
        s, x = ext["SafeRLHF-2000"], ext["XSTest-response"]
        lines.append(f"| {row['preset']} | {row['operating_point']} | {row['threshold_all_rows']:.3f} | {u['f1']:.3f} "
                     f"| {u['precision']:.3f} | {u['recall']:.3f} | {u['fpr']:.3f} | {s['f1']:.3f} / {s['fpr']:.3f} "
                     f"| {x['f1']:.3f} / {x['fpr']:.3f} |")
    return lines


def _minilm_key(name: str) -> str:
    return {"SafeRLHF-2000": "saferlhf_2000", "XSTest-response": "xstest_response"}[name]


def peer_comparison() -> dict:
    """Our shipped models (default and strict points) and GuardReasoner 1B/3B/8B on the identical XSTest-response
    rows: metrics with group-bootstrap intervals, ours-vs-theirs paired differences and McNemar's exact test."""
    dataset = load_dataset(EXTERNAL["XSTest-response"])
    ours = []
    for name in SHIPPED:
        model = load(name)
        for point in ("default", "strict"):
            _, proba, predicted, _ = evaluate_rows(model, dataset, threshold=point)
            ours.append(System(f"{name} ({point})", np.arange(len(dataset)), proba[:, -1], predicted[:, -1],
                               source=f"lite_moderation shipped model {name}, --threshold {point}"))
    theirs = [read_system(PEERS, name, dataset) for name in PEER_NAMES]
    comparison = compare_systems(dataset, ours + theirs, Bootstrap(1000, SEED))
    summary = comparison.summary
    ours_names = {s.name for s in ours}
    summary["differences"] = [d for d in summary["differences"] if (d["a"] in ours_names) != (d["b"] in ours_names)]
    summary["data"] = "../shared/data/external/xstest_response_harmful.jsonl"
    for entry in summary["systems"]:
        entry["source"] = entry["source"].replace(str(PEERS.parent.parent.parent), "../shared")
    plot_curves(comparison, RESULTS / "quality_peers.png")
    return summary


def peers_markdown(summary: dict) -> str:
    lines = ["# Transformer guards on identical rows: GuardReasoner 1B/3B/8B beside lite-moderation", "",
             "Command: `python benchmarks/quality.py --peers-only` (also part of `python benchmarks/quality.py`).",
             "Data: XSTest-response, all 446 rows (78 unsafe), the same rows for every system. GuardReasoner's",
             "verdicts are its authors' published generations (../shared/reference/peers/README.md: arXiv 2501.18492;",
             "fine-tuned Llama 3.2 1B/3B and Llama 3.1 8B, trained on BeaverTails' train split among others, run on",
             "GPUs); it gives verdicts only, so it has no AUPRC/AUROC. Ours: the shipped models at their default and",
             "strict operating points, trained without any XSTest row.", "",
             render_all(comparison_tables(summary), "markdown"),
             "![PR and ROC curves](quality_peers.png)", "",
             ("Equivalent CLI: `lite-moderation evaluate --model NAME [--threshold strict] --data XSTEST --predictions "
             "ours.jsonl`, then `lite-moderation compare --data XSTEST --system ours=ours.jsonl --system "
             "GuardReasoner-8B=../shared/reference/peers/xstest_response_harmful.guardreasoner.jsonl`."), ""]
    return "\n".join(lines)


def write_peers(summary: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / "quality_peers.json", json.dumps(summary, indent=2) + "\n")
    write_text(RESULTS / "quality_peers.md", peers_markdown(summary))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--no-learning-curve", action="store_true")
    ap.add_argument("--peers-only", action="store_true", help="Only the GuardReasoner comparison (seconds).")
    args = ap.parse_args(argv)
    print("GuardReasoner on identical XSTest rows...", file=sys.stderr, flush=True)
    peers = peer_comparison()
    write_peers(peers)
    if args.peers_only:
        print((RESULTS / "quality_peers.md").read_text())
        return
    t0 = time.perf_counter()
    estimator = build(args.recipe)
    dataset = load_dataset(TRAIN, require="categories")
    folds = grouped_folds(dataset.pairs, FOLDS, SEED)
    print("cross-validation...", file=sys.stderr, flush=True)
    cv = cross_validate(dataset, FOLDS, SEED, estimator=estimator)
    print("training on all rows...", file=sys.stderr, flush=True)
    model = clone(estimator).fit(dataset.pairs, dataset.y)
    external = {name: evaluate(model, load_dataset(path)) for name, path in EXTERNAL.items()}
    print("operating points and the fast preset...", file=sys.stderr, flush=True)
    points = (operating_point_rows(args.recipe, estimator, dataset, cv)
              + operating_point_rows("fast preset", default_estimator(preset="fast"), dataset))
    curve = learning_curve(estimator, dataset, folds, cv) if not args.no_learning_curve else []
    extrap = {k: {"27k": extrapolate(curve, k, 27186), "300k": extrapolate(curve, k, 300567)}
              for k in ("unsafe_f1", "macro_f1")} if curve else {}
    minilm_path = RESULTS / "minilm.json"
    minilm = json.loads(minilm_path.read_text()) if minilm_path.exists() else None
    command = "python benchmarks/quality.py" + (f" --recipe {args.recipe}" if args.recipe != "default" else "")
    params = {k: v for k, v in estimator.get_params(deep=False).items() if k not in ("vectorizer", "verbose")}
    result = {
        "command": command, "recipe": args.recipe, "recipe_params": {**params,
                                                                      "vectorizer": repr(estimator.vectorizer)},
        "n_features": int(model.coef_.shape[0]), "folds": FOLDS, "seed": SEED, "cv": cv.metrics,
        "external": external, "operating_points": points, "learning_curve": curve, "extrapolation": extrap, "thresholds": model.thresholds_.tolist(),
        "minilm": {k: minilm[k] for k in ("cv", "external", "model")} if minilm else None,
        "peers": {"file": "quality_peers.json", "systems": {e["name"]: e["metrics"] for e in peers["systems"]}},
        "published": [dict(zip(("model", "params", "f1", "fpr", "auc", "source", "setup"), row)) for row in PUBLISHED],
    }
    result["seconds"] = time.perf_counter() - t0
    RESULTS.mkdir(parents=True, exist_ok=True)
    result["plots"] = plots({"metrics": cv.metrics, "unsafe_true": dataset.y[:, -1], "unsafe_scores": cv.proba[:, -1]},
                            curve, minilm, extrap)
    write_text(RESULTS / "quality.json", json.dumps(result, indent=2) + "\n")
    write_text(RESULTS / "quality.md", markdown(result))
    print((RESULTS / "quality.md").read_text())


if __name__ == "__main__":
    main()
