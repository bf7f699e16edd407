"""Training on several sources: BeaverTails plus everyday text, each with a weight, in every input shape.

Why: BeaverTails holds only red-team prompts (57% of its answers unsafe). A model trained on it alone has
never seen ordinary conversation and flags most of it. Everyday text (labelled ``is_safe: true``, which
counts as every category false) teaches it what harmless looks like; a weight below 1 keeps it from
drowning the harm signal.

The first source is the *primary* one: its rows are the ones thresholds are tuned on and cross-validation
reports on. Every other source is trained on in every fold and never evaluated on (its rows are not the
distribution the metrics describe).

Input shapes: the product scores a (prompt, response) pair and a single message (a prompt alone or a text
alone: one shape, ``texts.single_message``). Training shows each shape (``shapes``): a pair source also yields
- with "text", its responses as single messages (the pair's labels: BeaverTails' labels judge the response),
  and its safe prompts as single messages (a prompt none of whose answers is unsafe is harmless in any shape).
  A red-team prompt is not made a message: "any answer unsafe" does not judge the words on their own, and
  measured, it taught the model that questions are unsafe (benchmarks/results/accuracy.md, Session 3);
- with "prompt", every prompt as a single message, unsafe when any of its answers is (what the previous
  shipped models did; measured in issue 20 to flag most harmless questions);
- with "prompt_categories" (and without "prompt"), each prompt with an unsafe answer as a single message that
  teaches the categories alone: those of its unsafe answers, which say what harm the request is about; its flag
  label stays unknown, for the reason above. Like a response's copy, it is not a document of the vocabulary.
A row that already is a single message (a source of messages) is shown once, as it is.
Copies made from a primary row share its prompt's group, and so does any other source's row with the same prompt
or text (case and spacing folded), so they all leave the training folds whenever that prompt is held out. A source
read with ``group=COLUMN`` groups its rows by that column instead (and a prompt in two of its groups joins them). Sources labelled only ``is_safe`` teach the unsafe head alone with their unsafe rows
(``TrainingSet.label_mask``).
"""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .data import (
    DEFAULT_MAX_RECORD_BYTES,
    Columns,
    DataError,
    Dataset,
    bounded_lines,
    load_dataset,
    parse_json_text,
    sha256_file,
)
from .labels import LabelSet
from .taxonomy import BEAVERTAILS
from .texts import group_keys

__all__ = [
    "PACKAGE_SOURCES", "SHAPES", "SourceSpec", "TrainingSet", "build_training_set", "chatterbot_conversations",
    "chatterbot_pairs", "chatterbot_turns", "chitchat_pairs", "describe_source", "parse_source", "read_source",
]

#: The input shapes training can show: the pair, the prompt alone, the text (response) alone, and the prompt alone
#: teaching its answers' categories only (see the module's docstring).
SHAPES = ("pair", "prompt", "text", "prompt_categories")

#: Sources read from an installed package instead of a file: name -> (pip package, license).
PACKAGE_SOURCES = {"pkg:chitchat-dataset": ("chitchat-dataset", "MIT"),
                   "pkg:chatterbot-corpus": ("chatterbot-corpus", "BSD-3-Clause"),
                   "pkg:chatterbot-corpus-pairs": ("chatterbot-corpus", "BSD-3-Clause")}
#: One conversation in this many of ``chatterbot-corpus`` is held out (never a training row): the harmless
#: messages in 28 languages that measure whether a model flags a language rather than a harm.
CHATTERBOT_HELDOUT_EVERY = 5

#: Licenses of known data files without a ``license`` field, by sha256.
KNOWN_LICENSES = {
    "ebc81efa924ce4faf34c984d37c16f942f19825b65e0668ccda4a884fd092b63": "CC BY-NC 4.0 (BeaverTails 30k_test)",
    "a366438c2e4cf7d0652a4fe60f72b3d32c6914dbde759564eb3d5c038b913229": "CC BY-NC 4.0 (BeaverTails-Evaluation)",
    "12f04c9200000929ebbc616c29cb53331f6df36e7341d73e4a12cffac0eb1c08": "CC BY-NC 4.0 (BeaverTails 330k_train)",
    "1c726c662b85bf4761913041fe9e098f80e5206344864597dbde86bc9a1bfc96": "CC BY-NC 4.0 (BeaverTails 330k_test)",
}

#: The largest source weight: the solver multiplies C by it, and far above this its numbers overflow (1e308: NaN).
MAX_WEIGHT = 1e6

#: A source's weights of some of its rows when they differ from ``weight`` (None: its weight); see SourceSpec.
OWN_WEIGHTS = ("pair_weight", "prompt_alone_weight")
#: The options of a source, after its file name: ``FILE,weight=0.3,rows=1000``.
SOURCE_OPTIONS = ("weight", *OWN_WEIGHTS, "rows", "shapes", "category", "group")
_OPTION = re.compile(rf"^({'|'.join(SOURCE_OPTIONS)})=(.+)$")
#: A part after a comma that reads as an option, known or not (``weigth=0.3``).
_OPTION_LIKE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)=")


@dataclass(frozen=True)
class SourceSpec:
    """One training source: a data file (or ``pkg:NAME``), its row weight, and an optional row cap.

    ``rows`` keeps a seeded random sample of that many rows (before shape copies are made). ``shapes``, when
    given, replaces the training set's shapes for this source: ``("text",)`` shows a dialogue source's turns
    as single messages only, without its pairs. ``pair_weight``, when given, is the weight of the source's
    question-answer pairs, ``weight`` then that of its single messages: a source can teach one shape more than
    the other (the shipped recipe weighs instruction and chit-chat *pairs* down, measured in
    ``benchmarks/pair_frontier.py``, and keeps their messages). ``prompt_alone_weight``, when given, is the weight
    of the messages made of its pairs' prompts (shapes ``prompt``, or ``text`` for a prompt none of whose answers is
    unsafe): a red-team prompt whose answers were all safe is often a refused harmful request, a weak "safe" message
    (measured in ``benchmarks/message_recipes.py``, variants ``*red_team_prompts*``). ``category``, for a source
    labelled only ``is_safe``, names the one category all its unsafe rows are (e.g. ``hate_speech`` for a set of
    offensive tweets): those rows then teach that category too, and stay unknown to the other categories (without
    it they teach the flag head alone). ``group`` names a column of the file whose value keeps rows in one fold
    (translations of one question, turns of one conversation; see :func:`row_groups`), instead of their prompt.
    """

    path: str
    weight: float = 1.0
    rows: int | None = None
    shapes: tuple[str, ...] | None = None
    pair_weight: float | None = None
    prompt_alone_weight: float | None = None
    category: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if self.group is not None and self.path in PACKAGE_SOURCES:
            raise ValueError(f"{self.path}: group= names a column of a data file; a package source is grouped by "
                             "its conversations already")
        if self.shapes is not None and (not self.shapes or set(self.shapes) - set(SHAPES)):
            raise ValueError(f"{self.path}: shapes must be among {SHAPES}, got {self.shapes!r}")
        for option in ("weight", *OWN_WEIGHTS):
            value = getattr(self, option)
            if value is not None and not (0 < value <= MAX_WEIGHT):
                raise ValueError(f"{self.path}: {option} must be a number above 0 and at most {MAX_WEIGHT:g} (weights "
                                 f"are relative; a larger one makes the solver overflow), got {value!r}")
        if self.rows is not None and self.rows < 1:
            raise ValueError(f"{self.path}: rows must be a positive integer, got {self.rows!r}")

    def own_weights(self) -> dict[str, float]:
        """The weights of :data:`OWN_WEIGHTS` this source sets."""
        return {option: getattr(self, option) for option in OWN_WEIGHTS if getattr(self, option) is not None}

    @property
    def name(self) -> str:
        """The name a card records: the file name (never its directory), or the package source."""
        return self.path if self.path in PACKAGE_SOURCES else Path(self.path).name

    def spec_text(self, name: str | None = None) -> str:
        """The command-line form,
        ``PATH[,weight=W][,pair_weight=P][,prompt_alone_weight=Q][,rows=N][,shapes=A+B][,category=C][,group=G]``."""
        parts = [name or self.path]
        if self.weight != 1.0:
            parts.append(f"weight={self.weight:g}")
        parts += [f"{option}={value:g}" for option, value in self.own_weights().items()]
        if self.rows is not None:
            parts.append(f"rows={self.rows}")
        if self.shapes is not None:
            parts.append(f"shapes={'+'.join(self.shapes)}")
        if self.category is not None:
            parts.append(f"category={self.category}")
        if self.group is not None:
            parts.append(f"group={self.group}")
        return ",".join(parts)


def parse_source(text: str) -> SourceSpec:
    """``PATH[,weight=W][,pair_weight=P][,prompt_alone_weight=Q][,rows=N][,shapes=A+B][,category=C][,group=G]``
    (options after the last commas) as a :class:`SourceSpec`."""
    parts = text.split(",")
    options: dict[str, str] = {}
    while len(parts) > 1 and _OPTION.match(parts[-1].strip()):
        key, value = _OPTION.match(parts.pop().strip()).groups()
        if key in options:
            raise ValueError(f"{text!r}: {key} given twice")
        options[key] = value
    path = ",".join(parts)
    if not path:
        raise ValueError(f"{text!r}: no file name before the options")
    _refuse_unknown_options(text, parts)
    try:
        weight = float(options.get("weight", 1.0))
        own = {option: float(options[option]) for option in OWN_WEIGHTS if option in options}
        rows = int(options["rows"]) if "rows" in options else None
    except ValueError:
        raise ValueError(f"{text!r}: weight, {', '.join(OWN_WEIGHTS)} must be numbers and rows an integer") from None
    shapes = tuple(options["shapes"].split("+")) if "shapes" in options else None
    return SourceSpec(path, weight, rows, shapes, **own, category=options.get("category"),
                      group=options.get("group"))


def _refuse_unknown_options(text: str, parts: list[str]) -> None:
    """A trailing ``,key=value`` that is no option (``comments.csv,weigth=0.3``) is a misspelt option, not part of
    the file name, unless the whole name is a file (a name may hold commas): refused naming the options, instead of
    a "no such file" that hides the typo. When the name without it is no file either, the message says both."""
    def exists(name: str) -> bool:
        return name in PACKAGE_SOURCES or Path(name).exists()

    if exists(",".join(parts)):
        return
    rest, unknown = list(parts), []
    while len(rest) > 1 and (like := _OPTION_LIKE.match(rest[-1].strip())):
        rest.pop()
        if like.group(1) not in SOURCE_OPTIONS:
            unknown.insert(0, like.group(1))
        if exists(",".join(rest)):
            break
    if not unknown:
        return
    import difflib

    named = ", ".join(repr(key) + "".join(f" (did you mean {close!r}?)" for close in
                                          difflib.get_close_matches(key, SOURCE_OPTIONS, n=1)) for key in unknown)
    file = ",".join(rest)
    found = "" if exists(file) else f"; or, if {','.join(parts)!r} is one file name: no such file"
    raise ValueError(f"{text!r}: unknown option{'s' if len(unknown) > 1 else ''} {named} after the file name {file!r}; "
                     f"the options are {', '.join(SOURCE_OPTIONS)}{found}")


def _package_module(source: str, module: str, pin: str, also: tuple[str, ...] = ()) -> Any:
    """The installed module a package source reads (and the modules ``also`` it needs), or a DataError saying
    what to install."""
    package = pin.split("==")[0]
    try:
        for name in also:
            importlib.import_module(name)
        return importlib.import_module(module)
    except ImportError as error:
        missing = (error.name or module).split(".")[0]
        what = f"the package {package}" if missing == module.split(".")[0] else f"{missing}, which {package} needs,"
        raise DataError(source, message=f"{what} is not installed", hint=f"pip install 'lite-moderation[everyday]' "
                        f"({pin}, the version the shipped models were trained with)") from None


def chitchat_pairs() -> list[tuple[str, str, str]]:
    """(conversation id, message, reply) for every pair of consecutive messages of ``chitchat-dataset``.

    A message is one speaker's utterances joined by spaces. Read from the package's own JSON file, so the
    same pairs come out on every machine where the package is installed.
    """
    chitchat_dataset = _package_module("pkg:chitchat-dataset", "chitchat_dataset", "chitchat-dataset==0.9.0")
    path = Path(chitchat_dataset.__file__).parent / "dataset.json"
    with open(path, encoding="utf-8") as fh:
        conversations = json.load(fh)
    pairs = []
    for conv_id in sorted(conversations):
        messages = [" ".join(u["text"] for u in message) for message in conversations[conv_id]["messages"]]
        messages = [" ".join(m.split()) for m in messages]
        pairs.extend((conv_id, a, b) for a, b in itertools.pairwise(messages) if a and b)
    return pairs


def chatterbot_conversations(heldout: bool = False) -> list[tuple[str, str, list[str]]]:
    """(name, language, turns) of every conversation of ``chatterbot-corpus`` (short harmless exchanges with a
    chatbot, 28 languages) in its training part or (``heldout``) its held-out part.

    Why here: the split is one decision, read by training (``pkg:chatterbot-corpus`` is the training part, see
    :func:`chatterbot_turns`) and by the benchmarks (the held-out part). A conversation is named by its file and
    position, so its translations share a name and a part.
    """
    return [(name, language, list(turns)) for name, language, held, turns in _chatterbot_corpus() if held == heldout]


@functools.lru_cache(maxsize=1)
def _chatterbot_corpus() -> tuple[tuple[str, str, bool, tuple[str, ...]], ...]:
    """Every conversation of the installed corpus with its part, parsed once per process (its YAML files take about
    1.4 s, and a training set or a benchmark reads both parts several times)."""
    chatterbot_corpus = _package_module("pkg:chatterbot-corpus", "chatterbot_corpus", "chatterbot-corpus==1.3.3",
                                        also=("yaml",))
    import yaml

    root = Path(chatterbot_corpus.__file__).parent / "data"
    conversations = []
    for path in sorted(root.glob("*/*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for k, conversation in enumerate(doc.get("conversations") or []):
            name = f"{path.stem}/{k}"
            turns = tuple(" ".join(t.split()) for t in conversation or [] if isinstance(t, str))
            if any(turns):
                held = zlib.crc32(name.encode()) % CHATTERBOT_HELDOUT_EVERY == 0
                conversations.append((name, path.parent.name, held, tuple(t for t in turns if t)))
    return tuple(conversations)


def chatterbot_turns(heldout: bool = False) -> list[tuple[str, str, str]]:
    """(conversation, language, text) of every distinct turn of a part of ``chatterbot-corpus`` (see
    :func:`chatterbot_conversations`); a text of the held-out part is never one of the training part."""
    def distinct(part: list) -> dict[str, tuple[str, str]]:
        turns: dict[str, tuple[str, str]] = {}
        for name, language, texts in part:
            for text in texts:
                turns.setdefault(text, (name, language))
        return turns

    chosen = distinct(chatterbot_conversations(heldout))
    if not heldout:
        held = distinct(chatterbot_conversations(heldout=True))
        chosen = {t: v for t, v in chosen.items() if t not in held}
    return [(name, language, text) for text, (name, language) in chosen.items()]


def chatterbot_pairs() -> list[tuple[str, str, str]]:
    """(conversation, turn, next turn) of every distinct pair of consecutive turns of ``chatterbot-corpus``'s
    training part, leaving out any pair holding a text of the held-out part (see :func:`chatterbot_conversations`)."""
    held = {text for _, _, text in chatterbot_turns(heldout=True)}
    pairs: dict[tuple[str, str], str] = {}
    for name, _, turns in chatterbot_conversations():
        for a, b in itertools.pairwise(turns):
            if a not in held and b not in held:
                pairs.setdefault((a, b), name)
    return [(name, a, b) for (a, b), name in pairs.items()]


def _package_rows(name: str) -> list[tuple[str, str, str]]:
    """(group, prompt, response) of every row of a package source (response "": a message alone), all harmless."""
    readers = {"pkg:chatterbot-corpus": lambda: [(conv, text, "") for conv, _, text in chatterbot_turns()],
               "pkg:chatterbot-corpus-pairs": chatterbot_pairs, "pkg:chitchat-dataset": chitchat_pairs}
    if name not in readers:
        raise DataError(name, message=f"unknown package source: expected one of {sorted(PACKAGE_SOURCES)}")
    try:
        return readers[name]()
    except DataError as error:  # name the source the user gave (two sources read one package)
        raise DataError(name, message=error.message, hint=error.hint) from None


def _package_dataset(name: str) -> tuple[Dataset, list[str]]:
    """A package source as a Dataset of safe rows (pairs, or messages alone), with its conversations as groups."""
    rows = _package_rows(name)
    pairs = [(a, b) for _, a, b in rows]
    n = len(pairs)
    # every row safe: a binary source, which fits beside any label set (every category false)
    dataset = Dataset(pairs, None, np.zeros(n, bool), list(range(1, n + 1)), [a for a, _ in pairs], name, LabelSet(()))
    return dataset, [conv for conv, _, _ in rows]


def read_source(spec: SourceSpec, on_error: str = "fail", errors: list[DataError] | None = None,
                primary: bool = False, columns: Columns | None = None,
                max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> tuple[Dataset, list[str]]:
    """The rows of one source and a group key per row (its prompt, its ``group=`` column's value, see
    :func:`row_groups`, or its conversation for packages).

    ``columns`` names the user's own text and label fields. The primary source's labels are the model's: the
    BeaverTails categories (on every row, or none: is_safe alone makes a binary model), or the user's own. Other
    sources must have the same labels, or be labelled only ``is_safe`` (or one boolean column): a safe row then
    has every category false, an unsafe one teaches the flag head only (see :func:`categories_known`).
    """
    if spec.path in PACKAGE_SOURCES:
        return _package_dataset(spec.path)
    dataset = load_dataset(spec.path, on_error=on_error, errors=errors, require="labels",
                           columns=source_columns(spec, columns), max_record_bytes=max_record_bytes)
    if primary and dataset.categories is None and dataset.labels.categories:
        raise DataError(dataset.path, field="category", message="some rows have the 14 categories and others do not",
                        hint="Give every row of the first source its 'category' object, or none (is_safe alone "
                             "trains a binary model).")
    return dataset, row_groups(dataset)


def source_columns(spec: SourceSpec, columns: Columns | None) -> Columns | None:
    """The columns a source's file is read with: the command's, and the source's own ``group=`` column."""
    if spec.group is None:
        return columns
    return replace(columns or Columns(), group=spec.group)


def row_groups(dataset: Dataset) -> list[str]:
    """Each row's fold group: its prompt (its text when alone), or with a group column its group, merged with every
    other group holding one of its prompts, so a prompt the column splits cannot sit on both sides of a fold."""
    texts = group_keys(dataset.pairs)
    if dataset.groups is None:
        return texts
    return _linked_groups(dataset.groups, texts)


def _linked_groups(groups: Sequence[str], texts: Sequence[str]) -> list[str]:
    """``groups``, each replaced by the smallest group it shares a text with, transitively (union-find); the same
    values when no text is in two groups."""
    parent: dict[str, str] = {g: g for g in groups}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first_group: dict[str, str] = {}
    for group, text in zip(groups, texts):
        a, b = root(group), root(first_group.setdefault(text, group))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [root(g) for g in groups]


def reconcile(primary: LabelSet, dataset: Dataset) -> Dataset:
    """``dataset`` under the primary source's labels: the same labels, or a binary source (is_safe alone, or every
    row safe), whose categories are then all false (its unsafe rows teach the flag head alone). Other label sets
    are refused: their categories cannot be mapped onto the model's."""
    if dataset.labels.names == primary.names and dataset.categories is not None:
        return dataset
    if dataset.categories is None or not dataset.labels.categories:
        return replace(dataset, categories=np.zeros((len(dataset), len(primary.categories)), bool), labels=primary)
    raise DataError(dataset.path, message=f"its labels {_label_list(dataset.labels)} differ from the first source's "
                    f"{_label_list(primary)}",
                    hint="A further source needs the first source's labels, or is_safe alone (it then trains the flag "
                         "head only). Map its columns to the same labels, or train it on its own.")


def _label_list(labels: LabelSet) -> str:
    names = list(labels.names)
    return str(names[:8])[:-1] + (f", ... ({len(names)} labels)]" if len(names) > 8 else "]")


def categories_known(dataset: Dataset) -> np.ndarray:
    """(n, categories) bool: which categories of each row are known. A safe row has none; an unsafe row with no
    category (a source labelled only ``is_safe``) says nothing of which harm it is, so it trains the unsafe head
    alone."""
    categories = dataset.categories if dataset.categories is not None else np.zeros((len(dataset), 0), bool)
    row_known = ~dataset.unsafe_labels() | categories.any(axis=1)
    return np.repeat(row_known[:, None], categories.shape[1], axis=1)


def with_source_category(spec: SourceSpec, dataset: Dataset, binary: bool) -> tuple[Dataset, np.ndarray]:
    """``dataset`` (already under the primary's labels) and its known categories (:func:`categories_known`), its
    unsafe rows labelled ``spec.category`` when the source names one: that category known, the others not.
    ``binary``: the source itself was labelled only ``is_safe`` (a category option on one with its own is refused)."""
    if spec.category is None:
        return dataset, categories_known(dataset)
    labels = dataset.labels
    matches = [j for j, name in enumerate(labels.categories) if spec.category in (name, labels.short_name(name))]
    if not binary or not matches:
        choices = ", ".join(labels.short_name(name) for name in labels.categories) or "none: a binary model"
        problem = ("its rows have categories of their own" if not binary
                   else f"{spec.category!r} is not one of the model's categories ({choices})")
        raise DataError(spec.path, field="category", message=f"category={spec.category}: {problem}",
                        hint="category= names the one category of a source labelled only is_safe")
    j = matches[0]
    unsafe = dataset.unsafe_labels()
    categories = dataset.categories.copy()
    categories[unsafe, j] = True
    known = np.ones(categories.shape, bool)
    known[unsafe] = False
    known[unsafe, j] = True
    return replace(dataset, categories=categories), known


@dataclass
class TrainingSet:
    """Rows of every source, ready for ``ModerationClassifier.fit``: pairs, labels, weights, groups, and
    which rows are the primary source's pairs (tuned and evaluated on)."""

    pairs: list
    Y: np.ndarray
    weights: np.ndarray
    groups: np.ndarray
    primary: np.ndarray
    source_of_row: np.ndarray
    line_of_row: np.ndarray
    response_copy: np.ndarray
    sources: list[dict] = field(default_factory=list)
    label_mask: np.ndarray | None = None
    labels: LabelSet = BEAVERTAILS
    has_categories: bool = True
    shapes: tuple[str, ...] = ("pair",)
    vocabulary_from: str = "all"
    grouped_by: str = "prompt"  # what keeps the first source's rows in one fold: "prompt" or "column 'NAME'"

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> TrainingSet:
        """One labelled Dataset as a single-source set (categories all false when it has only is_safe), its folds
        grouped by prompt, or by its group column when it was read with one (see :func:`row_groups`)."""
        from .model import prompt_groups  # scikit-learn: only when training

        unsafe = dataset.unsafe_labels()
        n_cat = len(dataset.labels.categories)
        categories = dataset.categories if dataset.categories is not None else np.zeros((len(unsafe), n_cat), bool)
        n = len(dataset)
        groups = prompt_groups(dataset.pairs) if dataset.groups is None else _group_ids(row_groups(dataset))
        return cls(pairs=list(dataset.pairs), Y=np.column_stack([categories, unsafe]).astype(bool),
                   weights=np.ones(n), groups=groups, primary=np.ones(n, bool),
                   source_of_row=np.zeros(n, np.intp), line_of_row=np.asarray(dataset.lines, np.int64),
                   response_copy=np.zeros(n, bool), labels=dataset.labels,
                   has_categories=dataset.categories is not None and n_cat > 0,
                   grouped_by=grouped_by(dataset.group_column))

    def __len__(self) -> int:
        return len(self.pairs)

    def fit_params(self, rows: np.ndarray | None = None) -> dict:
        """Keyword arguments of ``fit`` for all rows or the rows ``rows``."""
        take = slice(None) if rows is None else rows
        params = {"groups": self.groups[take], "sample_weight": self.weights[take],
                  "tuning_rows": self.tuning_rows()[take]}
        if self.response_copy.any() or self.vocabulary_from != "all":
            params["vocabulary_rows"] = self.vocabulary_rows()[take]
        if self.label_mask is not None and not self.label_mask.all():
            params["label_mask"] = self.label_mask[take]
        return params

    def tuning_rows(self) -> np.ndarray:
        """Rows thresholds are tuned on: every row, in grouped folds, each shape's cut-offs on its own rows (pairs
        of every source, messages of every source), each row counting its source's weight. Why not the primary
        source alone: its red-team pairs are 57% unsafe, and a cut-off tuned there flags too much of real
        traffic, which is mostly harmless (measured in issue 20: XSTest FPR 0.44 -> 0.27)."""
        return np.ones(len(self.pairs), dtype=bool)

    def vocabulary_rows(self) -> np.ndarray:
        """Rows the vocabulary and idf are learned from: of every source ("all"), the first ("first"), or the
        sources holding unsafe rows ("harmful": the harm vocabulary; all-safe sources then only teach weights).
        A response's text-alone copy never counts (nor a prompt's copy made by the "prompt_categories" shape): it
        would give every response's terms a second document, so min_df would keep terms seen in one answer only (and
        idf would halve their rarity)."""
        rows = ~self.response_copy
        if self.vocabulary_from == "first":
            return rows & (self.source_of_row == 0)
        if self.vocabulary_from == "harmful":
            return rows & np.isin(self.source_of_row, np.unique(self.source_of_row[self.Y[:, -1]]))
        return rows

    def subset(self, rows: np.ndarray) -> tuple[list, np.ndarray]:
        """Pairs and labels of ``rows``."""
        return [self.pairs[i] for i in rows], self.Y[rows]


def _group_ids(keys: Sequence[str]) -> np.ndarray:
    """Group ids in sorted order of the keys (as ``model.prompt_groups`` numbers prompts)."""
    rank = {key: i for i, key in enumerate(sorted(set(keys)))}
    return np.fromiter(map(rank.__getitem__, keys), dtype=np.intp, count=len(keys))


def grouped_by(column: str | None) -> str:
    """What a card says keeps rows in one fold: "prompt", or the group column."""
    return "prompt" if column is None else f"column {column!r}"


def build_training_set(sources: Sequence[SourceSpec], shapes: Sequence[str] = ("pair",), seed: int = 0,
                       on_error: str = "fail", errors: list[DataError] | None = None,
                       datasets: Sequence[Dataset] | None = None, columns: Columns | None = None,
                       max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> TrainingSet:
    """Read every source (the first is the primary one), sample, weigh and expand it to ``shapes``.

    ``datasets`` passes already loaded data for the sources (same order), e.g. from the Python API. ``columns``
    names the user's text and label fields in every source file. The first source's labels are the model's
    (see :func:`reconcile` for what the others may have). ``max_record_bytes``: longer lines are bad records (see
    :func:`~lite_moderation.data.read_records`).
    """
    unknown = set(shapes) - set(SHAPES)
    if unknown or not shapes:
        raise ValueError(f"shapes must be among {SHAPES}, got {tuple(shapes)}")
    if not sources:
        raise ValueError("at least one source is needed")
    builder = _Builder(shapes)
    for k, spec in enumerate(sources):
        if datasets is not None:
            dataset, keys = datasets[k], row_groups(datasets[k])
        else:
            dataset, keys = read_source(spec, on_error, errors, primary=k == 0, columns=columns,
                                        max_record_bytes=max_record_bytes)
        if k == 0:
            builder.labels = dataset.labels
            builder.grouped_by = grouped_by(dataset.group_column)
            _check_primary_shapes(spec, dataset, shapes)
        binary = dataset.categories is None or not dataset.labels.categories
        dataset, known = with_source_category(spec, reconcile(builder.labels, dataset), binary)
        keep = _sample(len(dataset), spec.rows, seed + k)
        builder.add(k, spec, dataset, keys, keep, known)
    return builder.finish()


def _check_primary_shapes(spec: SourceSpec, dataset: Dataset, shapes: Sequence[str]) -> None:
    """The first source's rows are evaluated on as they are: a source of pairs must show its pairs (a source of
    single texts has no other shape: any shapes do)."""
    has_pairs = any(not isinstance(p, str) and p[0] and p[1] for p in dataset.pairs)
    if has_pairs and "pair" not in (spec.shapes or shapes):
        raise ValueError(f"{spec.path}: the first source's pairs are tuned and evaluated on: its shapes must "
                         "include 'pair'")


def _sample(n: int, rows: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded random sample of ``rows`` of ``n`` rows (all rows, in order, without a cap)."""
    if rows is None or rows >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))


class _Builder:
    """Accumulates the rows of a TrainingSet source by source."""

    def __init__(self, shapes: Sequence[str]) -> None:
        self.shapes = tuple(shapes)
        self.labels = BEAVERTAILS  # the primary source's, set when it is added
        self.grouped_by = "prompt"
        self.pairs: list = []
        self.Y: list[np.ndarray] = []
        self.weights: list[float] = []
        self.group_keys: list[tuple[int, str]] = []
        self.primary: list[bool] = []
        self.source_of_row: list[int] = []
        self.lines: list[int] = []
        self.response_copy: list[bool] = []
        self.known: list[np.ndarray] = []  # per row, which of its labels are known (categories, then the flag)
        self.sources: list[dict] = []
        self.primary_groups: dict[str, tuple[int, str]] = {}  # a primary prompt, case and spacing folded -> group

    def _append(self, pair: object, y: np.ndarray, k: int, weight: float, group: tuple[int, str],
                primary: bool, line: int, response_copy: bool = False, known: np.ndarray | None = None,
                flag_known: bool = True) -> None:
        """``known``: which of the row's categories are known (all when None); ``flag_known``: its flag label."""
        self.pairs.append(pair)
        self.known.append(np.append(np.ones(len(y) - 1, bool) if known is None else known, flag_known))
        self.lines.append(line)
        self.response_copy.append(response_copy)
        self.Y.append(y)
        self.weights.append(weight)
        self.group_keys.append(group)
        self.primary.append(primary)
        self.source_of_row.append(k)

    def add(self, k: int, spec: SourceSpec, dataset: Dataset, keys: list[str], keep: np.ndarray,
            known: np.ndarray) -> None:
        """Rows ``keep`` of one source and their shape copies; ``known``: which categories of each row are known."""
        Y = np.column_stack([dataset.categories, dataset.categories.any(axis=1)])
        if dataset.unsafe is not None:
            Y[:, -1] |= dataset.unsafe
        # primary rows and their copies group by prompt text; other sources by their own key, except rows whose
        # prompt (or text) is one of the primary's: they join its group, so a held-out prompt leaves the
        # training folds with every copy of it, whichever source holds it (else CV scores memorised rows)
        if k == 0:
            texts = keys if dataset.groups is None else group_keys(dataset.pairs)
            for i in keep:
                self.primary_groups.setdefault(_fold_key(texts[i]), (0, keys[i]))

        def group_of(i: int) -> tuple[int, str]:
            if k == 0:
                return 0, keys[i]
            pair = dataset.pairs[i]
            text = pair if isinstance(pair, str) else pair[0] or pair[1]
            return self.primary_groups.get(_fold_key(text), (k, keys[i]))

        before = len(self.pairs)
        shapes = spec.shapes or self.shapes
        pairs_shown = "pair" in shapes
        prompt_labels: dict[str, np.ndarray] = {}
        prompt_known: dict[str, np.ndarray] = {}
        first_row: dict[str, int] = {}  # a prompt's copies take the group and line of its first row
        given_alone: set[str] = set()
        for i in keep:
            pair = dataset.pairs[i]
            prompt, response = ("", pair) if isinstance(pair, str) else pair
            if pairs_shown or not (prompt and response):
                weight = spec.pair_weight if prompt and response and spec.pair_weight is not None else spec.weight
                self._append((prompt, response), Y[i], k, weight, group_of(i), k == 0, dataset.lines[i],
                             known=known[i])
            if not prompt:  # a text alone: no other shape to show
                continue
            if not response:
                given_alone.add(prompt)
            prompt_labels[prompt] = prompt_labels.get(prompt, Y[i]) | Y[i]
            prompt_known[prompt] = prompt_known.get(prompt, known[i]) & known[i]
            first_row.setdefault(prompt, i)
            # a copy, unless the pair itself is not shown; none of a blank response (nothing to score: fit refuses it)
            if response.strip() and "text" in shapes:
                self._append(("", response), Y[i], k, spec.weight, group_of(i), False, dataset.lines[i],
                             pairs_shown, known[i])
        alone_weight = spec.weight if spec.prompt_alone_weight is None else spec.prompt_alone_weight
        for prompt, y in prompt_labels.items():
            i = first_row[prompt]
            # already a message of its own (a copy would count it twice), or blank (nothing to score: fit refuses it)
            if prompt in given_alone or not prompt.strip():
                continue
            if "prompt" in shapes:
                self._append((prompt, ""), y, k, alone_weight, group_of(i), False, dataset.lines[i],
                             known=prompt_known[prompt])
            if "text" in shapes and not y.any() and "prompt" not in shapes:
                self._append(("", prompt), y, k, alone_weight, group_of(i), False, dataset.lines[i])
            if "prompt_categories" in shapes and "prompt" not in shapes and (y[:-1] & prompt_known[prompt]).any():
                self._append((prompt, ""), y, k, alone_weight, group_of(i), False, dataset.lines[i],
                             response_copy=pairs_shown, known=prompt_known[prompt], flag_known=False)
        recorded = {**spec.own_weights(), **({"category": spec.category} if spec.category else {}),
                    **({"group": spec.group} if spec.group else {})}
        self.sources.append(describe_source(spec.path, len(dataset), len(keep), len(self.pairs) - before, spec.weight,
                                            recorded))

    def finish(self) -> TrainingSet:
        width = len(self.labels)
        ids: dict[tuple[int, str], int] = {key: i for i, key in enumerate(sorted(set(self.group_keys)))}
        return TrainingSet(
            pairs=self.pairs,
            Y=np.array(self.Y, dtype=bool).reshape(len(self.pairs), width),
            weights=np.array(self.weights, dtype=np.float64),
            groups=np.fromiter(map(ids.__getitem__, self.group_keys), dtype=np.intp, count=len(self.group_keys)),
            primary=np.array(self.primary, dtype=bool),
            source_of_row=np.array(self.source_of_row, dtype=np.intp),
            line_of_row=np.array(self.lines, dtype=np.int64),
            response_copy=np.array(self.response_copy, dtype=bool),
            sources=self.sources,
            label_mask=np.array(self.known, dtype=bool).reshape(len(self.known), width),
            shapes=self.shapes, labels=self.labels, has_categories=width > 1, grouped_by=self.grouped_by,
        )


def _fold_key(text: str) -> str:
    """A prompt as the leak check compares it (``model.hash_prompts``): case and whitespace folded."""
    return " ".join(text.split()).lower()


def describe_source(path: str, rows_in_source: int, sampled: int, rows: int, weight: float = 1.0,
                    options: dict[str, float | str] | None = None) -> dict:
    """What a model card records of a source: name (never its directory), sha256 or package version, rows,
    weight (and ``options``, e.g. ``pair_weight`` or ``category``, when it sets them, see :class:`SourceSpec`) and license (from the records' ``license`` field, the package, or the known BeaverTails files)."""
    is_file = path not in PACKAGE_SOURCES and os.path.isfile(path)
    package = PACKAGE_SOURCES.get(path)
    sha = sha256_file(path) if is_file else None
    if package:
        license_text = package[1]
    else:
        license_text = KNOWN_LICENSES.get(sha or "") or (_file_license(path) if is_file else None)
    entry = {
        "name": path if package else Path(path).name,
        "sha256": sha,
        "package": _package_version(package[0]) if package else None,
        "rows_in_source": rows_in_source,
        "rows_sampled": sampled,
        "training_rows": rows,
        "weight": weight,
        "license": license_text,
    }
    return {**entry, **(options or {})}


def _package_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{package}=={version(package)}"
    except PackageNotFoundError:
        return None


def _file_license(path: str) -> str | None:
    """The ``license`` field(s) a data file's JSONL records carry (the shared everyday files do), if any."""
    found: set[str] = set()
    try:
        with open(path, "rb") as fh:
            for line in bounded_lines(fh, DEFAULT_MAX_RECORD_BYTES):
                try:
                    value = parse_json_text(line).get("license")
                except (ValueError, AttributeError):  # also a deeply nested or overlong line
                    return None
                if isinstance(value, str):
                    found.add(value)
    except (OSError, UnicodeDecodeError):
        return None
    return "; ".join(sorted(found)) or None
