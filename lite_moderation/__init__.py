"""lite-moderation: TF-IDF + linear moderators for BeaverTails question-answer pairs, on CPU.

>>> import lite_moderation as lm
>>> model = lm.load()                      # the shipped default model, offline
>>> model.moderate(["some text", ("a question", "an answer")])
"""

__version__ = "0.1.0"

from .data import DataError, Dataset, Record, load_dataset, read_records
from .evaluation import cross_validate, evaluate
from .features import QAVectorizer
from .model import ModerationClassifier
from .persistence import ModelFormatError, load, read_card, save
from .taxonomy import CATEGORIES, LABELS, UNSAFE
from .training import default_estimator, train

__all__ = [
    "CATEGORIES", "LABELS", "UNSAFE", "DataError", "Dataset", "ModelFormatError", "ModerationClassifier",
    "QAVectorizer", "Record", "cross_validate", "default_estimator", "evaluate", "load", "load_dataset",
    "read_card", "read_records", "save", "train",
]
