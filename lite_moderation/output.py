"""Writing results: atomic files, and the table / JSON / JSONL / CSV shapes of score output."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from .taxonomy import CATEGORIES, short_name

__all__ = ["FORMATS", "RowWriter", "atomic_text_writer", "write_json", "write_predictions"]

FORMATS = ("table", "json", "jsonl", "csv")


@contextlib.contextmanager
def atomic_text_writer(path: str | os.PathLike | None) -> Iterator[TextIO]:
    """Write text to ``path`` through a temp file renamed into place on success ("-"/None: stdout).

    A crash or an error mid-way leaves the old file (or no file), never half a file.
    """
    if path is None or str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp makes it private; results are ordinary files
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(obj: object, path: str | os.PathLike | None) -> None:
    """Pretty JSON to a file (atomically) or stdout."""
    with atomic_text_writer(path) as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


def write_predictions(path: str | os.PathLike, proba: object, predicted: object, lines: object, groups: object,
                      folds: object = None) -> None:
    """Per-row predictions (JSONL, atomically): row index, input line, prompt group, fold (out-of-fold runs),
    the 15 scores and the verdicts, so a result can be recomputed or compared with another system's rows."""
    from .taxonomy import LABELS

    with atomic_text_writer(path) as fh:
        for i, (scores, flags) in enumerate(zip(proba, predicted)):
            row = {"row": i, "line": int(lines[i]), "group": int(groups[i])}
            if folds is not None:
                row["fold"] = int(folds[i])
            row["flagged"] = bool(flags[-1])
            row["scores"] = dict(zip(LABELS, map(float, scores)))
            row["categories"] = [c for c, flag in zip(CATEGORIES, flags[:-1]) if flag]
            fh.write(json.dumps(row) + "\n")


class RowWriter:
    """Streams score results in one of ``FORMATS``; ``json`` is a single list closed at ``close()``.

    Each row is ``result`` (the moderate() dict) plus an optional ``line`` of the input file.
    """

    def __init__(self, stream: TextIO, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: expected one of {FORMATS}")
        self.stream = stream
        self.fmt = fmt
        self.count = 0
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None

    def write(self, result: dict, line: int | None = None) -> None:
        row = {"line": line, **result} if line is not None else result
        getattr(self, f"_write_{self.fmt}")(row)
        self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("[]\n" if self.count == 0 else "\n]\n")

    def _write_jsonl(self, row: dict) -> None:
        self.stream.write(json.dumps(row) + "\n")

    def _write_json(self, row: dict) -> None:
        self.stream.write(("[\n  " if self.count == 0 else ",\n  ") + json.dumps(row))

    def _write_csv(self, row: dict) -> None:
        if self.count == 0:
            header = ["line"] if "line" in row else []
            self._csv.writerow([*header, "flagged", "unsafe_score", *CATEGORIES])
        leading = [row["line"]] if "line" in row else []
        scores = [f"{row['category_scores'][c]:.6f}" for c in CATEGORIES]
        self._csv.writerow([*leading, int(row["flagged"]), f"{row['unsafe_score']:.6f}", *scores])

    def _write_table(self, row: dict) -> None:
        self.stream.write(format_table_row(row, self.count) + "\n")


def format_table_row(row: dict, index: int) -> str:
    """One line for humans: verdict, unsafe score, and the flagged categories with their scores."""
    where = f"line {row['line']}" if "line" in row else f"#{index + 1}"
    verdict = "FLAGGED" if row["flagged"] else "ok"
    flagged = sorted(
        (c for c in CATEGORIES if row["categories"][c]), key=lambda c: -row["category_scores"][c]
    )
    cats = ", ".join(f"{short_name(c)} {row['category_scores'][c]:.2f}" for c in flagged) or "-"
    return f"{where:>10}  {verdict:<7}  unsafe {row['unsafe_score']:.3f}  {cats}"


def format_detail(result: dict, thresholds: dict[str, float]) -> str:
    """A full report of one item: verdict, unsafe score and every category's score and threshold."""
    out = io.StringIO()
    verdict = "FLAGGED (unsafe)" if result["flagged"] else "not flagged (safe)"
    out.write(f"verdict: {verdict}\nunsafe score: {result['unsafe_score']:.3f}"
              f"  (threshold {thresholds['unsafe']:.3f})\n\n")
    out.write(f"{'category':<34} {'score':>6} {'thresh':>6}  flag\n")
    for name in CATEGORIES:
        mark = "yes" if result["categories"][name] else ""
        out.write(f"{short_name(name):<34} {result['category_scores'][name]:>6.3f} {thresholds[name]:>6.3f}  {mark}\n")
    return out.getvalue()
