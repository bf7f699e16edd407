"""Model files: round trip, no pickle, and one-line errors for missing, damaged or newer models."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lite_moderation as lm
from lite_moderation.cli import main
from lite_moderation.persistence import FORMAT_VERSION, ModelFormatError, _metadata_checksum


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
    _assert_cli_reports(model_copy, runner, "arrays.npz", "1000 bytes, but model.json says", "truncated")


def test_a_file_edited_to_the_same_size_fails_its_sha256(model_copy, runner):
    vocabulary = model_copy / "vocabulary.json"
    data = bytearray(vocabulary.read_bytes())
    data[len(data) // 2] ^= 1
    vocabulary.write_bytes(bytes(data))
    _assert_cli_reports(model_copy, runner, "vocabulary.json", "sha256 mismatch")


def _info_with_memory_limit(model_dir: Path) -> subprocess.CompletedProcess:
    """``info`` in a process whose address space is capped at 1 GiB: reading a huge file there fails at once
    (instead of filling this machine's memory), so only a refusal before reading gives the expected message."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run([sys.executable, "-m", "lite_moderation", "info", "--model", str(model_dir)],
                          capture_output=True, text=True, timeout=60, preexec_fn=cap_memory, check=False)


def test_a_huge_sparse_vocabulary_is_refused_by_its_declared_size_before_it_is_read(model_copy):
    os.truncate(model_copy / "vocabulary.json", 6 << 30)  # 6 GiB that take no disk space
    proc = _info_with_memory_limit(model_copy)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"vocabulary.json: {6 << 30} bytes, but model.json says" in proc.stderr


def test_a_model_saved_without_file_sizes_loads_and_still_refuses_a_huge_file(model_copy, runner):
    from lite_moderation.persistence import MAX_FILE_BYTES, _metadata_checksum

    meta_path = model_copy / "model.json"
    metadata = json.loads(meta_path.read_text())
    del metadata["file_sizes"]
    metadata["checksum"] = _metadata_checksum(metadata)
    meta_path.write_text(json.dumps(metadata))
    assert runner.invoke(main, ["score", "--model", str(model_copy), "some text"]).exit_code == 0
    os.truncate(model_copy / "arrays.npz", MAX_FILE_BYTES + 1)
    proc = _info_with_memory_limit(model_copy)
    assert proc.returncode == 2
    assert f"arrays.npz: {MAX_FILE_BYTES + 1} bytes, more than a model file may hold" in proc.stderr


def test_a_declared_size_beyond_the_limit_is_refused(model_copy, runner):
    from lite_moderation.persistence import MAX_FILE_BYTES, _metadata_checksum

    meta_path = model_copy / "model.json"
    metadata = json.loads(meta_path.read_text())
    metadata["file_sizes"]["vocabulary.json"] = MAX_FILE_BYTES + 1
    metadata["checksum"] = _metadata_checksum(metadata)
    meta_path.write_text(json.dumps(metadata))
    _assert_cli_reports(model_copy, runner, "model.json", "'file_sizes.vocabulary.json' must be a number of bytes")


def test_saved_and_shipped_sizes_are_the_file_sizes(tiny_model_dir):
    from lite_moderation.persistence import SHIPPED_MODELS

    for directory in (tiny_model_dir, *SHIPPED_MODELS.values()):
        sizes = json.loads((directory / "model.json").read_text())["file_sizes"]
        assert sizes == {name: (directory / name).stat().st_size for name in ("arrays.npz", "vocabulary.json")}


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


def test_a_model_is_saved_in_the_lowest_format_that_holds_its_normalisation(tiny_model_dir, tmp_path, runner):
    """Format 3 added the normalisation "undisguised": a model declaring an older one stays readable by readers of
    format 2, and a file claiming format 2 with "undisguised" is refused (a reader of format 2 would not know it)."""
    model = lm.load(tiny_model_dir)
    for form, version in (("undisguised", 3), ("visible", 2), (None, 2)):
        model.vectorizer_.normalize = form
        lm.save(model, tmp_path / str(form), lm.read_card(tiny_model_dir))
        assert json.loads((tmp_path / str(form) / "model.json").read_text())["format_version"] == version
        assert lm.load_scorer(tmp_path / str(form)).normalize == form
    meta = tmp_path / "undisguised" / "model.json"
    data = json.loads(meta.read_text())
    data["format_version"] = 2
    data["checksum"] = _metadata_checksum(data)
    meta.write_text(json.dumps(data))
    _assert_cli_reports(tmp_path / "undisguised", runner, "normalize", "needs format version 3")


def test_missing_vocabulary_file(model_copy, runner):
    (model_copy / "vocabulary.json").unlink()
    _assert_cli_reports(model_copy, runner, "vocabulary.json", "missing")


def _truncate_metadata(model_dir: Path) -> None:
    (model_dir / "model.json").write_bytes((model_dir / "model.json").read_bytes()[:200])


def _edit_threshold(model_dir: Path) -> None:
    data = json.loads((model_dir / "model.json").read_text())
    data["thresholds"][0] = 0.01
    (model_dir / "model.json").write_text(json.dumps(data))


def _flip_a_vocabulary_byte(model_dir: Path) -> None:
    data = bytearray((model_dir / "vocabulary.json").read_bytes())
    data[len(data) // 2] ^= 1
    (model_dir / "vocabulary.json").write_bytes(bytes(data))


@pytest.mark.parametrize(("damage", "problem"), [
    (_truncate_metadata, "model.json: truncated or corrupt"),
    (_edit_threshold, "model.json: checksum mismatch"),
    (lambda d: (d / "vocabulary.json").unlink(), "vocabulary.json: missing from the model directory"),
    (lambda d: (d / "arrays.npz").unlink(), "arrays.npz: missing from the model directory"),
    (_flip_a_vocabulary_byte, "vocabulary.json: sha256 mismatch"),
    (lambda d: (d / "arrays.npz").write_bytes((d / "arrays.npz").read_bytes()[:1000]), "arrays.npz: 1000 bytes"),
])
def test_every_damaged_model_file_ends_with_the_same_advice(model_copy, runner, damage, problem):
    damage(model_copy)
    for load in (lm.load, lm.load_scorer):
        with pytest.raises(ModelFormatError, match="the model is damaged: retrain or reinstall it$") as caught:
            load(model_copy)
        assert problem in str(caught.value)
    _assert_cli_reports(model_copy, runner, problem, "the model is damaged: retrain or reinstall it")


def test_saving_an_unfitted_model_says_to_fit_it_first_and_writes_nothing(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="save needs a fitted model: ModerationClassifier is not fitted yet"):
        lm.save(lm.ModerationClassifier(), tmp_path / "m")
    assert not (tmp_path / "m").exists()


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
    data["file_sizes"]["arrays.npz"] = len(buffer.getvalue())
    from lite_moderation.persistence import _metadata_checksum

    data["checksum"] = _metadata_checksum(data)
    meta.write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match="arrays.npz: array 'coef' has dtype object"):  # refused from its header
        lm.load(model_copy)


@pytest.mark.parametrize("caps", [{"answer": 5}, {"response": -1}, {"*": 2.5}, "many", True])
def test_a_model_file_with_bad_vocabulary_caps_is_refused_with_the_field_named(model_copy, caps):
    from lite_moderation.persistence import _metadata_checksum

    meta_path = model_copy / "model.json"
    metadata = json.loads(meta_path.read_text())
    metadata["params"]["vectorizer"]["max_features"] = caps
    metadata["checksum"] = _metadata_checksum(metadata)
    meta_path.write_text(json.dumps(metadata))
    for load in (lm.load, lm.load_scorer):
        with pytest.raises(ModelFormatError, match="params.vectorizer.max_features"):
            load(model_copy)


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


# ------------------------------------------------------------------------------------------------ estimator state


def _recipe_params(model) -> dict:
    """Every parameter but the vectorizer object itself (compared by its own parameters) and the run-time settings
    a model's files leave out (n_jobs, verbose: they change no bit of the model)."""
    return {k: v for k, v in model.get_params().items() if k not in ("vectorizer", "n_jobs", "verbose")}


@pytest.fixture(scope="module")
def marker_rows():
    from conftest import synthetic_records

    records = synthetic_records(160, seed=4)
    texts = [r["response"] for r in records]
    pairs = [(r["prompt"], r["response"]) for r in records]
    flags = np.array([[r["category"][c] for c in lm.CATEGORIES] for r in records])
    return texts, pairs, np.column_stack([flags[:, 7], ~flags.any(axis=1)])  # columns "a" and "is_safe"


@pytest.mark.parametrize("vectorizer", ["recipe", None])
def test_a_loaded_model_has_the_saved_models_params_and_its_clone_refits_the_same_recipe(tmp_path, marker_rows,
                                                                                          vectorizer):
    """Fitted on single texts, the fitted vectorizer drops the prompt blocks; the file kept only it (and the label
    set), so a clone of the loaded model refitted another recipe: no prompt features on pairs, is_safe read as a
    plain flag column."""
    from sklearn.base import clone

    from lite_moderation.features import QAVectorizer

    texts, pairs, Y = marker_rows
    recipe = QAVectorizer(word_fields=("prompt", "response"), word_ngram_range=(1, 3), char_fields=(), min_df=1,
                          max_features={"prompt": 50, "*": None}, normalize=None)
    model = lm.ModerationClassifier(vectorizer=recipe if vectorizer else None, labels=["a", "is_safe"],
                                    threshold_folds=0, n_jobs=1).fit(texts, Y)
    assert [f for f, _, _ in model.vectorizer_.blocks_] == ["response"] * (1 if vectorizer else 2)
    lm.save(model, tmp_path / "m")
    loaded = lm.load(tmp_path / "m")
    assert _recipe_params(loaded) == _recipe_params(model)
    assert (loaded.vectorizer is None) == (model.vectorizer is None)
    np.testing.assert_array_equal(loaded.predict_proba(texts), model.predict_proba(texts))
    refitted, again = clone(loaded).fit(pairs, Y), clone(model).fit(pairs, Y)
    assert [f for f, _, _ in refitted.vectorizer_.blocks_] == [f for f, _, _ in again.vectorizer_.blocks_]
    np.testing.assert_array_equal(refitted.coef_, again.coef_)


def test_a_binary_target_round_trips_its_classes(tmp_path, marker_rows):
    texts, _, Y = marker_rows
    model = lm.ModerationClassifier(vectorizer=lm.QAVectorizer(char_fields=(), min_df=1), labels="is_safe",
                                    threshold_folds=0).fit(texts, Y[:, 1].astype(int))
    lm.save(model, tmp_path / "m")
    loaded = lm.load(tmp_path / "m")
    assert loaded.target_type_ == "binary" and loaded.classes_.tolist() == [0, 1] and loaded.labels_ == ["unsafe"]
    np.testing.assert_array_equal(loaded.predict(texts), model.predict(texts))
    np.testing.assert_array_equal(loaded.predict_proba(texts), model.predict_proba(texts))
    assert loaded.moderate(texts) == model.moderate(texts)


@pytest.mark.parametrize("name", ["beavertails", "fast"])
def test_a_shipped_model_loads_as_a_label_matrix_of_every_head_and_saves_back_byte_for_byte(tmp_path, name):
    """The shipped files hold neither ``target`` nor ``params.given`` (saved before they existed): they load as a
    label matrix of every head, and saving the loaded model writes the very same files (nothing new to record)."""
    from lite_moderation.persistence import SHIPPED_MODELS

    model = lm.load(name)
    assert model.target_type_ == "multilabel-indicator" and model.classes_.tolist() == list(range(15))
    items = ["a text", ("a question", "an answer")]
    assert model.predict(items).shape == (2, 15) and model.predict_proba(items).shape == (2, 15)
    lm.save(model, tmp_path / "m", model.card_)
    for file in ("model.json", "vocabulary.json", "arrays.npz"):
        assert (tmp_path / "m" / file).read_bytes() == (SHIPPED_MODELS[name] / file).read_bytes(), file


@pytest.mark.parametrize(("key", "value", "named"), [
    ("target", {"type": "multiclass", "columns": ["unsafe"]}, "target.type"),
    ("target", {"type": "binary", "columns": ["nonsense"], "classes": [0, 1]}, "target.columns"),
    ("target", {"type": "binary", "columns": ["unsafe", "is_safe"], "classes": [0, 1]}, "target.columns"),
    ("target", {"type": "binary", "columns": ["unsafe"], "classes": [1, 1]}, "target.classes"),
    ("target", {"type": "binary", "columns": ["unsafe"], "classes": [{"x": 1}, 2]}, "target.classes"),
    ("target", "binary", "target.type"),
    ("given", {"labels": 5}, "params.given.labels"),
    ("given", {"labels": ["a", "a"]}, "params.given.labels"),
    ("given", {"vectorizer": {"word_fields": ["answer"]}}, "params.given.vectorizer.word_fields"),
    ("given", {"vectorizer": None, "pickle": "x"}, "params.given"),
])
def test_a_model_file_with_a_bad_target_or_given_params_is_refused_with_the_field_named(model_copy, key, value, named):
    from lite_moderation.persistence import _metadata_checksum

    meta_path = model_copy / "model.json"
    metadata = json.loads(meta_path.read_text())
    (metadata["params"] if key == "given" else metadata)[key] = value
    metadata["checksum"] = _metadata_checksum(metadata)
    meta_path.write_text(json.dumps(metadata))
    for load in (lm.load, lm.load_scorer):
        with pytest.raises(ModelFormatError, match=f"'{named}'"):
            load(model_copy)


def test_a_shipped_model_saved_with_its_read_card_round_trips_byte_for_byte(tmp_path):
    """`lm.save(lm.load("fast"), path, lm.read_card("fast"))` stored read_card's derived fields (path, size_bytes,
    thresholds, operating_points, params, labels, format_version) in the new card: its model.json differed."""
    from lite_moderation.persistence import SHIPPED_MODELS

    for name in ("beavertails", "fast", "default"):
        card = lm.read_card(name)
        out = lm.save(lm.load(name), tmp_path / name, card)
        for f in sorted(SHIPPED_MODELS[name].iterdir()):
            assert (out / f.name).read_bytes() == f.read_bytes(), (name, f.name)
        from lite_moderation.persistence import DERIVED_CARD_KEYS

        stored = json.loads((SHIPPED_MODELS[name] / "model.json").read_text(encoding="utf-8"))["card"]
        assert set(card) - set(stored) <= set(DERIVED_CARD_KEYS)  # read_card adds only what save drops
