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
2. a letter typed as separate code points, a base and its combining marks (decomposed text, NFD: what macOS file
   names and some keyboards give, "e" + U+0301 for "é"), or Hangul jamo, is composed as NFC composes it: NFKC per
   character never joins a mark to its letter, so the same words typed decomposed read as different text (a
   Vietnamese request flagged at 0.99 as typed composed scored 0.09 decomposed). Each composed sequence maps back
   to its first character;
3. Cyrillic and Greek letters that look like Latin ones (``LOOK_ALIKES``) become those Latin letters, one for one:
   in the whole text when it holds Latin letters and no other Cyrillic or Greek letter (English typed with
   look-alikes: "а" and "сору" too), else inside words that hold a Latin letter only (Russian or Greek text, and
   its words in an English sentence, are left as they are).

The table of step 1 is the running Python's Unicode database; a character assigned in a later Unicode version
than it knows is kept as it is.

The rule ``"undisguised"`` (the default for models trained since 2026-12-07's third disguise round) is
``"visible"`` and three more steps, for disguises a reader reads through (``default`` flagged AdvBench at 0.89 as
typed, 0.08 with a, e, i, o typed 4, 3, 1, 0, 0.00 with each word's letters dotted, 0.04 with accents on its vowels):

4. marks are taken off Latin letters ("bómb", "Mädchen" read "bomb", "Madchen"): a letter whose canonical
   decomposition is an ASCII letter and combining marks becomes that letter (one for one; other scripts and
   letters such as "ø" or "ß" stay). Text in languages written with marks reads without them, in training too;
5. letters spaced out ("k i l l", "b.o.m.b", "s-e-x") are joined: a run of single letters or digits, each apart from
   the next by the same one separator (space, dot, hyphen, underscore, star, tilde), holding three letters or
   more and, with spaces, four characters or more (so "r u a" and "n-i-1" stay), or two or three letters set apart
   by double spaces ("h o w  t o"); a leading "a" or "I" of a longer run stays a word ("a b o m b" -> "a bomb"). A whole text spaced out with single spaces becomes one word: where
   its words were is not in the text;
6. leetspeak inside words ("k1ll", "h0w", "m4k3"): in a word (a run of ASCII letters, digits, @, $ and !) with one
   or two of 0 1 3 4 5 7 @ $ ! between two letters, each of those is read as o i e a s t a s i. Not in words holding
   2, 6, 8 or 9 (hashes, versions), of mixed case (identifiers, short links: "7KPWAdLF0R"), starting with @ or # or
   after / # = \\ & % (handles, colours, URL parts), nor an e-mail address's name: "1st", "mp3", "covid19", "4x4"
   and "US$5" stay. "1" reads "i": "he11o" is not recovered.

Steps 5 and 6 read ASCII letters only, and a text holding neither (one scan of it) is returned as it is.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import numpy as np

__all__ = ["DEFAULT_NORMALIZATION", "LOOK_ALIKES", "NORMALIZATIONS", "check_normalization", "normalize_texts",
           "normalized", "normalized_positions"]

#: The text normalisations a model may declare (``QAVectorizer(normalize=...)``): None reads texts as they are
#: (models saved before normalisation existed), "visible" steps 1-3 (models saved before "undisguised" existed).
NORMALIZATIONS = (None, "visible", "undisguised")
#: What a new model declares unless told otherwise.
DEFAULT_NORMALIZATION = "undisguised"

#: Cyrillic and Greek letters a reader takes for Latin ones: folded inside words that hold a Latin letter.
LOOK_ALIKES = dict(zip(
    "аеорсхуіјѕԁһԛԝӏАВЕКМНОРСТХУІЈЅԌαονιρυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcxyijsdhqwlABEKMHOPCTXYIJSGaoviruxABEZHIKMNOPTYX", strict=True))
_LOOK_ALIKE_TABLE = str.maketrans(LOOK_ALIKES)
_LOOK_ALIKE_CHARS = frozenset(LOOK_ALIKES)
#: A word (a run of letters) holding a look-alike: only those words go through the per-word rule.
_WORD_WITH_LOOK_ALIKE = re.compile(r"[^\W\d_]*[" + "".join(LOOK_ALIKES) + r"][^\W\d_]*")
_LATIN = re.compile(r"[A-Za-z\u00C0-\u024F]")
_BEYOND_PLANE_0 = re.compile("[\U00010000-\U0010FFFF]")
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


def _char_class(codes: list[int]) -> str:
    """A regex character class of ``codes`` (sorted), as ranges."""
    parts, start = [], None
    for i, code in enumerate(codes):
        if start is None:
            start = code
        if i + 1 == len(codes) or codes[i + 1] != code + 1:
            parts.append(re.escape(chr(start)) + ("-" + re.escape(chr(code)) if code != start else ""))
            start = None
    return "[" + "".join(parts) + "]"


@functools.cache
def _changing() -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    """Patterns finding a character of the Basic Multilingual Plane either step may change, one step 1 changes,
    and one step 2 may: most non-ASCII text holds none (curly quotes, accents, most scripts), and one scan for them
    costs a fraction of ``str.translate``'s. Characters beyond that plane (emoji, styled letters) are found by
    their plane alone: a class holding them is matched range by range (400 ns a character here, against 7)."""
    plane_0 = [c for c in sorted(_nfkc_table()) if c <= 0xFFFF]
    look_alikes = sorted(map(ord, _LOOK_ALIKE_CHARS))
    either = _char_class(sorted({*plane_0, *look_alikes}))[:-1] + "\U00010000-\U0010FFFF]"  # and any beyond it
    return re.compile(either), re.compile(_char_class(plane_0)), re.compile(_char_class(look_alikes))


def _fold_word(match: re.Match) -> str:
    """A word holding a look-alike (``_WORD_WITH_LOOK_ALIKE``), folded when it also holds a Latin letter."""
    word = match.group()
    return word.translate(_LOOK_ALIKE_TABLE) if _LATIN.search(word) else word


def normalized(text: str, form: str | None = DEFAULT_NORMALIZATION) -> str:
    """``text`` as a model with normalisation ``form`` reads it (the text itself when nothing changes)."""
    if form is None:
        return text
    if not text.isascii():
        text = _steps_beyond_ascii(text, form)
    if form == "undisguised":
        spaced, leet = _disguise_hints(text)
        if spaced or leet:
            text = _undisguised(text, bool(spaced))
    return text


def _steps_beyond_ascii(text: str, form: str) -> str:
    """Steps 1-3 and, for "undisguised", step 4: the steps that change only text holding non-ASCII characters."""
    text = _visible(text)
    return _without_marks(text) if form == "undisguised" else text


def _visible(text: str) -> str:
    """Steps 1-3 of a text that is not ASCII."""
    either, plane_0, step_2 = _changing()
    if not either.search(text):  # nothing steps 1 and 3 change: most non-ASCII text
        return text if unicodedata.is_normalized("NFC", text) else _composed(text)
    text = plane_0.sub(_step_1_char, text)  # a substitution per match: str.translate costs 130 ns a character
    text = _BEYOND_PLANE_0.sub(_step_1_char, text)
    if not unicodedata.is_normalized("NFC", text):
        text = _composed(text)
    return _fold_look_alikes(text, step_2) if step_2.search(text) else text


@functools.cache
def _sequence() -> re.Pattern:
    """A character and the characters after it that NFC may join to it (combining marks, the second character of
    any canonical composition, Hangul vowel and final jamo): the unit step 2 composes."""
    marks = {*range(0x1161, 0x1176), *range(0x11A8, 0x11C3)}  # Hangul composes by rule, not by table
    for start, stop in _RANGES:
        for code in range(start, stop):
            char = chr(code)
            if unicodedata.combining(char):
                marks.add(code)
            parts = unicodedata.decomposition(char).split()
            if len(parts) == 2 and not parts[0].startswith("<"):  # a canonical pair: its second part joins
                marks.add(int(parts[1], 16))
    return re.compile(r"[\s\S]" + _char_class(sorted(marks)) + "+")


def _composed(text: str) -> str:
    """Step 2: ``text`` with every sequence of a letter and its marks (:func:`_sequence`) composed as NFC does."""
    return _sequence().sub(_compose_sequence, text)


def _compose_sequence(match: re.Match) -> str:
    return unicodedata.normalize("NFC", match.group())


def _step_1_char(match: re.Match) -> str:
    char = match.group()
    return _nfkc_table().get(ord(char), char) or ""


def _look_alike_char(match: re.Match) -> str:
    return LOOK_ALIKES[match.group()]


def _fold_look_alikes(text: str, look_alike: re.Pattern) -> str:
    """Step 3: every look-alike of a Latin text with no other Cyrillic or Greek letter, else those of mixed words."""
    if not _LATIN.search(text):  # Russian or Greek alone: nothing to fold
        return text
    if all(char in _LOOK_ALIKE_CHARS for char in _CYRILLIC_OR_GREEK.findall(text)):
        return look_alike.sub(_look_alike_char, text)
    return _WORD_WITH_LOOK_ALIKE.sub(_fold_word, text)


def normalize_texts(texts: list[str], form: str | None) -> list[str]:
    """Every text of ``texts`` normalised (the list itself when ``form`` is None or nothing changes)."""
    if form is None:
        return texts
    out = texts
    if not all(map(str.isascii, texts)):
        out = [text if text.isascii() else _steps_beyond_ascii(text, form) for text in texts]
    if form == "undisguised":
        spaced, leet = _disguised_indices(out)
        if spaced or leet:
            out = list(out)
            for i in sorted(spaced | leet):
                out[i] = _undisguised(out[i], i in spaced)
    return out


def normalized_positions(text: str, form: str | None) -> tuple[str, list[int] | None]:
    """The normalised text and, for each of its characters plus its end, the position in ``text`` it came from
    (None: the text is unchanged, positions are the same). Steps 3 and 5 keep lengths: steps 1, 2 and 4 move
    positions."""
    folded = normalized(text, form)
    if folded is text or folded == text:
        return text, None
    visible = normalized(text, "visible")
    back = _visible_positions(text) if visible != text else list(range(len(text)))
    if form == "undisguised":  # step 4 keeps lengths; step 5 drops separators
        visible = _without_marks(visible)
    joined = _SPACED_OUT.sub(_join_spaced, visible) if form == "undisguised" else visible
    if joined != visible:
        back = [back[i] for i in _kept(visible, joined)]
    return folded, back + [len(text)]


def _visible_positions(text: str) -> list[int]:
    """For each character of steps 1-3 of ``text``, the position in ``text`` it came from."""
    table = _nfkc_table()
    step_1: list[str] = []
    back: list[int] = []
    for i, char in enumerate(text):
        replacement = table.get(ord(char), char) or ""
        step_1.append(replacement)
        back += [i] * len(replacement)
    read = "".join(step_1)
    if not unicodedata.is_normalized("NFC", read):
        back = _composed_positions(read, back)
    return back


def _kept(longer: str, shorter: str) -> list[int]:
    """The positions in ``longer`` of the characters of ``shorter``, which step 5 made from it by dropping some."""
    kept, j = [], 0
    for i, char in enumerate(longer):
        if j < len(shorter) and shorter[j] == char:
            kept.append(i)
            j += 1
    return kept


def _composed_positions(read: str, back: list[int]) -> list[int]:
    """``back`` (a position of the text as typed for each character of ``read``) for ``read`` after step 2: each
    composed sequence's characters come from where it began."""
    out: list[int] = []
    done = 0
    for match in _sequence().finditer(read):
        start, end = match.span()
        composed = _compose_sequence(match)
        out += back[done:start]
        out += back[start:end] if composed == match.group() else [back[start]] * len(composed)
        done = end
    return out + back[done:]


# Steps 4-6 (``"undisguised"``).
@functools.cache
def _base_letters() -> tuple[dict[int, str], re.Pattern]:
    """{code point: its ASCII base letter} of every Latin letter with marks (step 4), and a pattern finding one."""
    table = {}
    for start, stop in ((0xC0, 0x250), (0x1E00, 0x1F00)):
        for code in range(start, stop):
            parts = unicodedata.normalize("NFD", chr(code))
            if len(parts) > 1 and parts[0].isascii() and parts[0].isalpha() and all(map(unicodedata.combining,
                                                                                        parts[1:])):
                table[code] = parts[0]
    return table, re.compile(_char_class(sorted(table)))


def _without_marks(text: str) -> str:
    """Step 4: Latin letters with marks as their base letters (the text itself when it holds none)."""
    table, pattern = _base_letters()
    return pattern.sub(lambda match: table[ord(match.group())], text) if pattern.search(text) else text



_UNIT = "A-Za-z0-9@$!"
_SEPARATORS = r" ._*~\-"
_LEET_CHARS = "013457@$!"
#: Step 5: a run of single characters apart by one repeated separator, not inside a word (nor "'s a C#").
_SPACED_OUT = re.compile(rf"(?<![\w'’])[{_UNIT}]([{_SEPARATORS}])[{_UNIT}](?:\1[{_UNIT}])*(?![\w'’#+])")
#: Where step 5 or 6 may apply, each found by a scan led by a literal or a rare character (a pattern led by a letter,
#: or an alternation led by several, tries every character: several times the cost): two characters spaced out by
#: single spaces (" X Y "; "is a car" is not a hint) or beside a double space; two spaced out by another separator
#: ("-e-x"); for step 6 (the rule itself), a leet character after a letter, before a letter (with one more leet
#: character between).
_SPACED_HINT = re.compile(rf" (?:[{_UNIT}] [{_UNIT}] | (?=[{_UNIT}] [{_UNIT}])| (?<=[{_UNIT}] [{_UNIT}]  ))")
_MARKED_HINT = re.compile(rf"([{_SEPARATORS[1:]}])[{_UNIT}]\1[{_UNIT}]")
_LEET_HINT = re.compile(rf"[{_LEET_CHARS}](?<=[A-Za-z][{_LEET_CHARS}])[{_LEET_CHARS}]?[A-Za-z]")
_LEET_TABLE = str.maketrans(_LEET_CHARS, "oieastasi")
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@$!")
_NOT_LEET_DIGITS = frozenset("2689")


def _disguise_hints(text: str) -> tuple[list[int], list[int]]:
    """Positions in ``text`` near which step 5 may apply (a superset: tested on every shared text) and where step 6
    does."""
    spaced = [match.start() for match in _SPACED_HINT.finditer(text)]
    spaced += [match.start() for match in _MARKED_HINT.finditer(text)]
    return spaced, [match.start() for match in _LEET_HINT.finditer(text)]


def _disguised_indices(texts: list[str]) -> tuple[set[int], set[int]]:
    """The indices of the texts with a hint of step 5, and of step 6: one scan of them all, joined by newlines (no
    hint spans one)."""
    hints = _disguise_hints("\n".join(texts))
    if not (hints[0] or hints[1]):
        return set(), set()
    starts = np.cumsum([0] + [len(text) + 1 for text in texts[:-1]])
    return tuple({int(i) - 1 for i in np.searchsorted(starts, found, side="right")} for found in hints)


def _undisguised(text: str, spaced: bool = True) -> str:
    """Steps 5 (where hinted: ``spaced``; joining may make leetspeak, "k 1 l l") and 6 of one text."""
    if spaced:
        text = _SPACED_OUT.sub(_join_spaced, text)
    return _fold_leet(text)


def _join_spaced(match: re.Match) -> str:
    run, separator = match.group(), match.group(1)
    chars = run.split(separator)
    letters = sum(char.isalpha() for char in chars)
    if separator == " " and len(chars) < 4:  # "r u a": words of one letter, unless set apart by double spaces
        if letters < 2 or not _set_apart(match):
            return run
    elif letters < 3 or len(chars) < 3:
        return run  # "n-i-1", "1.2.3", "e.g"
    if chars[0] in ("a", "A", "I") and len(chars) >= 4:
        return chars[0] + separator + "".join(chars[1:])
    return "".join(chars)


def _set_apart(match: re.Match) -> bool:
    """Whether a run of letters spaced out has a double space on one side and, on the other, one too, a line's
    edge or a punctuation mark: "h o w  t o  m a k e" spaces out words of two and three letters."""
    text, start, end = match.string, match.start(), match.end()
    before, after = text[max(start - 2, 0):start], text[end:end + 2]
    left = start == 0 or before == "  " or before.endswith("\n")
    right = end == len(text) or after == "  " or after[:1] in "\n.,!?;:"
    return left and right and "  " in (before, after)


def _fold_leet(text: str) -> str:
    """Step 6: each word holding leet characters between letters, read as letters."""
    out: list[str] = []
    done = 0
    for match in _LEET_HINT.finditer(text):
        start, end = match.start() - 1, match.end()  # from the letter before
        if start < done:
            continue
        while start and text[start - 1] in _WORD_CHARS:
            start -= 1
        while end < len(text) and text[end] in _WORD_CHARS:
            end += 1
        word = text[start:end]
        out += [text[done:start], word.translate(_LEET_TABLE) if _reads_as_leet(text, start, end) else word]
        done = end
    return "".join(out) + text[done:] if out else text


def _reads_as_leet(text: str, start: int, end: int) -> bool:
    word = text[start:end]
    letters = "".join(char for char in word if char.isalpha())
    typed_case = letters.islower() or letters.isupper() or (letters[0].isupper() and letters[1:].islower())
    return (typed_case and _NOT_LEET_DIGITS.isdisjoint(word) and word[0] not in "@#"
            and not (start and text[start - 1] in "/#=\\&%") and not ("@" in word and text[end:end + 1] == "."))
