"""Exactness of explanations on every row of every shared data file, every input shape, every shipped model.

One command writes benchmarks/results/explain_exactness.json and explain_exactness.md::

    python benchmarks/explain_exactness.py          # a few minutes (the scikit-learn reference path is the slow part)

For each shipped model (``default``, ``fast``, ``beavertails``) and each file under ../shared/data (every row
read as a pair, as its prompt alone and as its response alone; blank items left out), the logits that
:class:`lite_moderation.explain.Explainer` sums from its contributions (intercept + weight x tf-idf per n-gram)
are compared with the model's scikit-learn reference path (``lm.load(...).reference_decision_function``) and
with the scikit-learn-free scorer (``lm.load_scorer(...).decision_function``): the largest absolute
difference over all rows and 15 labels, which must stay below 1e-9. Rows are counted, never printed.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, SHARED_DATA, machine, write_text

import lite_moderation as lm
from lite_moderation.data import read_records
from lite_moderation.explain import Explainer

MODELS = ("default", "fast", "beavertails")
TOLERANCE = 1e-9


def shared_items() -> dict[str, list[tuple[str, str]]]:
    """Every scorable record of every shared data file, as (prompt, response); a text alone has an empty prompt."""
    files = {}
    for path in sorted(SHARED_DATA.rglob("*.jsonl")):
        pairs = []
        for record in read_records(path, on_error="skip", errors=[], require="text"):
            pair = record.pair
            pairs.append(("", pair) if isinstance(pair, str) else pair)
        files[str(path.relative_to(SHARED_DATA))] = pairs
    return files


def shapes(pairs: list[tuple[str, str]]) -> dict[str, list]:
    return {"pair": [(p, r) for p, r in pairs if p.strip() or r.strip()],
            "prompt": [(p, "") for p, _ in pairs if p.strip()],
            "text": [r for _, r in pairs if r.strip()]}


def main() -> None:
    started = time.perf_counter()
    files = shared_items()
    rows = []
    for name in MODELS:
        explainer, model, scorer = Explainer.load(name), lm.load(name), lm.load_scorer(name)
        for file, pairs in files.items():
            for shape, X in shapes(pairs).items():
                if not X:
                    continue
                explained = explainer.decision_function(X)
                rows.append({"model": name, "file": file, "shape": shape, "items": len(X),
                             "max_diff_reference": float(np.abs(explained - model.reference_decision_function(X)).max()),
                             "max_diff_fast_scorer": float(np.abs(explained - scorer.decision_function(X)).max())})
                print(f"{name:<12} {file:<45} {shape:<7} {len(X):>6} items  "
                      f"{rows[-1]['max_diff_reference']:.2e} {rows[-1]['max_diff_fast_scorer']:.2e}", flush=True)
    worst = max(max(r["max_diff_reference"], r["max_diff_fast_scorer"]) for r in rows)
    report = {"command": "python benchmarks/explain_exactness.py", "machine": machine("any"), "tolerance": TOLERANCE,
              "items_checked": sum(r["items"] for r in rows), "worst_difference": worst, "exact": worst < TOLERANCE,
              "seconds": round(time.perf_counter() - started, 1), "runs": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / "explain_exactness.json", json.dumps(report, indent=2) + "\n")
    lines = ["# Exactness of explanations (intercept + contributions vs the model's logits)", "",
             (f"Command: `{report['command']}` ({report['seconds']} s). {report['items_checked']} items (model x file x "
             f"shape), 15 labels each. Worst absolute difference: **{worst:.2e}** (tolerance {TOLERANCE:g}: "
             f"{'exact' if report['exact'] else 'NOT exact'})."), "",
             "| model | file | shape | items | max diff vs scikit-learn path | max diff vs FastScorer |",
             "|---|---|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['file']} | {r['shape']} | {r['items']} | {r['max_diff_reference']:.2e} | "
              f"{r['max_diff_fast_scorer']:.2e} |" for r in rows]
    write_text(RESULTS / "explain_exactness.md", "\n".join(lines) + "\n")
    print(f"worst difference {worst:.2e} over {report['items_checked']} items")
    if not report["exact"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
