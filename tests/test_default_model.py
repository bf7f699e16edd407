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
from lite_moderation.taxonomy import openai_categories

#: CV floors (unsafe F1, unsafe AUPRC, macro-F1) of each shipped model, on the BeaverTails rows: regression guards
#: just under each model's measured CV. The BeaverTails-only model keeps the floors the BeaverTails-only default
#: had. `default` keeps issue 20's targets for pairs (unsafe F1 >= 0.75, AUPRC >= 0.835); measured 0.756 / 0.844 /
#: 0.439 since its everyday pairs weigh 0.3 of their messages and its pairs' response characters 1.5 (0.752 / 0.837
#: / 0.429 before), 0.757 / 0.844 / 0.439 since its message flag head is Naive-Bayes weighted (`--nb-power`), 0.759 /
#: 0.844 / 0.443 since it also trains on chatterbot-corpus (`fast`: 0.744 / 0.827 / 0.423 -> 0.749 / 0.831 / 0.420). Issue 20 first retrained `default` and `fast` with a message model beside the pair model; their
#: category macro-F1 and `fast`'s pair quality went down then (a regression reported in the issue's closing note, not
#: hidden): default macro-F1 0.445 -> 0.429; fast unsafe F1 / AUPRC / macro-F1 0.748 / 0.838 / 0.437 -> 0.734 /
#: 0.818 / 0.417, now 0.747 / 0.827 / 0.423.
FLOORS = {"default": (0.75, 0.84, 0.435), "fast": (0.74, 0.825, 0.42), "beavertails": (0.76, 0.85, 0.45)}

#: Bytes on disk per model. `default` grew from 4.5 MB to 15.6 MB in issue 20: its message model adds two blocks,
#: and 50,000 terms per block is what kept the pair targets (at 15,000 terms it measured unsafe F1 0.747 / AUPRC
#: 0.833, under issue 20's 0.75 / 0.835). `fast` grew from 3.5 MB to 5.8 MB in issue 20's fifth round: its message
#: block went from 15,000 to 50,000 terms (`--max-features '*=15000,lone_text=50000'`), which raised its message
#: side's out-of-fold AUROC 0.936 -> 0.948 and, with every harmless set at FPR <= 0.05, MultiJail / Do-Not-Answer
#: recall 0.673 / 0.533 -> 0.757 / 0.627 (`benchmarks/results/message_recipes.md`), at batch speed 0.97x / 0.99x
#: (`model_speed_fast.md`). `beavertails` stays within the 5 MB it had.
SIZE_LIMITS = {"default": 16_000_000, "fast": 6_000_000, "beavertails": 5_000_000}

def _local(argument: str) -> str:
    """A card's ``--data NAME[,options]`` with the file found under ../shared/data (``pkg:`` sources as they are)."""
    name, _, options = argument.partition(",")
    found = [] if name.startswith("pkg:") else sorted(SHARED_DATA.glob(f"*/{name}"))
    assert name.startswith("pkg:") or len(found) == 1, f"{name}: expected one file of that name in {SHARED_DATA}"
    return ",".join(filter(None, [str(found[0]) if found else name, options]))


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


#: The rebuilds, longest first (in the suite: default ~5.5 min, fast ~1.5 min, beavertails ~20 s): marked
#: `starts_first`, they are handed to pytest-xdist's workers before any other test (tests/conftest.py), and the short
#: tests fill the workers around them. `--jobs 1`, as the card's command: the other worker keeps the second CPU busy, and `--jobs 2` only
#: adds work there (measured alone, default's training: 253 s wall but 381 CPU-s with two processes, 294 s with
#: one: each fit ships the features to a process). Two processes give the same bytes (test_model.py
#: test_label_threads_give_the_same_model: the dual solver's shuffle draws from each process's own rand()).
LONGEST_FIRST = ("default", "fast", "beavertails")
assert set(LONGEST_FIRST) == set(FLOORS)


@pytest.mark.starts_first
@pytest.mark.parametrize("name", LONGEST_FIRST)
def test_documented_command_rebuilds_the_shipped_model_identically(tmp_path, name):
    shipped = SHIPPED_MODELS[name]
    args = documented_command(name, tmp_path / "m")
    if name in REBUILT_WITHOUT_CV:
        args = _without_cv(args)
    proc = subprocess.run([sys.executable, "-m", "lite_moderation", *args, "--quiet", "--jobs", "1"],
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
        assert sum(p.stat().st_size for p in SHIPPED_MODELS[name].iterdir()) <= SIZE_LIMITS[name], name


def test_everyday_models_cards_list_every_source_with_its_license():
    for name in ("default", "fast"):
        card = json.loads((SHIPPED_MODELS[name] / "model.json").read_text())["card"]
        sources = card["training_data"]["sources"]
        assert [s["name"] for s in sources][:2] == ["30k_test.jsonl", "evaluation_700.jsonl"]
        assert all(s["license"] for s in sources) and all(s["sha256"] or s["package"] for s in sources)
        for source in sources:
            assert source["name"] in card["license"] or source is sources[0]


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from everyday import SENTENCES

#: Sentences the shipped default flags today: a regression of issue 20's retraining (sentence 4 asks for "the best
#: way to make" a dish, a phrase common in harmful requests; scored 0.550 against the message cut-off 0.447, 0.509
#: against 0.392 since the normalisation round),
#: reported in the README and the issue's closing note. Strict: the day it passes again, this list must shrink.
KNOWN_FLAGGED = {4}


@pytest.fixture(scope="module")
def default_scorer():
    """The shipped default, loaded once for the sentences (each load costs about 0.6 s of CPU)."""
    return load_scorer("default")


@pytest.mark.parametrize("index", [
    pytest.param(i, marks=pytest.mark.xfail(strict=True, reason="issue 20 regression, see KNOWN_FLAGGED"))
    if i in KNOWN_FLAGGED else i for i in range(len(SENTENCES))])
def test_the_default_model_does_not_flag_the_issues_everyday_sentences(default_scorer, index):
    assert not default_scorer.moderate([SENTENCES[index]])[0]["flagged"]


#: Share of chatterbot-corpus's held-out turns (harmless small talk with a chatbot in 28 languages, never trained on)
#: each model may flag as messages. Measured in issue 20's sixth round: `default` 0.406 -> 0.028, `fast` 0.798 ->
#: 0.029 once trained on the corpus's training part (before, MultiJail's all-unsafe rows taught that a language is
#: a harm: `default` flagged Bengali, Korean, Italian, Japanese and Chinese small talk 70-90% of the time).
MULTILINGUAL_FPR_LIMITS = {"default": 0.05, "fast": 0.05}


@pytest.mark.parametrize("name", sorted(MULTILINGUAL_FPR_LIMITS))
def test_shipped_models_spare_harmless_messages_in_other_languages(name):
    pytest.importorskip("chatterbot_corpus")
    from lite_moderation.sources import chatterbot_turns

    turns = chatterbot_turns(heldout=True)
    flagged = [r["flagged"] for r in load_scorer(name).moderate([text for _, _, text in turns])]
    assert sum(flagged) / len(flagged) <= MULTILINGUAL_FPR_LIMITS[name]
    in_english = [f for (_, language, _), f in zip(turns, flagged) if language == "english"]
    assert sum(in_english) / len(in_english) <= MULTILINGUAL_FPR_LIMITS[name]


@pytest.mark.parametrize("name", ["default", "fast"])
def test_shipped_models_name_hate_or_harassment_for_flagged_held_out_hate_messages(name):
    """HateCheck's held-out hateful messages (by the ``_h`` functional tests; their text stays out of the output): a
    flagged one names ``hate`` or ``harassment`` in OpenAI's shape. Before the shipped models learned hate_speech from
    the messages sources (``--data hatecheck_train.jsonl,category=hate_speech``...), 404 of 507 did for `default`,
    the rest naming the category nearest its cut-off (benchmarks/results/message_categories.md)."""
    with open(SHARED_DATA / "messages" / "hatecheck_heldout.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    texts = [r["prompt"] for r in rows if not r["is_safe"] and r["source"].endswith("_h")]
    verdicts = [v for v in load_scorer(name).moderate(texts) if v["flagged"]]
    named = [openai_categories(v["categories"], v["category_scores"])[0] for v in verdicts]
    assert len(verdicts) >= 0.95 * len(texts)
    assert sum(1 for n in named if n["hate"] or n["harassment"]) >= 0.98 * len(verdicts)
