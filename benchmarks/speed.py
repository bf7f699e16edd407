"""Speed and footprint of lite-moderation's presets, their two scoring paths, and alt-profanity-check.

One command writes benchmarks/results/speed.json, speed.md and speed.png (the PNG when matplotlib is
installed)::

    python benchmarks/speed.py                 # about 3-4 minutes on 2 shared cores
    python benchmarks/speed.py --runs 5 --single 1000

What is measured, on the BeaverTails 30k_test QA pairs (rows by index; no text is printed):

- batch throughput: all 3,021 pairs in one ``predict_proba`` call, median of ``--runs``; for the fast path
  also the first call of a fresh scorer (its per-word cache still empty);
- single-request latency in-process: one pair per call, p50 and p99 over ``--single`` consecutive rows, median
  over ``--runs`` passes, each pass with a fresh scorer warmed up on 100 other rows (so its per-word cache is
  only partly warm, as in a server shortly after start); for the fast path also with the word cache disabled;
- model load time in-process (imports done) and cold start in a fresh interpreter (import + load);
- size on disk of the model directory;
- peak RSS and wall time of scoring the 30k_test file in a subprocess: the real CLI
  (``lite-moderation score --input FILE --output OUT``) for the scikit-learn path, the same ``score_file``
  through the fast scorer for the fast path (``os.wait4`` rusage of that child alone);
- training time of the word-only preset on the 3,021 rows, and its grouped 5-fold CV quality.

Presets: "default" is the shipped model (word 1-2 grams of prompt and response + char_wb 2-5 grams of the
response); "word-only" is ``default_estimator(char_fields=())`` trained here on 30k_test.
alt-profanity-check scores one label on ``prompt + "\\n" + response``. The MiniLM baseline is measured by a
separate benchmark; its slot here is left empty.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from _common import DATA, RESULTS

WARMUP = 100
CLI = str(Path(sys.executable).with_name("lite-moderation")) if Path(sys.executable).with_name(
    "lite-moderation").exists() else "lite-moderation"


# ------------------------------------------------------------------------------------------------ timing


def median_time(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall seconds of ``runs`` calls of ``fn``."""
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def latency_ms(make_scorer: Callable[[], Callable[[object], object]], items: Sequence, warmup: Sequence,
               runs: int) -> dict:
    """p50/p99 of one-item calls, medians of ``runs`` passes; each pass gets a fresh scorer from
    ``make_scorer``, warmed up on ``warmup`` (other rows than the measured ones)."""
    p50s, p99s = [], []
    for _ in range(runs):
        score_one = make_scorer()
        for item in warmup:
            score_one(item)
        gc.collect()
        samples = np.empty(len(items))
        for i, item in enumerate(items):
            start = time.perf_counter_ns()
            score_one(item)
            samples[i] = time.perf_counter_ns() - start
        p50s.append(float(np.percentile(samples, 50)) / 1e6)
        p99s.append(float(np.percentile(samples, 99)) / 1e6)
    return {"p50_ms": float(np.median(p50s)), "p99_ms": float(np.median(p99s)), "passes_p50_ms": p50s,
            "passes_p99_ms": p99s, "requests_per_pass": len(items)}


#: Runs a command and prints its wall seconds and ru_maxrss (KiB). It runs in a small interpreter of its own
#: because a child's ru_maxrss also counts the memory it had before exec, i.e. a fork of its parent.
RSS_WRAPPER = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
if os.waitstatus_to_exitcode(status):
    sys.exit(err.decode()[-2000:])
print(time.perf_counter() - start, usage.ru_maxrss)
"""


def child_run(args: list[str], runs: int) -> dict:
    """Wall time and peak RSS of a subprocess (that child alone, via os.wait4), medians of ``runs``."""
    walls, rss = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-S", "-c", RSS_WRAPPER, *args], check=False, capture_output=True,
                             text=True)
        if out.returncode:
            raise RuntimeError(f"{args} failed: {out.stderr}")
        wall, maxrss_kib = out.stdout.split()
        walls.append(float(wall))
        rss.append(int(maxrss_kib) / 1024)
    return {"wall_s": float(np.median(walls)), "peak_rss_mb": float(np.median(rss)), "runs_wall_s": walls,
            "runs_peak_rss_mb": rss}


def cold_start_s(code: str, runs: int) -> float:
    """Median seconds a fresh interpreter needs to run ``code`` (which prints its own elapsed time)."""
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        times.append(float(out.strip().splitlines()[-1]))
    return float(np.median(times))


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


# ------------------------------------------------------------------------------------------------ systems


def measure_model(name: str, model_dir: Path, pairs: list, runs: int, n_single: int, work: Path) -> list[dict]:
    """The scikit-learn reference path and the fast path (what the model and CLI use) of one saved model."""
    import lite_moderation as lm
    from lite_moderation.fast import FastScorer

    load_times = median_time(lambda: lm.load(model_dir), runs)
    model = lm.load(model_dir)
    build_times = median_time(lambda: FastScorer.from_model(model), runs)
    singles, warmup = pairs[WARMUP:WARMUP + n_single], pairs[:WARMUP]
    size = dir_size_mb(model_dir)
    out = work / f"{name}.out.jsonl"
    common = {"model": name, "labels": 15, "size_mb": size}
    load_code = ("import time; t = time.perf_counter(); import lite_moderation as lm; "
                 f"m = lm.load({str(model_dir)!r}); {{}}print(time.perf_counter() - t)")

    reference_proba = ReferencePath(model).predict_proba  # model.predict_proba itself takes the fast path
    reference = {
        **common, "path": "scikit-learn", "load_s": float(np.median(load_times)),
        "batch_s": median_time(lambda: reference_proba(pairs), runs),
        "latency": latency_ms(lambda: lambda item: reference_proba([item]), singles[:max(n_single // 3, 100)],
                              warmup[:20], runs),
        "cold_start_s": cold_start_s(load_code.format(""), runs),
        "score_file": child_run([sys.executable, __file__, "--child-score", str(model_dir), str(DATA), str(out)],
                                runs),
    }

    first_call = []
    for _ in range(runs):
        fresh = FastScorer.from_model(model)
        first_call += median_time(lambda: fresh.predict_proba(pairs), 1)  # noqa: B023 - called at once
    scorer = FastScorer.from_model(model)
    fast = {
        **common, "path": "fast", "load_s": float(np.median(load_times)) + float(np.median(build_times)),
        "batch_s": median_time(lambda: scorer.predict_proba(pairs), runs),
        "batch_first_call_s": first_call,
        "latency": latency_ms(lambda: _one_by_one(FastScorer.from_model(model)), singles, warmup, runs),
        "latency_all_cached": latency_ms(lambda: _one_by_one(scorer), singles, warmup, runs),
        "latency_no_word_cache": latency_ms(lambda: _one_by_one(FastScorer.from_model(model, cache_size=1)),
                                            singles[:n_single // 2], warmup[:20], runs),
        "cold_start_s": cold_start_s(load_code.format("from lite_moderation.fast import FastScorer; "
                                                      "f = FastScorer.from_model(m); "), runs),
        "score_file": child_run([CLI, "score", "--input", str(DATA), "--output", str(out),
                                 "--model", str(model_dir), "-q"], runs),
    }
    return [reference, fast]


class ReferencePath:
    """The scikit-learn reference path of a model, with the attributes ``score_file`` uses."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.thresholds_ = model.thresholds_

    def predict_proba(self, X: Sequence) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.model.reference_decision_function(X)))


def _one_by_one(scorer: object) -> Callable[[object], object]:
    """A one-request scoring call of ``scorer``."""
    return lambda item: scorer.predict_proba([item])


def measure_profanity_check(pairs: list, runs: int, n_single: int, work: Path) -> dict | None:
    """alt-profanity-check on the same pairs, as one text each (prompt, newline, response)."""
    try:
        import profanity_check
        from profanity_check import predict_prob
    except ImportError:
        return None
    import joblib

    texts = [p + "\n" + r for p, r in pairs]
    package = Path(profanity_check.__file__).parent
    files = [package / "data" / "vectorizer.joblib", package / "data" / "model.joblib"]
    code = "import time; t = time.perf_counter(); import profanity_check; print(time.perf_counter() - t)"
    from importlib.metadata import version

    return {
        "model": f"alt-profanity-check {version('alt-profanity-check')}", "path": "scikit-learn", "labels": 1,
        "size_mb": dir_size_mb(package / "data"),
        "load_s": float(np.median(median_time(lambda: [joblib.load(f) for f in files], runs))),
        "cold_start_s": cold_start_s(code, runs),
        "batch_s": median_time(lambda: predict_prob(texts), runs),
        "latency": latency_ms(lambda: lambda text: predict_prob([text]), texts[WARMUP:WARMUP + n_single],
                              texts[:WARMUP], runs),
        "score_file": child_run([sys.executable, __file__, "--child-profanity", str(DATA),
                                 str(work / "apc.out.jsonl")], runs),
    }


def train_word_only(target: Path) -> dict:
    """Fit and save the word-only preset on 30k_test; its training time."""
    import lite_moderation as lm

    dataset = lm.load_dataset(DATA)
    estimator = lm.default_estimator(char_fields=())
    start = time.perf_counter()
    model = estimator.fit(dataset.pairs, dataset.y)
    seconds = time.perf_counter() - start
    lm.save(model, target, card={"recipe": {"command": "default_estimator(char_fields=()) on 30k_test.jsonl"}})
    return {"train_s": seconds, "rows": len(dataset)}


def cv_quality(char: bool) -> dict:
    """Unsafe-head quality by grouped 5-fold CV (seed 0): the shipped card's for the default recipe."""
    import lite_moderation as lm

    if char:
        metrics = lm.read_card()["metrics"]["cv"]
        source = "card of the shipped model (lite-moderation train --cv-folds 5 --seed 0)"
    else:
        metrics = lm.cross_validate(lm.load_dataset(DATA), 5, 0, estimator=lm.default_estimator(char_fields=())).metrics
        source = "lite_moderation.cross_validate(30k_test, 5 folds, seed 0, default_estimator(char_fields=()))"
    unsafe = metrics["unsafe"]
    return {"unsafe_f1": unsafe["f1"], "unsafe_auprc": unsafe["auprc"],
            "categories_macro_f1": metrics.get("categories", {}).get("macro_f1"), "source": source}


# ------------------------------------------------------------------------------------------------ children


def child_score(model_dir: str, input_path: str, output_path: str) -> None:
    """Score a file like ``lite-moderation score`` does, through the scikit-learn reference path."""
    import lite_moderation as lm
    from lite_moderation.scoring import score_file

    score_file(ReferencePath(lm.load(model_dir)), input_path, output_path)


def child_profanity(input_path: str, output_path: str) -> None:
    """Score a file with alt-profanity-check in 2,048-row chunks, one JSON line per row."""
    import itertools

    from profanity_check import predict_prob

    from lite_moderation.data import read_records

    records = iter(read_records(input_path))
    with open(output_path, "w") as out:
        while chunk := list(itertools.islice(records, 2048)):
            out.writelines(json.dumps({"profanity": float(p)}) + "\n" for p in predict_prob([r.pair[0] + "\n" + r.pair[1] for r in chunk]))


# ------------------------------------------------------------------------------------------------ report


def summarise(row: dict, n_pairs: int) -> dict:
    """Headline numbers of one measured system (medians)."""
    return {
        "system": f"{row['model']} / {row['path']}",
        "labels": row["labels"],
        "batch_pairs_per_s": n_pairs / float(np.median(row["batch_s"])),
        "first_call_pairs_per_s": (n_pairs / float(np.median(row["batch_first_call_s"]))
                                   if "batch_first_call_s" in row else None),
        "p50_ms": row["latency"]["p50_ms"],
        "p99_ms": row["latency"]["p99_ms"],
        "p50_no_cache_ms": row.get("latency_no_word_cache", {}).get("p50_ms"),
        "p50_all_cached_ms": row.get("latency_all_cached", {}).get("p50_ms"),
        "p99_all_cached_ms": row.get("latency_all_cached", {}).get("p99_ms"),
        "load_s": row["load_s"],
        "cold_start_s": row["cold_start_s"],
        "size_mb": row["size_mb"],
        "file_peak_rss_mb": row["score_file"]["peak_rss_mb"],
        "file_wall_s": row["score_file"]["wall_s"],
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _cached(row: dict) -> str:
    if row["p50_all_cached_ms"] is None:
        return "—"
    return f"{_fmt(row['p50_all_cached_ms'])} / {_fmt(row['p99_all_cached_ms'])}"


def markdown(result: dict) -> str:
    rows = result["summary"]
    apc = next((r for r in rows if r["system"].startswith("alt-profanity")), None)
    lines = [
        "# Speed and footprint",
        "",
        f"Command: `{result['command']}` ({result['wall_s']:.0f} s). {result['machine']}",
        (f"Texts: the {result['n_pairs']:,} BeaverTails 30k_test QA pairs (mean {result['mean_chars']:.0f} characters "
        "per pair). Medians of "
        f"{result['runs']} runs. Single core for in-process numbers (BLAS threads pinned to 1); the machine's 2 "
        f"cores were shared with other jobs (load average {result['load_before']:.1f} before, "
        f"{result['load_after']:.1f} after), so absolute numbers are pessimistic, ratios within the run are fair."),
        "",
        ("| system | labels | batch pairs/s | first call pairs/s | p50 ms | p99 ms | p50 / p99 ms, all words cached "
         "| p50 ms, no word cache | load s | cold start s | size MB | score-file peak RSS MB | score-file wall s |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['labels']} | {_fmt(r['batch_pairs_per_s'])} | {_fmt(r['first_call_pairs_per_s'])} "
            f"| {_fmt(r['p50_ms'])} | {_fmt(r['p99_ms'])} | {_cached(r)} | {_fmt(r['p50_no_cache_ms'])} | {_fmt(r['load_s'])} "
            f"| {_fmt(r['cold_start_s'])} | {_fmt(r['size_mb'])} | {_fmt(r['file_peak_rss_mb'])} "
            f"| {_fmt(r['file_wall_s'])} |"
        )
    lines.append("| MiniLM-L6 baseline | — | measured by a separate benchmark (slot left empty) | | | | | | | | | | |")
    lines += ["", (f"Import floor: a fresh interpreter that only runs `import lite_moderation` (which imports "
              f"scikit-learn) peaks at {_fmt(result['import_floor_rss_mb'])} MB RSS; the score-file column includes it.")]
    lines += ["", "## Ratios (same run)", ""]
    for r in rows:
        if r["system"].endswith("/ fast"):
            ref = next(x for x in rows if x["system"] == r["system"].replace("/ fast", "/ scikit-learn"))
            lines.append(f"- {r['system']}: {r['batch_pairs_per_s'] / ref['batch_pairs_per_s']:.1f}x the batch "
                         f"throughput and {ref['p50_ms'] / r['p50_ms']:.1f}x lower p50 latency than its scikit-learn "
                         "path" + (f"; vs alt-profanity-check: {r['batch_pairs_per_s'] / apc['batch_pairs_per_s']:.2f}x "
                                   f"throughput, {apc['p50_ms'] / r['p50_ms']:.1f}x lower p50" if apc else "") + ".")
    lines += ["", "## Quality of the presets (grouped 5-fold CV on 30k_test, unsafe head)", "",
              "| preset | unsafe F1 | unsafe AUPRC | categories macro F1 | training s (3,021 rows) | source |",
              "|---|---|---|---|---|---|"]
    for name, q in result["quality"].items():
        train = result["training"].get(name, {}).get("train_s")
        lines.append(f"| {name} | {_fmt(q['unsafe_f1'])} | {_fmt(q['unsafe_auprc'])} "
                     f"| {_fmt(q['categories_macro_f1'])} | {_fmt(train)} | {q['source']} |")
    lines += ["", "Notes:", "",
              ("- batch: one `predict_proba` call on all pairs; the fast path's per-word cache is warm after its first "
              "call (\"first call\" is a fresh scorer)."),
              ("- p50/p99: one pair per call, in-process; each pass starts a fresh scorer warmed up on "
               f"{WARMUP} other rows, so new words still miss its cache (a server shortly after start); \"all words "
               "cached\" reuses the scorer of the batch runs, whose cache holds every word of these texts (a "
               "long-running server); \"no word cache\" is `FastScorer.from_model(model, cache_size=1)`."),
              ("- load: `lite_moderation.load(dir)` in a warm process (+ `FastScorer.from_model` for the fast path); "
              "cold start: a fresh interpreter importing the package and loading the model."),
              ("- score-file: a subprocess scoring the 30k_test file to JSONL: the real CLI (which scores through the "
               "fast path) for the fast rows, `score_file` over `reference_decision_function` for the scikit-learn "
               "rows; peak RSS is that child's `ru_maxrss`."),
              ("- alt-profanity-check scores one label on `prompt + \"\\n\" + response`; its model loads at import, so "
              "its cold start includes the load."), ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    rows = result["summary"]
    names = [r["system"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in ((axes[0], "batch_pairs_per_s", "batch throughput (pairs/s, higher is better)"),
                           (axes[1], "p50_ms", "single request p50 (ms, lower is better)")):
        values = [r[key] for r in rows]
        ax.barh(names, values, color=["#888" if "scikit" in n else "#2a7" for n in names])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlim(min(values) / 1.5, max(values) * 3)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.0f}" if v >= 100 else f" {v:.2f}", va="center", fontsize=8)
    axes[1].set_yticklabels([])
    fig.suptitle(f"lite-moderation speed on {result['n_pairs']:,} BeaverTails QA pairs (1 core, medians)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (medians are reported)")
    parser.add_argument("--single", type=int, default=600, help="single requests per latency pass (fast path)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-cv", action="store_true", help="skip the word-only preset's CV (about 20 s)")
    parser.add_argument("--from-json", type=Path, help="only re-render speed.md and speed.png from a speed.json")
    parser.add_argument("--child-score", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-profanity", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_score:
        return child_score(*args.child_score)
    if args.child_profanity:
        return child_profanity(*args.child_profanity)
    if args.from_json:
        return write_reports(json.loads(args.from_json.read_text()), args.out)
    run(args)


def run(args: argparse.Namespace) -> None:
    from threadpoolctl import threadpool_limits

    import lite_moderation as lm
    from lite_moderation.persistence import DEFAULT_MODEL_DIR

    threadpool_limits(1)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    pairs = lm.load_dataset(DATA).pairs
    measured, training = [], {}
    with tempfile.TemporaryDirectory(prefix="lm-speed-") as tmp:
        work = Path(tmp)
        training["word-only"] = train_word_only(work / "word-only")
        measured += measure_model("default", DEFAULT_MODEL_DIR, pairs, args.runs, args.single, work)
        measured += measure_model("word-only", work / "word-only", pairs, args.runs, args.single, work)
        apc = measure_profanity_check(pairs, args.runs, args.single, work)
        if apc:
            measured.append(apc)
    quality = {"default": cv_quality(char=True)}
    if not args.no_cv:
        quality["word-only"] = cv_quality(char=False)
    result = {
        "command": "python benchmarks/speed.py" + "".join(f" {a}" for a in (sys.argv[1:] if sys.argv else [])),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}, numpy {np.__version__}.",
        "n_pairs": len(pairs), "mean_chars": float(np.mean([len(p) + len(r) for p, r in pairs])),
        "runs": args.runs, "load_before": load_before, "load_after": os.getloadavg()[0],
        "summary": [summarise(row, len(pairs)) for row in measured],
        "quality": quality, "training": training, "raw": measured,
        "minilm": None,
        "import_floor_rss_mb": child_run([sys.executable, "-c", "import lite_moderation"], args.runs)["peak_rss_mb"],
    }
    result["wall_s"] = time.perf_counter() - started
    write_reports(result, args.out)


def write_reports(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "speed.md").write_text(markdown(result))
    wrote_png = plot(result, out / "speed.png")
    print(f"wrote {out / 'speed.json'}, {out / 'speed.md'}" + (", speed.png" if wrote_png else ""))


if __name__ == "__main__":
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    main()
