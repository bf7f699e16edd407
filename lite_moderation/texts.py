"""What a moderator reads: single texts or (prompt, response) pairs, and the fields features are built from.

Kept apart from the feature extractors so the scoring path can read its input without importing
scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "FIELDS", "JOINT_SEPARATOR", "WORD_TOKEN_PATTERN", "block_settings", "block_specs", "field_text", "field_texts",
    "group_keys", "message_mask", "message_rows", "scored_items", "single_message", "split_fields",
]

#: Which text a feature block reads: the prompt, the response, both joined, or a field of one input shape
#: only: "pair_prompt" / "pair_response" those of a pair with both non-empty, "lone_prompt" the prompt of a
#: prompt alone (empty response), "lone_text" the text of a text alone (empty prompt); each is empty for
#: every other input. Shape blocks let one linear model treat a message on its own apart from the same words
#: inside a question-answer pair.
FIELDS = ("prompt", "response", "joint", "pair_prompt", "pair_response", "lone_prompt", "lone_text")

#: The longest n-gram a block may take, in words or characters, in training and in a model file alike: featurising a
#: text makes about n n-grams per word or character, each up to n long, so memory grows with n squared (the shipped
#: models use at most 5; a model file declaring 64 took many GB at the default --max-record-bytes).
MAX_NGRAM = 8

#: What joins prompt and response in the "joint" field (a token no real text produces).
JOINT_SEPARATOR = " \n qqaasep \n "


def split_fields(X: Sequence, require_text: bool = False) -> tuple[list[str], list[str]]:
    """Prompts and responses of X: a sequence of (prompt, response) pairs or of single texts, a numpy
    array of texts or of shape (n, 2) (n pairs), a pandas Series of texts, or a pandas DataFrame with
    ``prompt`` and ``response`` columns (or a ``text`` or ``prompt`` column of single texts).

    A single message has one shape: a text alone, ``("", text)``. A string, a prompt alone ``(prompt, "")``
    and a pair with one blank field all come out so, so a message gets one verdict however it arrives
    (see :func:`single_message`). A string, a mapping or another non-sequence is a TypeError.

    ``require_text`` (what the scoring entry points pass): an item with nothing to score, an empty or
    whitespace-only text or a pair whose prompt and response are both so, is a ValueError naming its
    index, the rule of the CLI, the server and data files. A pair with one blank field is a prompt alone
    or a text alone, and is scored.
    """
    items = _items(X)
    fast = _split_pairs(items, require_text)
    if fast is not None:
        return _messages_as_texts(*fast)
    prompts: list[str] = []
    responses: list[str] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            prompts.append("")
            responses.append(item)
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(s, str) for s in item):
            prompts.append(item[0])
            responses.append(item[1])
        else:
            raise TypeError(
                f"X[{i}] is a {type(item).__name__}: expected a string or a (prompt, response) pair of strings"
            )
        if require_text and _blank(prompts[-1]) and _blank(responses[-1]):
            what = "is empty or only whitespace" if isinstance(item, str) else (
                "has a prompt and a response both empty or only whitespace")
            raise ValueError(f"X[{i}] {what}: nothing to score")
    return _messages_as_texts(prompts, responses)


def single_message(prompt: str, response: str) -> str | None:
    """The text of an input that is one message (a prompt alone, a text alone, or a pair with one blank
    field), None for a pair. The one rule of what a single message is: scoring, training and cut-offs read it."""
    if _blank(prompt):
        return response
    return prompt if _blank(response) else None


def message_rows(prompts: Sequence[str]) -> np.ndarray:
    """(n,) bool: which rows of :func:`split_fields`' output are single messages (their prompt is empty)."""
    return np.fromiter(map(len, prompts), dtype=np.int64, count=len(prompts)) == 0


def scored_items(X: Sequence) -> tuple[list[tuple[str, str]], np.ndarray]:
    """X's items as the scorers read them (every single message a text alone) and which are single messages:
    parsed once, for a decision that needs both the scores and each item's shape."""
    prompts, responses = split_fields(X, require_text=True)
    return list(zip(prompts, responses)), message_rows(prompts)


def message_mask(X: Sequence) -> np.ndarray:
    """(n,) bool: which items of X are single messages (X as :func:`split_fields` takes it)."""
    return message_rows(split_fields(X)[0])


def _messages_as_texts(prompts: list[str], responses: list[str]) -> tuple[list[str], list[str]]:
    """Every single message as a text alone: ``(prompt, "")`` becomes ``("", prompt)``, a blank field becomes
    empty. Checked with C-level scans first, so the common case (pairs, or texts) costs no Python loop."""
    if not ("" in responses or any(map(str.isspace, responses)) or any(map(str.isspace, prompts))):
        return prompts, responses
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        text = single_message(prompt, response)
        if text is not None and (prompt or text is not response):
            prompts[i], responses[i] = "", text
    return prompts, responses


def _split_pairs(items: Sequence, require_text: bool) -> tuple[list[str], list[str]] | None:
    """The common case, a sequence of (prompt, response) tuples of strings none both blank, checked with C-level
    loops (20x faster than the item loop); None for anything else, which the item loop then checks."""
    if not isinstance(items, (list, tuple)) or not items or set(map(type, items)) != {tuple} \
            or set(map(len, items)) != {2}:
        return None
    prompts, responses = map(list, zip(*items))
    if set(map(type, prompts)) != {str} or set(map(type, responses)) != {str}:
        return None
    if require_text and ("" in responses or any(map(str.isspace, responses))) \
            and ("" in prompts or any(map(str.isspace, prompts))):
        return None  # maybe a row with nothing to score: the item loop finds and names it
    return prompts, responses


def _blank(text: str) -> bool:
    return not text or text.isspace()


_SEQUENCE_HINT = ("X must be a list of texts or of (prompt, response) pairs (or a numpy array, pandas Series or "
                  "DataFrame of them)")


def _items(X: object) -> Sequence:
    """The items of every accepted container, in order."""
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{_SEQUENCE_HINT}, not a single {'string' if isinstance(X, str) else 'bytes object'}")
    kind = type(X).__name__ if type(X).__module__.split(".")[0] == "pandas" else None
    if kind == "DataFrame":
        return _frame_items(X)
    if kind == "Series":
        return X.tolist()
    if type(X).__module__ == "numpy" and type(X).__name__ == "ndarray":
        return _array_items(X)
    if not isinstance(X, Sequence):
        raise TypeError(f"{_SEQUENCE_HINT}, not a {type(X).__name__}")
    return X


def _array_items(X) -> list:
    """A 1-d array holds texts (or pairs, as objects); an (n, 2) array holds n (prompt, response) pairs."""
    if X.ndim == 1:
        return X.tolist()
    if X.ndim == 2 and X.shape[1] == 2:
        return [tuple(row) for row in X.tolist()]
    raise TypeError(f"{_SEQUENCE_HINT}: a numpy array must be 1-d (texts) or (n, 2) (pairs), got shape {X.shape}")


def _frame_items(frame) -> list:
    """The rows of a DataFrame: prompt + response pairs, or single texts from a text or prompt column."""
    columns = list(frame.columns)
    if "prompt" in columns and "response" in columns:
        return list(zip(_column(frame, "prompt"), _column(frame, "response")))
    for name in ("text", "prompt"):
        if name in columns:
            return _column(frame, name)
    shown = ", ".join(map(repr, columns[:10])) + (" ..." if len(columns) > 10 else "")
    raise TypeError(f"a DataFrame needs 'prompt' and 'response' columns (or 'text'); it has {shown or 'none'}")


def _column(frame, name: str) -> list[str]:
    values = frame[name].tolist()
    for row, value in zip(frame.index, values):
        if not isinstance(value, str):
            raise TypeError(f"DataFrame row {row!r}, column {name!r}: expected a string, got {type(value).__name__} "
                            f"(fill or drop missing values first)")
    return values


def group_keys(X: Sequence) -> list[str]:
    """What keeps rows together in grouped folds: each item's prompt, or its text when it has no prompt."""
    prompts, responses = split_fields(X)
    return [p if p else r for p, r in zip(prompts, responses)]


def field_text(field: str, prompt: str, response: str) -> str:
    """The text one feature block reads of one input."""
    if field == "prompt":
        return prompt
    if field == "response":
        return response
    if field == "joint":
        return prompt + JOINT_SEPARATOR + response
    if field == "pair_prompt":
        return prompt if response else ""
    if field == "pair_response":
        return response if prompt else ""
    if field == "lone_prompt":
        return prompt if not response else ""
    if field == "lone_text":
        return response if not prompt else ""
    raise ValueError(f"unknown field {field!r}: expected one of {FIELDS}")


def field_texts(field: str, prompts: list[str], responses: list[str]) -> list[str]:
    """The texts one feature block reads."""
    if field == "prompt":
        return prompts
    if field == "response":
        return responses
    return [field_text(field, p, r) for p, r in zip(prompts, responses)]


def block_specs(word_fields: Sequence[str], char_fields: Sequence[str]) -> list[tuple[str, str]]:
    """The (field, analyzer) of each feature block, in column order: word blocks, then char_wb blocks."""
    for field in (*word_fields, *char_fields):
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r}: expected one of {FIELDS}")
    specs = [(f, "word") for f in word_fields] + [(f, "char_wb") for f in char_fields]
    if not specs:
        raise ValueError("QAVectorizer needs at least one word or char field")
    return specs


#: The scikit-learn word token pattern (its default), the one the fast scorer reproduces.
WORD_TOKEN_PATTERN = r"(?u)\b\w\w+\b"


def field_caps(max_features: int | dict[str, int | None] | None) -> dict[str, int | None]:
    """``max_features`` as {field: cap} ("*": every other block; None: no cap), checked: known fields, caps
    positive integers or None. Why per field: a block's size is its scoring cost and its share of the model
    file, and the blocks of a recipe need not cost alike (``fast``'s message block against its pair blocks)."""
    caps = dict(max_features) if isinstance(max_features, dict) else {"*": max_features}
    unknown = sorted(set(caps) - {"*", *FIELDS})
    if unknown:
        raise ValueError(f"max_features names unknown fields {unknown}: expected among {list(FIELDS)}")
    for field, cap in caps.items():
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 1):
            raise ValueError(f"max_features must be a positive integer or None (for {field!r}), got {cap!r}")
    return {field: None if cap is None else int(cap) for field, cap in caps.items()}


def block_cap(max_features: int | dict[str, int | None] | None, field: str | None) -> int | None:
    """The vocabulary cap of ``field``'s blocks under ``max_features`` (see :func:`field_caps`)."""
    caps = field_caps(max_features)
    return caps.get(field, caps.get("*")) if field is not None else caps.get("*")


def block_settings(params: dict, analyzer: str, field: str | None = None) -> dict:
    """Every parameter of the ``TfidfVectorizer`` of one block (analyzer "word" or "char_wb") of ``field``,
    spelled out, from the ``QAVectorizer`` parameters ``params``.

    The single source of a block's settings: ``QAVectorizer`` builds its blocks from it, and a saved model
    is rebuilt for scoring from it without importing scikit-learn.
    """
    ngram_range = params["word_ngram_range" if analyzer == "word" else "char_ngram_range"]
    return {
        "input": "content", "encoding": "utf-8", "decode_error": "strict", "strip_accents": None,
        "lowercase": True, "preprocessor": None, "tokenizer": None, "analyzer": analyzer, "stop_words": None,
        "token_pattern": WORD_TOKEN_PATTERN, "ngram_range": tuple(ngram_range), "max_df": 1.0,
        "min_df": params["min_df"], "max_features": block_cap(params["max_features"], field), "vocabulary": None, "binary": False,
        "dtype": params["dtype"], "norm": "l2", "use_idf": True, "smooth_idf": True,
        "sublinear_tf": params["sublinear_tf"],
    }


def field_factors(value: float | dict[str, float], name: str, minimum: float = 0.0,
                  minimum_allowed: bool = False) -> dict[str, float]:
    """A per-field recipe number (``char_weight``, ``nb_power``) as {field: number} ("*": every field), checked:
    known fields, finite numbers above ``minimum`` (or equal to it when ``minimum_allowed``)."""
    factors = dict(value) if isinstance(value, dict) else {"*": value}
    unknown = sorted(set(factors) - {"*", *FIELDS})
    if unknown:
        raise ValueError(f"{name} names unknown fields {unknown}: expected among {list(FIELDS)}")
    bound = f"{minimum:g} or above" if minimum_allowed else f"above {minimum:g}"
    for field, number in factors.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not np.isfinite(number) \
                or number < minimum or (number == minimum and not minimum_allowed):
            raise ValueError(f"{name} must be a finite number {bound} (for {field!r}), got {number!r}")
    return {field: float(number) for field, number in factors.items()}


def char_weights(char_weight: float | dict[str, float]) -> dict[str, float]:
    """``char_weight`` as {field: factor} ("*": every character block), checked: known fields, finite numbers
    above 0."""
    return field_factors(char_weight, "char_weight")


def nb_powers(nb_power: float | dict[str, float]) -> dict[str, float]:
    """``nb_power`` as {field: power} ("*": every block), checked: known fields, finite numbers, 0 or above."""
    return field_factors(nb_power, "nb_power", minimum_allowed=True)


def ngram_range(value: object, name: str) -> tuple[int, int]:
    """``value`` as an n-gram range (low, high), checked: two whole numbers 1 <= low <= high <= ``MAX_NGRAM``."""
    if isinstance(value, (list, tuple)) and len(value) == 2 \
            and all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in value) \
            and 1 <= value[0] <= value[1] <= MAX_NGRAM:
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be two whole numbers 1 <= low <= high <= {MAX_NGRAM}, got {value!r}")
