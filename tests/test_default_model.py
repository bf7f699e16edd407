"""The shipped model is reproducible: the documented command rebuilds it byte for byte from the shared data.

Also checks the honest (cross-validated) quality recorded in its card meets the project's floor.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import BEAVERTAILS_TEST

from lite_moderation.persistence import DEFAULT_MODEL_DIR


def test_documented_command_rebuilds_the_shipped_model_identically(tmp_path):
    card = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())["card"]
    command = card["recipe"]["command"].split()
    assert command[:2] == ["lite-moderation", "train"]
    args = [str(BEAVERTAILS_TEST) if a == BEAVERTAILS_TEST.name else str(tmp_path / "m") if a == "MODEL_DIR"
            else a for a in command[1:]]
    proc = subprocess.run([sys.executable, "-m", "lite_moderation", *args, "--quiet"], capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr
    for name in ("model.json", "vocabulary.json", "arrays.npz"):
        rebuilt = (tmp_path / "m" / name).read_bytes()
        assert rebuilt == (DEFAULT_MODEL_DIR / name).read_bytes(), f"{name} differs from the shipped model"

    cv = json.loads((tmp_path / "m" / "model.json").read_text())["card"]["metrics"]["cv"]
    assert cv["folds"] == 5 and cv["grouped_by"] == "prompt"
    assert cv["unsafe"]["f1"] >= 0.76
    assert cv["unsafe"]["auprc"] >= 0.85
    assert cv["categories"]["macro_f1"] >= 0.40


def test_shipped_model_is_small_enough_to_package():
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    assert size <= 10_000_000
