"""Batch scoring speed of two versions of a model, in one run: is the new one no slower?

    taskset -c 1 python benchmarks/model_speed.py --before REV [--model default] [--runs 7]
    taskset -c 1 python benchmarks/model_speed.py --before REV --before-code [--runs 7]

Default (model files): extracts the model directory of git revision REV (the files only: the scoring code is
today's for both), loads both with ``lm.load_scorer`` (the fast path), and times, interleaved and alternating
which goes first, one call on all 3,021 BeaverTails 30k_test pairs and one on 4,000 single messages (CLINC150
queries and the held-out message files, as texts alone), after a warm-up call. Medians of ``--runs`` and their
ratio (new / old rows per second) go to ``benchmarks/results/model_speed_<model>.json`` and ``.md``.

``--before-code`` (product): "before" is REV's code with REV's shipped model, "now" this checkout's code with
its shipped model, what a user gets from each version. REV's package is extracted with ``git archive`` and
imported in this process under another name (its imports are relative), and the two scorers' calls are
interleaved as above. (Timing each side in its own worker processes read 1.12x / 0.94x for a revision against
itself: across processes this machine does not resolve 10%.) Results:
``benchmarks/results/model_speed_<model>_code_<REV>.json`` and ``.md``.

Single core: BLAS pinned to one thread; run it alone, pinned (``taskset``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

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


#: A worker of ``--before-code``: run with PYTHONPATH set to one version's tree, it scores the items of a JSON
#: file with that version's code and shipped model, and prints its timings as JSON. It imports only
#: lite_moderation (from that tree) and the standard library, so it runs the old code as it was.
def time_call(scorer, items: list) -> float:
    started = time.perf_counter()
    scorer.predict_proba(items)
    return time.perf_counter() - started


def interleaved_times(scorers: dict, loads: dict[str, list], runs: int) -> dict[str, dict[str, list]]:
    """Seconds per call of each scorer and workload, calls interleaved in this process (which goes first
    alternating), after a warm-up call each."""
    out: dict[str, dict[str, list]] = {}
    for load, items in loads.items():
        times: dict[str, list[float]] = {name: [] for name in scorers}
        for scorer in scorers.values():
            scorer.predict_proba(items)  # warm the word caches
        for run in range(runs):
            order = list(scorers) if run % 2 == 0 else list(scorers)[::-1]
            for name in order:
                times[name].append(time_call(scorers[name], items))
        out[load] = times
    return out


def model_files_times(before: str, model: str, loads: dict[str, list], runs: int) -> dict[str, dict[str, list]]:
    """Seconds per call of today's code on REV's model files and on today's."""
    with tempfile.TemporaryDirectory() as tmp:
        scorers = {"before": lm.load_scorer(model_at(before, model, Path(tmp) / "before")),
                   "now": lm.load_scorer(model)}
        return interleaved_times(scorers, loads, runs)


def package_at(revision: str, into: Path) -> ModuleType:
    """The ``lite_moderation`` package of ``revision`` (code and shipped models), extracted under ``into`` and
    imported under another name beside today's (its imports are relative), checked to come from there."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", revision, "lite_moderation"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    name = "lite_moderation_at_" + re.sub(r"\W", "_", revision)
    (into / "lite_moderation").rename(into / name)
    sys.path.insert(0, str(into))
    try:
        package = importlib.import_module(name)
    finally:
        sys.path.remove(str(into))
    if not Path(package.__file__).resolve().is_relative_to(into.resolve()):
        raise RuntimeError(f"{name} was imported from {package.__file__}")
    return package


def code_times(before: str, model: str, loads: dict[str, list], runs: int) -> dict[str, dict[str, list]]:
    """Seconds per call of REV's code and model and of this checkout's, interleaved in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        old = package_at(before, Path(tmp) / "before")
        scorers = {"before": old.load_scorer(model), "now": lm.load_scorer(model)}
        if type(scorers["before"]).__module__.split(".")[0] != old.__name__:
            raise RuntimeError(f"the before scorer is {type(scorers['before'])}, not from {old.__name__}")
        return interleaved_times(scorers, loads, runs)


def command_line() -> str:
    """This run's command, with the ``taskset`` that reproduces its CPU pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    pin = f"taskset -c {','.join(map(str, cpus))} " if len(cpus) < (os.cpu_count() or 1) else ""
    return pin + "python benchmarks/model_speed.py " + " ".join(sys.argv[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision of the old model files (or code)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before-code", action="store_true",
                        help="before = REV's code and shipped model, now = this checkout's (both in this process)")
    args = parser.parse_args()
    loads = workloads()
    if args.before_code:
        times = code_times(args.before, args.model, loads, args.runs)
        revision = re.sub(r"[^\w.-]", "_", args.before)  # a file name
        name = f"model_speed_{args.model}_code_{revision}"
        title = f"# Batch speed of `{args.model}`: this checkout's code and model vs the code and model of {args.before}"
        compared = (f"Product comparison: before = the code **and** the shipped `{args.model}` model of {args.before} "
                    f"(`git archive`, imported under another name), now = this checkout's code and model. Interleaved "
                    f"calls in one process")
    else:
        times = model_files_times(args.before, args.model, loads, args.runs)
        name = f"model_speed_{args.model}"
        title = f"# Batch speed of `{args.model}`: now vs the model files of {args.before}"
        compared = (f"Model-files comparison: both sides run this checkout's code; before = the `{args.model}` model "
                    f"files of {args.before}, now = this checkout's. Interleaved calls in one process")
    results: dict = {}
    for load, items in loads.items():
        rates = {side: len(items) / float(np.median(t)) for side, t in times[load].items()}
        results[load] = {"rows": len(items), "rows_per_s": rates, "ratio_now_over_before": rates["now"] / rates["before"],
                         "seconds": times[load]}
    report = {"model": args.model, "before": args.before, "runs": args.runs, "before_code": args.before_code,
              "command": command_line(), "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / f"{name}.json", json.dumps(report, indent=1) + "\n")
    lines = [title, "", f"`{command_line()}`", "",
             f"{compared}; fast path, one core, medians of {args.runs} calls per side, warm word caches.", "",
             "| workload | rows | before rows/s | now rows/s | now / before |", "|---|---:|---:|---:|---:|"]
    for load, r in results.items():
        lines.append(f"| {load} | {r['rows']} | {r['rows_per_s']['before']:,.0f} | {r['rows_per_s']['now']:,.0f} | "
                     f"{r['ratio_now_over_before']:.2f} |")
    write_text(RESULTS / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
