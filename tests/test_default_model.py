"""The shipped models are reproducible: the documented command rebuilds each byte for byte from the shared data.

Also checks the honest (cross-validated) quality recorded in each card meets the project's floor.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import BEAVERTAILS_TEST

from lite_moderation.persistence import DEFAULT_MODEL_DIR, SHIPPED_MODELS

#: CV floors (unsafe F1, unsafe AUPRC, macro-F1) of each shipped model.
FLOORS = {"default": (0.76, 0.85, 0.40), "fast": (0.74, 0.82, 0.40)}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_documented_command_rebuilds_the_shipped_model_identically(tmp_path, name):
    shipped = SHIPPED_MODELS[name]
    card = json.loads((shipped / "model.json").read_text())["card"]
    command = card["recipe"]["command"].split()
    assert command[:2] == ["lite-moderation", "train"]
    args = [str(BEAVERTAILS_TEST) if a == BEAVERTAILS_TEST.name else str(tmp_path / "m") if a == "MODEL_DIR"
            else a for a in command[1:]]
    proc = subprocess.run([sys.executable, "-m", "lite_moderation", *args, "--quiet"], capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr
    for file in ("model.json", "vocabulary.json", "arrays.npz"):
        rebuilt = (tmp_path / "m" / file).read_bytes()
        assert rebuilt == (shipped / file).read_bytes(), f"{file} differs from the shipped model"

    cv = json.loads((tmp_path / "m" / "model.json").read_text())["card"]["metrics"]["cv"]
    assert cv["folds"] == 5 and cv["grouped_by"] == "prompt"
    f1, auprc, macro = FLOORS[name]
    assert cv["unsafe"]["f1"] >= f1
    assert cv["unsafe"]["auprc"] >= auprc
    assert cv["categories"]["macro_f1"] >= macro


def test_shipped_models_are_small_enough_to_package():
    for directory in (DEFAULT_MODEL_DIR, SHIPPED_MODELS["fast"]):
        assert sum(p.stat().st_size for p in directory.iterdir()) <= 5_000_000, directory
