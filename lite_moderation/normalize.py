"""What a model reads of a text: the text as a reader sees it, not its code points.

Why: character n-grams and words are read from the exact code points, so a zero-width space between every
letter, fullwidth letters, mathematical bold letters or Cyrillic letters in place of their Latin look-alikes turned
a flagged request into text no feature had seen (176 of AdvBench's first 200 requests flagged by ``default`` as
typed; 0 of them with a zero-width space between characters, 0 in fullwidth letters, 35 with soft hyphens inside
words, 30 with Cyrillic а, е, о, р, с, х, у for the Latin letters). Folding them costs nothing for ASCII text.

The one rule, ``"visible"``:

1. each character is replaced by its NFKC form (fullwidth and styled letters, ligatures, compatibility spaces
   become their plain forms), and characters of Unicode category Cf (zero-width spaces and joiners, soft hyphens,
   bidirectional controls, byte-order marks, tag characters) are removed. Character by character (not the
   whole-text NFKC, which also composes sequences), so every character of the result comes from one of the
   input's, and explanations map their spans back to the text as typed (:func:`normalized_positions`);
2. Cyrillic and Greek letters that look like Latin ones (``LOOK_ALIKES``) become those Latin letters, one for one:
   in the whole text when it holds Latin letters and no other Cyrillic or Greek letter (English typed with
   look-alikes: "а" and "сору" too), else inside words that hold a Latin letter only (Russian or Greek text, and
   its words in an English sentence, are left as they are).

The table of step 1 is the running Python's Unicode database; a character assigned in a later Unicode version
than it knows is kept as it is.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["LOOK_ALIKES", "NORMALIZATIONS", "check_normalization", "normalize_texts", "normalized",
           "normalized_positions"]

#: The text normalisations a model may declare (``QAVectorizer(normalize=...)``): None reads texts as they are
#: (models saved before normalisation existed).
NORMALIZATIONS = (None, "visible")

#: Cyrillic and Greek letters a reader takes for Latin ones: folded inside words that hold a Latin letter.
LOOK_ALIKES = dict(zip(
    "аеорсхуіјѕԁһԛԝӏАВЕКМНОРСТХУІЈЅԌαονιρυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcxyijsdhqwlABEKMHOPCTXYIJSGaoviruxABEZHIKMNOPTYX", strict=True))
_LOOK_ALIKE_TABLE = str.maketrans(LOOK_ALIKES)
_LOOK_ALIKE_CHARS = frozenset(LOOK_ALIKES)
#: A word: a run of letters (and of combining marks, so an accent does not split one).
_WORD = re.compile(r"[^\W\d_]+")
_LATIN = re.compile(r"[A-Za-z\u00C0-\u024F]")
_CYRILLIC_OR_GREEK = re.compile(r"[\u0370-\u03FF\u0400-\u052F]")

#: Code points scanned for the table: every plane with assigned characters but the private-use ones (the CJK
#: extension plane 2 holds the compatibility ideographs; plane 14 the tag and variation characters).
_RANGES = ((0x80, 0xD800), (0xE000, 0x30000), (0xE0000, 0xE1000))


def check_normalization(form: object) -> str | None:
    """``form`` if it names a normalisation, else a ValueError listing them."""
    if form not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(map(repr, NORMALIZATIONS))}, got {form!r}")
    return form


@functools.cache
def _nfkc_table() -> dict[int, str | None]:
    """{code point: its replacement (None: removed)} of every character step 1 changes (~5,000; 0.2 s once)."""
    table: dict[int, str | None] = {}
    category, normalize = unicodedata.category, unicodedata.normalize
    for start, stop in _RANGES:
        for code in range(start, stop):
            char = chr(code)
            if category(char) == "Cf":
                table[code] = None
                continue
            folded = normalize("NFKC", char)
            if folded != char:
                table[code] = folded
    return table


def _fold_word(match: re.Match) -> str:
    word = match.group()
    if _LATIN.search(word) and not _LOOK_ALIKE_CHARS.isdisjoint(word):
        return word.translate(_LOOK_ALIKE_TABLE)
    return word


def normalized(text: str, form: str | None = "visible") -> str:
    """``text`` as a model with normalisation ``form`` reads it (ASCII text is returned as it is)."""
    if form is None or text.isascii():
        return text
    text = text.translate(_nfkc_table())
    return _fold_look_alikes(text) if not _LOOK_ALIKE_CHARS.isdisjoint(text) else text


def _fold_look_alikes(text: str) -> str:
    """Step 2: every look-alike of a Latin text with no other Cyrillic or Greek letter, else those of mixed words."""
    if _LATIN.search(text) and all(char in _LOOK_ALIKE_CHARS for char in _CYRILLIC_OR_GREEK.findall(text)):
        return text.translate(_LOOK_ALIKE_TABLE)
    return _WORD.sub(_fold_word, text)


def normalize_texts(texts: list[str], form: str | None) -> list[str]:
    """Every text of ``texts`` normalised (the list itself when ``form`` is None or every text is ASCII)."""
    if form is None or all(map(str.isascii, texts)):
        return texts
    out = list(texts)
    for i, text in enumerate(texts):
        if not text.isascii():
            out[i] = normalized(text, form)
    return out


def normalized_positions(text: str, form: str | None) -> tuple[str, list[int] | None]:
    """The normalised text and, for each of its characters plus its end, the position in ``text`` it came from
    (None: the text is unchanged, positions are the same). Step 2 keeps lengths: step 1 alone moves positions."""
    folded = normalized(text, form)
    if folded is text or folded == text:
        return text, None
    table = _nfkc_table()
    back: list[int] = []
    for i, char in enumerate(text):
        replacement = table.get(ord(char), char)
        back += [i] * (len(replacement) if replacement is not None else 0)
    back.append(len(text))
    return folded, back
