"""Read moderation data (BeaverTails JSONL, JSON lists, CSV, plain text) into validated records.

Every bad record becomes a :class:`DataError` that names the file, line and field, so a user can fix it;
with ``on_error="skip"`` the errors are collected instead of raised, never dropped silently. Line-based
formats are streamed (the 330k BeaverTails split does not need to fit in memory as text), and bytes are
decoded per line so one non-UTF-8 line costs one record, not the whole file.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import gzip
import hashlib
import itertools
import json
import lzma
import os
import re
import sys
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Union

import numpy as np

from .labels import DEFAULT_FLAG, IS_SAFE, LabelSet, label_set_of_columns
from .taxonomy import BEAVERTAILS, CATEGORIES

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES", "ClassNameWarning", "Columns", "DataError", "DataWarning", "Dataset", "OverlongLine",
    "Record",
    "bounded_lines", "file_bytes", "file_lines", "load_dataset", "not_utf8_error", "parse_json_array",
    "parse_json_text", "read_records", "record_from_object", "sha256_file", "skipped_rows",
]

PathLike = Union[str, "os.PathLike[str]"]

FORMATS = ("auto", "jsonl", "json", "csv", "tsv", "text")
#: What a reader needs of each record: "text" (scoring: labels unused, a malformed one is a DataWarning),
#: "none" (labels optional but checked), "labels" (is_safe or categories), "categories" (all 14).
REQUIRE = ("text", "none", "labels", "categories")
ON_ERROR = ("fail", "skip")
#: The longest record (line) read by default: featurising costs ~300 bytes of memory per byte of a one-word
#: text (a 10 MB row took 3 GB), so longer lines are reported and skipped, never held whole.
DEFAULT_MAX_RECORD_BYTES = 2 * 1024 * 1024
#: A .json file is one document, parsed whole: it may hold this many times the record limit.
JSON_FILE_RECORDS = 64
_DISCARD_CHUNK = 1 << 20

_CATEGORY_SET = frozenset(CATEGORIES)
_BOM = b"\xef\xbb\xbf"
_FIX_HINT = FIX_HINT = "Fix the record or pass --on-error skip."
_LABEL_NAMES_HINT = (f"Rename the class or column: {DEFAULT_FLAG!r} is the flag head, flagged when any label is (a "
                     "class column of two classes, one the --safe-class, may call the other 'unsafe').")
_QUOTE_HINT = ("Close the quote, or double a quote inside a quoted cell (\"\"); the rows after this line are "
               "read on their own.")
_IGNORED_HINT = "Scoring does not use labels: the row was scored."
_KEYS_HINT = "Category keys are the 14 BeaverTails keys listed in lite_moderation.taxonomy.CATEGORIES."
_LABELS_HINT = "This step needs labelled data: add 'is_safe' or a full 'category' object to every record."
_CATEGORIES_HINT = "This step needs the 14 harm categories: add a full 'category' object to every record."
_CSV_COLUMNS_HINT = (
    "The first row must be a header: prompt,response[,is_safe][,category or the 14 category key columns]."
)
#: The one rule of a label flag (is_safe, a category, a boolean label column) in every format: JSON true/false, the
#: numbers 1/0, or one of these words in any case, as a CSV cell or a JSON string (1.0/0.0: pandas writes a label
#: column with gaps as floats); null or an empty cell is no value. Why one rule: a pandas int column written as
#: JSONL (1/0) was refused where the same CSV was read.
_FLAG_WORDS = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False, "yes": True,
               "no": False}
_FLAG_RULE = "true/false (or 1/0, yes/no)"
_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
                   ".txt": "text"}
_COMPRESSIONS = {".gz": "gzip", ".xz": "xz"}
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"))
#: Compressions and archives the reader does not open, told by their first bytes (whatever the file's name): the
#: name of each, and the command that decompresses it. Why: read as text, they were "not valid UTF-8".
_UNREAD_MAGIC = (
    (re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)"), "bzip2", "bunzip2 -k FILE"),
    (re.compile(rb"PK(\x03\x04|\x05\x06)"), "zip", "unzip FILE"),
    (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd", "zstd -d FILE"),
    (re.compile(rb"\x04\x22\x4d\x18"), "lz4", "lz4 -d FILE"),
    (re.compile(rb"7z\xbc\xaf\x27\x1c"), "7z", "7z x FILE"),
)
_UTF8_HINT = ("The file must be UTF-8: convert one in another encoding first, e.g. iconv -f latin1 -t utf-8 FILE > NEW "
              "(Latin-1; -f cp1252 for Windows text)")
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)


class DataError(ValueError):
    """One bad record or file problem, located precisely enough for the user to fix it.

    Attributes: ``path`` (str), ``line`` (1-based int or None), ``field`` (str or None), ``message`` (str),
    ``hint`` (str or None), ``element`` (a record's 1-based place in a .json array, whose ``line`` is the line it
    starts on; None elsewhere), ``rows`` (how many input rows this one report stands for: 1, or a run of blank
    lines, reported once so that a file of a million blank lines is not a million reports). ``str(e)`` is one
    line: ``path:line: field 'f': message. hint``, or for a .json array ``path: element N (line L): ...``.
    """

    def __init__(
        self,
        path: str,
        line: int | None = None,
        field: str | None = None,
        message: str = "",
        hint: str | None = None,
        element: int | None = None,
        rows: int = 1,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        self.hint = hint
        self.element = element
        self.rows = rows
        super().__init__(self._format())

    @property
    def location(self) -> str:
        """Where in the file, for a sentence: "line 7", "element 3 (line 12)", or "" for the whole file."""
        if self.line is None:
            return ""
        return f"line {self.line}" if self.element is None else f"element {self.element} (line {self.line})"

    def _format(self) -> str:
        if self.line is None:
            where = self.path
        else:
            where = f"{self.path}:{self.line}" if self.element is None else f"{self.path}: {self.location}"
        text = f"field '{self.field}': {self.message}" if self.field else self.message
        if self.hint:
            text = f"{text.rstrip('.')}. {self.hint}"
        text = f"{where}: {text}" if where else text
        return " ".join(text.splitlines())

    def __reduce__(self) -> tuple[Any, ...]:
        """Keep the attributes when pickled (e.g. errors sent back from worker processes)."""
        return (type(self), (self.path, self.line, self.field, self.message, self.hint, self.element, self.rows))


@dataclass(frozen=True, slots=True)
class Record:
    """One validated record. ``response`` is None for a text alone ("text" field, or a text line), "" for a
    prompt alone (a "prompt" without a "response")."""

    prompt: str
    response: str | None
    categories: tuple[bool, ...] | None
    is_safe: bool | None
    line: int
    target: str | tuple[bool, ...] | None = None  # the raw own-label value(s) read through ``Columns``
    id: str | int | None = None  # the record's id field (``Columns.id``, default "id"), carried into output rows
    group: str | None = None  # the record's group field (``Columns.group``): rows of one value share a fold
    start_line: int | None = None  # a .json array's record: the line it starts on (``line`` is its element number)

    def error(self, path: str, field: str | None, message: str, hint: str | None = None) -> DataError:
        """A problem found in this record after reading, located as a reading error would be."""
        if self.start_line is None:
            return DataError(path, self.line, field, message, hint)
        return DataError(path, self.start_line, field, message, hint, element=self.line)

    @property
    def pair(self) -> tuple[str, str] | str:
        """What a model scores: the (prompt, response) pair, or the plain text."""
        return self.prompt if self.response is None else (self.prompt, self.response)


@dataclass
class Dataset:
    """Records as parallel lists/arrays, ready for vectorising and training."""

    pairs: list
    categories: np.ndarray | None
    unsafe: np.ndarray | None
    lines: list[int]
    prompts: list[str]
    path: str = ""
    labels: LabelSet = BEAVERTAILS  # the names of ``categories``' columns and of the flag head (``unsafe``)
    groups: list[str] | None = None  # each row's value of ``group_column`` (None: no group column was read)
    group_column: str | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def y(self) -> np.ndarray:
        """(n, k+1) bool targets in ``labels.names`` order: the categories, then the flag head."""
        if not self.labels.categories:  # a binary target alone
            return self.unsafe_labels()[:, None].astype(bool)
        if self.categories is None:
            raise DataError(
                self.path, field="category", message="the data has no category labels for every record",
                hint="Load it with require='categories'.",
            )
        return np.column_stack([self.categories, self.unsafe_labels()]).astype(bool)

    def unsafe_labels(self) -> np.ndarray:
        """(n,) bool: is_safe negated, or any category when is_safe is absent."""
        if self.unsafe is not None:
            return self.unsafe
        if self.categories is not None:
            return self.categories.any(axis=1)
        raise DataError(self.path, message="the data has no labels (is_safe or category) to evaluate against")


class DataWarning(DataError):
    """A problem that did not stop a record from being used (e.g. a malformed label when scoring)."""


class ClassNameWarning(UserWarning):
    """Classes of a class column whose names differ only by case ("Spam", "spam"): they stay separate classes (the
    data's labels are the user's), and this warning names each and where it first occurs, so that a typo is fixed
    in the data rather than trained on."""


def skipped_rows(errors: Iterable[DataError]) -> int:
    """How many input rows these reports stand for (a run of blank lines is one report of several rows)."""
    return sum(error.rows for error in errors)


@dataclass(frozen=True, slots=True)
class _Blank:
    """A blank (empty or whitespace-only) line: a row without a record. Why not skipped: every input row gets an
    output row or a report (a blank line may be an empty text, as ``jq -r .text`` writes one); runs of them
    become one report (:func:`_drive`)."""

    line: int


def _is_blank(text: str | bytes) -> bool:
    """The one rule of a blank line, in every line format: nothing on it but whitespace."""
    return not text.strip()


class _Bad(Exception):
    """A record problem before the file and line are attached (becomes a DataError)."""

    def __init__(self, field: str | None, message: str, hint: str | None = _FIX_HINT) -> None:
        super().__init__(message)
        self.field, self.message, self.hint = field, message, hint


@dataclass(frozen=True)
class Columns:
    """Which fields of a user's file hold the text and the labels (None everywhere: the standard fields).

    ``text`` names a single text; ``prompt`` (and ``response``) a pair. ``label`` names one class per row
    (multi-class: one head per class; ``safe_class`` is the class meaning "nothing flagged"), ``labels`` several
    boolean columns (multi-label; one of them may be ``is_safe``, which then is the flag head); one boolean
    column alone is a binary target. Without ``label``/``labels`` the standard labels are read (is_safe,
    category). ``group`` names a field whose value keeps rows together in grouped folds (translations of one
    question, turns of one conversation); every record then needs it.
    """

    text: str | None = None
    prompt: str | None = None
    response: str | None = None
    label: str | None = None
    labels: tuple[str, ...] | None = None
    safe_class: str | None = None
    id: str | None = None  # the field output rows carry as their id (None: "id" when a record has one)
    group: str | None = None  # the field that groups rows in folds (None: rows are grouped by prompt)

    def __post_init__(self) -> None:
        if self.group is not None and not (isinstance(self.group, str) and self.group.strip()):
            raise ValueError(f"group must name a column, got {self.group!r}")
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))
        if self.text is not None and (self.prompt is not None or self.response is not None):
            raise ValueError("name a text column or prompt/response columns, not both")
        if self.response is not None and self.prompt is None:  # the prompt keeps its default name, as documented
            object.__setattr__(self, "prompt", "prompt")
        if self.label is not None and self.labels is not None:
            raise ValueError("name one class column (label) or boolean columns (labels), not both")
        if self.safe_class is not None and self.label is None:
            raise ValueError("safe_class names a class of the class column: give the class column (label) too")
        if self.labels is not None and (not self.labels or len(set(self.labels)) != len(self.labels)
                                        or not all(isinstance(n, str) and n.strip() for n in self.labels)):
            raise ValueError(f"labels must be distinct non-empty column names, got {list(self.labels)!r}")

    @property
    def own_labels(self) -> bool:
        """Whether the labels come from the user's columns rather than is_safe/category."""
        return self.label is not None or self.labels is not None

    @property
    def is_standard(self) -> bool:
        return self == Columns()

    def text_fields(self) -> dict[str, str]:
        """{user's field: standard field} of the text. A named prompt keeps the default response field
        (``response``) unless one is named: a pair's answer is never dropped for being unnamed."""
        if self.text is not None:
            return {self.text: "text"}
        if self.prompt is None:
            return {}
        response = self.response if self.response is not None else "response"
        return {self.prompt: "prompt"} if response == self.prompt else {self.prompt: "prompt", response: "response"}

    def standard_object(self, obj: dict) -> dict:
        """A JSON record with its text under the standard names (and without standard labels when the user's
        own are read)."""
        fields = self.text_fields()
        if not fields and not self.own_labels:
            return obj
        if fields and next(iter(fields)) not in obj:
            name = next(iter(fields))
            raise _Bad(name, "missing", f"Every record needs the text column '{name}' you named.")
        kept = {} if self.own_labels else {k: obj[k] for k in ("is_safe", "category") if k in obj}
        if not fields:
            return {**{k: obj[k] for k in ("prompt", "response", "text") if k in obj}, **kept}
        return {**{standard: obj[name] for name, standard in fields.items() if name in obj}, **kept}

    def label_fields(self) -> tuple[str, ...]:
        """The user's label field(s)."""
        return (self.label,) if self.label is not None else self.labels or ()

    def binary_instead(self, names: Iterable[str]) -> bool:
        """Whether a record or header with fields ``names`` is a binary source: none of the label fields, but
        is_safe (a further source labelled only safe/unsafe; it then teaches the flag head alone)."""
        names = set(names)
        return self.own_labels and "is_safe" in names and not names & set(self.label_fields())

    def object_target(self, obj: dict) -> str | tuple[bool, ...]:
        """The user's label value(s) of a JSON record: a class name, or one flag per boolean column."""
        if self.label is not None:
            return _class_value(obj.get(self.label), self.label, self.label in obj)
        return tuple(_bool_value(obj.get(name), name, name in obj) for name in self.labels)


def _class_value(value: Any, field: str, present: bool) -> str:
    if not present or value is None or (isinstance(value, str) and not value.strip()):
        raise _Bad(field, "missing", "Every training row needs a class in the label column.")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Bad(field, f"expected a class name (string), got {json_type(value)}")
    return str(value).strip()


def _bool_value(value: Any, field: str, present: bool) -> bool:
    flag = _label_flag(value, field) if present else None
    if flag is None:
        raise _Bad(field, "missing", "Every training row needs a value (true/false) in each label column.")
    return flag


def _label_flag(value: Any, field: str, key: str | None = None) -> bool | None:
    """A label flag read by the one rule (:data:`_FLAG_WORDS`), in every format; None when it has no value.

    ``key`` names a flag inside ``field`` (a category of the category object), for the error."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if not word or word in _FLAG_WORDS:
            return _FLAG_WORDS.get(word)
    where = f"key '{key}': " if key is not None else ""
    raise _Bad(field, f"{where}expected {_FLAG_RULE}, got {_describe_value(value)}")


def _describe_value(value: Any) -> str:
    """A short label value as it is, else its type (a long string may be harmful text: only its length)."""
    if isinstance(value, str):
        return _describe_cell(value)
    if isinstance(value, (int, float)) and len(repr(value)) <= 12:
        return f"the number {value!r}"
    return json_type(value)


@dataclass(frozen=True)
class _Source:
    display: str
    path: Path | None  # None means stdin
    fmt: str | None  # None means peek at the content
    compression: str | None
    columns: Columns | None = None  # the user's field names (None: the standard ones)
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    def error(self, line: int | None, bad: _Bad, element: int | None = None) -> DataError:
        return DataError(self.display, line, self.users_field(bad.field), bad.message, bad.hint, element)

    def users_field(self, field: str | None) -> str | None:
        """A standard text field's name as the user's file spells it (``--text-column comment``: 'comment')."""
        if self.columns is None or field is None:
            return field
        return {standard: name for name, standard in self.columns.text_fields().items()}.get(field, field)

    def warning(self, line: int | None, bad: _Bad, element: int | None = None) -> DataWarning:
        return DataWarning(self.display, line, bad.field, bad.message, _IGNORED_HINT, element)

    def fatal(self, message: str, line: int | None = None, field: str | None = None,
              hint: str | None = None) -> DataError:
        return DataError(self.display, line, field, message, hint)


# ----------------------------------------------------------------------------------------------- public API


def read_records(
    path: PathLike,
    *,
    on_error: str = "fail",
    errors: list[DataError] | None = None,
    require: str = "none",
    fmt: str = "auto",
    warnings: list[DataWarning] | None = None,
    columns: Columns | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[Record]:
    """Yield validated records from a file ("-" = stdin), streaming line-based formats.

    ``on_error="fail"`` raises the first bad record; ``"skip"`` appends it to ``errors`` and goes on.
    Whole-file problems (missing file, bad CSV header, no records) raise in both modes.
    ``require``: "text" (scoring: labels are not read, and a malformed one goes to ``warnings``),
    "none" (anything scorable, labels checked), "labels" (is_safe, derived from categories if absent),
    "categories" (the full category object). ``columns`` names the user's own text and label fields (a
    record's ``target`` then holds its label value(s)). Options are checked here, before iteration starts.
    A line longer than ``max_record_bytes`` is a bad record (read in bounded chunks and dropped, never held).
    """
    _check_options(on_error, errors, require, fmt)
    if not (isinstance(max_record_bytes, int) and max_record_bytes >= 1):
        raise ValueError(f"max_record_bytes must be a positive integer, got {max_record_bytes!r}")
    source = dataclasses.replace(_resolve(path, fmt), max_record_bytes=max_record_bytes,
                                 columns=None if columns is None or columns.is_standard else columns)
    return _drive(_items(source, require), source, on_error, errors, warnings)


def load_dataset(
    path: PathLike,
    *,
    on_error: str = "fail",
    errors: list[DataError] | None = None,
    require: str = "labels",
    columns: Columns | None = None,
    labels: LabelSet | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    **column_names: Any,
) -> Dataset:
    """Load a whole file into a :class:`Dataset` (arrays are None when any record lacks those labels).

    Own labels: ``columns`` (a :class:`Columns`) or its fields as keywords (``text_column``, ``prompt_column``,
    ``response_column``, ``label_column``, ``label_columns``, ``safe_class``). The dataset's ``labels`` then
    come from the data (classes sorted by name; boolean columns in the order given), or are ``labels`` when
    given (e.g. a model's, to evaluate it: a class the model does not know is an error on its row).
    Without own labels: the BeaverTails categories, or a binary set (``unsafe`` alone) for is_safe-only data.
    ``group_column`` (``Columns.group``) reads each row's group into ``groups``, for folds that keep a group
    together (:meth:`~lite_moderation.sources.TrainingSet.from_dataset`).
    """
    columns = _columns(columns, column_names)
    errors_before = len(errors) if errors is not None else 0
    pairs: list = []
    prompts: list[str] = []
    lines: list[int] = []
    cats: list[tuple[bool, ...] | None] = []
    safes: list[bool | None] = []
    targets: list = []
    groups: list[str] = []
    unlabelled: Record | None = None  # the first record without the user's label columns
    display = _display(path)
    known = _known_classes(labels, columns)
    first_of_class: dict[str, Record] = {}  # each class name's first record, to say where a near-duplicate is
    for rec in read_records(path, on_error=on_error, errors=errors, require=require, columns=columns,
                            max_record_bytes=max_record_bytes):
        if known is not None and rec.target not in known:
            bad = rec.error(display, columns.label, f"class {_describe_cell(rec.target)} is not one of the "
                            f"model's ({', '.join(map(repr, sorted(known)[:10]))})",
                            f"If it means nothing flagged, pass --safe-class {_describe_cell(rec.target)} (safe_class= "
                            f"in Python); "
                            f"else fix the record or pass --on-error skip." if columns.safe_class is None else _FIX_HINT)
            if on_error == "fail":
                raise bad
            errors.append(bad)
            continue
        pairs.append(rec.pair)
        prompts.append(rec.prompt)
        lines.append(rec.line)
        cats.append(rec.categories)
        safes.append(rec.is_safe)
        targets.append(rec.target)
        groups.append(rec.group)
        if rec.target is None and unlabelled is None:
            unlabelled = rec
        if isinstance(rec.target, str) and rec.target not in first_of_class:
            first_of_class[rec.target] = rec
    if not pairs:
        skipped = skipped_rows(errors[errors_before:]) if errors is not None else 0
        raise DataError(display, message=f"no valid records ({skipped} skipped as bad)")
    grouped = {"groups": groups, "group_column": columns.group} if columns is not None and columns.group else {}
    if columns is not None and columns.own_labels and any(t is not None for t in targets):
        if unlabelled is not None:
            raise unlabelled.error(display, "is_safe", "this row has is_safe but not the label column(s) "
                                   f"{list(columns.label_fields())} other rows have", "Label every row the same way.")
        if columns.label is not None and labels is None:
            _warn_of_cased_classes(first_of_class, columns.label, display)
        try:
            label_set, categories, unsafe = _own_labels(targets, columns, labels, display)
        except ValueError as exc:  # names a label set cannot have (LabelSet's rule), found in the data
            if isinstance(exc, DataError):
                raise
            raise DataError(display, field=",".join(columns.label_fields()), message=str(exc),
                            hint=_LABEL_NAMES_HINT) from None
        return Dataset(pairs, categories, unsafe, lines, prompts, display, label_set, **grouped)
    categories = _category_array(cats)
    label_set = BEAVERTAILS if categories is not None or labels is None else labels
    if categories is None and labels is None and all(c is None for c in cats) and all(s is not None for s in safes):
        label_set = LabelSet(())  # is_safe alone: a binary target
    return Dataset(pairs, categories, _unsafe_array(safes), lines, prompts, display, label_set, **grouped)


_COLUMN_KEYWORDS = {"text_column": "text", "prompt_column": "prompt", "response_column": "response",
                    "label_column": "label", "label_columns": "labels", "safe_class": "safe_class",
                    "group_column": "group"}


def _columns(columns: Columns | None, names: dict[str, Any]) -> Columns | None:
    """``columns``, or one built from ``load_dataset``'s keyword names (unknown keywords are a TypeError)."""
    unknown = sorted(set(names) - set(_COLUMN_KEYWORDS))
    if unknown:
        raise TypeError(f"load_dataset() got unexpected keyword arguments {unknown}; column keywords are "
                        f"{sorted(_COLUMN_KEYWORDS)}")
    given = {_COLUMN_KEYWORDS[k]: v for k, v in names.items() if v is not None}
    if isinstance(given.get("labels"), str):
        given["labels"] = tuple(n.strip() for n in given["labels"].split(","))
    if given and columns is not None:
        raise TypeError("give columns= or column keywords, not both")
    columns = Columns(**given) if given else columns
    return None if columns is None or columns.is_standard else columns


def _warn_of_cased_classes(first_of_class: dict[str, Record], field: str, display: str) -> None:
    """A :class:`ClassNameWarning` naming the class names that differ only by case, each with where it first
    occurs (they stay separate classes: whether "Spam" and "spam" are one is the data's author's to say)."""
    by_folded: dict[str, list[str]] = collections.defaultdict(list)
    for name in first_of_class:
        by_folded[name.casefold()].append(name)
    clashes = [sorted(names, key=lambda n: _record_order(first_of_class[n])) for names in by_folded.values()
               if len(names) > 1]
    if not clashes:
        return
    clashes.sort(key=lambda names: _record_order(first_of_class[names[0]]))

    def where(name: str) -> str:
        return f"{_describe_cell(name)} first at {first_of_class[name].error(display, field, '').location}"

    shown = "; ".join(", ".join(map(where, names)) for names in clashes[:5])
    more = f"; and {len(clashes) - 5} more such groups" if len(clashes) > 5 else ""
    message = str(DataError(
        display, field=field, message=f"class names that differ only by case are separate classes: {shown}{more}",
        hint="If they mean one class, spell it one way in the data (a class name is read as written, only trimmed "
             "of the spaces around it)"))
    warnings.warn(message, ClassNameWarning, stacklevel=3)


def _record_order(record: Record) -> int:
    """Where a record is in its file: its line (a .json array's record: the line it starts on)."""
    return record.start_line if record.start_line is not None else record.line


def _known_classes(labels: LabelSet | None, columns: Columns | None) -> set[str] | None:
    """The classes a class column may hold when the label set is fixed (a model's): its categories and the
    safe class."""
    if labels is None or columns is None or columns.label is None:
        return None
    return {*labels.categories, *([columns.safe_class] if columns.safe_class is not None else [])}


def _own_labels(targets: list, columns: Columns, fixed: LabelSet | None,
                display: str) -> tuple[LabelSet, np.ndarray | None, np.ndarray]:
    """The label set, (n, k) categories (None for a binary target) and (n,) unsafe flags of the user's labels."""
    if columns.label is not None:
        return _class_labels(targets, columns, fixed, display)
    flags = np.array(targets, dtype=bool).reshape(len(targets), len(columns.labels))
    found = label_set_of_columns(columns.labels)  # the rule Python's labels= follows too
    if fixed is not None:
        _check_fixed(fixed, found, columns.labels, display)
    Y = found.matrix(flags, columns.labels)
    return fixed or found, Y[:, :-1] if found.categories else None, Y[:, -1]


def _class_labels(targets: list[str], columns: Columns, fixed: LabelSet | None,
                  display: str) -> tuple[LabelSet, np.ndarray, np.ndarray]:
    """One head per class but the safe one; a row is unsafe when its class is not the safe class."""
    found = sorted(set(targets))
    if columns.safe_class is None:
        raise DataError(display, field=columns.label, message=f"found classes {found[:10]}{' ...' * (len(found) > 10)}"
                        ": name the class that means nothing flagged",
                        hint="Pass --safe-class NAME (safe_class= in Python), e.g. the 'ok' or 'none' class.")
    if fixed is None and columns.safe_class not in found:
        raise DataError(display, field=columns.label, message=f"the safe class {columns.safe_class!r} is not among "
                        f"the classes found ({found[:10]})", hint="Check --safe-class against the label column.")
    flagged_classes = tuple(c for c in found if c != columns.safe_class)
    if fixed is None and flagged_classes == (DEFAULT_FLAG,):  # classes safe/unsafe: a binary target
        return LabelSet(()), None, np.array([t != columns.safe_class for t in targets], dtype=bool)
    label_set = fixed or LabelSet(flagged_classes)
    column_of = {name: j for j, name in enumerate(label_set.categories)}
    categories = np.zeros((len(targets), len(label_set.categories)), bool)
    for i, target in enumerate(targets):
        if target in column_of:
            categories[i, column_of[target]] = True
    return label_set, categories, np.array([t != columns.safe_class for t in targets], dtype=bool)


def _check_fixed(fixed: LabelSet, found: LabelSet, names: tuple[str, ...], display: str) -> None:
    """Refuse label columns that are not a model's (``fixed``): its categories, or its one binary column (is_safe
    alone fits any model: it is read as the flag head)."""
    if found.categories and fixed.categories != found.categories:
        raise DataError(display, message=f"label columns {list(found.categories)} differ from the model's categories "
                        f"{list(fixed.categories)[:10]}", hint="Name the model's label columns, in its order.")
    if not found.categories and IS_SAFE not in names and fixed.names != found.names:
        raise DataError(display, field=names[0], message=f"one label column {names[0]!r}, but the model's labels "
                        f"are {list(fixed.names)[:10]}", hint="Name the model's label columns, in its order "
                        "(lite-moderation info --model DIR lists them).")


def record_from_object(obj: Any, source: str = "<object>", line: int | None = None,
                       require: str = "none") -> Record:
    """Validate one record object (already parsed, e.g. a Dask bag item) exactly as a JSONL line is.

    Raises a DataError naming ``source``, ``line`` and the field, so every input path reports alike.
    """
    try:
        return _record_from_object(obj, require, line or 0)
    except _Bad as bad:
        raise DataError(source, line, bad.field, bad.message, bad.hint) from None


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file, read in chunks so large data files are not loaded whole."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise DataError(str(path), message="no such file") from None
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ options, sources


def _check_options(on_error: str, errors: list | None, require: str, fmt: str) -> None:
    """Reject bad options eagerly, so a typo fails at the call, not at the first record."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if on_error == "skip" and errors is None:
        raise ValueError("on_error='skip' needs an errors list to collect the bad records in")
    if require not in REQUIRE:
        raise ValueError(f"require must be one of {REQUIRE}, got {require!r}")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")


def _display(path: PathLike) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def _resolve(path: PathLike, fmt: str) -> _Source:
    """Work out format and compression from the name; check the file exists before iterating."""
    if str(path) == "-":
        return _Source("<stdin>", None, None if fmt == "auto" else fmt, None)
    p = Path(path)
    if not p.exists():
        raise DataError(str(path), message="no such file")
    if p.is_dir():
        raise DataError(str(path), message="is a directory, not a data file")
    name = p.name.lower()
    compression = next((c for s, c in _COMPRESSIONS.items() if name.endswith(s)), None)
    if compression:
        name = name.rsplit(".", 1)[0]
    guessed = next((f for s, f in _SUFFIX_FORMATS.items() if name.endswith(s)), None)
    return _Source(str(path), p, guessed if fmt == "auto" else fmt, compression)


def _sniff_compression(raw: IO[bytes]) -> str | None:
    """Recognise gzip/xz by magic bytes when the name does not say (stdin, odd suffixes)."""
    peek = getattr(raw, "peek", None)
    head = peek(8)[:8] if peek else b""
    return next((c for magic, c in _MAGIC if head.startswith(magic)), None)


def _check_not_compressed(raw: IO[bytes], source: _Source) -> None:
    """Refuse a stream compressed in a way the reader does not open (:data:`_UNREAD_MAGIC`), naming it and how to
    decompress it, rather than read its bytes as lines of text."""
    peek = getattr(raw, "peek", None)
    head = peek(16)[:16] if peek else b""
    for magic, kind, command in _UNREAD_MAGIC:
        if magic.match(head):
            raise source.fatal(f"the {'input' if source.path is None else 'file'} is {kind}-compressed, which is not "
                               "read: compressed input is read from .gz (gzip) and .xz (xz) files",
                               hint=f"Decompress it first, e.g. {command}, or recompress it with gzip or xz")


@contextlib.contextmanager
def _open_stream(source: _Source) -> Iterator[IO[bytes]]:
    """Open the (possibly compressed) byte stream; never close stdin."""
    with contextlib.ExitStack() as stack:
        if source.path is None:
            raw: IO[bytes] = sys.stdin.buffer
        else:
            try:
                raw = stack.enter_context(open(source.path, "rb"))
            except OSError as exc:
                raise source.fatal(f"cannot open: {exc.strerror or exc}") from None
        compression = source.compression or _sniff_compression(raw)
        if compression is None:
            _check_not_compressed(raw, source)
        if compression == "gzip":
            yield stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        elif compression == "xz":
            yield stack.enter_context(lzma.LZMAFile(raw, "rb"))
        else:
            yield raw


def file_lines(path: PathLike, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes) of a file read as the data readers read one, for the package's readers of
    other line files (``compare``'s predictions): ``.gz`` and ``.xz`` decompressed (told by the name or the first
    bytes), another compression refused with how to decompress it, a UTF-16 file refused with how to convert it, a
    line over ``max_record_bytes`` an :class:`OverlongLine`; a file that is missing or cannot be read is a
    :class:`DataError`."""
    source = replace(_resolve(path, "auto"), max_record_bytes=max_record_bytes)
    with _open_stream(source) as stream:
        yield from _raw_lines(stream, source)


def file_bytes(path: PathLike) -> bytes:
    """The whole of a file read as the data readers read one (decompressed or refused as :func:`file_lines` says),
    for a reader of one JSON document (the guard suite's sets)."""
    source = _resolve(path, "auto")
    with _open_stream(source) as stream:
        try:
            return stream.read()
        except _READ_ERRORS as exc:
            raise source.fatal(f"cannot read the file: {exc}") from None


# ---------------------------------------------------------------------------------------------- iteration


def _drive(items: Iterable[Record | DataError | _Blank], source: _Source, on_error: str,
           errors: list[DataError] | None, warnings: list[DataWarning] | None = None) -> Iterator[Record]:
    """Apply the on_error policy; a run of blank lines is one report; a file with no records at all (good or bad;
    blank lines alone are none) is an error."""
    seen = 0
    blank: list[int] = []  # the first and last line of a run of blank lines not yet reported
    advised = False  # whether a line that is not UTF-8 has had the encoding advice (given once per file)
    for item in items:
        if isinstance(item, _Blank):
            if blank and item.line == blank[1] + 1:
                blank[1] = item.line
                continue
            if blank:
                _settle(_blank_error(source, *blank), on_error, errors)
            blank = [item.line, item.line]
            continue
        if blank and not isinstance(item, DataWarning):
            _settle(_blank_error(source, *blank), on_error, errors)
            blank = []
        if isinstance(item, DataWarning):
            if warnings is not None:
                warnings.append(item)
            continue
        seen += 1
        if isinstance(item, DataError):
            if item.hint == _UTF8_HINT:
                if advised:
                    item = DataError(item.path, item.line, item.field, item.message, None, item.element, item.rows)
                advised = True
            _settle(item, on_error, errors)
            continue
        yield item
    if seen == 0:
        count = blank[1] - blank[0] + 1 if blank else 0
        raise source.fatal("file has no records", hint=f"Apart from {count} blank line{'s' * (count > 1)}, it holds "
                                                       "none." if blank else None)
    if blank:
        _settle(_blank_error(source, *blank), on_error, errors)


def _settle(error: DataError, on_error: str, errors: list[DataError] | None) -> None:
    """Raise a bad row's error (``on_error="fail"``) or keep it in ``errors`` (``"skip"``)."""
    if on_error == "fail":
        raise error
    assert errors is not None  # checked by _check_options
    errors.append(error)


def _blank_error(source: _Source, first: int, last: int) -> DataError:
    """The one report of the blank lines ``first``..``last``."""
    if first == last:
        return DataError(source.display, first, None, "blank line: no record on it", _FIX_HINT)
    return DataError(source.display, first, None, f"blank lines: no record on them (lines {first}-{last}, "
                     f"{last - first + 1} lines)", _FIX_HINT, rows=last - first + 1)


def _items(source: _Source, require: str) -> Iterator[Record | DataError | _Blank]:
    """Records and per-record errors of one source, in file order."""
    with _open_stream(source) as stream:
        if source.fmt == "json" or (source.fmt is None and _starts_a_json_array(stream)):
            yield from _json_items(stream, source, require)
            return
        lines = _raw_lines(stream, source)
        fmt = source.fmt
        if fmt is None:
            fmt, lines = _sniff_format(lines, source.columns)
        if fmt in ("csv", "tsv"):
            yield from _csv_items(lines, source, require, "\t" if fmt == "tsv" else ",")
        elif fmt == "jsonl":
            yield from _jsonl_items(lines, source, require)
        else:
            yield from _text_items(lines, source, require)


_JSON_ARRAY_START = re.compile(rb"\s*\[\s*[{\[\"\]]")


def _starts_a_json_array(stream: IO[bytes]) -> bool:
    """Whether a stream of unknown format (stdin, an unknown suffix) starts a JSON array of records (`jq` output:
    "[" then "{", "[", a string or "]"; a text line such as "[URGENT] call me" stays text), read whole as a .json
    file; peeked, so nothing is consumed."""
    peek = getattr(stream, "peek", None)
    if peek is None:
        return False
    return bool(_JSON_ARRAY_START.match(peek(4096)[:4096].removeprefix(_BOM)))


def _raw_lines(stream: IO[bytes], source: _Source) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes) pairs; a corrupt or truncated stream is a whole-file error.

    A line longer than the record limit comes as an empty :class:`OverlongLine` (its bytes were dropped)."""
    n = 0
    try:
        for raw in bounded_lines(stream, source.max_record_bytes):
            n += 1
            if n == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
                raise source.fatal("the file is UTF-16 (it starts with a UTF-16 byte-order mark); records are read "
                                   "as UTF-8", 1, hint="Convert it first, e.g. iconv -f UTF-16 -t UTF-8 FILE > NEW")
            yield n, raw
    except _READ_ERRORS as exc:
        raise source.fatal(f"cannot read the file: {exc}", line=n + 1) from None


class OverlongLine(bytes):
    """Stands for a line longer than the record limit: empty, with the line's size and the limit."""

    size: int
    limit: int

    @property
    def message(self) -> str:
        return (f"line is longer than the record limit ({self.size} bytes, the limit is {self.limit}); it was "
                f"skipped unread: shorten it or raise --max-record-bytes (max_record_bytes in Python)")


def bounded_lines(stream: IO[bytes], limit: int) -> Iterator[bytes]:
    """The lines of a byte stream, each at most ``limit`` bytes (plus its newline); a longer one is read on
    in bounded chunks, dropped, and stands as an :class:`OverlongLine`, so memory stays bounded by ``limit``."""
    while raw := stream.readline(limit + 1):
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield raw
            continue
        size = len(raw)
        while not raw.endswith(b"\n") and (raw := stream.readline(_DISCARD_CHUNK)):
            size += len(raw)
        overlong = OverlongLine()
        overlong.size, overlong.limit = size, limit
        yield overlong


def _sniff_format(lines: Iterator[tuple[int, bytes]],
                  columns: Columns | None = None) -> tuple[str, Iterator[tuple[int, bytes]]]:
    """Peek at the first non-blank line: "{" means JSONL, a header naming a text column (prompt, text, or the
    one ``columns`` names) split by tabs or commas means TSV or CSV, anything else plain text lines.

    Blank lines before it are kept as runs (first, last line), given back as empty lines: a file of blank lines
    costs no memory, and each is still reported."""
    buffered: list[tuple[int, bytes] | range] = []
    fmt = "text"
    for n, raw in lines:
        head = raw[len(_BOM):] if n == 1 and raw.startswith(_BOM) else raw
        if isinstance(raw, OverlongLine):
            buffered.append((n, raw))  # reported as a bad line; the next line decides the format
        elif not _is_blank(head):
            buffered.append((n, raw))
            fmt = "jsonl" if head.lstrip().startswith(b"{") else _header_format(head.lstrip(), columns)
            break
        elif buffered and isinstance(buffered[-1], range):
            buffered[-1] = range(buffered[-1].start, n + 1)
        else:
            buffered.append(range(n, n + 1))
    return fmt, itertools.chain(_unbuffered(buffered), lines)


def _unbuffered(buffered: list[tuple[int, bytes] | range]) -> Iterator[tuple[int, bytes]]:
    """The lines :func:`_sniff_format` peeked at, its runs of blank lines as empty lines."""
    for entry in buffered:
        if isinstance(entry, range):
            yield from ((n, b"\n") for n in entry)
        else:
            yield entry


#: What a header's other column names look like: no whitespace inside ("text, what a day" is a sentence, not a
#: header with a column "what a day"; a line taken for a header is consumed and the rows after it misread).
_COLUMN_NAME = re.compile(r"[\w.:\-]*")


def _header_format(line: bytes, columns: Columns | None) -> str:
    """"tsv" or "csv" when ``line`` is a header holding a text column among two or more, every other name a column
    name (no whitespace inside, or one ``columns`` names), else "text"."""
    text = line.decode("utf-8", errors="replace").strip()
    delimiter = "\t" if "\t" in text else ","
    names = {name.strip().strip('"').lower() for name in text.split(delimiter)}
    wanted = {"prompt", "text", *(name.lower() for name in (columns.text_fields() if columns else {}))}
    known = wanted | {name.lower() for name in (columns.label_fields() + (columns.id or "", columns.group or "")
                                                if columns else ())}
    if len(names) >= 2 and names & wanted and all(n in known or _COLUMN_NAME.fullmatch(n) for n in names):
        return "tsv" if delimiter == "\t" else "csv"
    named = {name.lower() for name in (columns.text_fields() if columns else {})}
    if len(names) == 1 and names <= named:  # a one-column table whose column the user named
        return "csv"
    return "text"


def _try_decode(raw: bytes, n: int) -> tuple[str, int | None]:
    """Strict UTF-8 for one line (a BOM is allowed on line 1): (text, None) or (lossy text, byte offset)."""
    skip = len(_BOM) if n == 1 and raw.startswith(_BOM) else 0
    try:
        return raw[skip:].decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return raw[skip:].decode("utf-8", errors="replace"), exc.start + skip


def _decode(raw: bytes, n: int) -> str:
    if isinstance(raw, OverlongLine):
        raise _Bad(None, raw.message)
    text, offset = _try_decode(raw, n)
    if offset is not None:
        raise _not_utf8(offset)
    return text


def _not_utf8(offset: int) -> _Bad:
    """A line that is not UTF-8, and how to convert a file in another encoding (given once per file: :func:`_drive`)."""
    return _Bad(None, f"not valid UTF-8 (byte offset {offset})", _UTF8_HINT)


def not_utf8_error(path: PathLike, raw: bytes, offset: int, line: int = 1) -> DataError:
    """The error of bytes that are not UTF-8 at ``offset`` into ``raw`` (one line, or a whole file read at once,
    starting on ``line``), in the words of every reader (:func:`_not_utf8`: the data files, ``compare``'s predictions,
    the guard suite's sets): the line the byte is on, its byte offset in that line, and how to convert a file in
    another encoding."""
    start = raw.rfind(b"\n", 0, offset) + 1
    bad = _not_utf8(offset - start)
    return DataError(str(path), line + raw.count(b"\n", 0, start), None, bad.message, bad.hint)


def _strip_newline(text: str) -> str:
    return text.removesuffix("\n").removesuffix("\r")


def _jsonl_items(lines: Iterable[tuple[int, bytes]], source: _Source,
                 require: str) -> Iterator[Record | DataError | _Blank]:
    for n, raw in lines:
        try:
            text = _decode(raw, n)
            if _is_blank(text):
                yield _Blank(n)
                continue
            notes: list[_Bad] = []
            record = _record_from_object(_parse_json(text), require, n, notes, source.columns)
            yield from (source.warning(n, note) for note in notes)
            yield record
        except _Bad as bad:
            yield source.error(n, bad)


def _text_items(lines: Iterable[tuple[int, bytes]], source: _Source,
                require: str) -> Iterator[Record | DataError | _Blank]:
    if source.columns is not None:
        raise source.fatal("plain text lines have no named fields for the column options",
                           hint="Use a CSV file with a header, or JSONL records.")
    for n, raw in lines:
        try:
            text = _strip_newline(_decode(raw, n))
            if _is_blank(text):
                yield _Blank(n)
                continue
            yield _finish(text, None, "text", None, None, require, n)
        except _Bad as bad:
            yield source.error(n, bad)


def _json_items(stream: IO[bytes], source: _Source, require: str) -> Iterator[Record | DataError]:
    """A .json file holds one list of record objects; it is loaded whole. A record's ``line`` is its element
    number (output rows stay aligned however the file is laid out); its errors name the element and the line it
    starts on."""
    limit = JSON_FILE_RECORDS * source.max_record_bytes
    try:
        data = stream.read(limit + 1)
    except _READ_ERRORS as exc:
        raise source.fatal(f"cannot read the file: {exc}") from None
    if len(data) > limit:
        raise source.fatal(f"a .json file is parsed whole, and this one is over {limit} bytes",
                           hint="Write one record per line (a .jsonl file), or raise --max-record-bytes.")
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8_error(source.display, data, exc.start + skip) from None
    if not text.strip():
        return
    try:
        elements = parse_json_array(text)
        value = parse_json_text(text) if elements is None else None
    except json.JSONDecodeError as exc:
        hint = "One JSON object per line? That is JSONL: name the file .jsonl." if exc.msg == "Extra data" else None
        raise source.fatal(f"not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})", hint=hint) from None
    except ValueError as exc:
        raise source.fatal(f"not valid JSON: {exc}") from None
    if elements is None:
        raise source.fatal(f"expected a JSON list of records, got {json_type(value)}",
                           hint="For one record per line use a .jsonl file.")
    for i, (start, obj) in enumerate(elements, 1):
        try:
            notes: list[_Bad] = []
            record = replace(_record_from_object(obj, require, i, notes, source.columns), start_line=start)
            yield from (source.warning(start, note, i) for note in notes)
            yield record
        except _Bad as bad:
            yield source.error(start, bad, i)


# -------------------------------------------------------------------------------------------- validation


def json_type(value: Any) -> str:
    """JSON's name for a value's type (bool before int: bool is an int subclass)."""
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "number"
    names = {str: "string", list: "array", dict: "object"}
    return next((name for t, name in names.items() if isinstance(value, t)), type(value).__name__)


def parse_json_text(text: str | bytes) -> Any:
    """``json.loads`` for untrusted text: every way it can fail is a ValueError (a JSONDecodeError for bad
    syntax), never a RecursionError, so one hostile row or body cannot crash a reader or a server.

    Caught: nesting deeper than the interpreter's stack ("nested too deeply") and integers longer than
    Python's int-string limit (its advice on ``sys.set_int_max_str_digits`` is for operators, not users).
    """
    with _untrusted_json():
        return json.loads(text)


@contextlib.contextmanager
def _untrusted_json() -> Iterator[None]:
    """:func:`parse_json_text`'s errors: a JSONDecodeError as it is, any other failure a plain ValueError."""
    try:
        yield
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:
        raise ValueError(str(exc).split(";")[0]) from None


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def parse_json_array(text: str) -> list[tuple[int, Any]] | None:
    """(line it starts on, value) of each element of a JSON array, or None when ``text`` is not an array.

    Why not ``json.loads``: it drops where each element was, and an error on a record should name the line a user
    can open. Parsed element by element with the C decoder (``raw_decode``), lines counted once over the text; bad
    syntax raises as :func:`parse_json_text` does, with json's own message and position.
    """
    decoder, at = json.JSONDecoder(), _JSON_SPACE.match(text).end()
    if not text.startswith("[", at):
        return None
    elements: list[tuple[int, Any]] = []
    line, counted = 1, 0
    at = _JSON_SPACE.match(text, at + 1).end()
    if text.startswith("]", at):
        at += 1
    else:
        with _untrusted_json():
            while True:
                line, counted = line + text.count("\n", counted, at), at
                value, at = decoder.raw_decode(text, at)
                elements.append((line, value))
                at = _JSON_SPACE.match(text, at).end()
                if text.startswith("]", at):
                    at += 1
                    break
                if not text.startswith(",", at):
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, at)
                at = _JSON_SPACE.match(text, at + 1).end()
    at = _JSON_SPACE.match(text, at).end()
    if at != len(text):
        raise json.JSONDecodeError("Extra data", text, at)
    return elements


def _parse_json(text: str) -> Any:
    try:
        return parse_json_text(text)
    except json.JSONDecodeError as exc:
        raise _Bad(None, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:
        raise _Bad(None, f"not valid JSON: {exc}") from None


def _string(value: Any, field: str) -> str:
    """A text field must be a str that can be encoded again (no lone surrogates from \\ud800 escapes)."""
    if not isinstance(value, str):
        raise _Bad(field, f"expected a string, got {json_type(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Bad(field, f"contains an unpaired surrogate escape at character {exc.start}") from None
    return value


def _name_keys(keys: list[str], limit: int = 3) -> str:
    """At most ``limit`` keys, quoted and shortened (keys may come from untrusted data)."""
    shown = ", ".join(repr(k if len(k) <= 60 else k[:57] + "...") for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _categories(value: Any) -> tuple[bool, ...]:
    """The BeaverTails category object: exactly the 14 keys, each true/false, in taxonomy order."""
    if isinstance(value, dict) and value.keys() == _CATEGORY_SET:  # the common case, checked fast
        flags = tuple(map(value.__getitem__, CATEGORIES))
        if all(flag is True or flag is False for flag in flags):
            return flags
    if not isinstance(value, dict):
        raise _Bad("category", f"expected an object of 14 true/false flags, got {json_type(value)}")
    unknown = [str(k) for k in value if k not in _CATEGORY_SET]
    missing = [k for k in CATEGORIES if k not in value]
    problems = []
    if unknown:
        problems.append(f"unknown key{'s' * (len(unknown) > 1)} {_name_keys(unknown)}")
    if missing:
        problems.append(f"missing key{'s' * (len(missing) > 1)} {_name_keys(missing)}")
    if problems:
        raise _Bad("category", "; ".join(problems), _KEYS_HINT)
    flags = tuple(_label_flag(value[key], "category", key) for key in CATEGORIES)
    empty = next((key for key, flag in zip(CATEGORIES, flags) if flag is None), None)
    if empty is not None:
        raise _Bad("category", f"key '{empty}': no value (null or empty): give every category {_FLAG_RULE}")
    return flags


def _record_from_object(obj: Any, require: str, line: int, notes: list[_Bad] | None = None,
                        columns: Columns | None = None) -> Record:
    """Validate one JSON record, its fields named by ``columns`` (the standard names when None), with its id."""
    record = _mapped_record(obj, require, line, notes, columns)
    if columns is not None and columns.group is not None:
        record = replace(record, group=_group_value(obj.get(columns.group), columns.group, columns.group in obj))
    id_field = columns.id if columns is not None and columns.id is not None else "id"
    if id_field in obj or id_field != "id":
        return replace(record, id=_id_value(obj.get(id_field), id_field, id_field in obj))
    return record


def _group_value(value: Any, field: str, present: bool) -> str:
    """A group is a non-empty string or a whole number (compared as text: 7 and "7" are one group)."""
    if not present or value is None or (isinstance(value, str) and not value.strip()):
        raise _Bad(field, "missing", f"Every record needs a value in the group column '{field}' you named "
                                     "(group= of its --data).")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Bad(field, f"expected a group name (string) or a whole number, got {json_type(value)}")
    return _string(value, field) if isinstance(value, str) else str(value)


def _id_value(value: Any, field: str, present: bool) -> str | int | None:
    """An id is a string or a whole number (kept as it is, so output rows join back to the input).

    Null, "" or a string of whitespace alone is no id, in every format (an empty CSV cell is "", read here too:
    :func:`_csv_record`): the row is scored as one without the field, and its output row has no id (no "id" key; an
    empty cell in CSV output). Why: a CSV id column with gaps was read, and the same rows as JSONL (pandas writes a
    gap as null) were refused; a cell of spaces is a gap as an empty one is, as it is for a label, a class or a group
    in this module, and kept it would be an id that a CSV output cell shows as empty and no one can tell apart. An
    id with other characters is kept as it is, its spaces included."""
    if not present:
        raise _Bad(field, "missing", f"Every record needs the id field '{field}' you named.")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Bad(field, f"expected a string or whole-number id, got {json_type(value)}")
    return _string(value, field) if isinstance(value, str) else value


def _mapped_record(obj: Any, require: str, line: int, notes: list[_Bad] | None,
                   columns: Columns | None) -> Record:
    if columns is None:
        return _standard_record(obj, require, line, notes)
    if not isinstance(obj, dict):
        raise _Bad(None, f"expected a JSON object, got {json_type(obj)}")
    if columns.binary_instead(obj):  # is_safe alone: read as the standard label
        return _standard_record({**columns.standard_object(obj), "is_safe": obj["is_safe"]}, require, line, notes)
    target = columns.object_target(obj) if columns.own_labels and require != "text" else None
    record = _standard_record(columns.standard_object(obj), "none" if columns.own_labels else require, line, notes)
    return replace(record, target=target)


def _standard_record(obj: Any, require: str, line: int, notes: list[_Bad] | None = None) -> Record:
    """Validate one JSON record: {"prompt", "response"?, "category"?, "is_safe"?} or {"text"}.

    With ``require="text"`` the labels are not kept, and a malformed one is appended to ``notes``.
    """
    if not isinstance(obj, dict):
        raise _Bad(None, f"expected a JSON object, got {json_type(obj)}")
    if "prompt" in obj:
        text_field, prompt = "prompt", _string(obj["prompt"], "prompt")
        response = obj.get("response")
        response = None if response is None else _string(response, "response")
    elif "text" in obj:
        text_field, prompt, response = "text", _string(obj["text"], "text"), None
    else:
        found = _name_keys([str(k) for k in obj], 6) if obj else "no fields"
        raise _Bad("prompt", f"missing: a record needs 'prompt' (with an optional 'response') or 'text'; it has "
                             f"{found}", "Name the text field with --text-column (or --prompt-column).")
    if require == "text":
        _note_label_problems(lambda: _object_labels(obj), notes)
        return _finish(prompt, response, text_field, None, None, require, line)
    return _finish(prompt, response, text_field, *_object_labels(obj), require, line)


def _object_labels(obj: dict) -> tuple[tuple[bool, ...] | None, bool | None]:
    """(categories, is_safe) of a JSON record, each None when absent."""
    raw_categories = obj.get("category")
    categories = None if raw_categories is None else _categories(raw_categories)
    return categories, _label_flag(obj.get("is_safe"), "is_safe")


def _note_label_problems(read_labels: Any, notes: list[_Bad] | None) -> None:
    """Scoring ignores labels, but says when one is malformed or inconsistent."""
    try:
        _check_consistent(*read_labels())
    except _Bad as bad:
        if notes is not None:
            notes.append(bad)


def _check_consistent(categories: tuple[bool, ...] | None, is_safe: bool | None) -> None:
    if is_safe is True and categories is not None and any(categories):
        flagged = [key for key, flag in zip(CATEGORIES, categories) if flag]
        raise _Bad("is_safe", f"is true but category {_name_keys(flagged)} is flagged (unsafe)")


def _finish(prompt: str, response: str | None, text_field: str, categories: tuple[bool, ...] | None,
            is_safe: bool | None, require: str, line: int) -> Record:
    """Checks shared by every format: non-empty text, consistent labels, and what ``require`` asks for."""
    if response is None and not prompt.strip():
        raise _Bad(text_field, "text is empty")
    if response is not None and not prompt.strip() and not response.strip():
        raise _Bad("prompt", "prompt and response are both empty")
    _check_consistent(categories, is_safe)
    if require == "categories" and categories is None:
        raise _Bad("category", "missing", _CATEGORIES_HINT)
    if require in ("labels", "categories") and is_safe is None:
        if categories is None:
            raise _Bad("is_safe", "missing", _LABELS_HINT)
        is_safe = not any(categories)
    if response is None and text_field == "prompt":
        response = ""  # a prompt without a response is a prompt alone (a user message), not a text alone
    return Record(prompt, response, categories, is_safe, line)


# ----------------------------------------------------------------------------------------------------- CSV


@dataclass(frozen=True)
class _CsvColumns:
    """Column indices of a CSV header (None = absent)."""

    text: int
    text_field: str
    response: int | None
    is_safe: int | None
    category_json: int | None
    category_cols: tuple[int, ...] | None
    width: int
    target: tuple[int, ...] | None = None  # the user's label column(s) (see Columns)
    target_names: tuple[str, ...] = ()
    target_is_class: bool = False
    id: int | None = None  # the id column (Columns.id, default "id" when the header has it), named ``id_name``
    id_name: str = ""
    group: int | None = None  # the group column (Columns.group), named ``group_name``
    group_name: str = ""


def _set_csv_field_limit(limit: int) -> None:
    """csv's default 128 KiB field limit would reject long responses (1 MB records must load); the record
    limit bounds a field instead (an unclosed quote would otherwise swallow the rest of the file)."""
    csv.field_size_limit(limit)


def _csv_text(lines: Iterable[tuple[int, bytes]], bad: dict[int, _Bad]) -> Iterator[tuple[int, str]]:
    """(line, decoded text) for csv.reader; undecodable or overlong lines are noted in ``bad`` (line -> problem)."""
    for n, raw in lines:
        if isinstance(raw, OverlongLine):
            bad[n] = _Bad(None, raw.message)
            yield n, "-\n"  # a stand-in row, so the dropped line is reported, never lost as a blank one
            continue
        text, offset = _try_decode(raw, n)
        if offset is not None:
            bad[n] = _not_utf8(offset)
        yield n, text


class _CsvLines:
    """The lines csv.reader reads, each row's kept until the next row starts (``taken``).

    Why: a malformed row (an unclosed quote, a stray carriage return) would otherwise swallow the rows after it
    or stop the file; its lines after the first are put back (:meth:`resume_after_first`) and a new reader
    goes on from there, so only that row is lost, and reported. What is kept is bounded by the record limit
    (csv's field limit).
    """

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self.lines = lines
        self.put_back: collections.deque[tuple[int, str]] = collections.deque()
        self.taken: list[tuple[int, str]] = []

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        item = self.put_back.popleft() if self.put_back else next(self.lines)
        self.taken.append(item)
        return item[1]

    def next_row(self) -> None:
        self.taken = []

    def resume_after_first(self) -> None:
        """Read the current row's lines again from its second, as new rows."""
        self.put_back.extendleft(reversed(self.taken[1:]))
        self.taken = []


def _column_label(name: str) -> str:
    return repr(name) if len(name) <= 40 else f"<a {len(name)}-character name>"


def _mapped_header(names: list[str], columns: Columns | None) -> list[str]:
    """Header names with the user's text columns under the standard names (a standard-named column that is not
    the one chosen is hidden), and the standard label columns hidden when the user's own labels are read."""
    if columns is None:
        return names
    fields = columns.text_fields()
    # a named text column hides every standard text column (a "prompt" column must not win over it)
    hidden = ({"prompt", "response", "text"} if fields else set()) \
        | ({"is_safe", "category", *CATEGORIES} if columns.own_labels else set())
    return [fields.get(n) or ("\0" + n if n in hidden else n) for n in names]


def _csv_target(names: list[str], columns: Columns | None, missing: Any) -> dict:
    """_CsvColumns fields of the user's label column(s); a missing one is a whole-file error."""
    if columns is None or not columns.own_labels:
        return {}
    wanted = (columns.label,) if columns.label is not None else columns.labels
    index = {name: i for i, name in reversed(list(enumerate(names)))}
    absent = [n for n in wanted if n not in index]
    if absent:
        raise missing(absent[0], f"{_name_keys(absent)} (named as a label column)",
                      "--label-column" if columns.label is not None else "--label-columns")
    return {"target": tuple(index[n] for n in wanted), "target_names": tuple(wanted),
            "target_is_class": columns.label is not None}


def _csv_columns(header: list[str], source: _Source, require: str, line: int) -> _CsvColumns:
    """Map header names to indices; missing needed columns is a whole-file error."""
    raw_names = [h.strip() for h in header]
    columns = source.columns
    if columns is not None and columns.binary_instead(raw_names):  # is_safe alone: the standard label
        columns = replace(columns, label=None, labels=None, safe_class=None)
        source = replace(source, columns=columns)
    names = _mapped_header(raw_names, columns)
    own = columns is not None and columns.own_labels
    require = "none" if own else require
    index = {name: i for i, name in reversed(list(enumerate(names)))}
    found = ", ".join(_column_label(n) for n in raw_names[:20]) + (" ..." if len(raw_names) > 20 else "")

    def missing(field: str, what: str, option: str | None = None, without: str = "") -> DataError:
        """``option``: the option that named the missing column. Its hint is not the header's layout (the file has
        a header, without that column) but the option's rule, and what leaving it out does (``without``)."""
        several = option == "--label-columns"
        hint = _CSV_COLUMNS_HINT if option is None else \
            f"{option} names {'columns' if several else 'a column'} of the header as spelled there (case " \
            f"included): give it {'columns' if several else 'one'} of those found{without}."
        return source.fatal(f"missing column {what}; found columns: {found}", line, field, hint)

    for name in {"prompt", "response", "text", "is_safe", "category", *CATEGORIES} & set(names):
        if names.count(name) > 1:  # which one holds the data? csv would silently read the first
            columns_at = [str(i + 1) for i, n in enumerate(names) if n == name]
            raise source.fatal(f"the header names column {_column_label(raw_names[names.index(name)])} "
                               f"{len(columns_at)} times (columns {', '.join(columns_at[:5])})", line,
                               hint="Rename or drop the extra columns, or name the one to read (--text-column...).")
    text_field = "prompt" if "prompt" in index else "text" if "text" in index else None
    if text_field is None:
        named = source.columns.text_fields() if source.columns is not None else {}
        if named:  # the text or prompt column (first): the response column is not needed (a prompt alone is read)
            name = next(iter(named))
            raise missing(name, f"{_column_label(name)} (named as the text column)",
                          "--text-column" if source.columns.text is not None else "--prompt-column")
        raise missing("prompt", "'prompt' (or 'text'); name another with --text-column or --prompt-column")
    target = _csv_target(raw_names, source.columns, missing)
    id_name = columns.id if columns is not None and columns.id is not None else "id"
    if id_name in raw_names:
        target.update(id=raw_names.index(id_name), id_name=id_name)
    elif id_name != "id":
        raise missing(id_name, f"{_column_label(id_name)} (named as the id column)", "--id-column",
                      ", or leave it out (an 'id' column is then read when there is one)")
    if columns is not None and columns.group is not None:
        if columns.group not in raw_names:
            raise missing(columns.group, f"{_column_label(columns.group)} (named as the group column: group= of "
                                         "its --data)", "group= of --data", ", or leave it out (rows are then "
                                         "grouped by their prompt)")
        target.update(group=raw_names.index(columns.group), group_name=columns.group)
    category_cols = None
    if "category" not in index:
        present = [k for k in CATEGORIES if k in index]
        absent = [k for k in CATEGORIES if k not in index]
        if present and absent:
            raise missing("category", f"{'s' * (len(absent) > 1)} {_name_keys(absent)}".lstrip())
        category_cols = tuple(index[k] for k in CATEGORIES) if present else None
    has_categories = "category" in index or category_cols is not None
    if require == "categories" and not has_categories:
        raise missing("category", "'category' (or the 14 category key columns)")
    if require == "labels" and not has_categories and "is_safe" not in index:
        raise missing("is_safe", "'is_safe' (or category columns)")
    return _CsvColumns(index[text_field], text_field, index.get("response") if text_field == "prompt" else None,
                       index.get("is_safe"), index.get("category"), category_cols, len(names), **target)


def _describe_cell(cell: str) -> str:
    """Show a short cell value, but only the length of a long one (it may be harmful text)."""
    value = cell.strip()
    return repr(value) if len(value) <= 12 else f"{len(value)} characters of text"


def _csv_categories(row: list[str], cols: _CsvColumns) -> tuple[bool, ...] | None:
    """Categories from a JSON `category` cell or from 14 columns; all-empty means absent."""
    if cols.category_json is not None:
        cell = row[cols.category_json].strip()
        if not cell:
            return None
        try:
            return _categories(parse_json_text(cell))
        except json.JSONDecodeError as exc:
            raise _Bad("category", f"not valid JSON: {exc.msg} (column {exc.colno})") from None
        except ValueError as exc:
            raise _Bad("category", f"not valid JSON: {exc}") from None
    if cols.category_cols is None:
        return None
    flags = [_label_flag(row[i], key) for i, key in zip(cols.category_cols, CATEGORIES)]
    if all(flag is None for flag in flags):
        return None
    empty = next((key for key, flag in zip(CATEGORIES, flags) if flag is None), None)
    if empty is not None:
        raise _Bad(empty, "empty cell: fill all 14 category columns or leave them all empty")
    return tuple(bool(flag) for flag in flags)


def _csv_record(row: list[str], cols: _CsvColumns, require: str, line: int, notes: list[_Bad] | None = None) -> Record:
    record = _csv_record_fields(row, cols, require, line, notes)
    if cols.group is not None:
        record = replace(record, group=_group_value(row[cols.group].strip(), cols.group_name, True))
    return record if cols.id is None else replace(record, id=_id_value(row[cols.id], cols.id_name, True))


def _csv_record_fields(row: list[str], cols: _CsvColumns, require: str, line: int,
                       notes: list[_Bad] | None = None) -> Record:
    if len(row) != cols.width:
        raise _Bad(None, f"row has {len(row)} fields but the header has {cols.width} columns")
    response = None if cols.response is None else row[cols.response]
    if cols.target is not None and require != "text":
        record = _finish(row[cols.text], response, cols.text_field, None, None, "none", line)
        return replace(record, target=_csv_target_value(row, cols))
    if require == "text":
        _note_label_problems(lambda: _csv_labels(row, cols), notes)
        return _finish(row[cols.text], response, cols.text_field, None, None, require, line)
    return _finish(row[cols.text], response, cols.text_field, *_csv_labels(row, cols), require, line)


def _csv_target_value(row: list[str], cols: _CsvColumns) -> str | tuple[bool, ...]:
    """The user's label value(s) of a CSV row: a class name, or one flag per boolean column."""
    if cols.target_is_class:
        return _class_value(row[cols.target[0]], cols.target_names[0], True)
    flags = []
    for i, name in zip(cols.target, cols.target_names):
        flag = _label_flag(row[i], name)
        if flag is None:
            raise _Bad(name, "missing", "Every training row needs a value (true/false) in each label column.")
        flags.append(flag)
    return tuple(flags)


def _csv_labels(row: list[str], cols: _CsvColumns) -> tuple[tuple[bool, ...] | None, bool | None]:
    is_safe = None if cols.is_safe is None else _label_flag(row[cols.is_safe], "is_safe")
    return _csv_categories(row, cols), is_safe


def _csv_items(lines: Iterable[tuple[int, bytes]], source: _Source,
               require: str, delimiter: str = ",") -> Iterator[Record | DataError | _Blank]:
    """CSV (or TSV) rows as records; a record's line is the physical line its row starts on (header = 1)."""
    _set_csv_field_limit(source.max_record_bytes)
    bad: dict[int, _Bad] = {}
    rows = _csv_rows(_CsvLines(_csv_text(lines, bad)), source, delimiter)
    header = next(rows, None)
    while header is not None and isinstance(header[2], _Blank):  # blank lines before the header
        yield header[2]
        header = next(rows, None)
    if header is None:
        return
    header_start, _, header_row = header
    if isinstance(header_row, _Bad):
        raise source.fatal(f"header: {header_row.message}", header_start)
    if bad:
        line = min(bad)
        raise source.fatal(f"header: {bad[line].message}", line, hint=bad[line].hint if bad[line].hint != _FIX_HINT
                           else None)
    cols = _csv_columns(header_row, source, require, header_start)
    for start, row_lines, row in rows:
        if isinstance(row, _Blank):
            yield row
            continue
        lines_bad = [n for n in row_lines if n in bad]
        try:
            if isinstance(row, _Bad):
                raise row
            if lines_bad:
                raise bad[lines_bad[0]]
            notes: list[_Bad] = []
            record = _csv_record(row, cols, require, start, notes)
            yield from (source.warning(start, note) for note in notes)
            yield record
        except _Bad as problem:
            yield source.error(lines_bad[0] if lines_bad and not isinstance(row, _Bad) else start, problem)
        for n in lines_bad:
            del bad[n]


#: TSV has no quoting (the IANA text/tab-separated-values rule, as cut and awk read it): a cell is every character
#: between two tabs, quotes included, and a row is one line. Why: a message that starts with a quoted word
#: (``"quoted" start``) is ordinary text in a TSV file, and CSV's quoting refused it, or read a quote opened in one
#: row as running on over the next rows, swallowing them.
_TSV_QUOTING = csv.QUOTE_NONE


def _csv_reader(lines: _CsvLines, delimiter: str) -> Iterator[list[str]]:
    """csv's reader of CSV (quoted cells, in strict mode) or of TSV (no quoting: :data:`_TSV_QUOTING`)."""
    quoting = _TSV_QUOTING if delimiter == "\t" else csv.QUOTE_MINIMAL
    return csv.reader(lines, delimiter=delimiter, quoting=quoting, strict=True)


def _csv_rows(lines: _CsvLines, source: _Source,
              delimiter: str) -> Iterator[tuple[int, list[int], list[str] | _Bad | _Blank]]:
    """Rows: the line each starts on, its lines, and its cells, a _Blank for a blank line (a row of empty cells,
    such as ",", is a row: its text is empty), or a _Bad for a row csv cannot read
    (an unclosed quote, a quoted cell followed by more than a delimiter, a stray carriage return, a field over
    the record limit): that row is dropped and reading resumes on the line after its first. TSV (``delimiter``
    a tab) has no quoting: its rows are lines, and a quote is text.

    Why csv's strict mode: its lenient one reads ``"first`` up to the next row's opening quote and on past it
    (``first\n2,second row"``), so an unclosed quote silently swallowed the row after it."""
    reader = _csv_reader(lines, delimiter)
    while True:
        lines.next_row()
        try:
            row: list[str] | _Bad = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row = _csv_bad_row(exc, [n for n, _ in lines.taken], source.max_record_bytes, delimiter)
        if not lines.taken:  # csv's error came before it read a line: nothing more to read
            return
        numbers = [n for n, _ in lines.taken]
        if isinstance(row, _Bad):
            yield numbers[0], numbers[:1], row
            lines.resume_after_first()
            reader = _csv_reader(lines, delimiter)
        elif len(lines.taken) == 1 and _is_blank(lines.taken[0][1]):
            yield numbers[0], numbers, _Blank(numbers[0])
        else:
            yield numbers[0], numbers, row


def _csv_bad_row(exc: csv.Error, numbers: list[int], limit: int, delimiter: str = ",") -> _Bad:
    """What is wrong with a row csv could not read (read over the lines ``numbers``), and how to fix it."""
    message = str(exc).split(" - ")[0]  # without csv's advice to programmers (universal-newline mode)
    kind = "TSV" if delimiter == "\t" else "CSV"
    if "field larger than field limit" in message:
        if kind == "TSV":  # no quoting: no quote is ever left open
            return _Bad(None, f"longer than the record limit ({limit} bytes)")
        return _Bad(None, f"longer than the record limit ({limit} bytes), or a quote opened here is never closed",
                    _QUOTE_HINT)
    if "unexpected end of data" in message:
        return _Bad(None, "a quote (\") opened here is never closed: the row runs to the end of the file", _QUOTE_HINT)
    if "expected after" in message and len(numbers) > 1:
        return _Bad(None, f"a quote (\") opened here runs on to line {numbers[-1]}, where a quote is followed by "
                          "more than a delimiter: most likely this quote is never closed", _QUOTE_HINT)
    if "expected after" in message:
        return _Bad(None, "a quoted cell's closing quote (\") is followed by more than a delimiter", _QUOTE_HINT)
    if "new-line character seen in unquoted field" in message:
        return _Bad(None, f"not valid {kind}: a carriage return (CR) inside an unquoted cell")
    return _Bad(None, f"not valid {kind}: {message}")


# ------------------------------------------------------------------------------------------------- arrays


def _category_array(cats: list[tuple[bool, ...] | None]) -> np.ndarray | None:
    if any(c is None for c in cats):
        return None
    return np.array(cats, dtype=bool).reshape(len(cats), len(CATEGORIES))


def _unsafe_array(safes: list[bool | None]) -> np.ndarray | None:
    if any(s is None for s in safes):
        return None
    return ~np.array(safes, dtype=bool)
