"""Recipe search for issue 10: train on BeaverTails plus everyday text, measure every visible set at once.

    python benchmarks/everyday_experiments.py VARIANT [VARIANT ...] [--no-cv]

Each variant is a training recipe (sources, weights, shapes, preset). For each one this measures:
- BeaverTails 5-fold CV grouped by prompt (seed 0), metrics on the 3,021 BeaverTails rows only (the everyday
  rows sit in every training fold and are never evaluated on);
- the model fitted on all sources: false-positive rate on the four everyday evaluation sets, AdvBench recall
  (prompt alone), XSTest-response F1/FPR, SafeRLHF AUROC, at the default and strict operating points;
- how many of the issue's 15 everyday sentences it flags.
One JSON line per variant is appended to benchmarks/results/everyday_runs.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SHARED_DATA, machine
from everyday import EVERYDAY_SETS, load_eval_sets, measure, unsafe_scores

from lite_moderation import cross_validate, default_estimator
from lite_moderation.sources import build_training_set, parse_source

BT = SHARED_DATA / "beavertails"
EVERYDAY = SHARED_DATA / "everyday"


def _src(path: Path | str, weight: float = 1.0, rows: int | None = None) -> str:
    text = str(path)
    if weight != 1.0:
        text += f",weight={weight:g}"
    if rows is not None:
        text += f",rows={rows}"
    return text


def _variant(sources: list[str], shapes=("pair",), preset="accurate", **params) -> dict:
    return {"sources": sources, "shapes": list(shapes), "preset": preset, "params": params}


BASE = str(BT / "30k_test.jsonl")
EVAL700 = str(BT / "evaluation_700.jsonl")
INSTR = EVERYDAY / "instruction_train.jsonl"
CHAT = "pkg:chitchat-dataset"
ALL3 = ("pair", "prompt", "text")
LONE_WORDS = ("prompt", "response", "lone_prompt", "lone_text")
DISJOINT_WORDS = ("pair_prompt", "pair_response", "lone_prompt", "lone_text")
HYBRID = {"word_fields": ("pair_prompt", "response", "lone_prompt"), "char_fields": ("response",)}
MIX_03 = [BASE, EVAL700, _src(INSTR, 0.3, 1500), _src(CHAT, 0.3, 1500)]

VARIANTS = {
    "bt-only": _variant([BASE]),
    "bt-only-fast": _variant([BASE], preset="fast"),
    "bt-shapes": _variant([BASE, EVAL700], ALL3),
    "mix-3k-w0.3": _variant([BASE, EVAL700, _src(INSTR, 0.3, 1500), _src(CHAT, 0.3, 1500)], ALL3),
    "mix-3k-w0.3-fast": _variant([BASE, EVAL700, _src(INSTR, 0.3, 1500), _src(CHAT, 0.3, 1500)], ALL3, "fast"),
    "mix-3k-w1": _variant([BASE, EVAL700, _src(INSTR, 1.0, 1500), _src(CHAT, 1.0, 1500)], ALL3),
    "mix-10k-w0.3": _variant([BASE, EVAL700, _src(INSTR, 0.3, 5000), _src(CHAT, 0.3, 5000)], ALL3),
    "mix-3k-w0.3-pairs": _variant([BASE, EVAL700, _src(INSTR, 0.3, 1500), _src(CHAT, 0.3, 1500)]),
    "mix-3k-w0.3-lone": _variant([BASE, EVAL700, _src(INSTR, 0.3, 1500), _src(CHAT, 0.3, 1500)], ALL3,
                                 word_fields=LONE_WORDS),
    "mix-3k-w1-lone": _variant([BASE, EVAL700, _src(INSTR, 1.0, 1500), _src(CHAT, 1.0, 1500)], ALL3,
                               word_fields=LONE_WORDS),
    "mix-3k-w0.3-lone-char": _variant([BASE, EVAL700, _src(INSTR, 0.3, 1500), _src(CHAT, 0.3, 1500)], ALL3,
                                      word_fields=LONE_WORDS, char_fields=("response", "lone_text")),
    "mix-3k-w0.3-disjoint": _variant(MIX_03, ALL3, word_fields=DISJOINT_WORDS, char_fields=("pair_response",)),
    "mix-3k-w0.3-disjoint-char": _variant(MIX_03, ALL3, word_fields=DISJOINT_WORDS,
                                          char_fields=("pair_response", "lone_text")),
    "mix-3k-w0.3-disjoint-t2": _variant(MIX_03, ALL3, word_fields=DISJOINT_WORDS, char_fields=("pair_response",)),
    "hybrid": _variant(MIX_03, ALL3, word_fields=("pair_prompt", "response", "lone_prompt"),
                       char_fields=("response",)),
    "hybrid-prompt": _variant(MIX_03, ALL3, word_fields=("prompt", "response", "lone_prompt"),
                              char_fields=("response",)),
    "hybrid-i0.1": _variant([BASE, EVAL700, _src(INSTR, 0.1, 1500), _src(CHAT, 0.3, 1500)], ALL3, **HYBRID),
    "hybrid-chat-only": _variant([BASE, EVAL700, _src(CHAT, 0.3, 1500)], ALL3, **HYBRID),
    "hybrid-w0.2": _variant([BASE, EVAL700, _src(INSTR, 0.2, 1500), _src(CHAT, 0.2, 1500)], ALL3, **HYBRID),
    "hybrid-6k-w0.15": _variant([BASE, EVAL700, _src(INSTR, 0.15, 3000), _src(CHAT, 0.15, 3000)], ALL3, **HYBRID),
    "hybrid-cap20k": _variant(MIX_03, ALL3, **HYBRID, max_features=20000),
    "hybrid-cap30k": _variant(MIX_03, ALL3, **HYBRID, max_features=30000),
    "hybrid-mindf3": _variant(MIX_03, ALL3, **HYBRID, min_df=3),
    "hybrid-fast": _variant(MIX_03, ALL3, "shapes-fast"),
    "hybrid-fast-cap20k": _variant(MIX_03, ALL3, "shapes-fast", max_features=20000),
    "hybrid-cap20k-C2": _variant(MIX_03, ALL3, **HYBRID, max_features=20000, C=2.0),
    "bt-text": _variant([BASE], ("pair", "text")),
    "hybrid-no700": _variant([BASE, _src(INSTR, 0.3, 1500), _src(CHAT, 0.3, 1500)], ALL3, **HYBRID),
    "hybrid-fast-cap30k": _variant(MIX_03, ALL3, "shapes-fast", max_features=30000),
    "hybrid-6k-w0.15-cap20k": _variant([BASE, EVAL700, _src(INSTR, 0.15, 3000), _src(CHAT, 0.15, 3000)], ALL3,
                                       **HYBRID, max_features=20000),
    "hybrid-bvocab": _variant(MIX_03, ALL3, **HYBRID, vocabulary="first"),
    "hybrid-hvocab": _variant(MIX_03, ALL3, **HYBRID, vocabulary="harmful"),
    "mix-i0.1-c0.3": _variant([BASE, EVAL700, _src(INSTR, 0.1, 1500), _src(CHAT, 0.3, 1500)], ALL3),
    "mix-3k-w0.3-prompt-shape": _variant(MIX_03, ("pair", "prompt")),
    "mix-3k-w0.3-text-shape": _variant(MIX_03, ("pair", "text")),
}


def build(name: str):
    v = VARIANTS[name]
    params = dict(v["params"])
    training_set = build_training_set([parse_source(s) for s in v["sources"]], shapes=v["shapes"], seed=0)
    training_set.vocabulary_from = params.pop("vocabulary", "all")
    return training_set, default_estimator(preset=v["preset"], **params)


def measure_external(model, sets: dict) -> dict:
    points = dict(model.operating_points_)
    return {**measure(unsafe_scores(model, sets), sets, points), "operating_points": points}


def run(name: str, do_cv: bool, sets: dict) -> dict:
    t0 = time.perf_counter()
    training_set, estimator = build(name)
    record = {"variant": name, "recipe": VARIANTS[name], "rows": len(training_set), "machine": machine("")}
    if do_cv:
        cv = cross_validate(training_set, 5, 0, estimator=estimator)
        record["cv"] = {"unsafe": cv.metrics["unsafe"], "macro_f1": cv.metrics["categories"]["macro_f1"]}
    model = estimator.fit(training_set.pairs, training_set.Y, **training_set.fit_params())
    record["external"] = measure_external(model, sets)
    record["n_features"] = int(model.coef_.shape[0])
    record["seconds"] = round(time.perf_counter() - t0, 1)
    return record


def summary(r: dict) -> str:
    e = r["external"]
    fpr = " ".join(f"{e[s]['default']['fpr']:.3f}" for s in ("dailydialog", "topicalchat", "clinc150",
                                                                 "instruction_heldout"))
    cv = r.get("cv")
    cvs = (f"CV F1 {cv['unsafe']['f1']:.3f} AUPRC {cv['unsafe']['auprc']:.3f} macro {cv['macro_f1']:.3f} | "
           if cv else "")
    return (f"{r['variant']}: {cvs}FPR {fpr} | adv {e['advbench']['default']['recall']:.3f}/"
            f"{e['advbench']['strict']['recall']:.3f} | xs {e['xstest']['default']['f1']:.3f}/"
            f"{e['xstest']['default']['fpr']:.3f} strict {e['xstest']['strict']['f1']:.3f}/"
            f"{e['xstest']['strict']['fpr']:.3f} | srlhf {e['saferlhf']['auroc']:.3f} | "
            f"sent {len(e['sentences']['default'])} | cut {e['operating_points']['default']:.3f} | {r['seconds']}s")


def table(path: Path) -> str:
    """The latest logged run of every variant as a Markdown table (default operating point; strict for XSTest)."""
    runs: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["variant"] in runs and "cv" in runs[r["variant"]] and "cv" not in r:
            r["cv"] = runs[r["variant"]]["cv"]  # a later external-only rerun keeps the earlier CV
        runs[r["variant"]] = r
    lines = [("| variant | features | CV unsafe F1 / AUPRC / macro-F1 | FPR DailyDialog / Topical-Chat / CLINC150 / "
             "instr. | AdvBench recall | XSTest F1 / FPR | XSTest strict F1 / FPR | SafeRLHF AUROC | 15 sentences |"),
             "|---|---:|---|---|---:|---|---|---:|---:|"]
    for name, r in runs.items():
        e, cv = r["external"], r.get("cv")
        cv_text = f"{cv['unsafe']['f1']:.3f} / {cv['unsafe']['auprc']:.3f} / {cv['macro_f1']:.3f}" if cv else "-"
        fpr = " / ".join(f"{e[s]['default']['fpr']:.3f}" for s in EVERYDAY_SETS)
        lines.append(f"| {name} | {r['n_features']:,} | {cv_text} | {fpr} | {e['advbench']['default']['recall']:.3f} | "
                     f"{e['xstest']['default']['f1']:.3f} / {e['xstest']['default']['fpr']:.3f} | "
                     f"{e['xstest']['strict']['f1']:.3f} / {e['xstest']['strict']['fpr']:.3f} | "
                     f"{e['saferlhf']['auroc']:.3f} | {len(e['sentences']['default'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", metavar="VARIANT", help=f"one of {sorted(VARIANTS)}")
    parser.add_argument("--no-cv", action="store_true", help="Skip the CV (external sets only).")
    parser.add_argument("--table", action="store_true", help="Print the logged runs as a Markdown table.")
    args = parser.parse_args()
    if args.table:
        print(table(RESULTS / "everyday_runs.jsonl"))
        return
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")
    sets = load_eval_sets()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        record = run(name, not args.no_cv, sets)
        with open(RESULTS / "everyday_runs.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        print(summary(record), flush=True)


if __name__ == "__main__":
    main()
