"""A fast scoring path: the fitted model's probabilities without scikit-learn's per-call machinery.

Why: scoring one request through ``TfidfVectorizer.transform`` costs milliseconds of validation and
Python analysers, and batches pay for string n-grams that are thrown away. :class:`FastScorer` computes
exactly the same numbers (same analysers, same counts, same sublinear TF-IDF, same l2 norm per block, same
weights) in float64, with:

- a per-field cache of whitespace-separated words: both analysers work word by word (no word token and no
  ``char_wb`` n-gram crosses whitespace), so a word's token ids and character n-gram columns are computed
  once, and a batch is split with ``str.split`` and gathered with a few vectorised operations;
- word n-grams looked up as integer keys of token ids (bigram strings are never built in batches);
- idf folded into the weight rows (``w_t = idf_t * coef_t``), the l2 norm computed from the counts, and one
  sparse product per block for all 15 labels;
- thresholds applied to the whole (n, 15) matrix at once.

Blocks whose settings the fast analysers do not reproduce (a custom token pattern, stop words, accent
stripping...) fall back to scikit-learn's own analyser, so the result stays exact either way.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .explain import model_parts
from .taxonomy import results_from_proba, sigmoid
from .texts import WORD_TOKEN_PATTERN, field_text, field_texts, split_fields
from .thresholds import resolve_threshold

if TYPE_CHECKING:
    from .model import ModerationClassifier

__all__ = ["FastScorer"]

#: Distinct words cached per field (about 300 bytes each); a full cache is emptied and refilled.
DEFAULT_CACHE_SIZE = 100_000
#: Texts vectorised together: bounds the temporary arrays (about 40 MB per 1,000 texts with char n-grams).
BATCH_SIZE = 1024
_MISSING = -1
_SEPARATOR = -2


# ------------------------------------------------------------------------------------------------ analysers
#
# An analyser maps a list of texts to (cols, indptr): the vocabulary column of every in-vocabulary n-gram
# occurrence, text after text (CSR order, duplicates kept), and where each text's occurrences start.
# ``None`` is appended after every text as a separator: no text can produce it, so it never collides.


def _index_dtype(n_terms: int) -> type:
    """The narrowest unsigned type of column ids: sorting 16-bit ids per text is several times faster."""
    return np.uint16 if n_terms <= 1 << 16 else np.uint32


class _Pool:
    """Per cache slot, a run of ints (a word's token ids or n-gram columns), all in one flat array."""

    def __init__(self, dtype: type, separator: list[int]) -> None:
        self.dtype = dtype
        self.separator = separator
        self.reset()

    def reset(self) -> None:
        """Empty the pool; slot 0 holds the separator's run."""
        self.offsets = np.zeros(1024, dtype=np.int64)
        self.lengths = np.zeros(1024, dtype=np.int64)
        self.values = np.zeros(1 << 16, dtype=self.dtype)
        self.size = 0
        self.slots = 1
        self.lengths[0] = len(self.separator)
        self.values[:len(self.separator)] = self.separator
        self.size = len(self.separator)

    def add(self, runs: list[list[int]]) -> None:
        """Append the runs of the next ``len(runs)`` slots."""
        lengths = np.fromiter(map(len, runs), dtype=np.int64, count=len(runs))
        flat = np.fromiter(itertools.chain.from_iterable(runs), dtype=self.dtype, count=int(lengths.sum()))
        first, stop = self.slots, self.slots + len(runs)
        self.offsets = _grown(self.offsets, stop)
        self.lengths = _grown(self.lengths, stop)
        self.values = _grown(self.values, self.size + len(flat))
        self.offsets[first:stop] = self.size + np.cumsum(lengths) - lengths
        self.lengths[first:stop] = lengths
        self.values[self.size:self.size + len(flat)] = flat
        self.size += len(flat)
        self.slots = stop

    def gather(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The runs of ``slots`` end to end, and where each slot's run ends (take: 3x faster than [])."""
        lengths = np.take(self.lengths, slots)
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        shift = np.repeat(np.take(self.offsets, slots) - (ends - lengths), lengths)
        return np.take(self.values, np.arange(total, dtype=np.int64) + shift), ends


class _WordCache:
    """Slots of the whitespace-separated words of one field, shared by every fast block reading that field.

    Both fast analysers work word by word (``char_wb`` n-grams never cross whitespace, and no word token
    does), so each block keeps its part of a word (token ids or n-gram columns) in its own pool, computed
    once per distinct word. The cache empties itself when it holds ``cache_size`` words.
    """

    def __init__(self, cache_size: int) -> None:
        self.cache_size = max(int(cache_size), 1)
        self.users: list = []
        self.slots: dict[str | None, int] = {None: 0}

    def register(self, user: object) -> None:
        """``user`` needs ``dtype``, ``separator`` and ``word_values(word)``; it gets a ``pool``."""
        user.pool = _Pool(user.dtype, user.separator)
        self.users.append(user)

    def clear(self) -> None:
        self.slots = {None: 0}
        for user in self.users:
            user.pool.reset()

    def batch(self, texts: Sequence[str]) -> np.ndarray:
        """Slots of the words of every text, each text followed by the separator (slot 0)."""
        words: list[str | None] = []
        for text in texts:
            words += text.split()
            words.append(None)
        return self.lookup(words)

    def lookup(self, words: list[str | None]) -> np.ndarray:
        """Slot of every word, adding the words not seen yet."""
        slots = np.fromiter(map(self.slots.get, words, itertools.repeat(_MISSING)), dtype=np.int64,
                            count=len(words))
        missing = np.flatnonzero(slots < 0)
        if len(missing):
            new = list(dict.fromkeys(words[i] for i in missing))
            if len(self.slots) + len(new) > self.cache_size:
                self.clear()
                new = list(dict.fromkeys(w for w in words if w is not None))
                missing = np.flatnonzero(np.fromiter((w is not None for w in words), dtype=bool,
                                                     count=len(words)))
            for user in self.users:
                user.pool.add([user.word_values(w) for w in new])
            first = len(self.slots)
            self.slots.update(zip(new, range(first, first + len(new))))
            get = self.slots.__getitem__
            slots[missing] = [get(words[i]) for i in missing]
        return slots


class _WordTerms:
    """Word n-gram columns of lowercased texts, via integer keys of token ids (no n-gram strings built)."""

    def __init__(self, vocabulary: dict[str, int], ngram_range: tuple[int, int], token_pattern: str) -> None:
        self.findall = re.compile(token_pattern).findall
        self.min_n, self.max_n = ngram_range
        tokens: dict[str, int] = {}
        grams = [term.split(" ") for term in vocabulary]
        for parts in grams:
            for part in parts:
                tokens.setdefault(part, len(tokens))
        self.base = max(len(tokens), 1)
        if self.base ** self.max_n >= 2**62 or self.base >= 2**31:
            raise ValueError("word n-gram keys would overflow int64")
        self.tokens = tokens
        self.dtype = np.int32
        self.separator = [_SEPARATOR]
        self.col_dtype = _index_dtype(len(vocabulary))
        by_n: dict[int, tuple[list[int], list[int]]] = {}
        for parts, column in zip(grams, vocabulary.values()):
            key = 0
            for part in parts:
                key = key * self.base + tokens[part]
            keys, columns = by_n.setdefault(len(parts), ([], []))
            keys.append(key)
            columns.append(column)
        self.tables = {n: _KeyTable(np.asarray(keys, dtype=np.int64), np.asarray(columns, dtype=np.int64))
                       for n, (keys, columns) in sorted(by_n.items()) if n > 1}
        # unigrams need no table: the column of each token id (-1: the token is only part of longer n-grams)
        self.unigram_columns = np.full(self.base + 2, -1, dtype=np.int64)
        if 1 in by_n:
            self.unigram_columns[by_n[1][0]] = by_n[1][1]
        self.sizes = [n for n in sorted(by_n) if self.min_n <= n <= self.max_n]

    def word_values(self, word: str) -> list[int]:
        """Token ids of one whitespace-separated word (-1: a token outside every vocabulary term)."""
        get = self.tokens.get
        return [get(token, _MISSING) for token in self.findall(word)]

    def __call__(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = self.pool.gather(slots)[0].astype(np.int64)
        sizes = self.sizes
        found = np.full((len(ids), len(sizes)), -1, dtype=np.int64)
        for k, n in enumerate(sizes):
            span = len(ids) - n + 1
            if span > 0:
                found[:span, k] = self._columns(ids, n, span)
        flat = found.ravel()
        kept = np.flatnonzero(flat >= 0)
        separators = np.flatnonzero(ids == _SEPARATOR) * len(sizes)
        indptr = np.concatenate(([0], np.searchsorted(kept, separators)))
        return flat[kept].astype(self.col_dtype), indptr

    def one_slots(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distinct columns of one text's words and their counts."""
        ids = self.pool.gather(slots)[0].astype(np.int64)
        found = [self._columns(ids, n, len(ids) - n + 1) for n in self.sizes if len(ids) >= n]
        cols = np.concatenate(found) if found else np.empty(0, dtype=np.int64)
        return _distinct_counts(cols[cols >= 0])

    def _columns(self, ids: np.ndarray, n: int, span: int) -> np.ndarray:
        """Column of the n-gram starting at each position, -1 where it is out of vocabulary."""
        if n == 1:
            return np.take(self.unigram_columns, ids[:span])  # ids -1 and -2 wrap to the two trailing -1s
        valid = ids[:span] >= 0
        for k in range(1, n):
            valid &= ids[k:k + span] >= 0
        where = np.flatnonzero(valid)
        key = np.take(ids, where)
        for k in range(1, n):
            key = key * self.base + np.take(ids, where + k)
        found = np.full(span, -1, dtype=np.int64)
        found[where] = self.tables[n].lookup(key)
        return found


class _KeyTable:
    """An int64 -> int64 hash table (open addressing, linear probing) looked up a whole array at a time.

    Why: finding word n-gram keys by binary search costs ~17 dependent memory reads per key; a half-empty
    hash table costs about one. Keys are >= 0 (-1 marks an empty slot); a missing key maps to -1. A short
    query (one request) is cheaper as one binary search than as the table's few probing rounds.
    """

    SHORT_QUERY = 512

    _MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of key * 2^64 / phi

    def __init__(self, keys: np.ndarray, values: np.ndarray) -> None:
        bits = max(4, int(np.ceil(np.log2(2 * len(keys) + 1))))
        self.shift = np.uint64(64 - bits)
        self.mask = (1 << bits) - 1
        self.keys = np.full(1 << bits, -1, dtype=np.int64)
        self.values = np.full(1 << bits, -1, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        self.sorted_keys, self.sorted_values = keys[order], values[order]
        slots = self._slots(keys)
        waiting = np.arange(len(keys))
        while len(waiting):  # each round, the first key wanting each free slot takes it; the rest probe on
            wanted = waiting[np.take(self.keys, slots[waiting]) == -1]
            winners = wanted[np.unique(slots[wanted], return_index=True)[1]]
            self.keys[slots[winners]] = keys[winners]
            self.values[slots[winners]] = values[winners]
            placed = np.zeros(len(keys), dtype=bool)
            placed[winners] = True
            waiting = waiting[~placed[waiting]]
            blocked = waiting[np.take(self.keys, slots[waiting]) != -1]
            slots[blocked] = (slots[blocked] + 1) & self.mask

    def _search(self, query: np.ndarray) -> np.ndarray:
        found = np.full(len(query), -1, dtype=np.int64)
        if not len(self.sorted_keys):
            return found
        position = np.minimum(np.searchsorted(self.sorted_keys, query), len(self.sorted_keys) - 1)
        hit = np.take(self.sorted_keys, position) == query
        found[hit] = np.take(self.sorted_values, position[hit])
        return found

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.astype(np.uint64) * self._MULTIPLIER) >> self.shift).astype(np.int64)

    def lookup(self, query: np.ndarray) -> np.ndarray:
        """The value of each key of ``query`` (-1 where absent)."""
        if len(query) <= self.SHORT_QUERY:
            return self._search(query)
        slots = self._slots(query)
        found = np.full(len(query), -1, dtype=np.int64)
        pending = np.arange(len(query))
        while len(pending):
            stored = np.take(self.keys, slots[pending])
            hit = stored == query[pending]
            found[pending[hit]] = np.take(self.values, slots[pending[hit]])
            pending = pending[~hit & (stored != -1)]
            slots[pending] = (slots[pending] + 1) & self.mask
        return found


class _CharWbTerms:
    """``char_wb`` n-gram columns, computed once per distinct whitespace-separated word (see _WordCache)."""

    def __init__(self, vocabulary: dict[str, int], ngram_range: tuple[int, int]) -> None:
        self.vocabulary = vocabulary
        self.min_n, self.max_n = ngram_range
        self.dtype = _index_dtype(len(vocabulary))
        self.separator: list[int] = []

    def word_values(self, word: str) -> list[int]:
        """Columns of the n-grams scikit-learn's ``_char_wb_ngrams`` makes of one word, in its order."""
        w = " " + word + " "
        w_len = len(w)
        get = self.vocabulary.get
        grams = []
        for n in range(self.min_n, self.max_n + 1):
            offset = 0
            grams.append(w[0:n])
            while offset + n < w_len:
                offset += 1
                grams.append(w[offset:offset + n])
            if offset == 0:
                break
        return [c for c in map(get, grams) if c is not None]

    def __call__(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols, ends = self.pool.gather(slots)
        return cols, np.concatenate(([0], ends[slots == 0]))

    def one_slots(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distinct columns of one text's words and their counts."""
        return _distinct_counts(self.pool.gather(slots)[0])


def _distinct_counts(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of ``cols`` and how often each occurs (float64)."""
    if not len(cols):
        return np.empty(0, dtype=np.intp), np.empty(0)
    cols.sort(kind="stable" if cols.dtype == np.uint16 else "quicksort")  # stable: radix sort for 16 bits
    first = np.empty(len(cols), dtype=bool)
    first[0] = True
    np.not_equal(cols[1:], cols[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return np.take(cols, starts).astype(np.intp), np.diff(starts, append=len(cols)).astype(np.float64)


def _column_counts(columns: object) -> Counter:
    """Counts of the columns found (``None`` = out of vocabulary, dropped)."""
    counts = Counter(columns)
    counts.pop(None, None)
    return counts


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with room for ``size`` items (capacity doubles, so appends stay amortised O(1))."""
    if size <= len(array):
        return array
    bigger = np.zeros(max(size, 2 * len(array)), dtype=array.dtype)
    bigger[:len(array)] = array
    return bigger


class _AnalyzerTerms:
    """Any block through scikit-learn's own analyser: slower, exact for every setting."""

    def __init__(self, analyzer: Callable[[str], list[str]], vocabulary: dict[str, int]) -> None:
        self.analyzer = analyzer
        self.vocabulary = vocabulary
        self.dtype = _index_dtype(len(vocabulary))

    def one(self, text: str) -> Counter:
        return _column_counts(map(self.vocabulary.get, self.analyzer(text)))

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        cols: list[int] = []
        indptr = [0]
        get = self.vocabulary.get
        for text in texts:
            cols += [c for c in map(get, self.analyzer(text)) if c is not None]
            indptr.append(len(cols))
        return np.asarray(cols, dtype=self.dtype), np.asarray(indptr, dtype=np.int64)


# ------------------------------------------------------------------------------------------------ blocks


class _Block:
    """One TF-IDF block: field, analyser, idf-folded weights, and the TF-IDF settings it reproduces."""

    def __init__(self, field: str, settings: dict, vocabulary: dict[str, int], idf: np.ndarray,
                 weights: np.ndarray, analyzer: Callable[[], Callable[[str], list[str]]]) -> None:
        """``settings``: the TfidfVectorizer parameters; ``analyzer()`` builds scikit-learn's analyser,
        called only when no fast analyser reproduces the settings."""
        if settings["norm"] not in ("l2", None):
            raise ValueError(f"FastScorer supports norm='l2' or None, not {settings['norm']!r}")
        self.field = field
        self.sublinear = bool(settings["sublinear_tf"])
        self.binary = bool(settings["binary"])
        self.norm = settings["norm"] is not None
        self.n_terms = len(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64) if settings["use_idf"] else np.ones(self.n_terms)
        weights *= self.idf[:, None]  # a view into the scorer's weight matrix: idf folded in once
        self.weights = weights
        self.terms = _fast_terms(settings, vocabulary) or _AnalyzerTerms(analyzer(), vocabulary)
        self.fast = not isinstance(self.terms, _AnalyzerTerms)
        # scikit-learn's own analyser lowercases by itself; the fast ones read pre-lowercased texts
        self.lowercase = self.fast and bool(settings["lowercase"])
        self.cache: _WordCache | None = None  # set by FastScorer for the fast analysers

    def scores(self, texts: _FieldTexts) -> np.ndarray:
        """(n, 15) contribution: sum over terms of tf'(t) * idf(t) * coef(t), over the text's l2 norm."""
        n = texts.n
        if self.fast:
            cols, indptr = self.terms(texts.slots(self.field, self.lowercase, self.cache))
        else:
            cols, indptr = self.terms(texts.get(self.field, False))
        cols, indptr, tf = _count(cols, indptr)
        if self.binary:
            tf[:] = 1.0
        if self.sublinear:
            np.log(tf, out=tf)
            tf += 1.0
        out = np.asarray(sp.csr_matrix((tf, cols, indptr), shape=(n, self.n_terms)) @ self.weights)
        if self.norm:
            weighted = tf * np.take(self.idf, cols)
            rows = np.repeat(np.arange(n), np.diff(indptr))
            norms = np.sqrt(np.bincount(rows, weighted * weighted, minlength=n))
            norms[norms == 0.0] = 1.0
            out /= norms[:, None]
        return out

    def one(self, text: str, slots: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Columns of one text and their values tf'(t) / norm: its row of the block's TF-IDF, before idf.

        ``slots()`` gives the word-cache slots of the text's words (computed once per field and call).
        """
        found = self.terms.one_slots(slots()) if self.fast else self.terms.one(text)
        if isinstance(found, Counter):
            cols = np.fromiter(found.keys(), dtype=np.intp, count=len(found))
            tf = np.fromiter(found.values(), dtype=np.float64, count=len(found))
        else:
            cols, tf = found
        if self.binary:
            tf[:] = 1.0
        if self.sublinear:
            np.log(tf, out=tf)
            tf += 1.0
        if self.norm and len(tf):
            weighted = tf * np.take(self.idf, cols)
            tf /= np.sqrt(weighted @ weighted)
        return cols, tf


def _fast_terms(settings: dict, vocabulary: dict[str, int]) -> _WordTerms | _CharWbTerms | None:
    """The fast exact analyser for a block's settings, or None when only scikit-learn's reproduces them."""
    plain = (settings["preprocessor"] is None and settings["tokenizer"] is None
             and settings["strip_accents"] is None and settings["input"] == "content")
    analyzer = settings["analyzer"]
    if plain and analyzer == "char_wb":
        return _CharWbTerms(vocabulary, tuple(settings["ngram_range"]))
    if plain and analyzer == "word" and settings["stop_words"] is None \
            and settings["token_pattern"] == WORD_TOKEN_PATTERN:
        try:
            return _WordTerms(vocabulary, tuple(settings["ngram_range"]), settings["token_pattern"])
        except ValueError:
            pass
    return None


def _count(cols: np.ndarray, indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct columns of each text (sorted, as CSR), their new indptr, and their counts as float64.

    Sorting each text's short run of 16-bit ids is far faster than one global sort of (row, col) keys.
    """
    kind = "stable" if cols.dtype == np.uint16 else "quicksort"  # stable = radix sort for 16-bit ids
    if len(indptr) == 2:
        cols.sort(kind=kind)
    else:
        bounds = indptr.tolist()
        for start, stop in itertools.pairwise(bounds):
            if stop - start > 1:
                cols[start:stop].sort(kind=kind)
    first = np.ones(len(cols), dtype=bool)
    first[1:] = cols[1:] != cols[:-1]
    first[indptr[:-1][indptr[:-1] < len(cols)]] = True
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, len(cols))).astype(np.float64)
    return cols[starts].astype(np.intp), np.searchsorted(starts, indptr), counts


# ------------------------------------------------------------------------------------------------ scorer


class FastScorer:
    """Scores like a fitted :class:`ModerationClassifier`, to 1e-9, without scikit-learn at call time.

    >>> scorer = FastScorer.from_model(lite_moderation.load())
    >>> scorer.predict_proba([("a question", "an answer")])   # (1, 15), same columns as the model

    ``cache_size`` bounds the per-field cache of distinct whitespace-separated words (their token ids and
    character n-gram columns); results never depend on it, only speed and memory do.
    """

    def __init__(self, blocks: list[_Block], weights: np.ndarray, intercept: np.ndarray, thresholds: np.ndarray,
                 labels: list[str], operating_points: dict[str, float]) -> None:
        self.blocks = blocks
        self.weights = weights
        self.batch_size = BATCH_SIZE
        self._lock = threading.Lock()  # the word caches grow while scoring: one call at a time per scorer
        self.offsets = np.cumsum([0] + [block.n_terms for block in blocks])[:-1].tolist()
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        self.thresholds_ = np.asarray(thresholds, dtype=np.float64)
        self.labels_ = list(labels)
        self.operating_points_ = dict(operating_points)  # named unsafe cut-offs (see ModerationClassifier)

    @classmethod
    def from_model(cls, model: ModerationClassifier, cache_size: int = DEFAULT_CACHE_SIZE) -> FastScorer:
        """Precompute the fast tables of a fitted model (the model itself is not changed)."""
        blocks = [(field, vectorizer.get_params(), vectorizer.vocabulary_, vectorizer.idf_, vectorizer.build_analyzer)
                  for field, _, vectorizer in model.vectorizer_.blocks_]
        scorer = cls.from_parts(blocks, model.coef_, model.intercept_, model.thresholds_, model.labels_,
                                getattr(model, "operating_points_", {}), cache_size)
        scorer.explain_parts_ = functools.partial(model_parts, model)  # what lite_moderation.explain reads
        return scorer

    @classmethod
    def from_parts(cls, blocks: list[tuple], coef: np.ndarray, intercept: np.ndarray, thresholds: np.ndarray,
                   labels: list[str], operating_points: dict[str, float],
                   cache_size: int = DEFAULT_CACHE_SIZE) -> FastScorer:
        """A scorer from plain fitted state: per block (field, TfidfVectorizer settings, vocabulary, idf,
        analyser factory), then the (n_features, 15) weights, biases, thresholds and label names."""
        weights = np.array(coef, dtype=np.float64, order="C")
        built = []
        caches: dict[tuple[str, bool], _WordCache] = {}
        start = 0
        for field, settings, vocabulary, idf, analyzer in blocks:
            stop = start + len(vocabulary)
            block = _Block(field, settings, vocabulary, idf, weights[start:stop], analyzer)
            if block.fast:
                block.cache = caches.setdefault((field, block.lowercase), _WordCache(cache_size))
                block.cache.register(block.terms)
            built.append(block)
            start = stop
        if start != weights.shape[0]:
            raise ValueError(f"the model's blocks have {start} terms but coef_ has {weights.shape[0]} rows")
        return cls(built, weights, intercept, thresholds, labels, operating_points)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, cache_size: int = DEFAULT_CACHE_SIZE) -> FastScorer:
        """Load a saved model directory (default: the shipped model) straight into a fast scorer.

        Reads the files with json and numpy only: scikit-learn is not imported unless a block needs its
        analyser (never for the recipes ``QAVectorizer`` saves).
        """
        from .persistence import load_scorer

        return load_scorer(path, cache_size=cache_size)

    @property
    def exact_analyzers(self) -> list[str]:
        """Per block, "fast" or "sklearn" (the fallback analyser) — for diagnostics."""
        return ["fast" if block.fast else "sklearn" for block in self.blocks]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def decision_function(self, X: Sequence) -> np.ndarray:
        """(n, 15) log-odds of texts or (prompt, response) pairs; safe to call from several threads."""
        prompts, responses = split_fields(X, require_text=True)
        with self._lock:
            return self._decision(prompts, responses)

    def _decision(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        n = len(prompts)
        if n == 1:
            return self._decision_one(prompts[0], responses[0])[None, :]
        total = np.empty((n, len(self.intercept_)))
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            texts = _FieldTexts(prompts[start:stop], responses[start:stop])
            total[start:stop] = self.intercept_
            for block in self.blocks:
                total[start:stop] += block.scores(texts)
        return total

    def _decision_one(self, prompt: str, response: str) -> np.ndarray:
        """Log-odds of one pair: every block's columns gathered into a single product with the weights."""
        texts = {"prompt": prompt, "response": response}
        slots: dict[tuple[str, bool], np.ndarray] = {}
        all_cols, all_values = [], []
        for block, offset in zip(self.blocks, self.offsets):
            if block.field not in texts:
                texts[block.field] = field_text(block.field, prompt, response)
            text = texts[block.field].lower() if block.lowercase else texts[block.field]
            key = (block.field, block.lowercase)

            def words(block: _Block = block, text: str = text, key: tuple = key) -> np.ndarray:
                if key not in slots:
                    slots[key] = block.cache.lookup(text.split())
                return slots[key]

            cols, values = block.one(text, words)
            all_cols.append(cols + offset)
            all_values.append(values)
        cols = np.concatenate(all_cols)
        # np.take is about 3x faster than fancy indexing for gathering rows
        return np.concatenate(all_values) @ np.take(self.weights, cols, axis=0) + self.intercept_

    def predict_proba(self, X: Sequence) -> np.ndarray:
        """(n, 15) probabilities, columns ordered as ``labels_`` (14 categories, then unsafe)."""
        return sigmoid(self.decision_function(X))

    def predict(self, X: Sequence) -> np.ndarray:
        """(n, 15) bool decisions at the model's tuned thresholds."""
        return self.predict_proba(X) >= self.thresholds_

    def moderate(self, X: Sequence, threshold: float | str | None = None) -> list[dict]:
        """The same verdicts as :meth:`ModerationClassifier.moderate` (``threshold``: a probability or a name of
        ``operating_points_``)."""
        return results_from_proba(self.predict_proba(X), self.thresholds_, resolve_threshold(threshold, self))


class _FieldTexts:
    """The text of each field, lowercased once and shared by the blocks that read it."""

    def __init__(self, prompts: list[str], responses: list[str]) -> None:
        self.prompts = prompts
        self.responses = responses
        self.n = len(prompts)
        self.memo: dict[tuple[str, bool], list[str]] = {}
        self.slot_memo: dict[tuple[str, bool], np.ndarray] = {}

    def slots(self, field: str, lowercase: bool, cache: _WordCache) -> np.ndarray:
        """Word-cache slots of the field's words, each text followed by the separator slot."""
        key = (field, lowercase)
        if key not in self.slot_memo:
            self.slot_memo[key] = cache.batch(self.get(field, lowercase))
        return self.slot_memo[key]

    def get(self, field: str, lowercase: bool) -> list[str]:
        key = (field, lowercase)
        if key not in self.memo:
            texts = field_texts(field, self.prompts, self.responses)
            self.memo[key] = [t.lower() for t in texts] if lowercase else texts
        return self.memo[key]

