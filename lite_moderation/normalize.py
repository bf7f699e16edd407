"""What a model reads of a text: Unicode compatibility forms folded and invisible format characters dropped.

Why: character n-grams and words are read from the exact code points, so a zero-width space between every
letter, fullwidth letters or mathematical bold letters turned a flagged request into text no feature had seen
(176 of AdvBench's first 200 requests flagged as typed; 0 of them with a zero-width space between characters, 0
in fullwidth letters, 35 with soft hyphens inside words). Folding them costs nothing for ASCII text.

The one rule, ``"nfkc"``: each character is replaced by its NFKC form (fullwidth and styled letters, ligatures,
compatibility spaces become their plain forms), and characters of Unicode category Cf (zero-width spaces and
joiners, soft hyphens, bidirectional controls, byte-order marks, tag characters) are removed. Character by
character (not the whole-text NFKC, which also composes sequences), so every character of the result comes from
one of the input's and explanations map their spans back to the text as typed (:func:`normalized_positions`).
The table is the running Python's Unicode database; a character assigned in a later Unicode version than it
knows is kept as it is. Look-alike letters of another script (Cyrillic "а" for Latin "a") are not folded.
"""

from __future__ import annotations

import functools
import unicodedata

__all__ = ["NORMALIZATIONS", "check_normalization", "normalize_texts", "normalized", "normalized_positions"]

#: The text normalisations a model may declare (``QAVectorizer(normalize=...)``): None reads texts as they are
#: (models saved before normalisation existed).
NORMALIZATIONS = (None, "nfkc")

#: Code points scanned for the table: every plane with assigned characters but the private-use ones (the CJK
#: extension planes 2-3 hold the compatibility ideographs; plane 14 the tag and variation characters).
_RANGES = ((0x80, 0xD800), (0xE000, 0x30000), (0xE0000, 0xE1000))


def check_normalization(form: object) -> str | None:
    """``form`` if it names a normalisation, else a ValueError listing them."""
    if form not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(map(repr, NORMALIZATIONS))}, got {form!r}")
    return form


@functools.cache
def _nfkc_table() -> dict[int, str | None]:
    """{code point: its replacement (None: removed)} of every character the rule changes (~5,000; 0.2 s once)."""
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


def normalized(text: str, form: str | None = "nfkc") -> str:
    """``text`` as a model with normalisation ``form`` reads it (ASCII text is returned as it is)."""
    if form is None or text.isascii():
        return text
    return text.translate(_nfkc_table())


def normalize_texts(texts: list[str], form: str | None) -> list[str]:
    """Every text of ``texts`` normalised (the list itself when ``form`` is None or every text is ASCII)."""
    if form is None or all(map(str.isascii, texts)):
        return texts
    table = None
    out = texts
    for i, text in enumerate(texts):
        if text.isascii():
            continue
        if table is None:
            table, out = _nfkc_table(), list(texts)
        out[i] = text.translate(table)
    return out


def normalized_positions(text: str, form: str | None) -> tuple[str, list[int] | None]:
    """The normalised text and, for each of its characters plus its end, the position in ``text`` it came from
    (None: the text is unchanged, positions are the same)."""
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
