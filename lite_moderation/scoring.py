"""Scoring streams of records in bounded-memory chunks, in input order, with every bad row accounted for."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .data import DataError, Record, read_records
from .model import ModerationClassifier
from .output import RowWriter, atomic_text_writer
from .progress import Progress

__all__ = ["ScoreSummary", "iter_scores", "score_file"]

CHUNK_SIZE = 2048


@dataclass
class ScoreSummary:
    """Row accounting of one scoring run: rows_in == scored + rejected."""

    scored: int = 0
    flagged: int = 0
    errors: list[DataError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.errors)

    @property
    def rows_in(self) -> int:
        return self.scored + self.rejected


def iter_scores(model: ModerationClassifier, records: Iterable[Record], threshold: float | None = None,
                chunk_size: int = CHUNK_SIZE) -> Iterator[tuple[Record, dict]]:
    """(record, verdict) for each record, scored a chunk at a time so memory stays bounded."""
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, chunk_size)):
        results = model.moderate([r.pair for r in chunk], threshold=threshold)
        yield from zip(chunk, results)


def score_file(model: ModerationClassifier, input_path: str | os.PathLike, output_path: str | os.PathLike | None,
               fmt: str = "jsonl", on_error: str = "skip", threshold: float | None = None,
               input_format: str = "auto", progress: bool = False) -> ScoreSummary:
    """Score every record of ``input_path`` into ``output_path`` (atomic; None or "-" = stdout).

    Bad records raise (``on_error="fail"``) or land in ``summary.errors`` (``"skip"``); each output row
    carries the input ``line`` so skipped rows never shift the alignment.
    """
    summary = ScoreSummary()
    records = read_records(input_path, on_error=on_error, errors=summary.errors, fmt=input_format)
    with atomic_text_writer(output_path) as stream, Progress("scoring", enabled=progress, unit="rows") as bar:
        writer = RowWriter(stream, fmt)
        for record, result in iter_scores(model, records, threshold):
            writer.write(result, line=record.line)
            summary.scored += 1
            summary.flagged += result["flagged"]
            bar.update()
        writer.close()
    return summary
