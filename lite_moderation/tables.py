"""Tables for reports and papers: one table, rendered as aligned text, Markdown, LaTeX (booktabs) or CSV.

The metric tables of ``cv`` / ``evaluate`` are built here too, so a paper's table is generated, not typed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from .taxonomy import short_name

__all__ = ["REPORTED_NOTE", "TABLE_FORMATS", "Table", "format_ci", "latex_escape", "metrics_tables", "render",
           "render_all", "render_table", "repeats_table"]

TABLE_FORMATS = ("text", "markdown", "latex", "csv")

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}

#: What tells the two category measures apart, under their tables.
REPORTED_NOTE = ("As reported: the categories score returns, named only on flagged rows and at least one on each. "
                 "Each head at its own cut-off: on every row, as a model card records them.")

#: Unsafe-head metrics in table order, with their column names.
UNSAFE_COLUMNS = (("f1", "F1"), ("precision", "precision"), ("recall", "recall"), ("fpr", "FPR"),
                  ("accuracy", "accuracy"), ("auprc", "AUPRC"), ("auroc", "AUROC"))


@dataclass
class Table:
    """A header and rows of cells (strings); the first column is left-aligned, the others right-aligned."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (underscores in names, % in captions)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def format_ci(value: float | None, ci: Sequence[float] | None = None, digits: int = 3) -> str:
    """``0.772 [0.757, 0.787]``; ``n/a`` for an undefined value."""
    if value is None:
        return "n/a"
    text = f"{value:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def render(table: Table, fmt: str) -> str:
    """The table as ``text``, ``markdown``, ``latex`` (a booktabs ``table`` environment) or ``csv``."""
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"unknown table format {fmt!r}: expected one of {', '.join(TABLE_FORMATS)}")
    return {"text": _text, "markdown": _markdown, "latex": _latex, "csv": _csv}[fmt](table)


render_table = render  # the package-level name (``lm.render_table``)


def render_all(tables: Sequence[Table], fmt: str) -> str:
    """Several tables, one after the other (CSV: separated by a blank line)."""
    return "\n".join(render(t, fmt) for t in tables)


def _text(table: Table) -> str:
    widths = [max(len(str(r[i])) for r in [table.columns, *table.rows]) for i in range(len(table.columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [table.caption] if table.caption else []
    out += [line(table.columns), "  ".join("-" * w for w in widths), *map(line, table.rows), *table.notes]
    return "\n".join(out) + "\n"


def _markdown(table: Table) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    out = [f"**{table.caption}**", ""] if table.caption else []
    out += [line(table.columns), "|" + "|".join(["---"] + ["---:"] * (len(table.columns) - 1)) + "|",
            *map(line, table.rows)]
    out += ["", *table.notes] if table.notes else []
    return "\n".join(out) + "\n"


def _latex(table: Table) -> str:
    def line(cells: Sequence[str]) -> str:
        return " & ".join(latex_escape(c) for c in cells) + r" \\"

    out = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(table.columns) - 1) + "}",
           r"\toprule", line(table.columns), r"\midrule", *map(line, table.rows), r"\bottomrule", r"\end{tabular}"]
    caption = ". ".join(part.rstrip(".") for part in [table.caption, *table.notes] if part)
    if caption:
        out.append(r"\caption{" + latex_escape(caption) + ".}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def _csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return buffer.getvalue()


def _bootstrap_note(metrics: dict) -> list[str]:
    info = metrics.get("bootstrap")
    if not info:
        return []
    return [(f"[low, high]: {info['level']:.0%} {info['method']} ({info['resamples']} resamples, "
             f"seed {info['seed']}, {info['groups']} groups).")]


_CATEGORY_HEADERS = {"f1": "F1", "precision": "precision", "recall": "recall", "auprc": "AUPRC"}


def _category_table(cats: dict, keys: tuple[str, ...], caption: str, notes: list[str] | None = None) -> Table:
    """One row per category (``keys`` of each, then its support), macro- and micro-F1 in the caption."""
    macro = format_ci(cats["macro_f1"], cats.get("ci", {}).get("macro_f1"))
    per = cats["per_category"]
    rows = [[short_name(c), *(format_ci(per[c][k]) for k in keys), str(per[c]["support"])] for c in per]
    return Table(["category", *(_CATEGORY_HEADERS[k] for k in keys), "support"], rows,
                 f"{caption} macro-F1 {macro}, micro-F1 {format_ci(cats['micro_f1'])}", notes or [])


def metrics_tables(metrics: dict, title: str = "") -> list[Table]:
    """The tables of a ``moderation_metrics`` result (with ``"ci"`` where given): the unsafe head's metrics,
    then, with categories, macro/micro-F1 and one row per category."""
    unsafe = metrics["unsafe"]
    ci = unsafe.get("ci", {})
    rows = [[label, format_ci(unsafe[key], ci.get(key))] for key, label in UNSAFE_COLUMNS]
    caption = f"{title}: " if title else ""
    tables = [Table(["unsafe head", "value [95% CI]" if ci else "value"], rows,
                    f"{caption}unsafe-response detection, {metrics['n']} rows", _bootstrap_note(metrics))]
    if "categories" not in metrics:
        return tables
    tables.append(_category_table(metrics["categories"], ("f1", "precision", "recall", "auprc"),
                                  f"{caption}harm categories, each head at its own cut-off:"))
    if "reported_categories" in metrics:
        tables.append(_category_table(metrics["reported_categories"], ("f1", "precision", "recall"),
                                      f"{caption}harm categories as reported:", [REPORTED_NOTE]))
    return tables
    reported = metrics["reported_categories"]
    macro = format_ci(reported["macro_f1"], reported.get("ci", {}).get("macro_f1"))
    per = reported["per_category"]
    rows = [[short_name(c), format_ci(per[c]["f1"]), format_ci(per[c]["precision"]), format_ci(per[c]["recall"]),
             str(per[c]["support"])] for c in per]
    tables.append(Table(["category", "F1", "precision", "recall", "support"], rows,
                        f"{caption}harm categories as reported: macro-F1 {macro}, "
                        f"micro-F1 {format_ci(reported['micro_f1'])}", [REPORTED_NOTE]))
    return tables


def repeats_table(repeats: dict) -> Table:
    """Mean and standard deviation of each metric over cross-validations with different fold seeds."""
    prefix = {"unsafe": "unsafe ", "reported_categories": "reported "}
    rows = [[f"{prefix.get(part, '')}{name}", f"{value:.3f}", f"{repeats['std'][part][name]:.3f}"]
            for part, values in repeats["mean"].items() for name, value in values.items()]
    seeds = repeats["seeds"]
    return Table(["metric", "mean", "sd"], rows, f"over {len(seeds)} fold seeds ({seeds[0]}..{seeds[-1]})")
