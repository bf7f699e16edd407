"""Structure checks of model files, so a damaged or hostile model fails with one line naming the file.

A checksum only proves a file is the one ``model.json`` lists; these checks prove the content is usable:
JSON of the expected shape, arrays whose shapes agree with the metadata and vocabulary, and sizes
checked before anything is allocated. Every failure is a :class:`ModelFormatError`.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .labels import IS_SAFE, check_label_names
from .normalize import NORMALIZATIONS
from .texts import FIELDS, MAX_NGRAM, char_weights, field_caps, nb_powers, ngram_range

__all__ = ["DAMAGED_ADVICE", "MAX_FILE_BYTES", "ModelFormatError", "check_classifier_param", "check_metadata",
           "check_vocabulary", "damaged", "load_arrays", "parse_json"]

#: The largest vocabulary or array file a model may have (the shipped ones are under 16 MB): a bigger file, or a
#: bigger declared size, is refused before anything is read, so a hostile model cannot exhaust memory.
MAX_FILE_BYTES = 2 << 30

#: An array member may inflate to at most this many times its compressed size (weights barely compress).
_MAX_INFLATION = 100
_SMALL_MEMBER = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_VECTORIZER_DTYPES = ("float32", "float64")


class ModelFormatError(ValueError):
    """A model directory that is missing, damaged, or from an unsupported format version."""


#: What to do about a damaged model file: every such error ends so (:func:`damaged`, the one place that adds it).
DAMAGED_ADVICE = "the model is damaged: retrain or reinstall it"


def damaged(where: object, problem: str) -> ModelFormatError:
    """The error of a model file (or directory) ``where`` whose content is damaged: ``problem``, then the advice."""
    return ModelFormatError(f"{where}: {problem}; {DAMAGED_ADVICE}")


def parse_json(data: bytes, path: Path) -> Any:
    """JSON of a model file; corrupt, non-UTF-8 or too deeply nested content is a ModelFormatError."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise damaged(path, f"truncated or corrupt ({exc})") from None
    except RecursionError:
        raise damaged(path, "corrupt (JSON nested too deeply)") from None


def _fail(path: Path, key: str, problem: str) -> ModelFormatError:
    return damaged(path, f"'{key}' {problem}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    names = {type(None): "null", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _is_probability(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


_WHAT = {list: "an array", dict: "an object", bool: "true or false", (int, float): "a number"}


def _get(obj: dict, key: str, expected: type | tuple, path: Path, where: str = "") -> Any:
    """``obj[key]``, which must exist and be of type ``expected`` (a bool is never a number)."""
    name = f"{where}{key}"
    if key not in obj:
        raise _fail(path, name, "is missing")
    value = obj[key]
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        raise _fail(path, name, f"must be {_WHAT[expected]}, got {_kind(value)}")
    return value


def check_metadata(metadata: dict, path: Path, file_names: tuple[str, ...]) -> None:
    """Types and ranges of every ``model.json`` field a loader reads."""
    labels = _get(metadata, "labels", list, path)
    problem = check_label_names(labels) if labels else "must name at least the flag head"
    if problem:
        raise _fail(path, "labels", problem)
    descriptions = metadata.get("label_descriptions", {})
    if not isinstance(descriptions, dict) or not all(k in labels and isinstance(v, str) for k, v in descriptions.items()):
        raise _fail(path, "label_descriptions", "must map label names to strings")
    n_labels = len(labels)
    thresholds = _get(metadata, "thresholds", list, path)
    if len(thresholds) != n_labels or not all(map(_is_probability, thresholds)):
        raise _fail(path, "thresholds", f"must be {n_labels} probabilities between 0 and 1 (one per label)")
    points = metadata.get("operating_points", {})
    if not isinstance(points, dict) or not all(isinstance(k, str) and _is_probability(v) for k, v in points.items()):
        raise _fail(path, "operating_points", "must map names to probabilities between 0 and 1")
    message = metadata.get("message_cut_offs", {"thresholds": thresholds, "operating_points": points})
    if not isinstance(message, dict):
        raise _fail(path, "message_cut_offs", f"must be an object, got {_kind(message)}")
    message_thresholds = _get(message, "thresholds", list, path, "message_cut_offs.")
    if len(message_thresholds) != n_labels or not all(map(_is_probability, message_thresholds)):
        raise _fail(path, "message_cut_offs.thresholds", f"must be {n_labels} probabilities between 0 and 1")
    message_points = _get(message, "operating_points", dict, path, "message_cut_offs.")
    if not all(isinstance(k, str) and _is_probability(v) for k, v in message_points.items()):
        raise _fail(path, "message_cut_offs.operating_points", "must map names to probabilities between 0 and 1")
    if not isinstance(metadata.get("card", {}), dict):
        raise _fail(path, "card", f"must be an object, got {_kind(metadata['card'])}")
    files = _get(metadata, "files", dict, path)
    for name in file_names:
        if not isinstance(files.get(name), str) or not _SHA256.fullmatch(files[name]):
            raise _fail(path, f"files.{name}", "must be a sha256 hex digest")
    _check_file_sizes(metadata, path, file_names)
    params = _get(metadata, "params", dict, path)
    _check_classifier(_get(params, "classifier", dict, path, "params."), path)
    _check_vectorizer(_get(params, "vectorizer", dict, path, "params."), path)
    _check_given(params.get("given", {}), path)
    _check_target(metadata.get("target"), labels, path)


def _check_given(given: Any, path: Path) -> None:
    """``params.given`` (absent in models saved before it existed): the ``vectorizer`` and ``labels`` parameters the
    model was given, where they differ from its fitted state."""
    if not isinstance(given, dict) or set(given) - {"vectorizer", "labels"}:
        raise _fail(path, "params.given", "must be an object of 'vectorizer' and 'labels'")
    if given.get("vectorizer") is not None:
        _check_vectorizer(_get(given, "vectorizer", dict, path, "params.given."), path, "params.given.vectorizer.")
    labels = given.get("labels")
    if labels is not None and not isinstance(labels, str) and (
            not isinstance(labels, list) or not labels or check_label_names(labels)):
        raise _fail(path, "params.given.labels", "must be null, a label name or a list of label names")


_TARGET_TYPES = ("binary", "multilabel-indicator")


def _check_target(target: Any, labels: list, path: Path) -> None:
    """``target`` (absent: a label matrix of every head): the y a model was fitted on, its type, the head of each of
    its columns (a label, or ``is_safe``: the flag head negated) and a binary target's two classes."""
    if target is None:
        return
    if not isinstance(target, dict) or target.get("type") not in _TARGET_TYPES:
        raise _fail(path, "target.type", f"must be one of {', '.join(_TARGET_TYPES)}")
    columns = _get(target, "columns", list, path, "target.")
    if not columns or len(set(map(str, columns))) != len(columns) \
            or not all(isinstance(c, str) and (c in labels or c == IS_SAFE) for c in columns) \
            or (len(columns) == 1) != (target["type"] == "binary"):
        raise _fail(path, "target.columns", f"must name distinct labels (or {IS_SAFE}), one for a binary target")
    if target["type"] == "binary":
        classes = _get(target, "classes", list, path, "target.")
        kinds = {_kind(c) for c in classes}
        if len(classes) != 2 or classes[0] == classes[1] or len(kinds) != 1 or kinds - {"boolean", "number"}:
            raise _fail(path, "target.classes", "must be two distinct booleans or numbers")


def _check_file_sizes(metadata: dict, path: Path, file_names: tuple[str, ...]) -> None:
    """``file_sizes`` (absent in models saved before it existed): each file's size, a whole number of bytes."""
    if "file_sizes" not in metadata:
        return
    sizes = _get(metadata, "file_sizes", dict, path)
    for name in file_names:
        size = sizes.get(name)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
            raise _fail(path, f"file_sizes.{name}", f"must be a number of bytes between 0 and {MAX_FILE_BYTES}")


def _real(value: Any) -> bool:
    """A finite number (a bool is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _accepted_by(check: Callable[[Any], object]) -> Callable[[Any], bool]:
    """Whether a value passes the estimator's own check of it (which raises ValueError or TypeError)."""
    def accepts(value: Any) -> bool:
        try:
            check(value)
        except (ValueError, TypeError, OverflowError):
            return False
        return True

    return accepts


#: Every ``ModerationClassifier`` parameter a model file saves (``params.classifier``), with its rule: what ``fit``
#: accepts (it checks its parameters by this table, :func:`check_classifier_param`, as the loader does). A model saved
#: before a parameter existed lacks it (its default applies); any other key is refused, so every load path
#: (scoring-only or scikit-learn) accepts the same files.
CLASSIFIER_PARAMS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "C": (lambda v: _real(v) and v > 0, "a number above 0"),
    "class_weight": (lambda v: v is None or v == "balanced", 'null or "balanced"'),
    "threshold_folds": (lambda v: _whole(v) and v >= 0, "a whole number, 0 or above"),
    "threshold_shrinkage": (lambda v: _real(v) and v >= 0, "a number, 0 or above"),
    "threshold_holdout": (lambda v: v is None or (_real(v) and 0 < v < 1), "a fraction between 0 and 1, or null"),
    "strict_beta": (lambda v: _real(v) and v > 0, "a number above 0"),
    "max_iter": (lambda v: _whole(v) and v >= 1, "a whole number above 0"),
    "tol": (lambda v: _real(v) and v > 0, "a number above 0"),
    "dual": (lambda v: isinstance(v, bool), "true or false"),
    "random_state": (lambda v: v is None or (_whole(v) and 0 <= v < 2 ** 32), "null or a whole number from 0 to 4294967295"),
    "char_weight": (_accepted_by(char_weights), "a number above 0 or {field: number above 0}"),
    "nb_power": (_accepted_by(nb_powers), "a number, 0 or above, or {field: number, 0 or above}"),
}
#: Every ``QAVectorizer`` parameter (``params.vectorizer``); ``normalize`` is absent from models of format 1.
VECTORIZER_PARAMS = ("word_fields", "word_ngram_range", "char_fields", "char_ngram_range", "min_df", "max_features",
                     "sublinear_tf", "dtype", "normalize")


def check_classifier_param(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` as the classifier parameter ``key`` (``must be ...``), None when it is valid: the
    one rule of each parameter, which ``fit`` and the loader apply. A numpy scalar counts as its Python value."""
    valid, expected = CLASSIFIER_PARAMS[key]
    if isinstance(value, np.generic):
        value = value.item()
    return None if valid(value) else f"must be {expected}"


def _check_classifier(params: dict, path: Path) -> None:
    unknown = sorted(set(params) - set(CLASSIFIER_PARAMS))
    if unknown:
        raise _fail(path, f"params.classifier.{unknown[0]}", "is not a parameter of the classifier")
    for key in CLASSIFIER_PARAMS:
        problem = check_classifier_param(key, params[key]) if key in params else None
        if problem:
            raise _fail(path, f"params.classifier.{key}", f"{problem}, got {_shown(params[key])}")


def _shown(value: Any) -> str:
    """A model file's value as JSON, cut short (it may be anything)."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_vectorizer(params: dict, path: Path, where: str = "params.vectorizer.") -> None:
    unknown = sorted(set(params) - set(VECTORIZER_PARAMS))
    if unknown:
        raise _fail(path, where + unknown[0], "is not a parameter of the vectorizer")
    for key in ("word_fields", "char_fields"):
        fields = _get(params, key, list, path, where)
        if not all(isinstance(f, str) and f in FIELDS for f in fields):
            raise _fail(path, where + key, f"must list fields among {', '.join(FIELDS)}")
    for key in ("word_ngram_range", "char_ngram_range"):  # no longer than training makes them: memory
        if not _accepted_by(functools.partial(ngram_range, name=key))(_get(params, key, list, path, where)):
            raise _fail(path, where + key, f"must be two integers 1 <= low <= high <= {MAX_NGRAM}")
    min_df = _get(params, "min_df", (int, float), path, where)
    if not min_df > 0:
        raise _fail(path, where + "min_df", "must be positive")
    try:
        field_caps(params.get("max_features"))
    except (ValueError, TypeError):
        raise _fail(path, where + "max_features", "must be null, a positive integer, or {field: positive integer "
                    "or null}") from None
    _get(params, "sublinear_tf", bool, path, where)
    if params.get("normalize") not in NORMALIZATIONS:
        raise _fail(path, where + "normalize", f"must be one of {', '.join(map(json.dumps, NORMALIZATIONS))}")
    if params.get("dtype") not in _VECTORIZER_DTYPES:
        raise _fail(path, where + "dtype", f"must be one of {', '.join(_VECTORIZER_DTYPES)}")


def check_vocabulary(vocabulary: Any, path: Path, n_blocks: int) -> list[list[str]]:
    """The term lists of a ``vocabulary.json``: ``n_blocks`` lists of distinct strings."""
    if not isinstance(vocabulary, dict):
        raise _fail(path, "blocks", f"must be inside an object, got {_kind(vocabulary)}")
    blocks = _get(vocabulary, "blocks", list, path)
    if len(blocks) != n_blocks:
        raise _fail(path, "blocks", f"has {len(blocks)} blocks but model.json describes {n_blocks}")
    for i, terms in enumerate(blocks):
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise _fail(path, f"blocks[{i}]", "must be an array of strings")
        if len(set(terms)) != len(terms):
            raise _fail(path, f"blocks[{i}]", "repeats a term")
    return blocks


class ArraySpec(NamedTuple):
    """What one array of a model must be: its shape (None: any length), dtype kind and item sizes (those ``save``
    writes, or, for floats, may have written) and (floats) the finite range of its values, so no array a checksum
    vouches for can turn a score into NaN."""

    shape: tuple[int | None, ...]
    kind: str
    itemsizes: tuple[int, ...]
    low: float = -math.inf
    high: float = math.inf

    def dtype_name(self) -> str:
        kind = {"f": "float", "u": "uint"}[self.kind]
        return " or ".join(f"{kind}{8 * size}" for size in self.itemsizes)


#: idf with smooth_idf (every block's setting): ln((1 + n) / (1 + df)) + 1, at least 1 (a term in every document) and
#: at most this (a term in one document of 2**63, more rows than any corpus): any other value is a forged model, and
#: 0 or a huge one makes tf-idf rows NaN once normalised.
IDF_RANGE = (1.0, 1.0 + math.log(2.0 ** 63))
#: Weights are saved as float32: a larger one (a float64 array) could overflow a logit to inf - inf = NaN.
_WEIGHT_RANGE = (-float(np.finfo(np.float32).max), float(np.finfo(np.float32).max))
_FLOAT_SIZES = (4, 8)


def expected_arrays(block_sizes: list[int], n_labels: int) -> dict[str, ArraySpec]:
    """What every array a model holds must be, given its vocabulary and labels."""
    n_terms = sum(block_sizes)
    specs = {
        "coef": ArraySpec((n_terms, n_labels), "f", _FLOAT_SIZES, *_WEIGHT_RANGE),
        "intercept": ArraySpec((n_labels,), "f", _FLOAT_SIZES, *_WEIGHT_RANGE),
        "train_prompt_hashes": ArraySpec((None,), "u", (8,)),  # 64-bit fingerprints: narrower ones match no prompt
    }
    specs.update({f"idf_{i}": ArraySpec((size,), "f", _FLOAT_SIZES, *IDF_RANGE) for i, size in enumerate(block_sizes)})
    return specs


def load_arrays(data: bytes, path: Path, expected: dict[str, ArraySpec]) -> dict:
    """The arrays of an ``arrays.npz``, their headers checked against ``expected`` before any data is read."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            if len(members) != len(archive.infolist()):  # a zip may hold a name twice: which one is read is no rule
                raise damaged(path, "holds an array more than once")
            missing = sorted(set(expected) - set(members))
            if missing or set(members) - set(expected):
                raise damaged(path, f"holds arrays {sorted(members)}, expected {sorted(expected)}")
            return {name: _read_member(archive, members[name], path, name, expected[name]) for name in expected}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ModelFormatError):
            raise
        raise damaged(path, f"unreadable ({exc})") from None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, name: str,
                 spec: ArraySpec) -> np.ndarray:
    if info.file_size > max(_SMALL_MEMBER, _MAX_INFLATION * info.compress_size):
        raise damaged(path, f"array '{name}' declares {info.file_size} bytes from {info.compress_size} compressed, "
                      f"refused (not inflated)")
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise damaged(path, f"array '{name}' has .npy format version {version}, expected 1.0 or 2.0")
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        found, _fortran, dtype = reader(fh)
        header = fh.tell()
    _check_header(path, name, found, dtype, spec)
    if header + math.prod(found) * dtype.itemsize != info.file_size:
        raise damaged(path, f"array '{name}' has {info.file_size - header} data bytes, its header says shape {found} "
                      f"of {dtype}")
    with archive.open(info) as fh:
        array = np.lib.format.read_array(fh, allow_pickle=False)
    _check_values(path, name, array, spec)
    return array


def _check_values(path: Path, name: str, array: np.ndarray, spec: ArraySpec) -> None:
    """A float array's values: finite, and within the range its spec gives."""
    if spec.kind != "f":
        return
    if not np.isfinite(array).all():
        raise damaged(path, f"array '{name}' holds NaN or infinite values")
    if array.size and (array.min() < spec.low or array.max() > spec.high):
        raise damaged(path, f"array '{name}' holds values from {array.min():g} to {array.max():g}, outside "
                      f"[{spec.low:g}, {spec.high:g}] (what training can give)")


def _check_header(path: Path, name: str, found: tuple, dtype: np.dtype, spec: ArraySpec) -> None:
    if dtype.kind != spec.kind or dtype.hasobject or dtype.itemsize not in spec.itemsizes:
        raise damaged(path, f"array '{name}' has dtype {dtype}, expected {spec.dtype_name()}")
    shape = spec.shape
    if len(found) != len(shape) or any(want is not None and got != want for got, want in zip(found, shape)):
        want = tuple("n" if s is None else s for s in shape)
        raise damaged(path, f"array '{name}' has shape {found}, but the model's metadata and vocabulary say {want}")
