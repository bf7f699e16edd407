"""Own-label training on real data with another taxonomy (XSafety), with folds that keep translations together.

    python benchmarks/xsafety_groups.py

Why this exists: the README's own-labels figure came from ``lite-moderation cv`` on XSafety's training half, whose
folds group rows by their text; XSafety holds each question in up to ten languages (the file's ``group`` field),
so a question's translations landed in different folds and the held-out fold was partly seen. This script runs the
same recipe twice, the folds grouped by text (what ``cv`` does) and by the file's ``group``, and reports both.

Rows: ``messages/xsafety_train.jsonl`` as ``{"message", "harm"}`` records, ``harm`` = the category in the row's
``source`` field (``xsafety:LANG:CATEGORY``) or ``none`` for rows labelled safe (the README's file). Results:
``benchmarks/results/xsafety_groups.json`` and ``.md``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from _common import SHARED_DATA, machine, write_results

from lite_moderation.data import load_dataset
from lite_moderation.evaluation import cross_validate
from lite_moderation.sources import TrainingSet

SOURCE = SHARED_DATA / "messages" / "xsafety_train.jsonl"


def records() -> tuple[list[dict], list[str]]:
    rows = [json.loads(line) for line in SOURCE.read_text().splitlines()]
    harm = [{"message": r["prompt"], "harm": "none" if r["is_safe"] else r["source"].split(":")[-1]} for r in rows]
    return harm, [r["group"] for r in rows]


def summary(metrics: dict) -> dict:
    unsafe, categories = metrics["unsafe"], metrics["categories"]
    return {"flag_f1": round(unsafe["f1"], 3), "flag_auroc": round(unsafe["auroc"], 3),
            "macro_f1": round(categories["macro_f1"], 3),
            "per_category_f1": {k: round(v["f1"], 3) for k, v in categories["per_category"].items()}}


def main() -> None:
    rows, groups = records()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "xs.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        dataset = load_dataset(path, text_column="message", label_column="harm", safe_class="none")
    by_text = TrainingSet.from_dataset(dataset)
    by_question = TrainingSet.from_dataset(dataset)
    by_question.groups = np.unique(np.array(groups), return_inverse=True)[1].reshape(-1)
    results = []
    for name, training_set in (("by text (what cv does)", by_text), ("by question (the file's group)", by_question)):
        result = cross_validate(training_set, n_folds=5, seed=0, progress=True)
        results.append({"folds grouped": name, "groups": len(np.unique(training_set.groups)),
                        **summary(result.metrics)})
    command = "python benchmarks/xsafety_groups.py"
    lines = ["# Own labels on XSafety: folds grouped by text or by question", "",
             (f"`{command}`: default recipe, 5 folds, seed 0, {len(rows)} rows ({SOURCE.name}); see the script's "
             "docstring."), "", "| folds grouped | groups | flag F1 | flag AUROC | macro-F1 | per category F1 |",
             "|---|---:|---:|---:|---:|---|"]
    for r in results:
        per = ", ".join(f"{k} {v:.3f}" for k, v in r["per_category_f1"].items())
        lines.append(f"| {r['folds grouped']} | {r['groups']} | {r['flag_f1']:.3f} | {r['flag_auroc']:.3f} | "
                     f"{r['macro_f1']:.3f} | {per} |")
    write_results("xsafety_groups", [{"machine": machine(command)}, *results], "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
