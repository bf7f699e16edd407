"""A fast scoring path: the fitted model's probabilities without scikit-learn's per-call machinery.

Why: scoring one request through ``TfidfVectorizer.transform`` costs milliseconds of validation and
Python analysers, and batches pay for string n-grams that are thrown away. :class:`FastScorer` computes
exactly the same numbers (same analysers, same counts, same sublinear TF-IDF, same l2 norm per block, same
weights) in float64, with:

- a bounded cache of the distinct whitespace-separated words of each text source (prompt, response): both
  analysers work word by word (no word token and no ``char_wb`` n-gram crosses whitespace), so a word's
  token ids and character n-gram columns are computed once. A batch finds its words' cache slots in numpy:
  the texts are joined, encoded to UTF-8 once, split at whitespace bytes, and each word of up to 24 bytes
  becomes an exact key of three uint64 words looked up in an open-addressing hash table (a Python dict
  lookup per word was a third of the time: cache-miss pointer chasing). Texts numpy cannot split exactly
  (NUL bytes, lone surrogates) and single requests take ``str.split`` and a dict instead;
- fields that are shape-gated copies of a source (``pair_prompt``, ``lone_prompt``...) share its words and
  only select rows;
- word n-grams looked up as integer keys of token ids (bigram strings are never built in batches);
- for ``char_wb`` blocks, each cached word also keeps the sum of its n-grams' weights and squared idfs, so
  a text costs one row per word, plus a correction for the n-grams repeated within the text only;
- idf folded into the weight rows (``w_t = idf_t * coef_t``), counts found by one sort of (row, column)
  keys, the l2 norm computed from the counts, and scipy's CSR routine called directly, accumulating every
  block into one (n, 15) matrix.

Blocks whose settings the fast analysers do not reproduce (a custom token pattern, stop words, accent
stripping...) fall back to scikit-learn's own analyser, so the result stays exact either way.
"""

from __future__ import annotations

import copy as _copy
import functools
import itertools
import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse import _sparsetools

from .explain import model_parts
from .labels import LabelSet, label_set_of
from .normalize import check_normalization, normalize_texts
from .taxonomy import sigmoid
from .texts import WORD_TOKEN_PATTERN, field_text, field_texts, scored_items, split_fields
from .thresholds import cut_offs, message_cut_offs, set_message_cut_offs

if TYPE_CHECKING:
    from .model import ModerationClassifier

__all__ = ["FastScorer"]

#: Distinct words cached per text source (a few hundred bytes each); a full cache is emptied and refilled.
DEFAULT_CACHE_SIZE = 100_000
#: Bytes one text source's word cache may hold (arrays and words) before it is emptied: a count of words
#: alone let a few huge words hold hundreds of MB. A single batch may add more, and is kept until the next.
DEFAULT_CACHE_BYTES = 64 << 20
#: Words whose Python lists single requests keep per block (about 300 bytes each, shared ints): the common
#: vocabulary of requests, a bounded part of the memory of a long-running server.
SINGLE_CACHE_SIZE = 20_000
#: Bytes those lists may hold, all blocks together, before they are emptied.
SINGLE_CACHE_BYTES = 16 << 20
#: A single item of up to this many characters takes the plain-Python path; a longer one is a batch of one
#: (numpy over its words: a 100,000-word text cost 20x more through Python lists).
SINGLE_MAX_CHARS = 2_000
#: Texts vectorised together: bounds the temporary arrays (about 20 MB per 1,000 pairs with char n-grams).
BATCH_SIZE = 1024
_MISSING = -1

#: Which text source a field's words come from, and the gate selecting its rows: (other field, kept when
#: that field is non-empty). ``pair_prompt`` is the prompt of a row whose response is non-empty, etc.
_GATED_FIELDS = {
    "prompt": ("prompt", None), "response": ("response", None),
    "pair_prompt": ("prompt", ("response", True)), "pair_response": ("response", ("prompt", True)),
    "lone_prompt": ("prompt", ("response", False)), "lone_text": ("response", ("prompt", False)),
}

#: The characters ``str.split()`` splits at beyond ASCII (``str.isspace``): replaced by a space before the
#: UTF-8 bytes are split (tests check the list against every code point).
UNICODE_SPACES = "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
                 "\u2028\u2029\u202f\u205f\u3000"
_SPACE_BYTES = [c.encode("utf-8") for c in UNICODE_SPACES]
#: Lead bytes of those characters' UTF-8 sequences (0xC2, 0xE1, 0xE2, 0xE3).
_SPACE_LEAD = np.zeros(256, dtype=bool)
_SPACE_LEAD[sorted({b[0] for b in _SPACE_BYTES})] = True
#: Bytes that are part of a word: all but ASCII whitespace (``str.split``'s) and NUL (the text separator).
_WORD_BYTE = np.ones(256, dtype=bool)
_WORD_BYTE[[0, 9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = False
#: Words of up to this many UTF-8 bytes are keyed exactly by three uint64; longer ones go through the dict.
_KEY_BYTES = 24
#: Character n-grams of a long word are made this many at a time (bounds the temporary strings).
_GRAM_CHUNK = 1 << 14
#: What a dict entry costs beyond its key and value objects, about (for the caches' byte counts).
_DICT_ENTRY_BYTES = 100
_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


# ------------------------------------------------------------------------------------------------ word cache


def _mark_unicode_spaces(padded: bytes, codes: np.ndarray, inside: np.ndarray) -> None:
    """Mark the bytes of non-ASCII whitespace characters as outside words (``str.split`` splits at them)."""
    leads = np.flatnonzero(np.take(_SPACE_LEAD, codes))
    if not len(leads):
        return
    following = np.frombuffer(padded, dtype=np.uint8)
    seq = (following[leads].astype(np.uint32) << 16) | (following[leads + 1].astype(np.uint32) << 8) \
        | following[leads + 2]
    for space in _SPACE_BYTES:
        value = int.from_bytes(space.ljust(3, b"\0"), "big")
        mask = 0xFFFF00 if len(space) == 2 else 0xFFFFFF
        at = leads[(seq & mask) == value]
        for k in range(len(space)):
            inside[at + k] = False



def _index_dtype(n_terms: int) -> type:
    """The narrowest unsigned type of column ids."""
    return np.uint16 if n_terms <= 1 << 16 else np.uint32


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with room for ``size`` rows (capacity doubles, so appends stay amortised O(1))."""
    if size <= len(array):
        return array
    bigger = np.zeros((max(size, 2 * len(array)), *array.shape[1:]), dtype=array.dtype)
    bigger[:len(array)] = array
    return bigger


def _indptr(rows: np.ndarray, n: int) -> np.ndarray:
    """CSR row pointers (int32) of entries whose sorted row ids are ``rows``."""
    indptr = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr


class _Pool:
    """Per cache slot, a run of ints (a word's token ids or n-gram columns), all in one flat array."""

    def __init__(self, dtype: type) -> None:
        self.dtype = dtype
        self.reset()

    def reset(self) -> None:
        self.offsets = np.zeros(1024, dtype=np.int32)
        self.lengths = np.zeros(1024, dtype=np.int32)
        self.values = np.zeros(1 << 16, dtype=self.dtype)
        self.size = 0
        self.slots = 0

    def add(self, runs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Append the runs of the next ``len(runs)`` slots; returns them flat and their lengths."""
        lengths = np.fromiter(map(len, runs), dtype=np.int32, count=len(runs))
        flat = np.fromiter(itertools.chain.from_iterable(runs), dtype=self.dtype, count=int(lengths.sum()))
        first, stop = self.slots, self.slots + len(runs)
        self.offsets = _grown(self.offsets, stop)
        self.lengths = _grown(self.lengths, stop)
        self.values = _grown(self.values, self.size + len(flat))
        if self.size + len(flat) >= 2**31:
            raise MemoryError("word cache pool over 2**31 values: use a smaller cache_size")
        self.offsets[first:stop] = self.size + np.cumsum(lengths, dtype=np.int64) - lengths
        self.lengths[first:stop] = lengths
        self.values[self.size:self.size + len(flat)] = flat
        self.size += len(flat)
        self.slots = stop
        return flat, lengths

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.lengths.nbytes + self.values.nbytes

    def gather(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The runs of ``slots`` end to end, and each slot's run length (take: 3x faster than [])."""
        lengths = np.take(self.lengths, slots)
        ends = np.cumsum(lengths, dtype=np.int32)
        total = int(ends[-1]) if len(ends) else 0
        ends -= lengths
        shift = np.repeat(np.take(self.offsets, slots) - ends, lengths)
        shift += np.arange(total, dtype=np.int32)
        return np.take(self.values, shift), lengths


class _WordTable:
    """Exact keys (three uint64: a word's first 24 UTF-8 bytes, zero-padded) -> cache slot, in numpy.

    Open addressing with linear probing, at most half full, looked up and filled a whole array at a time.
    Each entry is one row of four uint64 (the key, then slot + 1; 0 = empty), so a probe reads one cache
    line. Zero padding is exact because the words it holds contain no NUL byte.

    Why keyed and bounded: with a fixed hash, words crafted to share a home make one probing cluster, and
    each of n such words costs O(n) probes (a 0.9 MB request took minutes). The multipliers are random per
    table (a crafted set must guess them), and a key that finds no place within ``MAX_PROBES`` goes to an
    overflow dict (SipHash-keyed), so a lookup or insert costs at most ``MAX_PROBES`` probes per key
    whatever the words. ``probes`` counts the entries read (the work, for tests and benchmarks).
    """

    MAX_PROBES = 16

    def __init__(self, bits: int = 12, multipliers: tuple[np.uint64, ...] | None = None) -> None:
        self.multipliers = multipliers or _random_multipliers()
        self.bits = bits
        self.mask = (1 << bits) - 1
        self.shift = np.uint64(64 - bits)
        self.entries = np.zeros((1 << bits, 4), dtype=np.uint64)
        self.overflow: dict[bytes, int] = {}  # keys that found no place within MAX_PROBES
        self.count = 0
        self.probes = 0

    def _home(self, keys: np.ndarray) -> np.ndarray:
        m0, m1, m2, m3 = self.multipliers
        mixed = keys[:, 0] * m0
        mixed ^= keys[:, 1] * m1
        mixed ^= keys[:, 2] * m2
        mixed ^= mixed >> np.uint64(29)
        mixed *= m3
        mixed >>= self.shift
        return mixed.astype(np.int64)

    @staticmethod
    def _matches(entries: np.ndarray, keys: np.ndarray) -> np.ndarray:
        hit = entries[:, 0] == keys[:, 0]
        hit &= entries[:, 1] == keys[:, 1]
        hit &= entries[:, 2] == keys[:, 2]
        hit &= entries[:, 3] != 0
        return hit

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each key (rows of the (n, 3) ``keys``), -1 where absent."""
        where = self._home(keys)
        entries = np.take(self.entries, where, axis=0)
        self.probes += len(keys)
        hit = self._matches(entries, keys)
        found = entries[:, 3].astype(np.int32)
        found -= 1
        pending = np.flatnonzero(~hit & (entries[:, 3] != 0))
        found[pending] = _MISSING
        where = where[pending]
        for _ in range(self.MAX_PROBES - 1):
            if not len(pending):
                break
            where += 1
            where &= self.mask
            entries = np.take(self.entries, where, axis=0)
            self.probes += len(pending)
            hit = self._matches(entries, keys[pending])
            found[pending[hit]] = entries[hit, 3].astype(np.int32) - 1
            going = ~hit & (entries[:, 3] != 0)
            pending, where = pending[going], where[going]
        if len(pending) and self.overflow:  # every place probed was taken: the key is there or absent
            get = self.overflow.get
            found[pending] = [get(key, _MISSING) for key in _key_bytes(keys[pending])]
        return found

    def insert(self, keys: np.ndarray, slots: np.ndarray) -> None:
        """Add distinct keys not in the table yet."""
        if 2 * (self.count + len(slots)) > len(self.entries):
            old = self.entries[self.entries[:, 3] != 0]
            overflow, probes = self.overflow, self.probes
            bits = max(self.bits + 1, int(np.ceil(np.log2(4 * (self.count + len(slots)) + 1))))  # room to grow
            self.__init__(bits, self.multipliers)
            self.probes = probes
            self._place(old[:, :3], old[:, 3].astype(np.int64) - 1)
            if overflow:
                self._place(np.frombuffer(b"".join(overflow), dtype=np.uint64).reshape(-1, 3),
                            np.fromiter(overflow.values(), dtype=np.int64, count=len(overflow)))
        self._place(keys, slots)

    def _place(self, keys: np.ndarray, slots: np.ndarray) -> None:
        where = self._home(keys)
        waiting = np.arange(len(slots))
        owner = np.full(len(self.entries), -1, dtype=np.int64)
        for _ in range(self.MAX_PROBES):  # each round, one key wanting each free place takes it; the rest probe on
            if not len(waiting):
                break
            self.probes += len(waiting)
            free = np.flatnonzero(self.entries[where, 3] == 0)
            owner[where[free]] = free  # of keys wanting the same place, one write lands: that key wins
            won = free[owner[where[free]] == free]
            places, winners = where[won], waiting[won]
            self.entries[places, :3] = keys[winners]
            self.entries[places, 3] = slots[winners].astype(np.uint64) + np.uint64(1)
            lost = np.ones(len(waiting), dtype=bool)
            lost[won] = False
            waiting, where = waiting[lost], where[lost]
            where += 1  # every place they wanted, free or not, is taken now
            where &= self.mask
        if len(waiting):
            self.overflow.update(zip(_key_bytes(keys[waiting]), slots[waiting].tolist()))
        self.count += len(slots)


def _random_multipliers() -> tuple[np.uint64, ...]:
    """Four odd 64-bit multipliers from the operating system's randomness: the key of one word table."""
    return tuple(np.uint64(int.from_bytes(os.urandom(8), "little") | 1) for _ in range(4))


def _key_bytes(keys: np.ndarray) -> list[bytes]:
    """Each (3,) uint64 key row as 24 bytes (a dict key: Python hashes bytes with its keyed SipHash)."""
    data = np.ascontiguousarray(keys, dtype=np.uint64).tobytes()
    return [data[i:i + 24] for i in range(0, len(data), 24)]


def _distinct_rows(keys: np.ndarray, multipliers: tuple[np.uint64, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(keys, axis=0, return_index=True, return_inverse=True)`` of (n, 3) uint64 keys, via a 1-d
    unique of a keyed hash of each row (5x faster), checked exactly (a collision takes the 2-d unique)."""
    m0, m1, m2, _ = multipliers
    mixed = keys[:, 0] * m0
    mixed ^= keys[:, 1] * m1
    mixed ^= keys[:, 2] * m2
    _, first, inverse = np.unique(mixed, return_index=True, return_inverse=True)
    distinct = keys[first]
    if not (distinct[inverse] == keys).all():
        distinct, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return distinct, first, inverse.reshape(-1)


class _WordCache:
    """Cache slots of the distinct whitespace-separated words of one text source (e.g. the lowercased
    responses), shared by every fast block reading that source.

    Each block keeps its part of a word (token ids, n-gram columns and sums) in its own pool, computed
    once per distinct word. Words are found through a dict (``words``: single requests, and texts numpy
    cannot split) or the numpy :class:`_WordTable` (batches); both lead to the same slots. The cache
    empties itself when it holds ``cache_size`` words or ``max_bytes`` bytes (:meth:`held_bytes`).
    """

    def __init__(self, cache_size: int, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.cache_size = max(int(cache_size), 1)
        self.max_bytes = max(int(max_bytes), 1)
        self.users: list = []
        self.clear()

    def register(self, user: object) -> None:
        """``user`` needs ``dtype`` and ``word_values(word)``, and may have ``added(flat, lengths)``."""
        user.pool = _Pool(user.dtype)
        self.users.append(user)

    def clear(self) -> None:
        self.words: dict[str, int] = {}  # words found by str.split, and words too long for the table
        self.table = _WordTable()
        self.size = 0
        self.word_bytes = 0  # the dict's words and entries
        for user in self.users:
            user.pool.reset()
            if hasattr(user, "reset"):
                user.reset()

    def _add(self, new: list[str], remember: bool = True) -> np.ndarray:
        """New slots for the distinct words ``new`` (none cached yet), kept in the dict if ``remember``."""
        for user in self.users:
            flat, lengths = user.pool.add([user.word_values(w) for w in new])
            if hasattr(user, "added"):
                user.added(flat, lengths)
        first, self.size = self.size, self.size + len(new)
        if remember:
            self.words.update(zip(new, range(first, self.size)))
            self.word_bytes += sum(map(sys.getsizeof, new)) + _DICT_ENTRY_BYTES * len(new)
        return np.arange(first, self.size, dtype=np.int32)

    def held_bytes(self) -> int:
        """The bytes this cache holds: its arrays (allocated size) and its dicts' words, about."""
        table = self.table
        held = self.word_bytes + table.entries.nbytes + (24 + 33 + _DICT_ENTRY_BYTES) * len(table.overflow)
        for user in self.users:
            held += user.pool.nbytes + sum(getattr(user, name).nbytes for name in getattr(user, "slot_arrays", ()))
        return held

    def _room_for(self, n_new: int) -> bool:
        """Whether ``n_new`` more words fit; when not, the cache is emptied (the caller starts over)."""
        if (self.size + n_new <= self.cache_size and self.held_bytes() <= self.max_bytes) or not self.size:
            return True
        self.clear()
        return False

    def lookup(self, words: list[str]) -> np.ndarray:
        """Slot of every word, through the dict, adding the words not seen yet."""
        get = self.words.get
        slots = np.fromiter(map(get, words, itertools.repeat(_MISSING)), dtype=np.int32, count=len(words))
        missing = np.flatnonzero(slots < 0)
        if len(missing):
            new = list(dict.fromkeys([words[i] for i in missing]))
            if not self._room_for(len(new)):
                return self.lookup(words)
            self._add(new)
            get = self.words.__getitem__
            slots[missing] = [get(words[i]) for i in missing]
        return slots

    def split_slots(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Slots of the words of every text and the row of each (``str.split``: exact for any text)."""
        words: list[str] = []
        counts = []
        for text in texts:
            split = text.split()
            words += split
            counts.append(len(split))
        rows = np.repeat(np.arange(len(texts), dtype=np.int32), counts)
        return self.lookup(words), rows

    def batch_slots(self, texts: Sequence[str], lowercase: bool) -> tuple[np.ndarray, np.ndarray]:
        """Slots of the words of every text and the row of each, found in numpy over the UTF-8 bytes."""
        joined = "\x00".join(texts)
        if lowercase:
            joined = joined.lower()  # per character (NUL stops final-sigma context): as each text's own
        try:
            data = joined.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            data = None
        if data is None or data.count(0) != len(texts) - 1:  # a NUL inside a text: no byte separates texts
            return self.split_slots([t.lower() for t in texts] if lowercase else texts)
        return self._byte_slots(data)

    def _byte_slots(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        padded = data + bytes(_KEY_BYTES)
        codes = np.frombuffer(padded, dtype=np.uint8)[:len(data)]
        inside = np.take(_WORD_BYTE, codes)
        _mark_unicode_spaces(padded, codes, inside)
        edges = np.flatnonzero(np.diff(inside, prepend=False, append=False))
        if len(data) < 2**31:
            edges = edges.astype(np.int32)
        starts, ends = edges[0::2], edges[1::2]
        words_before = np.searchsorted(starts, np.flatnonzero(codes == 0))  # words before each text separator
        rows = np.repeat(np.arange(len(words_before) + 1, dtype=np.int32),
                         np.diff(words_before, prepend=0, append=len(starts)))
        lengths = ends - starts
        windows = np.ndarray((len(data) + _KEY_BYTES - 7,), dtype="<u8", buffer=padded, strides=(1,))
        keys = np.zeros((len(starts), 3), dtype=np.uint64)
        keys[:, 0] = np.take(windows, starts)
        keys[:, 0] &= np.take(_BYTE_MASKS, np.minimum(lengths, 8))
        for k in (1, 2):
            longer = np.flatnonzero(lengths > 8 * k)
            if len(longer):
                keys[longer, k] = (np.take(windows, starts[longer] + 8 * k)
                                   & np.take(_BYTE_MASKS, np.minimum(lengths[longer] - 8 * k, 8)))
        short = lengths <= _KEY_BYTES
        if short.all():
            slots = self.table.lookup(keys)
        else:
            slots = np.full(len(starts), _MISSING, dtype=np.int32)
            slots[short] = self.table.lookup(keys[short])
        missing = np.flatnonzero(slots < 0)
        if len(missing) and not self._fill(data, starts, ends, keys, short, slots, missing):
            return self._byte_slots(data)  # the cache was full and emptied: start over
        return slots, rows

    def _fill(self, data: bytes, starts: np.ndarray, ends: np.ndarray, keys: np.ndarray, short: np.ndarray,
              slots: np.ndarray, missing: np.ndarray) -> bool:
        """Slots of the words the table lacks, added as new slots (words of more than 24 bytes: through the
        dict); False if the cache was full and emptied."""
        long_missing = missing[~short[missing]]
        short_missing = missing[short[missing]]
        # one representative occurrence per distinct short key
        distinct, first, inverse = _distinct_rows(keys[short_missing], self.table.multipliers)
        firsts = short_missing[first]
        words = [data[s:e].decode("utf-8") for s, e in zip(starts[firsts].tolist(), ends[firsts].tolist())]
        long_words = [data[s:e].decode("utf-8")
                      for s, e in zip(starts[long_missing].tolist(), ends[long_missing].tolist())]
        get = self.words.get
        new_long = [w for w in dict.fromkeys(long_words) if get(w) is None]
        if not self._room_for(len(words) + len(new_long)):
            return False
        if words:
            found = self._add(words, remember=False)
            self.table.insert(distinct, found)
            slots[short_missing] = found[inverse]
        if long_words:
            if new_long:
                self._add(new_long)
            slots[long_missing] = np.fromiter(map(self.words.__getitem__, long_words), dtype=np.int32,
                                              count=len(long_words))
        return True


# ------------------------------------------------------------------------------------------------ analysers
#
# A fast analyser maps the cache slots of a batch's words (and the row of each word) to the occurrences of
# in-vocabulary n-grams: their rows and columns (duplicates kept). Rows are non-decreasing.


class _WordTerms:
    """Word n-gram columns of lowercased texts, via integer keys of token ids (no n-gram strings built)."""

    def __init__(self, vocabulary: dict[str, int], ngram_range: tuple[int, int], token_pattern: str,
                 renumber: np.ndarray) -> None:
        """``renumber``: the block's column of each vocabulary index."""
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
        by_n: dict[int, tuple[list[int], list[int]]] = {}
        for parts, column in zip(grams, vocabulary.values()):
            key = 0
            for part in parts:
                key = key * self.base + tokens[part]
            keys, columns = by_n.setdefault(len(parts), ([], []))
            keys.append(key)
            columns.append(column)
        self.tables = {n: _KeyTable(np.asarray(keys, dtype=np.int64), np.take(renumber, columns))
                       for n, (keys, columns) in sorted(by_n.items()) if n > 1}
        # unigrams need no table: the column of each token id (-1: the token is only part of longer n-grams)
        self.unigram_columns = np.full(self.base + 1, -1, dtype=np.int32)
        if 1 in by_n:
            self.unigram_columns[by_n[1][0]] = np.take(renumber, by_n[1][1])
        self.sizes = [n for n in sorted(by_n) if self.min_n <= n <= self.max_n]
        self.unigram_list: list[int] | None = None  # for single requests, built at the first
        self.gram_dicts: dict[int, dict[int, int]] = {}

    def word_values(self, word: str) -> list[int]:
        """Token ids of one whitespace-separated word (-1: a token outside every vocabulary term)."""
        get = self.tokens.get
        if len(word) > 1 and word.isalnum():  # the word is one token (regex ``\w`` = isalnum or "_")
            return [get(word, _MISSING)]
        return [get(token, _MISSING) for token in self.findall(word)]

    def one_counts(self, words: list[str], memo: _SingleMemo) -> Counter:
        """Column counts of one text's words, in plain Python (a request is too small for numpy's fixed costs)."""
        ids: list[int] = []
        for values in memo.values(self, words):
            ids += values
        cols: list[int] = []
        for n in self.sizes:
            if n == 1:
                if self.unigram_list is None:
                    self.unigram_list = self.unigram_columns.tolist()
                unigram = self.unigram_list
                cols += [c for c in map(unigram.__getitem__, ids) if c >= 0]  # id -1: the trailing -1
                continue
            get = self.gram_dict(n).get
            base = self.base
            if n == 2:
                keys = [a * base + b for a, b in itertools.pairwise(ids) if a >= 0 and b >= 0]
                cols += [c for c in map(get, keys) if c is not None]
                continue
            keys = []
            for start in range(len(ids) - n + 1):
                window = ids[start:start + n]
                if min(window) >= 0:
                    key = 0
                    for token in window:
                        key = key * base + token
                    keys.append(key)
            cols += [c for c in map(get, keys) if c is not None]
        return Counter(cols)

    def gram_dict(self, n: int) -> dict[int, int]:
        """Key -> column of the n-grams of size n > 1, as a dict (built at the first single request)."""
        if n not in self.gram_dicts:
            table = self.tables[n]
            self.gram_dicts[n] = dict(zip(table.sorted_keys.tolist(), table.sorted_values.tolist()))
        return self.gram_dicts[n]

    def occurrence_keys(self, slots: np.ndarray, rows: np.ndarray, n_terms: int, dtype: type) -> list[np.ndarray]:
        """``row * n_terms + column`` of every in-vocabulary n-gram occurrence, one array per n (rows of each
        word: ``rows``)."""
        ids, lengths = self.pool.gather(slots)
        row_keys = np.repeat(rows.astype(dtype) * dtype(n_terms), lengths)
        found = []
        for n in self.sizes:
            span = len(ids) - n + 1
            if span <= 0:
                continue
            if n == 1:
                cols = np.take(self.unigram_columns, ids)  # id -1 wraps to the trailing -1
                kept = np.flatnonzero(cols >= 0)
                keys = np.take(row_keys, kept)
                keys += np.take(cols, kept).astype(dtype)
                found.append(keys)
                continue
            valid = ids[:span] >= 0
            for k in range(1, n):
                valid &= ids[k:k + span] >= 0
            valid &= row_keys[:span] == row_keys[n - 1:]  # rows are sorted: first == last, one row
            where = np.flatnonzero(valid)
            key = np.take(ids, where).astype(np.int64)
            for k in range(1, n):
                key *= self.base
                key += np.take(ids, where + k)
            cols = self.tables[n].lookup(key)
            kept = np.flatnonzero(cols >= 0)
            keys = np.take(row_keys, np.take(where, kept))
            keys += np.take(cols, kept).astype(dtype)
            found.append(keys)
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
    """``char_wb`` n-gram columns, computed once per distinct whitespace-separated word (see _WordCache).

    Each cached word also keeps the sums of its n-gram occurrences' idf-folded weights and squared idfs: a
    text's TF-IDF product is the sum over its words, corrected for the n-grams it holds more than once.
    """

    def __init__(self, vocabulary: dict[str, int], ngram_range: tuple[int, int], renumber: np.ndarray) -> None:
        """``renumber``: the block's column of each vocabulary index."""
        columns = np.fromiter(vocabulary.values(), dtype=np.int64, count=len(vocabulary))
        self.vocabulary = dict(zip(vocabulary, np.take(renumber, columns).tolist()))
        self.min_n, self.max_n = ngram_range
        self.dtype = np.uint32
        self.weights: np.ndarray | None = None  # set by the block: (n_terms, n_labels), idf folded in
        self.squared_idf: np.ndarray | None = None
        self.slot_arrays = ("weight_sums", "squared_idf_sums")  # per-slot arrays, counted by the cache's bytes

    def reset(self) -> None:
        width = 0 if self.weights is None else self.weights.shape[1]
        self.weight_sums = np.zeros((1024, width))
        self.squared_idf_sums = np.zeros(1024)

    def word_values(self, word: str) -> list[int]:
        """Columns (the block's numbering) of the n-grams scikit-learn's ``_char_wb_ngrams`` makes of one word."""
        w = " " + word + " "
        w_len = len(w)
        if w_len > _GRAM_CHUNK:
            return self._long_word_values(w)
        grams = []
        for n in range(self.min_n, self.max_n + 1):
            if w_len <= n:  # a short word counts once, whole
                grams.append(w)
                break
            grams += [w[i:i + n] for i in range(w_len - n + 1)]
        return [c for c in map(self.vocabulary.get, grams) if c is not None]

    def _long_word_values(self, w: str) -> list[int]:
        """``word_values`` of a padded word longer than ``_GRAM_CHUNK``, in the same order, building its n-gram
        strings a chunk at a time (a 1 MB word's 4 million at once held 300 MB, which the process kept)."""
        get = self.vocabulary.get
        columns: list[int] = []
        for n in range(self.min_n, self.max_n + 1):
            last = len(w) - n + 1
            for start in range(0, last, _GRAM_CHUNK):
                grams = [w[i:i + n] for i in range(start, min(start + _GRAM_CHUNK, last))]
                columns += [c for c in map(get, grams) if c is not None]
        return columns

    def one_counts(self, words: list[str], memo: _SingleMemo) -> Counter:
        """Column counts of one text's words, in plain Python."""
        return Counter(itertools.chain.from_iterable(memo.values(self, words)))

    def added(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        """The per-word sums of the slots just added to the pool."""
        stop = self.pool.slots
        first = stop - len(lengths)
        self.weight_sums = _grown(self.weight_sums, stop)
        self.squared_idf_sums = _grown(self.squared_idf_sums, stop)
        rows = np.repeat(np.arange(len(lengths)), lengths)
        cols = flat.astype(np.int32)
        _product(len(lengths), cols, _indptr(rows, len(lengths)), np.ones(len(cols)), self.weights,
                 self.weight_sums[first:stop])
        self.squared_idf_sums[first:stop] = np.bincount(rows, np.take(self.squared_idf, cols), minlength=len(lengths))

    def occurrence_keys(self, slots: np.ndarray, rows: np.ndarray, n_terms: int, dtype: type) -> list[np.ndarray]:
        """``row * n_terms + column`` of every in-vocabulary n-gram occurrence (rows: of each word)."""
        cols, lengths = self.pool.gather(slots)
        keys = np.repeat(rows.astype(dtype) * dtype(n_terms), lengths)
        keys += cols.astype(dtype, copy=False)
        return [keys]


class _AnalyzerTerms:
    """Any block through scikit-learn's own analyser: slower, exact for every setting."""

    def __init__(self, analyzer: Callable[[str], list[str]], vocabulary: dict[str, int],
                 renumber: np.ndarray) -> None:
        self.analyzer = analyzer
        self.vocabulary = vocabulary
        self.renumber = renumber.tolist()

    def occurrence_keys_of_texts(self, texts: Sequence[str], n_terms: int, dtype: type) -> np.ndarray:
        """``row * n_terms + column`` of every in-vocabulary n-gram occurrence."""
        keys: list[int] = []
        get = self.vocabulary.get
        renumber = self.renumber
        for row, text in enumerate(texts):
            keys += [row * n_terms + renumber[c] for c in map(get, self.analyzer(text)) if c is not None]
        return [np.asarray(keys, dtype=dtype)]

    def one_counts_of_text(self, text: str) -> Counter:
        renumber = self.renumber
        return Counter(renumber[c] for c in map(self.vocabulary.get, self.analyzer(text)) if c is not None)


# ------------------------------------------------------------------------------------------------ products


def _product(n: int, cols: np.ndarray, indptr: np.ndarray, values: np.ndarray, weights: np.ndarray,
             out: np.ndarray) -> None:
    """``out += csr(values, cols, indptr) @ weights``, scipy's CSR routine called directly (int32 ids)."""
    _sparsetools.csr_matvecs(n, weights.shape[0], weights.shape[1], indptr, cols, values, weights.reshape(-1),
                             out.reshape(-1))


def _key_dtype(n: int, n_terms: int) -> type:
    """Keys ``row * n_terms + column`` in 32 bits when they fit (numpy sorts them with SIMD, 2x faster)."""
    return np.uint32 if n * n_terms < 2**32 else np.uint64


#: Keys sorted per run of rows of about this many (16K keys: a sort that stays in the L1 and L2 caches).
_SORT_CHUNK = 1 << 14


def _sorted_keys(parts: list[np.ndarray], n_terms: int) -> np.ndarray:
    """The ``row * n_terms + column`` keys of ``parts`` (each with non-decreasing rows) in one sorted array,
    sorted a cache-sized run of rows at a time (the runs are in order already: 1.5x faster than one sort)."""
    keys = parts[0] if len(parts) == 1 else None
    total = sum(map(len, parts))
    if total <= _SORT_CHUNK:
        keys = np.concatenate(parts) if keys is None else keys
        keys.sort()
        return keys
    scale = parts[0].dtype.type(n_terms)
    largest = max(parts, key=len)
    step = max(_SORT_CHUNK * len(largest) // total, 1)
    next_rows = (largest[step::step] // scale + scale.dtype.type(1)) * scale
    # keys < next_rows holds, then fails, along each part: a valid binary search although unsorted
    cuts = [[0, *np.searchsorted(part, next_rows).tolist(), len(part)] for part in parts]
    out = np.empty(total, dtype=parts[0].dtype)
    at = 0
    for k in range(len(next_rows) + 1):
        pieces = [part[cut[k]:cut[k + 1]] for part, cut in zip(parts, cuts)]
        size = sum(map(len, pieces))
        if len(pieces) == 1:
            out[at:at + size] = pieces[0]
        else:
            np.concatenate(pieces, out=out[at:at + size])
        out[at:at + size].sort()
        at += size
    return out


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of sorted ``keys`` and how often each occurs (float64)."""
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    counts = np.diff(starts, append=len(keys)).astype(np.float64)
    return np.take(keys, starts), counts


def _split_keys(keys: np.ndarray, n_terms: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns (int32) of ``row * n_terms + column`` keys."""
    rows = keys // keys.dtype.type(n_terms)
    cols = keys - rows * keys.dtype.type(n_terms)
    return rows.astype(np.int32), cols.astype(np.int32)


# ------------------------------------------------------------------------------------------------ blocks


class _Block:
    """One TF-IDF block: field, analyser, idf-folded weights, and the TF-IDF settings it reproduces."""

    def __init__(self, field: str, settings: dict, vocabulary: dict[str, int], idf: np.ndarray,
                 weights: np.ndarray, analyzer: Callable[[], Callable[[str], list[str]]], coef: np.ndarray) -> None:
        """``settings``: the TfidfVectorizer parameters; ``analyzer()`` builds scikit-learn's analyser,
        called only when no fast analyser reproduces the settings; ``coef``: the block's rows of the model's
        weights, written to ``weights`` (a view of the scorer's matrix) renumbered and times idf."""
        if settings["norm"] not in ("l2", None):
            raise ValueError(f"FastScorer supports norm='l2' or None, not {settings['norm']!r}")
        self.field = field
        self.sublinear = bool(settings["sublinear_tf"])
        self.binary = bool(settings["binary"])
        self.norm = settings["norm"] is not None
        self.n_terms = len(vocabulary)
        idf = np.asarray(idf, dtype=np.float64) if settings["use_idf"] else np.ones(self.n_terms)
        # Columns renumbered by increasing idf: the frequent terms, which most texts hold, get neighbouring
        # weight rows that stay in the CPU caches (private to the scorer; the model's numbering is unchanged).
        order = np.argsort(idf, kind="stable")
        renumber = np.empty(self.n_terms, dtype=np.int64)
        renumber[order] = np.arange(self.n_terms)
        self.idf = idf[order]
        self.squared_idf = self.idf * self.idf
        weights[:] = np.asarray(coef)[order]
        weights *= self.idf[:, None]  # idf folded in once
        self.weights = weights
        self.terms = _fast_terms(settings, vocabulary, renumber) or _AnalyzerTerms(analyzer(), vocabulary, renumber)
        self.fast = not isinstance(self.terms, _AnalyzerTerms)
        self.per_word_sums = isinstance(self.terms, _CharWbTerms)
        if self.per_word_sums:
            self.terms.weights, self.terms.squared_idf = self.weights, self.squared_idf
            self.terms.reset()
        # scikit-learn's own analyser lowercases by itself; the fast ones read pre-lowercased texts
        self.lowercase = self.fast and bool(settings["lowercase"])
        self.source, self.gate = _GATED_FIELDS.get(field, (field, None)) if self.fast else (field, None)
        self.cache: _WordCache | None = None  # set by FastScorer for the fast analysers

    def tf(self, counts: np.ndarray) -> np.ndarray:
        """Term frequencies as the block's TfidfVectorizer weighs them (in place)."""
        if self.binary:
            counts[:] = 1.0
        if self.sublinear:
            np.log(counts, out=counts)
            counts += 1.0
        return counts

    def add_scores(self, batch: _Batch, out: np.ndarray) -> None:
        """``out += `` the block's (n, 15) contribution: sum over terms of tf'(t) * w(t), over the l2 norm."""
        n = batch.n
        dtype = _key_dtype(n, self.n_terms)
        if not self.fast:
            keys = self.terms.occurrence_keys_of_texts(batch.field_texts(self.field), self.n_terms, dtype)
            return self._add_counted(keys, n, out)
        slots, rows = batch.words(self)
        if not len(slots):
            return None
        if self.per_word_sums:
            return self._add_by_words(slots, rows, n, dtype, out)
        return self._add_counted(self.terms.occurrence_keys(slots, rows, self.n_terms, dtype), n, out)

    def one(self, prompt: str, response: str, words: Callable[[str, bool], list[str]],
            memo: _SingleMemo) -> tuple[np.ndarray, np.ndarray] | None:
        """Columns of one input and their values tf'(t) / norm (its TF-IDF row before idf), None if it has none.

        ``words(text, lowercase)`` splits a text into words (once per text and call)."""
        text = field_text(self.field, prompt, response)
        if not text:
            return None
        if self.fast:
            counts = self.terms.one_counts(words(text, self.lowercase), memo)
        else:
            counts = self.terms.one_counts_of_text(text)
        if not counts:
            return None
        cols = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        tf = self.tf(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
        if self.norm:
            weighted = tf * np.take(self.idf, cols)
            tf /= np.sqrt(weighted @ weighted)
        return cols, tf

    def _add_counted(self, parts: list[np.ndarray], n: int, out: np.ndarray) -> None:
        parts = [part for part in parts if len(part)]
        if not parts:
            return
        keys, tf = _runs(_sorted_keys(parts, self.n_terms))
        rows, cols = _split_keys(keys, self.n_terms)
        self.tf(tf)
        if self.norm:
            weighted = tf * np.take(self.idf, cols)
            norms = np.sqrt(np.bincount(rows, weighted * weighted, minlength=n))
            norms[norms == 0.0] = 1.0
            tf /= np.take(norms, rows)
        _product(n, cols, _indptr(rows, n), tf, self.weights, out)

    def _add_by_words(self, slots: np.ndarray, rows: np.ndarray, n: int, dtype: type, out: np.ndarray) -> None:
        """Sum the cached per-word sums, then correct the n-grams a text holds c > 1 times: they were counted
        c times, and weigh tf'(c)."""
        terms = self.terms
        total = np.zeros((n, self.weights.shape[1]))
        _product(n, slots, _indptr(rows, n), np.ones(len(slots)), terms.weight_sums, total)
        squares = np.bincount(rows, np.take(terms.squared_idf_sums, slots), minlength=n)
        keys = _sorted_keys(terms.occurrence_keys(slots, rows, self.n_terms, dtype), self.n_terms)
        repeats = np.take(keys, np.flatnonzero(keys[1:] == keys[:-1]))  # one entry per extra occurrence
        if len(repeats):
            repeated, extra = _runs(repeats)
            counts = extra + 1.0
            rows2, cols2 = _split_keys(repeated, self.n_terms)
            tf = self.tf(counts.copy())
            if self.norm:
                squares += np.bincount(rows2, (tf * tf - counts) * np.take(self.squared_idf, cols2), minlength=n)
            _product(n, cols2, _indptr(rows2, n), tf - counts, self.weights, total)
        if self.norm:
            norms = np.sqrt(squares)
            norms[norms == 0.0] = 1.0
            total /= norms[:, None]
        out += total


def _fast_terms(settings: dict, vocabulary: dict[str, int], renumber: np.ndarray) -> _WordTerms | _CharWbTerms | None:
    """The fast exact analyser for a block's settings, or None when only scikit-learn's reproduces them."""
    plain = (settings["preprocessor"] is None and settings["tokenizer"] is None
             and settings["strip_accents"] is None and settings["input"] == "content")
    analyzer = settings["analyzer"]
    if plain and analyzer == "char_wb":
        return _CharWbTerms(vocabulary, tuple(settings["ngram_range"]), renumber)
    if plain and analyzer == "word" and settings["stop_words"] is None \
            and settings["token_pattern"] == WORD_TOKEN_PATTERN:
        try:
            return _WordTerms(vocabulary, tuple(settings["ngram_range"]), settings["token_pattern"], renumber)
        except ValueError:
            pass
    return None


# ------------------------------------------------------------------------------------------------ scorer


class FastScorer:
    """Scores like a fitted :class:`ModerationClassifier`, to 1e-9, without scikit-learn at call time.

    >>> scorer = FastScorer.from_model(lite_moderation.load())
    >>> scorer.predict_proba([("a question", "an answer")])   # (1, 15): every head, columns as the model's labels_

    ``cache_size`` (words) and ``cache_bytes`` bound each per-source cache of distinct whitespace-separated
    words (their token ids and character n-gram columns); results never depend on them, only speed and
    memory do.
    """

    def __init__(self, blocks: list[_Block], weights: np.ndarray, intercept: np.ndarray, thresholds: np.ndarray,
                 labels: LabelSet | list[str], operating_points: dict[str, float],
                 message_cut_offs: tuple[np.ndarray, dict[str, float]] | None = None,
                 normalize: str | None = None) -> None:
        self.blocks = blocks
        self.normalize = check_normalization(normalize)  # the model's text normalisation (see normalize.py)
        self.weights = weights
        self.batch_size = BATCH_SIZE
        self._lock = threading.Lock()  # the word caches grow while scoring: one call at a time per scorer
        self.offsets = np.cumsum([0] + [block.n_terms for block in blocks])[:-1].tolist()
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        self.thresholds_ = np.asarray(thresholds, dtype=np.float64)
        self.label_set_ = labels if isinstance(labels, LabelSet) else LabelSet.from_names(labels)
        self.labels_ = list(self.label_set_.names)
        self.operating_points_ = dict(operating_points)  # named unsafe cut-offs (see ModerationClassifier)
        set_message_cut_offs(self, message_cut_offs)

    @classmethod
    def from_model(cls, model: ModerationClassifier, cache_size: int = DEFAULT_CACHE_SIZE,
                   cache_bytes: int = DEFAULT_CACHE_BYTES) -> FastScorer:
        """Precompute the fast tables of a fitted model (the model itself is not changed)."""
        blocks = [(field, vectorizer.get_params(), vectorizer.vocabulary_, vectorizer.idf_, vectorizer.build_analyzer)
                  for field, _, vectorizer in model.vectorizer_.blocks_]
        scorer = cls.from_parts(blocks, model.coef_, model.intercept_, model.thresholds_, label_set_of(model),
                                getattr(model, "operating_points_", {}), cache_size, message_cut_offs(model),
                                cache_bytes, getattr(model.vectorizer_, "normalize", None))
        scorer.explain_parts_ = functools.partial(model_parts, model)  # what lite_moderation.explain reads
        return scorer

    @classmethod
    def from_parts(cls, blocks: list[tuple], coef: np.ndarray, intercept: np.ndarray, thresholds: np.ndarray,
                   labels: list[str], operating_points: dict[str, float],
                   cache_size: int = DEFAULT_CACHE_SIZE,
                   message_cut_offs: tuple[np.ndarray, dict[str, float]] | None = None,
                   cache_bytes: int = DEFAULT_CACHE_BYTES, normalize: str | None = None) -> FastScorer:
        """A scorer from plain fitted state: per block (field, TfidfVectorizer settings, vocabulary, idf,
        analyser factory), then the (n_features, 15) weights, biases, thresholds and label names, the
        model's own cut-offs for single messages, if it has them, and its text normalisation."""
        coef = np.asarray(coef)
        weights = np.empty(coef.shape, dtype=np.float64)
        built = []
        caches: dict[tuple[str, bool], _WordCache] = {}
        start = 0
        for field, settings, vocabulary, idf, analyzer in blocks:
            stop = start + len(vocabulary)
            if stop > weights.shape[0]:
                break
            block = _Block(field, settings, vocabulary, idf, weights[start:stop], analyzer, coef[start:stop])
            if block.fast:
                block.cache = caches.setdefault((block.source, block.lowercase), _WordCache(cache_size, cache_bytes))
                block.cache.register(block.terms)
            built.append(block)
            start = stop
        total = start + sum(len(b[2]) for b in blocks[len(built):])
        if total != weights.shape[0]:
            raise ValueError(f"the model's blocks have {total} terms but coef_ has {weights.shape[0]} rows")
        scorer = cls(built, weights, intercept, thresholds, labels, operating_points, message_cut_offs, normalize)
        scorer.cache_size = max(int(cache_size), 1)
        scorer.cache_bytes = max(int(cache_bytes), 1)
        return scorer

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, cache_size: int = DEFAULT_CACHE_SIZE) -> FastScorer:
        """Load a saved model directory (default: the shipped model) straight into a fast scorer.

        Reads the files with json and numpy only: scikit-learn is not imported unless a block needs its
        analyser (never for the recipes ``QAVectorizer`` saves).
        """
        from .persistence import load_scorer

        return load_scorer(path, cache_size=cache_size)

    def with_own_caches(self, cache_bytes: int | None = None) -> FastScorer:
        """A scorer sharing this one's model (weights, vocabularies, tables) with word caches of its own.

        Why: a scorer's caches grow while it scores, so it scores one call at a time; a server gives each worker
        thread its own copy, so a long request (a megabyte of new words takes seconds) never holds the others.
        ``cache_bytes`` bounds each of the copy's caches (default: this scorer's bound)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.__dict__.pop("_single", None)
        copy._lock = threading.Lock()
        copy.cache_bytes = max(int(cache_bytes), 1) if cache_bytes is not None else getattr(
            self, "cache_bytes", DEFAULT_CACHE_BYTES)
        caches: dict[tuple[str, bool], _WordCache] = {}
        copy.blocks = []
        for block in self.blocks:
            block = _copy.copy(block)
            if block.fast:
                block.terms = _copy.copy(block.terms)
                if block.per_word_sums:
                    block.terms.reset()
                key = (block.source, block.lowercase)
                if key not in caches:  # the same table key (multipliers) as this scorer's: one key per process
                    caches[key] = _WordCache(getattr(self, "cache_size", DEFAULT_CACHE_SIZE), copy.cache_bytes)
                    caches[key].table = _WordTable(multipliers=block.cache.table.multipliers)
                block.cache = caches[key]
                block.cache.register(block.terms)
            copy.blocks.append(block)
        return copy

    @property
    def exact_analyzers(self) -> list[str]:
        """Per block, "fast" or "sklearn" (the fallback analyser) — for diagnostics."""
        return ["fast" if block.fast else "sklearn" for block in self.blocks]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]
        state.pop("_single", None)  # keyed by the blocks' ids: rebuilt in the copy
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
        form = getattr(self, "normalize", None)  # scorers pickled before normalisation existed have none
        prompts, responses = normalize_texts(prompts, form), normalize_texts(responses, form)
        n = len(prompts)
        if n == 1 and len(prompts[0]) + len(responses[0]) <= SINGLE_MAX_CHARS:
            return self._decision_one(prompts[0], responses[0])[None, :]
        total = np.empty((n, len(self.intercept_)))
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            batch = _Batch(prompts[start:stop], responses[start:stop])
            part = total[start:stop]
            part[:] = self.intercept_
            for block in self.blocks:
                block.add_scores(batch, part)
        return total

    def _decision_one(self, prompt: str, response: str) -> np.ndarray:
        """Log-odds of one pair: every block's columns gathered into a single product with the weights."""
        if "_single" not in self.__dict__:
            self._single = _SingleMemo(min(self.cache_size, SINGLE_CACHE_SIZE),
                                       min(getattr(self, "cache_bytes", DEFAULT_CACHE_BYTES), SINGLE_CACHE_BYTES))
        split: dict[tuple[str, bool], list[str]] = {}

        def words(text: str, lowercase: bool) -> list[str]:
            key = (text, lowercase)
            if key not in split:
                split[key] = (text.lower() if lowercase else text).split()
            return split[key]

        all_cols, all_values = [], []
        for block, offset in zip(self.blocks, self.offsets):
            found = block.one(prompt, response, words, self._single)
            if found is not None:
                all_cols.append(found[0] + offset)
                all_values.append(found[1])
        if not all_cols:
            return self.intercept_.copy()
        cols = np.concatenate(all_cols)
        # np.take is about 3x faster than fancy indexing for gathering rows
        return np.concatenate(all_values) @ np.take(self.weights, cols, axis=0) + self.intercept_

    def predict_proba(self, X: Sequence) -> np.ndarray:
        """(n, k) probabilities, columns ordered as ``labels_`` (categories, then the flag head)."""
        return sigmoid(self.decision_function(X))

    #: Every head's probabilities, the name a :class:`ModerationClassifier` gives them (its ``predict_proba`` answers
    #: for the y it was fitted on), so the internal callers of either read ``_label_proba``.
    _label_proba = predict_proba

    def predict(self, X: Sequence) -> np.ndarray:
        """(n, k) bool decisions at the model's tuned thresholds of each row's shape."""
        items, messages = scored_items(X)
        return self.predict_proba(items) >= cut_offs(self, messages)

    def moderate(self, X: Sequence, threshold: float | str | None = None) -> list[dict]:
        """The same verdicts as :meth:`ModerationClassifier.moderate` (``threshold``: a probability or a name of
        ``operating_points_``)."""
        items, messages = scored_items(X)
        return self.label_set_.results(self.predict_proba(items), cut_offs(self, messages, threshold))


class _SingleMemo:
    """Per block, each word's token ids or n-gram columns as Python lists, for single requests.

    Why apart from the numpy pools: one request has a few dozen words, and a list per word costs less than
    the fixed costs of numpy calls on a miss. Bounded like the word caches: emptied when a block's dict
    holds ``cache_size`` words or all hold ``max_bytes`` bytes (only items of ``SINGLE_MAX_CHARS`` come here).
    """

    def __init__(self, cache_size: int, max_bytes: int = SINGLE_CACHE_BYTES) -> None:
        self.cache_size = cache_size
        self.max_bytes = max_bytes
        self.held_bytes = 0  # words, lists and entries of every block's dict, about
        self.by_terms: dict[int, dict[str, list[int]]] = {}

    def values(self, terms: _WordTerms | _CharWbTerms, words: list[str]) -> list[list[int]]:
        """Each word's values, from this memo or computed."""
        memo = self.by_terms.setdefault(id(terms), {})
        found = list(map(memo.get, words))
        if None in found:
            compute = terms.word_values
            if len(memo) + len(words) > self.cache_size or self.held_bytes > self.max_bytes:
                self._clear()
            added = 0
            for i, value in enumerate(found):
                if value is None:
                    word = words[i]
                    value = memo.get(word)
                    if value is None:
                        value = memo[word] = compute(word)
                        added += sys.getsizeof(word) + 56 + 8 * len(value) + _DICT_ENTRY_BYTES
                    found[i] = value
            self.held_bytes += added
        return found

    def _clear(self) -> None:
        for memo in self.by_terms.values():
            memo.clear()
        self.held_bytes = 0


#: Below this many texts and characters, a batch finds its words through the dict (numpy's fixed costs
#: dominate); a few long texts go through numpy (a 177,000-character text: 15 ms, not 41 ms).
_DICT_BELOW = 16
_DICT_BELOW_CHARS = 32_000


class _Batch:
    """The texts of one batch, with each source's word slots found once and shared by the blocks reading it."""

    def __init__(self, prompts: list[str], responses: list[str]) -> None:
        self.prompts = prompts
        self.responses = responses
        self.n = len(prompts)
        self.memo: dict = {}

    def _source_texts(self, source: str) -> list[str]:
        if source == "prompt":
            return self.prompts
        if source == "response":
            return self.responses
        return self.field_texts(source)

    def field_texts(self, field: str) -> list[str]:
        key = ("texts", field)
        if key not in self.memo:
            self.memo[key] = field_texts(field, self.prompts, self.responses)
        return self.memo[key]

    def words(self, block: _Block) -> tuple[np.ndarray, np.ndarray]:
        """Cache slots of the words of the block's field, and the row of each."""
        key = (block.source, block.lowercase)
        if key not in self.memo:
            texts = self._source_texts(block.source)
            if self.n < _DICT_BELOW and sum(map(len, texts)) < _DICT_BELOW_CHARS:
                self.memo[key] = block.cache.split_slots([t.lower() for t in texts] if block.lowercase else texts)
            else:
                self.memo[key] = block.cache.batch_slots(texts, block.lowercase)
        slots, rows = self.memo[key]
        if block.gate is None:
            return slots, rows
        kept = self._gate(*block.gate)
        if kept is None:
            return slots, rows
        where = np.flatnonzero(np.take(kept, rows))
        return np.take(slots, where), np.take(rows, where)

    def _gate(self, other: str, non_empty: bool) -> np.ndarray | None:
        """Rows whose ``other`` field is non-empty (or empty): None when that is every row."""
        key = ("gate", other, non_empty)
        if key not in self.memo:
            texts = self.prompts if other == "prompt" else self.responses
            kept = np.fromiter(map(len, texts), dtype=np.int64, count=self.n) > 0
            if not non_empty:
                kept = ~kept
            self.memo[key] = None if kept.all() else kept
        return self.memo[key]
