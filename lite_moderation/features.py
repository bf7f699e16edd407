"""TF-IDF features for question-answer pairs, with the prompt and the response featurised separately.

Why separately: the same question is safe or unsafe depending on the answer, so a term means something
different in the prompt than in the response. Each (field, analyzer) block is its own TF-IDF vocabulary
and the blocks are stacked side by side; the linear model then weighs "how to" in a question apart from
"how to" in an answer.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

from .normalize import DEFAULT_NORMALIZATION, check_normalization, normalize_texts
from .texts import (
    FIELDS,
    JOINT_SEPARATOR,
    block_cap,
    block_settings,
    block_specs,
    field_texts,
    ngram_range,
    split_fields,
)

__all__ = ["FIELDS", "JOINT_SEPARATOR", "QAVectorizer", "split_fields"]

class QAVectorizer(TransformerMixin, BaseEstimator):
    """Stacked TF-IDF blocks over the prompt, the response, or both joined.

    Parameters
    ----------
    word_fields : fields that get a word n-gram block ("prompt", "response", "joint").
    word_ngram_range : n-gram range of the word blocks.
    char_fields : fields that get a character n-gram block (empty tuple: none).
    char_ngram_range : n-gram range of the character blocks (``char_wb`` analyzer).
    min_df : minimum document frequency of a term, per block.
    max_features : cap on the vocabulary of each block (most frequent terms kept), None for no cap; or
        ``{field: cap}`` for the named fields' blocks ("*": the others; see :func:`texts.field_caps`).
    sublinear_tf : use 1 + log(tf), which keeps long texts from dominating.
    dtype : float dtype of the output matrix.
    normalize : how texts are normalised before analysis: ``"undisguised"`` (as a reader reads them: compatibility
        forms folded, invisible format characters removed, look-alike letters inside Latin words made Latin,
        letters spaced out joined, leetspeak inside words read as letters: :mod:`lite_moderation.normalize`),
        ``"visible"`` (the same without the last two) or None (read as they are).
    """

    def __init__(
        self,
        word_fields: tuple[str, ...] = ("prompt", "response"),
        word_ngram_range: tuple[int, int] = (1, 2),
        char_fields: tuple[str, ...] = ("response",),
        char_ngram_range: tuple[int, int] = (2, 5),
        min_df: float = 2,
        max_features: int | dict[str, int | None] | None = None,
        sublinear_tf: bool = True,
        dtype: type = np.float32,
        normalize: str | None = DEFAULT_NORMALIZATION,
    ) -> None:
        self.word_fields = word_fields
        self.word_ngram_range = word_ngram_range
        self.char_fields = char_fields
        self.char_ngram_range = char_ngram_range
        self.min_df = min_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.dtype = dtype
        self.normalize = normalize

    def block_specs(self) -> list[tuple[str, str]]:
        """The (field, analyzer) of each block, in column order."""
        return block_specs(self.word_fields, self.char_fields)

    def make_block(self, analyzer: str) -> TfidfVectorizer:
        """An unfitted TF-IDF vectorizer for one block (also used to rebuild a saved one); :meth:`fit_transform`
        sets its field's vocabulary cap (a subclass may override this with the one-argument signature)."""
        return StableTfidfVectorizer(**self.block_settings(analyzer))

    def block_settings(self, analyzer: str, field: str | None = None) -> dict:
        """All ``TfidfVectorizer`` parameters of one block (see :func:`lite_moderation.texts.block_settings`)."""
        return block_settings(self.get_params(), analyzer, field)

    def read(self, X: Sequence) -> tuple[list[str], list[str]]:
        """The prompts and responses of X as the blocks read them (:func:`split_fields`, then normalised)."""
        prompts, responses = split_fields(X)
        form = check_normalization(self.normalize)
        return normalize_texts(prompts, form), normalize_texts(responses, form)

    def fit(self, X: Sequence, y: object = None) -> QAVectorizer:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Sequence, y: object = None, *, n_jobs: int | None = None) -> sp.csr_matrix:
        """Fit every block and return the features of X; ``n_jobs`` worker processes fit blocks side by side
        (the same features and vocabularies: speed only)."""
        for name in ("word_ngram_range", "char_ngram_range"):  # a model file may declare no more (memory)
            ngram_range(getattr(self, name), name)
        prompts, responses = self.read(X)
        self.__dict__.pop("_blocks_by_dtype", None)
        specs = self.block_specs()
        calls = [(self.make_block(analyzer).set_params(max_features=block_cap(self.max_features, field)),
                  field_texts(field, prompts, responses), field, analyzer) for field, analyzer in specs]
        fitted = _per_block(_fit_block, calls, n_jobs)
        self.blocks_ = [(field, analyzer, block) for (field, analyzer), (block, _) in zip(specs, fitted)]
        self.n_features_out_ = sum(matrix.shape[1] for _, matrix in fitted)
        return sp.hstack([matrix for _, matrix in fitted], format="csr")

    def transform(self, X: Sequence, dtype: type | None = None, *, n_jobs: int | None = None) -> sp.csr_matrix:
        """Features of X; ``dtype`` overrides the output dtype (scoring uses float64, training float32);
        ``n_jobs`` worker processes transform blocks side by side."""
        check_is_fitted(self, "blocks_")
        prompts, responses = self.read(X)
        blocks = self.blocks_ if dtype is None else self._blocks_as(np.dtype(dtype))
        calls = [(block, field_texts(field, prompts, responses), field, analyzer) for field, analyzer, block in blocks]
        return sp.hstack(_per_block(_transform_block, calls, n_jobs), format="csr")

    def _blocks_as(self, dtype: np.dtype) -> list[tuple[str, str, TfidfVectorizer]]:
        """Shallow copies of the fitted blocks that output ``dtype`` (shared vocabulary and idf; thread-safe)."""
        cache = self.__dict__.setdefault("_blocks_by_dtype", {})
        if dtype not in cache:
            cache[dtype] = [(f, a, copy.copy(b).set_params(dtype=dtype.type)) for f, a, b in self.blocks_]
        return cache[dtype]

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "blocks_")
        names = [
            f"{field}:{analyzer}:{term}"
            for field, analyzer, block in self.blocks_
            for term in block.get_feature_names_out()
        ]
        return np.asarray(names, dtype=object)


class StableTfidfVectorizer(TfidfVectorizer):
    """``TfidfVectorizer`` whose ``max_features`` cut breaks ties by term, so a vocabulary is the same on every CPU.

    Why: scikit-learn keeps the most frequent terms with numpy's default (unstable) sort, which runs
    CPU-specific SIMD code; terms tied at the cut-off then land differently on AVX2 and AVX-512 machines and
    a documented rebuild is not byte-identical. Here the order is count (descending), then term (ascending).
    """

    def _limit_features(self, X, vocabulary, high=None, low=None, limit=None):
        pruned = super()._limit_features(X, vocabulary, high, low, None)
        # scikit-learn < 1.4 also returns the removed terms
        X, removed = pruned if isinstance(pruned, tuple) else (pruned, None)
        if limit is not None and X.shape[1] > limit:
            X = _keep_most_frequent(X, vocabulary, limit, removed)
        if limit is not None:  # the last step of fit_transform (without max_features, _sort_features is)
            X.sort_indices()
        return X if removed is None else (X, removed)

    def _char_wb_ngrams(self, text_document: str) -> list[str]:
        """scikit-learn's ``char_wb`` n-grams, each word's taken from a cache (:func:`_word_char_ngrams`): words
        repeat, so training and the scikit-learn scoring path stop rebuilding the same n-grams. Same list, same
        order (a test compares them)."""
        min_n, max_n = self.ngram_range
        ngrams: list[str] = []
        for word in self._white_spaces.sub(" ", text_document).split():
            ngrams += _word_char_ngrams(word, min_n, max_n) if len(word) <= _CACHED_WORD_CHARS \
                else _padded_word_ngrams(word, min_n, max_n)
        return ngrams

    def _sort_features(self, X, vocabulary):
        """Renumber terms by name. ``fit_transform``'s counts leave with each row's columns in order (sorted once,
        by its last step): it then gives the bytes ``transform`` gives (tf-idf row norms are sums in column order),
        so training reuses its output."""
        X = super()._sort_features(X, vocabulary)
        X.has_sorted_indices = False  # its indices were replaced in place: the cached flag is stale
        if self.max_features is None:  # the last step: _limit_features ran before
            X.sort_indices()
        return X


#: Words longer than this are not cached, and the cache holds the 16,384 words used last: at most 62 n-grams a
#: word: 33 MB after 18,000 real texts (instruction answers, XSafety), 66 MB at worst (distinct 16-letter words;
#: tracemalloc). Analysis of those texts: 1.4x scikit-learn's speed (131,072 words: 1.8x, but over 200 MB).
_CACHED_WORD_CHARS = 16


def _padded_word_ngrams(word: str, min_n: int, max_n: int) -> tuple[str, ...]:
    """The ``char_wb`` n-grams of one word, as scikit-learn's ``_char_wb_ngrams`` lists them: the word padded with
    a space each side, n from min_n to max_n, a word shorter than n counted once."""
    padded = f" {word} "
    ngrams = []
    for n in range(min_n, max_n + 1):
        ngrams += [padded[i:i + n] for i in range(max(len(padded) - n + 1, 1))]
        if len(padded) <= n:
            break
    return tuple(ngrams)


_word_char_ngrams = functools.lru_cache(maxsize=1 << 14)(_padded_word_ngrams)


def _keep_most_frequent(X: sp.spmatrix, vocabulary: dict, limit: int, removed: set | None) -> sp.csr_matrix:
    """Keep the ``limit`` terms of highest count, ties broken by term; renumber ``vocabulary`` in place."""
    terms = np.empty(X.shape[1], dtype=object)
    for term, column in vocabulary.items():
        terms[column] = term
    term_rank = np.empty(len(terms), dtype=np.intp)
    term_rank[sorted(range(len(terms)), key=terms.__getitem__)] = np.arange(len(terms))
    counts = np.asarray(X.sum(axis=0)).ravel()
    kept = np.sort(np.lexsort((term_rank, -counts))[:limit])
    vocabulary.clear()
    vocabulary.update((terms[old], new) for new, old in enumerate(kept))
    if removed is not None:
        removed.update(np.delete(terms, kept))
    return X[:, kept]


def _per_block(function: Callable, calls: list[tuple], n_jobs: int | None) -> list:
    """``function(*call)`` for each block's call, in order; with ``n_jobs`` > 1 in worker processes (analysing
    text holds Python's lock), the character blocks, the longest, dispatched first."""
    if n_jobs in (None, 1) or len(calls) < 2:
        return [function(*call) for call in calls]
    order = sorted(range(len(calls)), key=lambda i: calls[i][3] != "char_wb")
    results = Parallel(n_jobs=n_jobs, prefer="processes")(delayed(function)(*calls[i]) for i in order)
    by_call = dict(zip(order, results))
    return [by_call[i] for i in range(len(calls))]


def _transform_block(block: TfidfVectorizer, texts: list[str], field: str, analyzer: str) -> sp.csr_matrix:
    return block.transform(texts)


def _fit_block(block: TfidfVectorizer, texts: list[str], field: str,
               analyzer: str) -> tuple[TfidfVectorizer, sp.csr_matrix]:
    """Fit one block and return it with its features; a block left with no terms (tiny data, high min_df) gets
    a clear error."""
    try:
        return block, block.fit_transform(texts)
    except ValueError as exc:
        raise ValueError(
            f"the {analyzer} block on the {field} has no terms after min_df/max_df pruning ({exc}); "
            "train on more data or lower min_df"
        ) from exc
