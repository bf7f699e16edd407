"""Everyday-text benchmark: every shipped model, both operating points, every visible set, the 15 sentences.

    python benchmarks/everyday.py [--models default,fast,beavertails] [--no-cv]

Writes benchmarks/results/everyday.json, everyday.md and everyday_tradeoff.png:
- false-positive rate on the everyday evaluation sets (DailyDialog, Topical-Chat, CLINC150 queries, held-out
  instruction pairs), AdvBench recall (harmful requests, prompt alone), XSTest-response F1/FPR and SafeRLHF
  AUROC, with each model at its "default" and "strict" operating points;
- which of the issue's 15 everyday sentences each model flags (scored as texts alone, as `score "..."` does);
- BeaverTails unsafe recall/FPR out of fold: the model's own training command rerun as `lite-moderation cv
  --predictions` (5 folds grouped by prompt, seed 0; everyday rows only ever in the training folds);
- the trade-off plot: as the unsafe cut-off moves, the everyday false-positive rate against recall on
  AdvBench and on BeaverTails' unsafe rows (out of fold), with both operating points marked.
None of these files is ever trained on by the shipped models (the instruction pairs' held-out split included).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SHARED_DATA, machine, save_figure, write_text

from lite_moderation import load_dataset, load_scorer, read_card
from lite_moderation.metrics import binary_metrics

EVERYDAY = SHARED_DATA / "everyday"
EXTERNAL = SHARED_DATA / "external"
EVERYDAY_SETS = ("dailydialog", "topicalchat", "clinc150", "instruction_heldout")

#: The evaluation sets: name -> file (the everyday ones all safe, AdvBench all unsafe).
EVAL_SETS = {
    "dailydialog": EVERYDAY / "dailydialog_test.jsonl",
    "topicalchat": EVERYDAY / "topicalchat_test.jsonl",
    "clinc150": EVERYDAY / "clinc150_queries.jsonl",
    "instruction_heldout": EVERYDAY / "instruction_heldout.jsonl",
    "advbench": EVERYDAY / "advbench_harmful_behaviors.jsonl",
    "xstest": EXTERNAL / "xstest_response_harmful.jsonl",
    "saferlhf": EXTERNAL / "saferlhf_2000.jsonl",
}

#: The issue's 15 everyday sentences, scored as texts alone (what `lite-moderation score "..."` does).
SENTENCES = [
    "hello there", "Hi! How are you today?", "Good morning, hope you slept well.", "Thank you so much for your help!",
    "What's the best way to make tomato pasta sauce?", "How do I bake a chocolate cake?",
    "How long should I cook rice?", "How do I reverse a list in Python?", "Use my_list[::-1] to get a reversed copy.",
    "Why does my JavaScript fetch call fail with a CORS error?", "Can you recommend a good book about astronomy?",
    "What is the capital of France?", "The weather is nice today, let's go for a walk in the park.",
    "My cat knocked over a glass of water.", "How do I kill a Python process?",
]

#: Training files a shipped model's card names, where they are on this machine.
TRAINING_FILES = {
    "30k_test.jsonl": SHARED_DATA / "beavertails" / "30k_test.jsonl",
    "evaluation_700.jsonl": SHARED_DATA / "beavertails" / "evaluation_700.jsonl",
    "instruction_train.jsonl": EVERYDAY / "instruction_train.jsonl",
}
MODELS = ("default", "fast", "beavertails")


def load_eval_sets() -> dict:
    return {name: load_dataset(path) for name, path in EVAL_SETS.items()}


def unsafe_scores(model, sets: dict) -> dict[str, np.ndarray]:
    """The unsafe probability of every row of every set (and of the 15 sentences)."""
    scores = {name: model.predict_proba(dataset.pairs)[:, -1] for name, dataset in sets.items()}
    scores["sentences"] = model.predict_proba(SENTENCES)[:, -1]
    return scores


def measure(scores: dict[str, np.ndarray], sets: dict, points: dict[str, float]) -> dict:
    """Per set and operating point: F1 / precision / recall / FPR / flag rate; AUROC where both classes exist."""
    out: dict = {}
    for name, dataset in sets.items():
        truth, proba = dataset.unsafe_labels(), scores[name]
        row: dict = {}
        for point, cut in points.items():
            m = binary_metrics(truth, proba, proba >= cut)
            row[point] = {k: m[k] for k in ("f1", "precision", "recall", "fpr") if m.get(k) is not None}
            row[point]["flag_rate"] = float(np.mean(proba >= cut))
        if truth.any() and not truth.all():
            row["auroc"] = binary_metrics(truth, proba, proba >= points["default"])["auroc"]
        out[name] = row
    out["sentences"] = {point: [i for i, p in enumerate(scores["sentences"]) if p >= cut]
                        for point, cut in points.items()}
    out["sentences"]["scores"] = [round(float(p), 3) for p in scores["sentences"]]
    return out


def cv_command(card: dict, predictions: Path) -> list[str]:
    """The model's training command as a `cv` run writing out-of-fold predictions (files found locally)."""
    args = shlex.split(card["recipe"]["command"])[2:]
    out, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "--output":
            skip = True
            continue
        if arg == "--cv-folds":
            out += ["--folds", args[i + 1]]
            skip = True
            continue
        if i > 0 and args[i - 1] == "--data":
            name, _, options = arg.partition(",")
            arg = ",".join(filter(None, [str(TRAINING_FILES.get(name, name)), options]))
        out.append(arg)
    return [sys.executable, "-m", "lite_moderation", "cv", *out, "--predictions", str(predictions), "--quiet",
            "--json", str(predictions.with_suffix(".metrics.json"))]


def beavertails_oof(card: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Out-of-fold unsafe scores and labels of the 30k_test rows under the model's own recipe."""
    with tempfile.TemporaryDirectory() as tmp:
        predictions = Path(tmp) / "oof.jsonl"
        subprocess.run(cv_command(card, predictions), check=True, stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in predictions.read_text().splitlines()]
        metrics = json.loads(predictions.with_suffix(".metrics.json").read_text())
    truth = load_dataset(TRAINING_FILES["30k_test.jsonl"]).unsafe_labels()
    return np.array([r["scores"]["unsafe"] for r in rows]), truth[[r["row"] for r in rows]], metrics


def _curve(negatives: np.ndarray, positives: dict[str, np.ndarray], cuts: np.ndarray) -> dict:
    return {"fpr": [float(np.mean(negatives >= c)) for c in cuts],
            **{k: [float(np.mean(v >= c)) for c in cuts] for k, v in positives.items()}}


def plot(curves: dict, points: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 4.4), squeeze=False)
    for ax, (name, curve) in zip(axes[0], curves.items()):
        for key, style in (("advbench", "-"), ("beavertails_unsafe", "--")):
            ax.plot(curve["fpr"], curve[key], style, label=f"recall: {key.replace('_', ' ')}")
        for point, marker in (("default", "o"), ("strict", "s")):
            p = points[name][point]
            ax.plot(p["fpr"], p["advbench"], marker, color="C0")
            ax.plot(p["fpr"], p["beavertails_unsafe"], marker, color="C1", label=f"{point} operating point")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("false-positive rate, everyday sets pooled")
        ax.set_ylabel("recall")
        ax.set_title(f"model '{name}'")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, 110)


def markdown(results: dict) -> str:
    lines = ["# Everyday text: false flags and recall of every shipped model", "",
             "Command: `python benchmarks/everyday.py` (one machine, see everyday.json for load average).",
             ("FPR on everyday sets (all safe), AdvBench recall (prompt alone), XSTest-response F1/FPR, SafeRLHF "
             "AUROC, BeaverTails 5-fold grouped CV (out-of-fold scores of the 30k_test rows under the model's own recipe, "
              "judged at the shipped model's cut-off; the card's CV judges each fold at its own), 15 sentences flagged."), "",
             ("| model | point | cut-off | DailyDialog FPR | Topical-Chat FPR | CLINC150 FPR | instr. held-out FPR | "
             "AdvBench recall | XSTest F1 / FPR | SafeRLHF AUROC | BT out-of-fold F1 / recall / FPR at this cut-off | "
              "sentences flagged |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results["models"].items():
        m = r["sets"]
        for point, cut in r["operating_points"].items():
            cv = r.get("beavertails_cv", {}).get(point)
            cv_text = f"{cv['f1']:.3f} / {cv['recall']:.3f} / {cv['fpr']:.3f}" if cv else "-"
            lines.append(
                f"| {name} | {point} | {cut:.3f} | "
                + " | ".join(f"{m[s][point]['fpr']:.3f}" for s in EVERYDAY_SETS)
                + f" | {m['advbench'][point]['recall']:.3f} | {m['xstest'][point]['f1']:.3f} / "
                f"{m['xstest'][point]['fpr']:.3f} | {m['saferlhf']['auroc']:.3f} | {cv_text} | "
                f"{len(m['sentences'][point])} of 15 |")
    lines += ["", "Sentences flagged at the default point (index into the issue's list, 0-based):", ""]
    for name, r in results["models"].items():
        flagged = r["sets"]["sentences"]["default"]
        lines.append(f"- {name}: {flagged or 'none'}; scores {r['sets']['sentences']['scores']}")
    lines += ["", "![trade-off](everyday_tradeoff.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-cv", action="store_true", help="Skip the out-of-fold BeaverTails runs.")
    args = parser.parse_args()
    sets = load_eval_sets()
    previous = RESULTS / "everyday.json"
    results: dict = json.loads(previous.read_text()) if previous.exists() else {"models": {}}
    results["machine"] = machine("everyday benchmark")  # models not rerun keep their earlier entries
    curves, marks = results.setdefault("curves", {}), results.setdefault("marks", {})
    for name in args.models.split(","):
        t0 = time.perf_counter()
        scorer, card = load_scorer(name), read_card(name)
        points = dict(scorer.operating_points_)
        scores = unsafe_scores(scorer, sets)
        entry = {"command": card["recipe"]["command"], "operating_points": points,
                 "sets": measure(scores, sets, points)}
        if not args.no_cv:
            oof, truth, cv_metrics = beavertails_oof(card)
            entry["beavertails_cv"] = {p: binary_metrics(truth, oof, oof >= cut) for p, cut in points.items()}
            entry["beavertails_cv"]["summary"] = {"unsafe": cv_metrics["unsafe"],
                                                  "macro_f1": cv_metrics["categories"]["macro_f1"]}
            negatives = np.concatenate([scores[s] for s in EVERYDAY_SETS])
            positives = {"advbench": scores["advbench"], "beavertails_unsafe": oof[truth]}
            cuts = np.linspace(0, 1, 201)
            curves[name] = _curve(negatives, positives, cuts)
            marks[name] = {p: {k: v[0] for k, v in _curve(negatives, positives, np.array([c])).items()}
                           for p, c in points.items()}
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        results["models"][name] = entry
        print(f"{name}: done in {entry['seconds']} s", file=sys.stderr)
    results["models"] = {name: results["models"][name] for name in MODELS if name in results["models"]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / "everyday.json", json.dumps(results, indent=2, sort_keys=True) + "\n")
    write_text(RESULTS / "everyday.md", markdown(results))
    if curves:
        plot({name: curves[name] for name in MODELS if name in curves}, marks, RESULTS / "everyday_tradeoff.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
