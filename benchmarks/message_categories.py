"""Which harm does a flagged message name? Categories of single messages, read as a user of ``/v1/moderations`` sees them.

    python benchmarks/message_categories.py [--model LABEL=NAME_OR_DIR ...] [--before REV]
    # default: default=default fast=fast; --before adds REV's shipped default and fast beside them

Why this exists: issue 20 asked that ``flagged`` and the categories agree (a flagged item names at least one
category) and the shipped models do; it did not ask *which* one. Read on the held-out messages, the answer was
often wrong: held-out MultiJail requests named ``sexually_explicit`` most of the time, a death threat
``privacy_violation``, and in OpenAI's shape (``taxonomy.openai_categories``) many flagged messages named no
category at all, since four BeaverTails categories have no OpenAI counterpart.

Every row is scored as a message alone, at the model's default point, and read in OpenAI's categories (what the
server answers). Three kinds of sets:

- **tagged**: held-out rows whose source tag says which harm they are (``EXPECTED``: e.g. HateCheck's hateful
  functional tests -> ``hate`` or ``harassment``; Do-Not-Answer's "Adult Content" -> ``sexual``), and the 20
  harmful rows of our smoke set (``benchmarks/data/smoke_messages.jsonl``, field ``openai_categories``, written
  with the set). Read: of the flagged rows, the share naming one of the expected OpenAI categories;
- **untagged**: harmful sets without such tags (AdvBench, MultiJail, jailbreak prompts): which OpenAI categories
  the flagged rows name, the most frequent first (no right answer is known; MultiJail's requests are Anthropic's
  red-team questions in ten languages, of every kind);
- every set: flagged rows naming no OpenAI category.

Which sources trained a category (``--data FILE,category=C``) is in each model's card: a source's held-out half is
then in-distribution for that category, so the table marks those rows. Results:
``benchmarks/results/message_categories.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import machine, write_results
from model_speed import model_at

import lite_moderation as lm
from lite_moderation.labels import label_set_of
from lite_moderation.taxonomy import OPENAI_MAPPED, openai_categories
from lite_moderation.thresholds import cut_offs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SMOKE = ROOT / "benchmarks" / "data" / "smoke_messages.jsonl"

_HATE = ("hate", "harassment")
_ILLICIT = ("illicit", "illicit/violent", "violence")
#: held-out file -> source tag (the last ``:`` field of ``source``, or the harm type of Do-Not-Answer) -> the
#: OpenAI categories any of which is a right answer for its unsafe rows. Tags not listed are left out.
EXPECTED = {
    "hatecheck_heldout": {"*_h": _HATE},
    "tweets_offensive_heldout": {"offensive": _HATE, "hate_speech": _HATE},
    "convabuse_heldout": {"*": (*_HATE, "sexual")},  # abuse of a chatbot: insults, sexism, sexual harassment
    "xsafety_heldout": {"Insult": _HATE, "Crimes_And_Illegal_Activities": _ILLICIT},
    "do_not_answer_heldout": {"Adult Content": ("sexual",), "Toxic language (hate speech)": _HATE,
                              "Social stereotypes and unfair discrimination": ("hate",),
                              "Assisting illegal activities": _ILLICIT},
    "forbidden_questions_heldout": {"Hate Speech": _HATE, "Pornography": ("sexual",), "Fraud": ("illicit",),
                                    "Malware": ("illicit",), "Illegal Activity": _ILLICIT,
                                    "Physical Harm": (*_ILLICIT, "self-harm")},
}
UNTAGGED = {"advbench": DATA / "everyday" / "advbench_harmful_behaviors.jsonl",
            "multijail_heldout": DATA / "messages" / "multijail_heldout.jsonl",
            "jailbreak_prompts_heldout": DATA / "messages" / "jailbreak_prompts_heldout.jsonl"}


def _records(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _tag(source: str) -> str:
    return source.rsplit(":", 1)[-1]


def _expected_of(tags: dict, tag: str) -> tuple[str, ...] | None:
    if "*" in tags:
        return tags["*"]
    if "*_h" in tags:
        return tags["*_h"] if tag.endswith("_h") else None
    return tags.get(tag)


def tagged_rows() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """Per set, (message, expected OpenAI categories) of its unsafe rows with a known harm."""
    sets: dict[str, list] = {}
    for name, tags in EXPECTED.items():
        rows = []
        for record in _records(DATA / "messages" / f"{name}.jsonl"):
            expected = _expected_of(tags, _tag(record["source"]))
            if not record["is_safe"] and expected:
                rows.append((record["prompt"], expected))
        sets[name] = rows
    sets["smoke"] = [(r["text"], tuple(r["openai_categories"])) for r in _records(SMOKE) if not r["is_safe"]]
    return sets


def untagged_rows() -> dict[str, list[str]]:
    return {name: [r["prompt"] for r in _records(path) if not r["is_safe"]] for name, path in UNTAGGED.items()}


def openai_verdicts(scorer, texts: list[str]) -> list[tuple[bool, set[str], bool, bool]]:
    """(flagged, OpenAI categories named, whether the model's own categories had no OpenAI counterpart, whether
    some category reached its own cut-off) of each text, as a message alone at the default point.

    The third: OpenAI's fields come from the fallback of ``openai_categories`` (before it, such a flagged row named
    no OpenAI category). The fourth false on a flagged row: no category head reached its cut-off, and the one named
    is the nearest to it (``LabelSet.decide``), a guess rather than a verdict."""
    proba = scorer.predict_proba([("", text) for text in texts])
    cuts = cut_offs(scorer, np.ones(len(texts), bool))
    reached = (proba[:, :-1] >= cuts[:, :-1]).any(axis=1)
    out = []
    for verdict, some_reached in zip(label_set_of(scorer).results(proba, cuts), reached):  # scored once
        flags, _ = openai_categories(verdict["categories"], verdict["category_scores"])
        unmapped = verdict["flagged"] and not any(verdict["categories"][c] for c in OPENAI_MAPPED)
        out.append((verdict["flagged"], {name for name, on in flags.items() if on}, unmapped, bool(some_reached)))
    return out


def trained_categories(scorer) -> dict[str, str]:
    """Sources whose unsafe rows trained a category (``--data FILE,category=C``), from the model's card."""
    sources = getattr(scorer, "card_", {}).get("training_data", {}).get("sources", [])
    return {Path(s["name"]).name.removesuffix(".jsonl").removesuffix("_train"): s["category"]
            for s in sources if s.get("category")}


def _tally(verdicts: list[tuple[bool, set[str], bool, bool]]) -> dict:
    """Counts of one set: flagged rows, those naming no OpenAI category, those named by the OpenAI fallback, and
    those on which some category reached its cut-off (see :func:`openai_verdicts`)."""
    flagged = [v for v in verdicts if v[0]]
    return {"flagged": len(flagged), "named_none": sum(1 for v in flagged if not v[1]),
            "only_categories_openai_lacks": sum(v[2] for v in flagged),
            "some_category_reached_its_cut_off": sum(v[3] for v in flagged)}


def measure(label: str, model: str) -> dict:
    scorer = lm.load_scorer(model)
    trained = trained_categories(scorer)
    result = {"model": label, "path": model, "trained_categories": trained, "tagged": {}, "untagged": {}}
    for name, rows in tagged_rows().items():
        verdicts = openai_verdicts(scorer, [text for text, _ in rows])
        right = sum(1 for (flag, named, *_), (_, expected) in zip(verdicts, rows) if flag and named & set(expected))
        tally = _tally(verdicts)
        result["tagged"][name] = {"rows": len(rows), **tally, "named_as_expected": right,
                                  "share_of_flagged": round(right / max(tally["flagged"], 1), 3),
                                  "category_trained": name.removesuffix("_heldout") in trained}
    for name, texts in untagged_rows().items():
        verdicts = openai_verdicts(scorer, texts)
        tally = _tally(verdicts)
        counts = Counter(category for flag, named, *_ in verdicts if flag for category in named)
        result["untagged"][name] = {"rows": len(texts), **tally, "named": {
            k: round(v / max(tally["flagged"], 1), 3) for k, v in counts.most_common()}}
    return result


def _command(results: list[dict]) -> str:
    models = " ".join(f"{r['model']}={r['path']}" for r in results if ":" not in r["path"])
    before = "".join(f" --before {r['path'].split(':')[0]}" for r in results[-1:] if ":" in r["path"])
    return f"`python benchmarks/message_categories.py --model {models}{before}`"


def _table(results: list[dict], kind: str, cell: Callable[[dict], str], suffix: str) -> list[str]:
    """One Markdown table: a row per set of ``kind`` ("tagged" or "untagged"), a column per model."""
    lines = ["| set | " + " | ".join(r["model"] for r in results) + " |", "|---|" + "---|" * len(results)]
    for name, first in results[0][kind].items():
        cells = " | ".join(cell(r[kind][name]) for r in results)
        lines.append(f"| {name} ({first['rows']}{suffix}) | {cells} |")
    return lines


def _tagged_cell(t: dict) -> str:
    return (f"{t['named_as_expected']} / {t['flagged']} ({t['share_of_flagged']:.2f})"
            + (" *" if t["category_trained"] else "") + f"; reached {t['some_category_reached_its_cut_off']}"
            + f"; fallback {t['only_categories_openai_lacks']}" + (f", none {t['named_none']}" if t["named_none"] else ""))


def _untagged_cell(u: dict) -> str:
    top = ", ".join(f"{k} {v:.2f}" for k, v in list(u["named"].items())[:4])
    return (f"{u['flagged']} flagged: {top}; reached {u['some_category_reached_its_cut_off']}; "
            f"fallback {u['only_categories_openai_lacks']}; none {u['named_none']}")


def markdown(results: list[dict], info: dict) -> str:
    lines = ["# Which harm a flagged message names (OpenAI's categories, messages alone, default point)", "",
             _command(results), "", f"Machine: {info['cpus']} cores, Python {info['python']}.", "",
             ("Tagged sets: of the flagged harmful rows, how many name one of the OpenAI categories their source tag "
              "implies (`EXPECTED` in the script; the smoke set's own `openai_categories`). * = that source's training "
              "half taught the model a category (`--data FILE,category=C`): in-distribution. Reached: flagged rows "
              "where some category head reached its own cut-off (on the others no head did, and the category named is "
              "the one nearest its cut-off: a guess, not a verdict). Fallback: flagged rows "
              "whose own categories all lack an OpenAI counterpart, named by `openai_categories`' fallback (before "
              "it, they named no OpenAI category); none: flagged rows naming no OpenAI category."), "",
             *_table(results, "tagged", _tagged_cell, " harmful"), "",
             ("Untagged harmful sets: the OpenAI categories flagged rows name (share of the flagged rows; a row "
              "can name several), the four most frequent; reached, fallback and none as above."), "",
             *_table(results, "untagged", _untagged_cell, "")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["default=default", "fast=fast"],
                        help="LABEL=NAME_OR_DIR: a shipped model's name or a model directory")
    parser.add_argument("--before", metavar="REV", help="also measure the shipped default and fast of git revision REV")
    args = parser.parse_args()
    info = machine("message categories")
    results = [measure(*spec.split("=", 1)) for spec in args.model]
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("default", "fast"):
                path = model_at(args.before, name, Path(tmp) / name)
                results.append({**measure(f"{name} at {args.before}", str(path)), "path": f"{args.before}:{name}"})
    for r in results:
        r["machine"] = info
    write_results("message_categories", results, markdown(results, info))


if __name__ == "__main__":
    main()
