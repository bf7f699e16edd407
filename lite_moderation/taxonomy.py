"""The BeaverTails harm taxonomy: 14 category keys, their short names, and the binary "unsafe" head.

Keys are exactly the ones in the BeaverTails ``category`` field, so records round-trip unchanged.
"""

from __future__ import annotations

import numpy as np

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


def short_name(label: str) -> str:
    """Short display name of a label ("unsafe" stays "unsafe")."""
    return SHORT_NAMES.get(label, label)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Probabilities from log-odds; one formula for every scoring path, so they agree to the last bit."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def decide(proba: np.ndarray, cut_offs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``flagged`` (n,) and ``categories`` (n, 14) of (n, 15) probabilities at (15,) or (n, 15) cut-offs.

    The one rule, OpenAI's: an item is flagged when its unsafe score reaches its cut-off; a category is reported
    only for a flagged item, and a flagged item names at least one: those at their cut-off, else the one
    closest to it (largest log-odds margin).
    """
    n_cat = len(CATEGORIES)
    cut_offs = np.broadcast_to(cut_offs, proba.shape)
    flagged = proba[:, -1] >= cut_offs[:, -1]
    categories = (proba[:, :n_cat] >= cut_offs[:, :n_cat]) & flagged[:, None]
    unnamed = np.flatnonzero(flagged & ~categories.any(axis=1))
    if len(unnamed):
        margin = _log_odds(proba[unnamed, :n_cat]) - _log_odds(cut_offs[unnamed, :n_cat])
        categories[unnamed, np.argmax(margin, axis=1)] = True
    return flagged, categories


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def results_from_proba(proba: np.ndarray, cut_offs: np.ndarray) -> list[dict]:
    """The JSON verdict of each row of (n, 15) probabilities at (15,) or per-row (n, 15) cut-offs
    (:func:`lite_moderation.thresholds.cut_offs`)."""
    flagged, categories = decide(proba, cut_offs)
    return [
        {
            "flagged": bool(flag),
            "unsafe_score": float(row[-1]),
            "categories": dict(zip(CATEGORIES, map(bool, flag_row))),
            "category_scores": dict(zip(CATEGORIES, map(float, row[:-1]))),
        }
        for row, flag, flag_row in zip(proba, flagged, categories)
    ]
