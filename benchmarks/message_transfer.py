"""How well does the message side carry to a source it never saw? Leave one message source out, score its held-out file.

    python benchmarks/message_transfer.py [--variant NAME ...]     # about 10 minutes a variant, one core

Why: issue 20 is judged on real traffic we never see (real chatbot prompts, a moderation dataset). The held-out
halves of ``messages/`` share their sources with the training halves, so their AUROC (``message_recipes.py``:
0.97) says how well a source is learned, not how well the model meets a new one. Here each ``messages/`` source
of the shipped recipe is removed from the training messages in turn (every row of it), the message side is fitted
as ``message_recipes.py`` fits it (same rows otherwise, same variants), and the source's ``*_heldout`` file is
scored: the AUROC on a source the model never saw. Sources with one label are paired with a set never trained on:
unsafe-only sources (jailbreak prompts, MultiJail) against the CLINC150 queries (harmless), safe-only ones
(awesome prompts) against AdvBench (harmful). The same AUROC with the source in training is reported beside it
(``in``), so the gap is what a new source costs. The mean over sources of the left-out AUROC is the transfer score
a recipe can be picked by (it sees no evaluation set of the issue's targets: only held-out halves of training
sources). CLINC150 is English: a model that reads a language as a harm ranks MultiJail's non-English requests above
it for that cue alone. So unsafe-only sources are also scored against CLINC150 plus chatterbot-corpus's held-out
part (harmless small talk in 28 languages, never trained on; ``lite_moderation.sources.chatterbot_turns``), where
the language cue counts against a model as much as for it (``multilingual``, and its mean over sources). Writes
``benchmarks/results/message_transfer.json`` and ``.md``; ``--variant`` keeps the others'.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import SHARED_DATA, kept_results, write_results
from message_frontier import messages_of
from message_recipes import VARIANTS, fit, message_rows, recipe_sources, split_settings
from sklearn.metrics import roc_auc_score

from lite_moderation.sources import chatterbot_turns

MESSAGES = SHARED_DATA / "messages"
#: The set a one-label source is paired with: harmless queries for unsafe-only sources, harmful requests otherwise.
HARMLESS_PARTNER = SHARED_DATA / "everyday" / "clinc150_queries.jsonl"
HARMFUL_PARTNER = SHARED_DATA / "everyday" / "advbench_harmful_behaviors.jsonl"


def message_sources() -> list[tuple[int, str]]:
    """(index in the recipe's sources, name) of every ``messages/`` source."""
    return [(k, str(spec.path).rsplit("/", 1)[-1].removesuffix("_train.jsonl"))
            for k, spec in enumerate(recipe_sources()) if "/messages/" in str(spec.path)]


def test_items(name: str) -> tuple[list[str], np.ndarray, Path | None]:
    """The source's held-out messages, with a never-trained partner set when it has one label only (and which)."""
    items, unsafe = messages_of(MESSAGES / f"{name}_heldout.jsonl")
    if not (unsafe.all() or not unsafe.any()):
        return items, unsafe, None
    partner_path = HARMLESS_PARTNER if unsafe.all() else HARMFUL_PARTNER
    partner, _ = messages_of(partner_path)
    return items + partner, np.concatenate([unsafe, np.full(len(partner), not unsafe[0])]), partner_path


def measure(variant: str) -> dict:
    start = time.time()
    rows, knobs = split_settings(VARIANTS[variant])
    texts, y, w, _, _, source, doubtful = message_rows(**rows)
    tests = {name: test_items(name) for _, name in message_sources()}
    small_talk = [text for _, _, text in chatterbot_turns(heldout=True)]
    multilingual = {name: (items + small_talk, np.concatenate([unsafe, np.zeros(len(small_talk), dtype=bool)]))
                    for name, (items, unsafe, partner) in tests.items() if partner == HARMLESS_PARTNER}
    full = fit(texts, y, w, doubtful=doubtful, **knobs)
    result = {"variant": variant, "sources": {}}
    for k, name in message_sources():
        keep = np.flatnonzero(source != k)
        left_out = fit([texts[i] for i in keep], y[keep], w[keep], doubtful=doubtful[keep], **knobs)
        items, unsafe, _ = tests[name]
        result["sources"][name] = {"rows_left_out": int((source == k).sum()), "test_rows": len(items),
                                   "in": round(float(roc_auc_score(unsafe, full(items))), 4),
                                   "left_out": round(float(roc_auc_score(unsafe, left_out(items))), 4)}
        if name in multilingual:
            items, unsafe = multilingual[name]
            result["sources"][name]["multilingual"] = {
                "test_rows": len(items), "in": round(float(roc_auc_score(unsafe, full(items))), 4),
                "left_out": round(float(roc_auc_score(unsafe, left_out(items))), 4)}
        print(variant, name, result["sources"][name], flush=True)
    result["mean_in"] = round(float(np.mean([s["in"] for s in result["sources"].values()])), 4)
    result["mean_left_out"] = round(float(np.mean([s["left_out"] for s in result["sources"].values()])), 4)
    fair = [s.get("multilingual", s) for s in result["sources"].values()]
    result["mean_in_multilingual"] = round(float(np.mean([s["in"] for s in fair])), 4)
    result["mean_left_out_multilingual"] = round(float(np.mean([s["left_out"] for s in fair])), 4)
    result["seconds"] = round(time.time() - start)
    return result


def markdown(results: list[dict]) -> str:
    names = list(results[0]["sources"])
    lines = ["# Message side on sources it never saw (issue 20)", "",
             "`python benchmarks/message_transfer.py` (each `messages/` source left out of training in turn, its",
             "held-out file scored; one-label sources paired with CLINC150 queries or AdvBench; AUROC, see the",
             "script's docstring). Cells: AUROC left out (with the source in training).", "",
             "| variant | mean left out (in) | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for r in results:
        cells = [f"{r['sources'][n]['left_out']:.3f} ({r['sources'][n]['in']:.3f})" for n in names]
        lines.append(f"| {r['variant']} | {r['mean_left_out']:.4f} ({r['mean_in']:.4f}) | " + " | ".join(cells) + " |")
    return "\n".join(lines + multilingual_markdown(results)) + "\n"


def multilingual_markdown(results: list[dict]) -> list[str]:
    """The unsafe-only sources against a harmless partner in 28 languages (variants measured since it exists)."""
    measured = [r for r in results if "mean_left_out_multilingual" in r]
    if not measured:
        return []
    names = [n for n, s in measured[0]["sources"].items() if "multilingual" in s]
    lines = ["", "## Unsafe-only sources against harmless messages in 28 languages", "",
             "The same fits; the unsafe-only sources scored against CLINC150 **plus** chatterbot-corpus's held-out",
             "part (3,039 harmless turns in 28 languages, never trained on), so reading a language as a harm no",
             "longer helps (against CLINC150 alone, English, it did). The mean takes these cells for those sources",
             "and the cells above for the others.", "",
             "| variant | mean left out (in) | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for r in measured:
        cells = [f"{r['sources'][n]['multilingual']['left_out']:.3f} ({r['sources'][n]['multilingual']['in']:.3f})"
                 for n in names]
        lines.append(f"| {r['variant']} | {r['mean_left_out_multilingual']:.4f} ({r['mean_in_multilingual']:.4f}) | "
                     + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", nargs="+", choices=sorted(VARIANTS), default=["base", "nb_power_0.5"])
    args = parser.parse_args()
    measured = {name: measure(name) for name in args.variant}
    kept = kept_results("message_transfer", measured, key=lambda r: r["variant"])
    results = [kept[name] for name in VARIANTS if name in kept]
    write_results("message_transfer", results, markdown(results))


if __name__ == "__main__":
    main()
