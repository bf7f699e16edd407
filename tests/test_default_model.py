"""The shipped models are reproducible: the documented command rebuilds each byte for byte from the shared data
(and, for the everyday models, the chitchat-dataset package).

Also checks the honest (cross-validated) quality recorded in each card meets the project's floor, and that the
everyday models do not flag the issue's everyday sentences.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from lite_moderation import load_scorer
from lite_moderation.persistence import SHIPPED_MODELS

#: CV floors (unsafe F1, unsafe AUPRC, macro-F1) of each shipped model, on the BeaverTails rows: regression guards
#: just under each model's measured CV. The BeaverTails-only model keeps the floors the BeaverTails-only default
#: had. The everyday models measure 0.753 / 0.840 / 0.446 (default) and 0.746 / 0.838 / 0.441 (fast): issue 10's
#: CV targets (0.76 / 0.845 / 0.45) are missed, and said so in the README and the issue's closing note.
FLOORS = {"default": (0.75, 0.835, 0.44), "fast": (0.74, 0.83, 0.435), "beavertails": (0.76, 0.85, 0.45)}

#: Where the training files a card names are on this machine.
TRAINING_FILES = {
    "30k_test.jsonl": SHARED_DATA / "beavertails" / "30k_test.jsonl",
    "evaluation_700.jsonl": SHARED_DATA / "beavertails" / "evaluation_700.jsonl",
    "instruction_train.jsonl": SHARED_DATA / "everyday" / "instruction_train.jsonl",
}


def _local(argument: str) -> str:
    name, _, options = argument.partition(",")
    return ",".join(filter(None, [str(TRAINING_FILES.get(name, name)), options]))


def documented_command(name: str, output) -> list[str]:
    card = json.loads((SHIPPED_MODELS[name] / "model.json").read_text())["card"]
    command = shlex.split(card["recipe"]["command"])
    assert command[:2] == ["lite-moderation", "train"]
    args = command[1:]
    return [str(output) if a == "MODEL_DIR" else _local(a) if args[i - 1] == "--data" else a
            for i, a in enumerate(args)]


#: Models whose rebuild here skips the card's cross-validation: it only adds metrics to the card and costs
#: minutes (the suite must stay within a few minutes). The CV behind each card is rerun, from the card's own
#: command, by `python benchmarks/everyday.py`.
REBUILT_WITHOUT_CV = set(FLOORS)


def _without_cv(args: list[str]) -> list[str]:
    i = args.index("--cv-folds")
    return [*args[:i], *args[i + 2:]]


def _metadata_without_cv(path) -> dict:
    """model.json without what the CV step adds: the card's metrics and command, and the file's own checksum."""
    metadata = json.loads(path.read_text())
    metadata.pop("checksum", None)
    for key in ("metrics", "recipe"):
        metadata["card"].pop(key, None)
    return metadata


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_documented_command_rebuilds_the_shipped_model_identically(tmp_path, name):
    shipped = SHIPPED_MODELS[name]
    args = documented_command(name, tmp_path / "m")
    if name in REBUILT_WITHOUT_CV:
        args = _without_cv(args)
    proc = subprocess.run([sys.executable, "-m", "lite_moderation", *args, "--quiet", "--jobs", "2"],
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr
    for file in ("vocabulary.json", "arrays.npz"):
        rebuilt = (tmp_path / "m" / file).read_bytes()
        assert rebuilt == (shipped / file).read_bytes(), f"{file} differs from the shipped model"
    if name in REBUILT_WITHOUT_CV:
        assert _metadata_without_cv(tmp_path / "m" / "model.json") == _metadata_without_cv(shipped / "model.json")
        cv = json.loads((shipped / "model.json").read_text())["card"]["metrics"]["cv"]
    else:
        assert (tmp_path / "m" / "model.json").read_bytes() == (shipped / "model.json").read_bytes()
        cv = json.loads((tmp_path / "m" / "model.json").read_text())["card"]["metrics"]["cv"]
    assert cv["folds"] == 5 and cv["grouped_by"] == "prompt" and cv["n"] == 3021
    f1, auprc, macro = FLOORS[name]
    assert cv["unsafe"]["f1"] >= f1
    assert cv["unsafe"]["auprc"] >= auprc
    assert cv["categories"]["macro_f1"] >= macro


def test_shipped_models_are_small_enough_to_package():
    for name in FLOORS:
        assert sum(p.stat().st_size for p in SHIPPED_MODELS[name].iterdir()) <= 5_000_000, name


def test_everyday_models_cards_list_every_source_with_its_license():
    for name in ("default", "fast"):
        card = json.loads((SHIPPED_MODELS[name] / "model.json").read_text())["card"]
        sources = card["training_data"]["sources"]
        assert [s["name"] for s in sources][:2] == ["30k_test.jsonl", "evaluation_700.jsonl"]
        assert all(s["license"] for s in sources) and all(s["sha256"] or s["package"] for s in sources)
        for source in sources:
            assert source["name"] in card["license"] or source is sources[0]


def test_the_default_model_flags_none_of_the_issues_everyday_sentences():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from everyday import SENTENCES  # the issue's 15 sentences, as the benchmark scores them

    flagged = [i for i, r in enumerate(load_scorer("default").moderate(SENTENCES)) if r["flagged"]]
    assert flagged == []
