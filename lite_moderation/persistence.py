"""Save and load models as plain data: JSON metadata + vocabulary, arrays in an ``.npz`` without pickle.

Loading never executes code: ``np.load(..., allow_pickle=False)`` and ``json`` only. Every file's sha256
is recorded in ``model.json`` (which carries its own checksum too), so a truncated or edited file is caught
at load with a one-line error, as is a model written by a newer format version.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .labels import LabelSet, label_set_of
from .model_checks import (
    MAX_FILE_BYTES,
    ModelFormatError,
    check_metadata,
    check_vocabulary,
    damaged,
    expected_arrays,
    load_arrays,
    parse_json,
)
from .output import OutputError, check_writable_parent, current_umask, make_temp_dir, remove_stale_temps
from .texts import block_settings, block_specs
from .thresholds import message_cut_offs, set_message_cut_offs

if TYPE_CHECKING:  # imported when needed: loading a scorer must not import scikit-learn
    from .fast import FastScorer
    from .features import QAVectorizer
    from .model import ModerationClassifier

__all__ = [
    "DEFAULT_MODEL_DIR",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SHIPPED_MODELS",
    "ModelFormatError",
    "check_model_target",
    "load",
    "load_scorer",
    "read_card",
    "read_parts",
    "resolve_model_path",
    "save",
]

FORMAT_NAME = "lite-moderation-model"
#: 2: the vectorizer's ``normalize`` parameter (a model of format 1 has none: texts read as they are); 3: its form
#: "undisguised" (a reader of format 2 refuses such a model with "upgrade" instead of a field error). A model is
#: saved in the lowest format that holds it (:func:`needed_format`), so older readers still read the others.
FORMAT_VERSION = 3
MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL_DIR = MODELS_DIR / "default"
#: Shipped models by name (``--model fast``): "default" and "fast" are trained on BeaverTails plus everyday text
#: in every input shape (for real traffic); "beavertails" on BeaverTails alone (the paper baseline). "accurate"
#: is an older name of "default".
#: The shipped models the documentation names ("accurate" stays an alias of "default" for old scripts).
DOCUMENTED_MODELS = ("default", "fast", "beavertails")
SHIPPED_MODELS = {"default": DEFAULT_MODEL_DIR, "accurate": DEFAULT_MODEL_DIR, "fast": MODELS_DIR / "fast",
                  "beavertails": MODELS_DIR / "beavertails"}
METADATA_FILE = "model.json"
VOCABULARY_FILE = "vocabulary.json"
ARRAYS_FILE = "arrays.npz"
_MODEL_FILES = frozenset({METADATA_FILE, VOCABULARY_FILE, ARRAYS_FILE})
_MAX_METADATA_BYTES = 16 * 1024 * 1024
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_READ_CHUNK = 1 << 20
_BACKUP_NAME = "model"  # the replaced model, inside a temp dir until the new one is in place


# ------------------------------------------------------------------------------------------------ saving


#: What :func:`read_card` adds to a card, from the model's metadata (they shadow a card field of the same name).
#: :func:`save` drops them from the card it is given, so ``save(load(m), path, read_card(m))`` writes the card
#: ``m`` stores, byte for byte, not a copy of the derived fields (the path of the model it was read from).
DERIVED_CARD_KEYS = ("labels", "label_set", "thresholds", "operating_points", "message_thresholds",
                     "message_operating_points", "params", "format_version", "path", "size_bytes")


def save(model: ModerationClassifier, path: str | os.PathLike, card: dict | None = None, *,
         overwrite: bool = False) -> Path:
    """Write ``model`` to directory ``path`` atomically (built aside, then renamed into place).

    ``path`` must be new, an empty directory, or (with ``overwrite=True``) an existing model: anything
    else is refused (see :func:`check_model_target`). The bytes depend only on the model and the card,
    so retraining with the same data and recipe reproduces the files exactly. The fields :func:`read_card` adds
    to a card (``DERIVED_CARD_KEYS``: labels, thresholds, params, path, ...) are the model's, not the card's: they
    are not stored in it, so a card from ``read_card`` saves as the card it was read from.
    """
    from sklearn.utils.validation import check_is_fitted  # here: loading a scorer must not import scikit-learn

    check_is_fitted(model, "coef_", msg="save needs a fitted model: %(name)s is not fitted yet, call fit first")
    target = check_model_target(path, overwrite)
    card = {key: value for key, value in (card or {}).items() if key not in DERIVED_CARD_KEYS}
    vocabulary, arrays = _model_payload(model)
    files = {VOCABULARY_FILE: _canonical_json(vocabulary), ARRAYS_FILE: _npz_bytes(arrays)}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": max(2, needed_format(model.vectorizer_.normalize)),  # 2 records the key, even null
        "labels": list(model.labels_),
        **_label_descriptions_entry(model),
        "thresholds": [float(t) for t in model.thresholds_],
        "operating_points": dict(getattr(model, "operating_points_", {})),
        **_message_cut_offs_entry(model),
        **_target_entry(model),
        "params": _model_params(model),
        "card": card,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "file_sizes": {name: len(data) for name, data in files.items()},
    }
    metadata["checksum"] = _metadata_checksum(metadata)
    files[METADATA_FILE] = _canonical_json(metadata, indent=2)
    _write_directory_atomically(target, files)
    return target


def check_model_target(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` as a place a model may be saved to, or an :class:`OutputError` saying why not.

    Allowed: a new path, an empty directory, and an existing model directory (only its own files) when
    ``overwrite`` is true. Refused: files, symbolic links and directories holding anything else.
    """
    target = Path(path)
    if not target.exists() and not target.is_symlink():
        check_writable_parent(target, str(path))
        return target
    if target.is_symlink():
        raise OutputError(f"{path}: is a symbolic link; give the directory it points to, or a new path")
    if not target.is_dir():
        raise OutputError(f"{path}: exists and is not a model directory; choose a new path (it is never replaced)")
    entries = sorted(p.name for p in target.iterdir())
    if not entries:
        return target
    if not _is_model_directory(target):
        raise OutputError(f"{path}: is a directory that is not a lite-moderation model (holds "
                          f"{_name_files(entries)}); choose a new or empty directory (it is never replaced)")
    others = [name for name in entries if name not in _MODEL_FILES]
    if others:
        raise OutputError(f"{path}: is a model directory that also holds other files ({_name_files(others)}); "
                          f"move them away or choose another path")
    if not overwrite:
        raise OutputError(f"{path}: is an existing model; pass --overwrite (overwrite=True in Python) to replace it")
    return target


def _is_model_directory(directory: Path) -> bool:
    """Whether ``directory`` holds a ``model.json`` of this format (damaged models count: they may be replaced)."""
    meta_path = directory / METADATA_FILE
    try:
        if not meta_path.is_file() or meta_path.stat().st_size > _MAX_METADATA_BYTES:
            return False
        metadata = json.loads(meta_path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(metadata, dict) and metadata.get("format") == FORMAT_NAME


def _name_files(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _model_payload(model: ModerationClassifier) -> tuple[dict, dict[str, np.ndarray]]:
    blocks = model.vectorizer_.blocks_
    vocabulary = {"blocks": [_terms_by_index(block.vocabulary_) for _, _, block in blocks]}
    arrays = {
        "coef": np.ascontiguousarray(model.coef_, dtype=np.float32),
        "intercept": np.asarray(model.intercept_, dtype=np.float32),
        "train_prompt_hashes": np.asarray(model.train_prompt_hashes_, dtype=np.uint64),
    }
    for i, (_, _, block) in enumerate(blocks):
        arrays[f"idf_{i}"] = np.asarray(block.idf_, dtype=np.float64)
    return vocabulary, arrays


def _terms_by_index(vocabulary: dict[str, int]) -> list[str]:
    terms = [""] * len(vocabulary)
    for term, index in vocabulary.items():
        terms[index] = term
    return terms


def _model_params(model: ModerationClassifier) -> dict[str, Any]:
    # the labels are saved as "labels" (and "label_descriptions"), not as a parameter; n_jobs and verbose change no
    # bit of the model, so they stay out of its bytes
    params = {k: v for k, v in model.get_params(deep=False).items()
              if k not in ("vectorizer", "verbose", "n_jobs", "labels")}
    return {"classifier": params, "vectorizer": _vectorizer_entry(model.vectorizer_),
            **_given_entry(model)}


def _vectorizer_entry(vectorizer: QAVectorizer) -> dict[str, Any]:
    params = vectorizer.get_params()
    params["dtype"] = np.dtype(params["dtype"]).name
    return _jsonable(params)


def _given_entry(model: ModerationClassifier) -> dict[str, Any]:
    """``given``: the estimator's ``vectorizer`` and ``labels`` parameters where the fitted state the loader rebuilds
    them from differs (a field the data never filled dropped from the fitted vectorizer, a default vectorizer
    (None), label names rather than the fitted label set), so a loaded model's ``get_params()`` are the saved
    model's and ``clone(load(dir)).fit(...)`` refits its recipe. Absent (every shipped model) when nothing differs."""
    from .features import QAVectorizer

    given = {}
    fitted = _vectorizer_entry(model.vectorizer_)
    if model.vectorizer is None:
        given["vectorizer"] = None
    elif type(model.vectorizer) is QAVectorizer and _vectorizer_entry(model.vectorizer) != fitted:
        given["vectorizer"] = _vectorizer_entry(model.vectorizer)
    if not isinstance(model.labels, LabelSet):
        labels = model.labels
        given["labels"] = labels if labels is None or isinstance(labels, str) else [str(name) for name in labels]
    return {"given": given} if given else {}


def _target_entry(model: ModerationClassifier) -> dict[str, Any]:
    """``target``: what y the model was fitted on (``target_type_``, ``target_columns_``, a binary target's
    ``classes_``), saved when it is not what a model without the entry is loaded as: a label matrix of every head
    (so the shipped models' files stay as they were)."""
    if model.target_type_ != "binary" and list(model.target_columns_) == list(model.labels_):
        return {}
    entry = {"type": model.target_type_, "columns": list(model.target_columns_)}
    if model.target_type_ == "binary":
        entry["classes"] = np.asarray(model.classes_).tolist()
    return {"target": entry}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _canonical_json(obj: Any, indent: int | None = None) -> bytes:
    return (json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _metadata_checksum(metadata: dict) -> str:
    body = {k: v for k, v in metadata.items() if k != "checksum"}
    return hashlib.sha256(_canonical_json(body)).hexdigest()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` whose bytes depend only on the arrays (fixed zip timestamps, sorted names)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            array_buffer = io.BytesIO()
            np.lib.format.write_array(array_buffer, np.asarray(arrays[name]), allow_pickle=False)
            archive.writestr(info, array_buffer.getvalue())
    return buffer.getvalue()


def _write_directory_atomically(target: Path, files: dict[str, bytes]) -> None:
    """Write every file into a sibling temp dir, then swap it in: readers never see half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target, _MODEL_FILES | {_BACKUP_NAME})
    staging = make_temp_dir(target)
    staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; a model dir is ordinary
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if target.exists():
            backup = make_temp_dir(target)
            os.replace(target, backup / _BACKUP_NAME)
            try:
                os.replace(staging, target)
            except BaseException:
                os.replace(backup / _BACKUP_NAME, target)  # put the old model back
                backup.rmdir()
                raise
            shutil.rmtree(backup)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


# ------------------------------------------------------------------------------------------------ loading


def _model_errors(loader: Callable) -> Callable:
    """Any failure to use a model's content becomes a one-line ModelFormatError naming it (never a traceback)."""

    @functools.wraps(loader)
    def wrapper(path: str | os.PathLike | None = None, *args: Any, **kwargs: Any) -> Any:
        try:
            return loader(path, *args, **kwargs)
        except ModelFormatError:
            raise
        except (KeyError, TypeError, IndexError, AttributeError, ValueError, RecursionError, MemoryError) as exc:
            problem = f"missing {exc}" if isinstance(exc, KeyError) else str(exc) or "unusable content"
            raise damaged(path or DEFAULT_MODEL_DIR, f"unusable content ({problem})") from None

    return wrapper


@_model_errors
def load(path: str | os.PathLike | None = None) -> ModerationClassifier:
    """Load a saved model directory (default: the shipped model), verifying format and checksums."""
    directory, metadata, vocabulary, arrays = _read_model(path)
    model = _rebuild(metadata, vocabulary, arrays, directory)
    _describe(model, directory, metadata)
    return model


@_model_errors
def load_scorer(path: str | os.PathLike | None = None, cache_size: int | None = None) -> FastScorer:
    """Load a saved model straight into a :class:`~lite_moderation.fast.FastScorer`: scoring only.

    Same files, checks and scores as :func:`load`, but built from json and numpy alone, so a process that
    only scores never imports scikit-learn (about 130 MB of memory and a second of start-up saved).
    """
    from .fast import DEFAULT_CACHE_SIZE, FastScorer

    directory, metadata, vocabulary, arrays = _read_model(path)
    vec_params = _vectorizer_params(metadata["params"]["vectorizer"])
    specs = _checked_specs(vec_params, vocabulary, directory)
    blocks = []
    for i, ((field, analyzer), terms) in enumerate(zip(specs, vocabulary["blocks"])):
        settings = block_settings(vec_params, analyzer, field)
        blocks.append((field, settings, _vocabulary_dict(terms), arrays[f"idf_{i}"], _sklearn_analyzer(settings)))
    n_terms = sum(len(terms) for terms in vocabulary["blocks"])
    _check_weights(arrays["coef"], n_terms, directory)
    scorer = FastScorer.from_parts(blocks, arrays["coef"], arrays["intercept"], _thresholds(metadata),
                                   _label_set(metadata), _operating_points(metadata),
                                   cache_size=DEFAULT_CACHE_SIZE if cache_size is None else cache_size,
                                   message_cut_offs=_message_cut_offs(metadata), normalize=vec_params["normalize"])
    _describe(scorer, directory, metadata)
    return scorer


@_model_errors
def read_parts(path: str | os.PathLike | None = None) -> dict:
    """A saved model's fitted parts as plain data, read with json and numpy: per block (field, its
    ``TfidfVectorizer`` settings, vocabulary {term: column}, idf, terms by column), then ``coef``,
    ``intercept``, ``thresholds``, ``labels``, ``operating_points``, ``message_cut_offs`` and ``path``.

    What :class:`lite_moderation.explain.Explainer` is built from, independent of any scorer's internals.
    """
    directory, metadata, vocabulary, arrays = _read_model(path)
    vec_params = _vectorizer_params(metadata["params"]["vectorizer"])
    specs = _checked_specs(vec_params, vocabulary, directory)
    blocks = [(field, block_settings(vec_params, analyzer, field), _vocabulary_dict(terms), arrays[f"idf_{i}"], terms)
              for i, ((field, analyzer), terms) in enumerate(zip(specs, vocabulary["blocks"]))]
    _check_weights(arrays["coef"], sum(len(terms) for terms in vocabulary["blocks"]), directory)
    return {"blocks": blocks, "coef": arrays["coef"], "intercept": arrays["intercept"],
            "thresholds": _thresholds(metadata), "labels": _label_set(metadata),
            "operating_points": _operating_points(metadata), "message_cut_offs": _message_cut_offs(metadata),
            "normalize": vec_params["normalize"], "path": str(directory)}


def _sklearn_analyzer(settings: dict):
    """A factory of scikit-learn's analyser for ``settings``, imported only if a block needs it."""

    def build():
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(**settings).build_analyzer()

    return build


def _read_model(path: str | os.PathLike | None) -> tuple[Path, dict, dict, dict[str, np.ndarray]]:
    """The verified metadata, vocabulary and arrays of a model directory, their shapes checked against each other."""
    directory = _model_directory(path)
    metadata = read_metadata(directory)
    vec = metadata["params"]["vectorizer"]
    n_blocks = len(block_specs(vec["word_fields"], vec["char_fields"]))
    vocabulary_path = directory / VOCABULARY_FILE
    blocks = check_vocabulary(parse_json(_verified_bytes(directory, VOCABULARY_FILE, metadata), vocabulary_path),
                              vocabulary_path, n_blocks)
    expected = expected_arrays([len(terms) for terms in blocks], len(metadata["labels"]))
    arrays = load_arrays(_verified_bytes(directory, ARRAYS_FILE, metadata), directory / ARRAYS_FILE, expected)
    return directory, metadata, {"blocks": blocks}, arrays


def _describe(model: object, directory: Path, metadata: dict) -> None:
    """Where a loaded model came from: its card, path and size on disk."""
    model.card_ = dict(metadata.get("card", {}))
    model.path_ = str(directory)
    model.size_bytes_ = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())


@_model_errors
def read_card(path: str | os.PathLike | None = None) -> dict:
    """The model card plus labels, thresholds, format version, path and size (``DERIVED_CARD_KEYS``, from the
    model's metadata: :func:`save` does not store them in a card), once every file checked out."""
    directory, metadata, _, _ = _read_model(path)
    return {
        **metadata.get("card", {}),
        "labels": metadata["labels"],
        "label_set": _label_set(metadata).describe(),
        "thresholds": dict(zip(metadata["labels"], metadata["thresholds"])),
        "operating_points": _operating_points(metadata),
        **({"message_thresholds": dict(zip(metadata["labels"], metadata["message_cut_offs"]["thresholds"])),
            "message_operating_points": metadata["message_cut_offs"]["operating_points"]}
           if "message_cut_offs" in metadata else {}),
        "params": metadata["params"],
        "format_version": metadata["format_version"],
        "path": str(directory),
        "size_bytes": sum(f.stat().st_size for f in directory.iterdir() if f.is_file()),
    }


def resolve_model_path(path: str | os.PathLike | None) -> Path:
    """Where a model named ``path`` is: a string that is a shipped model's name ("default", "fast", ...) is that
    model, whatever the working directory holds (a directory of that name is given as ``./default``); anything
    else (a ``Path``, or a string with a separator) is a path; None is the default model."""
    if path is None:
        return DEFAULT_MODEL_DIR
    if isinstance(path, str) and path in SHIPPED_MODELS:
        return SHIPPED_MODELS[path]
    return Path(path)


def _model_directory(path: str | os.PathLike | None) -> Path:
    """The directory of ``path`` (see ``resolve_model_path``): a model directory, its model.json, or a shipped
    model's name."""
    directory = resolve_model_path(path)
    if directory.is_file() and directory.name == METADATA_FILE:
        directory = directory.parent
    if not directory.exists():
        raise ModelFormatError(
            f"{directory}: no such model directory (shipped models: {', '.join(DOCUMENTED_MODELS)})"
        )
    if not directory.is_dir():
        raise ModelFormatError(f"{directory}: a model is a directory holding {METADATA_FILE}, not a file")
    return directory


def read_metadata(directory: Path) -> dict:
    """Parse and verify ``model.json``: format name, version, and its own checksum."""
    meta_path = directory / METADATA_FILE
    if not meta_path.is_file():
        raise ModelFormatError(f"{directory}: not a lite-moderation model (no {METADATA_FILE})")
    if meta_path.stat().st_size > _MAX_METADATA_BYTES:
        raise ModelFormatError(f"{meta_path}: {meta_path.stat().st_size} bytes, larger than any model.json "
                               f"({_MAX_METADATA_BYTES} at most)")
    metadata = parse_json(meta_path.read_bytes(), meta_path)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{meta_path}: not a lite-moderation model file")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise damaged(meta_path, f"'format_version' must be a whole number from 1 to {FORMAT_VERSION}, got "
                      f"{json.dumps(version)[:40]}")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{meta_path}: model format version {version!r} is newer than this lite-moderation reads "
            f"(up to {FORMAT_VERSION}); upgrade lite-moderation"
        )
    if metadata.get("checksum") != _metadata_checksum(metadata):
        raise damaged(meta_path, "checksum mismatch, the file was edited or damaged")
    check_metadata(metadata, meta_path, (VOCABULARY_FILE, ARRAYS_FILE))
    normalize = metadata["params"]["vectorizer"].get("normalize")
    if version < needed_format(normalize):
        raise damaged(meta_path, f"params.vectorizer.normalize {json.dumps(normalize)} needs format version "
                      f"{needed_format(normalize)}, the file says {version}")
    return metadata


def needed_format(normalize: str | None) -> int:
    """The lowest format version that reads texts with the normalisation ``normalize``."""
    return {"undisguised": 3, "visible": 2}.get(normalize, 1)


def _verified_bytes(directory: Path, name: str, metadata: dict) -> bytearray:
    """The content of a model file, its size checked before it is read and its sha256 hashed as it is read.

    The size is the one ``model.json`` declares (models saved before sizes were recorded: at most
    ``MAX_FILE_BYTES``), so a swapped, grown or sparse huge file is refused without reading it.
    """
    file_path = directory / name
    if not file_path.is_file():
        raise damaged(file_path, "missing from the model directory")
    size = _checked_size(file_path, metadata.get("file_sizes", {}).get(name))
    data = bytearray(size)
    digest = hashlib.sha256()
    with file_path.open("rb") as fh, memoryview(data) as view:
        filled = 0
        while filled < size and (n := fh.readinto(view[filled:filled + _READ_CHUNK])):
            digest.update(view[filled:filled + n])
            filled += n
        if filled != size or fh.read(1):
            raise ModelFormatError(f"{file_path}: changed while it was read; load the model again")
    if digest.hexdigest() != metadata["files"].get(name):
        raise damaged(file_path, "sha256 mismatch, the file is truncated, edited or damaged")
    return data


def _checked_size(file_path: Path, declared: int | None) -> int:
    """The size of ``file_path``, which must be the ``declared`` one (or, for a model without sizes, not huge)."""
    size = file_path.stat().st_size
    if declared is not None and size != declared:
        problem = "truncated" if size < declared else "larger than saved"
        raise damaged(file_path, f"{size} bytes, but model.json says {declared}: the file is {problem}, edited or "
                      f"damaged")
    if size > MAX_FILE_BYTES:
        raise damaged(file_path, f"{size} bytes, more than a model file may hold ({MAX_FILE_BYTES}), so not the "
                      f"file saved")
    return size


def _vectorizer_params(saved: dict) -> dict:
    """``QAVectorizer`` parameters from their saved form (``params.vectorizer``, or ``params.given.vectorizer``)."""
    params = dict(saved)
    params.setdefault("normalize", None)  # models saved before format 2 read texts as they are
    params["dtype"] = np.dtype(params["dtype"]).type
    for key in ("word_ngram_range", "char_ngram_range", "word_fields", "char_fields"):
        params[key] = tuple(params[key])
    return params


def _checked_specs(vec_params: dict, vocabulary: dict, directory: Path) -> list[tuple[str, str]]:
    specs = block_specs(vec_params["word_fields"], vec_params["char_fields"])
    if len(specs) != len(vocabulary["blocks"]):
        raise damaged(directory, f"vocabulary has {len(vocabulary['blocks'])} blocks, expected {len(specs)}")
    return specs


def _vocabulary_dict(terms: list[str]) -> dict[str, int]:
    return {term: index for index, term in enumerate(terms)}


def _thresholds(metadata: dict) -> np.ndarray:
    return np.asarray(metadata["thresholds"], dtype=np.float64)


def _operating_points(metadata: dict) -> dict[str, float]:
    """Named unsafe cut-offs; models saved before operating points existed have none."""
    return dict(metadata.get("operating_points", {}))


def _message_cut_offs(metadata: dict) -> tuple[np.ndarray, dict[str, float]] | None:
    """The cut-offs of single messages (thresholds, operating points); None for a model trained on pairs only
    (or saved before messages had their own), which uses its pair cut-offs for every input."""
    entry = metadata.get("message_cut_offs")
    if entry is None:
        return None
    return np.asarray(entry["thresholds"], dtype=np.float64), dict(entry["operating_points"])


def _message_cut_offs_entry(model: ModerationClassifier) -> dict:
    cut = message_cut_offs(model)
    if cut is None:
        return {}
    return {"message_cut_offs": {"thresholds": [float(t) for t in cut[0]], "operating_points": cut[1]}}


def _label_set(metadata: dict) -> LabelSet:
    """The model's labels (checked by ``check_metadata``): the BeaverTails set when the names are its own."""
    return LabelSet.from_names(metadata["labels"], metadata.get("label_descriptions"))


def _label_descriptions_entry(model: ModerationClassifier) -> dict:
    """``label_descriptions`` of a model whose labels have them (BeaverTails' live in the taxonomy module, so
    the shipped files stay as they were)."""
    labels = label_set_of(model)
    if labels.is_beavertails or not labels.descriptions:
        return {}
    return {"label_descriptions": dict(labels.descriptions)}


def _check_weights(coef: np.ndarray, n_terms: int, directory: Path) -> None:
    if coef.shape[0] != n_terms:
        raise damaged(directory, f"weight matrix shape {coef.shape} does not match vocabulary")


def _rebuild(metadata: dict, vocabulary: dict, arrays: dict[str, np.ndarray],
             directory: Path) -> ModerationClassifier:
    from .features import QAVectorizer
    from .model import ModerationClassifier, set_target

    vec_params = _vectorizer_params(metadata["params"]["vectorizer"])
    vectorizer = QAVectorizer(**vec_params)
    specs = _checked_specs(vec_params, vocabulary, directory)
    vectorizer.blocks_ = []
    for i, ((field, analyzer), terms) in enumerate(zip(specs, vocabulary["blocks"])):
        block = vectorizer.make_block(analyzer)
        block.vocabulary_ = _vocabulary_dict(terms)
        block.idf_ = arrays[f"idf_{i}"]
        vectorizer.blocks_.append((field, analyzer, block))
    vectorizer.n_features_out_ = sum(len(terms) for terms in vocabulary["blocks"])
    _check_weights(arrays["coef"], vectorizer.n_features_out_, directory)
    label_set = _label_set(metadata)
    given = metadata["params"].get("given", {})
    recipe = given.get("vectorizer", vec_params)
    model = ModerationClassifier(vectorizer=None if recipe is None else QAVectorizer(**_vectorizer_params(recipe)),
                                 labels=given.get("labels", label_set), **metadata["params"]["classifier"])
    model.vectorizer_ = vectorizer
    model.coef_ = arrays["coef"]
    model.intercept_ = arrays["intercept"]
    model.thresholds_ = _thresholds(metadata)
    model.operating_points_ = _operating_points(metadata)
    set_message_cut_offs(model, _message_cut_offs(metadata))
    model.label_set_ = label_set
    model.labels_ = list(label_set.names)
    target = metadata.get("target", {"columns": model.labels_})
    set_target(model, target["columns"], target.get("classes"))
    model.train_prompt_hashes_ = arrays["train_prompt_hashes"]
    model.n_features_in_ = 1
    return model
