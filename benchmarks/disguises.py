"""Text a reader reads unchanged, a model does not: invisible characters, look-alike letters, leetspeak and
letters spaced out, both sides.

    python benchmarks/disguises.py [--before REV [--before-code]]
        # --before: REV's shipped models beside today's, scored by today's code; with --before-code by REV's own

Why this exists: a user's exploratory round found that a zero-width space between characters, fullwidth letters
or soft hyphens inside words turned flagged requests into text no feature had seen (176 of AdvBench's first 200
flagged by `default`; 0 of them with zero-width spaces). Since then the shipped models read text as a reader sees
it (``lite_moderation/normalize.py``, ``normalize="visible"``: NFKC per character, invisible format characters
removed, Cyrillic and Greek look-alikes of Latin letters made Latin); since a second round, letters typed
decomposed (a base letter and its combining marks, Unicode NFD, as macOS and some keyboards give them) are composed
too: they are scored on the multilingual sets, where letters carry marks. Since a third (``normalize="undisguised"``),
marks are taken off Latin letters ("bómb"), and disguises typed in ASCII are undone too: letters spaced out ("k i l l",
"b.o.m.b") and leetspeak inside words ("m4k3 4 b0mb"). A disguise no rule undoes is measured as a limit: a whole text
spaced out letter by letter (where its words were is lost).

Not a disguise but the same kind of question (since the seventh round of issue 20): the same message typed with
or without its final punctuation ("ending: ..." rows: removed, a question mark, a full stop). Users type both,
and the shipped models weigh a final "?" (a character n-gram): how far does a verdict move with it? Do-Not-Answer
and HateCheck held-out are measured since then too (both labels each), where it moves most.

Each set is scored as typed and in each disguise, at each model's default point: flagged share of harmful sets
(recall) and of harmless ones (false-positive rate), as single messages (a prompt alone and a text alone are one
verdict: one shape) and as pairs (the disguise on the response of SafeRLHF's pairs, whose labels judge the
response). The look-alike disguise types Cyrillic а, е, о, р, с, х, у for the Latin letters. Results:
``benchmarks/results/disguises.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import SHARED_DATA, machine, write_results
from model_speed import model_at, package_at

import lite_moderation as lm

LOOK_ALIKES = str.maketrans("aeopcxy", "аеорсху")
LEET_VOWELS = str.maketrans("aeioAEIO", "43104310")
LEET_ALL = str.maketrans("aeiostAEIOST", "431057431057")
ACCENTS = str.maketrans("aeiouAEIOU", "áéíóúÁÉÍÓÚ")


def _longest_word(text: str, separator: str) -> str:
    """``text`` with the letters of its longest word apart by ``separator`` (the word a disguise hides)."""
    words = text.split(" ")
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    words[longest] = separator.join(words[longest])
    return " ".join(words)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text)


def _math_bold(text: str) -> str:
    return "".join(chr(0x1D41A + ord(c) - 97) if "a" <= c <= "z" else chr(0x1D400 + ord(c) - 65) if "A" <= c <= "Z"
                   else c for c in text)


#: Sentence punctuation and spaces at the end of a text (Latin and CJK marks).
FINAL_PUNCTUATION = re.compile(r"[\s.?!。？！]+$")


def _ending(mark: str) -> Callable[[str], str]:
    """The text with its final punctuation replaced by ``mark`` (a text of punctuation alone stays as it is)."""
    def ended(text: str) -> str:
        body = FINAL_PUNCTUATION.sub("", text)
        return body + mark if body else text

    return ended


DISGUISES: dict[str, Callable[[str], str]] = {
    "as typed": lambda t: t,
    "zero-width space between characters": lambda t: "\u200b".join(t),
    "soft hyphens inside words": lambda t: " ".join("\u00ad".join(w) for w in t.split(" ")),
    "fullwidth letters": _fullwidth,
    "mathematical bold letters": _math_bold,
    "Cyrillic look-alike letters": lambda t: t.translate(LOOK_ALIKES),
    "decomposed letters (NFD)": lambda t: unicodedata.normalize("NFD", t),
    "leetspeak: a e i o as 4 3 1 0": lambda t: t.translate(LEET_VOWELS),
    "leetspeak: a e i o s t as 4 3 1 0 5 7": lambda t: t.translate(LEET_ALL),
    "longest word spaced out (k i l l)": lambda t: _longest_word(t, " "),
    "each word's letters dotted (b.o.m.b)": lambda t: " ".join(".".join(w) for w in t.split(" ")),
    "each word's letters spaced out, words two spaces apart": lambda t: "  ".join(" ".join(w) for w in t.split(" ")),
    "limit: whole text spaced out letter by letter": lambda t: " ".join(t.replace(" ", "")),
    "accents on vowels (bómb)": lambda t: t.translate(ACCENTS),
    "ending: final punctuation removed": _ending(""),
    "ending: a question mark at the end": _ending("?"),
    "ending: a full stop at the end": _ending("."),
}


def _rows(path: Path, n: int | None = None) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:n]]


def _messages(path: Path, n: int | None = None) -> list[str]:
    return [r.get("text") or r["prompt"] for r in _rows(path, n)]


def sets() -> dict[str, tuple[str, list, np.ndarray | None]]:
    """name -> (shape, items as typed, unsafe flags; None: every item harmful or every one harmless by its name)."""
    saferlhf = _rows(SHARED_DATA / "external" / "saferlhf_2000.jsonl")
    xsafety = _rows(SHARED_DATA / "messages" / "xsafety_heldout.jsonl")
    do_not_answer = _rows(SHARED_DATA / "messages" / "do_not_answer_heldout.jsonl")
    hatecheck = _rows(SHARED_DATA / "messages" / "hatecheck_heldout.jsonl")
    return {
        "AdvBench requests (harmful)": ("message", _messages(SHARED_DATA / "everyday" / "advbench_harmful_behaviors.jsonl",
                                                             520), None),
        "CLINC150 queries (harmless)": ("message", _messages(SHARED_DATA / "everyday" / "clinc150_queries.jsonl", 2000),
                                        None),
        "SafeRLHF pairs": ("pair", [(r["prompt"], r["response"]) for r in saferlhf],
                           np.array([not r["is_safe"] for r in saferlhf])),
        "MultiJail held-out requests, 10 languages (harmful)": (
            "message", _messages(SHARED_DATA / "messages" / "multijail_heldout.jsonl"), None),
        "XSafety held-out, 9 languages": ("message", [r["prompt"] for r in xsafety],
                                          np.array([not r["is_safe"] for r in xsafety])),
        **{name: ("message", [r["prompt"] for r in rows], np.array([not r["is_safe"] for r in rows]))
           for name, rows in (("Do-Not-Answer held-out", do_not_answer), ("HateCheck held-out", hatecheck))},
    }


def disguised(shape: str, items: list, disguise: Callable[[str], str]) -> list:
    return [disguise(i) for i in items] if shape == "message" else [(p, disguise(r)) for p, r in items]


def measure(models: dict[str, object]) -> list[dict]:
    """Every model (a scorer, or where today's code loads one) on every set in every disguise."""
    results = []
    data = sets()
    for label, where in models.items():
        scorer = where if hasattr(where, "moderate") else lm.load_scorer(where)
        for set_name, (shape, items, unsafe) in data.items():
            for disguise_name, disguise in DISGUISES.items():
                flagged = np.array([r["flagged"] for r in scorer.moderate(disguised(shape, items, disguise))])
                row = {"model": label, "set": set_name, "shape": shape, "disguise": disguise_name, "n": len(items)}
                if unsafe is None:
                    row["flagged"] = round(float(flagged.mean()), 4)
                else:
                    row["recall"] = round(float(flagged[unsafe].mean()), 4)
                    row["fpr"] = round(float(flagged[~unsafe].mean()), 4)
                results.append(row)
    return results


def markdown(results: list[dict], command: str) -> str:
    lines = ["# Disguised text: invisible characters, look-alike letters, leetspeak, letters spaced out; both sides", "",
             (f"`{command}` (see the script's docstring). Flagged share at each model's default point: recall of "
             "the harmful sets, false-positive rate of the harmless ones; SafeRLHF pairs (the disguise on the "
             "response) and XSafety (both labels) read as recall / FPR."), ""]
    models = list(dict.fromkeys(r["model"] for r in results))
    columns = list(dict.fromkeys((r["set"], r["shape"]) for r in results))
    header = " | ".join(f"{name} ({shape})" for name, shape in columns)
    lines += [f"| model | disguise | {header} |", "|---|---|" + "---:|" * len(columns)]
    for model in models:
        for disguise in DISGUISES:
            cells = []
            for name, shape in columns:
                [row] = [r for r in results if (r["model"], r["disguise"], r["set"]) == (model, disguise, name)]
                cells.append(f"{row['flagged']:.3f}" if "flagged" in row else f"{row['recall']:.3f} / {row['fpr']:.3f}")
            lines.append(f"| {model} | {disguise} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REV", help="also REV's shipped models (git show)")
    parser.add_argument("--before-code", action="store_true",
                        help="score REV's models with REV's own code (its package imported beside today's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = package_at(args.before, Path(tmp) / "code") if args.before and args.before_code else None
        models: dict[str, object] = {}
        for name in ("default", "fast", "beavertails"):
            if old is not None:
                models[f"{name} @ {args.before} (its code)"] = old.load_scorer(name)
            elif args.before:
                models[f"{name} @ {args.before}"] = model_at(args.before, name, Path(tmp) / name)
            models[name] = name
        results = measure(models)
    command = "python benchmarks/disguises.py" + (f" --before {args.before}" if args.before else "") + (
        " --before-code" if old is not None else "")
    write_results("disguises", [{"machine": machine(command)}, *results], markdown(results, command))


if __name__ == "__main__":
    main()
