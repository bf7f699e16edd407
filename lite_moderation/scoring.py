"""Scoring streams of records in bounded-memory chunks, in input order, with every bad row accounted for."""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .data import DEFAULT_MAX_RECORD_BYTES, Columns, DataError, DataWarning, Record, read_records, skipped_rows
from .explain import table_reasons
from .labels import label_set_of
from .texts import message_mask
from .thresholds import checked_threshold, cut_offs

if TYPE_CHECKING:
    from .fast import FastScorer
    from .model import ModerationClassifier
from .output import RowWriter, atomic_text_writer
from .progress import Progress

__all__ = ["NothingScoredError", "ScoreSummary", "WorkerDiedError", "iter_scores", "score_file"]

CHUNK_SIZE = 2048
#: Fewer rows than this never show a progress bar, however long they take.
PROGRESS_MIN_ROWS = 256


@dataclass
class ScoreSummary:
    """Row accounting of one scoring run: rows_in == scored + rejected."""

    scored: int = 0
    flagged: int = 0
    errors: list[DataError] = field(default_factory=list)
    #: Rows scored despite a problem in a field scoring does not use (a malformed label).
    warnings: list[DataWarning] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return skipped_rows(self.errors)

    @property
    def rows_in(self) -> int:
        return self.scored + self.rejected


def _chunks(records: Iterable[Record], chunk_size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, chunk_size)):
        yield chunk


def iter_scores(model: ModerationClassifier | FastScorer, records: Iterable[Record],
                threshold: float | str | None = None,
                chunk_size: int = CHUNK_SIZE, jobs: int = 1) -> Iterator[tuple[Record, dict]]:
    """(record, verdict) for each record, in input order, scored a chunk at a time so memory stays bounded.

    ``jobs`` > 1 scores chunks in that many worker processes (forked, so the model is shared, never
    pickled), with at most ``2 * jobs`` chunks in flight.
    """
    checked_threshold(threshold, model)
    chunks = _chunks(records, chunk_size)
    probas = _parallel_probas(model, chunks, jobs) if jobs > 1 else _serial_probas(model, chunks)
    for chunk, proba in probas:
        yield from zip(chunk, label_set_of(model).results(proba, _chunk_cut_offs(model, chunk, threshold)))


def _chunk_cut_offs(model: ModerationClassifier | FastScorer, chunk: list[Record],
                    threshold: float | str | None) -> np.ndarray:
    """Each record's cut-offs, by its shape (pair or single message)."""
    return cut_offs(model, message_mask([r.pair for r in chunk]), threshold)


def _serial_probas(model: ModerationClassifier | FastScorer,
                   chunks: Iterator[list[Record]]) -> Iterator[tuple[list[Record], np.ndarray]]:
    for chunk in chunks:
        yield chunk, model._label_proba([r.pair for r in chunk])


_WORKER_MODEL: ModerationClassifier | None = None


def _worker_init() -> None:
    """Workers leave signals to the parent: Ctrl-C reaches the whole process group, and the parent's
    SIGTERM handler (inherited through fork) must not run in them; the parent stops them when it ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _worker_proba(pairs: list) -> np.ndarray:
    return _WORKER_MODEL._label_proba(pairs)


def _parallel_probas(model: ModerationClassifier | FastScorer, chunks: Iterator[list[Record]],
                     jobs: int) -> Iterator[tuple[list[Record], np.ndarray]]:
    """Chunk probabilities from a pool of forked workers, in order, with a bounded window of pending chunks.

    A pool that notices a dead worker (``concurrent.futures``, unlike ``multiprocessing.Pool``, which waits
    forever for the lost chunk) ends the run with a :class:`WorkerDiedError`.
    """
    global _WORKER_MODEL
    if "fork" not in multiprocessing.get_all_start_methods():
        raise ValueError("--jobs > 1 needs the 'fork' start method (Linux, macOS); use --jobs 1 here")
    _WORKER_MODEL = model
    pending: collections.deque = collections.deque()
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init)
    try:
        for chunk in chunks:
            pending.append((chunk, _submit(pool, chunk)))
            if len(pending) >= 2 * jobs:
                yield _next_result(pending)
        while pending:
            yield _next_result(pending)
    finally:
        # The chunks already handed to workers finish (a second or so); the queued ones are dropped. A dead
        # worker has already broken the pool, so this never waits for it.
        pool.shutdown(wait=True, cancel_futures=True)


class WorkerDiedError(RuntimeError):
    """A scoring worker process died (killed by a signal, e.g. the out-of-memory killer): its rows are lost."""


def _died_at(line: int) -> WorkerDiedError:
    return WorkerDiedError(f"a scoring worker process died (killed by a signal, e.g. the out-of-memory killer) while "
                           f"rows up to line {line} were being scored, so the run stopped (an --output file is not "
                           f"written): run again, with fewer --jobs if memory is short")


def _submit(pool: ProcessPoolExecutor, chunk: list[Record]) -> Future:
    try:
        return pool.submit(_worker_proba, [r.pair for r in chunk])
    except BrokenProcessPool:
        raise _died_at(chunk[0].line) from None


def _next_result(pending: collections.deque) -> tuple[list[Record], np.ndarray]:
    chunk, future = pending.popleft()
    try:
        return chunk, future.result()
    except BrokenProcessPool:
        raise _died_at(chunk[-1].line) from None


def score_file(model: ModerationClassifier | FastScorer, input_path: str | os.PathLike,
               output_path: str | os.PathLike | None,
               fmt: str = "jsonl", on_error: str = "skip", threshold: float | str | None = None,
               input_format: str = "auto", progress: bool = False, jobs: int = 1,
               chunk_size: int = CHUNK_SIZE, columns: Columns | None = None,
               max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
               checkpoint: Callable[[], None] | None = None) -> ScoreSummary:
    """Score every record of ``input_path`` into ``output_path`` (atomic; None or "-" = stdout).

    Bad records raise (``on_error="fail"``) or land in ``summary.errors`` (``"skip"``); labels are not
    read, and a malformed one lands in ``summary.warnings`` with its row still scored. Each output row
    carries the input ``line`` so skipped rows never shift the alignment. ``jobs`` worker processes score
    chunks in parallel; output order is still input order. ``columns`` names the records' text fields when
    they are not the standard ones. ``checkpoint`` is called after each chunk and once more just before the output
    file is put in place: an exception it raises stops the run (how a stopped Dask run ends its tasks), and like
    any error leaves the old file (or none) and no temp file.
    """
    summary = ScoreSummary()
    records = read_records(input_path, on_error=on_error, errors=summary.errors, fmt=input_format, require="text",
                           warnings=summary.warnings, columns=columns, max_record_bytes=max_record_bytes)
    bar = Progress("scoring", enabled=progress, unit="rows", min_steps=PROGRESS_MIN_ROWS)
    checked_threshold(threshold, model)
    chunks = _chunks(records, chunk_size)
    with atomic_text_writer(output_path) as stream, bar:
        reasons = table_reasons(model) if fmt == "table" else None
        writer = RowWriter(stream, fmt, reasons=reasons, labels=label_set_of(model), id_column=True, line_column=True)
        probas = _parallel_probas(model, chunks, jobs) if jobs > 1 else _serial_probas(model, chunks)
        for chunk, proba in probas:  # a chunk at a time: the writer formats rows from the arrays
            items = [r.pair for r in chunk] if reasons else None
            summary.flagged += writer.write_scores(proba, _chunk_cut_offs(model, chunk, threshold),
                                                   [r.line for r in chunk], items, [r.id for r in chunk])
            summary.scored += len(chunk)
            bar.update(len(chunk))
            if checkpoint is not None:
                checkpoint()
        writer.close()
        if summary.rejected and not summary.scored:  # raised inside the writer: an --output file is kept as it was
            raise NothingScoredError(summary)
        if checkpoint is not None:  # the last word before the temp file is renamed into place
            checkpoint()
    return summary


class NothingScoredError(DataError):
    """Every row of a file was rejected: the run did not do its job, and an output file is not written.

    ``summary`` holds the rejected rows' errors (each with its line)."""

    def __init__(self, summary: ScoreSummary) -> None:
        first = summary.errors[0]
        super().__init__(first.path, None, None, f"no row could be scored (all {summary.rejected} skipped); the "
                         f"first: {first}", None)
        self.summary = summary

    def __reduce__(self) -> tuple:
        return (type(self), (self.summary,))
