"""A model's labels: its category heads and the one binary head that decides ``flagged``, as data.

Every model predicts ``len(names)`` columns: its categories first, then its *flag head* (the last column).
The rule a verdict follows is the same for every label set (:meth:`LabelSet.decide`): an item is flagged when
the flag head reaches its cut-off; categories are named only on flagged items, and a flagged item names at
least one when the model has categories. Where the flag head comes from:

- BeaverTails models: ``unsafe`` (not ``is_safe``), trained on its own labels;
- a binary target alone (an ``is_safe`` column, or one boolean column): that column is the flag head, and the
  model has no categories;
- categories without a binary column (one class per row with a safe class, or several boolean columns): the
  flag head ``unsafe`` is derived from them (a row is unsafe when any category is set, or its class is not
  the safe class), and trained and tuned like any head.

Which of these a list of boolean columns is (the CLI's ``--label-columns``, ``labels=`` in Python) is decided in
one place, :func:`label_set_of_columns`: an ``is_safe`` column is the flag head ``unsafe`` (negated: a row is
unsafe when it is not safe, or when any category is set), one other column alone is a binary target of that name,
and any other columns are categories.
Why one binary head rather than "any category at its cut-off": one score gets one tuned cut-off, named
operating points (default/strict) and its own AUROC, and false flags do not compound over k cut-offs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DEFAULT_FLAG", "IS_SAFE", "LabelSet", "label_set_of", "label_set_of_columns", "label_state"]

#: The name of a derived (or is_safe) flag head; the JSON verdict's ``unsafe_score`` is this head's score.
DEFAULT_FLAG = "unsafe"
#: A target column of this name (that is not one of the set's heads) holds the flag head negated: 1 means safe.
IS_SAFE = "is_safe"

_MAX_NAME = 200


@dataclass(frozen=True)
class LabelSet:
    """Category names (any number, possibly none), the flag head's name, and optional descriptions."""

    categories: tuple[str, ...]
    flag: str = DEFAULT_FLAG
    descriptions: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "descriptions", dict(self.descriptions or {}))
        if self.flag in self.categories:
            raise ValueError(f"a label is named {self.flag!r}, the name of the flag head (flagged when any label "
                             f"is)")
        problem = check_label_names(self.names)
        if problem:
            raise ValueError(problem)
        unknown = sorted(set(self.descriptions) - set(self.names))
        if unknown:
            raise ValueError(f"descriptions name labels the set does not have: {unknown[:3]}")

    @classmethod
    def from_names(cls, names: Sequence[str], descriptions: Mapping[str, str] | None = None) -> LabelSet:
        """The set whose column order is ``names`` (the last one is the flag head), e.g. a model's ``labels_``."""
        names = list(names)
        if not names:
            raise ValueError("a label set needs at least its flag head")
        if descriptions is None and tuple(names) == beavertails().names:
            return beavertails()
        return cls(tuple(names[:-1]), names[-1], descriptions or {})

    @property
    def names(self) -> tuple[str, ...]:
        """Every head in column order: the categories, then the flag head."""
        return (*self.categories, self.flag)

    def __len__(self) -> int:
        return len(self.categories) + 1

    def short_name(self, label: str) -> str:
        """Display name: BeaverTails' keys shortened to their first word, any other name as it is."""
        from .taxonomy import SHORT_NAMES

        return SHORT_NAMES.get(label, label) if self.is_beavertails else label

    @property
    def is_beavertails(self) -> bool:
        return self.names == beavertails().names

    def columns_of(self, width: int, names: Sequence[str] | None = None) -> tuple[str, ...]:
        """The head each of a target's ``width`` columns holds: the ``names`` the columns were given (one more
        column than names of categories is the flag head), else every head, or the categories alone (the flag head
        then derived). A name may be ``is_safe``: the flag head negated."""
        if names is not None:
            names = tuple(names)
            if width == len(names) + 1 and IS_SAFE not in names and self.categories:
                return (*names, self.flag)
            return names
        if width == len(self):
            return self.names
        return self.categories if width == len(self.categories) and self.categories else self.names

    def heads_of(self, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each target column's head (its index in :attr:`names`) and whether it holds the head negated
        (``is_safe``); a ValueError for columns that are not this set's heads, repeat one, or leave a category out."""
        columns = tuple(columns)
        index = {name: j for j, name in enumerate(self.names)}
        negated = [name == IS_SAFE and name not in index for name in columns]
        heads = [len(self) - 1 if neg else index.get(name, -1) for name, neg in zip(columns, negated)]
        missing = [c for c in self.categories if c not in columns]
        if -1 in heads or len(set(heads)) != len(heads) or missing:
            raise ValueError(f"target columns {list(columns)[:6]} are not the heads of labels {list(self.names)[:6]}"
                             f"{' ...' if len(self) > 6 else ''}: each names a head once (or is_safe, the flag head "
                             f"negated), and every category has one")
        return np.array(heads, dtype=np.intp), np.array(negated, dtype=bool)

    def matrix(self, y: object, columns: Sequence[str] | None = None) -> np.ndarray:
        """(n, len(self)) bool targets from ``y``, whose columns hold the heads ``columns`` (default: by its width,
        see :meth:`columns_of`): (n, len(self)) labels, or (n, categories) ones (the flag head is then derived: any
        category set), or (n,) / (n, 1) for a set without categories. An ``is_safe`` column gives the flag head
        negated, or-ed with the categories (a row is unsafe when it is not safe or any category is set)."""
        Y = np.asarray(y)
        if Y.ndim == 1:
            Y = Y[:, None]
        width = Y.shape[1] if Y.ndim == 2 else -1
        columns = self.columns_of(width) if columns is None else tuple(columns)
        if Y.ndim != 2 or width != len(columns) or not _whole_set(self, columns):
            raise ValueError(f"y must have shape {self._shapes(columns)} for labels {list(self.names)[:6]}"
                             f"{' ...' if len(self) > 6 else ''}, got {Y.shape}; pass labels= to name other columns")
        if Y.dtype.kind not in "biuf" or not np.isin(Y, (0, 1)).all():
            raise ValueError("y must hold booleans or 0/1 values")
        heads, negated = self.heads_of(columns)
        Y = Y.astype(bool) ^ negated
        out = np.zeros((len(Y), len(self)), dtype=bool)
        out[:, heads] = Y
        flag = len(self) - 1
        if flag not in heads[~negated]:  # derived: any category, or-ed with a negated is_safe column
            out[:, flag] = out[:, :flag].any(axis=1) | (Y[:, negated].any(axis=1) if negated.any() else False)
        return out

    def _shapes(self, columns: tuple[str, ...]) -> str:
        """The target shapes this set takes, for an error message."""
        widths = sorted({len(columns), len(self), len(self.categories) or len(self)})
        return " or ".join(f"(n, {k})" for k in widths) + (" or (n,)" if 1 in widths else "")

    def decide(self, proba: np.ndarray, cut_offs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``flagged`` (n,) and ``categories`` (n, k) of (n, k+1) probabilities at (k+1,) or (n, k+1) cut-offs.

        OpenAI's rule: flagged when the flag head reaches its cut-off; a category is reported only for a flagged
        item, and a flagged item names at least one: those at their cut-off, else the one closest to it.
        A score that is not a number is refused (a NaN is never flagged, and is not JSON): model files are checked
        at load so none gives one, and this keeps any that slips through from failing open.
        """
        if not np.isfinite(proba).all():
            raise ValueError("the model gave a score that is not a number (NaN or infinite): the model is damaged; "
                             "retrain or reinstall it")
        n_cat = len(self.categories)
        cut_offs = np.broadcast_to(cut_offs, proba.shape)
        flagged = proba[:, -1] >= cut_offs[:, -1]
        categories = (proba[:, :n_cat] >= cut_offs[:, :n_cat]) & flagged[:, None]
        unnamed = np.flatnonzero(flagged & ~categories.any(axis=1)) if n_cat else ()
        if len(unnamed):
            margin = _log_odds(proba[unnamed, :n_cat]) - _log_odds(cut_offs[unnamed, :n_cat])
            categories[unnamed, np.argmax(margin, axis=1)] = True
        return flagged, categories

    def results(self, proba: np.ndarray, cut_offs: np.ndarray) -> list[dict]:
        """The JSON verdict of each row: ``flagged``, ``unsafe_score`` (the flag head's score), ``categories``
        and ``category_scores`` under the model's own category names."""
        flagged, categories = self.decide(proba, cut_offs)
        names = self.categories
        return [
            {
                "flagged": bool(flag),
                "unsafe_score": float(row[-1]),
                "categories": dict(zip(names, map(bool, flag_row))),
                "category_scores": dict(zip(names, map(float, row[:-1]))),
            }
            for row, flag, flag_row in zip(proba, flagged, categories)
        ]

    def describe(self) -> dict:
        """What ``info``, the card and ``/v1/models`` show: names, flag head, descriptions."""
        return {"categories": list(self.categories), "flag": self.flag,
                "descriptions": {k: self.descriptions[k] for k in self.names if k in self.descriptions}}


#: The two states of a named label in words (:func:`label_state`): at its cut-off, or the nearest one, named
#: below it. The views that draw a state (the HTML report's bars) key their looks by these.
FLAGGED, NEAREST = "flagged", "nearest: named, below its cut-off"


def label_state(named: bool, score: float, cut_off: float) -> str:
    """A label's state in a verdict, in words for people. A flagged item names its categories at their cut-off,
    else the nearest one (:meth:`LabelSet.decide`): that one is named, but below its cut-off, so not "flagged"."""
    if not named:
        return "not flagged"
    return FLAGGED if score >= cut_off else NEAREST


def check_label_names(names: Sequence[object]) -> str | None:
    """Why ``names`` cannot be a model's labels (None when they can): non-empty distinct strings, short enough
    for a table, without control characters."""
    for name in names:
        if not isinstance(name, str) or not name.strip():
            return f"label names must be non-empty strings, got {name!r}"
        if len(name) > _MAX_NAME or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
            return f"label name {name[:40]!r}... is longer than {_MAX_NAME} characters or holds control characters"
    seen: set[str] = set()
    repeated = [n for n in names if n in seen or seen.add(n)]
    if repeated:
        return f"label names repeat: {repeated[:3]}"
    return None


def label_set_of_columns(names: Sequence[str]) -> LabelSet:
    """The label set of boolean target columns ``names``: the one rule of the CLI's ``--label-columns`` and of
    ``labels=`` in Python. An ``is_safe`` column is the flag head ``unsafe`` (its negation); one other column
    alone is a binary target of that name; any other columns are categories (``unsafe`` derived from them)."""
    names = [names] if isinstance(names, str) else list(names)
    problem = check_label_names(names) if names else "labels must name at least one column"
    if problem:
        raise ValueError(problem)
    categories = tuple(name for name in names if name != IS_SAFE)
    if len(categories) == 1 and IS_SAFE not in names:
        return LabelSet((), categories[0])
    return LabelSet(categories)


def _whole_set(labels: LabelSet, columns: tuple[str, ...]) -> bool:
    """Whether target ``columns`` hold heads of ``labels`` (see :meth:`LabelSet.heads_of`)."""
    try:
        labels.heads_of(columns)
    except ValueError:
        return False
    return True


def beavertails() -> LabelSet:
    """The BeaverTails set: 14 categories, then ``unsafe`` (see :mod:`lite_moderation.taxonomy`)."""
    from .taxonomy import BEAVERTAILS

    return BEAVERTAILS


def label_set_of(model: object) -> LabelSet:
    """A fitted model's (or scorer's) label set: its ``label_set_``, else one built from ``labels_``."""
    found = getattr(model, "label_set_", None)
    if isinstance(found, LabelSet):
        return found
    names = getattr(model, "labels_", None)
    if names is None:
        return beavertails()
    return LabelSet.from_names(names)


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)
