"""Hardening: no command destroys data it did not create, gates fail closed, and bad inputs get one clear line.

Real CLI runs (click's runner, or a subprocess where signals, pipes and exit codes matter), real files.
"""

from __future__ import annotations

import gzip
import json
import lzma
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_jsonl

import lite_moderation as lm
from lite_moderation.cli import main
from lite_moderation.output import OutputError
from lite_moderation.persistence import ModelFormatError

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


@pytest.mark.parametrize("stdin_as", [[], ["-"], ["-i", "-"]], ids=["piped", "dash", "input dash"])
def test_score_refuses_stdin_redirected_from_its_output_however_stdin_became_the_input(tiny_model_dir, scored_input,
                                                                                       stdin_as):
    """`score -o X < X` (and `score - -o X < X`) replaced X with its own scores, exit 0: only `-i -` was checked."""
    before = scored_input.read_bytes()
    with open(scored_input, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "lite_moderation", "score", "--model", str(tiny_model_dir), "-q",
                               *stdin_as, "-o", str(scored_input)], stdin=stdin, capture_output=True, text=True,
                              timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"--output {scored_input}: is also given as --input - (stdin)" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert scored_input.read_bytes() == before


def test_score_refuses_stdout_appended_to_the_file_stdin_is_read_from(tiny_model_dir, scored_input):
    """`score < X >> X` would grow its input while reading it."""
    before = scored_input.read_bytes()
    with open(scored_input, "rb") as stdin, open(scored_input, "ab") as stdout:
        proc = subprocess.run([sys.executable, "-m", "lite_moderation", "score", "--model", str(tiny_model_dir), "-q"],
                              stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "stdout is the file given as --input - (stdin); redirect the output elsewhere" in proc.stderr
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


# ------------------------------------------------------------------------------------------ failing open


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_fail_on_flagged_fails_closed_on_a_rejected_row(runner, tiny_model_dir, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"prompt": "q", "response": "garden river"}) + "\n" + '{"prompt": 5}\n')
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "--fail-on-flagged",
                                  "--threshold", "1", "-q"])
    assert result.exit_code == 2, result.output
    assert "in.jsonl:2" in result.stderr and "--fail-on-flagged" in result.stderr
    assert [row["line"] for row in _rows(result.stdout)] == [1]
    plain = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "--threshold", "1", "-q"])
    assert plain.exit_code == 0  # without the gate, skipping a bad row is the documented default


@pytest.mark.parametrize("suffix, body", [
    (".jsonl", ('{"prompt": "q", "response": "marker0 marker0", "is_safe": "maybe"}\n'
                '{"prompt": "q", "response": "garden", "category": {"bogus": true}}\n')),
    (".csv", "prompt,response,is_safe\nq,marker0 marker0,maybe\nq,garden,\n"),
])
def test_unused_label_fields_do_not_stop_a_row_from_being_scored(runner, tiny_model_dir, tmp_path, suffix, body):
    path = tmp_path / f"in{suffix}"
    path.write_text(body)
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "--fail-on-flagged",
                                  "--threshold", "0", "-q"])
    assert result.exit_code == 1, result.output  # scored and flagged: not rejected, not passed
    assert [row["line"] for row in _rows(result.stdout)] == ([1, 2] if suffix == ".jsonl" else [2, 3])
    assert f"warning: {path}:" in result.stderr and "is_safe" in result.stderr
    assert "skipped: 0" in result.stderr


def test_training_still_refuses_a_malformed_label(runner, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "response": "r", "is_safe": "maybe"}])
    result = runner.invoke(main, ["evaluate", "--data", str(path)])
    _refused(result, "bad.jsonl:1", "is_safe")


# ------------------------------------------------------------------------------------------ signals and pipes

ROW = b'{"prompt": "q", "response": "garden river kitchen"}\n'


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lite_moderation", *args]


def _temps(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.*"))


#: Reset SIGINT to its default, then exec the command (an exec keeps a default disposition, as it keeps an ignore).
SIGINT_DEFAULT_EXEC = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"


def _started_run(model: Path, out: Path, *extra: str) -> subprocess.Popen:
    """A score run writing ``out`` that has begun (its temp file exists) and waits for more stdin.

    SIGINT is reset to its default in the child: a harness run in the background of a script (``cmd &``) passes
    it down ignored, and a command line tool rightly keeps an inherited "ignore"."""
    command = _cli("score", "--model", str(model), "-i", "-", "--input-format", "jsonl", "-o", str(out), "-q", *extra)
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_DEFAULT_EXEC, *command],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(ROW * 5000)
    proc.stdin.flush()
    for _ in range(600):  # the temp file is created before the first row is read
        if _temps(out) or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert _temps(out), proc.communicate()[1]
    return proc


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_signal_leaves_no_temp_file_and_its_exit_code(tiny_model_dir, tmp_path, signum, code, jobs):
    out = tmp_path / "scores.jsonl"
    proc = _started_run(tiny_model_dir, out, "--jobs", jobs)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert b"Traceback" not in stderr and stderr.decode().strip().count("\n") == 0, stderr
    assert _temps(out) == [] and not out.exists()


def test_a_temp_file_left_by_sigkill_is_removed_by_the_next_run(tiny_model_dir, tmp_path):
    out = tmp_path / "scores.jsonl"
    proc = _started_run(tiny_model_dir, out)
    proc.kill()
    proc.communicate(timeout=120)
    assert _temps(out)  # SIGKILL cannot be caught
    data = tmp_path / "in.jsonl"
    data.write_bytes(ROW * 3)
    done = subprocess.run(_cli("score", "--model", str(tiny_model_dir), "-i", str(data), "-o", str(out), "-q"),
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert _temps(out) == [] and len(out.read_text().splitlines()) == 3


def _score_into_closed_pipe(model: Path, data: Path, *extra: str) -> tuple[int, bytes, bytes]:
    proc = subprocess.Popen(_cli("score", "--model", str(model), "-i", str(data), "-q", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`: the reader goes away long before the 5000 rows are written
    stderr = proc.stderr.read()
    return proc.wait(timeout=120), first, stderr


def test_score_into_head_ends_quietly(tiny_model_dir, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_bytes(ROW * 5000)
    code, first, stderr = _score_into_closed_pipe(tiny_model_dir, data)
    assert json.loads(first)["line"] == 1
    assert code == 0 and stderr == b"", stderr


def test_a_gate_whose_output_is_cut_short_fails_closed(tiny_model_dir, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_bytes(ROW * 5000)
    code, _, stderr = _score_into_closed_pipe(tiny_model_dir, data, "--fail-on-flagged")
    assert code == 2 and b"Traceback" not in stderr and b"--fail-on-flagged" in stderr


# ------------------------------------------------------------------------------------------ output suffixes


@pytest.mark.parametrize("name, opener", [("s.jsonl.gz", gzip.open), ("s.jsonl.xz", lzma.open), ("s.jsonl", open)])
def test_the_output_suffix_decides_the_compression(runner, tiny_model_dir, scored_input, tmp_path, name, opener):
    out = tmp_path / name
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(scored_input), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with opener(out, "rt", encoding="utf-8") as fh:
        assert [row["line"] for row in _rows(fh.read())] == [1, 2, 3]
    again = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(out), "-q"])
    assert "not valid JSON" not in again.stderr and "skipped: 3" in again.stderr  # parsed: rows lack a prompt


def test_the_output_suffix_decides_the_format(runner, tiny_model_dir, scored_input, tmp_path):
    base = ["score", "--model", str(tiny_model_dir), "-i", str(scored_input), "-q"]
    assert runner.invoke(main, [*base, "-o", str(tmp_path / "s.csv.gz")]).exit_code == 0
    with gzip.open(tmp_path / "s.csv.gz", "rt") as fh:
        assert fh.readline().startswith("line,id,flagged,unsafe_score")  # a file's rows may carry ids
    assert runner.invoke(main, [*base, "-o", str(tmp_path / "s.json")]).exit_code == 0
    assert len(json.loads((tmp_path / "s.json").read_text())) == 3


def test_a_format_that_contradicts_the_suffix_is_refused_before_scoring(runner, tiny_model_dir, scored_input,
                                                                        tmp_path):
    out = tmp_path / "s.jsonl.gz"
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(scored_input), "-o", str(out),
                                  "--format", "csv"])
    _refused(result, "suffix", "csv")
    assert not out.exists() and _temps(out) == []


def test_metrics_json_is_compressed_by_its_suffix(runner, tiny_model_dir, tiny_eval_data, tmp_path):
    out = tmp_path / "m.json.gz"
    result = runner.invoke(main, ["evaluate", "--model", str(tiny_model_dir), "--data", str(tiny_eval_data),
                                  "--json", str(out)])
    assert result.exit_code == 0, result.output
    with gzip.open(out, "rt") as fh:
        assert json.load(fh)["n"] == 90


# ------------------------------------------------------------------------------------------ malformed models


def _forge(model: Path, metadata=None, vocabulary=None, arrays=None, raw_vocabulary=None) -> None:
    """Rewrite model files and recompute every checksum, as a careful attacker (or a buggy tool) would."""
    import hashlib
    import io

    from lite_moderation.persistence import _metadata_checksum

    if vocabulary is not None or raw_vocabulary is not None:
        (model / "vocabulary.json").write_bytes(raw_vocabulary or json.dumps(vocabulary).encode())
    if arrays is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays) if isinstance(arrays, dict) else buffer.write(arrays)
        (model / "arrays.npz").write_bytes(buffer.getvalue())
    meta = metadata or json.loads((model / "model.json").read_text())
    for name in ("vocabulary.json", "arrays.npz"):
        if isinstance(meta.get("files"), dict):
            meta["files"][name] = hashlib.sha256((model / name).read_bytes()).hexdigest()
        if isinstance(meta.get("file_sizes"), dict):
            meta["file_sizes"][name] = (model / name).stat().st_size
    meta["checksum"] = _metadata_checksum(meta)
    (model / "model.json").write_text(json.dumps(meta))


def _parts(model: Path) -> tuple[dict, dict, dict]:
    with np.load(model / "arrays.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    return (json.loads((model / "model.json").read_text()), json.loads((model / "vocabulary.json").read_text()),
            arrays)


def _huge_hashes_npz(arrays: dict) -> bytes:
    """An .npz whose hash array header declares 10**12 entries over a few bytes of data."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            if name == "train_prompt_hashes":
                np.lib.format.write_array_header_1_0(member, {"descr": "<u8", "fortran_order": False,
                                                              "shape": (10**12,)})
                member.write(b"\0" * 64)
            else:
                np.lib.format.write_array(member, array)
            archive.writestr(f"{name}.npy", member.getvalue())
    return buffer.getvalue()


def _npz_with_a_second(arrays: dict, name: str) -> bytes:
    """An .npz holding array ``name`` twice, the second copy zeroed (which one a reader takes is no rule)."""
    import io
    import warnings
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it is asked to write
        for member, array in [*arrays.items(), (name, np.zeros_like(arrays[name]))]:
            data = io.BytesIO()
            np.lib.format.write_array(data, array)
            archive.writestr(f"{member}.npy", data.getvalue())
    return buffer.getvalue()


def _break(model: Path, how: str) -> None:
    meta, vocab, arrays = _parts(model)
    if how == "no params":
        del meta["params"]
    elif how == "thresholds not numbers":
        meta["thresholds"] = ["x"] * 15
    elif how == "ngram range a string":
        meta["params"]["vectorizer"]["word_ngram_range"] = "12"
    elif how == "files a list":
        meta["files"] = []
    elif how == "vocabulary a list":
        vocab = ["a", "b"]
    elif how == "vocabulary term not a string":
        vocab["blocks"][0][0] = 7
    elif how == "truncated vocabulary":
        vocab["blocks"][0] = vocab["blocks"][0][:-3]
    elif how == "deep vocabulary":
        _forge(model, raw_vocabulary=b"[" * 200_000 + b"]" * 200_000)
        return
    elif how == "intercept shape":
        arrays["intercept"] = arrays["intercept"][:3]
    elif how == "coef nan":
        arrays["coef"] = np.full_like(arrays["coef"], np.nan)
    elif how.startswith("idf "):  # a zero idf made NaN scores (written as NaN, never flagged); negative flipped verdicts
        arrays["idf_0"][:3] = {"idf zero": 0.0, "idf negative": -5.0, "idf huge": 1e300}[how]
    elif how == "coef beyond float32":  # finite, but logits of inf - inf
        arrays["coef"] = arrays["coef"].astype(np.float64)
        arrays["coef"][:2] = [[1e300], [-1e300]]
    elif how == "huge declared size":
        _forge(model, arrays=_huge_hashes_npz(arrays))
        return
    elif how in ("extra vectorizer key", "extra classifier key"):  # accepted by score/info/explain, not by lm.load
        meta["params"][how.split()[1]]["evil"] = 1
    elif how == "ngram range beyond training's":  # (1, 64) took GB per MB of text
        meta["params"]["vectorizer"]["word_ngram_range"] = [1, 64]
    elif how == "C a string":
        meta["params"]["classifier"]["C"] = "abc"
    elif how == "nb_power of an unknown field":
        meta["params"]["classifier"]["nb_power"] = {"answer": 1}
    elif how.startswith("format_version "):
        meta["format_version"] = json.loads(how.split()[1])
    elif how == "an array twice":
        _forge(model, arrays=_npz_with_a_second(arrays, "coef"))
        return
    elif how == "hashes uint8":  # the leak check would match nothing
        arrays["train_prompt_hashes"] = arrays["train_prompt_hashes"].astype(np.uint8)
    _forge(model, meta, vocab, arrays)


BROKEN = {
    "no params": ("model.json", "'params' is missing"),
    "thresholds not numbers": ("model.json", "thresholds"),
    "ngram range a string": ("model.json", "word_ngram_range"),
    "files a list": ("model.json", "files"),
    "vocabulary a list": ("vocabulary.json", "object"),
    "vocabulary term not a string": ("vocabulary.json", "strings"),
    "truncated vocabulary": ("arrays.npz", "shape"),
    "deep vocabulary": ("vocabulary.json", "nested too deeply"),
    "intercept shape": ("arrays.npz", "intercept"),
    "coef nan": ("arrays.npz", "NaN"),
    "idf zero": ("arrays.npz", "'idf_0' holds values from 0 to", "outside [1, "),
    "idf negative": ("arrays.npz", "'idf_0' holds values from -5 to"),
    "idf huge": ("arrays.npz", "'idf_0' holds values from", "to 1e+300"),
    "coef beyond float32": ("arrays.npz", "'coef' holds values from -1e+300 to 1e+300"),
    "huge declared size": ("arrays.npz", "train_prompt_hashes"),
    "extra vectorizer key": ("model.json", "'params.vectorizer.evil' is not a parameter of the vectorizer"),
    "extra classifier key": ("model.json", "'params.classifier.evil' is not a parameter of the classifier"),
    "ngram range beyond training's": ("model.json", "'params.vectorizer.word_ngram_range'", "<= high <= 8"),
    "C a string": ("model.json", "'params.classifier.C' must be a number above 0, got \"abc\""),
    "nb_power of an unknown field": ("model.json", "'params.classifier.nb_power' must be"),
    "format_version 0": ("model.json", "'format_version' must be a whole number from 1 to 3, got 0"),
    "format_version -1": ("model.json", "'format_version' must be a whole number from 1 to 3, got -1"),
    "format_version true": ("model.json", "'format_version' must be a whole number from 1 to 3, got true"),
    "an array twice": ("arrays.npz", "holds an array more than once"),
    "hashes uint8": ("arrays.npz", "'train_prompt_hashes' has dtype uint8, expected uint64"),
}


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_a_malformed_model_is_one_line_naming_file_and_problem(runner, tiny_model_dir, tmp_path, how):
    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    _break(model, how)
    for command in (["score", "some text"], ["info"]):
        _refused(runner.invoke(main, [command[0], "--model", str(model), *command[1:]]), *BROKEN[how])
    for load in (lm.load, lm.load_scorer):  # every load path: one verdict on a model
        with pytest.raises(ModelFormatError, match=BROKEN[how][0]):
            load(model)


def test_a_score_that_is_not_a_number_is_refused_not_written(tiny_model_dir):
    """The last guard behind the load checks: a NaN score (never flagged, and not JSON) never reaches an output."""
    labels = lm.load_scorer(tiny_model_dir).label_set_
    proba = np.full((2, len(labels.names)), 0.5)
    proba[1, -1] = np.nan
    with pytest.raises(ValueError, match="not a number"):
        labels.results(proba, np.full(len(labels.names), 0.5))


def test_a_deeply_nested_model_json_is_refused(runner, tiny_model_dir, tmp_path):
    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (model / "model.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    _refused(runner.invoke(main, ["score", "--model", str(model), "some text"]), "model.json", "nested too deeply")


def test_a_model_with_bad_params_is_refused_by_evaluate_as_by_score(runner, tiny_model_dir, tiny_eval_data,
                                                                    tmp_path):
    """evaluate (scikit-learn's load) said "damaged model (QAVectorizer.__init__() got an unexpected keyword
    argument ...)" naming the directory, while score accepted the model: now both name model.json and the key."""
    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    meta, _, _ = _parts(model)
    meta["params"]["vectorizer"]["bogus"] = 1
    _forge(model, meta)
    for args in (["evaluate", "--data", str(tiny_eval_data), "-q"], ["score", "some text"]):
        _refused(runner.invoke(main, [args[0], "--model", str(model), *args[1:]]), "model.json",
                 "'params.vectorizer.bogus' is not a parameter of the vectorizer")


# ------------------------------------------------------------------------------------------ Python API


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return lm.load_scorer(tiny_model_dir)


PAIRS = [("tell me about the garden", "marker1 marker1 river"), ("a question", "an answer about chess")]


def test_a_dataframe_scores_its_rows(scorer):
    pd = pytest.importorskip("pandas")
    expected = scorer.predict_proba(PAIRS)
    frame = pd.DataFrame(PAIRS, columns=["prompt", "response"], index=[10, 20])
    np.testing.assert_array_equal(scorer.predict_proba(frame), expected)
    texts = pd.DataFrame({"text": [r for _, r in PAIRS], "other": [1, 2]})
    np.testing.assert_array_equal(scorer.predict_proba(texts), scorer.predict_proba([r for _, r in PAIRS]))
    np.testing.assert_array_equal(scorer.predict_proba(texts["text"]), scorer.predict_proba(texts))
    assert len(scorer.moderate(frame)) == 2


def test_a_dataframe_with_missing_cells_or_columns_is_a_type_error(scorer):
    pd = pytest.importorskip("pandas")
    with pytest.raises(TypeError, match="row 1, column 'response'"):
        scorer.predict_proba(pd.DataFrame({"prompt": ["q", "q"], "response": ["a", None]}))
    with pytest.raises(TypeError, match="'prompt' and 'response' columns"):
        scorer.predict_proba(pd.DataFrame({"body": ["a"]}))


def test_a_numpy_n_by_2_string_array_is_n_pairs(scorer, tiny_model_dir):
    expected = scorer.predict_proba(PAIRS)
    np.testing.assert_array_equal(scorer.predict_proba(np.array(PAIRS)), expected)
    np.testing.assert_array_equal(lm.load(tiny_model_dir).predict_proba(np.array(PAIRS)), expected)
    np.testing.assert_array_equal(scorer.predict_proba(np.array([r for _, r in PAIRS])),
                                  scorer.predict_proba([r for _, r in PAIRS]))
    with pytest.raises(TypeError, match="shape"):
        scorer.predict_proba(np.array([PAIRS[0] + ("third",)]))


@pytest.mark.parametrize("bad", [{"a text": "another"}, {"a text"}, (t for t in ["a text"]), b"bytes", 3])
def test_a_mapping_or_other_non_sequence_is_a_type_error(scorer, tiny_model_dir, bad):
    with pytest.raises(TypeError, match="X must be a list"):
        scorer.predict_proba(bad)
    with pytest.raises(TypeError, match="X must be a list"):
        lm.load(tiny_model_dir).moderate(bad)


def test_an_unwritable_output_is_one_line_naming_it_not_a_temp_file(runner, tiny_model_dir, scored_input):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc, where no one may create files")
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(scored_input),
                                  "-o", "/proc/self/s.jsonl", "-q"])
    _refused(result, "/proc/self/s.jsonl", "cannot write")
    assert ".tmp" not in result.stderr and "Error" not in result.stderr.replace("Error: ", "", 1)


def test_stdout_or_stdin_redirected_to_the_same_file_is_refused(tiny_model_dir, scored_input, tmp_path):
    before = scored_input.read_bytes()
    with open(scored_input, "ab") as appended:  # score -i in.jsonl >> in.jsonl
        done = subprocess.run(_cli("score", "--model", str(tiny_model_dir), "-i", str(scored_input), "-q"),
                              stdout=appended, stderr=subprocess.PIPE, check=False)
    assert done.returncode == 2 and b"stdout is the file" in done.stderr, done.stderr
    with open(scored_input, "rb") as redirected:  # score -i - -o in.jsonl < in.jsonl
        done = subprocess.run(_cli("score", "--model", str(tiny_model_dir), "-i", "-", "-o", str(scored_input)),
                              stdin=redirected, capture_output=True, check=False)
    assert done.returncode == 2 and b"--input" in done.stderr, done.stderr
    assert scored_input.read_bytes() == before


@pytest.mark.parametrize(("items", "index", "what"), [
    ([""], 0, "is empty"),
    (["a text", " \t\n"], 1, "is empty or only whitespace"),
    ([("q", "a"), ("", "")], 1, "has a prompt and a response both empty"),
    ([(" ", "\n")], 0, "has a prompt and a response both empty"),
])
def test_an_api_item_with_nothing_to_score_is_refused_like_the_cli(scorer, tiny_model_dir, items, index, what):
    pd = pytest.importorskip("pandas")
    model = lm.load(tiny_model_dir)
    texts = isinstance(items[-1], str)
    frame = pd.DataFrame({"text": items}) if texts else pd.DataFrame(items, columns=["prompt", "response"])
    for call in (scorer.predict_proba, scorer.moderate, model.predict_proba, model.moderate, model.predict,
                 model.reference_decision_function):
        for X in (items, np.array(items), frame):
            with pytest.raises(ValueError, match=rf"X\[{index}\] {what}.*: nothing to score"):
                call(X)


def test_an_api_pair_with_one_blank_field_is_scored(scorer, tiny_model_dir):
    items = [("a prompt alone", ""), ("", "a text alone"), ("a prompt", "  ")]
    np.testing.assert_allclose(lm.load(tiny_model_dir).reference_decision_function(items),
                               scorer.decision_function(items), atol=1e-9)
    assert len(scorer.moderate(items)) == 3


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), True, "0.5", 0])
def test_an_api_threshold_follows_the_cli_rule(scorer, tiny_model_dir, bad):
    if bad == 0 and not isinstance(bad, (bool, str)):  # the boundary is allowed
        assert len(scorer.moderate(["a text"], threshold=0)) == 1
        return
    for model in (scorer, lm.load(tiny_model_dir)):
        with pytest.raises(ValueError, match="threshold|operating point"):
            model.moderate(["a text"], threshold=bad)


def test_train_refuses_an_output_under_a_file_before_training(runner, tiny_data, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    result = runner.invoke(main, ["train", "--data", str(tmp_path / "absent.jsonl"),
                                  "--output", str(a_file / "model")])
    _refused(result, "is a file, not a directory")


def test_a_skipped_row_is_not_advised_to_be_skipped(runner, tiny_model_dir, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": 5}\n{"text": "garden"}\n')
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "-q"])
    assert result.exit_code == 0
    assert f"skipped: {path}:1: field 'prompt'" in result.stderr and "--on-error skip" not in result.stderr
    failing = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "--on-error", "fail", "-q"])
    _refused(failing, "--on-error skip")  # in fail mode the advice fits


def _sentences(text: str) -> list[str]:
    return [s.strip(" .").lower() for s in re.split(r"[.:;(]\s", text) if s.strip(" .")]


@pytest.mark.parametrize(("record", "command"), [
    ({"prompt": "q", "response": "r"}, "train"),  # no labels at all
    ({"prompt": "q", "response": "r"}, "evaluate"),  # no labels at all
])
@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_label_errors_say_each_thing_once_and_skip_mode_says_why_nothing_was_left(
        runner, tiny_model_dir, tmp_path, record, command, on_error):
    path = write_jsonl(tmp_path / "data.jsonl", [record])
    if command == "train":
        args = ["train", "--output", str(tmp_path / "m"), "-q"]
    else:
        args = ["evaluate", "--model", str(tiny_model_dir)]
    result = runner.invoke(main, [*args, "--data", str(path), "--on-error", on_error])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    for line in lines:
        for phrase in ("needs the 14 harm categories", "needs labelled data"):
            assert line.count(phrase) <= 1, line
        assert len(_sentences(line)) == len(set(_sentences(line))), line
    if on_error == "skip":  # the reason comes before the summary that no row was left
        assert lines[0].startswith(f"skipped: {path}:1: field ") and "missing" in lines[0]
        assert lines[-1] == f"Error: {path}: no valid records (1 skipped as bad)"
        assert "--on-error skip" not in result.stderr
    else:
        assert len(lines) == 1 and "missing" in lines[0]


def test_a_json_file_of_json_lines_is_advised_in_words_that_fit_the_cli(runner, tiny_model_dir, tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('{"text": "a"}\n{"text": "b"}\n')
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "-q"])
    _refused(result, "name the file .jsonl")
    assert "fmt=" not in result.stderr
