"""Exact explanations of verdicts: each label's logit as its intercept plus one term per n-gram of the input.

A linear model over TF-IDF features can say exactly why it scored something: the logit of a label is
``intercept + sum_t weight_t * tfidf_t``, where ``tfidf_t`` is the n-gram's value after its block's
normalisation. :class:`Explainer` recomputes those terms with its own offset-aware analysers (the same
lowercasing, token pattern, word n-grams and ``char_wb`` n-grams as scikit-learn's), so every contribution
also says where it comes from: the block's field, the n-gram, and its character spans in the original
prompt or response. The contributions plus the intercept equal the model's logit to within 1e-9.

It is built from a model's fitted parts only (vocabulary, idf, TF-IDF settings, weights, intercepts,
thresholds), read with json and numpy (:func:`lite_moderation.persistence.read_parts`) or taken from a fitted
:class:`~lite_moderation.model.ModerationClassifier`, so explaining never imports scikit-learn.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .labels import LabelSet, label_set_of
from .normalize import check_normalization, normalized_positions
from .taxonomy import sigmoid
from .texts import JOINT_SEPARATOR, field_text, message_rows, split_fields
from .thresholds import cut_offs, message_cut_offs, set_message_cut_offs

if TYPE_CHECKING:
    from .fast import FastScorer
    from .model import ModerationClassifier

__all__ = ["Explainer", "explain", "explainer_for", "model_parts", "resolve_labels", "table_reasons", "top_reasons"]

#: Distinct words whose char_wb n-grams are cached per block (a full cache is emptied and refilled).
WORD_CACHE_SIZE = 100_000
#: Bytes those cached n-grams may hold per block before the cache is emptied: a count of words alone let a
#: few huge words hold hundreds of MB.
WORD_CACHE_BYTES = 32 << 20
#: Longer words are not cached at all (rarely repeated, and each would hold megabytes of n-gram ints).
CACHED_WORD_CHARS = 256
_PROMPT_FIELDS = {"prompt", "pair_prompt", "lone_prompt"}
_RESPONSE_FIELDS = {"response", "pair_response", "lone_text"}


# ------------------------------------------------------------------------------------------------ offsets


def _lowered(text: str, lowercase: bool) -> tuple[str, list[int] | None]:
    """The text the analyser reads, and where each of its positions sits in ``text`` (None: the same place).

    ``str.lower`` keeps the length of every character but a few (U+0130 becomes two); then each character's
    lowercase length maps positions back (one more entry maps the end of the text).
    """
    if not lowercase:
        return text, None
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered, None
    back = [i for i, char in enumerate(text) for _ in range(len(char.lower()))]
    if len(back) != len(lowered):  # pragma: no cover - no such Unicode rule is known
        raise ValueError("cannot map lowercased positions back to the text")
    return lowered, [*back, len(text)]


def _original_span(back: list[int], start: int, end: int) -> tuple[int, int]:
    """A span of the lowercased text as a span of the original one."""
    return back[start], (back[end - 1] + 1 if end > start else back[start])


class _WordBlock:
    """scikit-learn's word analyser (lowercase, token pattern, word n-grams), with each n-gram's span."""

    def __init__(self, settings: dict, vocabulary: dict[str, int]) -> None:
        pattern = re.compile(settings["token_pattern"])
        if pattern.groups:
            raise ValueError("explanations support token patterns without capture groups only")
        self.finditer = pattern.finditer
        self.lowercase = bool(settings["lowercase"])
        self.min_n, self.max_n = settings["ngram_range"]
        self.vocabulary = vocabulary

    def occurrences(self, text: str, source: str | None,
                    max_spans: int | None = None) -> tuple[list[int], list[int], list[list[tuple]]]:
        """The column of every in-vocabulary n-gram of ``text``, how often it occurs, and the spans (``source``,
        start, end) of its first ``max_spans`` occurrences (None: all)."""
        lowered, back = _lowered(text, self.lowercase)
        matches = list(self.finditer(lowered))
        tokens = [m.group() for m in matches]
        get = self.vocabulary.get
        found: dict[int, list[tuple]] = {}
        counts: dict[int, int] = {}
        for n in range(self.min_n, min(self.max_n, len(tokens)) + 1):
            for i in range(len(tokens) - n + 1):
                column = get(tokens[i] if n == 1 else " ".join(tokens[i:i + n]))
                if column is None:
                    continue
                counts[column] = counts.get(column, 0) + 1
                spans = found.setdefault(column, [])
                if max_spans is None or len(spans) < max_spans:
                    start, end = matches[i].start(), matches[i + n - 1].end()
                    if back is not None:
                        start, end = _original_span(back, start, end)
                    spans.append((source, start, end))
        return list(found), list(counts.values()), list(found.values())


class _CharWbBlock:
    """scikit-learn's ``char_wb`` analyser: n-grams of each whitespace-separated word padded with spaces.

    A word's n-grams (column, start, end within the word) are computed once per distinct word of up to
    ``CACHED_WORD_CHARS`` characters, and kept for up to ``WORD_CACHE_SIZE`` words or ``WORD_CACHE_BYTES``
    bytes (then the cache is emptied).
    """

    _WORDS = re.compile(r"\S+")  # the words str.split() makes (same whitespace class)

    def __init__(self, settings: dict, vocabulary: dict[str, int]) -> None:
        self.lowercase = bool(settings["lowercase"])
        self.min_n, self.max_n = settings["ngram_range"]
        self.vocabulary = vocabulary
        self.cache: dict[str, tuple[tuple[int, ...], ...]] = {}
        self.cache_bytes = 0  # what the cache holds, about (see _grams_bytes)

    def word_grams(self, word: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Columns, starts and ends in the word of its in-vocabulary n-grams, in ``_char_wb_ngrams`` order
        (tuples of ints: the garbage collector stops tracking them)."""
        padded = " " + word + " "
        size, length = len(padded), len(word)
        get = self.vocabulary.get
        grams = []
        for n in range(self.min_n, self.max_n + 1):
            offset = 0
            column = get(padded[0:n])
            if column is not None:
                grams.append((column, 0, min(n - 1, length)))
            while offset + n < size:
                offset += 1
                column = get(padded[offset:offset + n])
                if column is not None:
                    grams.append((column, offset - 1, min(offset + n - 1, length)))
            if offset == 0:  # a word shorter than n counts once
                break
        return tuple(g[0] for g in grams), tuple(g[1] for g in grams), tuple(g[2] for g in grams)

    def _grams(self, word: str) -> tuple[tuple[int, ...], ...]:
        """``word_grams(word)``, from the cache or computed and cached."""
        grams = self.cache.get(word)
        if grams is None:
            grams = self.word_grams(word)
            if len(word) > CACHED_WORD_CHARS:
                return grams
            if len(self.cache) >= WORD_CACHE_SIZE or self.cache_bytes > WORD_CACHE_BYTES:
                self.cache.clear()
                self.cache_bytes = 0
            self.cache[word] = grams
            self.cache_bytes += _grams_bytes(word, grams)
        return grams

    def occurrences(self, text: str, source: str | None,
                    max_spans: int | None = None) -> tuple[list[int], list[int], list[list[tuple]]]:
        lowered, back = _lowered(text, self.lowercase)
        columns: list[int] = []
        lefts: list[int] = []
        rights: list[int] = []
        starts: list[int] = []
        for match in self._WORDS.finditer(lowered):
            grams = self._grams(match.group())
            columns += grams[0]
            lefts += grams[1]
            rights += grams[2]
            starts += [match.start()] * len(grams[0])
        if not columns:
            return [], [], []
        # group the occurrences by column with a few array operations, then cut one list of spans per column
        cols = np.array(columns)
        order = np.argsort(cols, kind="stable")
        sorted_cols = np.take(cols, order)
        firsts = np.flatnonzero(np.r_[True, sorted_cols[1:] != sorted_cols[:-1]])
        counts = np.diff(firsts, append=len(cols))
        if max_spans is not None:  # only the first max_spans occurrences of each column get a span
            rank = np.arange(len(cols)) - np.repeat(firsts, counts)
            order = order[rank < max_spans]
            firsts = np.cumsum(np.minimum(counts, max_spans)) - np.minimum(counts, max_spans)
        offsets = np.take(np.array(starts), order)
        begin = np.take(np.array(lefts), order) + offsets
        end = np.take(np.array(rights), order) + offsets
        if back is not None:
            mapped = np.array(back)
            begin, end = np.take(mapped, begin), np.where(end > begin, np.take(mapped, end - 1) + 1, np.take(mapped, begin))
        spans = list(zip(itertools.repeat(source), begin.tolist(), end.tolist()))
        bounds = [*firsts.tolist(), len(spans)]
        return (np.take(sorted_cols, np.cumsum(counts) - counts).tolist(), counts.tolist(),
                [spans[i:j] for i, j in itertools.pairwise(bounds)])


def _grams_bytes(word: str, grams: tuple[tuple[int, ...], ...]) -> int:
    """About what one cached word holds: the word, three tuples (their ints are small, shared) and an entry."""
    return len(word) + 3 * (56 + 8 * len(grams[0])) + 200


def _analyser(settings: dict, vocabulary: dict[str, int]) -> _WordBlock | _CharWbBlock:
    """The offset-aware analyser of a block, or a ValueError for settings it does not reproduce."""
    unsupported = [key for key in ("preprocessor", "tokenizer", "strip_accents", "stop_words")
                   if settings.get(key) is not None]
    if settings.get("input", "content") != "content":
        unsupported.append("input")
    if settings["analyzer"] not in ("word", "char_wb"):
        unsupported.append(f"analyzer={settings['analyzer']!r}")
    if settings.get("norm") not in ("l2", None):
        unsupported.append(f"norm={settings['norm']!r}")
    if unsupported:
        raise ValueError(f"explanations do not reproduce these TF-IDF settings: {', '.join(unsupported)}")
    return _WordBlock(settings, vocabulary) if settings["analyzer"] == "word" else _CharWbBlock(settings, vocabulary)


class _Block:
    """One TF-IDF block: which field it reads, its analyser, idf, and where its columns start."""

    def __init__(self, field: str, settings: dict, vocabulary: dict[str, int], idf: np.ndarray, offset: int,
                 terms: Sequence[str] | None = None) -> None:
        self.field = field
        self.analyzer = settings["analyzer"]
        self.name = f"{field}:{self.analyzer}"
        self.analyse = _analyser(settings, vocabulary)
        self.sublinear = bool(settings["sublinear_tf"])
        self.binary = bool(settings.get("binary", False))
        self.norm = settings.get("norm") is not None
        self.idf = np.asarray(idf, dtype=np.float64) if settings.get("use_idf", True) else np.ones(len(vocabulary))
        self.offset = offset
        self.vocabulary = vocabulary
        self._terms = list(terms) if terms is not None else None
        self._lock = threading.Lock()

    @property
    def terms(self) -> list[str]:
        """Column -> n-gram, built on first use."""
        if self._terms is None:
            with self._lock:
                if self._terms is None:
                    terms = [""] * len(self.vocabulary)
                    for term, column in self.vocabulary.items():
                        terms[column] = term
                    self._terms = terms
        return self._terms

    def values(self, text: str, source: str | None, max_spans: int | None = None
               ) -> tuple[list[int], np.ndarray, list[int], list[list[tuple]]]:
        """The block's row of TF-IDF for ``text``: columns, values after normalisation, how often each
        occurs, and the spans of its first ``max_spans`` occurrences (None: all) as (``source``, start, end)."""
        columns, occurrences, spans = self.analyse.occurrences(text, source, max_spans) if text else ([], [], [])
        counts = np.array(occurrences, dtype=np.float64)
        if self.binary:
            counts[:] = 1.0
        if self.sublinear:
            np.log(counts, out=counts)
            counts += 1.0
        values = counts * np.take(self.idf, columns) if columns else counts
        if self.norm and len(values):
            values /= math.sqrt(float(values @ values))
        return columns, values, occurrences, spans


# ------------------------------------------------------------------------------------------------ the explainer


class Explainer:
    """Explains a fitted model's verdicts exactly; built from its parts (see :meth:`from_parts`).

    >>> explainer = Explainer.load("default")            # or Explainer.from_model(lm.load())
    >>> explainer.explain([("a question", "an answer")])  # one dict per item, as explain() documents
    """

    def __init__(self, blocks: list[_Block], coef: np.ndarray, intercept: np.ndarray, thresholds: np.ndarray,
                 labels: LabelSet | list[str], operating_points: dict[str, float],
                 message_cut_offs: tuple[np.ndarray, dict[str, float]] | None = None,
                 normalize: str | None = None) -> None:
        self.blocks = blocks
        self.normalize = check_normalization(normalize)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        self.thresholds_ = np.asarray(thresholds, dtype=np.float64)
        self.label_set_ = labels if isinstance(labels, LabelSet) else LabelSet.from_names(labels)
        self.labels_ = list(self.label_set_.names)
        self.operating_points_ = dict(operating_points)
        set_message_cut_offs(self, message_cut_offs)
        n_terms = sum(len(block.vocabulary) for block in blocks)
        if self.coef.shape != (n_terms, len(self.labels_)):
            raise ValueError(f"weights of shape {self.coef.shape} do not match {n_terms} terms and "
                             f"{len(self.labels_)} labels")
        self._lock = threading.Lock()  # the char n-gram word caches grow while explaining

    @classmethod
    def from_parts(cls, parts: dict) -> Explainer:
        """From plain fitted state: ``blocks`` = per block (field, TfidfVectorizer settings, vocabulary
        {term: column}, idf[, terms by column]), then ``coef`` (n_terms, labels), ``intercept``, ``thresholds``,
        ``labels``, ``operating_points``, ``message_cut_offs`` (None: pairs' cut-offs for messages too) and
        ``normalize`` (the model's text normalisation, None when absent)."""
        blocks, offset = [], 0
        for field, settings, vocabulary, idf, *terms in parts["blocks"]:
            blocks.append(_Block(field, settings, vocabulary, idf, offset, terms[0] if terms else None))
            offset += len(vocabulary)
        return cls(blocks, parts["coef"], parts["intercept"], parts["thresholds"], parts["labels"],
                   parts.get("operating_points", {}), parts.get("message_cut_offs"), parts.get("normalize"))

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Explainer:
        """The explainer of a saved model directory or shipped model name (json and numpy only)."""
        from .persistence import read_parts

        return cls.from_parts(read_parts(path))

    @classmethod
    def from_model(cls, model: ModerationClassifier) -> Explainer:
        """The explainer of a fitted :class:`ModerationClassifier` (its vocabulary and weights are shared)."""
        return cls.from_parts(model_parts(model))

    # -------------------------------------------------------------------------------------- explaining

    def decision_function(self, X: Sequence) -> np.ndarray:
        """(n, labels) logits as the sums of the explained terms (what the tests compare with the model's)."""
        prompts, responses = split_fields(X, require_text=True)
        return np.array([self._read_terms(p, r).logits for p, r in zip(prompts, responses)]).reshape(len(prompts),
                                                                                          len(self.labels_))

    def explain(self, X: Sequence, labels: Sequence[str] | None = None, top: int | None = None,
                threshold: float | str | None = None, max_spans: int | None = None) -> list[dict]:
        """One explanation per item of X (texts or (prompt, response) pairs, as ``moderate`` takes).

        Each is the item's verdict (``moderate``'s fields: ``flagged``, ``unsafe_score``, ``categories``,
        ``category_scores``), ``unsafe_threshold`` (the flag head's cut-off that ``flagged`` was decided with: the
        item's shape's, a message's or a pair's, at ``threshold``, whichever labels are explained) plus
        ``explanations``: for each asked label (``labels``, full or short names;
        default: the flag head, then the flagged categories by score), ``{"label", "score", "threshold", "flagged",
        "logit", "intercept", "contributions", "rest"}``. ``contributions`` are the n-gram terms, strongest
        (largest absolute contribution) first, each ``{"field", "analyzer", "ngram", "spans", "tfidf",
        "weight", "contribution", "span_count"}``: the block's field and analyser, the n-gram, its
        occurrences as ``[input field ("prompt" or "response"; a text alone is a response), start, end]``
        character offsets into the original strings, its TF-IDF value after the block's normalisation, the
        label's weight, their product, and how often the n-gram occurs. ``max_spans`` lists the first
        ``max_spans`` occurrences only (None: all; a server bounds its answers so). ``top`` keeps the strongest
        ``top`` and sums the others into ``rest`` (``{"count", "contribution"}``), so ``intercept +
        sum(contributions) + rest == logit`` always. ``threshold`` overrides the unsafe cut-off (a
        probability or an operating point's name).
        """
        prompts, responses = split_fields(X, require_text=True)
        asked = None if labels is None else resolve_labels(labels, self.label_set_)
        row_cuts = cut_offs(self, message_rows(prompts), threshold)
        for name, value in (("top", top), ("max_spans", max_spans)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a whole number >= 0 or None (all), got {value!r}")
        return [self._explain_one(p, r, asked, top, cuts, max_spans)
                for p, r, cuts in zip(prompts, responses, row_cuts)]

    def _explain_one(self, prompt: str, response: str, asked: list[str] | None, top: int | None,
                     cuts: np.ndarray, max_spans: int | None = None) -> dict:
        terms = self._read_terms(prompt, response, max_spans)
        logits = terms.logits
        proba = sigmoid(logits)
        verdict = self.label_set_.results(proba[None, :], cuts)[0]
        verdict["unsafe_threshold"] = float(cuts[-1])  # the flag head's cut-off, the one ``flagged`` was decided with
        flags = [*verdict["categories"].values(), verdict["flagged"]]
        names = asked if asked is not None else _default_labels(verdict, self.label_set_)
        verdict["explanations"] = [
            self._label_explanation(self.labels_.index(name), logits, proba, cuts, flags, terms, top)
            for name in names
        ]
        return verdict

    def _label_explanation(self, j: int, logits: np.ndarray, proba: np.ndarray, cuts: np.ndarray,
                           flags: list[bool], terms: _Terms, top: int | None) -> dict:
        column = terms.contributions[:, j]
        order = np.argsort(-np.abs(column), kind="stable")
        kept, rest = (order, order[:0]) if top is None else (order[:top], order[top:])
        entries = terms.entries
        shown = [{"field": field, "analyzer": analyzer, "ngram": ngram, "spans": spans, "tfidf": value,
                  "weight": weight, "contribution": c, "span_count": count}
                 for (field, analyzer, ngram, value, count, spans), weight, c
                 in zip(map(entries.__getitem__, kept.tolist()), terms.weights[kept, j].tolist(),
                        column[kept].tolist())]
        return {"label": self.labels_[j], "score": float(proba[j]), "threshold": float(cuts[j]),
                "flagged": bool(flags[j]), "logit": float(logits[j]),
                "intercept": float(self.intercept_[j]), "contributions": shown,
                "rest": {"count": len(rest), "contribution": float(column[rest].sum())}}

    def _read_terms(self, prompt: str, response: str, max_spans: int | None = None) -> _Terms:
        """:meth:`_terms` of the texts as the model reads them (normalised), with spans in the texts as given."""
        read_prompt, prompt_back = normalized_positions(prompt, self.normalize)
        read_response, response_back = normalized_positions(response, self.normalize)
        terms = self._terms(read_prompt, read_response, max_spans)
        if prompt_back is None and response_back is None:
            return terms
        backs = {"prompt": prompt_back, "response": response_back}
        entries = [(*entry[:5], [_span_back(span, backs[span[0]]) for span in entry[5]]) for entry in terms.entries]
        return terms._replace(entries=entries)

    def _terms(self, prompt: str, response: str, max_spans: int | None = None) -> _Terms:
        """Every in-vocabulary term of one item, its weights and contributions, and the logits they sum to."""
        rows: list[int] = []
        values: list[np.ndarray] = []
        entries: list[tuple] = []
        with self._lock:
            for block in self.blocks:
                text = field_text(block.field, prompt, response)
                columns, block_values, counts, block_spans = block.values(text, _source(block.field), max_spans)
                if block.field == "joint":
                    block_spans = [_joint_spans(spans, len(prompt)) for spans in block_spans]
                terms, offset = block.terms, block.offset
                entries += [(block.field, block.analyzer, terms[c], v, count, spans)
                            for c, v, count, spans in zip(columns, block_values.tolist(), counts, block_spans)]
                rows += [offset + c for c in columns]
                values.append(block_values)
        weights = np.take(self.coef, rows, axis=0) if rows else np.zeros((0, len(self.labels_)))
        contributions = np.concatenate(values)[:, None] * weights
        return _Terms(contributions.sum(axis=0) + self.intercept_, weights, contributions, entries)


def model_parts(model: ModerationClassifier) -> dict:
    """A fitted model's parts, in the shape of :func:`lite_moderation.persistence.read_parts`."""
    blocks = [(field, vectorizer.get_params(), vectorizer.vocabulary_, vectorizer.idf_)
              for field, _, vectorizer in model.vectorizer_.blocks_]
    return {"blocks": blocks, "coef": model.coef_, "intercept": model.intercept_, "thresholds": model.thresholds_,
            "labels": label_set_of(model), "operating_points": dict(getattr(model, "operating_points_", {})),
            "message_cut_offs": message_cut_offs(model), "normalize": getattr(model.vectorizer_, "normalize", None)}


class _Terms(NamedTuple):
    """The terms of one item: logits (labels,), weights and contributions (terms, labels), and per term
    (field, analyzer, n-gram, tf-idf value, occurrences, spans)."""

    logits: np.ndarray
    weights: np.ndarray
    contributions: np.ndarray
    entries: list[tuple]


def _span_back(span: tuple, back: list[int] | None) -> tuple:
    """A (source, start, end) span of a normalised text as a span of the text as given."""
    if back is None:
        return span
    source, start, end = span
    return (source, *_original_span(back, start, end))


def _source(field: str) -> str | None:
    """The input string a field's offsets index into (None: the joint field, split afterwards)."""
    if field in _PROMPT_FIELDS:
        return "prompt"
    if field in _RESPONSE_FIELDS:
        return "response"
    return None


def _joint_spans(spans: list[tuple], prompt_length: int) -> list[tuple]:
    """Spans in the joint text (prompt + separator + response) as spans of the prompt and of the response;
    the separator itself is in neither."""
    start_of_response = prompt_length + len(JOINT_SEPARATOR)
    pieces = []
    for _, start, end in spans:
        if start < prompt_length:
            pieces.append(("prompt", start, min(end, prompt_length)))
        if end > start_of_response:
            pieces.append(("response", max(start, start_of_response) - start_of_response, end - start_of_response))
    return pieces


def _default_labels(verdict: dict, labels: LabelSet) -> list[str]:
    """The flag head, then the flagged categories, highest score first."""
    flagged = sorted((c for c in labels.categories if verdict["categories"][c]),
                     key=lambda c: -verdict["category_scores"][c])
    return [labels.flag, *flagged]


def resolve_labels(names: Sequence[str], labels: LabelSet | None = None) -> list[str]:
    """Full label names of ``names`` (full names, or BeaverTails' short names such as "violence"), in the order
    given, among ``labels`` (default: the BeaverTails set)."""
    labels = labels if labels is not None else label_set_of(None)
    if isinstance(names, str):
        names = [names]
    by_short = {labels.short_name(label): label for label in labels.names}
    resolved = []
    for name in names:
        label = name if name in labels.names else by_short.get(name)
        if label is None:
            raise ValueError(f"unknown label {name!r}: expected {labels.flag} or a category "
                             f"({', '.join(by_short) if len(by_short) <= 30 else str(len(by_short)) + ' labels'})")
        if label not in resolved:
            resolved.append(label)
    return resolved


# ------------------------------------------------------------------------------------------------ entry points

_EXPLAINERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_EXPLAINERS_LOCK = threading.Lock()


def explainer_for(model: ModerationClassifier | FastScorer | Explainer) -> Explainer:
    """The explainer of a fitted model or a fast scorer, built once per model object.

    A :class:`ModerationClassifier` is explained from its fitted state; a :class:`FastScorer` from the
    files it was loaded from (``path_``, checked against its intercepts and thresholds) or from the model
    it was built of (``explain_parts_``).
    """
    if isinstance(model, Explainer):
        return model
    with _EXPLAINERS_LOCK:
        cached = _EXPLAINERS.get(model)
        if cached is not None and cached[1] is _state_of(model):
            return cached[0]
        explainer = _build_explainer(model)
        _EXPLAINERS[model] = (explainer, _state_of(model))
        return explainer


def _state_of(model: object) -> object:
    """What changes when a model is refitted (its weight matrix object); a scorer is never refitted."""
    return getattr(model, "coef_", None) if hasattr(model, "vectorizer_") else None


def _build_explainer(model: object) -> Explainer:
    if hasattr(model, "vectorizer_"):
        return Explainer.from_model(model)
    parts = getattr(model, "explain_parts_", None)
    if parts is not None:
        return Explainer.from_parts(parts())
    path = getattr(model, "path_", None)
    if path is None:
        raise ValueError("this scorer does not know its model's parts: build it with lite_moderation.load_scorer "
                         "or FastScorer.from_model, or pass an Explainer")
    explainer = Explainer.load(path)
    if not (np.array_equal(explainer.intercept_, model.intercept_)
            and np.array_equal(explainer.thresholds_, model.thresholds_)):
        raise ValueError(f"{path}: the model on disk changed since this scorer was loaded; load it again")
    return explainer


def explain(model: ModerationClassifier | FastScorer | Explainer, X: Sequence, labels: Sequence[str] | None = None,
            top: int | None = None, threshold: float | str | None = None, max_spans: int | None = None) -> list[dict]:
    """Exact explanations of ``model``'s verdicts on X (see :meth:`Explainer.explain`).

    >>> lm.explain(lm.load_scorer(), [("a question", "an answer")], top=5)
    """
    return explainer_for(model).explain(X, labels=labels, top=top, threshold=threshold, max_spans=max_spans)


def top_reasons(explanation: dict, k: int = 3, label: str | None = None) -> list[dict]:
    """The ``k`` contributions that push ``label`` (default: the first explained, the flag head unless other labels
    were asked) up the most (positive only), strongest first."""
    for entry in explanation["explanations"]:
        if label is None or entry["label"] == label:
            pushing = [c for c in entry["contributions"] if c["contribution"] > 0]
            return sorted(pushing, key=lambda c: -c["contribution"])[:k]
    return []


def table_reasons(model: ModerationClassifier | FastScorer | Explainer, k: int = 3) -> Callable[[Any], list[str]]:
    """``reasons(item)``: the ``k`` strongest reasons of the unsafe score of an item, as table text; the
    explainer is built on the first call (a table without flagged rows never builds it)."""

    def reasons(item: Any) -> list[str]:
        explainer = explainer_for(model)
        explanation = explainer.explain([item], labels=[explainer.label_set_.flag])[0]
        pair = item_pair(item)
        return [reason_text(c, pair) for c in top_reasons(explanation, k)]

    return reasons


def reason_text(contribution: dict, item: tuple[str, str]) -> str:
    """One reason for a table: where, what the input says there, and how much: ``response "kil" +0.42``."""
    source, start, end = contribution["spans"][0] if contribution["spans"] else ("", 0, 0)
    prompt, response = item
    shown = (prompt if source == "prompt" else response)[start:end] if source else contribution["ngram"]
    return f'{source or contribution["field"]} "{shown}" {contribution["contribution"]:+.2f}'


def item_pair(item: Any) -> tuple[str, str]:
    """An item as (prompt, response): a text alone is a response to an empty prompt."""
    prompts, responses = split_fields([item])
    return prompts[0], responses[0]
