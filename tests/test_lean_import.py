"""Scoring-only processes never import scikit-learn: the CLI's score, the server and ``load_scorer``.

Why it matters: importing scikit-learn costs about 130 MB of memory and a second of start-up, which is
most of an edge server's footprint; the fast scorer needs only numpy and scipy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

import lite_moderation as lm
from lite_moderation.data import load_dataset
from lite_moderation.texts import block_settings

BEAVERTAILS = Path(__file__).parent.parent.parent / "shared" / "data" / "beavertails" / "30k_test.jsonl"

#: Prints the scikit-learn modules a snippet left imported, as JSON on the last stdout line.
_REPORT = "\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn')))\n"


def _sklearn_modules_after(snippet: str, tmp_path: Path) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", snippet + _REPORT], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_score_of_a_file_and_a_pair_imports_no_sklearn(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"prompt": "a question", "response": "an answer"}) + "\nnot json\n")
    snippet = (
        "from lite_moderation.cli import main\n"
        "for args in (['score', '--input', 'in.jsonl', '--output', 'out.jsonl', '--quiet'],\n"
        "             ['score', '--prompt', 'a question', '--response', 'an answer']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, exit.code\n"
    )
    assert _sklearn_modules_after(snippet, tmp_path) == []
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1  # the bad line is reported, not scored


def test_server_app_imports_no_sklearn(tmp_path: Path) -> None:
    snippet = (
        "from lite_moderation.server import make_app\n"
        "app = make_app()\n"
        "assert app.model.moderate(['some text'])[0]['unsafe_score'] >= 0\n"
    )
    assert _sklearn_modules_after(snippet, tmp_path) == []


def test_training_still_imports_sklearn(tmp_path: Path) -> None:
    """The check above can fail: building an estimator does import scikit-learn."""
    assert _sklearn_modules_after("import lite_moderation as lm\nlm.default_estimator()\n", tmp_path) != []


@pytest.fixture(scope="module")
def beavertails_pairs() -> list:
    return load_dataset(BEAVERTAILS).pairs


def test_load_scorer_scores_exactly_like_load(beavertails_pairs) -> None:
    scorer = lm.load_scorer()
    model = lm.load()
    np.testing.assert_array_equal(scorer.predict_proba(beavertails_pairs), model.predict_proba(beavertails_pairs))
    np.testing.assert_array_equal(scorer.thresholds_, model.thresholds_)
    assert scorer.card_ == model.card_ and scorer.size_bytes_ == model.size_bytes_
    assert scorer.exact_analyzers == ["fast"] * len(scorer.blocks)


def test_block_settings_spell_out_every_tfidf_parameter() -> None:
    """A saved model is rebuilt from block_settings alone; a parameter it missed would be silently default."""
    params = {"word_ngram_range": (1, 2), "char_ngram_range": (2, 5), "min_df": 2, "max_features": None,
              "sublinear_tf": True, "dtype": np.float32}
    settings = block_settings(params, "char_wb")
    assert set(settings) == set(TfidfVectorizer().get_params())
    assert TfidfVectorizer(**settings).get_params() == settings


def test_every_public_name_resolves() -> None:
    for name in lm.__all__:
        assert getattr(lm, name) is not None
    assert set(lm.__all__) <= set(dir(lm))
    assert not {"Any", "TYPE_CHECKING", "importlib", "annotations"} & set(dir(lm))  # public names only
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lm.nope  # noqa: B018
