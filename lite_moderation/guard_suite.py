"""The guard-benchmark suite: GuardReasoner's normalised copies of the sets guard-model papers report on.

Only the pins live here (repository, commit, path, row and label counts, sha256 of each file), never a row
of data: a file is read from ``--data-dir`` or fetched into the cache from the pinned commit (with
:func:`lite_moderation.hub.fetch`: bounded in bytes and time, resumable, sha256-checked), and a file whose
sha256 is not the pinned one is refused, so every number is on the same bytes as the papers'.

A file is a JSON list of objects whose ``input`` reads ``"Human user:\\n{prompt}\\n\\nAI assistant:\\n{response}
\\n\\n"`` (``None`` for no response) and whose ``output`` holds the label: ``harmful`` / ``unharmful``, alone
or as ``Request: ...`` (prompt sets) / ``Response: ...`` (response sets) in an ``Answers:`` block.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DataError, Dataset, file_bytes, not_utf8_error, parse_json_array, sha256_file
from .hub import cache_dir, fetch
from .labels import LabelSet

__all__ = ["DEFAULT_MAX_BYTES", "GUARD_SUITE", "Suite", "SuiteError", "SuiteFile", "fetch_suite_file",
           "find_local_copy", "load_suite", "read_suite_file", "suite_from_manifest"]

#: The largest suite file a download may be (the largest pinned one is a few MB).
DEFAULT_MAX_BYTES = 64 << 20
#: The longest one file's download may take.
DEFAULT_MAX_SECONDS = 600.0
TASKS = ("prompt", "response")
USER_MARKER = "Human user:\n"
ASSISTANT_MARKER = "\n\nAI assistant:\n"
NO_RESPONSE = "None"
LABELS = {"harmful": True, "unharmful": False}
_ANSWER = {"prompt": re.compile(r"Request:\s*(harmful|unharmful)\b", re.IGNORECASE),
           "response": re.compile(r"Response:\s*(harmful|unharmful)\b", re.IGNORECASE)}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_FORMAT_HINT = ("Each record is {\"input\": \"Human user:\\n...\\n\\nAI assistant:\\n...\\n\\n\", \"output\": "
                "\"harmful\" or \"unharmful\"} (GuardReasoner's format)")


class SuiteError(ValueError):
    """A suite file that cannot be used as it is (missing, another version, or not the format); the message says
    which file, what is wrong and where to get the pinned copy."""


@dataclass(frozen=True)
class SuiteFile:
    """One pinned file: its short ``name`` (also its predictions' file name), the task its label is about
    (``prompt`` or ``response``), its path in the repository, its counts and sha256, its column title."""

    name: str
    task: str
    file: str
    rows: int
    harmful: int
    unharmful: int
    sha256: str
    display: str

    @property
    def basename(self) -> str:
        return self.file.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Suite:
    """A collection of pinned files in one repository at one commit."""

    name: str
    repository: str
    commit: str
    raw_url: str  # with {commit} and {file}
    files: tuple[SuiteFile, ...]

    def url(self, spec: SuiteFile) -> str:
        return self.raw_url.format(commit=self.commit, file=spec.file)

    def describe(self) -> dict:
        return {"name": self.name, "repository": self.repository, "commit": self.commit}


#: GuardReasoner's benchmark files (``/work/shared/reference/guard_suite/manifest.json``), in the column order
#: of the papers' tables: prompt sets, then response sets.
GUARD_MANIFEST = {
    "name": "guard",
    "repository": "yueliu1999/GuardReasoner",
    "commit": "bb7e686dc0535884d6994de5f950a072772e7fe2",
    "raw_url": "https://raw.githubusercontent.com/yueliu1999/GuardReasoner/{commit}/{file}",
    "files": [
        {"name": "toxicchat", "display": "ToxicChat", "task": "prompt", "file": "data/benchmark/0_8_toxic_chat.json",
         "rows": 2853, "harmful": 362, "unharmful": 2491,
         "sha256": "e386e4b202f9471e184c78ee24dd88b8700549b31b0f39aeeb9a60a9894d42de"},
        {"name": "openai-moderation", "display": "OpenAI-mod", "task": "prompt",
         "file": "data/benchmark/0_2_OpenAIModeration.json", "rows": 1680, "harmful": 522, "unharmful": 1158,
         "sha256": "e8360f628bb46d4090647868daa6d5f4227ba68c822bc5e4d0c8bc5fcd62853a"},
        {"name": "aegis", "display": "Aegis", "task": "prompt", "file": "data/benchmark/0_1_AegisSafetyTest.json",
         "rows": 359, "harmful": 232, "unharmful": 127,
         "sha256": "29b77db427a683103aa58b633b9118314debd96be2659cbac9234f2352e85bd1"},
        {"name": "simple-safety-tests", "display": "SST", "task": "prompt",
         "file": "data/benchmark/0_0_SimpleSafetyTests.json", "rows": 100, "harmful": 100, "unharmful": 0,
         "sha256": "e06d7653a304d716c75ae7f64efeb2285a689695d3cceffd299a4dcae2c8d315"},
        {"name": "harmbench-prompt", "display": "HarmBench-p", "task": "prompt",
         "file": "data/benchmark/0_3_harmbench_prompt.json", "rows": 239, "harmful": 239, "unharmful": 0,
         "sha256": "754c22fb0a7c1e28844a09b22c3f4ba0c7fde5add2f6940237766c3f5c18b65c"},
        {"name": "harmbench-response", "display": "HarmBench-r", "task": "response",
         "file": "data/benchmark/0_5_harmbench_response.json", "rows": 602, "harmful": 273, "unharmful": 329,
         "sha256": "a54573438606b19e7d4183e71c303412bc0f0143b704c393e0ffa3b9ab75d972"},
        {"name": "saferlhf", "display": "SafeRLHF", "task": "response", "file": "data/benchmark/0_9_safe_rlhf.json",
         "rows": 2000, "harmful": 1000, "unharmful": 1000,
         "sha256": "c57b79bbe3c38f6b48a8d776bd86c3b0c0ced7072ad4e19859c17cb5880ea47e"},
        {"name": "beavertails-30k-test", "display": "BeaverTails", "task": "response",
         "file": "data/benchmark/0_A_beaver_tails.json", "rows": 3021, "harmful": 1733, "unharmful": 1288,
         "sha256": "34f1e315cfeb348c63b6082dea93db67a8fd67e4fded8ccd2087cabe0a81169b"},
        {"name": "xstest-response-harmful", "display": "XSTest-r", "task": "response",
         "file": "data/benchmark/0_6_xstest_response_harmful.json", "rows": 446, "harmful": 78, "unharmful": 368,
         "sha256": "c374802e7211650252d0ff71c518823e7d3ebbb0990b9093fa619e46c9709a5b"},
    ],
}


def suite_from_manifest(manifest: object, where: str = "the manifest") -> Suite:
    """A :class:`Suite` from a manifest object (``GUARD_MANIFEST``'s shape; ``display`` optional), validated:
    its names become file names and its paths parts of URLs and cache paths."""
    if not isinstance(manifest, dict):
        raise SuiteError(f"{where}: expected a JSON object with repository, commit, raw_url and files")
    for key in ("repository", "commit", "raw_url", "files"):
        if key not in manifest:
            raise SuiteError(f"{where}: no '{key}' (a manifest has repository, commit, raw_url and files)")
    repository, commit, raw_url = (str(manifest[k]) for k in ("repository", "commit", "raw_url"))
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repository) or ".." in repository:
        raise SuiteError(f"{where}: repository {repository!r} is not OWNER/NAME")
    if not _COMMIT.fullmatch(commit):
        raise SuiteError(f"{where}: commit {commit!r} must be a full 40-hex commit (a pin, not a branch)")
    if urllib.parse.urlsplit(raw_url).scheme not in ("http", "https") or "{file}" not in raw_url:
        raise SuiteError(f"{where}: raw_url {raw_url!r} must be an http(s) URL holding {{file}} (and {{commit}})")
    files = manifest["files"]
    if not isinstance(files, list) or not files:
        raise SuiteError(f"{where}: 'files' must be a non-empty list")
    specs = tuple(_file_spec(entry, f"{where}: files[{i}]") for i, entry in enumerate(files))
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SuiteError(f"{where}: file names repeat: {repeated}")
    return Suite(str(manifest.get("name") or where), repository, commit, raw_url, specs)


def _file_spec(entry: object, where: str) -> SuiteFile:
    if not isinstance(entry, dict):
        raise SuiteError(f"{where}: expected an object")
    missing = [k for k in ("name", "task", "file", "rows", "harmful", "unharmful", "sha256") if k not in entry]
    if missing:
        raise SuiteError(f"{where}: missing {', '.join(missing)}")
    name, task, file, sha = (entry[k] for k in ("name", "task", "file", "sha256"))
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SuiteError(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-' (it names files)")
    if task not in TASKS:
        raise SuiteError(f"{where}: task {task!r} must be one of {', '.join(TASKS)}")
    parts = file.split("/") if isinstance(file, str) else [""]
    if any(p in ("", ".", "..") for p in parts) or "\\" in file:
        raise SuiteError(f"{where}: file {file!r} must be a relative path inside the repository")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise SuiteError(f"{where}: sha256 {sha!r} must be 64 lower-case hex digits")
    counts = [entry[k] for k in ("rows", "harmful", "unharmful")]
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts) or \
            counts[0] != counts[1] + counts[2] or counts[0] == 0:
        raise SuiteError(f"{where}: rows, harmful and unharmful must be counts with rows = harmful + unharmful > 0")
    display = entry.get("display", name)
    return SuiteFile(name, task, file, *counts, sha, str(display))


GUARD_SUITE = suite_from_manifest(GUARD_MANIFEST)
SUITES = {"guard": GUARD_SUITE}


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (``guard``) or a manifest file of one's own (the same JSON shape)."""
    if name_or_path in SUITES:
        return SUITES[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise SuiteError(f"--suite {name_or_path}: neither a suite name ({', '.join(SUITES)}) nor a manifest file")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{path}: not a JSON manifest ({exc})") from None
    return suite_from_manifest(manifest, str(path))


# ------------------------------------------------------------------------------------------ where the files are


def find_local_copy(data_dir: Path, spec: SuiteFile) -> Path | None:
    """``spec``'s file in ``data_dir``: by its file name, or under its repository path."""
    for candidate in (data_dir / spec.basename, data_dir / spec.file):
        if candidate.is_file():
            return candidate
    return None


def cache_path(suite: Suite, spec: SuiteFile, cache: str | Path | None = None) -> Path:
    """Where the pinned file is cached: one directory per repository and commit."""
    owner, name = suite.repository.split("/")
    return Path(cache or cache_dir()) / "guard-suite" / owner / name / suite.commit / spec.file


def fetch_suite_file(suite: Suite, spec: SuiteFile, cache: str | Path | None = None, progress: bool = False,
                     max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS) -> Path:
    """The cached pinned file, downloaded (or resumed) first when needed; no credentials are sent."""
    return fetch(suite.url(spec), cache_path(suite, spec, cache), spec.sha256, progress=progress,
                 max_bytes=max_bytes, max_seconds=max_seconds, label=f"downloading {spec.name}", token=None,
                 instead=f"put it in a directory passed as --data-dir DIR (as {spec.basename})")


def check_pinned(path: Path, suite: Suite, spec: SuiteFile) -> None:
    """Refuse a file that is not the pinned bytes: its numbers would be on other data than the papers'."""
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise SuiteError(f"{path}: sha256 {actual} is not the pinned {spec.sha256} of {spec.file} in "
                         f"{suite.repository}@{suite.commit[:12]}: another version of {spec.display}, refused. Get the "
                         f"pinned copy from {suite.url(spec)} (a cached copy: delete it and run again)")


# ------------------------------------------------------------------------------------------ reading


def read_suite_file(path: Path, spec: SuiteFile) -> tuple[Dataset | None, list[DataError]]:
    """The file's rows as a labelled :class:`~lite_moderation.data.Dataset` (is_safe only; a prompt alone where
    there is no response, so prompt sets are single messages), or None and every bad record (``path: element N
    (line L)``, as for any .json data file)."""
    records = _json_list(path)
    pairs, prompts, harmful, errors = [], [], [], []
    for i, (line, obj) in enumerate(records, 1):
        try:
            prompt, response, label = _parse_record(obj, spec.task)
        except _BadRecord as bad:
            errors.append(DataError(str(path), line, bad.field, bad.message, bad.hint, element=i))
            continue
        pairs.append((prompt, response or ""))
        prompts.append(prompt)
        harmful.append(label)
    if errors:
        return None, errors
    _check_counts(path, spec, len(pairs), sum(harmful))
    return Dataset(pairs, None, np.array(harmful, dtype=bool), list(range(1, len(pairs) + 1)), prompts,
                   str(path), LabelSet(())), []


def _json_list(path: Path) -> list[tuple[int, object]]:
    """(line it starts on, record) of each element of the file's JSON list."""
    data = file_bytes(path)  # .gz/.xz read, another compression refused, as for any data file
    try:
        elements = parse_json_array(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise not_utf8_error(path, data, exc.start + len(data) - len(exc.object)) from None  # object: after a BOM
    except json.JSONDecodeError as exc:
        raise DataError(str(path), message=f"not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})",
                        hint=_FORMAT_HINT) from None
    except ValueError as exc:  # nested too deeply, a number too long
        raise DataError(str(path), message=f"not valid JSON: {exc}", hint=_FORMAT_HINT) from None
    if not elements:
        raise DataError(str(path), message="expected a non-empty JSON list of records", hint=_FORMAT_HINT)
    return elements


class _BadRecord(Exception):
    def __init__(self, field: str | None, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.field, self.message, self.hint = field, message, hint


def _parse_record(obj: object, task: str) -> tuple[str, str | None, bool]:
    """(prompt, response or None, harmful) of one record."""
    if not isinstance(obj, dict):
        raise _BadRecord(None, f"expected an object, got {type(obj).__name__}", _FORMAT_HINT)
    for key in ("input", "output"):
        if not isinstance(obj.get(key), str):
            raise _BadRecord(key, "missing" if key not in obj else f"expected a string, got {type(obj[key]).__name__}",
                             _FORMAT_HINT)
    prompt, response = _split_input(obj["input"])
    if task == "prompt" and response is not None:
        raise _BadRecord("input", "a prompt set's record holds a response (expected 'None' after 'AI assistant:')",
                         "is this file's task 'response'?")
    if task == "response" and response is None:
        raise _BadRecord("input", "a response set's record has no response ('None' after 'AI assistant:')",
                         "is this file's task 'prompt'?")
    if not (prompt.strip() or (response or "").strip()):
        raise _BadRecord("input", "nothing to score: the prompt and the response are both empty")
    return prompt, response, _label(obj["output"], task)


def _split_input(text: str) -> tuple[str, str | None]:
    if not text.startswith(USER_MARKER):
        raise _BadRecord("input", f"does not start with {USER_MARKER!r}", _FORMAT_HINT)
    prompt, marker, rest = text[len(USER_MARKER):].partition(ASSISTANT_MARKER)
    if not marker:
        raise _BadRecord("input", f"no {ASSISTANT_MARKER.strip()!r} marker after the prompt", _FORMAT_HINT)
    response = rest.removesuffix("\n\n")
    return prompt, None if response.strip() == NO_RESPONSE else response


def _label(output: str, task: str) -> bool:
    word = output.strip().lower()
    if word in LABELS:
        return LABELS[word]
    found = _ANSWER[task].search(output)
    if found:
        return LABELS[found.group(1).lower()]
    where = "Request" if task == "prompt" else "Response"
    raise _BadRecord("output", f"unknown label {output.strip()[:80]!r}",
                     f"expected harmful or unharmful, alone or as '{where}: harmful' in an Answers block")


def _check_counts(path: Path, spec: SuiteFile, rows: int, harmful: int) -> None:
    if (rows, harmful) != (spec.rows, spec.harmful):
        raise SuiteError(f"{path}: {rows} records ({harmful} harmful), but the manifest says {spec.rows} "
                         f"({spec.harmful} harmful) for {spec.name}: is this the right file?")


def available(suite: Suite, names: Sequence[str] | None = None) -> tuple[SuiteFile, ...]:
    """The suite's files, or those named (unknown names refused)."""
    if not names:
        return suite.files
    known = {s.name: s for s in suite.files}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SuiteError(f"--set {', '.join(unknown)}: not in suite {suite.name} ({', '.join(known)})")
    return tuple(known[n] for n in names)
