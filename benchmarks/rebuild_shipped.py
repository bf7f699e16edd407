"""Rebuild shipped models in place from the command recorded in each card (the data found in ../shared/data).

    python benchmarks/rebuild_shipped.py [NAME ...]      # default: every shipped model

The same command the rebuild test reruns (tests/test_default_model.py), with the card's CV step kept, so the
card's metrics are measured again. Run it after a change that moves a model by design, and say why in the commit.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MODELS = ROOT / "lite_moderation" / "models"


def local_path(name: str) -> str:
    """Where a training file a card names (by file name) is on this machine; ``pkg:`` sources stay as they are."""
    if name.startswith("pkg:"):
        return name
    found = sorted(SHARED_DATA.glob(f"*/{name}"))
    if len(found) != 1:
        raise SystemExit(f"{name}: expected one file of that name under {SHARED_DATA}, found {len(found)}")
    return str(found[0])


def documented_arguments(card: dict, output: Path) -> list[str]:
    """The card's `lite-moderation train ...` command with local data paths and ``output`` for MODEL_DIR."""
    command = shlex.split(card["recipe"]["command"])
    if command[:2] != ["lite-moderation", "train"]:
        raise SystemExit(f"not a train command: {card['recipe']['command']}")
    args = command[1:]
    result = []
    for i, arg in enumerate(args):
        if arg == "MODEL_DIR":
            arg = str(output)
        elif args[i - 1] == "--data":
            name, _, options = arg.partition(",")
            arg = ",".join(filter(None, [local_path(name), options]))
        result.append(arg)
    return result


def rebuild(name: str) -> None:
    card = json.loads((MODELS / name / "model.json").read_text())["card"]
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / name
        subprocess.run([sys.executable, "-m", "lite_moderation", *documented_arguments(card, output), "--jobs", "2"],
                       check=True)
        for file in output.iterdir():
            file.replace(MODELS / name / file.name)
    print(f"rebuilt {name}", file=sys.stderr)


if __name__ == "__main__":
    for model in sys.argv[1:] or sorted(p.name for p in MODELS.iterdir() if p.is_dir()):
        rebuild(model)
