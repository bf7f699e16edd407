"""Explanations for people: the input with its strongest n-grams marked, on a terminal or in an HTML report.

The marking rule is one for every view (terminal, HTML report, the try-it page's script): take the label's
``k`` strongest contributions (largest absolute value), and mark each character of the prompt and the
response with the strongest of them whose spans cover it; a run of characters with the same mark is one
highlighted segment.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

import click

from .labels import DEFAULT_FLAG, FLAGGED, NEAREST, label_state
from .taxonomy import short_name
from .terminal import printable
from .texts import single_message

__all__ = ["html_report", "marked_words", "segments", "text_report"]

#: Contributions marked in the text of each item.
DEFAULT_MARKED = 8


def _label_entry(explanation: dict, label: str) -> dict | None:
    """The explanation of ``label``, None when it was not explained."""
    return next((e for e in explanation["explanations"] if e["label"] == label), None)


def _headline(explanation: dict) -> str:
    """The verdict's score and cut-off: the flag head's, as ``flagged`` was decided (``unsafe_threshold``: the item's
    shape's cut-off at the threshold asked), whichever labels are explained (the first may be a category)."""
    return f"unsafe {explanation['unsafe_score']:.3f} (cut-off {explanation['unsafe_threshold']:.3f})"


def _marked(explanation: dict) -> dict | None:
    """The label whose n-grams are marked in the input: the first label explained (the flag head unless others were
    asked), None when none was. The one rule of what is marked, and of the words that say so."""
    return explanation["explanations"][0] if explanation["explanations"] else None


def _marking(explanation: dict) -> list[dict]:
    """The contributions marked in the input: those of the :func:`_marked` label."""
    marked = _marked(explanation)
    return marked["contributions"] if marked is not None else []


def marked_words(label: str) -> tuple[str, str]:
    """The two directions of a marked label's n-grams in words: toward the label, and away from it (the flag head
    ``unsafe``: toward safe). The try-it page's script words them so (``markedWords``)."""
    name = short_name(label)
    return f"toward {name}", "toward safe" if label == DEFAULT_FLAG else f"away from {name}"


def segments(text: str, source: str, contributions: Sequence[dict], k: int = DEFAULT_MARKED
             ) -> list[tuple[str, dict | None]]:
    """``text`` cut into (piece, the contribution marking it or None), by the rule of this module."""
    strongest = sorted(contributions, key=lambda c: -abs(c["contribution"]))[:k]
    owner: list[int | None] = [None] * len(text)
    for rank, contribution in enumerate(strongest):
        for span_source, start, end in contribution["spans"]:
            if span_source != source:
                continue
            for i in range(start, min(end, len(text))):
                if owner[i] is None:
                    owner[i] = rank
    pieces: list[tuple[str, dict | None]] = []
    start = 0
    for i in range(1, len(text) + 1):
        if i == len(text) or owner[i] != owner[start]:
            mark = owner[start]
            pieces.append((text[start:i], None if mark is None else strongest[mark]))
            start = i
    return pieces


def _item_texts(item: tuple[str, str]) -> list[tuple[str, str, str]]:
    """(title, source, text) of the non-empty fields of an item: a single message (a text alone or a prompt
    alone, scored as a text alone, so its spans index the "response") shows as "message"."""
    prompt, response = item
    message = single_message(prompt, response)
    if message is not None:
        return [("message", "response", message)]
    return [("prompt", "prompt", prompt), ("response", "response", response)]


# ------------------------------------------------------------------------------------------------ terminal


def text_report(explanation: dict, item: tuple[str, str], title: str, color: bool, top: int = 10) -> str:
    """One item for a terminal: verdict, the input with its strongest n-grams marked, each label's terms.

    With ``color``, n-grams pushing toward the marked label (the first explained) are red and those pushing away
    from it green; without (a pipe, a file), they are put in [brackets] and {braces}. The input's control
    characters are shown escaped (``\x1b``, ``\n``), never sent to the terminal.
    """
    verdict = "FLAGGED" if explanation["flagged"] else "ok"
    lines = [f"{title}  {verdict}  {_headline(explanation)}"]
    marking = _marking(explanation)
    for name, source, text in _item_texts(item):
        marked = "".join(_terminal_piece(piece, c, color) for piece, c in segments(text, source, marking))
        lines.append(f"  {name + ':':<10}{marked}")
    if not color and marking:
        toward, away = marked_words(_marked(explanation)["label"])
        lines.append(f"  (marked: [{toward}], {{{away}}})")
    for entry in explanation["explanations"]:
        lines += _label_lines(entry, top)
    return "\n".join(lines) + "\n"


def _terminal_piece(piece: str, contribution: dict | None, color: bool) -> str:
    """A piece of the input, its control characters escaped (``terminal.printable``), marked if it counts."""
    piece = printable(piece)
    if contribution is None:
        return piece
    up = contribution["contribution"] > 0
    if color:
        return click.style(piece, fg="red" if up else "green", bold=True, underline=True)
    return f"[{piece}]" if up else f"{{{piece}}}"


def _state(entry: dict) -> str:
    """A label's explanation's state in words (:func:`labels.label_state`: "flagged" only at its cut-off)."""
    return label_state(entry["flagged"], entry["score"], entry["threshold"])


def _label_lines(entry: dict, top: int) -> list[str]:
    shown = entry["contributions"][:top]
    hidden = len(entry["contributions"]) - len(shown) + entry["rest"]["count"]
    hidden_sum = sum(c["contribution"] for c in entry["contributions"][top:]) + entry["rest"]["contribution"]
    state = _state(entry)
    lines = [(f"  {short_name(entry['label'])}: score {entry['score']:.3f}, cut-off {entry['threshold']:.3f} ({state});"
             f" logit {entry['logit']:+.3f} = intercept {entry['intercept']:+.3f}"
             f" + {len(shown) + hidden} n-gram terms")]
    for c in shown:
        where = ", ".join(f"{source} {start}-{end}" for source, start, end in c["spans"][:3])
        more = f" +{len(c['spans']) - 3}" if len(c["spans"]) > 3 else ""
        lines.append(f"    {c['contribution']:+.3f}  {c['field'] + ':' + c['analyzer']:<22} {c['ngram']!r:<18} "
                     f"at {where}{more}")
    if hidden:
        lines.append(f"    {hidden_sum:+.3f}  from {hidden} weaker terms")
    return lines


# ------------------------------------------------------------------------------------------------ HTML

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
h1{font-size:1.4em} .item{border:1px solid #ccc;border-radius:6px;padding:.8em 1em;margin:1em 0}
.verdict{font-weight:bold;padding:.1em .5em;border-radius:4px}
.flagged{background:#c62828;color:#fff} .ok{background:#2e7d32;color:#fff}
.field{white-space:pre-wrap;background:#fafafa;border:1px solid #eee;padding:.4em;margin:.3em 0}
.label{font-size:.8em;color:#666;text-transform:uppercase}
mark.up{background:rgba(198,40,40,var(--a));color:inherit} mark.down{background:rgba(46,125,50,var(--a));color:inherit}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0} td,th{padding:.1em .6em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bars{display:grid;grid-template-columns:14em 1fr 4em;gap:.1em .5em;font-size:.8em;align-items:center}
.bar{position:relative;height:.8em;background:#eee} .fill{height:100%;background:#999}
.fill[data-state=flagged]{background:#c62828}
.fill[data-state=nearest]{background:repeating-linear-gradient(135deg,#ef6c00 0 .3em,#ffb74d .3em .6em)}
.fill[data-state=named]{background:#fff;box-shadow:inset 0 0 0 2px #c62828}
.cut{position:absolute;top:-.15em;bottom:-.15em;width:2px;background:#222}
.legend{font-size:.8em;color:#444;margin:.3em 0} .legend .key{margin-left:.8em}
.legend .fill{display:inline-block;width:1.8em;height:.8em;vertical-align:-.05em;margin-right:.3em}
"""


def html_report(explanations: Iterable[tuple[dict, tuple[str, str], str]], title: str, model_name: str,
                top: int = 10) -> str:
    """A self-contained HTML page (inline style, no script, no external asset) of (explanation, item, title)."""
    items, marked = [], []
    for explanation, item, item_title in explanations:
        items.append(_html_item(explanation, item, item_title, top))
        entry = _marked(explanation)
        if entry is not None and entry["label"] not in marked:
            marked.append(entry["label"])
    body = [f"<h1>{html.escape(title)}</h1>",
            (f"<p>Model: {html.escape(model_name)}.{_html_marked(marked)} Each logit is its intercept plus the "
             f"contributions listed (weight x tf-idf), exactly.</p>"), *(items or ["<p>No rows.</p>"])]
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _html_marked(labels: list[str]) -> str:
    """The intro's words on the marks: the label whose n-grams are marked (:func:`_marked`), as the items have it
    (one label for every item from the CLI; a caller's mix is named as a list)."""
    if not labels:
        return ""
    if len(labels) == 1:
        (toward, away), whose = marked_words(labels[0]), f"the {short_name(labels[0])} score"
    else:
        toward, away = "toward the label", "away from it"
        whose = f"each item's first label explained ({', '.join(map(short_name, labels))})"
    return (f" Marked: the strongest n-grams of {html.escape(whose)} (<mark class=up style='--a:.5'>"
            f"{html.escape(toward)}</mark>, <mark class=down style='--a:.5'>{html.escape(away)}</mark>).")


def _html_item(explanation: dict, item: tuple[str, str], title: str, top: int) -> str:
    flagged = explanation["flagged"]
    parts = [(f"<div class=item><div><b>{html.escape(title)}</b> "
             f"<span class='verdict {'flagged' if flagged else 'ok'}'>{'FLAGGED' if flagged else 'ok'}</span> "
             f"{html.escape(_headline(explanation))}</div>")]
    marking = _marking(explanation)
    peak = max((abs(c["contribution"]) for c in marking[:DEFAULT_MARKED]), default=1.0) or 1.0
    for name, source, text in _item_texts(item):
        pieces = "".join(_html_piece(piece, c, peak) for piece, c in segments(text, source, marking))
        parts.append(f"<div class=label>{name}</div><div class=field>{pieces}</div>")
    parts.append(_html_bars(explanation))
    for entry in explanation["explanations"]:
        parts.append(_html_label(entry, top))
    parts.append("</div>")
    return "\n".join(parts)


def _html_piece(piece: str, contribution: dict | None, peak: float) -> str:
    if contribution is None:
        return html.escape(piece)
    value = contribution["contribution"]
    alpha = 0.15 + 0.6 * min(abs(value) / peak, 1.0)
    tip = f"{contribution['field']}:{contribution['analyzer']} {contribution['ngram']!r} {value:+.3f}"
    return (f"<mark class={'up' if value > 0 else 'down'} style='--a:{alpha:.2f}' title=\"{html.escape(tip)}\">"
            f"{html.escape(piece)}</mark>")


#: The look of a named category's bar (its fill's data-state, as on the try-it page), by the words of its state
#: from :func:`_state`, the rule that words it in the label's lines: one rule for both. The legend shows them.
_NAMED_LOOKS = {FLAGGED: "flagged", NEAREST: "nearest"}
#: A category named but not explained (``--label`` did not ask for it) has no entry, so nothing says which of the
#: two it is: its bar is drawn named, as neither, (look, words).
_UNEXPLAINED = ("named", "named, not explained here")


def _bar_look(explanation: dict, name: str) -> tuple[str, str] | None:
    """(look, words) of category ``name``'s bar; None for a category not named (a plain bar)."""
    if not explanation["categories"][name]:
        return None
    entry = _label_entry(explanation, name)
    if entry is None:
        return _UNEXPLAINED
    words = _state(entry)
    return _NAMED_LOOKS[words], words


def _html_bars(explanation: dict) -> str:
    rows, drawn = [], set()
    for name in explanation["category_scores"]:
        score = explanation["category_scores"][name]
        look = _bar_look(explanation, name)
        drawn.add(look)
        state = f" data-state={look[0]}" if look else ""
        rows.append(f"<span>{html.escape(short_name(name))}</span><div class=bar><div class=fill{state} "
                    f"style='width:{100 * score:.1f}%'></div></div><span>{score:.3f}</span>")
    # the legend: the two named states always (as on the page), the unexplained one where a bar has it
    shown = [(look, words) for words, look in _NAMED_LOOKS.items()] + [_UNEXPLAINED] * (_UNEXPLAINED in drawn)
    keys = "".join(f"<span class=key><span class=fill data-state={look}></span>{html.escape(words)}</span>"
                   for look, words in shown)
    legend = f"<div class=legend>Named by a flagged verdict:{keys}</div>" if rows else ""
    return (f"<details><summary>{len(rows)} category scores</summary>{legend}<div class=bars>" + "".join(rows)
            + "</div></details>")


def _html_label(entry: dict, top: int) -> str:
    shown = entry["contributions"][:top]
    hidden = len(entry["contributions"]) - len(shown) + entry["rest"]["count"]
    hidden_sum = sum(c["contribution"] for c in entry["contributions"][top:]) + entry["rest"]["contribution"]
    rows = "".join(
        f"<tr><td class=num>{c['contribution']:+.4f}</td><td>{html.escape(c['field'])}:{c['analyzer']}</td>"
        f"<td><code>{html.escape(repr(c['ngram']))}</code></td><td class=num>{c['weight']:+.3f}</td>"
        f"<td class=num>{c['tfidf']:.3f}</td><td>{html.escape(_where(c['spans']))}</td></tr>" for c in shown)
    if hidden:
        rows += f"<tr><td class=num>{hidden_sum:+.4f}</td><td colspan=5>from {hidden} weaker terms</td></tr>"
    state = _state(entry)
    return (f"<div><b>{html.escape(short_name(entry['label']))}</b>: score {entry['score']:.3f}, cut-off "
            f"{entry['threshold']:.3f} ({state}); logit {entry['logit']:+.4f} = intercept {entry['intercept']:+.4f} + "
            f"the terms below</div><table><tr><th>contribution</th><th>block</th><th>n-gram</th><th>weight</th>"
            f"<th>tf-idf</th><th>where</th></tr>{rows}</table>")


def _where(spans: list) -> str:
    shown = ", ".join(f"{source} {start}-{end}" for source, start, end in spans[:3])
    return shown + (f" (+{len(spans) - 3} more)" if len(spans) > 3 else "")
