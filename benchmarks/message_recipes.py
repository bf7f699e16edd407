"""Recipe variants of the message side of `default`, measured the same way: do any move issue 20's frontier?

    python benchmarks/message_recipes.py [--variant NAME ...]     # about 3 minutes a variant, 2 cores

Why this exists: `default` misses some message targets of issue 20 at its shipped cut-off, and
``message_frontier.py`` shows no cut-off of the shipped model meets them together. This script asks whether a
different recipe would. It rebuilds the shipped recipe's training rows (``sources.build_training_set`` on the
card's ``--data`` list, shapes pair and text), keeps the single-message rows, and fits the message side alone as the
model does (the ``lone_text`` word 1-2 and char_wb 2-5 TF-IDF blocks, liblinear dual logistic regression, C=4,
source weights, the character block's features times ``char_weight`` while fitting): in the shipped model these blocks are zero on every pair, so the message side is this model plus a
shared intercept. Only the unsafe head is fitted (it alone decides ``flagged``). Its cut-off is the F1-best point of
out-of-fold scores (3 grouped folds) on the weighted training messages, as the shipped model's is tuned.

Variants:

- ``base``: the card's rows, 50,000 terms per block, the character block at weight 1 (the shipped default weighs
  only its pairs' character block, ``--char-weight pair_response=1.5``), no Naive-Bayes weighting: the message side
  shipped before ``--nb-power lone_text=0.5`` (the variant ``nb_power_0.5`` is the one shipped since);
- ``char_weight_0.7``, ``char_weight_1.5``, ``char_weight_2``: the message character block weighed so while fitting
  (``--char-weight lone_text=W``);
- ``terms_20k``: 20,000 terms per block (the pre-issue-20 default's size; fewer terms matched per message is faster);
- ``no_red_team_prompts``: without the 1,043 BeaverTails prompts whose answers were all safe, which the shipped
  recipe adds as harmless messages (BeaverTails' "safe" judges the answer, not the prompt: many such prompts are
  harmful requests that were refused);
- ``no_red_team_prompts_100k``: the same with 100,000 terms per block;
- ``nb_power_0.3``, ``nb_power_0.5``, ``nb_power_0.7``, ``nb_power_1``: Naive-Bayes feature weighting of the message
  blocks (``--nb-power lone_text=P``; ``lite_moderation.model.nb_scales``, computed in each fit from its own rows).
- ``no_red_team_prompts_nb_power_0.5``: both changes together;
- ``red_team_prompts_0.3_nb_power_0.5``: those BeaverTails prompts kept at 0.3 of their weight, with Naive-Bayes
  weighting (in the product: ``--data 30k_test.jsonl,prompt_alone_weight=0.3``, the same rows);
- ``instruction_forms_0.5``, ``instruction_forms_1``: ``nb_power_0.5`` plus, for every request of the request-like
  sources (BeaverTails prompts, BeaverTails-Evaluation, forbidden questions, do-not-answer, XSafety, MultiJail; safe
  and unsafe alike), one copy wrapped in an instruction form (``FORMS``: "Write step-by-step instructions. ...",
  "... Write the answer as a guide." ...; written for this harness, no evaluation row read) at 0.5 or 1 of the row's
  weight, in the row's group. Why: the harmless instruction data teaches that the form "Write ..." is safe, and
  instruction-style harmful requests were the study's weak spot; wrapping harmful and harmless requests alike makes
  the form carry no label. Out-of-fold AUROC is read on the original rows only;
- ``c_2``, ``c_8``, ``c_16``: ``nb_power_0.5`` with the regression's C at 2, 8, 16 (the model's: 4);
- ``word_trigrams``: ``nb_power_0.5`` with word 1-3 grams;
- ``red_team_prompts_cleaned_nb_power_0.5``, ``red_team_prompts_relabelled_nb_power_0.5``: ``nb_power_0.5`` with
  those BeaverTails prompts cleaned rather than reweighed: in each fit, the same recipe fitted without them scores
  them, and those it flags (probability >= 0.5) are dropped, or relabelled unsafe; the rest stay harmless (inside
  each cross-validation fold from that fold's rows alone). Out-of-fold AUROC still reads them with their original
  label;
- ``instruction_all_nb_power_0.5``, ``instruction_all_weight_0.6_nb_power_0.5``: every row of
  ``instruction_train.jsonl`` (9,481, not the recipe's 3,000), at the recipe's weight 0.3 or at 0.6: more harmless
  requests. (Adding easy rows raises out-of-fold AUROC by itself: compare these on the evaluation sets.)
- ``chatterbot_0.5_nb_power_0.5``, ``chatterbot_1_nb_power_0.5``, ``chatterbot_english_1_nb_power_0.5``:
  ``nb_power_0.5`` plus the user turns of ``chatterbot-corpus`` (:func:`extra_harmless`; 5,174 distinct in every
  language, 749 in English) as harmless messages at weight 0.5 or 1, each its own group: harmless short questions
  in a user's voice, which the training data lacks (CLINC150's are evaluation only). Not in the training set's
  out-of-fold AUROC (``original`` false);
- ``max_df_0.5_nb_power_0.5`` ... ``max_df_0.05_nb_power_0.5``: ``nb_power_0.5`` with each block's terms found in more
  than that share of the training messages dropped (``DfCappedVectorizer``, a harness-only knob): the most frequent
  n-grams (" i ", "the") carry a source's voice rather than a message's meaning;
- ``word_unigrams_nb_power_0.5``: ``nb_power_0.5`` with word unigrams only (bigrams such as "way to" carry a
  request's form);
- ``chatterbot_all_turns_1_nb_power_0.5``: ``nb_power_0.5`` plus every turn of ``chatterbot-corpus``'s training part
  (``lite_moderation.sources.chatterbot_turns``: 10,691 distinct turns in 28 languages, what ``--data
  pkg:chatterbot-corpus`` trains on) at weight 1. Why: the held-out part of the same corpus, harmless small talk in
  28 languages, showed the shipped model flagging 40% of it (a language, not a harm: MultiJail's rows are all
  unsafe, and few harmless non-English messages are in training);
- ``unsafe_red_team_prompts_0.5``, ``unsafe_red_team_prompts_1``: the shipped message side
  (``chatterbot_all_turns_1_nb_power_0.5``) plus BeaverTails' prompts with an unsafe answer as unsafe messages at
  that weight, in their prompt's group (the recipe leaves their flag label unknown). Why: blatant short requests
  are what the smoke set misses and Do-Not-Answer holds;
- ``evaluation_700_weight_2``: the shipped message side with BeaverTails-Evaluation's 700 harmful requests weighed 2;
- ``endings_swapped_0.5``, ``endings_all_0.33``: the shipped message side plus, for every training message, a copy
  ending otherwise (final punctuation removed, a "?" or a "."; :func:`ending_copies`): one other ending picked by a
  hash of the text at 0.5 of the row's weight, or every other ending at 0.33 each, in the row's group. Why: the
  shipped models weigh a message's final "?" (a character n-gram), so the same request typed without it, or with a
  full stop, moved: the copies make the ending carry no label. (The copies also count for the vocabulary's
  ``min_df`` here, as every harness row does.) Since these variants, each variant newly measured is also read in
  each ending form (:func:`endings_measured`);
- ``fast``, ``fast_nb_power_0.5``: the shipped ``fast`` model's message side (word block only, 15,000 terms), without
  and with Naive-Bayes weighting.
(The character weight is 1 in all but the ``char_weight_*`` variants.)

Reported per variant: the held-out message sets, the everyday sets and the smoke set
(``benchmarks/data/smoke_messages.jsonl``: harmful ones flagged of 20, harmless ones flagged of 20) at the variant's
own cut-off, the false-positive rate on chatterbot-corpus's held-out part (harmless, 28 languages; since the sixth
round), the out-of-fold AUROC on the training messages and the out-of-fold recall at the cut-off flagging 5% of
their safe weight (what picks a variant without the evaluation sets; the recall column was added after the first
variants were measured, so older rows lack it),
the pooled held-out AUROC, and the recalls reached at the cut-off that keeps every harmless set at FPR <= 0.05 (chosen on the
evaluation sets: what the variant can reach, not a shippable cut-off). Also (since the fourth round) the same sets at the cut-off
flagging 5% of the safe training messages' weight out of fold (a Neyman-Pearson rule instead of the F1-best one). Writes
``benchmarks/results/message_recipes.json`` and ``.md``; ``--variant`` reruns the named variants and keeps the
others' results.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import re
import shlex
import time
import zlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import ROOT, SHARED_DATA, kept_results, write_results
from message_frontier import HARMFUL, HARMLESS, lowest_cut_keeping_fpr, messages_of
from rebuild_shipped import local_path
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

from lite_moderation.features import QAVectorizer
from lite_moderation.model import column_scales, nb_scales
from lite_moderation.sources import build_training_set, chatterbot_turns, parse_source

MESSAGES = SHARED_DATA / "messages"
SMOKE = ROOT / "benchmarks" / "data" / "smoke_messages.jsonl"
_BASE = {"red_team_weight": 1.0, "unsafe_prompts_weight": 0.0, "forms_weight": 0.0, "clean": "", "overrides": (), "extra_weight": 0.0, "extra_languages": "*", "endings": "", "endings_weight": 0.0, "max_features": 50000, "char_weight": 1.0, "nb_power": 0.0, "characters": True,
         "c": 4.0, "word_ngrams": 2, "max_df": 1.0}
_FAST = {**_BASE, "max_features": 15000, "characters": False}
#: The shipped default's message side since the sixth round (``chatterbot_all_turns_1_nb_power_0.5``).
_SHIPPED = {**_BASE, "nb_power": 0.5, "extra_weight": 1.0, "extra_languages": "training_part"}
VARIANTS = {
    "base": _BASE,
    "char_weight_0.7": {**_BASE, "char_weight": 0.7},
    "char_weight_1.5": {**_BASE, "char_weight": 1.5},
    "char_weight_2": {**_BASE, "char_weight": 2.0},
    "terms_20k": {**_BASE, "max_features": 20000},
    "no_red_team_prompts": {**_BASE, "red_team_weight": 0.0},
    "no_red_team_prompts_100k": {**_BASE, "red_team_weight": 0.0, "max_features": 100000},
    "nb_power_0.3": {**_BASE, "nb_power": 0.3},
    "nb_power_0.5": {**_BASE, "nb_power": 0.5},
    "nb_power_0.7": {**_BASE, "nb_power": 0.7},
    "nb_power_1": {**_BASE, "nb_power": 1.0},
    "no_red_team_prompts_nb_power_0.5": {**_BASE, "red_team_weight": 0.0, "nb_power": 0.5},
    "red_team_prompts_0.3_nb_power_0.5": {**_BASE, "red_team_weight": 0.3, "nb_power": 0.5},
    "instruction_forms_0.5": {**_BASE, "nb_power": 0.5, "forms_weight": 0.5},
    "instruction_forms_1": {**_BASE, "nb_power": 0.5, "forms_weight": 1.0},
    "c_2": {**_BASE, "nb_power": 0.5, "c": 2.0},
    "c_8": {**_BASE, "nb_power": 0.5, "c": 8.0},
    "c_16": {**_BASE, "nb_power": 0.5, "c": 16.0},
    "word_trigrams": {**_BASE, "nb_power": 0.5, "word_ngrams": 3},
    "red_team_prompts_cleaned_nb_power_0.5": {**_BASE, "nb_power": 0.5, "clean": "drop"},
    "red_team_prompts_relabelled_nb_power_0.5": {**_BASE, "nb_power": 0.5, "clean": "relabel"},
    "instruction_all_nb_power_0.5": {**_BASE, "nb_power": 0.5, "overrides": (("instruction_train", (("rows", None),)),)},
    "instruction_all_weight_0.6_nb_power_0.5": {
        **_BASE, "nb_power": 0.5, "overrides": (("instruction_train", (("rows", None), ("weight", 0.6))),)},
    "chatterbot_0.5_nb_power_0.5": {**_BASE, "nb_power": 0.5, "extra_weight": 0.5},
    "chatterbot_1_nb_power_0.5": {**_BASE, "nb_power": 0.5, "extra_weight": 1.0},
    "chatterbot_english_1_nb_power_0.5": {**_BASE, "nb_power": 0.5, "extra_weight": 1.0, "extra_languages": "english"},
    "max_df_0.5_nb_power_0.5": {**_BASE, "nb_power": 0.5, "max_df": 0.5},
    "max_df_0.2_nb_power_0.5": {**_BASE, "nb_power": 0.5, "max_df": 0.2},
    "max_df_0.1_nb_power_0.5": {**_BASE, "nb_power": 0.5, "max_df": 0.1},
    "max_df_0.05_nb_power_0.5": {**_BASE, "nb_power": 0.5, "max_df": 0.05},
    "chatterbot_all_turns_1_nb_power_0.5": {**_BASE, "nb_power": 0.5, "extra_weight": 1.0,
                                            "extra_languages": "training_part"},
    "word_unigrams_nb_power_0.5": {**_BASE, "nb_power": 0.5, "word_ngrams": 1},
    "unsafe_red_team_prompts_0.5": {**_SHIPPED, "unsafe_prompts_weight": 0.5},
    "unsafe_red_team_prompts_1": {**_SHIPPED, "unsafe_prompts_weight": 1.0},
    "evaluation_700_weight_2": {**_SHIPPED, "overrides": (("evaluation_700", (("weight", 2.0),)),)},
    "endings_swapped_0.5": {**_SHIPPED, "endings": "one", "endings_weight": 0.5},
    "endings_all_0.33": {**_SHIPPED, "endings": "all", "endings_weight": 0.33},
    "fast": _FAST,
    "fast_nb_power_0.5": {**_FAST, "nb_power": 0.5},
    "fast_30k_nb_power_0.5": {**_FAST, "nb_power": 0.5, "max_features": 30000},
    "fast_50k_nb_power_0.5": {**_FAST, "nb_power": 0.5, "max_features": 50000},
    "fast_100k_nb_power_0.5": {**_FAST, "nb_power": 0.5, "max_features": 100000},
    "fast_50k_trigrams_nb_power_0.5": {**_FAST, "nb_power": 0.5, "max_features": 50000, "word_ngrams": 3},
}


#: A variant's settings that choose the training rows (:func:`message_rows`); the others go to :func:`fit`.
ROW_SETTINGS = ("red_team_weight", "unsafe_prompts_weight", "forms_weight", "overrides", "extra_weight", "extra_languages",
                "endings", "endings_weight")


def split_settings(settings: dict) -> tuple[dict, dict]:
    """A variant's settings as (:func:`message_rows` arguments, :func:`fit` arguments)."""
    return ({k: settings[k] for k in ROW_SETTINGS},
            {k: v for k, v in settings.items() if k not in ROW_SETTINGS})


#: Sources of the shipped card that the harness's base leaves out: the sixth round added ``pkg:chatterbot-corpus``
#: to the card, and the ``chatterbot_*`` variants add its turns themselves. Reading it from the card too counted
#: them twice (message_transfer.py's chatterbot_all_turns_1_nb_power_0.5 row of eb47ac0 was measured so), and the
#: base variants (``base``, ``nb_power_0.5`` ...) would have changed meaning from the rows already recorded.
NOT_IN_BASE = ("pkg:chatterbot-corpus",)


def recipe_sources(overrides: tuple = ()) -> list:
    """The shipped default's ``--data`` sources but :data:`NOT_IN_BASE` (the fifth round's recipe), with this
    machine's paths; ``overrides``: ``(name part, ((field, value), ...))`` pairs replacing fields of the sources
    whose path holds that part."""
    card = json.loads((ROOT / "lite_moderation" / "models" / "default" / "model.json").read_text())["card"]
    args = shlex.split(card["recipe"]["command"])
    specs = []
    for previous, arg in itertools.pairwise(args):
        name, _, options = arg.partition(",")
        if previous == "--data" and name not in NOT_IN_BASE:
            specs.append(parse_source(",".join(filter(None, [local_path(name), options]))))
    for part, fields in overrides:
        specs = [dataclasses.replace(s, **dict(fields)) if part in str(s.path) else s for s in specs]
    return specs


# Instruction forms a request can arrive in (written for this harness, no evaluation row read).
FORMS = ("Write step-by-step instructions. {}", "{} Give me detailed step-by-step instructions.",
         "Explain in detail: {}", "Write a tutorial that answers this: {}", "{} Write the answer as a guide.",
         "Please answer the following. {}", "Create a detailed plan: {}", "Write a short essay on this question: {}")
REQUEST_SOURCES = ("30k_test", "evaluation_700", "forbidden_questions", "do_not_answer", "xsafety", "multijail")


@functools.lru_cache(maxsize=4)
def message_rows(red_team_weight: float = 1.0, unsafe_prompts_weight: float = 0.0, forms_weight: float = 0.0,
                 overrides: tuple = (),
                 extra_weight: float = 0.0, extra_languages: str = "*", endings: str = "",
                 endings_weight: float = 0.0) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Texts, unsafe labels, weights, groups, which rows are not added instruction forms, each row's source
    (its index in the recipe's sources) of the training set's single messages, and which rows are BeaverTails
    prompts labelled harmless only because every answer was safe (their label is in doubt)."""
    ts = build_training_set(recipe_sources(overrides), shapes=("pair", "text"), seed=0)
    pairs = [("", p) if isinstance(p, str) else tuple(p) for p in ts.pairs]
    single = np.array([not (p and r) for p, r in pairs])
    red_team = (ts.source_of_row == 0) & ~ts.response_copy & ~ts.primary  # its prompts added as texts alone
    if not red_team_weight:
        single &= ~red_team
    rows = np.flatnonzero(single)
    texts = [pairs[i][0] or pairs[i][1] for i in rows]
    y, w, groups, original = ts.Y[rows, -1], ts.weights[rows].copy(), ts.groups[rows], np.ones(len(rows), bool)
    w[red_team[rows]] *= red_team_weight or 1.0
    sources, doubtful = ts.source_of_row[rows], red_team[rows]
    if unsafe_prompts_weight:
        more, more_groups = unsafe_red_team_prompts(ts, pairs)
        texts = texts + more
        y, w = np.concatenate([y, np.ones(len(more), bool)]), np.concatenate([w, np.full(len(more), unsafe_prompts_weight)])
        groups = np.concatenate([groups, more_groups])
        original = np.concatenate([original, np.zeros(len(more), bool)])
        sources = np.concatenate([sources, np.zeros(len(more), np.intp)])
        doubtful = np.concatenate([doubtful, np.zeros(len(more), bool)])
    if forms_weight:
        names = [spec.path for spec in recipe_sources(overrides)]
        requests = [k for k, n in enumerate(names) if any(r in str(n) for r in REQUEST_SOURCES)]
        chosen = np.isin(ts.source_of_row[rows], requests) & ~ts.response_copy[rows]
        extra = np.flatnonzero(chosen)
        texts += [FORMS[zlib.crc32(texts[j].encode()) % len(FORMS)].format(texts[j]) for j in extra]
        y, groups = np.concatenate([y, y[extra]]), np.concatenate([groups, groups[extra]])
        w = np.concatenate([w, w[extra] * forms_weight])
        original = np.concatenate([original, np.zeros(len(extra), bool)])
        sources = np.concatenate([sources, sources[extra]])
        doubtful = np.concatenate([doubtful, doubtful[extra]])
    if extra_weight:
        more = extra_harmless(extra_languages)
        texts = texts + more
        y, w = np.concatenate([y, np.zeros(len(more), bool)]), np.concatenate([w, np.full(len(more), extra_weight)])
        groups = np.concatenate([groups, groups.max() + 1 + np.arange(len(more))])
        original = np.concatenate([original, np.zeros(len(more), bool)])
        sources = np.concatenate([sources, np.full(len(more), -1)])
        doubtful = np.concatenate([doubtful, np.zeros(len(more), bool)])
    if endings:
        extra, ended = ending_copies(texts, endings)
        texts = texts + ended
        y, groups = np.concatenate([y, y[extra]]), np.concatenate([groups, groups[extra]])
        w = np.concatenate([w, w[extra] * endings_weight])
        original = np.concatenate([original, np.zeros(len(extra), bool)])
        sources = np.concatenate([sources, sources[extra]])
        doubtful = np.concatenate([doubtful, doubtful[extra]])
    return texts, y, w, groups, original, sources, doubtful


#: How a message may end (``ENDING_FORMS``): as typed, its final punctuation removed, "?", "." (a text of
#: punctuation alone stays as typed).
FINAL_PUNCTUATION = re.compile(r"[\s.?!。？！]+$")
ENDINGS = ("", "?", ".")


def ended(text: str, mark: str) -> str:
    body = FINAL_PUNCTUATION.sub("", text)
    return body + mark if body else text


ENDING_FORMS = {"as typed": lambda t: t, "no final punctuation": lambda t: ended(t, ""),
                "final ?": lambda t: ended(t, "?"), "final .": lambda t: ended(t, ".")}


def ending_copies(texts: list[str], endings: str) -> tuple[np.ndarray, list[str]]:
    """Copies of ``texts`` ending otherwise (:data:`ENDINGS`): one of the other endings each (``"one"``, picked by
    a hash of the text), or every other (``"all"``); the index of each copy's text, and the copies."""
    extra, copies = [], []
    for i, text in enumerate(texts):
        others = [ended(text, mark) for mark in ENDINGS if ended(text, mark) != text]
        if endings == "one" and others:
            others = [others[zlib.crc32(text.encode()) % len(others)]]
        extra += [i] * len(others)
        copies += others
    return np.array(extra, dtype=np.intp), copies


def unsafe_red_team_prompts(ts, pairs: list[tuple[str, str]]) -> tuple[list[str], np.ndarray]:
    """BeaverTails' prompts with at least one unsafe answer, as unsafe messages in their prompt's group (the shipped
    recipe leaves their flag label unknown: "any answer unsafe" does not judge the words)."""
    chosen: dict[str, int] = {}
    for i in np.flatnonzero((ts.source_of_row == 0) & ts.primary & ts.Y[:, -1]):
        prompt, response = pairs[i]
        if prompt and response:
            chosen.setdefault(prompt, int(ts.groups[i]))
    return list(chosen), np.array(list(chosen.values()), dtype=ts.groups.dtype)


def extra_harmless(languages: str = "*") -> list[str]:
    if languages == "training_part":  # what ``--data pkg:chatterbot-corpus`` trains on: every turn, its training part
        return [text for _, _, text in chatterbot_turns()]
    return _user_turns(languages)


def _user_turns(languages: str) -> list[str]:
    """The user turns (first line of each conversation) of the ``chatterbot-corpus`` package (1.3.3, BSD-3; in the
    ``bench`` extra), of ``languages`` (a glob of its language folders): short harmless questions and remarks typed
    to a chatbot, distinct, in file order."""
    import yaml
    try:
        import chatterbot_corpus
    except ImportError as error:
        raise SystemExit("pip install 'lite-moderation[bench]' (chatterbot-corpus==1.3.3) for the chatterbot_* "
                         "variants") from error
    root = Path(chatterbot_corpus.__file__).parent / "data"
    turns = []
    for path in sorted(root.glob(f"{languages}/*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        turns += [c[0] for c in doc.get("conversations", []) if c and isinstance(c[0], str) and c[0].strip()]
    return list(dict.fromkeys(turns))


def fit_flag_head(vectorizer: QAVectorizer, items: list, y: np.ndarray, w: np.ndarray, char_weight: float,
                  nb_power: float, c: float = 4.0, word_weights: dict[str, float] | None = None):
    """The unsafe head as the model fits it (liblinear dual, C=4, row weights; character blocks times
    ``char_weight`` and Naive-Bayes factors while fitting), on ``vectorizer``'s blocks alone: a scorer of items."""
    X = vectorizer.fit_transform(items)
    nb = nb_scales(vectorizer, nb_power, X, y, w)
    factors = column_scales(vectorizer, char_weight) * (1.0 if nb is None else nb)
    start = 0
    for field, analyzer, block in vectorizer.blocks_:  # word blocks weighed so while fitting (a harness-only knob)
        stop = start + len(block.vocabulary_)
        if analyzer == "word" and word_weights and field in word_weights:
            factors[start:stop] *= word_weights[field]
        start = stop
    scales = sp.diags(factors)
    clf = LogisticRegression(C=c, solver="liblinear", dual=True, max_iter=1000, random_state=0).fit(X @ scales, y, sample_weight=w)
    return lambda new: clf.predict_proba(vectorizer.transform(new) @ scales)[:, 1]


def fit(texts: list[str], y: np.ndarray, w: np.ndarray, max_features: int, char_weight: float, nb_power: float,
        characters: bool, c: float, word_ngrams: int, max_df: float = 1.0, clean: str = "",
        doubtful: np.ndarray | None = None):
    """The message side fitted on these rows; with ``clean``, the ``doubtful`` rows are first scored by the same
    recipe fitted without them, and those it flags (probability >= 0.5) are dropped or relabelled unsafe."""
    knobs = {"max_features": max_features, "char_weight": char_weight, "nb_power": nb_power,
             "characters": characters, "c": c, "word_ngrams": word_ngrams, "max_df": max_df}
    if clean and doubtful is not None and doubtful.any():
        sure = np.flatnonzero(~doubtful)
        cleaner = fit([texts[i] for i in sure], y[sure], w[sure], **knobs)
        doubt = np.flatnonzero(doubtful)
        flagged = doubt[cleaner([texts[i] for i in doubt]) >= 0.5]
        print(f"clean={clean}: {len(flagged)} of {len(doubt)} doubtful rows flagged", flush=True)
        if clean == "drop":
            keep = np.setdiff1d(np.arange(len(texts)), flagged)
            texts, y, w = [texts[i] for i in keep], y[keep], w[keep]
        else:
            y = y.copy()
            y[flagged] = True
    return _fit_plain(texts, y, w, **knobs)


class DfCappedVectorizer(QAVectorizer):
    """``QAVectorizer`` whose blocks drop terms in more than ``max_df`` of the texts (a harness-only knob: the
    most frequent n-grams, " i ", "the", carry a source's voice more than a message's meaning)."""

    def __init__(self, word_fields=("prompt", "response"), word_ngram_range=(1, 2), char_fields=("response",),
                 char_ngram_range=(2, 5), min_df=2, max_features=None, sublinear_tf=True, dtype=np.float32,
                 max_df=1.0):
        super().__init__(word_fields, word_ngram_range, char_fields, char_ngram_range, min_df, max_features,
                         sublinear_tf, dtype)
        self.max_df = max_df

    def make_block(self, analyzer: str):
        return super().make_block(analyzer).set_params(max_df=self.max_df)


def _fit_plain(texts: list[str], y: np.ndarray, w: np.ndarray, max_features: int, char_weight: float,
               nb_power: float, characters: bool, c: float, word_ngrams: int, max_df: float = 1.0):
    vectorizer = DfCappedVectorizer(word_fields=("lone_text",), char_fields=("lone_text",) if characters else (),
                                    max_features=max_features, word_ngram_range=(1, word_ngrams), max_df=max_df)
    score = fit_flag_head(vectorizer, [("", t) for t in texts], y, w, char_weight, nb_power, c)
    return lambda items: score([("", t) for t in items])


def f1_best_cut(y: np.ndarray, scores: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(-scores)
    y, scores, w = y[order], scores[order], w[order]
    tp, fp = np.cumsum(w * y), np.cumsum(w * ~y)
    return float(scores[np.argmax(2 * tp / (tp + fp + (w * y).sum()))])


def cut_at_fpr(y: np.ndarray, scores: np.ndarray, w: np.ndarray, fpr: float) -> float:
    """The lowest cut-off (a score; flagged: at or above it) flagging at most ``fpr`` of the safe weight (the
    issue's operating point, read on out-of-fold training messages: it sees no evaluation set)."""
    order = np.argsort(-scores, kind="stable")
    s, safe_weight = scores[order], (w * ~y)[order]
    false_flags = np.cumsum(safe_weight) / safe_weight.sum()
    last = np.append(s[:-1] != s[1:], True)  # cut-offs lie between distinct scores only
    ok = np.flatnonzero(last & (false_flags <= fpr))
    return float(s[ok[-1]]) if len(ok) else float("inf")


def recall_at_fpr(y: np.ndarray, scores: np.ndarray, w: np.ndarray, fpr: float) -> float:
    """Weighted share of unsafe rows at or above :func:`cut_at_fpr`."""
    flagged = scores >= cut_at_fpr(y, scores, w, fpr)
    return float((w * y * flagged).sum() / (w * y).sum())


def measure(name: str) -> dict:
    start = time.time()
    rows, knobs = split_settings(VARIANTS[name])
    texts, y, w, groups, original, _, doubtful = message_rows(**rows)
    oof = np.zeros(len(texts))
    for train, test in GroupKFold(3).split(texts, y, groups):
        score = fit([texts[i] for i in train], y[train], w[train], doubtful=doubtful[train], **knobs)
        oof[test] = score([texts[i] for i in test])
    cut = f1_best_cut(y, oof, w)
    score = fit(texts, y, w, doubtful=doubtful, **knobs)
    result = {"variant": name, "training_messages": int(original.sum()), "cut_off": round(cut, 4),
              "oof_auroc": round(float(roc_auc_score(y[original], oof[original], sample_weight=w[original])), 4),
              "oof_recall_at_fpr_0.05": round(recall_at_fpr(y[original], oof[original], w[original], 0.05), 4),
              "sets": {}}
    pooled_scores, pooled_unsafe = [], []
    for path in sorted(MESSAGES.glob("*_heldout.jsonl")):
        items, unsafe = messages_of(path)
        s = score(items)
        pooled_scores.append(s)
        pooled_unsafe.append(unsafe)
    result["pooled_heldout_auroc"] = round(float(roc_auc_score(np.concatenate(pooled_unsafe),
                                                               np.concatenate(pooled_scores))), 4)
    harmless = {n: score(messages_of(p)[0]) for n, p in HARMLESS}
    harmful = {}
    for n, p, _ in HARMFUL:
        items, unsafe = messages_of(p)
        harmful[n] = score(items)[unsafe]
    smoke = [json.loads(line) for line in SMOKE.read_text().splitlines()]
    smoke_scores, smoke_unsafe = score([r["text"] for r in smoke]), np.array([not r["is_safe"] for r in smoke])
    held = chatterbot_turns(heldout=True)
    held_flagged = score([text for _, _, text in held]) >= cut
    languages = np.array([language for _, language, _ in held])
    result["chatterbot_heldout"] = {"fpr": round(float(held_flagged.mean()), 4), "fpr by language": {
        lang: round(float(held_flagged[languages == lang].mean()), 3) for lang in sorted(set(languages))}}
    result["own_cut_off"] = {**{f"fpr {n}": round(float((s >= cut).mean()), 4) for n, s in harmless.items()},
                             **{f"recall {n}": round(float((s >= cut).mean()), 4) for n, s in harmful.items()},
                             "smoke harmful flagged": int((smoke_scores[smoke_unsafe] >= cut).sum()),
                             "smoke harmless flagged": int((smoke_scores[~smoke_unsafe] >= cut).sum())}
    cuts = np.unique(np.concatenate([*harmless.values(), *harmful.values()]))
    fpr_ok = lowest_cut_keeping_fpr(harmless, cuts)
    result["every_harmless_fpr_at_most_0.05"] = {"cut_off": round(float(fpr_ok), 4), **{
        f"recall {n}": round(float((s >= fpr_ok).mean()), 4) for n, s in harmful.items()}}
    np_cut = cut_at_fpr(y[original], oof[original], w[original], 0.05)  # the alternative cut-off rule, for comparison
    result["cut_flagging_5pct_of_safe_training"] = {"cut_off": round(np_cut, 4), **{
        f"fpr {n}": round(float((s >= np_cut).mean()), 4) for n, s in harmless.items()}, **{
        f"recall {n}": round(float((s >= np_cut).mean()), 4) for n, s in harmful.items()}}
    result["endings"] = endings_measured(score, {"own cut-off": cut, "every harmless FPR <= 0.05": fpr_ok})
    result["seconds"] = round(time.time() - start)
    print(json.dumps(result), flush=True)
    return result


def endings_measured(score, cuts: dict[str, float]) -> dict:
    """Each harmless and harmful set, and HateCheck's held-out rows (both labels), in each ending form
    (:data:`ENDING_FORMS`), at each of ``cuts``: FPR and recall."""
    sets = [(f"fpr {n}", *messages_of(p), False) for n, p in HARMLESS]
    sets += [(f"recall {n}", *messages_of(p), True) for n, p, _ in HARMFUL]
    hatecheck, hateful = messages_of(MESSAGES / "hatecheck_heldout.jsonl")
    out: dict = {name: {} for name in cuts}
    for form, change in ENDING_FORMS.items():
        scores = {key: (score([change(t) for t in items]), unsafe, harmful) for key, items, unsafe, harmful in sets}
        hate_scores = score([change(t) for t in hatecheck])
        for name, cut in cuts.items():
            row = {key: round(float(((s[unsafe] if harmful else s) >= cut).mean()), 4)
                   for key, (s, unsafe, harmful) in scores.items()}
            row["fpr hatecheck_heldout"] = round(float((hate_scores[~hateful] >= cut).mean()), 4)
            row["recall hatecheck_heldout"] = round(float((hate_scores[hateful] >= cut).mean()), 4)
            out[name][form] = row
    return out


def _cell(values: dict, key: str) -> str:
    if key not in values:  # a result written before the smoke set was counted
        return "not run"
    return f"{values[key]:.3f}" if key.startswith(("fpr", "recall")) else f"{values[key]} / 20"


def markdown(results: list[dict]) -> str:
    keys = max((list(r["own_cut_off"]) for r in results), key=len)
    lines = ["# Message-side recipe variants of `default` (issue 20)", "",
             "`python benchmarks/message_recipes.py` (unsafe head of the message blocks alone, cut-off F1-best on",
             "out-of-fold training messages; see the script's docstring).", "",
             "| variant | cut-off | out-of-fold AUROC | out-of-fold recall at FPR 0.05 | pooled held-out AUROC | "
             + " | ".join(keys) + " |", "|---|---:|---:|---:|---:|" + "---:|" * len(keys)]
    for r in results:
        oof_recall = f"{r['oof_recall_at_fpr_0.05']:.4f}" if "oof_recall_at_fpr_0.05" in r else "not run"
        lines.append(f"| {r['variant']} | {r['cut_off']:.3f} | {r['oof_auroc']:.4f} | {oof_recall} | "
                     f"{r['pooled_heldout_auroc']:.4f} | "
                     + " | ".join(_cell(r["own_cut_off"], k) for k in keys) + " |")
    harmful = [k for k in results[0]["every_harmless_fpr_at_most_0.05"] if k != "cut_off"]
    lines += ["", "At the cut-off that keeps every harmless set at FPR <= 0.05 (chosen on the evaluation sets):", "",
              "| variant | cut-off | " + " | ".join(harmful) + " |", "|---|---:|" + "---:|" * len(harmful)]
    for r in results:
        at = r["every_harmless_fpr_at_most_0.05"]
        lines.append(f"| {r['variant']} | {at['cut_off']:.3f} | " + " | ".join(f"{at[k]:.3f}" for k in harmful) + " |")
    multilingual = [r for r in results if "chatterbot_heldout" in r]
    if multilingual:
        lines += ["", "Harmless messages in 28 languages (chatterbot-corpus's held-out part, 3,039 turns never trained on) at",
                  "each variant's own cut-off (variants measured since it was added): FPR, and the five highest languages:", "",
                  "| variant | FPR | highest languages |", "|---|---:|---|"]
        for r in multilingual:
            by = r["chatterbot_heldout"]["fpr by language"]
            top = ", ".join(f"{lang} {by[lang]:.2f}" for lang in sorted(by, key=by.get, reverse=True)[:5])
            lines.append(f"| {r['variant']} | {r['chatterbot_heldout']['fpr']:.3f} | {top} |")
    rule = [r for r in results if "cut_flagging_5pct_of_safe_training" in r]
    if rule:
        keys = [k for k in rule[0]["cut_flagging_5pct_of_safe_training"] if k != "cut_off"]
        lines += ["", "At the cut-off flagging 5% of the safe training messages' weight out of fold (an alternative to",
                  "the F1-best rule, chosen without the evaluation sets; variants measured since it was added):", "",
                  "| variant | cut-off | " + " | ".join(keys) + " |", "|---|---:|" + "---:|" * len(keys)]
        for r in rule:
            at = r["cut_flagging_5pct_of_safe_training"]
            lines.append(f"| {r['variant']} | {at['cut_off']:.3f} | " + " | ".join(f"{at[k]:.3f}" for k in keys) + " |")
    ending = [r for r in results if "endings" in r]
    if ending:
        cut_names = list(ending[0]["endings"])
        keys = list(ending[0]["endings"][cut_names[0]]["as typed"])
        lines += ["", "The same messages ending otherwise (final punctuation removed, a final \"?\" or \".\"; variants",
                  "measured since the seventh round), at the variant's own cut-off and at the one keeping every harmless",
                  "set at FPR <= 0.05 as typed (chosen on the evaluation sets); `worst` is the highest FPR or lowest recall",
                  "over the four forms:", "",
                  "| variant | cut-off | ending | " + " | ".join(keys) + " |", "|---|---|---|" + "---:|" * len(keys)]
        for r in ending:
            for cut_name in cut_names:
                forms = r["endings"][cut_name]
                for form, row in forms.items():
                    lines.append(f"| {r['variant']} | {cut_name} | {form} | "
                                 + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")
                worst = [max(f[k] for f in forms.values()) if k.startswith("fpr") else min(f[k] for f in forms.values())
                         for k in keys]
                lines.append(f"| {r['variant']} | {cut_name} | worst | " + " | ".join(f"{v:.3f}" for v in worst) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    measured = {name: measure(name) for name in args.variant}
    kept = kept_results("message_recipes", measured, key=lambda r: r["variant"])
    results = [kept[name] for name in VARIANTS if name in kept]
    write_results("message_recipes", results, markdown(results))


if __name__ == "__main__":
    main()
