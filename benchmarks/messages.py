"""Both failure modes, in every shape: each model on every visible set, as pairs, prompts alone and texts alone.

    python benchmarks/messages.py [--label NAME] [--model M ...]

A harmless set is read for its false-positive rate and a harmful set for its recall, each at both operating
points ("default" and "strict"), in every shape its rows can arrive in: a set with responses as pairs, and
its messages (prompt, query or text) both as a prompt alone ``(x, "")`` and as a text alone ``("", x)``.
Mixed sets (``messages/*_heldout``, the external pair sets, the smoke set) also get AUROC and F1. Scores come
from the library's own ``moderate`` and ``predict_proba``, so the numbers are what a user gets.

Runs under any version of the package on ``sys.path``: ``--label before`` with ``PYTHONPATH`` set to a checkout
of the previous commit measures the previous models with their own code, in the same run of this script.
Writes ``benchmarks/results/messages_<label>.json``; ``--table`` renders every label's JSON there into
``benchmarks/results/messages.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

if os.environ.get("PYTHONPATH"):  # an editable install's finder would otherwise win over PYTHONPATH
    sys.meta_path = [finder for finder in sys.meta_path if "editable" not in repr(finder).lower()]

import numpy as np
from _common import write_text
from sklearn.metrics import roc_auc_score

import lite_moderation as lm

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
SMOKE = ROOT / "benchmarks" / "data" / "smoke_messages.jsonl"

#: (name, file): every visible set a user's traffic resembles. Training files are not here except the
#: ``*_heldout`` halves of the message sources; evaluation-only files are never trained on.
SETS = [
    ("smoke", SMOKE),
    ("clinc150", DATA / "everyday" / "clinc150_queries.jsonl"),
    ("dailydialog", DATA / "everyday" / "dailydialog_test.jsonl"),
    ("topicalchat", DATA / "everyday" / "topicalchat_test.jsonl"),
    ("instruction_heldout", DATA / "everyday" / "instruction_heldout.jsonl"),
    ("advbench", DATA / "everyday" / "advbench_harmful_behaviors.jsonl"),
    *[(p.name.removesuffix("_heldout.jsonl"), p) for p in sorted((DATA / "messages").glob("*_heldout.jsonl"))],
    ("chatterbot_heldout", None),  # chatterbot-corpus's held-out part (lite_moderation.sources.chatterbot_turns)
    ("xstest", DATA / "external" / "xstest_response_harmful.jsonl"),
    ("saferlhf", DATA / "external" / "saferlhf_2000.jsonl"),
]
#: Pair-only sets: their prompts are red-team questions judged by the answer, not messages on their own.
PAIR_ONLY = {"xstest", "saferlhf"}
POINTS = ("default", "strict")


def shapes_of(name: str, dataset) -> dict[str, list]:
    """The items of each shape a set's rows can arrive in."""
    pairs = [("", p) if isinstance(p, str) else tuple(p) for p in dataset.pairs]
    has_response = any(p and r for p, r in pairs)
    messages = [p or r for p, r in pairs]
    shapes = {"pair": pairs} if has_response else {}
    if name not in PAIR_ONLY:
        shapes["prompt"] = [(m, "") for m in messages]
        shapes["text"] = [("", m) for m in messages]
    return shapes


def measure(model, items: list, unsafe: np.ndarray) -> dict:
    """Flag rate per operating point (= recall on harmful rows, FPR on harmless ones), AUROC and F1 when mixed."""
    scores = model.predict_proba(items)[:, -1]
    result = {"n": len(items), "unsafe": int(unsafe.sum())}
    for point in POINTS:
        flagged = np.array([r["flagged"] for r in model.moderate(items, threshold=point)])
        if unsafe.any():
            result[f"recall_{point}"] = float(flagged[unsafe].mean())
        if (~unsafe).any():
            result[f"fpr_{point}"] = float(flagged[~unsafe].mean())
        if unsafe.any() and (~unsafe).any():
            tp = int((flagged & unsafe).sum())
            result[f"f1_{point}"] = 2 * tp / (flagged.sum() + unsafe.sum())
        if point == "default":
            result["flagged_harmful_rows"] = [int(i) for i in np.flatnonzero(flagged & unsafe)] if len(items) <= 40 \
                else None
            result["flagged_harmless_rows"] = [int(i) for i in np.flatnonzero(flagged & ~unsafe)] if len(items) <= 40 \
                else None
    if unsafe.any() and (~unsafe).any():
        result["auroc"] = float(roc_auc_score(unsafe, scores))
    return result


def set_shapes(name: str, path: Path | None) -> dict[str, tuple[list, np.ndarray]] | None:
    """Each shape's items of a set, and which are unsafe. ``path`` None: chatterbot-corpus's held-out part,
    harmless exchanges in 28 languages (every distinct turn as a message, consecutive turns as pairs); None if
    the package measured has no such split (an older revision)."""
    if path is not None:
        dataset = lm.load_dataset(str(path))
        unsafe = np.asarray(dataset.unsafe_labels(), dtype=bool)
        return {shape: (items, unsafe) for shape, items in shapes_of(name, dataset).items()}
    try:
        from lite_moderation.sources import chatterbot_conversations, chatterbot_turns
    except ImportError:
        return None
    texts = [text for _, _, text in chatterbot_turns(heldout=True)]
    pairs = [pair for _, _, turns in chatterbot_conversations(heldout=True) for pair in itertools.pairwise(turns)]
    return {"pair": (pairs, np.zeros(len(pairs), bool)), "prompt": ([(t, "") for t in texts], np.zeros(len(texts), bool)),
            "text": ([("", t) for t in texts], np.zeros(len(texts), bool))}


def run(models: list[str]) -> dict:
    results: dict = {}
    for model_name in models:
        model = lm.load(model_name)
        pooled: dict[str, tuple[list, list]] = {}
        for set_name, path in SETS:
            shapes = set_shapes(set_name, path)
            for shape, (items, unsafe) in (shapes or {}).items():
                results.setdefault(model_name, {}).setdefault(set_name, {})[shape] = measure(model, items, unsafe)
                if path is not None and path.parent.name == "messages":  # every held-out message file, pooled
                    pooled.setdefault(shape, ([], []))[0].extend(items)
                    pooled[shape][1].extend(unsafe.tolist())
                print(model_name, set_name, shape, {k: round(v, 3) for k, v in
                                                    results[model_name][set_name][shape].items()
                                                    if isinstance(v, float)}, flush=True)
        for shape, (items, unsafe) in pooled.items():
            results[model_name].setdefault("messages_heldout_pooled", {})[shape] = measure(model, items, np.array(unsafe))
    return results


def _cell(entry: dict, point: str) -> str:
    parts = []
    if f"fpr_{point}" in entry:
        parts.append(f"FPR {entry[f'fpr_{point}']:.3f}")
    if f"recall_{point}" in entry:
        parts.append(f"rec {entry[f'recall_{point}']:.3f}")
    if "auroc" in entry and point == "default":
        parts.append(f"AUROC {entry['auroc']:.3f}")
    return ", ".join(parts)


def table() -> str:
    """One Markdown table per model: a row per set and shape, a column per label (run) and operating point."""
    runs = {p.stem.removeprefix("messages_"): json.loads(p.read_text()) for p in sorted(RESULTS.glob("messages_*.json"))}
    order = {"before": 0, "previous": 1, "after": 2}
    labels = sorted(runs, key=lambda label: (order.get(label, len(order)), label))
    lines = ["# Both failure modes, every shape", "",
             "`python benchmarks/messages.py --label LABEL` per run, then `python benchmarks/messages.py --table`.",
             "FPR on harmless rows, recall (rec) on harmful rows, AUROC where a set has both. `before`: the models",
             "and code of 55993a2, before issue 20 (run with PYTHONPATH at its checkout; its code has no chatterbot",
             "split, so that set is blank there); `previous`: the models of 9dae24e, issue 20's fifth round, measured",
             "with this commit's code (the models alone changed since; earlier rounds are in this file's history);",
             "`after`: this commit's (the sixth round: `default` and `fast` also trained on chatterbot-corpus's training",
             "part, harmless messages in 28 languages; `chatterbot_heldout` is its held-out part; since the normalisation",
             "round, text read as a reader sees it); `at_88d8c56`: the models and code of 88d8c56, just before that round",
             "(run with PYTHONPATH at its checkout, the same day as `after`).",
             ""]
    models = sorted({m for r in runs.values() for m in r})
    for model in models:
        lines += [f"## {model}", "", "| set | shape | " + " | ".join(f"{label} {point}" for label in labels
                                                                       for point in POINTS) + " |",
                  "|---|---|" + "---|" * (len(labels) * len(POINTS))]
        sets = [s for s, _ in SETS] + ["messages_heldout_pooled"]
        for set_name in sets:
            shapes = sorted({sh for label in labels for sh in runs[label].get(model, {}).get(set_name, {})},
                            key=["pair", "prompt", "text"].index)
            for shape in shapes:
                cells = [_cell(runs[label].get(model, {}).get(set_name, {}).get(shape, {}), point)
                         for label in labels for point in POINTS]
                lines.append(f"| {set_name} | {shape} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def check_package_source() -> None:
    """With ``PYTHONPATH`` set (measuring another checkout), refuse to run on a package from anywhere else."""
    wanted = [Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    source = Path(lm.__file__).resolve()
    if wanted and not any(source.is_relative_to(p) for p in wanted):
        raise SystemExit(f"PYTHONPATH names {os.environ['PYTHONPATH']} but lite_moderation was imported from {source}")
    print(f"lite_moderation from {source.parent}", file=sys.stderr)


def main() -> None:
    check_package_source()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after")
    parser.add_argument("--model", nargs="+", default=["default", "fast", "beavertails"])
    parser.add_argument("--table", action="store_true", help="only render messages.md from the saved runs")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.table:
        results = run(args.model)
        write_text(RESULTS / f"messages_{args.label}.json", json.dumps(results, indent=1) + "\n")
    write_text(RESULTS / "messages.md", table() + "\n")


if __name__ == "__main__":
    main()
