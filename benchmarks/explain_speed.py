"""Latency of ``explain`` for one (prompt, response) pair, beside scoring the same pair, for the shipped models.

One command writes benchmarks/results/explain_speed.json and explain_speed.md::

    python benchmarks/explain_speed.py                  # about half a minute
    python benchmarks/explain_speed.py --rows 500 --passes 5

What is measured, in-process, one pair per call over ``--rows`` consecutive BeaverTails 30k_test pairs (rows
by index; no text is printed), after a warm-up on the ``--warmup`` rows before them (the per-word caches of
char n-grams partly warm, as in a server shortly after start):

- ``explain``: ``Explainer.explain([pair])`` with its defaults: unsafe plus the flagged categories, every
  contribution with its spans (what ``POST /v1/explain`` and ``lite-moderation explain`` compute);
- ``explain, top 10``: the same, keeping the 10 strongest contributions per label (the rest summed);
- ``score``: ``FastScorer.moderate([pair])`` (the scikit-learn-free scorer), for the ratio.

Percentiles (p50, p90, p99) and the mean per call, the median over ``--passes`` passes. The target of issue 14:
``explain`` for one pair <= 2 ms with the default model. Run it on an idle core (the shared machine: under
``flock /tmp/lm-timing.lock taskset -c 1``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DATA, RESULTS, machine, write_text

import lite_moderation as lm
from lite_moderation.data import load_dataset
from lite_moderation.explain import Explainer

TARGET_MS = 2.0


def _latencies(call, pairs: list) -> np.ndarray:
    times = np.empty(len(pairs))
    clock = time.perf_counter
    for i, pair in enumerate(pairs):
        start = clock()
        call(pair)
        times[i] = clock() - start
    return times * 1000.0


def _summary(passes: list[np.ndarray]) -> dict:
    stats = [{"p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)),
              "p99": float(np.percentile(t, 99)), "mean": float(t.mean())} for t in passes]
    return {key: float(np.median([s[key] for s in stats])) for key in stats[0]}


def measure(model_name: str, pairs: list, warmup: int, rows: int, passes: int) -> dict:
    """Each pass loads a fresh explainer and scorer, warms them on ``warmup`` rows, then times ``rows`` rows."""
    timed = {"explain": [], "explain, top 10": [], "score": []}
    for _ in range(passes):
        explainer = Explainer.load(model_name)
        scorer = lm.load_scorer(model_name)
        for pair in pairs[:warmup]:
            explainer.explain([pair])
            scorer.moderate([pair])
        sample = pairs[warmup:warmup + rows]
        timed["explain"].append(_latencies(lambda p, e=explainer: e.explain([p]), sample))
        timed["explain, top 10"].append(_latencies(lambda p, e=explainer: e.explain([p], top=10), sample))
        timed["score"].append(_latencies(lambda p, s=scorer: s.moderate([p]), sample))
    result = {name: _summary(runs) for name, runs in timed.items()}
    result["ratio_explain_to_score_p50"] = result["explain"]["p50"] / result["score"]["p50"]
    return result


def markdown(report: dict) -> str:
    lines = [
        "# Explain latency (one pair per call, in-process)",
        "",
        (f"Command: `{report['command']}`. Rows {report['rows']} consecutive BeaverTails 30k_test pairs after "
        f"{report['warmup']} warm-up rows, median of {report['passes']} passes (each with a freshly loaded "
        f"explainer and scorer). Load average before: {report['machine']['load_average_before']}."),
        "",
        "| model | path | p50 ms | p90 ms | p99 ms | mean ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for model_name, result in report["models"].items():
        for path in ("explain", "explain, top 10", "score"):
            r = result[path]
            lines.append(f"| {model_name} | {path} | {r['p50']:.3f} | {r['p90']:.3f} | {r['p99']:.3f} | "
                         f"{r['mean']:.3f} |")
    default = report["models"]["default"]["explain"]
    met = "met" if default["p50"] <= TARGET_MS and default["mean"] <= TARGET_MS else "missed"
    lines += ["", (f"Target (issue 14): explain for one pair <= {TARGET_MS:g} ms with the default model: **{met}** "
              f"(p50 {default['p50']:.3f} ms, mean {default['mean']:.3f} ms, p90 {default['p90']:.3f} ms). "
              f"explain / score at p50: {report['models']['default']['ratio_explain_to_score_p50']:.1f}x."), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--models", default="default,fast")
    args = parser.parse_args()
    pairs = load_dataset(DATA).pairs
    report = {
        "command": "python benchmarks/explain_speed.py " + " ".join(sys.argv[1:]),
        "machine": machine("one core; run under flock /tmp/lm-timing.lock taskset -c 1 on the shared machine"),
        "rows": args.rows, "warmup": args.warmup, "passes": args.passes, "target_ms": TARGET_MS,
        "models": {name: measure(name, pairs, args.warmup, args.rows, args.passes)
                   for name in args.models.split(",")},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / "explain_speed.json", json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    write_text(RESULTS / "explain_speed.md", text)
    print(text)


if __name__ == "__main__":
    main()
