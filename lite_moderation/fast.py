"""A fast scoring path: the fitted model's probabilities without scikit-learn's per-call machinery.

Why: scoring one request through ``TfidfVectorizer.transform`` costs milliseconds of validation and
Python analysers, and batches pay for string n-grams that are thrown away. :class:`FastScorer` computes
exactly the same numbers (same analysers, same counts, same sublinear TF-IDF, same l2 norm per block, same
weights) in float64, with:

- word n-grams looked up as integer keys of token ids (one dict lookup per token; bigrams are never built
  as strings);
- character ``char_wb`` n-grams generated once per distinct word and cached as vocabulary ids (the
  ``char_wb`` analyser works word by word, so a word's n-grams never depend on its neighbours);
- idf folded into the weight rows (``w_t = idf_t * coef_t``), the l2 norm computed from the counts, and one
  sparse product per block for all 15 labels;
- thresholds applied to the whole (n, 15) matrix at once.

Blocks whose settings the fast analysers do not reproduce (a custom token pattern, stop words, accent
stripping...) fall back to scikit-learn's own analyser, so the result stays exact either way.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from .features import JOINT_SEPARATOR, split_fields
from .model import ModerationClassifier, results_from_proba

__all__ = ["FastScorer"]

#: The default word token pattern of scikit-learn, the one the fast word analyser reproduces.
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
#: Distinct words whose char n-gram ids are cached (about 200 bytes each); the cache is emptied when full.
DEFAULT_CACHE_SIZE = 200_000
#: Below this many nonzeros a batch is scored with dense numpy gathers (no scipy matrix to build).
_DENSE_NNZ = 4096
_MISSING = -1


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """The model's own sigmoid formula, so both paths agree to the last bits."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# ------------------------------------------------------------------------------------------------ analysers


class _WordTerms:
    """Word n-gram vocabulary ids of lowercased texts, via integer keys of token ids."""

    def __init__(self, vocabulary: dict[str, int], ngram_range: tuple[int, int], token_pattern: str) -> None:
        self.findall = re.compile(token_pattern).findall
        self.min_n, self.max_n = ngram_range
        tokens: dict[str, int] = {}
        grams = [term.split(" ") for term in vocabulary]
        for parts in grams:
            for part in parts:
                tokens.setdefault(part, len(tokens))
        self.tokens = tokens
        self.base = max(len(tokens), 1)
        if self.base ** self.max_n >= 2**62:
            raise ValueError("word n-gram keys would overflow int64")
        self.tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        by_n: dict[int, tuple[list[int], list[int]]] = {}
        for parts, column in zip(grams, vocabulary.values()):
            key = 0
            for part in parts:
                key = key * self.base + tokens[part]
            keys, columns = by_n.setdefault(len(parts), ([], []))
            keys.append(key)
            columns.append(column)
        for n, (keys, columns) in by_n.items():
            order = np.argsort(np.asarray(keys, dtype=np.int64), kind="stable")
            self.tables[n] = (np.asarray(keys, dtype=np.int64)[order], np.asarray(columns, dtype=np.int64)[order])

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) of every in-vocabulary n-gram occurrence, rows non-decreasing."""
        findall = self.findall
        lengths = np.empty(len(texts), dtype=np.int64)
        tokens: list[str] = []
        for i, text in enumerate(texts):
            found = findall(text)
            lengths[i] = len(found)
            tokens += found
        ids = np.fromiter(map(self.tokens.get, tokens, itertools.repeat(_MISSING)), dtype=np.int64,
                          count=len(tokens))
        doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        rows, cols = [], []
        for n in range(self.min_n, self.max_n + 1):
            if n not in self.tables or len(ids) < n:
                continue
            found_rows, found_cols = self._ngrams(ids, doc, n)
            rows.append(found_rows)
            cols.append(found_cols)
        if not rows:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        return np.concatenate(rows), np.concatenate(cols)

    def _ngrams(self, ids: np.ndarray, doc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        span = len(ids) - n + 1
        valid = ids[:span] >= 0
        key = ids[:span].copy()
        for k in range(1, n):
            part = ids[k:k + span]
            valid &= part >= 0
            key = key * self.base + part
        if n > 1:
            valid &= doc[:span] == doc[n - 1:n - 1 + span]
        keys, columns = self.tables[n]
        key = key[valid]
        position = np.searchsorted(keys, key)
        position[position == len(keys)] = 0
        hit = keys[position] == key
        return doc[:span][valid][hit], columns[position[hit]]


class _CharWbTerms:
    """``char_wb`` n-gram vocabulary ids, computed once per distinct whitespace-separated word."""

    def __init__(self, vocabulary: dict[str, int], ngram_range: tuple[int, int], cache_size: int) -> None:
        self.vocabulary = vocabulary
        self.min_n, self.max_n = ngram_range
        self.cache_size = cache_size
        self.cache: dict[str, np.ndarray] = {}

    def word_ids(self, word: str) -> np.ndarray:
        """Vocabulary ids of the n-grams scikit-learn's ``_char_wb_ngrams`` makes of one word."""
        w = " " + word + " "
        w_len = len(w)
        get = self.vocabulary.get
        ids = []
        for n in range(self.min_n, self.max_n + 1):
            offset = 0
            ids.append(get(w[0:n], _MISSING))
            while offset + n < w_len:
                offset += 1
                ids.append(get(w[offset:offset + n], _MISSING))
            if offset == 0:
                break
        found = np.asarray(ids, dtype=np.int64)
        return found[found >= 0]

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        words_per_text = np.empty(len(texts), dtype=np.int64)
        words: list[str] = []
        for i, text in enumerate(texts):
            split = text.split()
            words_per_text[i] = len(split)
            words += split
        cache = self.cache
        missing = set(words).difference(cache)
        if len(cache) + len(missing) > self.cache_size:
            cache.clear()
            missing = set(words)
        for word in missing:
            cache[word] = self.word_ids(word)
        arrays = list(map(cache.__getitem__, words))
        if not arrays:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        per_word = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
        per_text = np.add.reduceat(per_word, np.r_[0, np.cumsum(words_per_text)[:-1]]) if len(texts) > 1 \
            else np.array([per_word.sum()])
        per_text[words_per_text == 0] = 0
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), per_text)
        return rows, np.concatenate(arrays)


class _AnalyzerTerms:
    """Any block through scikit-learn's own analyser: slower, exact for every setting."""

    def __init__(self, analyzer: Callable[[str], list[str]], vocabulary: dict[str, int]) -> None:
        self.analyzer = analyzer
        self.vocabulary = vocabulary

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        rows: list[int] = []
        cols: list[int] = []
        get = self.vocabulary.get
        for i, text in enumerate(texts):
            found = [c for c in map(get, self.analyzer(text)) if c is not None]
            cols += found
            rows += [i] * len(found)
        return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


# ------------------------------------------------------------------------------------------------ blocks


class _Block:
    """One TF-IDF block: field, analyser, idf-folded weights, and the TF-IDF settings it reproduces."""

    def __init__(self, field: str, vectorizer: object, coef: np.ndarray, cache_size: int) -> None:
        params = vectorizer.get_params()
        if params["norm"] not in ("l2", None):
            raise ValueError(f"FastScorer supports norm='l2' or None, not {params['norm']!r}")
        self.field = field
        self.lowercase = bool(params["lowercase"]) and params["preprocessor"] is None
        self.sublinear = bool(params["sublinear_tf"])
        self.binary = bool(params["binary"])
        self.norm = params["norm"] is not None
        vocabulary = dict(vectorizer.vocabulary_)
        n_terms = len(vocabulary)
        idf = np.asarray(getattr(vectorizer, "idf_", np.ones(n_terms)), dtype=np.float64) \
            if params["use_idf"] else np.ones(n_terms)
        self.idf = idf
        self.weights = np.ascontiguousarray(idf[:, None] * np.asarray(coef, dtype=np.float64))
        self.n_terms = n_terms
        self.terms = _make_terms(vectorizer, params, vocabulary, cache_size)
        self.fast = not isinstance(self.terms, _AnalyzerTerms)
        self.lowercase = self.lowercase and self.fast  # scikit-learn's analyser lowercases by itself

    def scores(self, texts: Sequence[str], n: int) -> np.ndarray:
        """(n, 15) contribution of this block: sum over terms of tf'(t) * idf(t) * coef(t) / norm."""
        rows, cols = self.terms(texts)
        rows, cols, tf = _count(rows, cols, self.n_terms)
        if self.binary:
            tf[:] = 1.0
        if self.sublinear:
            np.log(tf, out=tf)
            tf += 1.0
        if n == 1 and len(cols) <= _DENSE_NNZ:
            out = (tf @ self.weights[cols])[None, :]
        else:
            counts = np.bincount(rows, minlength=n)
            indptr = np.concatenate(([0], np.cumsum(counts)))
            matrix = sp.csr_matrix((tf, cols, indptr), shape=(n, self.n_terms))
            out = np.asarray(matrix @ self.weights)
        if self.norm:
            weighted = tf * self.idf[cols]
            norms = np.sqrt(np.bincount(rows, weighted * weighted, minlength=n))
            norms[norms == 0.0] = 1.0
            out /= norms[:, None]
        return out


def _make_terms(vectorizer: object, params: dict, vocabulary: dict[str, int], cache_size: int) -> object:
    """The fastest exact analyser for a block's settings."""
    plain = (params["preprocessor"] is None and params["tokenizer"] is None and params["strip_accents"] is None
             and params["input"] == "content")
    analyzer = params["analyzer"]
    if plain and analyzer == "char_wb":
        return _CharWbTerms(vocabulary, tuple(params["ngram_range"]), cache_size)
    if plain and analyzer == "word" and params["stop_words"] is None \
            and params["token_pattern"] == DEFAULT_TOKEN_PATTERN:
        try:
            return _WordTerms(vocabulary, tuple(params["ngram_range"]), params["token_pattern"])
        except ValueError:
            pass
    build = vectorizer.build_analyzer()
    return _AnalyzerTerms(build, vocabulary)


def _count(rows: np.ndarray, cols: np.ndarray, n_terms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (row, column) pairs sorted by row then column, and how often each occurred (as float64)."""
    if len(cols) == 0:
        return rows, cols, np.empty(0)
    keys = rows * n_terms + cols
    keys.sort()
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    counts = np.diff(np.append(starts, len(keys))).astype(np.float64)
    distinct = keys[starts]
    return distinct // n_terms, distinct % n_terms, counts


# ------------------------------------------------------------------------------------------------ scorer


class FastScorer:
    """Scores like a fitted :class:`ModerationClassifier`, to 1e-9, without scikit-learn at call time.

    >>> scorer = FastScorer.from_model(lite_moderation.load())
    >>> scorer.predict_proba([("a question", "an answer")])   # (1, 15), same columns as the model

    ``cache_size`` bounds the per-word cache of character n-gram ids (distinct words); results never
    depend on it, only speed and memory do.
    """

    def __init__(self, blocks: list[_Block], intercept: np.ndarray, thresholds: np.ndarray,
                 labels: list[str]) -> None:
        self.blocks = blocks
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        self.thresholds_ = np.asarray(thresholds, dtype=np.float64)
        self.labels_ = list(labels)

    @classmethod
    def from_model(cls, model: ModerationClassifier, cache_size: int = DEFAULT_CACHE_SIZE) -> FastScorer:
        """Precompute the fast tables of a fitted model (the model itself is not changed)."""
        blocks = []
        start = 0
        for field, _, vectorizer in model.vectorizer_.blocks_:
            stop = start + len(vectorizer.vocabulary_)
            blocks.append(_Block(field, vectorizer, model.coef_[start:stop], cache_size))
            start = stop
        if start != model.coef_.shape[0]:
            raise ValueError(f"the model's blocks have {start} terms but coef_ has {model.coef_.shape[0]} rows")
        return cls(blocks, model.intercept_, model.thresholds_, model.labels_)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, cache_size: int = DEFAULT_CACHE_SIZE) -> FastScorer:
        """Load a saved model directory (default: the shipped model) straight into a fast scorer."""
        from .persistence import load

        return cls.from_model(load(path), cache_size=cache_size)

    @property
    def exact_analyzers(self) -> list[str]:
        """Per block, "fast" or "sklearn" (the fallback analyser) — for diagnostics."""
        return ["fast" if block.fast else "sklearn" for block in self.blocks]

    def decision_function(self, X: Sequence) -> np.ndarray:
        """(n, 15) log-odds of texts or (prompt, response) pairs."""
        prompts, responses = split_fields(X)
        n = len(prompts)
        texts = _FieldTexts(prompts, responses)
        total = np.zeros((n, len(self.intercept_)))
        for block in self.blocks:
            total += block.scores(texts.get(block.field, block.lowercase), n)
        return total + self.intercept_

    def predict_proba(self, X: Sequence) -> np.ndarray:
        """(n, 15) probabilities, columns ordered as ``labels_`` (14 categories, then unsafe)."""
        return _sigmoid(self.decision_function(X))

    def predict(self, X: Sequence) -> np.ndarray:
        """(n, 15) bool decisions at the model's tuned thresholds."""
        return self.predict_proba(X) >= self.thresholds_

    def moderate(self, X: Sequence, threshold: float | None = None) -> list[dict]:
        """The same verdicts as :meth:`ModerationClassifier.moderate`."""
        return results_from_proba(self.predict_proba(X), self.thresholds_, threshold)


class _FieldTexts:
    """The text of each field, lowercased once and shared by the blocks that read it."""

    def __init__(self, prompts: list[str], responses: list[str]) -> None:
        self.prompts = prompts
        self.responses = responses
        self.memo: dict[tuple[str, bool], list[str]] = {}

    def get(self, field: str, lowercase: bool) -> list[str]:
        key = (field, lowercase)
        if key not in self.memo:
            if field == "prompt":
                texts = self.prompts
            elif field == "response":
                texts = self.responses
            else:
                texts = [p + JOINT_SEPARATOR + r for p, r in zip(self.prompts, self.responses)]
            self.memo[key] = [t.lower() for t in texts] if lowercase else texts
        return self.memo[key]

