"""The BeaverTails harm taxonomy: 14 category keys, their short names, and the binary "unsafe" head.

The one place these names are written down; models carry their own labels (:mod:`lite_moderation.labels`),
and the BeaverTails models are those whose labels happen to be these.

Keys are exactly the ones in the BeaverTails ``category`` field, so records round-trip unchanged.
"""

from __future__ import annotations

import numpy as np

from .labels import LabelSet

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "animal_abuse": "Cruelty to or harm of animals.",
    "child_abuse": "Physical, sexual or emotional abuse or exploitation of minors.",
    "controversial_topics,politics": "Divisive political or social topics handled in a one-sided or inflammatory way.",
    "discrimination,stereotype,injustice": "Unfair treatment or stereotyping of people by group.",
    "drug_abuse,weapons,banned_substance": "Misuse of drugs, weapons or banned substances.",
    "financial_crime,property_crime,theft": "Fraud, theft, property crime and other financial wrongdoing.",
    "hate_speech,offensive_language": "Hateful, demeaning or offensive language.",
    "misinformation_regarding_ethics,laws_and_safety": "False or misleading claims about ethics, law or safety.",
    "non_violent_unethical_behavior": "Deception, manipulation and other unethical acts without violence.",
    "privacy_violation": "Exposing or obtaining personal information without consent.",
    "self_harm": "Encouraging or instructing self-injury or suicide.",
    "sexually_explicit,adult_content": "Sexually explicit or adult material.",
    "terrorism,organized_crime": "Support for terrorism or organised crime.",
    "violence,aiding_and_abetting,incitement": "Violence, physical harm, or helping or inciting others to commit crimes.",
}

#: The 14 category keys, in the order of the BeaverTails data.
CATEGORIES: tuple[str, ...] = tuple(CATEGORY_DESCRIPTIONS)

#: Short names, for tables and plots (the first word of each key).
SHORT_NAMES: dict[str, str] = {key: key.split(",")[0] for key in CATEGORIES}

#: The binary head: unsafe = not is_safe (= any category flagged in BeaverTails).
UNSAFE = "unsafe"

#: Every label a model predicts, in column order: the 14 categories, then "unsafe".
LABELS: tuple[str, ...] = (*CATEGORIES, UNSAFE)


#: The BeaverTails label set: what the shipped models predict (other models carry their own: ``labels.LabelSet``).
BEAVERTAILS = LabelSet(CATEGORIES, UNSAFE, CATEGORY_DESCRIPTIONS)


def short_name(label: str) -> str:
    """Short display name of a BeaverTails label ("unsafe" stays "unsafe"; other names stay as they are)."""
    return SHORT_NAMES.get(label, label)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Probabilities from log-odds; one formula for every scoring path, so they agree to the last bit."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def decide(proba: np.ndarray, cut_offs: np.ndarray, labels: LabelSet | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``flagged`` and ``categories`` of probabilities at cut-offs, under ``labels`` (default BeaverTails'):
    see :meth:`LabelSet.decide`."""
    return (labels or BEAVERTAILS).decide(proba, cut_offs)


def results_from_proba(proba: np.ndarray, cut_offs: np.ndarray, labels: LabelSet | None = None) -> list[dict]:
    """The JSON verdict of each row of probabilities at (k,) or per-row (n, k) cut-offs
    (:func:`lite_moderation.thresholds.cut_offs`), under ``labels`` (default BeaverTails')."""
    return (labels or BEAVERTAILS).results(proba, cut_offs)


# ------------------------------------------------------------------------------------- OpenAI's categories

_VIOLENCE = "violence,aiding_and_abetting,incitement"
_HATE = "hate_speech,offensive_language"

#: OpenAI moderation's 13 categories, each filled from BeaverTails categories, so code written for OpenAI reads
#: real values (not None): ``("any", keys)`` is flagged when any of ``keys`` is (score: the highest), ``("all",
#: keys)`` when every one is (score: the lowest; a threat is hate *and* violence). BeaverTails does not tell apart
#: OpenAI's finer kinds (graphic violence, self-harm intent or instructions): those take their parent's verdict, a
#: superset. Documented in the README ("Serve").
OPENAI_CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "harassment": ("any", (_HATE,)),
    "harassment/threatening": ("all", (_HATE, _VIOLENCE)),
    "hate": ("any", (_HATE, "discrimination,stereotype,injustice")),
    "hate/threatening": ("all", (_HATE, _VIOLENCE)),
    "illicit": ("any", ("financial_crime,property_crime,theft", "drug_abuse,weapons,banned_substance",
                        "terrorism,organized_crime", _VIOLENCE)),
    "illicit/violent": ("any", ("terrorism,organized_crime", _VIOLENCE)),
    "self-harm": ("any", ("self_harm",)),
    "self-harm/intent": ("any", ("self_harm",)),
    "self-harm/instructions": ("any", ("self_harm",)),
    "sexual": ("any", ("sexually_explicit,adult_content",)),
    "sexual/minors": ("any", ("child_abuse",)),
    "violence": ("any", (_VIOLENCE, "terrorism,organized_crime", "animal_abuse")),
    "violence/graphic": ("any", (_VIOLENCE,)),
}


#: The BeaverTails categories that fill some OpenAI category by themselves (an "any" rule); the other four
#: (controversial topics, misinformation, non-violent unethical behaviour, privacy violation) have no counterpart.
OPENAI_MAPPED = tuple(c for c in CATEGORIES if any(rule == "any" and c in keys for rule, keys in OPENAI_CATEGORIES.values()))


def openai_categories(categories: dict[str, bool], scores: dict[str, float]) -> tuple[dict, dict]:
    """OpenAI's ``categories`` and ``category_scores`` of one BeaverTails verdict (see :data:`OPENAI_CATEGORIES`).

    OpenAI's rule holds in its shape too: a verdict naming only categories without an OpenAI counterpart (a flagged
    one names at least one) also names, for OpenAI's fields, its most probable category that has one. Else code
    written for OpenAI would read a flagged result with no category."""
    if any(categories.values()) and not any(categories[c] for c in OPENAI_MAPPED):
        categories = {**categories, max(OPENAI_MAPPED, key=scores.__getitem__): True}
    flags, values = {}, {}
    for name, (rule, keys) in OPENAI_CATEGORIES.items():
        combine, pick = (all, min) if rule == "all" else (any, max)
        flags[name] = combine(categories[k] for k in keys)
        values[name] = pick(scores[k] for k in keys)
    return flags, values
