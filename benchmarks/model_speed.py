"""Batch scoring speed of two versions of a model, in one run: is the new one no slower?

    taskset -c 0 python benchmarks/model_speed.py --before REV [--model default] [--runs 7]

Extracts the model directory of git revision REV (the files only: the scoring code is today's for both), loads
both with ``lm.load_scorer`` (the fast path), and times, interleaved and alternating which goes first, one call
on all 3,021 BeaverTails 30k_test pairs and one on 4,000 single messages (CLINC150 queries and the held-out
message files, as texts alone), after a warm-up call. Medians of ``--runs`` and their ratio (new / old rows per
second) go to ``benchmarks/results/model_speed_<model>.json`` and ``.md``. Single core: BLAS pinned to one
thread; run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from _common import write_text

import lite_moderation as lm
from lite_moderation.texts import split_fields

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def model_at(revision: str, name: str, into: Path) -> Path:
    """The shipped model ``name`` as it was at ``revision``, written to ``into``."""
    into.mkdir(parents=True)
    for file in ("model.json", "vocabulary.json", "arrays.npz"):
        blob = subprocess.run(["git", "show", f"{revision}:lite_moderation/models/{name}/{file}"], cwd=ROOT,
                              capture_output=True, check=True).stdout
        (into / file).write_bytes(blob)
    return into


def workloads() -> dict[str, list]:
    pairs = list(lm.load_dataset(str(DATA / "beavertails" / "30k_test.jsonl")).pairs)
    paths = [DATA / "everyday" / "clinc150_queries.jsonl", *sorted((DATA / "messages").glob("*_heldout.jsonl"))]
    messages = []
    for path in paths:  # each row's message: split_fields gives every single message as a text alone
        messages += split_fields(lm.load_dataset(str(path)).pairs)[1]
    return {"pairs": pairs, "messages": [("", m) for m in messages[:4000]]}


def time_call(scorer, items: list) -> float:
    started = time.perf_counter()
    scorer.predict_proba(items)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision of the old model files")
    parser.add_argument("--model", default="default")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    loads = workloads()
    with tempfile.TemporaryDirectory() as tmp:
        scorers = {"before": lm.load_scorer(model_at(args.before, args.model, Path(tmp) / "before")),
                   "now": lm.load_scorer(args.model)}
        results: dict = {}
        for load, items in loads.items():
            times: dict[str, list[float]] = {name: [] for name in scorers}
            for scorer in scorers.values():
                scorer.predict_proba(items)  # warm the word caches
            for run in range(args.runs):
                order = list(scorers) if run % 2 == 0 else list(scorers)[::-1]
                for name in order:
                    times[name].append(time_call(scorers[name], items))
            rates = {name: len(items) / float(np.median(t)) for name, t in times.items()}
            results[load] = {"rows": len(items), "rows_per_s": rates, "ratio_now_over_before": rates["now"] / rates["before"]}
    report = {"model": args.model, "before": args.before, "runs": args.runs, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / f"model_speed_{args.model}.json", json.dumps(report, indent=1) + "\n")
    lines = [f"# Batch speed of `{args.model}`: now vs the model files of {args.before}", "",
             (f"`taskset -c 0 python benchmarks/model_speed.py --before {args.before} --model {args.model}` "
              f"(fast path, one core, median of {args.runs} interleaved runs, warm word caches)"), "",
             "| workload | rows | before rows/s | now rows/s | now / before |", "|---|---:|---:|---:|---:|"]
    for load, r in results.items():
        lines.append(f"| {load} | {r['rows']} | {r['rows_per_s']['before']:,.0f} | {r['rows_per_s']['now']:,.0f} | "
                     f"{r['ratio_now_over_before']:.2f} |")
    write_text(RESULTS / f"model_speed_{args.model}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
