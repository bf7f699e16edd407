"""Text from the input, safe to show on a terminal: its control characters are shown as escapes, not obeyed.

A text to moderate may hold escape sequences (retitle or clear the terminal, move the cursor to overwrite a
verdict), carriage returns and newlines (a fake report line) or bidirectional overrides (text shown in another
order than it is). Reports for people print input text through :func:`printable`; JSON output needs no such
care (json escapes control characters itself).
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: Bidirectional formatting characters (Unicode's Bidi_Control), which reorder the text around them.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def printable(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1, line and paragraph separators, bidi controls) as a
    backslash escape such as ``\\x1b``, ``\\n`` or ``\\u202e``; everything else as it is."""
    if text.isprintable():
        return text
    return "".join(_escaped(c) if _is_control(c) else c for c in text)


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in _CONTROL_CATEGORIES or char in _BIDI_CONTROLS


def _escaped(char: str) -> str:
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
