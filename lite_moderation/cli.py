"""The ``lite-moderation`` command: a thin shell over the library, one library call per command.

Exit codes are defined in :mod:`lite_moderation.exits`: 0 success; 1 something was flagged (only with
``score --fail-on-flagged``); 2 bad input, bad usage, a refused output or an unusable model; 130 SIGINT;
143 SIGTERM. Machine output (JSON, JSONL, CSV) goes to stdout or ``--output``; messages and progress go
to stderr.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shlex
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from . import __version__, exits
from .data import (
    DEFAULT_MAX_RECORD_BYTES,
    FIX_HINT,
    JSON_FILE_RECORDS,
    ClassNameWarning,
    Columns,
    DataError,
    load_dataset,
    skipped_rows,
)
from .data import FORMATS as INPUT_FORMATS
from .explain import table_reasons
from .guard_suite import GUARD_SUITE
from .guards import Terminated, check_outputs, signals_as_exceptions, silence_stdout
from .hub import DEFAULT_MAX_BYTES, DEFAULT_MAX_SECONDS, REVISION, SPLITS, DownloadError, download
from .labels import label_set_of
from .normalize import DEFAULT_NORMALIZATION
from .output import (
    EXPLAIN_SUFFIX_FORMATS,
    FORMATS,
    TABLE_SUFFIX_FORMATS,
    OutputError,
    RowWriter,
    atomic_text_writer,
    format_detail,
    keyed_row,
    output_format,
    write_json,
    write_predictions,
)
from .persistence import SHIPPED_MODELS, ModelFormatError, load, load_scorer, read_card, save
from .scoring import NothingScoredError, WorkerDiedError, score_file
from .server import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_THREADS,
    DEFAULT_WORKERS,
    ServerFailed,
    checked_hosts,
    checked_origins,
    serve,
)
from .sources import SHAPES, SourceSpec, parse_source
from .taxonomy import short_name
from .terminal import printable
from .texts import MAX_NGRAM, group_keys, message_mask, split_fields
from .thresholds import OPERATING_POINTS, checked_threshold, cut_offs
from .training import (
    DEFAULT_PRESET,
    DEFAULT_THRESHOLD_SHRINKAGE,
    PRESETS,
    default_estimator,
    train,
)

EXIT_FLAGGED = exits.FLAGGED
EXIT_BAD_INPUT = exits.BAD_INPUT
#: serve's upper bounds: past them a typo (an extra digit) would fork, spawn or buffer without limit.
MAX_WORKERS = 256
MAX_THREADS = 1024
MAX_BODY_BYTES_LIMIT = 1 << 30
MAX_BATCH_LIMIT = 100_000
MAX_READ_TIMEOUT = 3600.0


class InputError(click.ClickException):
    """A problem with the user's data, options or model: one line on stderr, exit code 2."""

    exit_code = EXIT_BAD_INPUT


def _friendly_errors(command: Callable) -> Callable:
    """Turn library errors into one-line messages (no traceback) with exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (DataError, ModelFormatError, OutputError, WorkerDiedError) as exc:
            raise InputError(str(exc)) from None
        except BrokenPipeError:
            raise  # the reader went away: the group ends quietly
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise InputError(f"{where}{exc.strerror or exc}") from None
        except (ValueError, TypeError) as exc:
            raise InputError(str(exc)) from None

    return wrapper


class _Group(click.Group):
    """The command group: signals and a closed stdout end a command with its documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        with signals_as_exceptions():
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt:
                _note("interrupted")
                raise click.exceptions.Exit(exits.INTERRUPTED) from None
            except Terminated:
                _note("terminated")
                raise click.exceptions.Exit(exits.TERMINATED) from None
            except BrokenPipeError:
                silence_stdout()
                raise click.exceptions.Exit(exits.OK) from None


def _note(message: str) -> None:
    click.echo(message, err=True)


def _skipped_text(error: DataError) -> str:
    """A skipped row's report, without the advice to skip it (it was)."""
    if error.hint != FIX_HINT:
        return str(error)
    return str(DataError(error.path, error.line, error.field, error.message, element=error.element))


def _report_skipped(errors: list[DataError], limit: int | None = None, what: str = "skipped",
                    rows: str = "bad rows", total: int | None = None) -> None:
    """Every skipped row is named on stderr, one line each (or the first ``limit``, then a count: for label
    warnings on rows that were used). ``total``: how many there were, when ``errors`` holds only some (Dask)."""
    shown = errors[:limit]
    for error in shown:
        _note(f"{what}: {_skipped_text(error)}")
    more = (len(errors) if total is None else total) - len(shown)
    if more > 0:
        _note(f"{what}: ... and {more} more {rows}")


def _nothing_scored(source: str, rejected: int, first: DataError) -> InputError:
    """A run that scored no row did not do its job (local and Dask alike): exit 2, never 0, and why."""
    where = first.location or "the file"
    if first.path != source:
        where = f"{first.path} {where}".strip()
    hint = first.hint if first.hint and first.hint != FIX_HINT else \
        "Check the file's format and the column options (--text-column...)"
    return InputError(f"{source}: no row could be scored (all {rejected} skipped; the first, {where}: "
                      f"{first.message}); an --output file is left as it was. {hint}")


# ------------------------------------------------------------------------------------------------ options

class ModelType(click.ParamType):
    """A shipped model's name stays a name (``persistence.resolve_model_path``: the shipped model, even beside a
    directory of that name, which is then named on stderr); anything else is a path."""

    name = "NAME|DIR"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str | Path:
        if isinstance(value, str) and value in SHIPPED_MODELS:
            if Path(value).is_dir():
                _note(f"note: --model {value} is the shipped model {value}; the directory {value} here is not "
                      f"used (give ./{value} to use it)")
            return value
        return Path(value)


model_option = click.option(
    "--model", "model_path", type=ModelType(), default=None,
    help="Model directory, or a shipped model: default, fast (both for everyday traffic) or beavertails "
         "(BeaverTails only, the paper baseline) [default: default]. A shipped model's name always means the "
         "shipped model; for a directory of that name, give a path: ./default.",
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bar on stderr.")


class FiniteFloatRange(click.FloatRange):
    """A float range that also refuses nan and inf (click's range checks let nan through: every comparison with
    it is false), so a NaN option cannot train a model the loader refuses."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


max_record_option = click.option(
    "--max-record-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_RECORD_BYTES, show_default=True,
    help="Longest record (line) read: a longer one is reported with its line number and skipped, read in bounded "
         "chunks (scoring a one-word text takes ~300 bytes of memory per byte). A .json file may be "
         f"{JSON_FILE_RECORDS} times this.")


def on_error_option(default: str) -> Callable:
    return click.option(
        "--on-error", type=click.Choice(["fail", "skip"]), default=default, show_default=True,
        help="On a malformed record: stop (fail) or report it on stderr and go on (skip).",
    )


class ThresholdType(click.ParamType):
    """A probability in [0, 1] or the name of an operating point ("default", "strict")."""

    name = "PROBABILITY|strict"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float | str:
        if value in OPERATING_POINTS:
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a probability nor one of {', '.join(OPERATING_POINTS)}", param, ctx)
        if not 0 <= number <= 1:
            self.fail(f"{number} is not a probability between 0 and 1", param, ctx)
        return number


predictions_option = click.option(
    "--predictions", "predictions_path", type=click.Path(path_type=Path),
    help="Write one JSONL line per evaluated row: row, line, prompt group, the 15 scores and the verdicts (a name "
         "saying another format, p.json or p.csv, is refused).")

bootstrap_options = [
    click.option("--bootstrap", "n_resamples", type=click.IntRange(min=0), default=1000, show_default=True,
                 help="Resamples of prompt groups for the 95% confidence intervals (0: point estimates only)."),
    click.option("--bootstrap-seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resamples."),
    click.option("--format", "table_format", type=click.Choice(["text", "markdown", "latex", "csv"]), default="text",
                 show_default=True, help="How the metrics are printed: text, Markdown or LaTeX (booktabs) tables, CSV."),
]


def metrics_output_options(command: Callable) -> Callable:
    """The bootstrap and table-format options of ``evaluate`` and ``cv``."""
    for option in reversed(bootstrap_options):
        command = option(command)
    return command


threshold_option = click.option(
    "--threshold", type=ThresholdType(), default=None,
    help="Override the unsafe threshold tuned into the model: a probability, or 'strict' (its precision-favouring "
         "operating point: fewer false flags on everyday text, lower recall).",
)
cv_threshold_option = click.option(
    "--threshold", type=ThresholdType(), default=None,
    help="Override each fold model's tuned unsafe threshold: a probability, or 'strict' (the fold model's own "
         "precision-favouring operating point).",
)


def _parse_range(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None or value.lower() == "none":
        return None
    try:
        low, high = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected two integers like 1,2 (or none), got {value!r}") from None
    if not 1 <= low <= high <= MAX_NGRAM:
        raise click.BadParameter(f"expected 1 <= low <= high <= {MAX_NGRAM}, got {value!r}")
    return low, high


def _field_numbers(value: str, check: Callable[[Any], object], expected: str,
                   number: Callable[[str], float | int] = float) -> float | int | dict:
    """``N`` or ``FIELD=N[,FIELD=N]`` as a per-field recipe number (``char_weight``, ``nb_power``,
    ``max_features`` with ``number=int``), checked by ``check``."""
    try:
        if "=" not in value:
            parsed: float | int | dict = number(value)
        else:
            parsed = {field.strip(): number(text) for field, _, text in
                      (part.partition("=") for part in value.split(","))}
        check(parsed)
    except ValueError as exc:
        raise click.BadParameter(f"expected {expected} or FIELD=N[,FIELD=N], got {value!r} ({exc})") from None
    return parsed


def _parse_char_weight(ctx: click.Context, param: click.Parameter, value: str) -> float | dict[str, float]:
    """``W`` or ``FIELD=W[,FIELD=W]`` as ``ModerationClassifier``'s ``char_weight``, checked there."""
    from .texts import char_weights

    return _field_numbers(value, char_weights, "a number above 0")


def _parse_nb_power(ctx: click.Context, param: click.Parameter, value: str) -> float | dict[str, float]:
    """``P`` or ``FIELD=P[,FIELD=P]`` as ``ModerationClassifier``'s ``nb_power``, checked there."""
    from .texts import nb_powers

    return _field_numbers(value, nb_powers, "a number, 0 or above,")


def _parse_max_features(ctx: click.Context, param: click.Parameter, value: str | None) -> int | dict | None:
    """``N`` or ``FIELD=N[,FIELD=N]`` (``*=N``: the other blocks) as ``QAVectorizer``'s ``max_features``, checked
    by :func:`lite_moderation.texts.field_caps`."""
    from .texts import field_caps

    return None if value is None else _field_numbers(value, field_caps, "a positive integer", number=int)


def recipe_options(command: Callable) -> Callable:
    """Options of the training recipe, shared by ``train`` and ``cv``.

    Only the options a user gives override the preset; the defaults shown in --help are the library's
    (``training.default_estimator``), which stays the one source of the recipe.
    """
    options = [
        click.option("--preset", type=click.Choice(sorted(PRESETS)), default=DEFAULT_PRESET, show_default=True,
                     help="Named recipe: accurate (word + response char n-grams), fast (word n-grams only), "
                          "shapes / shapes-fast (the same, with blocks of their own for pairs and single messages; "
                          "for --shapes)."),
        click.option("--C", "C", type=FiniteFloatRange(min=0, min_open=True), default=4.0, show_default=True,
                     help="Inverse regularisation strength of each logistic regression."),
        click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True,
                     help="Weigh each label's classes: none, or balanced (inversely to their frequency)."),
        click.option("--word-ngrams", callback=_parse_range, default="1,2", show_default=True,
                     help=f"Word n-gram range, e.g. 1,2 (n at most {MAX_NGRAM}), or 'none' to turn them off."),
        click.option("--char-ngrams", callback=_parse_range, default="2,5",
                     show_default="2,5; none with --preset fast or shapes-fast",
                     help=f"Character n-gram range of the response (n at most {MAX_NGRAM}), or 'none' to turn them off."),
        click.option("--char-weight", callback=_parse_char_weight, default="1", show_default=True,
                     help="Weight of the character n-gram blocks against the word blocks while fitting (above 1: "
                          "a lighter penalty on them): a number for every character block, or FIELD=W[,FIELD=W] "
                          "for some (the shipped default: pair_response=1.5)."),
        click.option("--nb-power", callback=_parse_nb_power, default="0", show_default=True,
                     help="Naive-Bayes feature weighting of the flag head while fitting: each term weighed by how "
                          "much more often it occurs in unsafe than in safe rows (or the reverse), to this power (0: "
                          "off); a number for every block, or FIELD=P[,FIELD=P] for some (the shipped default: "
                          "lone_text=0.5)."),
        click.option("--min-df", type=click.IntRange(min=1), default=2, show_default=True,
                     help="Minimum number of documents a term must appear in."),
        click.option("--normalize", type=click.Choice(["undisguised", "visible", "none"]),
                     default=DEFAULT_NORMALIZATION, show_default=True,
                     help="Text normalisation before analysis, training and scoring alike: visible (the text as a "
                          "reader sees it: fullwidth and styled letters folded, invisible characters such as "
                          "zero-width spaces removed, Cyrillic and Greek look-alikes inside Latin words made Latin), "
                          "undisguised (visible, and letters spaced out joined: 'k i l l', 'b.o.m.b'; leetspeak "
                          "inside words read as letters: 'k1ll', 'h0w') or none."),
        click.option("--max-features", callback=_parse_max_features, default=None,
                     help="Cap on each vocabulary block (most frequent terms kept): a number for every block, or "
                          "FIELD=N[,FIELD=N] for some (*=N: the others; the shipped fast: *=15000,lone_text=50000)."),
        click.option("--threshold-folds", type=click.IntRange(min=0), default=5, show_default=True,
                     help="Grouped folds for tuning per-label thresholds (0: keep 0.5); costs folds + 1 fits "
                          "per label."),
        click.option("--threshold-holdout", type=FiniteFloatRange(0, 1, min_open=True, max_open=True), default=None,
                     help="Instead of folds: hold out this fraction of prompts to tune thresholds on and fit once "
                          "on the rest (one fit per label; for large data, e.g. 0.1)."),
        click.option("--threshold-shrinkage", type=FiniteFloatRange(min=0), default=DEFAULT_THRESHOLD_SHRINKAGE,
                     show_default=True, help="Pull of rare categories' thresholds toward prevalence (0: plain F1)."),
        click.option("--tol", type=FiniteFloatRange(min=0, min_open=True), default=1e-4, show_default=True,
                     help="Stopping tolerance of the solver (larger: faster, less exact)."),
        click.option("--dual/--primal", default=True, show_default="dual",
                     help="liblinear's dual solver (no BLAS: the same weights on every CPU) or its primal one "
                          "(labels fitted in parallel with --jobs; weights move by a float32 ulp between CPUs)."),
        click.option("--jobs", "-j", "n_jobs", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Feature blocks and labels fitted in parallel, in worker processes (threads for the labels with "
                          "--primal); the same model, memory grows with each."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _given_options(options: dict) -> dict:
    """The recipe options the user gave on the command line (defaults left to the library)."""
    ctx = click.get_current_context()
    return {k: v for k, v in options.items() if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}


def _estimator_from_options(options: dict, verbose: int = 0):
    given = _given_options(options)
    params: dict[str, Any] = {k: v for k, v in given.items()
                              if k not in ("preset", "class_weight", "word_ngrams", "char_ngrams", "normalize")}
    if "normalize" in given:
        params["normalize"] = None if given["normalize"] == "none" else given["normalize"]
    if "class_weight" in given:
        params["class_weight"] = None if given["class_weight"] == "none" else given["class_weight"]
    for option, field_key, range_key in (("word_ngrams", "word_fields", "word_ngram_range"),
                                         ("char_ngrams", "char_fields", "char_ngram_range")):
        if option not in given:
            continue
        if given[option] is None:
            params[field_key] = ()
        else:
            params[range_key] = given[option]
            if option == "char_ngrams":
                params.setdefault("char_fields", ("response",))
    estimator = default_estimator(verbose=verbose, preset=options["preset"], **params)
    if not estimator.vectorizer.word_fields and not estimator.vectorizer.char_fields:
        raise click.UsageError(f"{_features_off(given, options['preset'])} leave no features to train on: keep word "
                               "n-grams (--word-ngrams 1,2) or character n-grams (--char-ngrams 2,5)")
    return estimator


def _features_off(given: dict, preset: str) -> str:
    """The options that turned off the word and the character n-grams, as the user gave them (the library's own
    message names its QAVectorizer, which the user never named)."""
    causes = []
    for option, fields in (("word_ngrams", "word_fields"), ("char_ngrams", "char_fields")):
        if option in given:
            causes.append(f"--{option.replace('_', '-')} none")
        else:
            kind = "word" if option == "word_ngrams" else "character"
            causes.append(f"--preset {preset} (which has no {kind} n-grams)")
    return " and ".join(causes)


#: The column options (train, cv, evaluate): option, Columns field, help.
_COLUMN_OPTIONS = (
    ("--text-column", "text", ("Field (JSON) or column (CSV) holding a single text; naming it ignores prompt/"
                               "response/text columns [default: prompt (with response) when present, else text].")),
    ("--prompt-column", "prompt", "Field or column holding the prompt of a pair [default: prompt]."),
    ("--response-column", "response", ("Field or column holding the response of a pair, read whenever present "
                                       "[default: response].")),
    ("--label-column", "label", ("Field or column holding one class name per row: one head per class but "
                                 "--safe-class (multi-class). A name is read as written, trimmed of the spaces "
                                 "around it; names that differ only by case stay apart, with a warning.")),
    ("--label-columns", "labels", ("Comma-separated boolean fields or columns, one head each (multi-label); one "
                                   "alone is a binary target; is_safe among them is the flag head.")),
    ("--safe-class", "safe_class", "The --label-column class that means nothing flagged (e.g. ok)."),
    ("--id-column", "id", ("Field or column whose value each output row carries as its id (null, empty or all spaces: no id) "
                          "[default: id, when present].")),
)
#: The column options of the commands that read labelled data.
_LABELLED_FIELDS = ("text", "prompt", "response", "label", "labels", "safe_class")


def column_options(command: Callable, fields: tuple[str, ...] | None = None) -> Callable:
    """The user's own text and label fields (all, or those of ``fields``), handed to the command as one
    ``columns`` (a data.Columns)."""
    chosen = [entry for entry in _COLUMN_OPTIONS if fields is None or entry[1] in fields]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {field: kwargs.pop(f"column_{field}") for _, field, _ in chosen}
        if given.get("labels") is not None:
            given["labels"] = tuple(n.strip() for n in given["labels"].split(",") if n.strip())
        _check_label_options(given)
        try:
            kwargs["columns"] = Columns(**given)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        return command(*args, **kwargs)

    for option, field, help_text in reversed(chosen):
        wrapper = click.option(option, f"column_{field}", default=None, metavar="NAME", help=help_text)(wrapper)
    return wrapper


def _check_label_options(given: dict) -> None:
    """The label options' own rules (:class:`~lite_moderation.data.Columns` checks them too), told in the CLI's
    flags: Columns' messages name its Python fields (label, labels, safe_class), which the CLI user never typed."""
    if given.get("label") is not None and given.get("labels") is not None:
        raise click.UsageError("--label-column (one class per row) and --label-columns (boolean columns) are two ways "
                               "to label rows: give one")
    if given.get("safe_class") is not None and given.get("label") is None:
        raise click.UsageError("--safe-class names a class of the --label-column column: give --label-column too")
    labels = given.get("labels")
    if labels is not None and not labels:
        raise click.UsageError("--label-columns names no column: give comma-separated column names")
    if labels is not None and len(set(labels)) != len(labels):
        raise click.UsageError(f"--label-columns must name distinct columns, got {list(labels)!r}")


# ------------------------------------------------------------------------------------------------ commands


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lite-moderation")
def main() -> None:
    """Moderate text and question-answer pairs on CPU with TF-IDF + linear models (BeaverTails labels)."""


def stdin_as_input(command: Callable) -> Callable:
    """The one place where ``score`` and ``explain`` take stdin as their input without ``--input -``: ``score -``,
    and ``echo hi | lite-moderation score`` (nothing to score but what is piped in) both become ``--input -``.

    Decided before ``@check_outputs`` (this wraps it), so every way stdin becomes the input is checked alike:
    ``score -o data.jsonl < data.jsonl`` is refused as ``score -i - -o data.jsonl < data.jsonl`` is, before
    the output file is touched."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        texts, no_pair = kwargs["texts"], kwargs["prompt"] is None and kwargs["response"] is None
        if kwargs["input_path"] is None and (texts == ("-",) or not texts and no_pair and _stdin_is_piped()):
            kwargs.update(texts=(), input_path="-")
        return command(**kwargs)

    return wrapper


def _stdin_is_piped() -> bool:
    """Whether stdin holds something to read: a pipe or a file, not a terminal (nor closed)."""
    try:
        return not sys.stdin.isatty()
    except (AttributeError, ValueError):  # no stdin, or a closed one
        return False


@main.command()
@click.argument("texts", nargs=-1)
@click.option("--prompt", help="Prompt of a question-answer pair; alone, a prompt alone (a user message).")
@click.option("--response", help="Response of a question-answer pair; alone, a text alone (as a TEXTS argument).")
@click.option("--input", "-i", "input_path",
              help="File of records to score, or - for stdin (with --engine dask: a quoted glob of files).")
@click.option("--input-format", type=click.Choice(list(INPUT_FORMATS)), default="auto",
              show_default=True, help="Format of --input (auto: from the suffix, or sniffed for stdin).")
@click.option("--output", "-o", "output_path", type=click.Path(path_type=Path),
              help="Write results to this file (atomically) instead of stdout (with --engine dask: a directory).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format [default: table for a terminal, jsonl otherwise].")
@threshold_option
@click.option("--fail-on-flagged", is_flag=True,
              help="Exit with code 1 when any item is flagged, and 2 when any row could not be scored (fails closed).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: this process. dask: every file matching --input (a quoted glob) on a Dask cluster, "
                   "one output file per input in the --output directory (pip install 'lite-moderation[dask]', or '.[dask]' from a clone).")
@click.option("--scheduler", metavar="tcp://HOST:PORT", default=None,
              help="With --engine dask: the scheduler of a running cluster (paths must be shared with its workers).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="With --engine dask: start a local cluster of N worker processes [default: one per core].")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --input: worker processes scoring chunks in parallel (output order is kept).")
@on_error_option("skip")
@max_record_option
@model_option
@quiet_option
@functools.partial(column_options, fields=("text", "prompt", "response", "id"))
@_friendly_errors
@stdin_as_input
@check_outputs
def score(texts: tuple[str, ...], prompt: str | None, response: str | None, input_path: str | None,
          input_format: str, output_path: Path | None, fmt: str | None, threshold: float | str | None,
          fail_on_flagged: bool, engine: str, scheduler: str | None, workers: int | None, jobs: int,
          on_error: str, max_record_bytes: int, model_path: Path | None, quiet: bool, columns: Columns) -> None:
    """Score TEXTS, a --prompt/--response pair, or every record of --input.

    Output rows come in input order, one per input row; a row that cannot be read is reported on
    stderr (with its line) and skipped, or stops the command with --on-error fail.

    With --engine dask, --input is a glob ('corpus/*.jsonl.gz') and --output a directory that receives
    OUT/<input stem>.scores.<format> per input file, each written atomically.
    """
    if not columns.is_standard and input_path is None:
        raise click.UsageError("--text-column, --prompt-column, --response-column and --id-column name fields of "
                               "--input records")
    if engine == "dask":
        if texts or prompt is not None or response is not None:
            raise click.UsageError("--engine dask scores files: give --input 'GLOB' and --output DIR")
        flagged, rejected = _score_on_dask(input_path, input_format, output_path, fmt, threshold, on_error,
                                           model_path, scheduler, workers, quiet, max_record_bytes, columns)
        _gate(fail_on_flagged, flagged, rejected)
        return
    if scheduler is not None or workers is not None:
        raise click.UsageError("--scheduler and --workers go with --engine dask")
    sources = sum([bool(texts), prompt is not None or response is not None, input_path is not None])
    if sources != 1:
        raise click.UsageError("give exactly one of: TEXTS, --prompt/--response, or --input FILE")
    fmt = output_format(output_path, fmt, "table" if output_path is None and sys.stdout.isatty() else "jsonl")
    model = load_scorer(model_path)
    rejected = 0
    try:
        if input_path is not None:
            flagged, rejected = _score_input(model, input_path, input_format, output_path, fmt, on_error, threshold,
                                             quiet, jobs, columns, max_record_bytes)
        else:
            items = _items_from_arguments(texts, prompt, response)
            flagged = _score_items(model, items, output_path, fmt, threshold)
    except BrokenPipeError:  # `| head`: fine, unless a gate was asked to vouch for every row
        if not fail_on_flagged:
            raise
        silence_stdout()
        raise InputError("stdout was closed before every row was written, so --fail-on-flagged cannot pass "
                         "the rest") from None
    _gate(fail_on_flagged, flagged, rejected)


def _gate(fail_on_flagged: bool, flagged: int, rejected: int) -> None:
    """The exit code of ``--fail-on-flagged``: it fails closed, so a row it could not score fails too."""
    if not fail_on_flagged:
        return
    if rejected:
        raise InputError(f"{rejected} rows could not be scored, so --fail-on-flagged cannot pass them; "
                         "fix or remove them")
    if flagged:
        sys.exit(EXIT_FLAGGED)


def _items_from_arguments(texts: tuple[str, ...], prompt: str | None, response: str | None) -> list:
    if prompt is not None or response is not None:
        prompt, response = prompt or "", response or ""
        if not prompt.strip() and not response.strip():
            raise InputError("--prompt and --response are both empty: nothing to score")
        return [(prompt, response)]
    for i, text in enumerate(texts, 1):
        if not text.strip():
            raise InputError(f"text argument {i} is empty or only whitespace: nothing to score")
    return list(texts)


def _score_items(model, items: list, output_path: Path | None, fmt: str,
                 threshold: float | str | None) -> int:
    split_fields(items)
    results = model.moderate(items, threshold=threshold)
    with atomic_text_writer(output_path) as stream:
        reasons = table_reasons(model) if fmt == "table" else None
        if fmt == "table" and len(results) == 1:
            cuts = dict(zip(model.labels_, cut_offs(model, message_mask(items), threshold)[0]))
            stream.write(format_detail(results[0], cuts, reasons(items[0]) if results[0]["flagged"] else None))
        else:
            writer = RowWriter(stream, fmt, reasons=reasons, labels=label_set_of(model))
            for result, item in zip(results, items):
                writer.write(result, item=item)
            writer.close()
    return sum(r["flagged"] for r in results)


def _score_input(model, input_path: str, input_format: str, output_path: Path | None, fmt: str,
                 on_error: str, threshold: float | str | None, quiet: bool, jobs: int = 1,
                 columns: Columns | None = None,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> tuple[int, int]:
    """Score a file; (flagged, rejected) rows.

    Rows printed to a terminal show the progress themselves: a bar on the same screen would cut into them.
    """
    to_terminal = str(output_path or "-") == "-" and sys.stdout.isatty()
    try:
        summary = score_file(model, input_path, output_path, fmt, on_error=on_error, threshold=threshold,
                             input_format=input_format, progress=not quiet and not to_terminal, jobs=jobs,
                             columns=columns, max_record_bytes=max_record_bytes)
    except NothingScoredError as nothing:
        summary = nothing.summary
    _report_skipped(summary.errors)
    _report_label_warnings(summary.warnings, len(summary.warnings))
    warned = f", label warnings: {len(summary.warnings)}" if summary.warnings else ""
    _note(f"rows in: {summary.rows_in}, scored: {summary.scored}, skipped: {summary.rejected}, "
          f"flagged: {summary.flagged}{warned}")
    if summary.rejected and not summary.scored:  # a run that scored nothing did not do its job: never exit 0
        raise _nothing_scored(summary.errors[0].path, summary.rejected, summary.errors[0])
    return summary.flagged, summary.rejected


def _report_label_warnings(warnings: list[DataError], total: int) -> None:
    """Rows scored despite a malformed label: the first 20 named, then a count."""
    _report_skipped(warnings, limit=20, what="warning", rows="rows with ignored label problems", total=total)


def _score_on_dask(input_path: str | None, input_format: str, output_dir: Path | None, fmt: str | None,
                   threshold: float | str | None, on_error: str, model_path: Path | None, scheduler: str | None,
                   workers: int | None, quiet: bool,
                   max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, columns: Columns | None = None) -> tuple[int, int]:
    """Every file of the --input glob on a Dask cluster; a summary on stderr; exit 2 if a file was unreadable."""
    from . import distributed

    if input_path is None or output_dir is None or input_path == "-":
        raise click.UsageError("--engine dask needs --input 'GLOB' (files, not stdin) and --output DIR")
    if scheduler is not None and workers is not None:
        raise click.UsageError("give --scheduler (a running cluster) or --workers (a local one), not both")
    fmt = fmt or "jsonl"
    if fmt not in distributed.OUTPUT_FORMATS:
        raise click.UsageError(f"--engine dask writes files: --format must be one of {distributed.OUTPUT_FORMATS}")
    on_file = None if quiet else (lambda done: _note(distributed.file_line(done)))
    if scheduler is None and workers is None:
        workers = os.cpu_count() or 1
    try:
        summary = distributed.score_corpus(input_path, output_dir, model_path, scheduler=scheduler, workers=workers,
                                           on_file=on_file, fmt=fmt, on_error=on_error, threshold=threshold,
                                           input_format=input_format, max_record_bytes=max_record_bytes,
                                           columns=columns)
    except distributed.DaskMissingError as exc:
        raise InputError(str(exc)) from None
    _report_skipped(summary.examples, limit=20, total=summary.rejected)
    _report_label_warnings(summary.warnings, summary.label_warnings)
    for line in summary.report_lines():
        _note(line)
    if summary.failed:
        raise InputError(f"{len(summary.failed)} of {len(summary.files)} input files could not be read")
    if summary.rejected and not summary.scored:  # as local scoring: a run that scored nothing exits 2
        raise _nothing_scored(input_path, summary.rejected, summary.examples[0])
    return summary.flagged, summary.rejected


# ------------------------------------------------------------------------------------------------ explain

EXPLAIN_FORMATS = ("text", "jsonl", "json", "html")


@main.command("explain")
@click.argument("texts", nargs=-1)
@click.option("--prompt", help="Prompt of a question-answer pair; alone, a prompt alone (a user message).")
@click.option("--response", help="Response of a question-answer pair; alone, a text alone (as a TEXTS argument).")
@click.option("--input", "-i", "input_path",
              help="File of records to explain, or - for stdin (as `explain -`, or text piped in with nothing else "
                   "to explain).")
@click.option("--input-format", type=click.Choice(list(INPUT_FORMATS)), default="auto",
              show_default=True, help="Format of --input (auto: from the suffix, or sniffed for stdin).")
@click.option("--output", "-o", "output_path", type=click.Path(path_type=Path),
              help="Write to this file (atomically) instead of stdout; .html, .jsonl, .json or .txt sets the format, "
                   "and .gz or .xz after it compresses it (report.html.gz).")
@click.option("--format", "fmt", type=click.Choice(EXPLAIN_FORMATS), default=None,
              help="text (marked input and terms; coloured on a terminal), jsonl, json, or html (a self-contained "
                   "report) [default: from --output's suffix, else text on a terminal, jsonl otherwise].")
@click.option("--top", type=click.IntRange(min=0), default=None,
              help="Keep the K strongest contributions per label, the others summed into 'rest' [default: all in "
                   "JSON/JSONL; 10 shown in text and html].")
@click.option("--label", "labels", multiple=True,
              help="Explain this label (unsafe or a category, full or short name); repeat for more [default: unsafe "
                   "and the flagged categories].")
@threshold_option
@on_error_option("skip")
@max_record_option
@model_option
@quiet_option
@functools.partial(column_options, fields=("text", "prompt", "response", "id"))
@_friendly_errors
@stdin_as_input
@check_outputs
def explain_command(texts: tuple[str, ...], prompt: str | None, response: str | None, input_path: str | None,
                    input_format: str, output_path: Path | None, fmt: str | None, top: int | None,
                    labels: tuple[str, ...], threshold: float | str | None, on_error: str, max_record_bytes: int,
                    model_path: Path | None, quiet: bool, columns: Columns) -> None:
    """Explain the verdicts on TEXTS, a --prompt/--response pair, or every record of --input, exactly: each
    label's logit as its intercept plus one contribution (weight x tf-idf) per n-gram, with where it occurs.
    """
    from .data import read_records
    from .explain import Explainer, resolve_labels

    sources = sum([bool(texts), prompt is not None or response is not None, input_path is not None])
    if sources != 1:
        raise click.UsageError("give exactly one of: TEXTS, --prompt/--response, or --input FILE")
    if not columns.is_standard and input_path is None:
        raise click.UsageError("--text-column, --prompt-column, --response-column and --id-column name fields of "
                               "--input records")
    fmt = _explain_format(output_path, fmt)
    explainer = Explainer.load(model_path)
    asked = resolve_labels(labels, explainer.label_set_) if labels else None
    checked_threshold(threshold, explainer)
    errors: list[DataError] = []
    if input_path is not None:
        records = read_records(input_path, on_error=on_error, errors=errors, fmt=input_format, require="text",
                               max_record_bytes=max_record_bytes, columns=columns)
        rows = ((record.pair, record.line, record.id) for record in records)
    else:
        rows = ((item, None, None) for item in _items_from_arguments(texts, prompt, response))
    explained = ((explainer.explain([item], labels=asked, top=top, threshold=threshold)[0], item, line, id)
                 for item, line, id in rows)
    count = _write_explanations(explained, output_path, fmt, top, model_path)
    _report_skipped(errors)
    if input_path is not None and not quiet:
        _note(f"rows explained: {count}, skipped: {skipped_rows(errors)}")


def _explain_format(output_path: Path | None, fmt: str | None) -> str:
    """The suffix under any compression suffix decides, as for score (report.html.gz: gzipped HTML)."""
    default = "text" if output_path is None and sys.stdout.isatty() else "jsonl"
    return output_format(output_path, fmt, default, EXPLAIN_SUFFIX_FORMATS)


def _explanation_title(line: int | None, id: str | int | None, count: int) -> str:
    """A text or html report's heading of one row: its input line (or place) and its id, if it has one."""
    where = f"line {line}" if line is not None else f"#{count}"
    return where if id is None else f"{where}, id {printable(str(id))[:60]}"


def _write_explanations(explained: Iterator[tuple[dict, Any, int | None, str | int | None]],
                        output_path: Path | None, fmt: str, top: int | None, model_path: Path | None) -> int:
    """Write every explanation in ``fmt``, each with its input's line and id as score's rows carry them; the number
    written."""
    from .explain import item_pair
    from .highlight import html_report, text_report

    count = 0
    with atomic_text_writer(output_path) as stream:
        if fmt == "html":
            def rows():
                nonlocal count
                for explanation, item, line, id in explained:
                    count += 1
                    yield explanation, item_pair(item), _explanation_title(line, id, count)

            name = str(model_path or "default")
            stream.write(html_report(rows(), f"lite-moderation explanations ({name})", name,
                                     top=10 if top is None else top))
            return count
        color = fmt == "text" and str(output_path or "-") == "-" and sys.stdout.isatty()
        for explanation, item, line, id in explained:
            count += 1
            if fmt == "text":
                title = _explanation_title(line, id, count)
                stream.write(("\n" if count > 1 else "")
                             + text_report(explanation, item_pair(item), title, color, top=10 if top is None else top))
            else:
                row = keyed_row(explanation, line, id)
                separator = ("[\n  " if count == 1 else ",\n  ") if fmt == "json" else ""
                stream.write(separator + json.dumps(row) + ("" if fmt == "json" else "\n"))
        if fmt == "json":
            stream.write("[]\n" if count == 0 else "\n]\n")
    return count


class SourceType(click.ParamType):
    """A training source, ``FILE[,weight=W][,pair_weight=P][,prompt_alone_weight=Q][,rows=N][,shapes=A+B][,category=C]
    [,group=G]`` or
    ``pkg:chitchat-dataset`` / ``pkg:chatterbot-corpus`` (see ``sources.PACKAGE_SOURCES``)."""

    name = "source"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> SourceSpec:
        if isinstance(value, SourceSpec):
            return value
        try:
            return parse_source(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _parse_shapes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    shapes = tuple(s.strip() for s in value.split(",") if s.strip())
    if not shapes or set(shapes) - set(SHAPES):
        raise click.BadParameter(f"expected a comma-separated subset of {', '.join(SHAPES)} (pair is needed when "
                                 "the first --data file holds pairs)")
    return shapes


def data_options(command: Callable) -> Callable:
    """The training data of ``train`` and ``cv``: one or more sources, and the input shapes shown."""
    options = [
        click.option("--data", "--input", "-i", "sources", required=True, multiple=True, type=SourceType(),
                     help="Labelled file (.jsonl[.gz|.xz], .json, .csv), pkg:chitchat-dataset or pkg:chatterbot-corpus, optionally "
                          "',weight=W,pair_weight=P,prompt_alone_weight=Q,rows=N,shapes=A+B,category=C,group=G' "
                          "(row weight; "
                          "the weight of its pairs if other than W; of the messages made of its pairs' prompts if "
                          "other than W; a seeded sample of N rows; this source's own "
                          "shapes instead of --shapes, e.g. shapes=text: its turns as messages, not its pairs; for a "
                          "source labelled is_safe only, the category of all its unsafe rows, e.g. hate_speech; a "
                          "column whose rows share a fold, e.g. group=question_id, instead of each prompt's). "
                          "Repeat for more sources: "
                          "the first is BeaverTails-style data with the 14 categories, where thresholds are tuned "
                          "and CV reports; the others (categories, or is_safe only: their unsafe rows then teach "
                          "the unsafe head alone) are trained on in every fold. Single messages of every source "
                          "tune the message cut-offs."),
        click.option("--shapes", callback=_parse_shapes, default="pair", show_default=True,
                     help="Input shapes training shows, comma-separated: pair, plus text (each response, and "
                          "each prompt none of whose answers is unsafe, as a single message), prompt (each "
                          "prompt as a single message, unsafe when any of its answers is) and prompt_categories "
                          "(each prompt with an unsafe answer as a single message teaching its answers' categories "
                          "only, not the unsafe head)."),
        click.option("--vocabulary-from", type=click.Choice(["all", "harmful", "first"]), default="all",
                     show_default=True,
                     help="Sources the vocabulary and idf are learned from: all, those holding unsafe rows, or the "
                          "first only; the others are featurised with those terms (they teach weights, not words)."),
    ]
    command = column_options(command, _LABELLED_FIELDS)
    for option in reversed(options):
        command = option(command)
    return command


@main.command("train")
@data_options
@click.option("--output", "-o", "output_dir", required=True, type=click.Path(path_type=Path),
              help="Directory to write the model to: a new or empty one, or an existing model with --overwrite.")
@click.option("--cv-folds", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also run grouped cross-validation first and record it in the model card (0: skip).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fold shuffles and row samples.")
@click.option("--license", "license_text", default=None,
              help="License statement for the card [default: each source's recorded license (its records' `license` "
                   "field, or BeaverTails' terms for BeaverTails' files); 'license unknown' when none is recorded].")
@click.option("--overwrite", is_flag=True, help="Replace --output if it is an existing model.")
@recipe_options
@on_error_option("fail")
@max_record_option
@quiet_option
@_friendly_errors
@check_outputs
def train_command(sources: tuple[SourceSpec, ...], shapes: tuple[str, ...], vocabulary_from: str,
                  output_dir: Path, cv_folds: int,
                  seed: int, license_text: str | None, overwrite: bool, on_error: str, max_record_bytes: int,
                  quiet: bool, columns: Columns, **recipe: Any) -> None:
    """Train a model on labelled records and save it to --output.

    Labels: BeaverTails' (is_safe and the 14 categories), is_safe alone (a binary model), or your own
    (--label-column with --safe-class, or --label-columns); name your text fields with --text-column or
    --prompt-column/--response-column.
    """
    estimator = _estimator_from_options(recipe)  # before the data is read: the options may not make a recipe
    training_set = _load_sources(sources, shapes, seed, on_error, vocabulary_from, columns, max_record_bytes)
    _check_training_set(training_set, "--cv-folds", cv_folds)
    command = _training_command(sources, shapes, vocabulary_from, cv_folds, seed, recipe, columns)
    with _label_warnings_reported():
        model, card = train(training_set, estimator, cv_folds=cv_folds, seed=seed,
                            license_text=license_text, command=command, progress=not quiet)
    save(model, output_dir, card, overwrite=overwrite)
    load_scorer(output_dir)  # the loader's own checks: never report success for a model it would refuse
    _note(f"saved model to {output_dir} ({len(training_set)} rows, {model.coef_.shape[0]} features)")
    if cv_folds:
        _print_metrics(card["metrics"]["cv"], err=True)


def _load_sources(sources: tuple[SourceSpec, ...], shapes: tuple[str, ...], seed: int, on_error: str,
                  vocabulary_from: str = "all", columns: Columns | None = None,
                  max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
    from .sources import build_training_set

    errors: list[DataError] = []
    try:
        with _class_name_warnings_reported():
            training_set = build_training_set(sources, shapes, seed=seed, on_error=on_error, errors=errors,
                                              columns=columns, max_record_bytes=max_record_bytes)
    finally:  # also when no row was left: the skipped rows say why
        _report_skipped(errors)
    training_set.vocabulary_from = vocabulary_from
    return training_set


def _check_training_set(training_set, folds_option: str, n_folds: int) -> None:
    """Before any fit: refuse data the unsafe head cannot learn from, warn about categories it cannot
    learn, and check the number of folds against the option the user gave (0: no cross-validation)."""
    import numpy as np

    from .model import check_training_labels

    try:
        problem = check_training_labels(training_set.Y, training_set.labels)
    except ValueError as exc:
        raise InputError(f"--data: {exc}") from None
    if problem and training_set.has_categories:
        _note(f"warning: {problem}")
    n_groups = len(np.unique(training_set.groups[training_set.primary]))
    if n_folds and not 2 <= n_folds <= n_groups:
        skip = " (or 0 to skip cross-validation)" if folds_option == "--cv-folds" else ""
        what = "prompts" if training_set.grouped_by == "prompt" else f"groups ({training_set.grouped_by})"
        raise InputError(f"{folds_option} must be between 2 and the number of distinct {what} of the first "
                         f"--data source ({n_groups}){skip}, got {n_folds}")


@contextlib.contextmanager
def _label_warnings_reported() -> Iterator[None]:
    """The library's LabelWarning is already reported by ``_check_training_set``: not again per fold."""
    from .model import LabelWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelWarning)
        yield


def _training_command(sources: tuple[SourceSpec, ...], shapes: tuple[str, ...], vocabulary_from: str,
                      cv_folds: int, seed: int, recipe: dict, columns: Columns | None = None) -> str:
    """The command line that reproduces a model, recorded in its card (data by file name only).

    Options left at their defaults are omitted, and so is ``--jobs``, which changes speed, not the model.
    """
    parts = ["lite-moderation", "train"]
    for spec in sources:
        parts += ["--data", spec.spec_text(spec.name)]
    if shapes != ("pair",):
        parts += ["--shapes", ",".join(shapes)]
    if vocabulary_from != "all":
        parts += ["--vocabulary-from", vocabulary_from]
    for option, field, _ in _COLUMN_OPTIONS:
        value = getattr(columns, field) if columns is not None else None
        if value is not None:
            parts += [option, ",".join(value) if isinstance(value, tuple) else value]
    parts += ["--output", "MODEL_DIR"]
    if cv_folds:
        parts += ["--cv-folds", str(cv_folds), "--seed", str(seed)]
    elif seed and any(spec.rows is not None for spec in sources):
        parts += ["--seed", str(seed)]
    given = _given_options(recipe)
    given.pop("n_jobs", None)
    options = {param.name: param for param in click.get_current_context().command.params}
    for key, value in given.items():
        if isinstance(value, bool):  # an on/off flag such as --dual/--primal
            option = options[key]
            parts.append((option.opts if value else option.secondary_opts)[0])
            continue
        if isinstance(value, dict):  # --char-weight / --nb-power / --max-features FIELD=N,...
            text = ",".join(f"{field}={number:g}" if isinstance(number, float) else f"{field}={number}"
                            for field, number in value.items())
        else:
            text = "none" if value is None else ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        parts += [f"--{key.replace('_', '-')}", text]
    return shlex.join(parts)


def _load_labelled(data_path: Path, on_error: str, require: str = "labels", columns: Columns | None = None,
                   labels: Any = None, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
    errors: list[DataError] = []
    try:
        with _class_name_warnings_reported():
            dataset = load_dataset(data_path, on_error=on_error, errors=errors, require=require, columns=columns,
                                   labels=labels, max_record_bytes=max_record_bytes)
    finally:  # also when no row was left: the skipped rows say why
        _report_skipped(errors)
    return dataset


@contextlib.contextmanager
def _class_name_warnings_reported() -> Iterator[None]:
    """The data's :class:`~lite_moderation.data.ClassNameWarning` (class names that differ only by case) as a
    ``warning:`` line on stderr, like the CLI's other warnings, not in Python's warning format; other Python
    warnings are let through as they were."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ClassNameWarning)
        try:
            yield
        finally:
            ours = [w for w in caught if issubclass(w.category, ClassNameWarning)]
            others = [w for w in caught if not issubclass(w.category, ClassNameWarning)]
    for warning in ours:
        _note(f"warning: {warning.message}")
    for warning in others:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


@main.command("evaluate")
@click.option("--data", "--input", "-i", "data_path", required=True, type=click.Path(path_type=Path),
              help="Labelled file: is_safe and/or the 14 categories.")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Write the metrics as JSON (- for stdout); a name saying another format (m.csv) is refused.")
@predictions_option
@threshold_option
@metrics_output_options
@model_option
@on_error_option("fail")
@functools.partial(column_options, fields=_LABELLED_FIELDS)
@max_record_option
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr (warnings and errors still).")
@_friendly_errors
@check_outputs
def evaluate_command(data_path: Path, json_path: Path | None, predictions_path: Path | None,
                     threshold: float | str | None, n_resamples: int, bootstrap_seed: int, table_format: str,
                     model_path: Path | None, on_error: str, max_record_bytes: int, columns: Columns,
                     quiet: bool) -> None:
    """Print a model's metrics on labelled data (and warn when it saw these prompts in training).

    A model of your own labels reads them with the column options it was trained with (see its card's command).
    """
    from .evaluation import evaluate_rows
    from .model import prompt_groups

    model = load(model_path)
    dataset = _load_labelled(data_path, on_error, columns=columns,
                             labels=model.label_set_ if columns.own_labels else None, max_record_bytes=max_record_bytes)
    _warn_on_leak(model, group_keys(dataset.pairs), quiet)
    metrics, proba, predicted, cuts = evaluate_rows(model, dataset, threshold=threshold)
    groups = prompt_groups(dataset.pairs)
    if predictions_path is not None:  # the verdicts score gives: the same rule
        write_predictions(predictions_path, proba, cuts, dataset.lines, groups, labels=model.label_set_)
    categories = dataset.categories if "categories" in metrics else None
    metrics = _with_intervals(metrics, dataset.unsafe_labels(), proba, predicted, groups, categories,
                              n_resamples, bootstrap_seed, reported=model.label_set_.decide(proba, cuts)[1])
    _emit_metrics(metrics, json_path, table_format)


def _warn_on_leak(model, keys: list[str], quiet: bool = False) -> None:
    """``keys``: each evaluation row's prompt, or its text when it is a single message (``texts.group_keys``)."""
    from .evaluation import count_seen_prompts

    seen = count_seen_prompts(model, keys)
    total = len({" ".join(p.split()).lower() for p in keys})
    if not quiet:
        _note(f"leak check: {seen} of {total} distinct evaluation prompts and texts were in the model's training data")
    if seen:
        _note(f"WARNING: {seen} evaluation prompts or texts were seen in training: these metrics overstate quality "
              "(for honest numbers on training data, use `lite-moderation cv`).")


@main.command("cv")
@data_options
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Folds of the cross-validation, grouped by prompt (a prompt's rows share a fold), or by the "
                   "first --data source's group=COLUMN (a group's rows share a fold).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fold shuffle and row samples.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run the CV with fold seeds SEED..SEED+R-1 and report each metric's mean and standard deviation "
                   "(intervals and --predictions are of the first, SEED).")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Write the metrics as JSON (- for stdout); a name saying another format (m.csv) is refused.")
@predictions_option
@cv_threshold_option
@metrics_output_options
@recipe_options
@on_error_option("fail")
@max_record_option
@quiet_option
@_friendly_errors
@check_outputs
def cv_command(sources: tuple[SourceSpec, ...], shapes: tuple[str, ...], vocabulary_from: str, folds: int, seed: int,
               repeats: int, json_path: Path | None, predictions_path: Path | None, threshold: float | str | None,
               n_resamples: int, bootstrap_seed: int, table_format: str, on_error: str, max_record_bytes: int,
               quiet: bool, columns: Columns, **recipe: Any) -> None:
    """Cross-validate the training recipe, folds grouped by prompt (or --data FILE,group=COLUMN); metrics on
    out-of-fold predictions of the first --data source's rows (the other sources sit in every training fold)."""
    from .evaluation import cross_validate_repeats
    from .stats import repeat_summary

    estimator = _estimator_from_options(recipe)  # before the data is read: the options may not make a recipe
    # as train reads them: one source too keeps its rows=, weight=, shapes= and category= (is_safe alone included)
    training_set = _load_sources(sources, shapes, seed, on_error, vocabulary_from, columns, max_record_bytes)
    _check_training_set(training_set, "--folds", folds)
    seeds = list(range(seed, seed + repeats))
    with _label_warnings_reported():
        runs = cross_validate_repeats(training_set, folds, seeds, estimator=estimator, progress=not quiet,
                                      threshold=threshold)
    result, primary = runs[0], training_set.primary
    if predictions_path is not None:  # the verdicts score would give with each row's fold model
        write_predictions(predictions_path, result.proba, result.cut_offs, training_set.line_of_row[primary],
                          training_set.groups[primary], result.fold_of_row, labels=training_set.labels)
    target = training_set.Y[primary]
    metrics = _with_intervals(result.metrics, target[:, -1], result.proba, result.predicted,
                              training_set.groups[primary], target[:, :-1] if training_set.has_categories else None,
                              n_resamples, bootstrap_seed, training_set.grouped_by,
                              reported=training_set.labels.decide(result.proba, result.cut_offs)[1])
    if repeats > 1:
        metrics["repeats"] = repeat_summary([run.metrics for run in runs], seeds)
    _emit_metrics(metrics, json_path, table_format)


def _with_intervals(metrics: dict, unsafe_true, proba, predicted, groups, categories, n_resamples: int,
                    seed: int, grouped_by: str = "prompt", reported=None) -> dict:
    """``metrics`` with the bootstrap's ``"ci"`` objects (unchanged when ``n_resamples`` is 0), resampling the
    groups the folds kept together (``grouped_by``: "prompt" or a group column); ``reported``: the (n, k)
    categories as reported (``LabelSet.decide``), for the interval of their macro-F1."""
    if not n_resamples:
        return metrics
    from .stats import Bootstrap, metric_intervals, with_intervals

    bootstrap = Bootstrap(n_resamples, seed)
    intervals = metric_intervals(unsafe_true, proba, predicted, groups, categories, bootstrap, reported)
    return with_intervals(metrics, intervals, bootstrap.describe(len(set(groups.tolist())), grouped_by))


def _emit_metrics(metrics: dict, json_path: Path | None, table_format: str = "text") -> None:
    if json_path is not None:
        write_json(metrics, json_path)
    if json_path is not None and str(json_path) == "-":
        return
    if table_format == "text":
        _print_metrics(metrics)
        return
    from .tables import metrics_tables, render_all, repeats_table

    tables = metrics_tables(metrics)
    if "repeats" in metrics:
        tables.append(repeats_table(metrics["repeats"]))
    click.echo(render_all(tables, table_format), nl=False)


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def _fmt_ci(ci: list | None) -> str:
    return "n/a" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _print_metrics(metrics: dict, err: bool = False) -> None:
    unsafe_keys = ("f1", "precision", "recall", "fpr", "accuracy", "auprc", "auroc")
    lines = [f"rows: {metrics['n']}", "unsafe: " + "  ".join(f"{k} {_fmt(metrics['unsafe'][k])}" for k in unsafe_keys)]
    ci = metrics["unsafe"].get("ci")
    if ci:
        boot = metrics["bootstrap"]
        lines.append(f"  {boot['level']:.0%} CI: " + "  ".join(f"{k} {_fmt_ci(ci[k])}" for k in unsafe_keys))
    if "categories" in metrics:
        lines += _category_lines(metrics["categories"], "categories, each head at its own cut-off")
    if "reported_categories" in metrics:
        from .tables import REPORTED_NOTE

        lines += _category_lines(metrics["reported_categories"], "categories as reported")
        lines.append(REPORTED_NOTE)
    if ci:
        boot = metrics["bootstrap"]
        lines.append(f"CI: {boot['method']}, {boot['resamples']} resamples, seed {boot['seed']}, "
                     f"{boot['groups']} groups")
    if "repeats" in metrics:
        lines += _repeat_lines(metrics["repeats"])
    click.echo("\n".join(lines), err=err)


def _category_lines(cats: dict, title: str) -> list[str]:
    """One category part of the metrics (``categories`` or ``reported_categories``) as text lines."""
    macro_ci = f" {_fmt_ci(cats['ci']['macro_f1'])}" if "ci" in cats else ""
    scores = all("auprc" in m for m in cats["per_category"].values())  # decisions alone have no AUPRC
    header = f"  {'category':<32} {'f1':>6} {'prec':>6} {'recall':>6}" + (f" {'auprc':>6}" if scores else "")
    lines = [f"{title}: macro-F1 {_fmt(cats['macro_f1']).strip()}{macro_ci}  micro-F1 {_fmt(cats['micro_f1']).strip()}",
             f"{header} {'support':>7}"]
    for name, m in cats["per_category"].items():
        auprc = f" {_fmt(m['auprc']):>6}" if scores else ""
        lines.append(f"  {short_name(name):<32} {_fmt(m['f1']):>6} {_fmt(m['precision']):>6} "
                     f"{_fmt(m['recall']):>6}{auprc} {m['support']:>7}")
    return lines


def _repeat_lines(repeats: dict) -> list[str]:
    seeds = repeats["seeds"]
    lines = [f"over {len(seeds)} fold seeds ({seeds[0]}..{seeds[-1]}), mean ± sd:"]
    for part, values in repeats["mean"].items():
        sd = repeats["std"][part]
        name = {"categories": "categories, each head at its own cut-off",
                "reported_categories": "categories as reported"}.get(part, part)
        lines.append(f"  {name}: " + "  ".join(f"{k} {v:.3f} ± {sd[k]:.3f}" for k, v in values.items()))
    return lines


#: The formats of compare's and bench's tables.
TABLE_FORMATS = ("text", "markdown", "latex", "csv", "json")


def _table_format(output_path: Path | None, fmt: str | None) -> str:
    """compare's and bench's tables: the suffix of --output decides, by score's rule (a contradicting --format and
    a suffix no format has are refused)."""
    return output_format(output_path, fmt, "text", TABLE_SUFFIX_FORMATS)


class SystemType(click.ParamType):
    """``NAME=PREDICTIONS``: a system's name and its per-row predictions file."""

    name = "NAME=PREDICTIONS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, Path]:
        if isinstance(value, tuple):
            return value
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path:
            self.fail(f"expected NAME=PREDICTIONS (e.g. ours=oof.jsonl), got {value!r}", param, ctx)
        return name.strip(), Path(path)


@main.command("compare")
@click.option("--data", "--input", "-i", "data_path", required=True, type=click.Path(path_type=Path),
              help="The labelled file (is_safe) every system was run on; its rows' prompts group the bootstrap.")
@click.option("--system", "systems", required=True, multiple=True, type=SystemType(),
              help="NAME=PREDICTIONS, repeated: JSONL with one line per row, {\"row\": i, ...} and a verdict "
                   "(\"flagged\" or NAME: true/false) and/or a score (\"scores\": {\"unsafe\": x}, \"score\", "
                   "\"unsafe_score\", or NAME: a number). `evaluate`/`cv --predictions` write this.")
@click.option("--reference", default=None, help="Compare every system with this one only [default: every pair].")
@click.option("--format", "fmt", type=click.Choice(TABLE_FORMATS), default=None,
              help="How the comparison is printed: text, Markdown or LaTeX (booktabs) tables, CSV, or JSON [default: "
                   "from --output's suffix, else text].")
@click.option("--output", "-o", "output_path", type=click.Path(path_type=Path),
              help="Write the tables (or JSON) to this file, atomically [default: stdout]; .txt, .md, .tex, .csv or "
                   ".json sets the format, and .gz or .xz after it compresses it.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Write PR and ROC curves of the systems with scores to this PNG ('-': stdout, with --output "
                   "FILE for the tables) (pip install 'lite-moderation[plot]').")
@click.option("--bootstrap", "n_resamples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Resamples of prompt groups, shared by all systems (paired).")
@click.option("--bootstrap-seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resamples.")
@on_error_option("fail")
@max_record_option
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr (warnings and errors still).")
@functools.partial(column_options, fields=("text", "prompt", "response"))
@_friendly_errors
@check_outputs
def compare_command(data_path: Path, systems: tuple[tuple[str, Path], ...], reference: str | None, fmt: str | None,
                    output_path: Path | None, plot_path: Path | None, n_resamples: int, bootstrap_seed: int,
                    on_error: str, max_record_bytes: int, quiet: bool, columns: Columns) -> None:
    """Systems' per-row predictions side by side on the rows they all cover: unsafe-head metrics with 95%
    confidence intervals, paired bootstrap intervals of the differences, McNemar's exact test on verdicts."""
    from .compare import check_plotting, compare_systems, comparison_tables, plot_curves, read_system
    from .stats import Bootstrap
    from .tables import render_all

    fmt = _table_format(output_path, fmt)
    if plot_path is not None:
        check_plotting()
    dataset = _load_labelled(data_path, on_error, columns=columns, max_record_bytes=max_record_bytes)
    read = [read_system(path, name, dataset, max_record_bytes) for name, path in systems]
    comparison = compare_systems(dataset, read, Bootstrap(n_resamples, bootstrap_seed), reference=reference)
    summary = comparison.summary
    if not quiet:
        _note(f"compared {len(read)} systems on {summary['rows_compared']} of {summary['rows_in_data']} rows")
    with atomic_text_writer(output_path) as stream:
        if fmt == "json":
            stream.write(json.dumps(summary, indent=2) + "\n")
        else:
            stream.write(render_all(comparison_tables(summary), fmt))
    if plot_path is not None:
        plot_curves(comparison, plot_path)
        _note(f"wrote {'the curves to stdout' if str(plot_path) == '-' else plot_path}")


@main.command("bench")
@click.option("--model", "model_names", type=ModelType(), multiple=True,
              help="A model to score (NAME or DIR, as elsewhere); repeat for more [default: default, fast and "
                   "beavertails].")
@click.option("--suite", "suite_name", default="guard", show_default=True,
              help="guard (GuardReasoner's normalised copies of the guard-model sets, pinned by commit and sha256), "
                   "or a manifest JSON of your own in the same shape.")
@click.option("--set", "set_names", multiple=True, metavar="NAME",
              help="Score only this set of the suite (repeat), by its id: guard's are "
                   + ", ".join(f.name for f in GUARD_SUITE.files) + ".")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Read the suite's files from this directory (offline: nothing is downloaded; files not there are "
                   "named with where to get them, and left out) [default: fetch them into the cache].")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Where to keep downloads [default: $XDG_CACHE_HOME/lite-moderation].")
@click.option("--max-bytes", type=click.IntRange(min=1), default=64 << 20, show_default=True,
              help="Refuse a downloaded file larger than this many bytes.")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="Give up on one file's download after this many seconds (a later run resumes).")
@click.option("--format", "fmt", type=click.Choice(TABLE_FORMATS), default=None,
              help="How the table is printed: text, Markdown or LaTeX (booktabs), CSV, or JSON [default: from "
                   "--output's suffix, else text].")
@click.option("--output", "-o", "output_path", type=click.Path(path_type=Path),
              help="Write the tables (or JSON) to this file, atomically [default: stdout]; .txt, .md, .tex, .csv or "
                   ".json sets the format, and .gz or .xz after it compresses it.")
@click.option("--predictions", "predictions_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write SET.jsonl (the set's rows in this toolkit's format) and SET.MODEL.jsonl (per-row "
                   "predictions) here, for `compare --data SET.jsonl --system MODEL=SET.MODEL.jsonl`.")
@threshold_option
@click.option("--bootstrap", "n_resamples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Resamples of prompt groups for the 95% intervals (shared by the models of a set).")
@click.option("--bootstrap-seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resamples.")
@quiet_option
@_friendly_errors
@check_outputs
def bench_command(model_names: tuple[str | Path, ...], suite_name: str, set_names: tuple[str, ...],
                  data_dir: Path | None, cache_dir: Path | None, max_bytes: int, max_time: float, fmt: str | None,
                  output_path: Path | None, predictions_dir: Path | None, threshold: float | str | None,
                  n_resamples: int, bootstrap_seed: int, quiet: bool) -> None:
    """The guard-benchmark table: each model's F1 on the harmful class per set of the suite (95% bootstrap
    intervals, AUPRC, AUROC, the rows-weighted average), beside the published rows of guard models with their
    sources. Prompt sets are scored once: a single message has one verdict, whatever its shape."""
    from .bench import DEFAULT_MODELS, bench_tables, gather_sets, model_label, run_bench
    from .guard_suite import available, load_suite
    from .stats import Bootstrap
    from .tables import render_all

    fmt = _table_format(output_path, fmt)
    suite = load_suite(suite_name)
    sets, missing, errors = gather_sets(suite, available(suite, set_names), data_dir, cache_dir, not quiet,
                                        max_bytes, max_time)
    if errors:
        _report_skipped(errors, what="error", rows="bad records")
        raise InputError(f"{len(errors)} records of the suite's files could not be read (listed above); fix the "
                         "files or get the pinned copies")
    for spec in missing:
        _note(f"not available: {spec.display} ({spec.basename} is not in {data_dir}); get it from {suite.url(spec)}")
    if not sets:
        raise InputError(f"none of the suite's files is in {data_dir}: put them there (URLs above), or leave out "
                         "--data-dir to download them")
    models = [(model_label(name), load(name)) for name in model_names or DEFAULT_MODELS]
    progress = None if quiet else (lambda set_name, model: _note(f"scoring {set_name} with {model}"))
    summary = run_bench(models, sets, suite, missing, Bootstrap(n_resamples, bootstrap_seed), threshold,
                        predictions_dir, progress)
    with atomic_text_writer(output_path) as stream:
        stream.write(json.dumps(summary, indent=2) + "\n" if fmt == "json" else render_all(bench_tables(summary), fmt))


@main.command("info")
@model_option
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
@_friendly_errors
def info(model_path: Path | None, as_json: bool) -> None:
    """Print the model card: data, recipe, labels, thresholds, metrics, license, format, path, size."""
    card = read_card(model_path)
    if as_json:
        click.echo(json.dumps(card, indent=2))
        return
    try:
        lines = _card_lines(card)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:  # re-signed by hand, say
        raise InputError(f"{card.get('path', model_path)}: the model card is malformed ({type(exc).__name__}: "
                         f"{printable(str(exc))[:200]}); info --json shows it as saved. Retrain or reinstall the "
                         f"model") from None
    # a model's card is its author's text: each line escaped on its own, so a value cannot print a line of its own
    click.echo("\n".join(map(printable, lines)))


def _labels_line(label_set: dict) -> str:
    """What the model predicts: its categories (shortened past 20) and the head that decides ``flagged``."""
    categories = label_set["categories"]
    shown = ", ".join(map(short_name, categories[:20])) + (f" ... ({len(categories)} in all)" if len(categories) > 20 else "")
    return (f"labels: {len(categories)} categories ({shown}); flagged when '{label_set['flag']}' reaches its cut-off"
            if categories else f"labels: one binary head, '{label_set['flag']}' (no categories)")


def _own_weights_text(source: dict) -> str:
    """A source's own weights of its pairs and of its prompts alone, and the category of its unsafe rows, when it
    has them (see ``SourceSpec``)."""
    names = {"pair_weight": "pairs", "prompt_alone_weight": "prompts alone"}
    text = "".join(f", {name} {source[key]:g}" for key, name in names.items() if source.get(key) is not None)
    return text + (f", unsafe rows are {source['category']}" if source.get("category") else "")


def _source_id(source: dict, name: str | None) -> str:
    """How a training source is identified: its sha256, its package's version, or that it has neither (stdin is
    read once, not hashed)."""
    if source.get("sha256"):
        return f"sha256 {source['sha256']}"
    if source.get("package"):
        return source["package"]
    return "not hashed" if name == "-" else "sha256 not recorded"


def _training_lines(card: dict) -> list[str]:
    """The card's training data: what is known of it, and plainly what is not (a model saved from Python without
    the card ``lm.train`` returns has none; a file read from stdin has no name and no sha256)."""
    data = card.get("training_data") or {}
    if not data:
        return ["training data: not recorded (no model card: saved from Python without the card lm.train returns)"
                if not card.get("recipe") else "training data: not recorded"]
    sources = data.get("sources") or [{}]
    name = data.get("file")
    parts = [f"{data[key]} {what}" for key, what in (("rows", "rows"), ("distinct_prompts", "prompts"))
             if data.get(key) is not None]
    parts.append(_source_id({**sources[0], "sha256": data.get("sha256")}, name))
    where = "stdin" if name == "-" else name or "a file not named in the card"
    grouped = f", folds grouped by {data['grouped_by']}" if data.get("grouped_by") else ""
    return [
        f"trained on: {where} ({', '.join(parts)}{_own_weights_text(sources[0])}{grouped})",
        *(f"  also: {'stdin' if s['name'] == '-' else s['name']} (weight {s['weight']:g}{_own_weights_text(s)}, "
          f"{s['training_rows']} training rows, {_source_id(s, s['name'])}, "
          f"license {s.get('license') or 'unknown'})" for s in data.get("sources", [])[1:]),
        *([f"input shapes trained: {', '.join(data['shapes'])}"] if "shapes" in data else []),
    ]


def _card_lines(card: dict) -> list[str]:
    command = (card.get("recipe") or {}).get("command")
    lines = [
        f"model: {card['path']} ({card['size_bytes'] / 1e6:.2f} MB, format version {card['format_version']})",
        *_training_lines(card),
        f"recipe: {command}" if command else "recipe: not recorded (the estimator's parameters: info --json, "
                                             "under params)",
        _labels_line(card["label_set"]),
        f"license: {card['license']}" if card.get("license") else "license: not recorded (check the training "
                                                                  "data's terms)",
    ]
    lines += [f"note: {note}" for note in card.get("notes", [])]
    cv = card.get("metrics", {}).get("cv")
    if cv:
        unsafe = cv["unsafe"]
        macro = f"  macro-F1 {_fmt(cv['categories']['macro_f1']).strip()}" if "categories" in cv else ""
        lines.append(f"cv ({cv['folds']} folds grouped by {cv.get('grouped_by', 'prompt')}, seed {cv['seed']}): "
                     f"unsafe F1 {_fmt(unsafe['f1']).strip()}"
                     f"  AUPRC {_fmt(unsafe['auprc']).strip()}  AUROC {_fmt(unsafe['auroc']).strip()}{macro}")
    shapes = [("", card["thresholds"], card.get("operating_points", {}))]
    if "message_thresholds" in card:  # single messages have cut-offs of their own
        shapes = [("pairs: ", *shapes[0][1:]),
                  ("single messages: ", card["message_thresholds"], card["message_operating_points"])]
    for title, thresholds, points in shapes:
        lines.append(f"{title}thresholds: " + ", ".join(f"{short_name(k)} {v:.3f}" for k, v in thresholds.items()))
        if points:
            flag = short_name(list(thresholds)[-1])  # the flag head: the last label ("unsafe", or a model's own)
            lines.append(f"{title}{flag} operating points (--threshold NAME): "
                         + ", ".join(f"{name} {value:.3f}" for name, value in points.items()))
    return lines


@main.command("download")
@click.option("--split", required=True, type=click.Choice(list(SPLITS)), help="BeaverTails file to fetch.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Where to keep downloads [default: $XDG_CACHE_HOME/lite-moderation].")
@click.option("--revision", default=REVISION, show_default=True,
              help="Hub revision to fetch: a 40-hex commit, or a branch or tag name.")
@click.option("--sha256", default=None, help="Expected sha256 (default: the known one for this split, if any).")
@click.option("--force", is_flag=True, help="Download again even when cached.")
@click.option("--max-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_BYTES, show_default=True,
              help="Refuse a file larger than this many bytes.")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_MAX_SECONDS,
              show_default=True, help="Give up after this many seconds (a later run resumes).")
@quiet_option
@_friendly_errors
def download_command(split: str, cache_dir: Path | None, revision: str, sha256: str | None, force: bool,
                     max_bytes: int, max_time: float, quiet: bool) -> None:
    """Fetch a BeaverTails split from the Hugging Face hub (HF_ENDPOINT honoured) and print its local path.

    Downloads resume where they stopped, must be as long as the server declared, and are verified against a
    known sha256 where one is known. HF_TOKEN is sent to the hub only, never across a redirect to another host.
    """
    try:
        path = download(split, cache_dir, revision=revision, sha256=sha256, force=force, progress=not quiet,
                        max_bytes=max_bytes, max_seconds=max_time)
    except DownloadError as exc:
        raise InputError(str(exc)) from None
    if SPLITS[split].sha256 is None and sha256 is None:
        _note(f"note: no trusted sha256 is known for {split}; the file was not verified")
    click.echo(str(path))


# ------------------------------------------------------------------------------------------------ serve


def _listen_address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("give an address to listen on, like 127.0.0.1, 0.0.0.0 or :: (an empty one "
                                 "would listen on every interface)")
    return value


def _checked_list(check: Callable[[list[str]], object]) -> Callable:
    """A click callback running ``check`` (server.checked_hosts or checked_origins) on a repeated option."""

    def callback(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
        try:
            check(list(values))
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        return values

    return callback


@main.command("serve")
@model_option
@click.option("--host", default="127.0.0.1", show_default=True, callback=_listen_address,
              help="Address to listen on (0.0.0.0 or :: to accept other machines).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port; the log says which).")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=DEFAULT_WORKERS, show_default=True,
              help="Processes sharing the port, each with its own copy of the model (one per core; Unix).")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=DEFAULT_THREADS, show_default=True,
              help="Worker threads per process: requests scored at once (slow clients never hold one).")
@click.option("--max-body-bytes", type=click.IntRange(1, MAX_BODY_BYTES_LIMIT), default=DEFAULT_MAX_BODY_BYTES,
              show_default=True, help="Larger request bodies get 413.")
@click.option("--max-batch", type=click.IntRange(1, MAX_BATCH_LIMIT), default=DEFAULT_MAX_BATCH, show_default=True,
              help="Most inputs in one request (more get 400).")
@click.option("--read-timeout", type=FiniteFloatRange(0, MAX_READ_TIMEOUT, min_open=True),
              default=DEFAULT_READ_TIMEOUT, show_default=True,
              help="Seconds a client may take to send a whole request (or stay idle between requests); also bounds "
                   "the drain on SIGTERM.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, callback=_checked_list(checked_hosts),
              help="Also answer requests whose Host header names this (a DNS name or address; repeat for more; '*' "
                   "for any). Answered anyway: localhost, loopback addresses and --host (with 0.0.0.0 or ::, any IP "
                   "address); other names get 421, so a web page cannot rebind its own domain to this server.")
@click.option("--allowed-origin", "allowed_origins", multiple=True, callback=_checked_list(checked_origins),
              help="Also answer browser requests from this page origin, like https://app.example.com (repeat for "
                   "more; '*' for any). Other origins than the server's own page get 403.")
@threshold_option
@click.option("--quiet", "-q", is_flag=True, help="No line per request on stderr (start, stop and errors still).")
@_friendly_errors
def serve_command(model_path: Path | None, host: str, port: int, workers: int, threads: int, max_body_bytes: int,
                  max_batch: int, read_timeout: float, allowed_hosts: tuple[str, ...],
                  allowed_origins: tuple[str, ...], threshold: float | str | None, quiet: bool) -> None:
    """Serve an OpenAI-compatible POST /v1/moderations, POST /v1/explain (why a verdict, term by term), a try-it
    page at / and GET /healthz, GET /v1/models, until Ctrl-C, SIGTERM or SIGHUP.

    Runs on waitress. On Ctrl-C, SIGTERM or SIGHUP (unless ignored, as under nohup) every request already sent is
    answered (a JSON 503 once draining), then the server exits 0 within --read-timeout + 1 s. With --workers, if
    workers keep dying it stops them all and exits 3. Requests are logged on stderr (method, path, status, latency,
    item count), never their text.
    """
    try:
        serve(model_path, host=host, port=port, threads=threads, max_body_bytes=max_body_bytes, max_batch=max_batch,
              read_timeout=read_timeout, threshold=threshold, workers=workers, allowed_hosts=allowed_hosts,
              allowed_origins=allowed_origins, quiet=quiet)
    except ServerFailed as exc:
        _note(f"error: {exc} (the log above says why); exiting with {exits.SERVER_FAILED}")
        raise click.exceptions.Exit(exits.SERVER_FAILED) from None


if __name__ == "__main__":  # pragma: no cover
    main()
