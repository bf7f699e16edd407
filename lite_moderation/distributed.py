"""Score corpora on Dask: many files, or a user's ``dask.bag`` / ``dask.dataframe``, over processes or machines.

Why Dask: data teams already run it, and it brings scheduling, retries on worker death and multi-machine
clusters, so this module only says what one task does. Dask is an optional extra, imported lazily:
without it, every entry point raises :class:`DaskMissingError` saying ``pip install 'lite-moderation[dask]'``.

- The model travels as the bytes of its own files (a :class:`ModelPayload`). On a distributed cluster they are
  not in the task graph (the shipped model's 15 MiB made every run warn "Sending large graph"): a worker plugin
  (:class:`lite_moderation._model_plugin.ModelPlugin`, registered once per model) hands them to every worker, those
  that join or restart later included, and the tasks carry only the model's checksum. Scattered data would not
  do: a worker that dies takes its copy along and Dask cannot compute it again, so the death of the last worker
  holding it cancelled the run instead of retrying its file. Without a cluster (``dask.compute`` on threads or
  processes) the bytes are one graph key, passed to each task. A worker writes the files to a temp dir and
  rebuilds the model with :func:`lite_moderation.load_scorer` (checksums verified, no pickle), cached per process
  by the model's checksum.
- Each input file is one task that writes one output file through a temp file renamed into place: a task
  retried after a worker died never leaves half a file or duplicated rows.
- Row accounting per file and in total: rows_in == scored + rejected.
- A run on a local cluster of its own that is stopped (Ctrl-C, SIGTERM, an error) removes the temp files its
  killed workers left (only those provably theirs: :func:`lite_moderation.output.remove_stale_temps`).
- A run on a cluster that is not its own (``scheduler``, ``client``, the current client) that is stopped tells its
  tasks so and waits for them (:func:`_stop_run`): Dask cannot interrupt a running task, and one that was merely
  cancelled would finish its file and put it in place after the run had ended.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .data import DEFAULT_MAX_RECORD_BYTES, Columns, DataError, DataWarning, record_from_object
from .labels import LabelSet
from .output import OutputError, make_temp_file, remove_stale_temps
from .persistence import METADATA_FILE, ModelFormatError, load_scorer, read_card, read_metadata
from .scoring import CHUNK_SIZE, NothingScoredError, WorkerDiedError, score_file

if TYPE_CHECKING:
    from .fast import FastScorer

__all__ = [
    "INSTALL_HINT", "CorpusSummary", "DaskMissingError", "FileSummary", "ModelPayload", "dask_client",
    "model_from_payload", "model_payload", "output_path_for", "resolve_inputs", "score_bag", "score_corpus",
    "score_dataframe", "score_files",
]

INSTALL_HINT = "pip install 'lite-moderation[dask]' (from a clone of the repository: pip install '.[dask]')"
OUTPUT_FORMATS = ("jsonl", "csv", "json")
#: Rejected rows kept in full per file (the rest are only counted by reason), so a corpus of bad rows
#: does not ship millions of errors back to the client.
MAX_EXAMPLES = 20
_COMPRESSION_SUFFIXES = (".gz", ".xz")


def _score_columns(labels: LabelSet) -> tuple[str, ...]:
    """The columns a scored dataframe gains: flagged, unsafe_score, then ``<category>_score`` per category (short
    names: no commas in column names)."""
    return ("flagged", "unsafe_score", *(f"{labels.short_name(c)}_score" for c in labels.categories))


class DaskMissingError(ImportError):
    """The dask engine was asked for but Dask is not installed."""


def _require_dask() -> Any:
    """Import dask (and check distributed) only when used, with an install hint when missing."""
    try:
        import dask
        import dask.delayed
        import distributed  # noqa: F401
    except ImportError as exc:
        raise DaskMissingError(f"the dask engine needs Dask ({exc}); install it with: {INSTALL_HINT}") from None
    return dask


# ------------------------------------------------------------------------------------------ model shipping


@dataclass(frozen=True)
class ModelPayload:
    """A saved model as plain bytes (its directory's files), keyed by the checksum in its ``model.json``."""

    checksum: str
    files: dict[str, bytes]

    @property
    def size_bytes(self) -> int:
        return sum(len(data) for data in self.files.values())

    @property
    def labels(self) -> LabelSet:
        """The model's label set, from its (verified) ``model.json``."""
        metadata = json.loads(self.files[METADATA_FILE])
        return LabelSet.from_names(metadata["labels"], metadata.get("label_descriptions"))


def model_payload(path: str | os.PathLike | None = None) -> ModelPayload:
    """Read a model directory (default: the shipped model) as bytes, after verifying its checksums here."""
    card = read_card(path)  # fails early, on the client, for a missing or damaged model
    directory = Path(card["path"])
    metadata = read_metadata(directory)
    names = [METADATA_FILE, *metadata["files"]]
    return ModelPayload(metadata["checksum"], {name: (directory / name).read_bytes() for name in names})


_MODELS: dict[str, FastScorer] = {}
_MODELS_LOCK = threading.Lock()
#: How many times this process rebuilt each model from its bytes (1 per worker process is the contract).
LOAD_COUNTS: Counter[str] = Counter()


#: The payloads the cluster's :class:`~lite_moderation._model_plugin.ModelPlugin` handed to this process, by checksum.
_SHIPPED: dict[str, ModelPayload] = {}
#: Prefix of the names of those plugins (and of the graph key of a task's handle on a shipped model).
SHIPPED_PREFIX = "lite-moderation-model-"


@dataclass(frozen=True)
class _ShippedModel:
    """A task's handle on a model shipped to the workers by a plugin: its checksum, not its bytes."""

    checksum: str


def _receive_payload(payload: ModelPayload) -> None:
    """What the plugin does on each worker: keep the bytes, to be rebuilt into the model by the first task."""
    with _MODELS_LOCK:
        _SHIPPED[payload.checksum] = payload


def _model_of(model: ModelPayload | _ShippedModel) -> FastScorer:
    """The model a task was given: its bytes, or the handle on the bytes shipped to this worker."""
    if isinstance(model, ModelPayload):
        return model_from_payload(model)
    with _MODELS_LOCK:
        payload = _SHIPPED.get(model.checksum)
    if payload is None:
        raise RuntimeError(
            f"the model {model.checksum[:16]} was shipped to the workers of the Dask client current when the task "
            "graph was built, and this process is not one of them: compute the graph on that client")
    return model_from_payload(payload)


def model_from_payload(payload: ModelPayload) -> FastScorer:
    """The model of ``payload``, rebuilt once per process and then served from a cache keyed by checksum."""
    with _MODELS_LOCK:
        model = _MODELS.get(payload.checksum)
        if model is None:
            model = _MODELS[payload.checksum] = _load_payload(payload)
            LOAD_COUNTS[payload.checksum] += 1
    return model


def _load_payload(payload: ModelPayload) -> FastScorer:
    """Write the files to a private temp dir and load them with the safe loader (which checks every sha256)."""
    with tempfile.TemporaryDirectory(prefix="lite-moderation-model-", dir=_worker_scratch()) as tmp:
        for name, data in payload.files.items():
            if Path(name).name != name or name in ("", ".", ".."):
                raise ModelFormatError(f"model payload holds a file name that is not a plain name: {name!r}")
            (Path(tmp) / name).write_bytes(data)
        if read_metadata(Path(tmp))["checksum"] != payload.checksum:
            raise ModelFormatError("model payload: model.json does not match the payload's checksum")
        return load_scorer(tmp)


def _worker_scratch() -> str | None:
    """The Dask worker's own scratch dir (purged by Dask even if the worker is killed mid-load), else None."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError):
        return None


def _as_payload(model: ModelPayload | str | os.PathLike | None) -> ModelPayload:
    return model if isinstance(model, ModelPayload) else model_payload(model)


def _model_node(payload: ModelPayload, client: Any = None) -> Any:
    """The model's graph key, which the tasks take as their model: on ``client``'s cluster a handle on the payload,
    which a worker plugin ships to every worker (the bytes stay out of the graph); else (no cluster) the payload."""
    dask = _require_dask()
    if client is None:
        return dask.delayed(payload, name=f"{SHIPPED_PREFIX}{payload.checksum[:16]}", traverse=False)
    from ._model_plugin import ModelPlugin

    client.register_plugin(ModelPlugin(payload))  # returns once every current worker has the bytes
    return dask.delayed(_ShippedModel(payload.checksum), name=f"{SHIPPED_PREFIX}ref-{payload.checksum[:16]}",
                        traverse=False)


def _computing_client() -> Any:
    """The distributed client that ``.compute()`` would run a graph on now, else None: a local scheduler, or an
    asynchronous client (which ``.compute()`` does not run on)."""
    _require_dask()
    import dask.base
    from distributed import get_client

    try:
        client = get_client()
    except ValueError:  # no client
        return None
    if client.asynchronous:
        return None
    scheduler = dask.base.get_scheduler()  # the client's get method, unless the config names another scheduler
    return client if getattr(scheduler, "__self__", None) is client else None


# ------------------------------------------------------------------------------------------ bags and frames


def score_bag(bag: Any, model: ModelPayload | str | os.PathLike | None = None, *, threshold: float | str | None = None,
              on_error: str = "fail", chunk_size: int = CHUNK_SIZE) -> Any:
    """A lazy ``dask.bag`` of dicts: each item of ``bag`` with its verdict added, in the same order.

    Items are texts (``{"text", ...verdict}``), (prompt, response) pairs (``{"prompt", "response", ...}``) or
    dicts with ``prompt`` [+ ``response``] or ``text`` (kept whole, verdict keys added). The verdict keys are
    those of ``ModerationClassifier.moderate``. A bad item raises a DataError (``on_error="fail"``) or comes
    out with an ``"error"`` message and no scores (``"mark"``), so the output always has one row per input.
    """
    if on_error not in ("fail", "mark"):
        raise ValueError(f"on_error must be 'fail' or 'mark', got {on_error!r}")
    node = _model_node(_as_payload(model), _computing_client())
    return bag.map_partitions(_score_bag_partition, node, threshold, on_error, chunk_size)


def _score_bag_partition(items: Iterable, payload: ModelPayload | _ShippedModel, threshold: float | str | None,
                         on_error: str, chunk_size: int) -> list[dict]:
    model = _model_of(payload)
    rows: list[dict] = []
    iterator = iter(items)
    position = 0
    while chunk := _take(iterator, chunk_size):
        parsed = [_parse_item(item, position + k + 1, on_error) for k, item in enumerate(chunk)]
        position += len(chunk)
        good = [p for p in parsed if "error" not in p[0]]
        verdicts = iter(model.moderate([pair for _, pair in good], threshold=threshold) if good else [])
        rows.extend(row if "error" in row else {**row, **next(verdicts)} for row, _ in parsed)
    return rows


def _take(iterator: Iterator, n: int) -> list:
    return [item for _, item in zip(range(n), iterator)]


def _parse_item(item: Any, position: int, on_error: str) -> tuple[dict, Any]:
    """(output row without scores, what the model scores) for one bag item; bad items raise or are marked."""
    obj = _as_record_object(item)
    try:
        if obj is None:
            raise DataError(_BAG_SOURCE, position, None,
                            f"expected a text, a (prompt, response) pair or a dict, got {type(item).__name__}")
        return dict(obj), record_from_object(obj, _BAG_SOURCE, position, require="text").pair
    except DataError as error:
        if on_error == "fail":
            raise
        return {**_unscored_row(item), "error": str(error)}, None


_BAG_SOURCE = "dask bag partition"


def _as_record_object(item: Any) -> dict | None:
    """A bag item as the record object the data reader validates (None when it cannot be one)."""
    if isinstance(item, dict):
        return item
    if isinstance(item, str):
        return {"text": item}
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return {"prompt": item[0], "response": item[1]}
    return None


def _unscored_row(item: Any) -> dict:
    """The output row of a bad item, shaped like a good one so rows stay aligned with the input."""
    obj = _as_record_object(item)
    return dict(obj) if obj is not None else {"item": item}


def score_dataframe(df: Any, model: ModelPayload | str | os.PathLike | None = None, *,
                    threshold: float | str | None = None) -> Any:
    """A lazy ``dask.dataframe`` with score columns added: ``flagged``, ``unsafe_score`` and ``<category>_score``.

    Rows are scored from ``prompt`` [+ ``response``; a missing response scores the prompt alone] or ``text``.
    A row that cannot be scored (non-string or empty text) raises a DataError naming its index.
    """
    columns = list(df.columns)
    fields = ("prompt", "response") if "prompt" in columns else ("text",) if "text" in columns else None
    if fields is None:
        raise ValueError(f"the dataframe needs a 'prompt' (+ 'response') or a 'text' column; it has {columns}")
    fields = tuple(f for f in fields if f in columns)
    payload = _as_payload(model)
    score_columns = _score_columns(payload.labels)
    clashes = [c for c in score_columns if c in columns]
    if clashes:
        raise ValueError(f"the dataframe already has score columns {clashes}: rename them first")
    meta = _frame_meta(df._meta, score_columns)
    node = _model_node(payload, _computing_client())
    return df.map_partitions(_score_frame, node, threshold, fields, meta=meta)


def _frame_meta(meta: Any, score_columns: tuple[str, ...]) -> Any:
    """The empty frame describing the output: the input columns, then the score columns."""
    import numpy as np

    out = meta.copy()
    out["flagged"] = np.zeros(len(out), dtype=bool)
    for name in score_columns[1:]:
        out[name] = np.zeros(len(out), dtype=np.float64)
    return out


def _score_frame(frame: Any, payload: ModelPayload | _ShippedModel, threshold: float | str | None,
                 fields: tuple[str, ...]) -> Any:
    import numpy as np

    model = _model_of(payload)
    pairs = [_frame_pair(frame, row, fields) for row in range(len(frame))]
    proba_rows = model.moderate(pairs, threshold=threshold) if pairs else []
    out = frame.copy()
    out["flagged"] = np.array([r["flagged"] for r in proba_rows], dtype=bool)
    out["unsafe_score"] = np.array([r["unsafe_score"] for r in proba_rows], dtype=np.float64)
    for name in model.label_set_.categories:
        out[f"{model.label_set_.short_name(name)}_score"] = np.array([r["category_scores"][name] for r in proba_rows], dtype=np.float64)
    return out


def _frame_pair(frame: Any, row: int, fields: tuple[str, ...]) -> tuple[str, str] | str:
    values = {f: frame[f].iat[row] for f in fields}
    obj = {f: v if isinstance(v, str) or not _is_missing(v) else None for f, v in values.items()}
    return record_from_object(obj, f"dask dataframe row {frame.index[row]!r}", require="text").pair


def _is_missing(value: Any) -> bool:
    """None, NaN or pandas NA (a missing response in a frame)."""
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------ corpora of files


@dataclass
class FileSummary:
    """What happened to one input file. ``error`` set means a whole-file problem: nothing was written."""

    input: str
    output: str | None
    rows_in: int = 0
    scored: int = 0
    flagged: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[DataError] = field(default_factory=list)
    error: DataError | None = None
    #: Rows scored despite a malformed label (a field scoring does not use): how many, and the first few.
    label_warnings: int = 0
    warnings: list[DataWarning] = field(default_factory=list)


@dataclass
class CorpusSummary:
    """Row accounting of a corpus run, per file (input order) and in total: rows_in == scored + rejected."""

    files: list[FileSummary]

    def _total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    rows_in = property(lambda self: self._total("rows_in"))
    scored = property(lambda self: self._total("scored"))
    flagged = property(lambda self: self._total("flagged"))
    rejected = property(lambda self: self._total("rejected"))
    label_warnings = property(lambda self: self._total("label_warnings"))

    @property
    def failed(self) -> list[FileSummary]:
        return [f for f in self.files if f.error is not None]

    @property
    def reasons(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for f in self.files:
            total.update(f.reasons)
        return total

    @property
    def examples(self) -> list[DataError]:
        return [e for f in self.files for e in f.examples]

    @property
    def warnings(self) -> list[DataWarning]:
        return [w for f in self.files for w in f.warnings]

    def report_lines(self) -> list[str]:
        """The human summary: totals, rejected rows by reason, files that could not be read."""
        warned = f", label warnings: {self.label_warnings}" if self.label_warnings else ""
        lines = [(f"files: {len(self.files)} ({len(self.failed)} failed), rows in: {self.rows_in}, "
                  f"scored: {self.scored}, rejected: {self.rejected}, flagged: {self.flagged}{warned}")]
        lines += [f"rejected: {count} x {reason}" for reason, count in self.reasons.most_common()]
        lines += [f"failed file (nothing written): {f.error}" for f in self.failed]
        return lines


def file_line(summary: FileSummary) -> str:
    """One line per finished file, for progress on stderr."""
    if summary.error is not None:
        return f"failed: {summary.error}"
    written = summary.output if summary.output is not None else "no output file (no row could be scored)"
    return (f"{summary.input}: rows in {summary.rows_in}, scored {summary.scored}, rejected {summary.rejected}, "
            f"flagged {summary.flagged} -> {written}")


def resolve_inputs(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Input files from a glob (``'corpus/*.jsonl.gz'``, ``**`` allowed), a path, or a list of them; sorted."""
    patterns = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    paths: list[Path] = []
    for pattern in map(str, patterns):
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if not Path(m).is_dir()]
        if not matches:
            raise DataError(pattern, message="no files match this pattern")
        paths.extend(Path(m) for m in matches)
    return list(dict.fromkeys(paths))


def output_path_for(input_path: str | os.PathLike, output_dir: str | os.PathLike, fmt: str = "jsonl") -> Path:
    """``OUT_DIR/<input stem>.scores.<fmt>``: compression and format suffixes dropped (a.jsonl.gz -> a)."""
    name = Path(input_path).name
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    stem = Path(name).stem if Path(name).suffix else name
    return Path(output_dir) / f"{stem}.scores.{fmt}"


def _outputs(paths: list[Path], output_dir: str | os.PathLike, fmt: str) -> list[Path]:
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise ValueError(f"--output {output_dir}: is a file; give a directory for the score files")
    outputs = [output_path_for(p, output_dir, fmt) for p in paths]
    seen: dict[Path, Path] = {}
    inputs = {os.path.realpath(p) for p in paths}
    for path, out in zip(paths, outputs):
        if out in seen:
            raise ValueError(f"{seen[out]} and {path} would both write {out}: rename one of them")
        if os.path.realpath(out) in inputs:
            raise ValueError(f"{path} would write {out}, which is also an input: choose another --output directory")
        seen[out] = path
    return outputs


def score_files(inputs: str | os.PathLike | Sequence[str | os.PathLike], output_dir: str | os.PathLike,
                model: ModelPayload | str | os.PathLike | None = None, *, fmt: str = "jsonl",
                on_error: str = "skip", threshold: float | str | None = None, input_format: str = "auto",
                max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, columns: Columns | None = None) -> list[Any]:
    """Lazy: one ``dask.delayed`` :class:`FileSummary` per input file, each writing its own output file.

    ``on_error="skip"`` counts bad rows (and records a file that cannot be read at all as failed);
    ``"fail"`` raises the first DataError. Paths must be reachable by every worker (shared storage); the output
    directory is made, and checked to be writable, here, before any work.
    ``columns`` names the text (and id) fields of the files, as for :func:`~lite_moderation.scoring.score_file`.
    """
    make_tasks, _, _ = _file_tasks(inputs, output_dir, model, fmt=fmt, on_error=on_error, threshold=threshold,
                                   input_format=input_format, max_record_bytes=max_record_bytes, columns=columns)
    return make_tasks(_computing_client())


#: Prefixes of a corpus run's Dask names: its tasks are ``lite-moderation-score-<output file name>-<run id>``, and the
#: Event that stops them (:func:`_stop_run`) is ``lite-moderation-stop-<run id>``.
TASK_PREFIX, STOP_PREFIX = "lite-moderation-score-", "lite-moderation-stop-"


def _file_tasks(inputs: str | os.PathLike | Sequence[str | os.PathLike], output_dir: str | os.PathLike,
                model: ModelPayload | str | os.PathLike | None, *, fmt: str = "jsonl", on_error: str = "skip",
                threshold: float | str | None = None, input_format: str = "auto",
                max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                columns: Columns | None = None,
                stoppable: bool = False) -> tuple[Callable[[Any], list[Any]], list[Path], str | None]:
    """:func:`score_files`' tasks, made by the function returned once inputs, outputs and model are checked (it takes
    the client whose cluster will run them, or None: see :func:`_model_node`), the output file each writes, and the
    name of the Dask Event that stops them (``stoppable``: the tasks check it, which needs a distributed cluster;
    else None)."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {OUTPUT_FORMATS} for a corpus, got {fmt!r}")
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    dask = _require_dask()
    paths = [path.absolute() for path in resolve_inputs(inputs)]  # workers may run in another directory
    outputs = _outputs(paths, Path(output_dir).absolute(), fmt)
    payload = _as_payload(model)
    _check_writable_dir(Path(output_dir))
    task = dask.delayed(_score_file_task, pure=False)
    run = uuid.uuid4().hex[:16]  # one per run; the output names are distinct (_outputs), so the task keys are too
    stop = f"{STOP_PREFIX}{run}" if stoppable else None

    def make_tasks(client: Any) -> list[Any]:
        node = _model_node(payload, client)
        return [
            task(node, str(path), str(out), fmt, on_error, threshold, input_format, max_record_bytes, columns, stop,
                 dask_key_name=f"{TASK_PREFIX}{out.name}-{run}")
            for path, out in zip(paths, outputs)
        ]

    return make_tasks, outputs, stop


def _check_writable_dir(directory: Path) -> None:
    """Make ``directory`` and write a temp file in it, as the workers will: an output directory that cannot take
    the files is refused before any work, not found by the workers once scoring has started."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = make_temp_file(directory / ".lite-moderation-probe")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputError(f"{directory}: cannot write the score files there ({exc.strerror or exc})") from None


def _score_file_task(payload: ModelPayload | _ShippedModel, input_path: str, output_path: str, fmt: str, on_error: str,
                     threshold: float | str | None, input_format: str,
                     max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, columns: Columns | None = None,
                     stop: str | None = None) -> FileSummary:
    """One input file -> one output file (atomic), on a worker; ``stop`` names the Event of a stopped run."""
    checkpoint = _stop_checkpoint(stop, output_path)
    if checkpoint is not None:
        checkpoint()  # started after the run was stopped: not even the model is loaded
    model = _model_of(payload)
    try:  # a retried task's stale temp is removed by the atomic writer (only provably ours: output.remove_stale_temps)
        summary = score_file(model, input_path, output_path, fmt, on_error=on_error, threshold=threshold,
                             input_format=input_format, max_record_bytes=max_record_bytes, columns=columns,
                             checkpoint=checkpoint)
    except NothingScoredError as nothing:  # every row rejected: no output file, each row still accounted for
        summary, output_path = nothing.summary, None
    except DataError as exc:
        if on_error == "fail":
            raise
        return FileSummary(input_path, None, error=exc)
    reasons: Counter[str] = Counter()
    for error in summary.errors:  # a run of blank lines is one report of several rows
        reasons[_reason(error)] += error.rows
    return FileSummary(input_path, output_path, summary.rows_in, summary.scored, summary.flagged,
                       summary.rejected, dict(reasons), summary.errors[:MAX_EXAMPLES],
                       label_warnings=len(summary.warnings), warnings=summary.warnings[:MAX_EXAMPLES])


class RunStopped(RuntimeError):
    """Raised by a task of a corpus run that was stopped: its file is not written (and its temp file is removed)."""


def _stop_checkpoint(stop: str | None, output_path: str) -> Callable[[], None] | None:
    """What a task calls after each chunk and before it puts its file in place: raises :class:`RunStopped` once the
    run's Dask Event ``stop`` is set (one call to the scheduler per chunk of rows); None if the run cannot be stopped."""
    if stop is None:
        return None
    from distributed import Event

    event = Event(stop)  # the worker's client

    def checkpoint() -> None:
        if event.is_set():
            raise RunStopped(f"{output_path}: not written, the run was stopped")

    return checkpoint


def _reason(error: DataError) -> str:
    """A bad row's reason without its specifics (column numbers, offsets), so equal reasons add up."""
    message = error.message.split(" (")[0]
    return f"field '{error.field}': {message}" if error.field else message


def score_corpus(inputs: str | os.PathLike | Sequence[str | os.PathLike], output_dir: str | os.PathLike,
                 model: ModelPayload | str | os.PathLike | None = None, *, client: Any = None,
                 scheduler: str | None = None, workers: int | None = None,
                 on_file: Callable[[FileSummary], None] | None = None, **options: Any) -> CorpusSummary:
    """Score every input file and wait; per-file and total row accounting.

    Runs on ``client``, else on the cluster at ``scheduler`` or a local cluster of ``workers`` processes
    (started for this call, after inputs and model are checked), else on the current Dask client or
    scheduler. ``on_file`` gets each file's summary as it finishes; ``options`` go to :func:`score_files`.
    """
    dask = _require_dask()
    own = client is None and (scheduler is not None or workers is not None)
    if client is None and not own:
        from distributed import default_client

        with contextlib.suppress(ValueError):
            client = default_client()
    # A cluster that is not the run's own lives on after it: a stopped run must stop its tasks there (_stop_run). A
    # local cluster of its own is torn down instead, its workers killed; dask.compute has no cluster to ask.
    make_tasks, outputs, stop = _file_tasks(inputs, output_dir, model,
                                            stoppable=scheduler is not None or client is not None, **options)
    if own:
        try:
            with dask_client(scheduler, workers) as own_client:
                return CorpusSummary(_gather_in_order(own_client, make_tasks(own_client), outputs, on_file, stop))
        except BaseException:  # Ctrl-C, SIGTERM, an error: the cluster is down, its workers' temps are stale now
            if scheduler is None:
                for output in outputs:
                    remove_stale_temps(output)
            raise
    if client is not None:
        return CorpusSummary(_gather_in_order(client, make_tasks(client), outputs, on_file, stop))
    results = list(dask.compute(*make_tasks(None)))
    for summary in results if on_file is not None else []:
        on_file(summary)
    return CorpusSummary(results)


def _gather_in_order(client: Any, tasks: list[Any], outputs: list[Path],
                     on_file: Callable[[FileSummary], None] | None, stop: str | None = None) -> list:
    """The tasks' summaries in order; Dask giving up on a file whose workers kept dying is a :class:`WorkerDiedError`
    naming it (not a traceback of Dask's ``KilledWorker``). A run that ends early (Ctrl-C, SIGTERM, an error) is
    stopped through ``stop`` (:func:`_stop_run`) before the exception goes on."""
    futures = None
    try:
        futures = client.compute(tasks)
        return _gather(client, futures, tasks, outputs, on_file)
    except BaseException:
        if stop is not None:
            _stop_run(client, stop, futures)
        raise


#: Seconds a stopped run waits for its running tasks to end (each ends after the chunk of rows it is scoring).
STOP_TIMEOUT = 60.0


def _stop_run(client: Any, stop: str, futures: list[Any] | None, timeout: float = STOP_TIMEOUT) -> None:
    """Stop a run's tasks on a cluster that lives on after it, and wait until they have ended.

    Releasing (cancelling) the futures is not enough: Dask then forgets the tasks, but cannot interrupt one that is
    running, which went on to put its file in place after the command had exited. So the Dask Event ``stop`` is set:
    each task checks it after each chunk and before it renames its temp file, and once it is set raises
    :class:`RunStopped`, its temp file removed. Waiting for the futures means that when this returns no file of the
    run is being written. If the wait is cut short (``timeout``, a second Ctrl-C) or ``futures`` were never made, the
    Event stays set on the scheduler, so a task still running writes nothing when it goes on; else it is cleared (the
    scheduler forgets it). A scheduler that cannot be reached is not asked: the run is ending anyway.
    """
    from distributed import Event, wait

    event = Event(stop, client=client)
    with contextlib.suppress(Exception):  # the exception that stopped the run is the one to report
        event.set()
        if futures is not None:
            wait(futures, timeout=timeout)
            event.clear()


def _gather(client: Any, futures: list[Any], tasks: list[Any], outputs: list[Path],
            on_file: Callable[[FileSummary], None] | None) -> list:
    from distributed import KilledWorker, as_completed

    try:
        if on_file is not None:
            for future in as_completed(futures):
                if future.status == "finished":
                    on_file(future.result())
        return client.gather(futures)
    except KilledWorker as killed:
        output = dict(zip((task.key for task in tasks), outputs)).get(killed.task)
        if output is not None:
            remove_stale_temps(output)  # the dead worker's half-written file, if it ran on this machine
        what = f"wrote {output}" if output is not None else f"ran the task {killed.task}"
        raise WorkerDiedError(
            f"every Dask worker that {what} died (killed, e.g. by "
            "the out-of-memory killer), so Dask gave up on it and the run stopped: files already finished are "
            "written, the others are not; run again, with more memory per worker or fewer workers") from None


#: Options of a local cluster's scheduler: its HTTP server on a free port of 127.0.0.1 (see ``dask_client``).
LOCAL_SCHEDULER_OPTIONS = {"dashboard_address": "127.0.0.1:0"}


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A client of the cluster at ``scheduler`` (tcp://HOST:PORT), or of a local cluster of ``workers`` processes.

    A local cluster (one thread per worker process: scoring holds the GIL) lives as long as the block. Its logs
    are silenced below CRITICAL: a failed task reaches the caller as its exception, and a stopped run's
    cancellations are no news, so neither prints a worker traceback on stderr.
    """
    _require_dask()
    from distributed import Client, LocalCluster

    if scheduler is not None and workers is not None:
        raise ValueError("give a scheduler address or a number of local workers, not both")
    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    # No dashboard; the scheduler's HTTP server (health, metrics) still starts, and on a free port, not the default
    # 8787: a second local cluster on the machine (another run, a parallel test) would warn that 8787 is taken
    with LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None, scheduler_kwargs=LOCAL_SCHEDULER_OPTIONS,
                      silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster) as client:
        yield client
