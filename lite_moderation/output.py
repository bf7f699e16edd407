"""Writing results: atomic files, and the table / JSON / JSONL / CSV shapes of score output."""

from __future__ import annotations

import contextlib
import csv
import functools
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from stat import S_ISDIR
from typing import BinaryIO, TextIO

import numpy as np

from .labels import LabelSet, label_state
from .taxonomy import BEAVERTAILS, short_name
from .terminal import printable

__all__ = ["FORMATS", "OutputError", "RowWriter", "atomic_text_writer", "check_output_file", "keyed_row",
           "output_format", "write_bytes", "write_json", "write_predictions"]

FORMATS = ("table", "json", "jsonl", "csv")


class OutputError(ValueError):
    """An output path that a command refuses to write (it would destroy something it did not create)."""


#: Score output formats by file suffix (before any compression suffix).
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".txt": "table"}
#: Explain output formats by file suffix (before any compression suffix: report.html.gz is gzipped HTML).
EXPLAIN_SUFFIX_FORMATS = {".html": "html", ".htm": "html", ".txt": "text", ".jsonl": "jsonl", ".ndjson": "jsonl",
                          ".json": "json"}
#: Table output formats (``compare``, ``bench --output``) by file suffix (before any compression suffix).
TABLE_SUFFIX_FORMATS = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".tex": "latex", ".csv": "csv",
                        ".json": "json"}
#: What any suffix this toolkit reads or writes says, for an output of one format only (``--json`` metrics: JSON;
#: ``--predictions``: JSONL; ``--plot``: PNG): a name saying another format is refused (see :func:`output_format`).
KNOWN_SUFFIX_FORMATS = {**SUFFIX_FORMATS, **EXPLAIN_SUFFIX_FORMATS, **TABLE_SUFFIX_FORMATS, ".png": "png",
                        ".pdf": "pdf", ".svg": "svg", ".jpg": "jpeg", ".jpeg": "jpeg"}
#: Compression by the last suffix.
COMPRESSIONS = {".gz": "gzip", ".xz": "xz"}
_TEMP_SUFFIX = ".tmp"


def split_suffix(path: str | os.PathLike,
                 formats: dict[str, str] = SUFFIX_FORMATS) -> tuple[str | None, str | None]:
    """(format, compression) that the name of ``path`` says, each None when it says nothing: the format by the
    suffix under any compression suffix (``formats``: score's, or another command's)."""
    name = Path(path).name.lower()
    compression = next((c for s, c in COMPRESSIONS.items() if name.endswith(s)), None)
    if compression:
        name = name.rsplit(".", 1)[0]
    fmt = next((f for s, f in formats.items() if name.endswith(s)), None)
    return fmt, compression


def output_format(path: str | os.PathLike | None, fmt: str | None, default: str,
                  formats: dict[str, str] = SUFFIX_FORMATS, only: str | None = None) -> str:
    """The output format for ``path``: its suffix decides (``formats``: score's, explain's or the tables'), under
    any compression suffix; a different explicit ``fmt`` is refused, and so is a suffix no format has.

    ``only``: the option of an output that has one format, ``fmt`` (``--json``: json), checked by the same rule
    against every suffix a format has (``KNOWN_SUFFIX_FORMATS``): ``--json m.csv`` is refused, ``--json m.out``
    is not (its name claims no other format)."""
    suffix_fmt = None if path is None or str(path) == "-" else split_suffix(path, formats)[0]
    if suffix_fmt is None and fmt is None and path is not None and str(path) != "-":
        name = Path(path).name.lower()
        suffix = Path(name.rsplit(".", 1)[0] if split_suffix(path)[1] else name).suffix
        if suffix:  # out.parquet must not silently become JSONL
            known = ", ".join(sorted(formats))
            raise OutputError(f"{path}: unknown output suffix {suffix!r}: name the file {known} (optionally .gz or "
                              f".xz), or give --format")
    if fmt and suffix_fmt and fmt != suffix_fmt:
        if only:
            suffix = next(s for s, f in formats.items() if f == fmt)
            raise OutputError(f"{only} {path}: the suffix says {suffix_fmt}, but {only} writes {fmt} only; "
                              f"give it a {suffix} name")
        raise OutputError(f"{path}: the suffix says {suffix_fmt} but --format is {fmt}; "
                          f"drop --format or rename the output")
    return fmt or suffix_fmt or default


def check_output_file(path: str | os.PathLike | None, inputs: dict[str, list] | None = None,
                      option: str = "--output") -> None:
    """Refuse, before any work, an output file that is a directory, one of ``inputs`` or under a file.

    ``inputs`` maps an option name to the paths given with it (``"-"`` entries are ignored).
    """
    if path is None or str(path) == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{option} {path}: is a directory; give the path of a file to write")
    for name, paths in (inputs or {}).items():
        for other in paths:
            if other is not None and str(other) != "-" and same_path(target, Path(other)):
                raise OutputError(f"{option} {path}: is also given as {name}; "
                                  f"write to another file (the input is never replaced)")
    check_writable_parent(target, f"{option} {path}")


def check_writable_parent(target: Path, label: str) -> None:
    """The nearest existing ancestor of ``target`` must be a directory this process may write in."""
    parent = next((p for p in target.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputError(f"{label}: {parent} is a file, not a directory")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{label}: cannot write in {parent} (permission denied)")


def same_path(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (hard and symbolic links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def make_temp_file(target: Path) -> tuple[int, str]:
    """(fd, name) of a new temp file beside ``target``, named so that only this program's ones are ever
    removed as stale (see :func:`remove_stale_temps`)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=_TEMP_SUFFIX, dir=target.parent)
    try:
        return fd, str(_signed(Path(name), target))
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise


def make_temp_dir(target: Path) -> Path:
    """A new temp directory beside ``target``, signed like :func:`make_temp_file`'s files."""
    name = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
    try:
        return _signed(name, target)
    except BaseException:
        name.rmdir()
        raise


def _signed(temp: Path, target: Path) -> Path:
    """Rename a fresh temp to ``.<target>.<pid>.<token>.tmp``: the token hashes its inode, host and pid, so
    a user's file can match it only by being this very temp (a copy or a look-alike name has another inode)."""
    signed = temp.with_name(f".{target.name}.{os.getpid()}.{_temp_token(temp.lstat(), target, os.getpid())}"
                            f"{_TEMP_SUFFIX}")
    os.rename(temp, signed)
    return signed


def _temp_token(stat: os.stat_result, target: Path, pid: int) -> str:
    key = f"lite-moderation temp|{socket.gethostname()}|{pid}|{target.name}|{stat.st_dev}|{stat.st_ino}"
    return hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def remove_stale_temps(target: Path, dir_entries: frozenset[str] = frozenset()) -> None:
    """Delete the temps for ``target`` that this program made in runs that no longer run (killed ones).

    Only what is provably ours goes: a name of the signed form whose token matches the entry's own inode,
    host and (dead) pid, owned by this user; a directory also only when it holds nothing but
    ``dir_entries`` (a model's files). Anything else beside the output, however named, is left alone.
    """
    import shutil

    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.([0-9a-f]{{16}}){re.escape(_TEMP_SUFFIX)}")
    for candidate in target.parent.glob(f".{glob.escape(target.name)}.*{_TEMP_SUFFIX}"):
        match = pattern.fullmatch(candidate.name)
        if match is None or _process_alive(int(match[1])):
            continue
        try:
            stat = candidate.lstat()
        except FileNotFoundError:
            continue
        if stat.st_uid != os.getuid() or _temp_token(stat, target, int(match[1])) != match[2]:
            continue
        if S_ISDIR(stat.st_mode):
            if _holds_only(candidate, dir_entries):
                shutil.rmtree(candidate, ignore_errors=True)
        elif not candidate.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()


def _holds_only(directory: Path, names: frozenset[str], depth: int = 2) -> bool:
    """Whether ``directory`` (and its subdirectories, ``depth`` levels) holds only entries named in ``names``."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return False
    for entry in entries:
        if entry.name not in names or entry.is_symlink():
            return False
        if entry.is_dir() and (depth <= 1 or not _holds_only(entry, names, depth - 1)):
            return False
    return True


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextlib.contextmanager
def atomic_text_writer(path: str | os.PathLike | None) -> Iterator[TextIO]:
    """Write text to ``path`` through a temp file renamed into place on success ("-"/None: stdout).

    A crash, an error or a signal mid-way leaves the old file (or no file), never half a file; temp
    files of killed runs to the same target are removed first. A ``.gz`` or ``.xz`` name is compressed.
    An existing non-regular file (a FIFO, ``/dev/null``) is written directly, never replaced.
    """
    if path is None or str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise OutputError(f"{path}: is a directory; give the path of a file to write")
    if target.exists() and not target.is_file():
        with _compressed_text(_output_file(target, path), target) as fh:
            yield fh
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    try:
        fd, tmp_name = make_temp_file(target)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {target.parent} ({exc.strerror or exc})") from None
    os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp makes it private; results are ordinary files
    try:
        with _compressed_text(_output_file(fd, path), target) as fh:
            yield fh
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


class _OutputFile(io.FileIO):
    """An output file (or its temp) whose write errors name the output: a full disk said only "No space left on
    device", and a command writing two files did not say which."""

    def __init__(self, file: int | Path, display: str | os.PathLike) -> None:
        super().__init__(file, "wb")
        self.display = str(display)

    def write(self, data: bytes) -> int | None:  # type: ignore[override]
        try:
            return super().write(data)
        except OSError as exc:
            exc.filename = self.display  # shown by the CLI as "PATH: No space left on device"
            raise


def _output_file(file: int | Path, display: str | os.PathLike) -> BinaryIO:
    """A buffered binary writer over ``file`` (a path or a temp's descriptor) whose write errors name ``display``."""
    return io.BufferedWriter(_OutputFile(file, display))


@contextlib.contextmanager
def _compressed_text(raw: BinaryIO, target: Path) -> Iterator[TextIO]:
    """A UTF-8 text stream over ``raw``, compressed as ``target``'s suffix says; synced on success."""
    with raw:
        compression = split_suffix(target)[1]
        if compression == "gzip":
            binary: BinaryIO = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0)
        elif compression == "xz":
            binary = lzma.LZMAFile(raw, "wb")  # noqa: SIM115 - closed below, before raw
        else:
            binary = raw
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        try:
            yield text
            text.flush()
        except BaseException:
            if binary is not raw:
                with contextlib.suppress(Exception):
                    binary.close()
            raise
        if binary is not raw:
            binary.close()  # writes the trailer; the raw file stays open
        raw.flush()
        with contextlib.suppress(OSError):  # a FIFO or a device cannot be synced
            os.fsync(raw.fileno())


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


def write_predictions(path: str | os.PathLike, proba: np.ndarray, cut_offs: np.ndarray, lines: object,
                      groups: object, folds: object = None, labels: LabelSet = BEAVERTAILS) -> None:
    """Per-row predictions (JSONL, atomically): row index, input line, prompt group, fold (out-of-fold runs),
    every label's score and the verdict, so a result can be recomputed or compared with another system's rows.

    The verdict (``flagged``, ``categories``) of (n, k+1) ``proba`` at (n, k+1) or (k+1,) ``cut_offs`` is
    :meth:`LabelSet.decide`'s, the one ``score``, ``moderate()`` and the server give: categories only on a
    flagged row, and a flagged row names at least one."""
    cut_offs = np.asarray(cut_offs)
    if cut_offs.dtype == bool:  # the decisions this took before it took the cut-offs: refused, not misread
        raise TypeError("write_predictions takes the rows' cut-offs (probabilities), not decisions")
    flagged, named = labels.decide(np.asarray(proba), cut_offs)
    with atomic_text_writer(path) as fh:
        for i, (scores, flag, categories) in enumerate(zip(proba, flagged, named)):
            row = {"row": i, "line": int(lines[i]), "group": int(groups[i])}
            if folds is not None:
                row["fold"] = int(folds[i])
            row["flagged"] = bool(flag)
            row["scores"] = dict(zip(labels.names, map(float, scores)))
            row["categories"] = [c for c, on in zip(labels.categories, categories) if on]
            fh.write(json.dumps(row) + "\n")


class RowWriter:
    """Streams score results in one of ``FORMATS``; ``json`` is a single list closed at ``close()``.

    Each row is ``result`` (the moderate() dict) plus an optional ``line`` of the input file.
    """

    def __init__(self, stream: TextIO, fmt: str, reasons: Callable[[object], list[str]] | None = None,
                 labels: LabelSet = BEAVERTAILS, id_column: bool = False, line_column: bool = False) -> None:
        """``reasons(item)``: the table's strongest reasons for a flagged item (see ``explain.table_reasons``);
        ``labels``: the scoring model's label set (the rows' keys and columns); ``id_column``: CSV gets an ``id``
        column from its header on, empty where a row has none (else only when the first row has an id: a stream's
        columns are fixed by its header, so an id first seen later would be lost); ``line_column``: the rows carry
        their input line, so the header of a CSV without rows names it as a CSV with rows would."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: expected one of {FORMATS}")
        self.stream = stream
        self.fmt = fmt
        self.count = 0
        self.reasons = reasons if fmt == "table" else None
        self.labels = labels
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        self.id_column = id_column
        self.line_column = line_column

    def write(self, result: dict, line: int | None = None, item: object = None, id: str | int | None = None) -> None:
        """One row; ``item`` (the scored text or pair) lets the table give a flagged row's reasons."""
        row = keyed_row(result, line, id)
        if self.reasons is not None and item is not None and result["flagged"]:
            row = {**row, "reasons": self.reasons(item)}
        getattr(self, f"_write_{self.fmt}")(row)
        self.count += 1

    def write_scores(self, proba: np.ndarray, cut_offs: np.ndarray, lines: list[int] | None = None,
                     items: list | None = None, ids: list | None = None) -> int:
        """Write the rows of (n, k) probabilities as :meth:`write` writes their ``moderate()`` results (the
        same bytes); returns how many are flagged. JSONL rows are filled into one string template each,
        without building the result dicts (5x faster than ``json.dumps`` of them). ``items`` (the scored
        texts or pairs) give the table its reasons. ``cut_offs``: (k,) or per row (n, k), as
        ``thresholds.cut_offs`` gives them."""
        if ids is not None and all(i is None for i in ids):
            ids = None
        if self.fmt != "jsonl":
            results = self.labels.results(proba, cut_offs)
            for i, result in enumerate(results):
                self.write(result, line=None if lines is None else lines[i], item=None if items is None else items[i],
                           id=None if ids is None else ids[i])
            return sum(r["flagged"] for r in results)
        flagged = 0
        cut_offs = np.broadcast_to(cut_offs, proba.shape)
        for start in range(0, len(proba), _ROWS_PER_WRITE):  # bounded temporary strings
            part = slice(start, start + _ROWS_PER_WRITE)
            flagged += self._write_jsonl_rows(proba[part], cut_offs[part], None if lines is None else lines[part],
                                              None if ids is None else ids[part])
        return flagged

    def _write_jsonl_rows(self, proba: np.ndarray, cut_offs: np.ndarray, lines: list[int] | None,
                          ids: list | None = None) -> int:
        n_cat = len(self.labels.categories)
        flagged, decided = self.labels.decide(proba, cut_offs)
        categories = _categories_json(self.labels.categories, decided)
        words = ("false", "true")
        rows = zip(map(words.__getitem__, flagged.tolist()), proba[:, -1].tolist(), categories,
                   proba[:, :n_cat].tolist())
        if ids is not None:  # a row without an id has no "id" key, as write() leaves it out
            heads = [_jsonl_head(None if lines is None else lines[i], id) for i, id in enumerate(ids)]
            template = _jsonl_body(self.labels.categories)
            text = "".join([head + template % (flag, unsafe, cats, *scores)
                            for head, (flag, unsafe, cats, scores) in zip(heads, rows)])
        elif lines is None:
            template = _jsonl_template(self.labels.categories, False)
            text = "".join([template % (flag, unsafe, cats, *scores) for flag, unsafe, cats, scores in rows])
        else:
            template = _jsonl_template(self.labels.categories, True)
            text = "".join([template % (line, flag, unsafe, cats, *scores)
                            for line, (flag, unsafe, cats, scores) in zip(lines, rows)])
        self.stream.write(text)
        self.count += len(proba)
        return int(flagged.sum())

    def close(self) -> None:
        """End the output. With no rows it is still a valid empty document: JSON ``[]``, CSV its header line (a
        CSV reader of an empty run then finds the columns, not an empty file)."""
        if self.fmt == "json":
            self.stream.write("[]\n" if self.count == 0 else "\n]\n")
        elif self.fmt == "csv" and self.count == 0:
            self._write_csv_header([key for key, on in (("line", self.line_column), ("id", self.id_column)) if on])

    def _write_jsonl(self, row: dict) -> None:
        self.stream.write(json.dumps(row) + "\n")

    def _write_json(self, row: dict) -> None:
        self.stream.write(("[\n  " if self.count == 0 else ",\n  ") + json.dumps(row))

    def _write_csv(self, row: dict) -> None:
        if self.count == 0:
            self._write_csv_header([key for key in ("line", "id") if key in row or (key == "id" and self.id_column)])
        leading = [row.get(key, "") for key in self._leading]
        scores = [f"{score:.6f}" for score in row["category_scores"].values()]
        self._csv.writerow([*leading, int(row["flagged"]), f"{row['unsafe_score']:.6f}", *scores])

    def _write_csv_header(self, leading: list[str]) -> None:
        self._leading = leading
        # short names: BeaverTails' keys hold commas (legal in CSV, a trap for pandas and spreadsheets)
        self._csv.writerow([*leading, "flagged", "unsafe_score", *map(self.labels.short_name, self.labels.categories)])

    def _write_table(self, row: dict) -> None:
        self.stream.write(format_table_row(row, self.count) + "\n")


def keyed_row(result: dict, line: int | None = None, id: str | int | None = None) -> dict:
    """An output row of score or explain: the input's ``line`` and ``id`` first (each when there is one), so rows
    join back to the input, then ``result``."""
    if line is None and id is None:
        return result
    return {**({"line": line} if line is not None else {}), **({"id": id} if id is not None else {}), **result}


@functools.lru_cache(maxsize=16)
def _jsonl_body(categories: tuple[str, ...]) -> str:
    """``json.dumps`` of a result row after its opening (``{`` and the line and id, if any) with %-placeholders:
    %r of a float is its repr, as json writes it."""
    scores = ", ".join(f"{json.dumps(c).replace('%', '%%')}: %r" for c in categories)
    return '"flagged": %s, "unsafe_score": %r, "categories": %s, "category_scores": {' + scores + "}}\n"


@functools.lru_cache(maxsize=16)
def _jsonl_template(categories: tuple[str, ...], with_line: bool) -> str:
    """A whole row's template: the opening with a %d line (or none) and :func:`_jsonl_body`."""
    return ('{"line": %d, ' if with_line else "{") + _jsonl_body(categories)


_ROWS_PER_WRITE = 256


def _jsonl_head(line: int | None, id: str | int | None) -> str:
    """The opening of a JSONL row up to its scores: ``{"line": .., "id": .., `` as ``json.dumps`` writes them."""
    parts = ([f'"line": {line}'] if line is not None else []) + ([f'"id": {json.dumps(id)}'] if id is not None else [])
    return "{" + "".join(part + ", " for part in parts)


def _categories_json(names: tuple[str, ...], decided: np.ndarray) -> list[str]:
    """The "categories" object of each row of (n, k) flags (few distinct rows: each written once)."""
    written: dict[bytes, str] = {}
    out = []
    for flags in decided:
        key = flags.tobytes()
        text = written.get(key)
        if text is None:
            text = written[key] = json.dumps(dict(zip(names, map(bool, flags))))
        out.append(text)
    return out


def format_table_row(row: dict, index: int) -> str:
    """One line for humans: verdict, unsafe score, and the categories the verdict names (at their cut-off, or the
    nearest one of a flagged item) with their scores."""
    where = f"line {row['line']}" if "line" in row else f"#{index + 1}"
    verdict = "FLAGGED" if row["flagged"] else "ok"
    flagged = sorted(
        (c for c, on in row["categories"].items() if on), key=lambda c: -row["category_scores"][c]
    )
    cats = ", ".join(f"{short_name(c)} {row['category_scores'][c]:.2f}" for c in flagged) or "-"
    because = f"  because: {printable('; '.join(row['reasons']))}" if row.get("reasons") else ""
    return f"{where:>10}  {verdict:<7}  unsafe {row['unsafe_score']:.3f}  {cats}{because}"


def format_detail(result: dict, thresholds: dict[str, float], reasons: list[str] | None = None) -> str:
    """A full report of one item: verdict, unsafe score (with the strongest ``reasons`` of a flagged one) and
    every category's score and threshold (``thresholds``: by label name, the flag head last); a named category's
    flag says whether it reached its threshold or is the nearest one, named below it (:func:`label_state`)."""
    out = io.StringIO()
    verdict = "FLAGGED (unsafe)" if result["flagged"] else "not flagged (safe)"
    out.write(f"verdict: {verdict}\nunsafe score: {result['unsafe_score']:.3f}"
              f"  (threshold {list(thresholds.values())[-1]:.3f})\n")
    if reasons:
        out.write(f"strongest reasons: {printable('; '.join(reasons))}\n")
    out.write("\n")
    out.write(f"{'category':<34} {'score':>6} {'thresh':>6}  flag\n")
    for name in result["categories"]:
        score, named = result["category_scores"][name], result["categories"][name]
        mark = label_state(named, score, thresholds[name]) if named else ""
        out.write(f"{short_name(name):<34} {score:>6.3f} {thresholds[name]:>6.3f}  {mark}\n")
    return out.getvalue()


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Bytes (a PNG) to ``path`` through a temp file renamed into place, like :func:`atomic_text_writer`
    ("-": stdout, as for every output)."""
    if str(path) == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise OutputError(f"{path}: is a directory; give the path of a file to write")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    fd, tmp_name = make_temp_file(target)
    os.chmod(tmp_name, 0o666 & ~current_umask())
    try:
        with _output_file(fd, path) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
