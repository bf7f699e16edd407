"""Hardening: no command destroys data it did not create, gates fail closed, and bad inputs get one clear line.

Real CLI runs (click's runner, or a subprocess where signals, pipes and exit codes matter), real files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import write_jsonl

import lite_moderation as lm
from lite_moderation.cli import main
from lite_moderation.output import OutputError

FAST_TRAIN = ["--char-ngrams", "none", "--min-df", "1", "--threshold-folds", "0", "-q"]


def _refused(result, *fragments: str) -> None:
    """Exit 2 with one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.count("\n") == 0, message
    for fragment in fragments:
        assert fragment in message, message


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ data loss: models


def test_train_refuses_a_regular_file_before_reading_any_data(runner, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    result = runner.invoke(main, ["train", "--data", str(tmp_path / "absent.jsonl"), "--output", str(notes)])
    _refused(result, str(notes), "not a model directory")
    assert notes.read_text() == "my notes\n"


def test_train_refuses_a_directory_of_user_files(runner, tiny_data, tmp_path):
    user = tmp_path / "project"
    (user / "src").mkdir(parents=True)
    (user / "src" / "main.py").write_text("print(1)\n")
    (user / "README").write_text("hello\n")
    before = _snapshot(user)
    result = runner.invoke(main, ["train", "--data", str(tiny_data), "--output", str(user), *FAST_TRAIN])
    _refused(result, "not a lite-moderation model", "README")
    assert _snapshot(user) == before


def test_train_refuses_its_own_training_data_as_output(runner, tiny_data, tmp_path):
    data = shutil.copy(tiny_data, tmp_path / "train.jsonl")
    before = Path(data).read_bytes()
    result = runner.invoke(main, ["train", "--data", str(data), "--output", str(data), *FAST_TRAIN])
    _refused(result, str(data))
    assert Path(data).read_bytes() == before


def test_train_replaces_an_existing_model_only_with_overwrite(runner, tiny_data, tmp_path):
    out = tmp_path / "model"
    assert runner.invoke(main, ["train", "--data", str(tiny_data), "--output", str(out), *FAST_TRAIN]).exit_code == 0
    before = _snapshot(out)
    again = ["train", "--data", str(tiny_data), "--output", str(out), *FAST_TRAIN, "--C", "1"]
    _refused(runner.invoke(main, again), "existing model", "--overwrite")
    assert _snapshot(out) == before
    result = runner.invoke(main, [*again, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert _snapshot(out) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging or backup left


def test_train_with_overwrite_still_refuses_a_model_dir_holding_its_data(runner, tiny_data, tmp_path):
    out = tmp_path / "model"
    assert runner.invoke(main, ["train", "--data", str(tiny_data), "--output", str(out), *FAST_TRAIN]).exit_code == 0
    data = shutil.copy(tiny_data, out / "train.jsonl")
    result = runner.invoke(main, ["train", "--data", str(data), "--output", str(out), "--overwrite", *FAST_TRAIN])
    _refused(result, "train.jsonl")
    assert Path(data).is_file()


def test_save_refuses_what_is_not_a_model_and_overwrites_only_when_asked(tiny_model_dir, tmp_path):
    model = lm.load(tiny_model_dir)
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "keep.txt").write_text("keep me")
    for target in (a_file, user_dir):
        with pytest.raises(OutputError, match="never replaced"):
            lm.save(model, target, overwrite=True)
    assert a_file.read_text() == "keep me" and (user_dir / "keep.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    lm.save(model, empty)  # an empty directory holds nothing to lose
    with pytest.raises(OutputError, match="overwrite=True"):
        lm.save(model, empty, {"v": 2})
    lm.save(model, empty, {"v": 2}, overwrite=True)
    assert lm.read_card(empty)["v"] == 2


# ------------------------------------------------------------------------------------------ data loss: files


@pytest.fixture
def scored_input(tmp_path):
    return write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "response": "garden river"}] * 3)


def test_score_refuses_its_input_as_output_also_through_links(runner, tiny_model_dir, scored_input, tmp_path):
    before = scored_input.read_bytes()
    (tmp_path / "hard.jsonl").hardlink_to(scored_input)
    (tmp_path / "soft.jsonl").symlink_to(scored_input)
    for output in (scored_input, tmp_path / "hard.jsonl", tmp_path / "soft.jsonl"):
        result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(scored_input),
                                      "-o", str(output), "-q"])
        _refused(result, "--output", "--input")
    assert scored_input.read_bytes() == before


def test_score_refuses_an_existing_directory_before_scoring(runner, tiny_model_dir, scored_input, tmp_path):
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(scored_input),
                                  "-o", str(tmp_path), "-q"])
    _refused(result, "is a directory")
    assert "rows in" not in result.stderr


def test_score_refuses_to_write_over_the_model(runner, tiny_model_dir, scored_input, tmp_path):
    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    result = runner.invoke(main, ["score", "--model", str(model), "-i", str(scored_input),
                                  "-o", str(model / "model.json")])
    _refused(result, "--model")
    lm.load_scorer(model)


def test_evaluate_refuses_json_over_its_data(runner, tiny_model_dir, tiny_eval_data, tmp_path):
    data = shutil.copy(tiny_eval_data, tmp_path / "eval.jsonl")
    before = Path(data).read_bytes()
    result = runner.invoke(main, ["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--json", str(data)])
    _refused(result, "--json", "--data")
    assert Path(data).read_bytes() == before


def test_cv_refuses_json_over_its_data(runner, tiny_data, tmp_path):
    data = shutil.copy(tiny_data, tmp_path / "d.jsonl")
    result = runner.invoke(main, ["cv", "--data", str(data), "--json", str(data), "--folds", "2", *FAST_TRAIN])
    _refused(result, "--json")
    assert json.loads(Path(data).read_text().splitlines()[0])
