"""The guard-benchmark table: each model's F1 on the harmful class per set of a suite, with intervals, beside
the published rows of guard models, as the papers report it.

Every (model, set) cell is :func:`lite_moderation.evaluation.evaluate_rows` on the set's rows (so ``evaluate``
on the same rows gives the same numbers), with percentile bootstrap intervals over prompt groups from
:mod:`lite_moderation.stats` (the same resamples for every model of a set). ``Wavg`` is the papers' weighted
average (GuardReasoner's "Weighted Avg.": the sets' F1 weighted by their rows), per task, over the sets scored
here; its interval combines the sets' resamples. The summary is plain JSON; :func:`bench_tables` renders it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DataError, Dataset
from .evaluation import count_seen_prompts, evaluate_rows
from .guard_suite import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SECONDS,
    GUARD_SUITE,
    Suite,
    SuiteError,
    SuiteFile,
    check_pinned,
    fetch_suite_file,
    find_local_copy,
    read_suite_file,
)
from .hub import DownloadError
from .labels import label_set_of
from .metrics import reported
from .model import prompt_groups
from .output import atomic_text_writer, write_predictions
from .persistence import DOCUMENTED_MODELS
from .stats import Bootstrap, interval, metric_samples, resample_counts
from .tables import Table, format_ci
from .texts import group_keys

__all__ = ["DEFAULT_MODELS", "PUBLISHED", "SOURCES", "BenchSet", "bench_tables", "gather_sets", "model_label",
           "run_bench"]

#: The models ``bench`` scores when none is named: the documented shipped ones (named once, in persistence).
DEFAULT_MODELS = DOCUMENTED_MODELS

METRICS = ("f1", "precision", "recall", "fpr", "accuracy", "auprc", "auroc")
SINGLE_MESSAGES_NOTE = ("Prompt sets are scored once: a prompt alone and a text alone are one input shape (a "
                        "single message gets one verdict however it arrives), so there is no separate "
                        "prompt-as-text row.")


@dataclass(frozen=True)
class Source:
    """Where published figures come from: a short label for the table's column, the full citation, and whether
    the figures are another paper's measurements as this source repeats them (second-hand)."""

    label: str
    citation: str
    second_hand: bool


SOURCES = {
    "guardreasoner": Source(
        "GuardReasoner (arXiv 2501.18492) Tables 1-2",
        "Liu et al., GuardReasoner: Towards Reasoning-based LLM Safeguards, arXiv 2501.18492, Tables 1-2 (read from "
        "assets/prompt.png and assets/response.png in yueliu1999/GuardReasoner @ bb7e686d)", False),
    "wildguard": Source(
        "WildGuard (arXiv 2406.18495) Tables 3-4, via GuardReasoner (second-hand)",
        "Han et al., WildGuard: Open One-Stop Moderation Tools for Safety Risks, Jailbreaks, and Refusals of LLMs, "
        "arXiv 2406.18495, Tables 3-4, as GuardReasoner's Tables 1-2 repeat them (second-hand)", True),
}

_SETS = ("toxicchat", "openai-moderation", "aegis", "simple-safety-tests", "harmbench-prompt",
         "harmbench-response", "saferlhf", "beavertails-30k-test", "xstest-response-harmful")


def _row(system: str, source: str, values: str) -> tuple[str, str, dict[str, str]]:
    """A published row: F1 (%) per set in ``_SETS`` order, as printed in the source ('-': not reported)."""
    cells = values.split()
    return system, source, {name: cell for name, cell in zip(_SETS, cells, strict=True) if cell != "-"}


#: Published F1 (%) on the harmful class of the guard suite's sets, at each system's own operating point
#: (``/work/shared/reference/published_results.md``, "The guard-benchmark suite").
PUBLISHED = (
    _row("OpenAI Moderation API", "wildguard", "25.4 79.0 31.9 63.0 9.6 20.6 10.1 15.7 46.6"),
    _row("Llama Guard 2 8B", "wildguard", "47.1 76.1 71.8 95.8 94.0 77.8 51.6 71.8 90.8"),
    _row("Llama Guard 3 8B", "guardreasoner", "53.12 79.69 71.39 99.50 98.94 85.07 44.36 67.84 87.67"),
    _row("WildGuard 7B", "wildguard", "70.8 72.1 89.4 99.5 98.9 86.3 64.2 84.4 94.7"),
    _row("MD-Judge 7B", "wildguard", "- - - - - 81.6 64.7 86.7 90.4"),
    _row("Beaver-Dam 7B", "wildguard", "- - - - - 58.4 72.1 89.9 83.6"),
    _row("ShieldGemma 9B", "guardreasoner", "67.92 78.58 77.63 91.89 67.96 56.44 47.07 63.61 73.86"),
    _row("GuardReasoner 1B", "guardreasoner", "72.43 70.06 89.34 98.99 96.31 84.75 68.39 85.84 90.12"),
    _row("GuardReasoner 8B", "guardreasoner", "78.79 72.00 90.18 99.50 91.86 85.47 70.04 87.60 94.34"),
)
CUT_OFF_NOTE = ("Published F1 is at each system's own cut-off and moves with it (ShieldGemma-2B on ToxicChat: 6.9 "
                "in GuardReasoner's table, 70.4 at its own optimal cut-off); AUC where published, Granite Guardian "
                "(arXiv 2412.07724) Table 7, second-hand: Llama Guard 3 8B ToxicChat 0.865, OpenAI-mod 0.922, "
                "Aegis 0.816.")


@dataclass(frozen=True)
class BenchSet:
    """One suite file read: its pin, its rows, where it was read from."""

    spec: SuiteFile
    dataset: Dataset
    path: Path


def gather_sets(suite: Suite, specs: Sequence[SuiteFile], data_dir: Path | None = None, cache: Path | None = None,
                progress: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
                max_seconds: float = DEFAULT_MAX_SECONDS) -> tuple[list[BenchSet], list[SuiteFile], list[DataError]]:
    """(sets read, files not in ``data_dir``, bad records) of ``specs``: from ``data_dir`` when given (nothing is
    downloaded), else from the cache, fetched from the pinned commit first when needed. A file that is not the
    pinned bytes, or cannot be fetched, is a :class:`SuiteError` naming it and where to get it."""
    sets, missing, errors = [], [], []
    for spec in specs:
        if data_dir is not None:
            path = find_local_copy(data_dir, spec)
            if path is None:
                missing.append(spec)
                continue
        else:
            try:
                path = fetch_suite_file(suite, spec, cache, progress, max_bytes, max_seconds)
            except DownloadError as exc:
                raise SuiteError(f"{spec.display} ({spec.name}): {exc}") from None
        check_pinned(path, suite, spec)
        dataset, bad = read_suite_file(path, spec)
        errors += bad
        if dataset is not None:
            sets.append(BenchSet(spec, dataset, path))
    return sets, missing, errors


def model_label(model: str | Path) -> str:
    """A model's name in the table and in predictions' file names: a shipped model's name, else its directory's
    name (characters other than letters, digits, '.', '_' and '-' made '_')."""
    name = model if isinstance(model, str) else Path(model).resolve().name
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name) or "model"


def run_bench(models: Sequence[tuple[str, object]], sets: Sequence[BenchSet], suite: Suite,
              missing: Sequence[SuiteFile] = (), bootstrap: Bootstrap | None = None,
              threshold: float | str | None = None, predictions_dir: Path | None = None,
              on_cell: Callable[[str, str], None] | None = None) -> dict:
    """Score every set with every model (``(name, model)`` pairs, names distinct) and return the summary: per
    (set, model) the metrics with intervals and the training-leak count, per model the weighted averages, the
    published rows; with ``predictions_dir``, each set's rows as labelled JSONL and each model's per-row
    predictions, as ``compare`` reads them."""
    bootstrap = bootstrap or Bootstrap()
    names = [name for name, _ in models]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"give one or more models with distinct names, got {names}")
    if predictions_dir is not None:
        _check_predictions_dir(predictions_dir, sets, names)
    results, samples = [], {}
    for bench_set in sets:
        spec, dataset = bench_set.spec, bench_set.dataset
        groups = prompt_groups(dataset.pairs)
        counts, group_of_row = resample_counts(groups, bootstrap.n_resamples, bootstrap.seed)
        keys = group_keys(dataset.pairs)
        if predictions_dir is not None:
            write_set_data(predictions_dir / f"{spec.name}.jsonl", dataset)
        for name, model in models:
            if on_cell is not None:
                on_cell(spec.name, name)
            metrics, proba, predicted, cuts = evaluate_rows(model, dataset, threshold=threshold)
            y = dataset.unsafe_labels()
            drawn = metric_samples(counts, group_of_row, y, proba[:, -1], predicted[:, -1])
            samples[spec.name, name] = drawn["f1"]
            results.append({"set": spec.name, "model": name, "n": len(dataset), "positives": int(y.sum()),
                            "groups": int(counts.shape[1]),
                            "metrics": {m: metrics["unsafe"][m] for m in METRICS},
                            "ci": {m: interval(drawn[m], bootstrap.level) for m in METRICS},
                            "seen_prompts": count_seen_prompts(model, keys),
                            "distinct_prompts": len({" ".join(k.split()).lower() for k in keys})})
            if predictions_dir is not None:
                write_predictions(predictions_dir / f"{spec.name}.{name}.jsonl", proba, cuts, dataset.lines,
                                  groups, labels=label_set_of(model))
    scored = [s.spec for s in sets]
    return {
        "suite": suite.describe(),
        "bootstrap": {k: v for k, v in bootstrap.describe(0).items() if k != "groups"},
        "threshold": threshold if threshold is not None else "default",
        "single_messages": SINGLE_MESSAGES_NOTE,
        "sets": [{"name": s.name, "display": s.display, "task": s.task, "file": s.file, "rows": s.rows,
                  "harmful": s.harmful, "unharmful": s.unharmful, "sha256": s.sha256, "read_from": str(b.path)}
                 for s, b in zip(scored, sets)],
        "missing": [{"name": s.name, "display": s.display, "file": s.file, "url": suite.url(s)} for s in missing],
        "models": names,
        "results": results,
        "wavg": {name: _weighted_averages(name, scored, results, samples, bootstrap.level) for name in names},
        "published": _published_rows(scored),
        "sources": {key: {"citation": s.citation, "second_hand": s.second_hand} for key, s in SOURCES.items()},
    }


def _check_predictions_dir(directory: Path, sets: Sequence[BenchSet], models: Sequence[str]) -> None:
    """Refuse, before any work, a predictions file that would replace one of the suite's files being read."""
    inputs = {b.path.resolve() for b in sets}
    for bench_set in sets:
        for suffix in ("", *(f".{m}" for m in models)):
            target = (directory / f"{bench_set.spec.name}{suffix}.jsonl").resolve()
            if target in inputs:
                raise ValueError(f"--predictions {directory}: writing {target.name} would replace an input file of the "
                                 "suite; give another directory")


def write_set_data(path: Path, dataset: Dataset) -> None:
    """A set's rows in this toolkit's JSONL (``prompt``, ``response`` when there is one, ``is_safe``): the
    ``--data`` of ``compare`` and ``evaluate``."""
    with atomic_text_writer(path) as fh:
        for (prompt, response), unsafe in zip(dataset.pairs, dataset.unsafe_labels()):
            record = {"prompt": prompt, **({"response": response} if response else {}), "is_safe": not bool(unsafe)}
            fh.write(json.dumps(record) + "\n")


def _weighted_averages(model: str, scored: Sequence[SuiteFile], results: list[dict], samples: dict,
                       level: float) -> dict:
    """Per task: F1 averaged over the scored sets weighted by rows, with the interval of the same average of
    the sets' resamples (sets are independent samples)."""
    f1 = {r["set"]: r["metrics"]["f1"] for r in results if r["model"] == model}
    out = {}
    for task in ("prompt", "response"):
        specs = [s for s in scored if s.task == task]
        if not specs:
            continue
        weights = np.array([s.rows for s in specs], dtype=np.float64) / sum(s.rows for s in specs)
        drawn = sum(w * samples[s.name, model] for w, s in zip(weights, specs))  # NaN where a set's F1 is undefined
        point = sum(w * (np.nan if f1[s.name] is None else f1[s.name]) for w, s in zip(weights, specs))
        out[task] = {"f1": reported(point), "ci": interval(drawn, level), "sets": [s.name for s in specs]}
    return out


def _published_rows(scored: Sequence[SuiteFile]) -> list[dict]:
    """The published rows on the scored sets that are the guard suite's pinned files, with their weighted
    averages over the same sets (None where a set is not reported)."""
    pinned = {s.name: s.sha256 for s in GUARD_SUITE.files}
    comparable = [s for s in scored if pinned.get(s.name) == s.sha256]
    rows = []
    for system, source, values in PUBLISHED:
        f1 = {s.name: float(values[s.name]) for s in comparable if s.name in values}
        if not f1:
            continue
        wavg = {}
        for task in ("prompt", "response"):
            specs = [s for s in comparable if s.task == task]
            if specs and all(s.name in f1 for s in specs):
                wavg[task] = sum(s.rows * f1[s.name] for s in specs) / sum(s.rows for s in specs)
        rows.append({"system": system, "source": source, "second_hand": SOURCES[source].second_hand,
                     "f1_percent": f1, "printed": {k: values[k] for k in f1}, "wavg_percent": wavg})
    return rows


# ------------------------------------------------------------------------------------------ tables


def bench_tables(summary: dict) -> list[Table]:
    """The paper-shaped table (F1 % per set and Wavg, ours with intervals, then the published rows with their
    sources) and ours in detail (F1, AUPRC, AUROC with intervals, the leak check)."""
    return [_paper_table(summary), _detail_table(summary)]


def _paper_table(summary: dict) -> Table:
    sets = summary["sets"]
    by_task = {task: [s for s in sets if s["task"] == task] for task in ("prompt", "response")}
    columns = ["system"]
    for task, mark in (("prompt", "Wavg-p"), ("response", "Wavg-r")):
        columns += [s["display"] for s in by_task[task]] + ([mark] if by_task[task] else [])
    cell = {(r["model"], r["set"]): r for r in summary["results"]}
    rows = []
    for model in summary["models"]:
        row = [f"lite-moderation {model}"]
        for task in ("prompt", "response"):
            leaked = False
            for s in by_task[task]:
                result = cell[model, s["name"]]
                seen = result["seen_prompts"] > 0
                leaked |= seen
                row.append(_percent(result["metrics"]["f1"], result["ci"]["f1"]) + ("*" if seen else ""))
            if by_task[task]:
                wavg = summary["wavg"][model][task]
                row.append(_percent(wavg["f1"], wavg["ci"]) + ("*" if leaked else ""))
        rows.append([*row, "this run"])
    for published in summary["published"]:
        row = [published["system"]]
        for task in ("prompt", "response"):
            row += [published["printed"].get(s["name"], "-") for s in by_task[task]]
            if by_task[task]:
                wavg = published["wavg_percent"].get(task)
                row.append("-" if wavg is None else f"{wavg:.1f}")
        rows.append([*row, SOURCES[published["source"]].label])
    return Table([*columns, "source"], rows, f"F1 (%) on the harmful class, suite {summary['suite']['name']} "
                 f"({summary['suite']['repository']} @ {summary['suite']['commit'][:8]})", _paper_notes(summary))


def _paper_notes(summary: dict) -> list[str]:
    boot = summary["bootstrap"]
    notes = [(f"lite-moderation rows: each model at its {_point(summary['threshold'])}; [low, high]: "
              f"{boot['level']:.0%} {boot['method']} ({boot['resamples']} resamples, seed {boot['seed']}) per set. "
              "Wavg-p / Wavg-r: the sets' F1 weighted by their rows (GuardReasoner's Weighted Avg.) over the "
              "prompt / response sets of this table only (GuardReasoner's also counts WildGuardTest, not in "
              "this suite); its interval from the sets' resamples."),
             summary["single_messages"]]
    one_class = [s["display"] for s in summary["sets"] if s["unharmful"] == 0]
    if one_class:
        notes.append(f"{', '.join(one_class)}: harmful rows only, so F1 = 2R/(1+R) (R: recall) and AUPRC/AUROC "
                     "are undefined.")
    leaks = [r for r in summary["results"] if r["seen_prompts"]]
    if leaks:
        listed = "; ".join(f"{r['model']} on {_display(summary, r['set'])}: {r['seen_prompts']} of "
                           f"{r['distinct_prompts']} prompts" for r in leaks)
        notes.append(f"Marked *: the model saw prompts of this set in training ({listed}): the figure overstates its "
                     "quality (with every prompt seen, it measures memorisation). A model's honest figure on its own "
                     "training data is its cross-validation (lite-moderation info shows it).")
    if summary["missing"]:
        notes.append("Not scored here (file not available): " + "; ".join(
            f"{m['display']} ({m['url']})" for m in summary["missing"]) + ".")
    if summary["published"]:
        cited = {p["source"] for p in summary["published"]}
        notes.append("Sources: " + "; ".join(SOURCES[k].citation for k in SOURCES if k in cited) + ".")
        notes.append(CUT_OFF_NOTE)
    return notes


def _detail_table(summary: dict) -> Table:
    rows = []
    for r in summary["results"]:
        spec = next(s for s in summary["sets"] if s["name"] == r["set"])
        rows.append([spec["display"], spec["task"], f"{r['n']} ({r['positives']})", r["model"],
                     *(format_ci(r["metrics"][m], r["ci"][m]) for m in ("f1", "auprc", "auroc")),
                     f"{r['seen_prompts']} of {r['distinct_prompts']}"])
    point = "default point" if summary["threshold"] == "default" else f"operating point {summary['threshold']}"
    caption = f"lite-moderation per set: harmful-class F1 at the {point}, AUPRC and AUROC of the unsafe score"
    note = ("[low, high]: as above. `lite-moderation evaluate` on the same rows prints the same F1, AUPRC and AUROC "
            "(--predictions DIR writes the rows and predictions).")
    return Table(["set", "task", "rows (harmful)", "model", "F1", "AUPRC", "AUROC", "prompts seen in training"],
                 rows, caption, [note])


def _point(threshold: object) -> str:
    if threshold == "default":
        return "default operating point (its tuned cut-offs: the pairs' for response sets, the single messages' " \
               "for prompt sets)"
    return f"operating point {threshold}"


def _display(summary: dict, name: str) -> str:
    return next(s["display"] for s in summary["sets"] if s["name"] == name)


def _percent(value: float | None, ci: Sequence[float] | None) -> str:
    if value is None:
        return "n/a"
    text = f"{100 * value:.1f}"
    return f"{text} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else text
