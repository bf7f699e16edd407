"""Model files: round trip, no pickle, and one-line errors for missing, damaged or newer models."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lite_moderation as lm
from lite_moderation.cli import main
from lite_moderation.persistence import FORMAT_VERSION, ModelFormatError


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


def test_round_trip_gives_identical_probabilities(tiny_model_dir, tmp_path):
    model = lm.load(tiny_model_dir)
    texts = ["garden marker1", ("a prompt", "marker2 river"), ("a prompt alone", ""), ("", "a text alone")]
    lm.save(model, tmp_path / "again", model.card_)
    again = lm.load(tmp_path / "again")
    np.testing.assert_array_equal(model.predict_proba(texts), again.predict_proba(texts))
    assert (tmp_path / "again" / "arrays.npz").read_bytes() == (tiny_model_dir / "arrays.npz").read_bytes()


def test_saved_arrays_hold_no_pickled_objects(tiny_model_dir):
    with np.load(tiny_model_dir / "arrays.npz", allow_pickle=False) as npz:
        for name in npz.files:
            assert npz[name].dtype != object


def _assert_cli_reports(model_dir: Path, runner, *fragments: str) -> None:
    result = runner.invoke(main, ["score", "--model", str(model_dir), "some text"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.count("\n") == 0, message
    for fragment in fragments:
        assert fragment in message


def test_truncated_arrays_file(model_copy, runner):
    arrays = model_copy / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:1000])
    with pytest.raises(ModelFormatError, match="truncated"):
        lm.load(model_copy)
    _assert_cli_reports(model_copy, runner, "arrays.npz", "sha256 mismatch")


def test_truncated_metadata_file(model_copy, runner):
    meta = model_copy / "model.json"
    meta.write_bytes(meta.read_bytes()[:200])
    _assert_cli_reports(model_copy, runner, "model.json", "truncated or corrupt")


def test_edited_threshold_is_caught_by_checksum(model_copy, runner):
    meta = model_copy / "model.json"
    data = json.loads(meta.read_text())
    data["thresholds"][0] = 0.01
    meta.write_text(json.dumps(data))
    _assert_cli_reports(model_copy, runner, "checksum mismatch")


def test_newer_format_version_is_refused(model_copy, runner):
    meta = model_copy / "model.json"
    data = json.loads(meta.read_text())
    data["format_version"] = FORMAT_VERSION + 1
    meta.write_text(json.dumps(data))
    _assert_cli_reports(model_copy, runner, "newer", "upgrade")


def test_missing_vocabulary_file(model_copy, runner):
    (model_copy / "vocabulary.json").unlink()
    _assert_cli_reports(model_copy, runner, "vocabulary.json", "missing")


def test_not_a_model_directory(tmp_path, runner):
    _assert_cli_reports(tmp_path, runner, "not a lite-moderation model")


def test_npz_with_a_pickled_object_is_rejected(model_copy):
    """Even with a matching checksum, an object array never gets unpickled."""
    import hashlib
    import io

    with np.load(model_copy / "arrays.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["coef"] = np.array([{"evil": 1}], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (model_copy / "arrays.npz").write_bytes(buffer.getvalue())
    meta = model_copy / "model.json"
    data = json.loads(meta.read_text())
    data["files"]["arrays.npz"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    from lite_moderation.persistence import _metadata_checksum

    data["checksum"] = _metadata_checksum(data)
    meta.write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match="arrays.npz: array 'coef' has dtype object"):  # refused from its header
        lm.load(model_copy)


def test_save_replaces_an_existing_model_atomically(tiny_model_dir, tmp_path):
    model = lm.load(tiny_model_dir)
    target = tmp_path / "m"
    lm.save(model, target, {"version": 1})
    lm.save(model, target, {"version": 2}, overwrite=True)  # replacing a model is asked for explicitly
    assert lm.read_card(target)["version"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging or backup left behind
    assert zipfile.is_zipfile(target / "arrays.npz")


def test_operating_points_survive_saving_and_scoring_only_loading(tiny_model_dir):
    model = lm.load(tiny_model_dir)
    assert set(model.operating_points_) == {"default", "strict"}
    assert lm.load_scorer(tiny_model_dir).operating_points_ == model.operating_points_


def test_a_model_saved_without_operating_points_explains_what_to_do(model_copy, runner):
    """Models written before operating points existed still load; asking for 'strict' says to retrain."""
    from lite_moderation.persistence import _metadata_checksum

    meta_path = model_copy / "model.json"
    metadata = json.loads(meta_path.read_text())
    del metadata["operating_points"]
    metadata["checksum"] = _metadata_checksum(metadata)
    meta_path.write_text(json.dumps(metadata))
    assert runner.invoke(main, ["score", "--model", str(model_copy), "some text"]).exit_code == 0
    result = runner.invoke(main, ["score", "--model", str(model_copy), "--threshold", "strict", "some text"])
    assert result.exit_code == 2 and "retrain" in result.stderr
