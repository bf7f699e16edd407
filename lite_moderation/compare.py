"""Systems side by side on identical rows: metrics with intervals, paired differences, McNemar, curves.

A system is its per-row predictions on one labelled file: ours from ``evaluate`` / ``cv --predictions``, or
any other system's JSONL (see :func:`read_system` for the accepted lines). Only the rows every system covers
are compared, and every bootstrap resample draws the same prompt groups for all systems, so a difference's
interval is paired.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import (
    DEFAULT_MAX_RECORD_BYTES,
    DataError,
    Dataset,
    OverlongLine,
    file_lines,
    not_utf8_error,
    parse_json_text,
)
from .model import prompt_groups
from .stats import (
    BOOTSTRAP_METRICS,
    DEFAULT_BOOTSTRAP,
    Bootstrap,
    interval,
    mcnemar,
    metric_samples,
    paired_difference,
    point_metrics,
    resample_counts,
)
from .tables import Table, format_ci

__all__ = ["Comparison", "PlotError", "System", "check_plotting", "compare_systems", "comparison_tables", "plot_curves",
           "read_system"]

#: Where a line of a predictions file may hold the unsafe score, in the order looked at.
SCORE_FIELDS = ("scores.unsafe", "unsafe_score", "score")
VERDICT_FIELDS = ("flagged",)
FORMAT_HINT = ("Each line must be a JSON object with \"row\" (0-based index of the row in --data) and a verdict "
               "(\"flagged\": true/false, or the system's NAME: true/false) and/or an unsafe score (\"scores\": "
               "{\"unsafe\": x}, \"unsafe_score\", \"score\", or NAME: a number)")


class PlotError(ValueError):
    """Curves were asked for but cannot be drawn: matplotlib (the ``plot`` extra) is not installed."""


@dataclass
class System:
    """One system's predictions: ``rows`` (indices into the data), and a score and/or a verdict for each."""

    name: str
    rows: np.ndarray
    scores: np.ndarray | None = None
    verdicts: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.int64)
        if self.scores is None and self.verdicts is None:
            raise ValueError(f"system {self.name}: needs scores or verdicts")
        for what in ("scores", "verdicts"):
            values = getattr(self, what)
            if values is not None and len(values) != len(self.rows):
                raise ValueError(f"system {self.name}: {len(values)} {what} for {len(self.rows)} rows")

    def aligned(self, rows: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(scores, verdicts) of ``rows`` (all covered), in that order."""
        position = np.empty(int(self.rows.max()) + 1, dtype=np.int64)
        position[self.rows] = np.arange(len(self.rows))
        take = position[rows]
        scores = None if self.scores is None else np.asarray(self.scores, dtype=np.float64)[take]
        verdicts = None if self.verdicts is None else np.asarray(self.verdicts, dtype=bool)[take]
        return scores, verdicts


def _lookup(obj: dict, dotted: str) -> object:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _shown(value: object) -> str:
    """A value for an error message, cut short (a 401-digit number or a long string stays readable)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def _is_number(value: object) -> bool:
    """A finite number that fits a float (a 401-digit integer does not: float() overflows)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _parse_line(obj: object, name: str, path: str, line: int, n_rows: int | None) -> tuple[int, float | None,
                                                                                               bool | None]:
    if not isinstance(obj, dict):
        raise DataError(path, line, None, f"expected a JSON object, got {type(obj).__name__}", FORMAT_HINT)
    row = obj.get("row")
    if not isinstance(row, int) or isinstance(row, bool) or row < 0:
        raise DataError(path, line, "row", f"expected a row index (an integer >= 0), got {_shown(row)}", FORMAT_HINT)
    if n_rows is not None and row >= n_rows:
        raise DataError(path, line, "row", f"row {row} is past the end of --data ({n_rows} rows)",
                        "are these predictions for another file?")
    score = next((v for f in SCORE_FIELDS if (v := _lookup(obj, f)) is not None), None)
    verdict = next((obj[f] for f in VERDICT_FIELDS if f in obj), None)
    named = obj.get(name)
    if isinstance(named, bool):
        verdict = named if verdict is None else verdict
    elif named is not None:
        score = named if score is None else score
    if score is not None and not _is_number(score):
        raise DataError(path, line, "score", f"expected a finite number, got {_shown(score)}", FORMAT_HINT)
    if verdict is not None and not isinstance(verdict, bool):
        raise DataError(path, line, "flagged", f"expected true or false, got {_shown(verdict)}", FORMAT_HINT)
    if score is None and verdict is None:
        raise DataError(path, line, None, f"no verdict or score of system {name!r}", FORMAT_HINT)
    return row, score, verdict


def read_system(path: str | os.PathLike, name: str, dataset: Dataset | None = None,
                max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> System:
    """Read one system's JSONL predictions, validated line by line (``path:line: field: problem``).

    Each line: ``{"row": i, ...}`` with ``i`` the 0-based index of the row in the labelled data, and a verdict
    (``"flagged": bool``, or ``NAME: bool`` for files holding several systems' verdicts, NAME being this
    system's name) and/or an unsafe score (``"scores": {"unsafe": x}`` as ``--predictions`` writes it,
    ``"unsafe_score"``, ``"score"``, or ``NAME: number``). Every line must carry the same kinds; a row may
    appear once. With ``dataset``, rows past its end are refused, and so is a ``"line"`` field that is not
    the row's line in the data file (predictions made on another file). A line longer than
    ``max_record_bytes``, not UTF-8, or not JSON (too deeply nested included) is refused with its line. The file
    is opened as data files are (:func:`~lite_moderation.data.file_lines`): ``.gz``/``.xz`` read (``--predictions
    p.jsonl.gz`` writes gzip), another compression refused with how to decompress it.
    """
    path = str(path)
    rows, scores, verdicts = [], [], []
    seen: dict[int, int] = {}
    n_rows = None if dataset is None else len(dataset)
    for line_no, raw in file_lines(path, max_record_bytes):  # .gz/.xz as --predictions writes them
        obj = _parse_json_line(raw, path, line_no)
        if obj is _BLANK:
            continue
        row, score, verdict = _parse_line(obj, name, path, line_no, n_rows)
        if row in seen:
            raise DataError(path, line_no, "row", f"row {row} appears again (first on line {seen[row]})")
        seen[row] = line_no
        _check_data_line(obj, row, dataset, path, line_no)
        _check_same_kinds(scores, verdicts, score, verdict, path, line_no)
        rows.append(row)
        scores.append(score)
        verdicts.append(verdict)
    if not rows:
        raise DataError(path, None, None, "no predictions in the file", FORMAT_HINT)
    return System(name, np.array(rows), None if scores[0] is None else np.array(scores, dtype=np.float64),
                  None if verdicts[0] is None else np.array(verdicts, dtype=bool), source=path)


_BLANK = object()


def _parse_json_line(raw: bytes, path: str, line_no: int) -> object:
    """One line's JSON object (``_BLANK`` for a blank line); any problem is a DataError naming the line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8_error(path, raw, exc.start, line_no) from None
    if isinstance(raw, OverlongLine):  # dropped unread
        raise DataError(path, line_no, None, raw.message)
    if not text.strip():
        return _BLANK
    try:
        return parse_json_text(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, line_no, None, f"not valid JSON ({exc.msg})", FORMAT_HINT) from None
    except ValueError as exc:
        raise DataError(path, line_no, None, f"not valid JSON ({exc})", FORMAT_HINT) from None


def _check_data_line(obj: dict, row: int, dataset: Dataset | None, path: str, line_no: int) -> None:
    line = obj.get("line")
    if dataset is None or line is None or not dataset.lines:
        return
    if line != dataset.lines[row]:
        raise DataError(path, line_no, "line", f"row {row} is line {dataset.lines[row]} of {dataset.path}, "
                        f"not line {line}", "these predictions were made on another file")


def _check_same_kinds(scores: list, verdicts: list, score: object, verdict: object, path: str, line_no: int) -> None:
    if not scores:
        return
    for kind, before, now in (("score", scores[0], score), ("verdict", verdicts[0], verdict)):
        if (before is None) != (now is None):
            had = "has" if now is not None else "has no"
            raise DataError(path, line_no, None, f"this line {had} a {kind}, the first line did not agree",
                            "give every line the same fields")


@dataclass
class Comparison:
    """Systems on the rows they all cover: ``summary`` is the JSON-ready result."""

    summary: dict
    unsafe_true: np.ndarray
    systems: list[tuple[str, np.ndarray | None, np.ndarray | None]]  # (name, scores, verdicts) on those rows


def compare_systems(dataset: Dataset, systems: Sequence[System], bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
                    reference: str | None = None) -> Comparison:
    """Each system's unsafe-head metrics with intervals on the common rows; every pair's (or, with
    ``reference``, every system's against it) paired differences and McNemar's test on the verdicts."""
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError(f"system names must differ, got {names}")
    if reference is not None and reference not in names:
        raise ValueError(f"reference {reference!r} is not one of the systems ({', '.join(names)})")
    common = _common_rows(systems, len(dataset))
    y = dataset.unsafe_labels()[common]
    counts, group_of_row = resample_counts(prompt_groups(dataset.pairs)[common], bootstrap.n_resamples,
                                           bootstrap.seed)
    aligned = [(s.name, *s.aligned(common)) for s in systems]
    samples, points, entries = {}, {}, []
    for (name, scores, verdicts), system in zip(aligned, systems):
        samples[name] = metric_samples(counts, group_of_row, y, scores, verdicts)
        points[name] = point_metrics(group_of_row, y, scores=scores, verdicts=verdicts)
        entries.append({"name": name, "source": system.source, "rows_given": len(system.rows),
                        "has_scores": scores is not None, "has_verdicts": verdicts is not None,
                        "metrics": points[name],
                        "ci": {m: interval(samples[name][m], bootstrap.level) for m in points[name]}})
    differences = [_pair(a, b, samples, points, y, bootstrap.level) for a, b in _pairs(aligned, reference)]
    summary = {"data": str(dataset.path), "rows_in_data": len(dataset), "rows_compared": len(common),
               "positives": int(y.sum()), "bootstrap": bootstrap.describe(counts.shape[1]),
               "systems": entries, "differences": differences}
    return Comparison(summary, y, aligned)


def _common_rows(systems: Sequence[System], n_rows: int) -> np.ndarray:
    if not systems:
        raise ValueError("give at least one system")
    covered = np.ones(n_rows, dtype=bool)
    for system in systems:
        if len(system.rows) and (system.rows.max() >= n_rows or system.rows.min() < 0):
            raise ValueError(f"system {system.name}: rows outside the data's 0..{n_rows - 1}")
        mask = np.zeros(n_rows, dtype=bool)
        mask[system.rows] = True
        covered &= mask
    if not covered.any():
        raise ValueError("the systems share no row: they were run on different files")
    return np.flatnonzero(covered)


def _pairs(aligned: list, reference: str | None) -> list[tuple]:
    if reference is None:
        return [(aligned[i], aligned[j]) for i in range(len(aligned)) for j in range(i + 1, len(aligned))]
    ref = next(a for a in aligned if a[0] == reference)
    return [(ref, other) for other in aligned if other[0] != reference]


def _pair(a: tuple, b: tuple, samples: dict, points: dict, y: np.ndarray, level: float) -> dict:
    (name_a, _, verdicts_a), (name_b, _, verdicts_b) = a, b
    shared = [m for m in BOOTSTRAP_METRICS if m in samples[name_a] and m in samples[name_b]]
    entry = {"a": name_a, "b": name_b,
             "metrics": {m: paired_difference(samples[name_a][m], samples[name_b][m], points[name_a][m],
                                              points[name_b][m], level) for m in shared}}
    if verdicts_a is not None and verdicts_b is not None:
        entry["mcnemar"] = mcnemar(verdicts_a == y, verdicts_b == y)
    return entry


def comparison_tables(summary: dict) -> list[Table]:
    """The systems' metrics, and the paired differences with McNemar's p-value."""
    s = summary
    boot = s["bootstrap"]
    method = (f"[low, high]: {boot['level']:.0%} {boot['method']} ({boot['resamples']} resamples, seed {boot['seed']},"
              f" {boot['groups']} groups), on the {s['rows_compared']} rows of {Path(s['data']).name} every system"
              f" covers ({s['positives']} unsafe).")
    metrics = [m for m in BOOTSTRAP_METRICS if any(m in e["metrics"] for e in s["systems"])]
    rows = [[e["name"], *(format_ci(e["metrics"].get(m), e["ci"].get(m)) if m in e["metrics"] else "-"
                          for m in metrics)] for e in s["systems"]]
    tables = [Table(["system", *map(_label, metrics)], rows, "Unsafe-response detection on identical rows",
                    [method])]
    if s["differences"]:
        shown = [m for m in metrics if any(m in d["metrics"] for d in s["differences"])]
        rows = [[f"{d['a']} - {d['b']}",
                 *(_signed(d["metrics"][m]) if m in d["metrics"] else "-" for m in shown),
                 _mcnemar_cell(d.get("mcnemar"))] for d in s["differences"]]
        note = ("Differences A - B with paired bootstrap intervals (same resampled groups); McNemar: exact "
                "binomial test of the rows only one of the two systems got right (A only / B only).")
        tables.append(Table(["A - B", *map(_label, shown), "McNemar p (A only / B only)"], rows,
                            "Paired differences", [note]))
    return tables


def _label(metric: str) -> str:
    return {"f1": "F1", "fpr": "FPR", "auprc": "AUPRC", "auroc": "AUROC"}.get(metric, metric)


def _signed(diff: dict) -> str:
    if diff["difference"] is None:
        return "n/a"
    ci = diff["ci"]
    text = f"{diff['difference']:+.3f}"
    return f"{text} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else text


def _mcnemar_cell(test: dict | None) -> str:
    if test is None:
        return "-"
    p = test["p_value"]
    return f"{p:.2g} ({test['a_only']} / {test['b_only']})" if p >= 1e-4 else \
        f"{p:.1e} ({test['a_only']} / {test['b_only']})"


def check_plotting() -> None:
    """Refuse early when matplotlib (the ``plot`` extra) is not installed."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise PlotError("drawing curves needs matplotlib: pip install 'lite-moderation[plot]', or '.[plot]' from a clone")


def plot_curves(comparison: Comparison, path: str | os.PathLike) -> None:
    """PR and ROC curves of the systems with scores, each system's verdicts as its one operating point (the
    only mark of a system without scores), as one PNG written atomically."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    from .output import write_bytes

    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = comparison.unsafe_true
    fig, (pr, roc) = plt.subplots(1, 2, figsize=(11, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, scores, verdicts) in enumerate(comparison.systems):
        color, marker = colors[i % len(colors)], "o" if scores is not None else "s"
        if scores is not None:
            precision, recall, _ = precision_recall_curve(y, scores)
            pr.plot(recall, precision, color=color, label=name)
            fpr, tpr, _ = roc_curve(y, scores)
            roc.plot(fpr, tpr, color=color, label=name)
        if verdicts is not None:
            m = {k: np.nan if v is None else v  # an undefined rate is no point
                 for k, v in point_metrics(np.zeros(len(y), dtype=np.int64), y, verdicts=verdicts).items()}
            label = None if scores is not None else f"{name} (verdicts)"
            pr.plot([m["recall"]], [m["precision"]], marker, color=color, label=label)
            roc.plot([m["fpr"]], [m["recall"]], marker, color=color, label=label)
    pr.axhline(y.mean(), color="grey", ls=":", lw=1, label="base rate")
    roc.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall (unsafe)")
    roc.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC (unsafe)")
    pr.legend(loc="lower left", fontsize=8)
    roc.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes(buffer.getvalue(), path)

