"""lite-moderation: TF-IDF + linear moderators for BeaverTails question-answer pairs, on CPU."""

__version__ = "0.1.0"
